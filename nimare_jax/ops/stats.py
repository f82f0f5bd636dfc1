"""Pure JAX statistics kernels: p <-> z, permutation and histogram p-values, chi-square, FDR.

Arrays in, arrays out. Every function is jit-compiled, works in the dtype it is given
(float32 by default, float64 under ``jax.enable_x64``) and takes its options (``tail``,
``symmetric``, ``method``) as static Python values, so it can be called inside an estimator's
own ``jit`` or ``vmap``. :mod:`nimare_jax.stats` wraps these with NiMARE's names for NumPy
callers.

Tails are carried as natural logarithms (``logp = log(p)``) wherever a p-value may underflow:
:func:`logp_to_z` is exact far beyond the z of about 13 (float32) or 37.5 (float64) at which a
p-value itself stops being representable.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import erfinv, gammaln, log_ndtr, ndtri

_LOG2 = math.log(2.0)
_LOG_HALF = math.log(0.5)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_NEWTON_STEPS = 3
_SERIES_ORDER = 8  # terms of log_ndtr's tail series: the default 3 leaves 4e-9 at z = 20
#: Most continued-fraction terms of the incomplete beta function; on the side of the switch
#: where it is used it converges in about ``sqrt(dof)`` terms (60 at dof = 1,000).
_BETA_CF_MAX_TERMS = 4000
_STIRLING_FROM = 10.0  # log-gamma differences below, Stirling's series (to z**-11) above


def _float(x) -> jax.Array:
    """Return ``x`` as a JAX array with a floating dtype (ints become the default float)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(float)


def _check_option(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


@functools.partial(jax.jit, static_argnames=("tail",))
def logp_to_z(logp, tail: str = "two") -> jax.Array:
    """Convert natural-log p-values to unsigned z-values, accurately at any tail depth.

    Parameters
    ----------
    logp : array-like of float, any shape
        ``log(p)``; ``-inf`` (p = 0) gives ``z = inf``.
    tail : {"two", "one"}
        Whether ``p`` is two-sided (``z = isf(p / 2)``) or one-sided (``z = isf(p)``).

    Returns
    -------
    jax.Array, same shape
        ``z >= 0``. A one-sided ``p >= 0.5`` gives ``z = 0`` (NiMARE's unsigned convention).

    Notes
    -----
    Where ``exp(logp)`` is a normal float the start is ``-ndtri(p)``; below that, the
    asymptote ``z**2 ~ L2 - log(L2) - log(2 pi)`` with ``L2 = -2 logp``. Either start is
    refined by Newton steps on ``log_ndtr(-z) = logp`` until ``log_ndtr(-z)`` reproduces
    ``logp`` to a few ulp, whatever the depth.
    """
    _check_option("tail", tail, ("one", "two"))
    logq = _float(logp)
    if tail == "two":
        logq = logq - _LOG2
    logq = jnp.minimum(logq, _LOG_HALF)
    log_tiny = math.log(float(jnp.finfo(logq.dtype).tiny))
    two_l = -2.0 * logq
    asymptote = jnp.sqrt(jnp.maximum(two_l - jnp.log(two_l) - 2.0 * _HALF_LOG_2PI, 0.0))
    z = jnp.where(logq > log_tiny, -ndtri(jnp.exp(jnp.maximum(logq, log_tiny))), asymptote)
    finite = jnp.isfinite(logq)
    z = jnp.where(finite, z, 0.0)
    for _ in range(_NEWTON_STEPS):
        log_sf = log_ndtr(-z, series_order=_SERIES_ORDER)
        hazard = jnp.exp(-0.5 * z * z - _HALF_LOG_2PI - log_sf)
        z = z + (log_sf - jnp.where(finite, logq, 0.0)) / hazard
    return jnp.where(finite, z, jnp.where(logq == -jnp.inf, jnp.inf, logq))


@functools.partial(jax.jit, static_argnames=("tail",))
def p_to_z(p, tail: str = "two") -> jax.Array:
    """Convert p-values to unsigned z-values.

    Parameters
    ----------
    p : array-like of float, any shape
        P-values; values below the dtype's smallest normal number are raised to it.
    tail : {"two", "one"}
        Two-sided or one-sided p-values.

    Returns
    -------
    jax.Array, same shape
        ``z >= 0``; see :func:`logp_to_z`, which has no floor.
    """
    p = _float(p)
    return logp_to_z(jnp.log(jnp.maximum(p, jnp.finfo(p.dtype).tiny)), tail=tail)


def _log_beta_cf(a, b, u):
    """Log of the continued fraction of ``I_u(a, b)`` (DLMF 8.17.22), by modified Lentz.

    Converges quickly where ``u < (a + 1) / (a + b + 2)``; ``I_u(a, b)`` is then
    ``u**a (1 - u)**b / (a B(a, b))`` times this fraction. Each element stops once its last
    factor is within one rounding unit of 1 (later terms would only add rounding), so an
    element's value does not depend on the others in the batch.
    """
    eps = jnp.finfo(u.dtype).eps
    tiny = jnp.finfo(u.dtype).tiny

    def guard(v):
        return jnp.where(jnp.abs(v) < tiny, tiny, v)

    def lentz(c, d, coef):
        d = 1.0 / guard(1.0 + coef * d)
        c = guard(1.0 + coef / c)
        return c, d, d * c

    def step(carry):
        m, c, d, h, active = carry
        c, d, even = lentz(c, d, m * (b - m) * u / ((a + 2 * m - 1) * (a + 2 * m)))
        odd = -(a + m) * (a + b + m) * u / ((a + 2 * m) * (a + 2 * m + 1))
        c, d, delta = lentz(c, d, odd)
        h = jnp.where(active, h * even * delta, h)
        return m + 1.0, c, d, h, active & (jnp.abs(delta - 1.0) > eps)

    def more(carry):
        return (carry[0] <= _BETA_CF_MAX_TERMS) & jnp.any(carry[4])

    d = 1.0 / guard(1.0 - (a + b) * u / (a + 1.0))
    init = (jnp.ones((), u.dtype), jnp.ones_like(u), d, d, jnp.ones(u.shape, bool))
    return jnp.log(lax.while_loop(more, step, init)[3])


def _stirling_remainder(z):
    """``log Gamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2)`` for ``z >= 10`` (< 1e-16)."""
    z2 = z * z
    series = 1 / 1188 - 691 / (360360 * z2)
    for coef in (1 / 1680, 1 / 1260, 1 / 360):
        series = coef - series / z2
    return (1 / 12 - series / z2) / z


def _log_beta_half(a):
    """``log B(a, 1/2)`` to ~1e-14 absolute for any ``a > 0``.

    ``jax.scipy.special.betaln`` is off by up to 6e-7 for ``8 <= a < 1000``, and the plain
    log-gamma difference loses ``log Gamma(a)``'s rounding for large ``a``; above
    :data:`_STIRLING_FROM` the difference is taken from Stirling's series instead.
    """
    big = jnp.maximum(a, _STIRLING_FROM)
    log_ratio = (  # log Gamma(big + 1/2) - log Gamma(big)
        0.5 * jnp.log(big)
        + big * jnp.log1p(0.5 / big)
        - 0.5
        + _stirling_remainder(big + 0.5)
        - _stirling_remainder(big)
    )
    small = gammaln(a + 0.5) - gammaln(a)
    return 0.5 * math.log(math.pi) - jnp.where(a < _STIRLING_FROM, small, log_ratio)


def _t_tails(t, dof):
    """Tail probabilities of Student's t, each computed on the side where it is exact.

    Returns ``(central, w, log_q)``: ``log_q = log P(T > |t|)`` everywhere, and where
    ``central`` (small ``|t|``) also ``w = P(|T| < |t|)``, from which ``z`` near 0 keeps
    its relative precision. Both come from ``I_x(dof/2, 1/2) = 2 P(T > |t|)`` with
    ``x = dof / (dof + t**2)``, or from its complement ``I_{1-x}(1/2, dof/2) = w``:
    whichever continued fraction converges, one of them per element. ``x`` and ``1 - x``
    are taken from ``r = |t| / sqrt(dof)`` in logs, so neither cancels nor overflows, and
    the prefactor stays a logarithm, so ``log_q`` is finite where ``P`` underflows.
    """
    t = _float(t)
    t, dof = jnp.broadcast_arrays(t, jnp.asarray(dof, t.dtype))
    a = 0.5 * dof
    r = jnp.abs(t) / jnp.sqrt(dof)
    r2 = r * r
    log1p_r2 = jnp.where(r > 1.0, 2.0 * jnp.log(r) + jnp.log1p(1.0 / r2), jnp.log1p(r2))
    log_x = -log1p_r2  # log(dof / (dof + t**2))
    log_y = jnp.where(r > 1.0, -jnp.log1p(1.0 / r2), 2.0 * jnp.log(r) - jnp.log1p(r2))
    central = r2 * (a + 1.0) <= 1.5  # x >= (a + 1) / (a + 2.5): the fraction of w converges
    p, q = jnp.where(central, 0.5, a), jnp.where(central, a, 0.5)
    u = jnp.exp(jnp.where(central, log_y, log_x))
    log_front = 0.5 * log_y + a * log_x - _log_beta_half(a) - jnp.log(p)
    log_i = log_front + _log_beta_cf(p, q, u)
    w = jnp.where(central, jnp.exp(log_i), jnp.nan)
    log_q = jnp.where(central, jnp.log1p(-w), log_i) - _LOG2
    return central, w, log_q


@jax.jit
def log_t_sf(t, dof) -> jax.Array:
    """Natural log of Student's t survival function ``log P(T_dof > t)``, without underflow.

    Parameters
    ----------
    t : array-like of float
        T statistics.
    dof : array-like of float
        Degrees of freedom (> 0), broadcast against ``t``.

    Returns
    -------
    jax.Array
        ``log P(T_dof > t)``; finite for every finite ``t`` (``-7.6e3`` at ``t = 1e250``,
        ``dof = 5``, where the probability itself is far below the smallest double).
    """
    central, w, log_q = _t_tails(t, dof)
    log_lower = jnp.where(central, jnp.log1p(w) - _LOG2, jnp.log1p(-jnp.exp(log_q)))
    return jnp.where(jnp.asarray(t) >= 0, log_q, log_lower)


@jax.jit
def t_to_z_logp(t, dof) -> tuple[jax.Array, jax.Array]:
    """Return :func:`t_to_z` of ``t`` and ``log P(T_dof > |t|)`` from one evaluation.

    Parameters
    ----------
    t, dof : array-like of float
        As :func:`log_t_sf`.

    Returns
    -------
    z : jax.Array
        Signed z statistics, as :func:`t_to_z`.
    log_sf : jax.Array
        Natural log of the one-sided tail beyond ``|t|`` (add ``log 2`` for a two-sided p).
    """
    central, w, log_q = _t_tails(t, dof)
    z = jnp.where(central, math.sqrt(2.0) * erfinv(w), logp_to_z(log_q, tail="one"))
    return jnp.sign(t) * z, log_q


@jax.jit
def t_to_z(t_values, dof) -> jax.Array:
    """Convert t statistics to z statistics with the same tail probability.

    ``z = sign(t) isf(P(T_dof > |t|))``, computed so that it keeps float64 relative
    precision everywhere: near ``t = 0`` from ``P(|T| < |t|)`` through ``erfinv``; in the
    tails from the log of ``P(T > |t|)``, which has no floor (``t = 1e3``, ``dof = 500`` gives
    ``z = 61.63``, where the probability underflows any double). Jit-compiled; compute under
    ``jax.enable_x64`` for float64 (:func:`nimare_jax.stats.t_to_z` does).

    Parameters
    ----------
    t_values : array-like of float
        T statistics.
    dof : array-like of float
        Degrees of freedom (> 0), broadcast against ``t_values``.

    Returns
    -------
    jax.Array
        Z statistics with the sign of ``t_values``; ``±inf`` for infinite t, NaN for NaN.

    Notes
    -----
    Both tails come from the regularised incomplete beta function,
    ``P(T > |t|) = I_x(dof/2, 1/2) / 2`` with ``x = dof / (dof + t**2)`` (DLMF 8.17.22
    continued fraction with its prefactor in logs) and ``z`` from :func:`logp_to_z`.
    Relative error of z in float64 against scipy and mpmath: below 2e-15 beyond
    ``|z| = 5``; at most 3e-14 anywhere for ``dof <= 1000`` (``tests/test_stats.py``). Near
    ``|t| = sqrt(3)``, where the fraction switches sides, it needs about ``sqrt(dof)``
    terms and their rounding adds up: 2e-13 at ``dof = 1e4``, 2e-12 at ``1e5``, 2e-11 at
    ``1e6`` (capped at :data:`_BETA_CF_MAX_TERMS` terms).
    """
    return t_to_z_logp(t_values, dof)[0]


@functools.partial(jax.jit, static_argnames=("tail",))
def z_to_logp(z, tail: str = "two") -> jax.Array:
    """Convert z-values to natural-log p-values.

    Parameters
    ----------
    z : array-like of float, any shape
        Z-statistics.
    tail : {"two", "one"}
        ``"two"``: ``log P(|Z| >= |z|)``; ``"one"``: ``log P(Z >= z)``.

    Returns
    -------
    jax.Array, same shape
        ``log(p) <= 0``, finite for every finite ``z``.
    """
    _check_option("tail", tail, ("one", "two"))
    z = _float(z)
    if tail == "one":
        return log_ndtr(-z, series_order=_SERIES_ORDER)
    return jnp.minimum(_LOG2 + log_ndtr(-jnp.abs(z), series_order=_SERIES_ORDER), 0.0)


def clip_null_p(p, n_null) -> jax.Array:
    """Keep Monte Carlo p-values off 0 and 1: ``max(1 / n, min(p, 1 - 1 / n))``.

    With ``n`` null values a p-value cannot be resolved below ``1 / n`` (nor above
    ``1 - 1 / n``). For ``n <= 2`` the two bounds cross and the lower one wins, as in
    NiMARE: one null value gives ``p = 1`` everywhere, never 0.

    Parameters
    ----------
    p : array-like of float, any shape
        Raw p-values (a fraction of the null).
    n_null : int or float
        Number of null values behind them.

    Returns
    -------
    jax.Array, shape of ``p``
        The bounded p-values.
    """
    p = _float(p)
    smallest = 1.0 / n_null
    return jnp.maximum(smallest, jnp.minimum(p, 1.0 - smallest))


@functools.partial(jax.jit, static_argnames=("tail", "symmetric"))
def null_to_p(values, null, tail: str = "two", symmetric: bool = False) -> jax.Array:
    """Return p-values of statistics against an empirical null sample.

    Parameters
    ----------
    values : array-like of float, any shape
        Observed statistics.
    null : array-like of float, shape (n_null,)
        Null sample (e.g. per-permutation maxima).
    tail : {"two", "upper", "lower"}
        ``"upper"``: fraction of the null ``>=`` the value; ``"lower"``: fraction ``<=``;
        ``"two"``: twice the smaller of the two, or, if ``symmetric``, the fraction of
        ``|null| >= |value|``.
    symmetric : bool
        Treat the null as symmetric about zero (two-sided test only).

    Returns
    -------
    jax.Array, shape of ``values``
        P-values bounded by :func:`clip_null_p`, as NiMARE does.
    """
    _check_option("tail", tail, ("two", "upper", "lower"))
    values, null = _float(values), _float(null)
    n = null.shape[0]

    def at_or_above(v, sorted_null):
        return (n - jnp.searchsorted(sorted_null, v, side="left")).astype(v.dtype) / n

    def at_or_below(v, sorted_null):
        return jnp.searchsorted(sorted_null, v, side="right").astype(v.dtype) / n

    if tail == "two" and symmetric:
        p = at_or_above(jnp.abs(values), jnp.sort(jnp.abs(null)))
    else:
        sorted_null = jnp.sort(null)
        if tail == "upper":
            p = at_or_above(values, sorted_null)
        elif tail == "lower":
            p = at_or_below(values, sorted_null)
        else:
            p = 2.0 * jnp.minimum(
                at_or_above(values, sorted_null), at_or_below(values, sorted_null)
            )
    return clip_null_p(p, n)


@jax.jit
def nullhist_to_p(values, weights, bins) -> jax.Array:
    """Return one-sided p-values of statistics against a null histogram.

    Parameters
    ----------
    values : array-like of float, shape (n_values,)
        Observed statistics.
    weights : array-like of float, shape (n_bins,) or (n_bins, n_values)
        Null histogram counts or weights (one shared histogram, or one per value).
    bins : array-like of float, shape (n_bins,)
        Equally spaced bin centres, starting at 0.

    Returns
    -------
    jax.Array, shape (n_values,)
        ``P(null >= value)`` read from the survival function at the value's bin; 1 for
        ``value <= 0``; floored at the smallest non-zero survival probability over the whole
        table.

    Notes
    -----
    Follows NiMARE's indexing exactly, which the ALE approximate null depends on: the bin of
    a value is ``round(value / step)``, halves rounded away from zero, with
    ``step = bins[1] - bins[0]`` and the first bin assumed to be at 0 (``bins[0]`` is not
    subtracted); values beyond the last bin take the last bin.
    """
    values, weights, bins = _float(values), _float(weights), _float(bins)
    n_bins = bins.shape[0]
    survival = lax.cumsum(weights / weights.sum(axis=0, keepdims=True), axis=0, reverse=True)
    survival = survival / survival.max(axis=0, keepdims=True)
    floor = jnp.min(jnp.where(survival != 0, survival, jnp.inf))

    scaled = jnp.where(values > 0, values, 0.0) * (1.0 / (bins[1] - bins[0]))
    nearest = jnp.round(scaled)
    index = jnp.where(jnp.abs(scaled - nearest) == 0.5, jnp.ceil(scaled), nearest)
    index = jnp.minimum(index, n_bins - 1).astype(jnp.int32)
    if weights.ndim == 1:
        p = survival[index]
    else:
        p = jnp.take_along_axis(survival, index[None, :], axis=0)[0]
    return jnp.clip(jnp.where(values > 0, p, 1.0), floor, 1.0)


@functools.partial(jax.jit, static_argnames=("method",))
def fdr_logp(logp, method: str = "bh") -> jax.Array:
    """Benjamini-Hochberg or Benjamini-Yekutieli adjusted p-values, in log space.

    Parameters
    ----------
    logp : array-like of float, any shape
        Natural logs of the p-values of one family of tests. NaN marks an untested entry.
    method : {"bh", "by"}
        Benjamini & Hochberg (1995) for independent or positively dependent tests, or
        Benjamini & Yekutieli (2001) for arbitrary dependence.

    Returns
    -------
    jax.Array, same shape
        Natural logs of the adjusted p-values (at most 0). NaN entries stay NaN: they take no
        part in the step-up procedure but are counted in the number of tests (as R's
        ``p.adjust`` counts NAs).
    """
    _check_option("method", method, ("bh", "by"))
    logp = _float(logp)
    flat = logp.reshape(-1)
    n = flat.shape[0]
    order = jnp.argsort(flat)  # NaN sorts last, so the tested entries take ranks 1..m
    ranked = flat[order]
    log_factor = jnp.log(jnp.arange(1, n + 1, dtype=flat.dtype)) - math.log(max(n, 1))
    if method == "by":
        log_factor = log_factor - math.log(float(np.sum(1.0 / np.arange(1, n + 1))))
    adjusted = jnp.where(jnp.isnan(ranked), jnp.inf, ranked - log_factor)
    adjusted = jnp.minimum(lax.cummin(adjusted, reverse=True), 0.0)
    out = jnp.zeros_like(flat).at[order].set(adjusted)
    return jnp.where(jnp.isnan(flat), jnp.nan, out).reshape(logp.shape)


@jax.jit
def one_way(data, n) -> jax.Array:
    """One-way chi-square statistic of counts against a uniform expectation.

    Parameters
    ----------
    data : array-like, shape (n_voxels,) or (n_voxels, k)
        Counts per voxel, each out of ``n`` trials (e.g. the number of studies active there).
    n : int or float
        Number of trials behind every count.

    Returns
    -------
    jax.Array, shape of ``data``
        ``(x - e)**2 * n / (e * (n - e))`` with ``e`` the mean count over voxels (the
        binomial variance form of Yarkoni et al. 2011); 0 where ``e`` is 0 or ``n``.
    """
    data, n = _float(data), _float(n)
    expected = data.mean(axis=0)
    denominator = expected * (n - expected)
    empty = denominator == 0
    chi2 = (data - expected) ** 2 * n / jnp.where(empty, 1.0, denominator)
    return jnp.where(empty, 0.0, chi2)


@jax.jit
def two_way_counts(selected, unselected, n_selected, n_unselected) -> jax.Array:
    """Pearson chi-square of a 2x2 table per voxel, from active counts in two groups.

    Parameters
    ----------
    selected, unselected : array-like, shape (n_voxels,)
        Number of active studies at each voxel in the first and second group.
    n_selected, n_unselected : int or array-like, broadcastable to (n_voxels,)
        Number of studies in each group.

    Returns
    -------
    jax.Array, shape (n_voxels,)
        The statistic without continuity correction. Where a margin of the table is empty the
        statistic is undefined; it is set to 2.0, the value NiMARE (after Neurosynth) returns.
    """
    a, b = _float(selected), _float(unselected)
    n_selected, n_unselected = _float(n_selected), _float(n_unselected)
    total = n_selected + n_unselected
    active = a + b
    denominator = active * (total - active) * n_selected * n_unselected
    empty = denominator == 0
    chi2 = total * (a * n_unselected - b * n_selected) ** 2 / jnp.where(empty, 1.0, denominator)
    return jnp.where(empty, 2.0, chi2)
