"""Analytic (approximate) null distributions of CBMA statistics.

The ALE approximate null (Eickhoff et al. 2012, NeuroImage 59:2349) is the distribution of the
union ``1 - prod_e(1 - MA_e)`` when each experiment's MA values are drawn independently from
its own MA histogram over the mask. It is built by folding the experiments' histograms in one
at a time on a fixed grid of bin centres (width 1e-5).

This runs once per fit on host arrays in float64: its output feeds p-values down to ~1e-15,
where float32 accumulation would lose the tail. The work is a vectorised outer product over
the non-zero bins of the two histograms, summed with ``numpy.bincount``.
"""

from __future__ import annotations

import numpy as np

STEP = 1e-5


def nearest_bin(values, inv_step: float, n_bins: int) -> np.ndarray:
    """Index of the nearest bin centre (ties upward), clipped to ``[0, n_bins)``.

    Parameters
    ----------
    values : array-like
        Values on the grid's scale.
    inv_step : float
        Inverse bin width.
    n_bins : int
        Number of bins.

    Returns
    -------
    numpy.ndarray of int
        Bin indices.
    """
    scaled = np.asarray(values, dtype=np.float64) * inv_step
    lower = np.floor(scaled)
    idx = lower.astype(np.int64) + (scaled - lower >= 0.5)
    return np.clip(idx, 0, n_bins - 1)


def ale_histogram_bins(ma_max: np.ndarray) -> np.ndarray:
    """Bin centres of the ALE null: 0 to the largest attainable ALE, step 1e-5.

    Parameters
    ----------
    ma_max : numpy.ndarray, shape (n_exp,)
        Largest MA value of each experiment.

    Returns
    -------
    numpy.ndarray
        Bin centres, rounded to 5 decimals.
    """
    inv = 1.0 / STEP
    ceiled = np.ceil(np.asarray(ma_max, np.float64) * inv) / inv
    max_ale = 1.0 - np.prod(1.0 - ceiled)
    return np.round(np.arange(0, max_ale + 1.5 * STEP, STEP), 5)


def fold_union_histograms(exp_hists: np.ndarray, bin_centers: np.ndarray) -> np.ndarray:
    """Distribution of ``1 - prod(1 - X_e)`` for independent X_e with the given histograms.

    Parameters
    ----------
    exp_hists : numpy.ndarray, shape (n_exp, n_bins)
        Probability of each bin for each experiment (rows sum to 1).
    bin_centers : numpy.ndarray, shape (n_bins,)
        Equally spaced bin centres starting at 0.

    Returns
    -------
    numpy.ndarray, shape (n_bins,)
        Probability of each bin of the union; values fall into the nearest bin centre.
    """
    n_bins = bin_centers.shape[0]
    inv_step = 1.0 / (bin_centers[1] - bin_centers[0])
    one_minus = 1.0 - bin_centers
    out = np.asarray(exp_hists[0], np.float64).copy()
    for hist in exp_hists[1:]:
        a = np.flatnonzero(hist)
        b = np.flatnonzero(out)
        score = 1.0 - one_minus[a][:, None] * one_minus[b][None, :]
        weight = hist[a][:, None] * out[b][None, :]
        out = np.bincount(
            nearest_bin(score, inv_step, n_bins).ravel(), weights=weight.ravel(), minlength=n_bins
        )
    return out


def histogram_to_threshold(weights: np.ndarray, bin_centers: np.ndarray, p: float) -> float:
    """Smallest statistic whose upper-tail probability under the null histogram is ``p``.

    As NiMARE: the bin centre just below the first bin whose normalised upper tail is
    ``<= p``.

    Parameters
    ----------
    weights : numpy.ndarray, shape (n_bins,)
        Null histogram (unnormalised).
    bin_centers : numpy.ndarray, shape (n_bins,)
        Bin centres.
    p : float
        Uncorrected p-value.

    Returns
    -------
    float
        Threshold on the statistic.
    """
    tail = np.cumsum(np.asarray(weights, np.float64)[::-1])[::-1]
    tail /= tail[0]
    below = np.flatnonzero(tail <= p)
    if below.size == 0:
        return float(bin_centers[-1])
    return float(bin_centers[max(0, below[0] - 1)])
