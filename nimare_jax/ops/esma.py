"""Effect-size meta-analysis: voxel-wise estimators as pure JAX functions on arrays.

Also importable from :mod:`nimare_jax.meta.esma` (NiMARE's module path).

Every function takes arrays of shape ``(n_studies, n_voxels)`` (one row per study, one
column per voxel, or any other set of independent parallel analyses) and returns a dict of
``(n_voxels,)`` arrays. They are ``jit``-compiled, take their options as static Python
values, and compute in the dtype they are given (use ``jax.enable_x64`` for float64, as the
estimators of :mod:`nimare_jax.meta.ibma` do).

Missing data
------------
``valid`` (optional, boolean, same shape as the data) marks which study contributes to which
voxel. Each voxel is analysed over its own valid studies only -- the voxel-wise equivalent of
NiMARE's "liberal mask" bags -- so a study missing a voxel is dropped from that voxel, never
zero-filled. Values at invalid entries are ignored whatever they are (NaN included). Voxels
with fewer than two valid studies come back NaN.

All models are intercept-only (one pooled effect per voxel), which is what image-based
meta-analysis fits.

References
----------
Fisher (1946), Statistical Methods for Research Workers; Stouffer et al. (1949), The
American Soldier; DerSimonian & Laird (1986), Control Clin Trials 7:177; Hedges & Olkin
(1985), Statistical Methods for Meta-Analysis; Brockwell & Gordon (2001), Stat Med 20:825;
Knapp & Hartung (2003), Stat Med 22:2693; Zaykin (2011), J Evol Biol 24:1836.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import gammaincc, gammaln, log_ndtr

from nimare_jax.ops.stats import log_t_sf, logp_to_z, t_to_z, t_to_z_logp

__all__ = [
    "dersimonian_laird",
    "fisher",
    "hedges",
    "log_chi2_sf",
    "log_t_sf",
    "one_sample_t",
    "random_effects",
    "sample_size_based_likelihood",
    "stouffer",
    "t_to_z",
    "variance_based_likelihood",
    "weighted_least_squares",
    "weighted_one_sample_t",
]

_LOG2 = math.log(2.0)
_LOG_HALF = math.log(0.5)
_SERIES_ORDER = 8
_CF_ITERS = 100  # continued-fraction terms for chi-square tails that underflow
_GOLDEN = (3.0 - math.sqrt(5.0)) / 2.0
_SEARCH_ITERS = 45  # golden-section steps: shrink a scan cell by 0.618**45 ~ 4e-10
_TAU2_SEARCH_MAX = 1.0 - 1e-9
#: A residual sum of squares within this many units of rounding (``eps``) of the sum of
#: squares is zero: the values do not vary, and a t statistic is undefined (NaN).
_ZERO_SPREAD_ULPS = 1024


# --------------------------------------------------------------------------- helpers
def _as_float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(float)


def _prepare(y, valid):
    """Return ``(y with invalid entries zeroed, float validity weights, counts)``."""
    y = _as_float(y)
    if valid is None:
        valid = jnp.isfinite(y)
    valid = jnp.asarray(valid, bool) & jnp.isfinite(y)
    m = valid.astype(y.dtype)
    return jnp.where(valid, y, 0.0), m, m.sum(0)


def _fill(x, m, value=1.0):
    """Replace invalid entries of ``x`` by a harmless ``value``."""
    return jnp.where(m > 0, x, value)


def _prepare_with_variances(y, v, valid):
    """Validate effects and their sampling variances together.

    Parameters
    ----------
    y, v : array-like, shape (n_studies, n_voxels)
        Effect estimates and sampling variances.
    valid : array-like of bool or None
        Which entries contribute (besides needing finite ``y`` and ``v``).

    Returns
    -------
    y0, v1, m, k : jax.Array
        ``y`` with invalid entries zeroed, ``v`` with invalid entries set to one, the float
        validity weights and the per-voxel counts.
    """
    y = _as_float(y)
    v = jnp.asarray(v, y.dtype)
    ok = jnp.isfinite(v) if valid is None else jnp.asarray(valid, bool) & jnp.isfinite(v)
    y0, m, k = _prepare(y, ok)
    return y0, _fill(v, m), m, k


def check_method(method):
    """Return ``method`` lower-cased after checking it is ``"ml"`` or ``"reml"``.

    Parameters
    ----------
    method : str
        Likelihood method.

    Returns
    -------
    str
        ``"ml"`` or ``"reml"``.

    Raises
    ------
    ValueError
        For any other value.
    """
    method = str(method).lower()
    if method not in ("ml", "reml"):
        raise ValueError(f"method must be 'ml' or 'reml', got {method!r}")
    return method


def _sample_weights(weights, m):
    """Return per-entry weights: ``weights`` (per study or per entry, default 1) times ``m``."""
    if weights is None:
        return m
    w = _as_float(weights)
    return jnp.broadcast_to(w[:, None] if w.ndim == 1 else w, m.shape) * m


def _combined(z, log_p, k):
    """Return a combination test's maps, NaN where fewer than two studies contribute."""
    ok = k >= 2
    z, log_p = _nan_unless(ok, z, log_p)
    return {"z": z, "p": jnp.exp(log_p), "log_p": log_p, "dof": jnp.where(ok, k - 1, jnp.nan)}


def _signed_z_from_log_sf(log_sf):
    """Return ``isf(exp(log_sf))`` with its sign, accurate in both tails."""
    upper = logp_to_z(jnp.minimum(log_sf, _LOG_HALF), tail="one")
    log_cdf = jnp.log(-jnp.expm1(jnp.minimum(log_sf, -1e-300)))
    lower = -logp_to_z(jnp.minimum(log_cdf, _LOG_HALF), tail="one")
    return jnp.where(log_sf <= _LOG_HALF, upper, lower)


def _concordant(log_p_pos, log_p_neg):
    """Combine two directed log p-values into a two-sided one with a signed z.

    The concordant test of Winkler et al. (2016): the better of the two directed tests,
    Bonferroni-corrected for the two directions.
    """
    log_p = jnp.minimum(0.0, _LOG2 + jnp.minimum(log_p_pos, log_p_neg))
    z = logp_to_z(log_p, tail="two")
    return jnp.where(log_p_neg < log_p_pos, -z, z), log_p


def log_chi2_sf(q, dof):
    """Natural log of the chi-square survival function, without underflow.

    Uses the regularised upper incomplete gamma function where it is representable and,
    where it underflows, the continued fraction for ``Q(a, x)`` evaluated in log space
    (modified Lentz), whose prefactor ``exp(-x) x**a / Gamma(a)`` is taken as a logarithm.

    Parameters
    ----------
    q : array-like
        Statistics (>= 0).
    dof : array-like
        Degrees of freedom (> 0).

    Returns
    -------
    jax.Array
        ``log P(chi2_dof > q)``.
    """
    q = _as_float(q)
    a = jnp.asarray(dof, q.dtype) * 0.5
    x = jnp.maximum(q * 0.5, 0.0)
    a, x = jnp.broadcast_arrays(a, x)
    direct = gammaincc(a, x)
    tiny = jnp.finfo(q.dtype).tiny
    xs = jnp.maximum(x, a + 1.0)  # the fraction's domain; used only where direct underflows
    b0 = xs + 1.0 - a
    init = (b0, jnp.full_like(b0, 1.0 / tiny), 1.0 / b0, 1.0 / b0)

    def step(i, carry):
        b, c, d, h = carry
        an = -i * (i - a)
        b = b + 2.0
        d = an * d + b
        d = jnp.where(jnp.abs(d) < tiny, tiny, d)
        c = b + an / c
        c = jnp.where(jnp.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        return b, c, d, h * d * c

    h = lax.fori_loop(1, _CF_ITERS + 1, step, init)[3]
    log_cf = -xs + a * jnp.log(xs) - gammaln(a) + jnp.log(h)
    return jnp.where(direct > 1e3 * tiny, jnp.log(jnp.maximum(direct, tiny)), log_cf)


def _nan_unless(ok, *arrays):
    return tuple(jnp.where(ok, a, jnp.nan) for a in arrays)


# ------------------------------------------------------------------ combination tests
@functools.partial(jax.jit, static_argnames=("two_sided",))
def fisher(z, valid=None, weights=None, two_sided=True):
    """Fisher's combined probability test on z statistics.

    Each z is read as a one-sided p-value ``p = Phi(-z)``; ``X = -2 sum w log p`` is
    referred to ``c * chi2_f`` with ``c = sum w**2 / sum w`` and ``f = 2 (sum w)**2 /
    sum w**2`` (Brown's moment matching, which is exactly Fisher's ``chi2_{2k}`` for unit
    weights).

    Parameters
    ----------
    z : array-like, shape (n_studies, n_voxels)
        Z statistics.
    valid : array-like of bool, same shape, optional
        Which entries contribute (default: the finite ones).
    weights : array-like, shape (n_studies,) or (n_studies, n_voxels), optional
        Positive weights (NiMARE's ``use_sample_size`` passes the sample sizes).
    two_sided : bool
        Concordant two-sided test (NiMARE's default) or the directed one-sided test.

    Returns
    -------
    dict of jax.Array, each shape (n_voxels,)
        ``z`` (signed), ``p``, ``log_p`` (natural log) and ``dof`` (valid studies - 1).
    """
    z, m, k = _prepare(z, valid)
    w = _sample_weights(weights, m)
    sw, sw2 = w.sum(0), (w * w).sum(0)
    scale = sw2 / sw
    dof = 2.0 * sw * sw / sw2

    def directed(zz):
        chi2 = -2.0 * (w * log_ndtr(-zz, series_order=_SERIES_ORDER)).sum(0)
        return log_chi2_sf(chi2 / scale, dof)

    if two_sided:
        z_out, log_p = _concordant(directed(z), directed(-z))
    else:
        log_p = directed(z)
        z_out = _signed_z_from_log_sf(log_p)
    return _combined(z_out, log_p, k)


@functools.partial(jax.jit, static_argnames=("two_sided",))
def stouffer(z, valid=None, weights=None, two_sided=True):
    """Stouffer's weighted z test: ``sum(w z) / sqrt(sum(w**2))``.

    Parameters
    ----------
    z : array-like, shape (n_studies, n_voxels)
        Z statistics.
    valid : array-like of bool, same shape, optional
        Which entries contribute (default: the finite ones).
    weights : array-like, shape (n_studies,) or (n_studies, n_voxels), optional
        Positive weights; ``sqrt(sample size)`` gives the weighted Z of Zaykin (2011).
    two_sided : bool
        Concordant two-sided test (NiMARE's default) or the directed one-sided test.

    Returns
    -------
    dict of jax.Array, each shape (n_voxels,)
        ``z``, ``p``, ``log_p`` (natural log) and ``dof`` (valid studies - 1).
    """
    z, m, k = _prepare(z, valid)
    w = _sample_weights(weights, m)
    cz = (w * z).sum(0) / jnp.sqrt((w * w).sum(0))
    lp_pos = log_ndtr(-cz, series_order=_SERIES_ORDER)
    if two_sided:
        z_out, log_p = _concordant(lp_pos, log_ndtr(cz, series_order=_SERIES_ORDER))
    else:
        z_out, log_p = cz, lp_pos
    return _combined(z_out, log_p, k)


# ------------------------------------------------------------ random-effects models
@functools.partial(jax.jit, static_argnames=("small_sample_correction",))
def random_effects(y, v, tau2=0.0, valid=None, small_sample_correction="wald"):
    """Inverse-variance weighted estimate of the pooled effect at a given tau^2.

    Parameters
    ----------
    y : array-like, shape (n_studies, n_voxels)
        Effect estimates (betas).
    v : array-like, same shape
        Sampling variances (varcopes).
    tau2 : float or array-like, shape (n_voxels,)
        Between-study variance.
    valid : array-like of bool, optional
        Which entries contribute (default: where ``y`` and ``v`` are finite).
    small_sample_correction : {"wald", "knapp-hartung"}
        ``"wald"``: ``se = 1 / sqrt(sum w)`` and a normal reference. ``"knapp-hartung"``:
        the variance is scaled by ``sum w e**2 / (k - 1)`` and the statistic referred to
        ``t_{k-1}`` (Knapp & Hartung 2003), PyMARE's default for estimated tau^2.

    Returns
    -------
    dict of jax.Array, each shape (n_voxels,)
        ``est``, ``se``, ``z`` (signed, from the tail probability), ``p`` (two-sided),
        ``log_p`` (natural log), ``tau2`` and ``dof`` (valid studies - 1). z and p are NaN
        where the standard error is zero or undefined.
    """
    if small_sample_correction not in ("wald", "knapp-hartung"):
        raise ValueError(
            "small_sample_correction must be 'wald' or 'knapp-hartung', "
            f"got {small_sample_correction!r}"
        )
    y, v, m, k = _prepare_with_variances(y, v, valid)
    tau2 = jnp.broadcast_to(jnp.asarray(tau2, y.dtype), k.shape)
    est, w, sw = _weighted_mean(y, 1.0 / (v + tau2), m)
    var = 1.0 / sw
    dof = k - 1.0
    if small_sample_correction == "knapp-hartung":
        rss = (w * (y - est) ** 2).sum(0)
        scale = jnp.where(rss <= jnp.finfo(y.dtype).eps, 0.0, rss / jnp.maximum(dof, 1.0))
        var = var * scale
    se = jnp.sqrt(var)
    stat = est / se
    if small_sample_correction == "knapp-hartung":
        z, log_tail = t_to_z_logp(stat, jnp.maximum(dof, 1.0))
    else:
        log_tail = log_ndtr(-jnp.abs(stat), series_order=_SERIES_ORDER)
        z = stat
    log_p = jnp.minimum(log_tail + _LOG2, 0.0)
    defined = jnp.isfinite(se) & (se > 0) & (k >= 2)
    z, log_p = _nan_unless(defined, z, log_p)
    est, se, tau2 = _nan_unless(k >= 2, est, se, tau2)
    return {
        "est": est,
        "se": se,
        "z": z,
        "p": jnp.exp(log_p),
        "log_p": log_p,
        "tau2": tau2,
        "dof": jnp.where(k >= 2, dof, jnp.nan),
    }


@jax.jit
def weighted_least_squares(y, v, tau2=0.0, valid=None):
    """Weighted least squares with known tau^2 (Brockwell & Gordon 2001), Wald inference.

    Parameters
    ----------
    y, v : array-like, shape (n_studies, n_voxels)
        Effect estimates and sampling variances.
    tau2 : float or array-like, shape (n_voxels,)
        Assumed between-study variance (0: fixed effects).
    valid : array-like of bool, optional
        Which entries contribute.

    Returns
    -------
    dict of jax.Array
        As :func:`random_effects` with ``small_sample_correction="wald"``.
    """
    return random_effects(y, v, tau2, valid, small_sample_correction="wald")


def _dl_tau2(y, v, m, k):
    w = m / v
    sw = w.sum(0)
    mu = (w * y).sum(0) / sw
    q = (w * (y - mu) ** 2).sum(0)
    a = sw - (w * w).sum(0) / sw
    return jnp.where(k > 1, jnp.maximum(0.0, (q - (k - 1.0)) / a), 0.0)


def _hedges_tau2(y, v, m, k):
    mean = (m * y).sum(0) / k
    rss = (m * (y - mean) ** 2).sum(0)
    expected = (1.0 - 1.0 / k) * (m * v).sum(0)
    return jnp.where(k > 1, jnp.maximum(0.0, (rss - expected) / (k - 1.0)), 0.0)


def _pool_at_estimated_tau2(estimate_tau2, y, v, valid, small_sample_correction):
    """Estimate tau^2 voxel-wise, then pool with :func:`random_effects` at that tau^2.

    Parameters
    ----------
    estimate_tau2 : callable
        ``estimate_tau2(y0, v1, m, k) -> tau2`` on the outputs of
        :func:`_prepare_with_variances`.
    y, v, valid, small_sample_correction
        As in :func:`dersimonian_laird`.

    Returns
    -------
    dict of jax.Array
        The :func:`random_effects` maps at the estimated tau^2.
    """
    y0, v1, m, k = _prepare_with_variances(y, v, valid)
    tau2 = estimate_tau2(y0, v1, m, k)
    return random_effects(y, v, tau2, m > 0, small_sample_correction=small_sample_correction)


@functools.partial(jax.jit, static_argnames=("small_sample_correction",))
def dersimonian_laird(y, v, valid=None, small_sample_correction="knapp-hartung"):
    """DerSimonian-Laird random-effects meta-analysis (method-of-moments tau^2).

    ``tau2 = max(0, (Q - (k - 1)) / (sum w - sum w**2 / sum w))`` with ``w = 1 / v`` and
    Cochran's ``Q``; the pooled effect is then re-estimated with ``1 / (v + tau2)``.

    Parameters
    ----------
    y, v : array-like, shape (n_studies, n_voxels)
        Effect estimates and sampling variances.
    valid : array-like of bool, optional
        Which entries contribute.
    small_sample_correction : {"knapp-hartung", "wald"}
        See :func:`random_effects` (PyMARE's default is Knapp-Hartung).

    Returns
    -------
    dict of jax.Array
        As :func:`random_effects`, with the estimated ``tau2``.
    """
    return _pool_at_estimated_tau2(_dl_tau2, y, v, valid, small_sample_correction)


@functools.partial(jax.jit, static_argnames=("small_sample_correction",))
def hedges(y, v, valid=None, small_sample_correction="knapp-hartung"):
    """Hedges' (Hedges & Olkin 1985) random-effects meta-analysis.

    tau^2 is the excess of the unweighted residual variance over the mean sampling
    variance: ``max(0, (sum (y - ybar)**2 - (1 - 1/k) sum v) / (k - 1))``.

    Parameters
    ----------
    y, v : array-like, shape (n_studies, n_voxels)
        Effect estimates and sampling variances.
    valid : array-like of bool, optional
        Which entries contribute.
    small_sample_correction : {"knapp-hartung", "wald"}
        See :func:`random_effects`.

    Returns
    -------
    dict of jax.Array
        As :func:`random_effects`, with the estimated ``tau2``.
    """
    return _pool_at_estimated_tau2(_hedges_tau2, y, v, valid, small_sample_correction)


# ------------------------------------------------------------- likelihood estimators
def _scan_grid(dtype):
    """Search fractions of a bounded interval: crowded at both ends, linear inside."""
    ends = jnp.array([0.0, 1e-8, 1e-6, 1e-4, 1e-3, 5e-3, 1e-2], dtype)
    inner = jnp.linspace(0.025, 0.975, 39, dtype=dtype)
    return jnp.concatenate([ends, inner, 1.0 - ends[::-1]])


def _bounded_min(f, lo, hi):
    """Minimise ``f(x) -> (n,)`` over ``x`` in ``[lo, hi]`` (each ``(n,)``), per column.

    A scan over :func:`_scan_grid` finds the best grid point; golden-section search then
    refines it inside its two neighbouring cells. The better of the refined point and the
    best grid point is returned, so a minimum on an end (tau^2 = 0) is returned exactly.
    """
    grid = _scan_grid(lo.dtype)
    n = grid.shape[0]

    def clean(val):
        return jnp.where(jnp.isnan(val), jnp.inf, val)

    def scan(i, carry):  # one grid point at a time: memory of a single evaluation
        best, f_best = carry
        f_i = clean(f(lo + grid[i] * (hi - lo)))
        better = f_i < f_best
        return jnp.where(better, i, best), jnp.where(better, f_i, f_best)

    start = (jnp.zeros(lo.shape, jnp.int32), jnp.full(lo.shape, jnp.inf, lo.dtype))
    best, f_best = lax.fori_loop(0, n, scan, start)
    x_best = lo + grid[best] * (hi - lo)
    a = lo + grid[jnp.maximum(best - 1, 0)] * (hi - lo)
    b = lo + grid[jnp.minimum(best + 1, n - 1)] * (hi - lo)

    c = a + _GOLDEN * (b - a)
    d = b - _GOLDEN * (b - a)
    init = (a, b, c, d, clean(f(c)), clean(f(d)))

    def step(_, carry):
        a, b, c, d, fc, fd = carry
        left = fc <= fd  # minimum in [a, d]
        a2 = jnp.where(left, a, c)
        b2 = jnp.where(left, d, b)
        c2 = a2 + _GOLDEN * (b2 - a2)
        d2 = b2 - _GOLDEN * (b2 - a2)
        new_x = jnp.where(left, c2, d2)
        f_new = clean(f(new_x))
        fc2 = jnp.where(left, f_new, fd)
        fd2 = jnp.where(left, fc, f_new)
        c2 = jnp.where(left, c2, d)
        d2 = jnp.where(left, c, d2)
        return a2, b2, c2, d2, fc2, fd2

    a, b, c, d, fc, fd = lax.fori_loop(0, _SEARCH_ITERS, step, init)
    x_ref = jnp.where(fc <= fd, c, d)
    f_ref = jnp.minimum(fc, fd)
    return jnp.where(f_ref < f_best, x_ref, x_best)


def _weighted_mean(y, w, m):
    """Weighted mean over valid entries, with the masked weights and their sum ``sum(w)``."""
    w = w * m
    sw = w.sum(0)
    return (w * y).sum(0) / sw, w, sw


@functools.partial(jax.jit, static_argnames=("method", "small_sample_correction"))
def variance_based_likelihood(
    y, v, valid=None, method="ml", small_sample_correction="knapp-hartung"
):
    """Likelihood-based random-effects meta-analysis with known sampling variances.

    tau^2 maximises the (restricted) likelihood profiled over the pooled effect, searched
    as ``tau2 = s u / (1 - u)`` for ``u`` in ``[0, 1)`` where ``s`` is the
    DerSimonian-Laird estimate plus the mean sampling variance.

    Parameters
    ----------
    y, v : array-like, shape (n_studies, n_voxels)
        Effect estimates and sampling variances.
    valid : array-like of bool, optional
        Which entries contribute.
    method : {"ml", "reml"}
        Maximum or restricted maximum likelihood.
    small_sample_correction : {"knapp-hartung", "wald"}
        See :func:`random_effects`.

    Returns
    -------
    dict of jax.Array
        As :func:`random_effects`, with the estimated ``tau2``.
    """
    method = check_method(method)
    ml_tau2 = functools.partial(_ml_tau2, method=method)
    return _pool_at_estimated_tau2(ml_tau2, y, v, valid, small_sample_correction)


def _ml_tau2(y0, vf, m, k, method):
    """(Restricted) maximum-likelihood tau^2 with known sampling variances.

    Parameters
    ----------
    y0, vf, m, k : jax.Array
        Outputs of :func:`_prepare_with_variances`.
    method : {"ml", "reml"}
        Maximum or restricted maximum likelihood.

    Returns
    -------
    jax.Array, shape (n_voxels,)
        The tau^2 maximising the likelihood profiled over the pooled effect.
    """
    mean_v = (m * vf).sum(0) / k
    scale = _dl_tau2(y0, vf, m, k) + mean_v
    scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)

    def nll(u):
        tau2 = scale * u / (1.0 - u)
        mu, w, sw = _weighted_mean(y0, 1.0 / (vf + tau2), m)
        out = -0.5 * ((m * jnp.log(1.0 / (vf + tau2))).sum(0) - (w * (y0 - mu) ** 2).sum(0))
        if method == "reml":
            out = out + 0.5 * jnp.log(sw)
        return out

    zero = jnp.zeros_like(k)
    u = _bounded_min(nll, zero, zero + _TAU2_SEARCH_MAX)
    return scale * u / (1.0 - u)


@functools.partial(jax.jit, static_argnames=("method", "small_sample_correction"))
def sample_size_based_likelihood(
    y, n, valid=None, method="ml", small_sample_correction="knapp-hartung"
):
    """Likelihood-based meta-analysis with known sample sizes, unknown sampling variances.

    Each study's variance is ``tau2 + sigma2 / n`` with one ``sigma2`` shared by all
    studies. The likelihood is profiled over the effect and the overall scale
    ``tau2 + sigma2``, leaving the ratio ``tau2 / (tau2 + sigma2)`` in ``[0, 1]`` to search.

    Parameters
    ----------
    y : array-like, shape (n_studies, n_voxels)
        Effect estimates.
    n : array-like, shape (n_studies,) or (n_studies, n_voxels)
        Sample sizes.
    valid : array-like of bool, optional
        Which entries contribute.
    method : {"ml", "reml"}
        Maximum or restricted maximum likelihood.
    small_sample_correction : {"knapp-hartung", "wald"}
        See :func:`random_effects`.

    Returns
    -------
    dict of jax.Array
        As :func:`random_effects`, plus ``sigma2``.
    """
    method = check_method(method)
    y = _as_float(y)
    n = jnp.asarray(n, y.dtype)
    n = jnp.broadcast_to(n[:, None] if n.ndim == 1 else n, y.shape)
    y0, m, k = _prepare(y, valid)
    nf = _fill(n, m)
    ddof = 1.0 if method == "reml" else 0.0

    def profile(r):
        v_unit = r + (1.0 - r) / nf
        mu, w, sw = _weighted_mean(y0, 1.0 / v_unit, m)
        disp = jnp.maximum((w * (y0 - mu) ** 2).sum(0), jnp.finfo(y0.dtype).tiny)
        return v_unit, disp / (k - ddof), sw

    def nll(r):
        v_unit, scale, sw = profile(r)
        out = (m * jnp.log(v_unit)).sum(0) + (k - ddof) * (jnp.log(scale) + 1.0)
        if method == "reml":
            out = out + jnp.log(sw)
        return 0.5 * out

    zero = jnp.zeros_like(k)
    ratio = _bounded_min(nll, zero, zero + 1.0)
    _, scale, _ = profile(ratio)
    sigma2 = scale * (1.0 - ratio)
    tau2 = scale * ratio
    out = random_effects(
        y, sigma2 / nf, tau2, m > 0, small_sample_correction=small_sample_correction
    )
    out["sigma2"] = jnp.where(k >= 2, sigma2, jnp.nan)
    return out


# ------------------------------------------------------------------- one-sample t
@jax.jit
def one_sample_t(y, valid=None):
    """Ordinary one-sample t test of a zero mean, per voxel over its valid studies.

    Parameters
    ----------
    y : array-like, shape (n_studies, n_voxels)
        Values (betas).
    valid : array-like of bool, optional
        Which entries contribute.

    Returns
    -------
    dict of jax.Array
        ``t``, ``dof`` (valid studies - 1), ``z`` (same one-tailed probability as t),
        ``p`` (two-sided) and ``log_p`` (natural log); all NaN where fewer than two studies
        contribute or the values do not vary (zero variance up to rounding, e.g. identical
        images), where t is undefined.
    """
    y0, m, k = _prepare(y, valid)
    t = t_from_sums(y0.sum(0), (y0 * y0).sum(0), k)
    return _t_test_maps(t, k - 1.0, (k >= 2) & jnp.isfinite(t))


def _t_test_maps(t, dof, ok):
    """``t``, ``z``, two-sided ``p``, ``log_p`` and ``dof`` of t statistics; NaN unless ``ok``."""
    z, log_sf = t_to_z_logp(t, jnp.maximum(dof, 1.0))
    log_p = jnp.minimum(log_sf + _LOG2, 0.0)
    t, z, log_p, dof = _nan_unless(ok, t, z, log_p, dof)
    return {"t": t, "z": z, "p": jnp.exp(log_p), "log_p": log_p, "dof": dof}


def weighted_one_sample_t(y, weights, valid=None):
    """Weighted one-sample test of a zero mean with a CR2 robust variance, per voxel.

    The intercept-only weighted least-squares model with study weights ``q`` (Hedges, Tipton
    & Johnson 2010): ``mu = sum q y / W`` with ``W = sum q``, its variance estimated by the
    bias-reduced (CR2) sandwich ``V = sum q**2 (y - mu)**2 / (1 - h) / W**2`` with leverages
    ``h = q / W``, and ``t = mu / sqrt(V)`` referred to Student's t with Satterthwaite degrees
    of freedom (Tipton 2015; floored at 1). For one observation per cluster the
    Satterthwaite degrees of freedom have the closed form ``1 / (sum g**2 (1 - 2 h) +
    (sum h g)**2)`` with ``g = h / (1 - h)``, which is ``k - 1`` for equal weights (and then
    ``t`` is the ordinary one-sample t).

    Parameters
    ----------
    y : array-like, shape (n_studies, n_voxels)
        Values (betas).
    weights : array-like, shape (n_studies,) or (n_studies, n_voxels)
        Positive study weights (NiMARE's ``use_sample_size`` passes the sample sizes).
    valid : array-like of bool, optional
        Which entries contribute.

    Returns
    -------
    dict of jax.Array
        ``t``, ``dof``, ``z`` (same one-tailed probability as t), ``p`` (two-sided) and
        ``log_p`` (natural log); NaN where fewer than two studies contribute or the
        robust variance is zero (up to rounding).
    """
    y0, m, k = _prepare(y, valid)
    q, a, total, h = cr2_weights(weights, m)
    t = cr2_t((q * y0).sum(0), (a * y0).sum(0), (a * y0 * y0).sum(0), a.sum(0), total)
    ok = k >= 2
    g = jnp.where(m > 0, h / jnp.where(ok, 1.0 - h, 1.0), 0.0)
    dof = 1.0 / ((g * g * (1.0 - 2.0 * h)).sum(0) + jnp.square((h * g).sum(0)))
    dof = jnp.maximum(jnp.where(jnp.isfinite(dof), dof, 1.0), 1.0)
    return _t_test_maps(t, dof, ok & jnp.isfinite(t))


def cr2_weights(weights, m):
    """Per-voxel CR2 terms of study weights over the valid entries ``m``.

    Parameters
    ----------
    weights : array-like, shape (n_studies,) or (n_studies, n_voxels)
        Study weights.
    m : jax.Array, shape (n_studies, n_voxels), float
        1 where a study contributes to a voxel, else 0.

    Returns
    -------
    q, a, W, h : jax.Array
        Weights ``q`` (zero where invalid), adjusted weights ``a = q**2 / (1 - h)``, their
        total ``W`` per voxel and leverages ``h = q / W``.
    """
    q = jnp.asarray(weights, m.dtype)
    q = (q[:, None] if q.ndim == 1 else q) * m
    total = q.sum(0)
    h = q / jnp.where(total > 0, total, 1.0)
    a = q * q / jnp.where(h < 1.0, 1.0 - h, 1.0)
    return q, a, total, h


def cr2_t(weighted_sum, adjusted_sum, adjusted_sum_squares, adjusted_weight_sum, total, eps=None):
    """CR2 t from sums that are linear in the (sign-flipped) values and the fixed rest.

    Parameters
    ----------
    weighted_sum, adjusted_sum, adjusted_sum_squares : jax.Array, shape (n_voxels,)
        ``sum q y``, ``sum a y`` and ``sum a y**2`` (:func:`cr2_weights`).
    adjusted_weight_sum, total : jax.Array, shape (n_voxels,)
        ``sum a`` and ``sum q``.
    eps : float, optional
        Rounding unit of the sums (default: that of their dtype).

    Returns
    -------
    jax.Array, shape (n_voxels,)
        The t statistic; NaN where the robust variance is zero up to rounding
        (:func:`_has_spread`).
    """
    mean = weighted_sum / total
    meat = adjusted_sum_squares - 2.0 * mean * adjusted_sum + mean * mean * adjusted_weight_sum
    spread = _has_spread(meat, adjusted_sum_squares, eps)
    return jnp.where(spread, weighted_sum / jnp.sqrt(jnp.where(spread, meat, 1.0)), jnp.nan)


def t_from_sums(s1, s2, k, eps=None):
    """One-sample t from the sum and the sum of squares of ``k`` values.

    Parameters
    ----------
    s1, s2 : jax.Array
        Sum and sum of squares of the values.
    k : jax.Array or float
        Number of values.
    eps : float, optional
        Rounding unit of the sums (default: that of their dtype).

    Returns
    -------
    jax.Array
        The t statistic; NaN where the values do not vary (zero variance up to rounding,
        :func:`_has_spread`).
    """
    mean = s1 / k
    rss = s2 - s1 * mean
    spread = _has_spread(rss, s2, eps)
    var = jnp.where(spread, rss, 1.0) / (k - 1.0)
    return jnp.where(spread, mean / jnp.sqrt(var / k), jnp.nan)


def _has_spread(residual_ss, total_ss, eps=None):
    """Return where a residual sum of squares exceeds the rounding error of the total.

    Parameters
    ----------
    residual_ss, total_ss : jax.Array
        Sums of squares about the mean and about zero (same shape).
    eps : float, optional
        Rounding unit of the sums (default: the machine epsilon of their dtype).

    Returns
    -------
    jax.Array of bool
        ``residual_ss > _ZERO_SPREAD_ULPS * eps * total_ss``: False for values that are
        all equal (their residual is zero, or rounding error of the total).
    """
    eps = jnp.finfo(residual_ss.dtype).eps if eps is None else eps
    return residual_ss > _ZERO_SPREAD_ULPS * eps * total_ss
