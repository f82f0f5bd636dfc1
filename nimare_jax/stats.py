"""Statistical helpers with NiMARE's names and signatures, for NumPy callers.

Each function takes NumPy (or array-like) input and returns NumPy float64 output. The
numerics are the jit-compiled kernels of :mod:`nimare_jax.ops.stats`, run here in float64;
estimators call those kernels directly inside their own ``jit``.

Tail probabilities are handled in log space, so ``p_to_z``, ``t_to_z`` and ``fdr`` stay exact
for p-values far below what NiMARE releases before 0.21 could represent (they floored p at
float32 resolution, capping ``p_to_z`` near z = 14.1 and ``t_to_z`` near z = 8.1).
"""

from __future__ import annotations

import jax
import numpy as np

from nimare_jax.docstrings import fill_doc
from nimare_jax.ops import stats as ops

_SMALLEST_P = np.nextafter(0.0, 1.0)  # smallest positive double, NiMARE's floor on p


def _run64(kernel, *arrays, **options) -> np.ndarray:
    """Run an ops kernel in float64 on array-like input; return a writable NumPy array."""
    with jax.enable_x64(True):
        return np.array(kernel(*(np.asarray(a, dtype=float) for a in arrays), **options))


def _scalar_if_0d(out: np.ndarray):
    return out[()] if out.ndim == 0 else out


def one_way(data, n) -> np.ndarray:
    """One-way chi-square test of counts against a uniform distribution over voxels.

    Parameters
    ----------
    data : array-like, shape (n_voxels,)
        Counts per voxel (e.g. the number of studies active there), in-mask voxels only.
    n : int
        Number of trials behind every count (e.g. the number of studies).

    Returns
    -------
    numpy.ndarray, shape (n_voxels,)
        Chi-square statistics (1 degree of freedom); 0 where the mean count is 0 or ``n``.

    Examples
    --------
    >>> one_way([0, 2, 4], 4)
    array([4., 0., 4.])
    """
    return _run64(ops.one_way, data, n)


def two_way(cells) -> np.ndarray:
    """Two-way chi-square test of independence for one 2x2 table per voxel.

    Parameters
    ----------
    cells : array-like, shape (n_voxels, 2, 2)
        Contingency tables; ``cells[:, 0, :]`` are the active counts of the two groups and
        ``cells[:, :, g].sum(1)`` is the size of group ``g``.

    Returns
    -------
    numpy.ndarray, shape (n_voxels,)
        Pearson chi-square statistics without continuity correction. Tables with an empty
        margin get 2.0, as in NiMARE and Neurosynth.

    Examples
    --------
    >>> two_way([[[10, 0], [0, 10]]])
    array([20.])
    """
    cells = np.asarray(cells, dtype=float)
    if cells.ndim != 3 or cells.shape[1:] != (2, 2):
        raise ValueError(f"cells must have shape (n_voxels, 2, 2), got {cells.shape}")
    margins = cells.sum(axis=1)
    return _run64(ops.two_way_counts, cells[:, 0, 0], cells[:, 0, 1], margins[:, 0], margins[:, 1])


def pearson(x, y) -> np.ndarray:
    """Correlate one vector with each row of a matrix.

    Parameters
    ----------
    x : array-like, shape (n,) or (1, n)
        The vector.
    y : array-like, shape (m, n)
        Rows to correlate with ``x``.

    Returns
    -------
    numpy.ndarray, shape (m,)
        Pearson correlation coefficients (NaN for a constant row).

    Examples
    --------
    >>> pearson([1, 2, 3], [[2, 4, 6], [3, 2, 1]])
    array([ 1., -1.])
    """
    x = np.asarray(x, dtype=float).reshape(-1)
    y = np.atleast_2d(np.asarray(y, dtype=float))
    if y.shape[1] != x.size:
        raise ValueError(f"x has {x.size} elements but the rows of y have {y.shape[1]}")
    xc = x - x.mean()
    yc = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return yc @ xc / (np.linalg.norm(yc, axis=1) * np.linalg.norm(xc))


def null_to_p(test_value, null_array, tail: str = "two", symmetric: bool = False):
    """Return p-values of test values against an empirical null distribution.

    Parameters
    ----------
    test_value : float or array-like
        Observed statistics.
    null_array : array-like, shape (n_null,)
        Null sample (e.g. per-permutation maxima).
    tail : {"two", "upper", "lower"}
        ``"upper"``: the fraction of the null at or above the value; ``"lower"``: at or below;
        ``"two"``: twice the smaller of the two.
    symmetric : bool
        With ``tail="two"``, assume a null symmetric about zero and return the fraction of
        ``|null| >= |value|`` (lower variance than doubling).

    Returns
    -------
    float or numpy.ndarray
        P-values bounded to ``[1 / n_null, 1 - 1 / n_null]``, never 0 (with one null value
        the lower bound wins and p is 1: :func:`nimare_jax.ops.stats.clip_null_p`); a float
        when ``test_value`` is a Python number, as in NiMARE.

    Examples
    --------
    >>> null_to_p(3.0, [0, 1, 2, 3, 4], tail="upper")
    0.4
    """
    null_array = np.asarray(null_array, dtype=float).reshape(-1)
    if null_array.size == 0:
        raise ValueError("null_array is empty")
    p = _run64(ops.null_to_p, test_value, null_array, tail=tail, symmetric=bool(symmetric))
    return float(p) if isinstance(test_value, int | float) else np.atleast_1d(p)


def nullhist_to_p(test_values, histogram_weights, histogram_bins):
    """Return one-sided p-values of test values against a null histogram.

    Parameters
    ----------
    test_values : float or array-like, shape (n_values,)
        Observed statistics.
    histogram_weights : array-like, shape (n_bins,) or (n_bins, n_values)
        Counts or weights of the null histogram (not cumulative); one shared histogram or
        one per test value.
    histogram_bins : array-like, shape (n_bins,)
        Equally spaced bin centres starting at 0 (not :func:`numpy.histogram` edges).

    Returns
    -------
    float or numpy.ndarray
        ``P(null >= value)``: the survival function at the value's bin, 1 for values
        ``<= 0``, floored at the smallest non-zero survival probability.

    Notes
    -----
    As in NiMARE, a value's bin is ``round(value / step)`` with halves rounded away from zero
    and ``step = bins[1] - bins[0]``; ``bins[0]`` is assumed to be 0, not subtracted. Values
    past the last bin use the last bin.

    Examples
    --------
    >>> nullhist_to_p([0.0, 0.1, 0.2], [2, 1, 1], [0.0, 0.1, 0.2])
    array([1.  , 0.5 , 0.25])
    """
    values = np.asarray(test_values, dtype=float)
    weights = np.asarray(histogram_weights, dtype=float)
    bins = np.asarray(histogram_bins, dtype=float)
    if values.ndim > 1 or bins.ndim != 1 or bins.size < 2:
        raise ValueError(
            "test_values must be a scalar or 1-D and histogram_bins 1-D with at least 2 bins; "
            f"got shapes {values.shape} and {bins.shape}"
        )
    expected = [(bins.size,), (bins.size, values.size)]
    if weights.shape not in expected:
        raise ValueError(
            f"histogram_weights must have shape {expected[0]} or {expected[1]}, "
            f"got {weights.shape}"
        )
    p = _run64(ops.nullhist_to_p, values.reshape(-1), weights, bins)
    return _scalar_if_0d(p.reshape(values.shape))


def p_to_z(p, tail: str = "two"):
    """Convert p-values to unsigned z-values.

    Parameters
    ----------
    p : float or array-like
        P-values; 0 is read as the smallest positive double, as NiMARE does.
    tail : {"two", "one"}
        Whether the p-values are two-sided or one-sided.

    Returns
    -------
    float or numpy.ndarray
        ``z >= 0``: ``isf(p / 2)`` or ``isf(p)``. A one-sided ``p >= 0.5`` gives 0.

    Notes
    -----
    Computed from ``log(p)`` by :func:`nimare_jax.ops.stats.logp_to_z`, exact to a few ulp for
    every positive double (``p = 1e-300`` gives ``z = 37.0``; ``p = 0`` gives 38.5).

    Examples
    --------
    >>> float(round(p_to_z(0.05), 4))
    1.96
    """
    logp = np.log(np.clip(np.asarray(p, dtype=float), _SMALLEST_P, 1.0))
    return _scalar_if_0d(_run64(ops.logp_to_z, logp, tail=tail))


def z_to_p(z, tail: str = "two"):
    """Convert z-values to p-values.

    Parameters
    ----------
    z : float or array-like
        Z-statistics.
    tail : {"two", "one"}
        ``"two"``: ``P(|Z| >= |z|)``; ``"one"``: ``P(Z >= z)``.

    Returns
    -------
    float or numpy.ndarray
        P-values, floored at the smallest positive double (reached near ``|z| = 38.5``).

    Examples
    --------
    >>> float(round(z_to_p(1.959964), 6))
    0.05
    """
    return _scalar_if_0d(np.maximum(np.exp(_run64(ops.z_to_logp, z, tail=tail)), _SMALLEST_P))


@fill_doc
def t_to_z(t_values, dof):
    """Convert t-statistics to z-statistics with the same tail probability.

    Parameters
    ----------
    %(t_values_dof)s

    Returns
    -------
    float or numpy.ndarray
        Z-statistics with the sign of ``t_values``.

    Notes
    -----
    Runs :func:`nimare_jax.ops.stats.t_to_z` in float64: the smaller tail is taken in log
    space, so the result has no cap (NiMARE before 0.21 saturated at ``|z| = 8.1``), and
    near ``t = 0`` z keeps its relative precision.

    Examples
    --------
    >>> float(round(t_to_z(2.0, 10), 4))
    1.7904
    """
    return _scalar_if_0d(_run64(ops.t_to_z, t_values, dof) + 0.0)


def fdr(p, q: float = 0.05, method: str = "bh") -> np.ndarray:
    """Adjust p-values for the false discovery rate.

    Parameters
    ----------
    p : array-like of float
        P-values of one family of tests, any shape; NaN marks an untested entry.
    q : float
        Accepted for NiMARE compatibility; adjusted p-values do not depend on it (compare
        them with ``q`` to threshold).
    method : {"bh", "by"}
        Benjamini-Hochberg (independent or positively dependent tests) or
        Benjamini-Yekutieli (any dependence).

    Returns
    -------
    numpy.ndarray, shape of ``p``
        Adjusted p-values; NaN stays NaN but counts as a test.

    Notes
    -----
    The step-up procedure runs on ``log(p)`` (:func:`nimare_jax.ops.stats.fdr_logp`), so
    p-values down to the smallest double keep full relative precision.

    Examples
    --------
    >>> fdr([0.01, 0.04, 0.03, 0.5])
    array([0.04      , 0.05333333, 0.05333333, 0.5       ])
    """
    p = np.asarray(p, dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(
            f"p-values must lie in [0, 1]; got range [{np.nanmin(p)}, {np.nanmax(p)}]"
        )
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    return np.exp(_run64(ops.fdr_logp, logp, method=method))


# ----------------------------------------------------------------------------- log space
# NiMARE 0.21+ helpers on ``nlogp``, the natural logarithm of a p-value (at most 0, and not
# negated: unlike the ``logp = -log10(p)`` maps). Used by the decoders.


def _check_nlogp(nlogp) -> np.ndarray:
    """Return ``nlogp`` as a float64 array; a positive entry (a p-value, not its log) raises."""
    nlogp = np.asarray(nlogp, dtype=float)
    if np.any(nlogp > 0):
        raise ValueError(
            "nlogp must hold natural logarithms of p-values (at most 0); got a maximum of "
            f"{np.nanmax(nlogp)} - pass np.log(p), not p"
        )
    return nlogp


def two_way_counts(selected, unselected, n_selected, n_unselected) -> np.ndarray:
    """Two-way chi-square test from the active counts of two groups at each voxel.

    Parameters
    ----------
    selected, unselected : array-like, shape (n_voxels,)
        Number of active experiments at each voxel in each group.
    n_selected, n_unselected : int or array-like
        Size of each group (broadcastable to the counts).

    Returns
    -------
    numpy.ndarray of float64, shape (n_voxels,)
        Pearson chi-square of each 2x2 table (no continuity correction); 2.0 where a margin
        of the table is empty, as in NiMARE.

    Examples
    --------
    >>> two_way_counts([10, 0], [0, 0], 10, 10)
    array([20.,  2.])
    """
    return _run64(ops.two_way_counts, selected, unselected, n_selected, n_unselected)


def nlogp_bonferroni(nlogp) -> np.ndarray:
    """Bonferroni correction of natural-log p-values.

    Parameters
    ----------
    nlogp : array-like of float
        ``log(p)`` of one family of tests.

    Returns
    -------
    numpy.ndarray of float64
        ``min(log(p) + log(n_tests), 0)``: the log of the corrected p-values, exact however
        small ``p`` is.

    Raises
    ------
    ValueError
        If an entry is positive (p-values passed instead of their logarithms).

    Examples
    --------
    >>> float(np.exp(nlogp_bonferroni(np.log([0.01, 0.5]))[0]).round(12))
    0.02
    """
    nlogp = _check_nlogp(nlogp)
    return np.minimum(nlogp + np.log(nlogp.size), 0.0)


def nlogp_fdr(nlogp, method: str = "bh") -> np.ndarray:
    """Adjust natural-log p-values for the false discovery rate (Benjamini-Hochberg/Yekutieli).

    Parameters
    ----------
    nlogp : array-like of float
        ``log(p)`` of one family of tests; NaN marks a test that could not be evaluated.
    method : {"bh", "by"}
        Benjamini-Hochberg or Benjamini-Yekutieli.

    Returns
    -------
    numpy.ndarray of float64, shape of ``nlogp``
        Logs of the adjusted p-values. NaN stays NaN and counts in the number of tests (as
        R's ``p.adjust`` and NiMARE do).

    Raises
    ------
    ValueError
        If an entry is positive, or ``method`` is unknown.

    Examples
    --------
    >>> np.exp(nlogp_fdr(np.log([0.01, 0.04, 0.03, 0.5]))).round(4)
    array([0.04  , 0.0533, 0.0533, 0.5   ])
    """
    nlogp = _check_nlogp(nlogp)
    return _run64(ops.fdr_logp, nlogp, method=method)
