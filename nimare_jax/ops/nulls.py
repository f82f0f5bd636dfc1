"""Analytic (approximate) null distributions of CBMA statistics.

The ALE approximate null (Eickhoff et al. 2012, NeuroImage 59:2349) is the distribution of the
union ``1 - prod_e(1 - MA_e)`` when each experiment's MA values are drawn independently from
its own MA histogram over the mask. It is built by folding the experiments' histograms in one
at a time on a fixed grid of bin centres (width 1e-5).

This runs once per fit on host arrays in float64: its output feeds p-values down to ~1e-15,
where float32 accumulation would lose the tail. Each non-zero bin of an experiment moves the
running histogram as a block, merging the neighbouring bins its union rounds together
(:func:`fold_union_histograms`): a few passes over the running histogram per bin. An
experiment's bins are shared between two threads (a fixed split, so the result does not
depend on timing).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

STEP = 1e-5
_SEGMENTS = 40  # below this many merges, runs are added one by one (faster than np.delete)


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


def _union_bin(one_minus_a: float, one_minus: np.ndarray, inv_step: float) -> np.ndarray:
    """Bin of ``1 - (1 - a)(1 - b)`` for every centre ``b`` (nearest centre, not clipped)."""
    score = 1.0 - one_minus_a * one_minus
    score *= inv_step
    lower = np.floor(score)
    return lower.astype(np.intp) + (score - lower >= 0.5)


@functools.lru_cache(maxsize=1024)
def _union_merges(a_bin: int, step: float) -> tuple[int, np.ndarray]:
    """Where the union with bin ``a_bin`` maps consecutive bins of the other operand together.

    On the grid of :func:`ale_histogram_bins` (centres ``j * step`` rounded to 5 decimals,
    at most ``1 / step + 2`` of them, whatever the experiments), the bin of the union of
    centres ``a_bin`` and ``j`` is ``first + j - (number of merges <= j)``: it grows by one
    from ``j - 1`` to ``j``, or stays (a merge). Returns ``first`` and the merges (int32,
    sorted; about ``a_bin`` of them for a full grid), so an experiment's fold is a shifted
    copy of the running histogram with the merged bins added together.

    In exact arithmetic the union is ``a_bin + j - a_bin j step`` bins, so merges happen
    where ``a_bin j step`` passes ``k + 1/2``; the float bins are evaluated within two
    bins of each such point (float rounding moves a merge by at most one).
    """
    n = round(1.0 / step) + 2
    inv_step = 1.0 / step
    one_minus_a = 1.0 - np.round(np.array([a_bin]) * step, 5)

    def union_bin(j):
        return _union_bin(one_minus_a, 1.0 - np.round(j * step, 5), inv_step)

    slope = a_bin * step
    crossings = (np.arange(int(slope * n) + 1) + 0.5) / slope if a_bin else np.zeros(0)
    near = np.unique(np.ceil(crossings).astype(np.int64)[:, None] + np.arange(-2, 3))
    near = near[(near >= 1) & (near < n)]
    growth = union_bin(near) - union_bin(near - 1)
    if np.any((growth < 0) | (growth > 1)):  # impossible for ALE values in [0, 1]
        raise ValueError(f"union bins of bin {a_bin} do not grow by 0 or 1")
    merges = near[growth == 0].astype(np.int32)
    merges.flags.writeable = False
    return int(union_bin(np.zeros(1, np.int64))[0]), merges


def fold_union_histograms(
    exp_hists: np.ndarray, bin_centers: np.ndarray, initial: np.ndarray | None = None
) -> np.ndarray:
    """Distribution of ``1 - prod(1 - X_e)`` for independent X_e with the given histograms.

    Experiments can be folded in several calls (a chunk at a time), each continuing from the
    previous result (``initial``), with the same arithmetic as one call over all of them;
    the grid may grow between calls, as the bins of :func:`ale_histogram_bins` do when
    experiments are added.

    Parameters
    ----------
    exp_hists : numpy.ndarray, shape (n_exp, m)
        Probability of each of the first ``m <= n_bins`` bins for each experiment (rows sum
        to 1; later bins are empty).
    bin_centers : numpy.ndarray, shape (n_bins,)
        The grid of :func:`ale_histogram_bins` (centres ``j * step`` rounded to 5
        decimals). Unions beyond the last centre fall into it.
    initial : numpy.ndarray, shape (n,), optional
        Distribution of the union of the experiments folded so far, on the first
        ``n <= n_bins`` bins. None: start from the first row of ``exp_hists``.

    Returns
    -------
    numpy.ndarray, shape (n_bins,)
        Probability of each bin of the union; values fall into the nearest bin centre.

    Notes
    -----
    The union of bins ``a`` and ``b`` falls in bin ``a + b - round(a b step)`` (up to the
    float rounding, which is reproduced exactly): for a fixed bin ``a`` of the experiment,
    the running histogram moves as a block, with neighbouring bins merged where the
    rounded product steps (:func:`_union_merges`). Each non-zero bin of the experiment
    therefore costs a few passes over the running histogram, not a scatter of an outer
    product. Two threads fold alternate bins of each experiment into two partial
    histograms, added in a fixed order (deterministic; the summation order differs from a
    single loop over the bins by float64 rounding only, ~1e-14 relative).
    """
    n_bins = bin_centers.shape[0]
    step = float(bin_centers[1] - bin_centers[0])
    out = np.zeros(n_bins)
    if initial is None:
        initial, exp_hists = exp_hists[0], exp_hists[1:]
    out[: len(initial)] = initial
    # A pool per call, not per module: a process forked after a fit must not inherit a pool
    # whose threads are gone.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="nimare_jax-fold") as pool:
        for hist in exp_hists:
            nonzero = np.flatnonzero(out)
            lo, hi = nonzero[0], nonzero[-1] + 1
            span = out[lo:hi]
            bins = np.flatnonzero(hist)
            # The experiment's bins are split in two fixed halves, folded by two threads
            # (NumPy releases the GIL inside each pass) into two partial histograms, added.
            halves = [
                pool.submit(_fold_bins, span, lo, hist, part, step, n_bins)
                for part in (bins[0::2], bins[1::2])
            ]
            out = halves[0].result()
            out += halves[1].result()
    return out


def _fold_bins(span, lo, hist, bins, step, n_bins):
    """Fold the experiment bins ``bins`` into the running histogram; return the new one.

    The sum over ``a`` in ``bins`` of ``hist[a]`` times the running histogram moved by the
    union with bin ``a`` (``span``: its non-zero part, starting at bin ``lo``).
    """
    hi = lo + span.size
    moved = np.empty_like(span)
    new = np.zeros(n_bins)
    for a in bins:
        first, merges = _union_merges(int(a), step)
        inner = merges[np.searchsorted(merges, lo, "right") : np.searchsorted(merges, hi)]
        start = first + lo - np.searchsorted(merges, lo, "right")
        np.multiply(span, hist[a], out=moved)
        if inner.size < _SEGMENTS and start + span.size - inner.size < n_bins:
            # few merges, no clipping: add the runs between merges where they land
            # (a merged bin adds to the bin of the one before it)
            bounds = [0, *(inner - lo).tolist(), span.size]
            for k in range(len(bounds) - 1):
                dst = start + bounds[k] - k
                new[dst : dst + bounds[k + 1] - bounds[k]] += moved[bounds[k] : bounds[k + 1]]
            continue
        block = np.delete(moved, inner - lo)
        # merged bins join the bin of the last kept one before them
        np.add.at(block, inner - lo - np.arange(1, inner.size + 1), moved[inner - lo])
        cut = max(0, min(block.size, n_bins - 1 - start))
        new[start : start + cut] += block[:cut]
        if cut < block.size:
            new[n_bins - 1] += block[cut:].sum()
    return new


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
