"""Analytic (approximate) null distributions of CBMA statistics.

The ALE approximate null (Eickhoff et al. 2012, NeuroImage 59:2349) is the distribution of the
union ``1 - prod_e(1 - MA_e)`` when each experiment's MA values are drawn independently from
its own MA histogram over the mask. It is built by folding the experiments' histograms in one
at a time on a fixed grid of bin centres (width 1e-5).

This runs once per fit on host arrays in float64: its output feeds p-values down to ~1e-15,
where float32 accumulation would lose the tail. For one experiment bin, each bin of the new
histogram collects one bin of the running histogram, or two neighbours the union rounds
together, so the fold is a gather: per block of 64 new bins and per experiment bin, one
window of the running histogram (:func:`fold_union_histograms`), summed over the
experiment's bins weighted by their probabilities. Half the blocks are folded on a second
thread (disjoint outputs, so the result does not depend on timing).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

STEP = 1e-5
_BLOCK = 64  # output bins per gathered window of the running histogram
_CHUNK = 2**17  # products per gather (bins x blocks x _BLOCK): 1 MB, reused without page faults
_THREAD_CHUNKS = 8  # chunks of an experiment from which half go to a second thread
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


@jax.jit
def ale_stat_bins(log_acc, inv_step, n_bins):
    """ALE map from ``-log(1 - ALE)``, and where each value falls in the null histogram.

    Run under ``jax.enable_x64(True)``, with ``inv_step = 1 / (bins[1] - bins[0])`` of the
    null's bin centres, the bin is the one :func:`nimare_jax.ops.stats.nullhist_to_p` reads
    for the float32 ALE value (``round(value * inv_step)``, halves upward, clipped), so a
    p-value table over bins gives every voxel's p-value.

    Parameters
    ----------
    log_acc : float array, shape (n_voxels,)
        ``-log(1 - ALE)`` (the summary's accumulator).
    inv_step : float
        Inverse bin width of the null histogram.
    n_bins : int
        Number of bins of the null histogram.

    Returns
    -------
    stat : jax.Array, shape (n_voxels,), float32
        ``-expm1(-log_acc)``, the ALE map.
    key : jax.Array, shape (n_voxels,), int32
        0 where the ALE value is not positive (p-value 1), else 1 + its bin.
    """
    stat = (-jnp.expm1(-log_acc)).astype(jnp.float32)
    value = stat.astype(log_acc.dtype)
    scaled = jnp.where(value > 0, value, 0.0) * inv_step
    nearest = jnp.round(scaled)
    index = jnp.where(jnp.abs(scaled - nearest) == 0.5, jnp.ceil(scaled), nearest)
    key = jnp.where(value > 0, jnp.minimum(index, n_bins - 1) + 1, 0)
    return stat, key.astype(jnp.int32)


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


@functools.lru_cache(maxsize=1024)
def _union_blocks(a_bin: int, step: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Describe the union with bin ``a_bin`` as a gather of windows of the running histogram.

    Output bins are cut into blocks of ``_BLOCK`` (aligned on multiples of ``_BLOCK``, the
    same for every experiment bin). Output ``k`` sums the running-histogram bins ``j``
    whose union with ``a_bin`` falls in ``k``: one bin, or two where the union merges
    neighbours (:func:`_union_merges`). Returns, for every block of the largest grid, the
    first running-histogram bin read by the block (negative before the union's first bin:
    the reads fall on zeros) and the position in the block of its merged output
    (``_BLOCK`` if none): the block is the window starting there, shifted by one after
    the merge. None when a block holds two merges (bins beyond ~``1 / (_BLOCK step)``:
    MA values above ~0.015 on the 1e-5 grid); those bins are folded by
    :func:`_fold_bins`.
    """
    first, merges = _union_merges(a_bin, step)
    n = round(1.0 / step) + 2
    # output bin of the run each merge extends: runs before it hold one bin each, plus one
    # for every earlier merge
    merged_out = first + merges - np.arange(1, merges.size + 1)
    block_of = merged_out // _BLOCK
    if np.any(np.diff(block_of) == 0):
        return None
    block_first = np.arange(-(-n // _BLOCK) + 1) * _BLOCK
    # first input bin of the run of output k: k - first, plus one per earlier merged run
    starts = block_first - first + np.searchsorted(merged_out, block_first, "left")
    position = np.full(starts.shape, _BLOCK, np.int16)
    position[block_of] = merged_out - block_of * _BLOCK
    starts.flags.writeable = position.flags.writeable = False
    return starts, position


@functools.lru_cache(maxsize=16)
def _union_plan(bins: bytes, step: float, pad: int):
    """Block tables of an experiment's non-zero bins (:func:`_union_blocks`), stacked.

    Cached by bin set: experiments with the same kernel and foci count usually share one.
    The running histogram sits ``pad`` bins into a zero buffer (``pad`` exceeds every bin
    by ``_BLOCK``), followed by scratch rows of ``_BLOCK`` bins from ``_fixed_base``: row
    ``q`` holds the ``q``-th block with a merge (in block order), read bin by bin, so that
    every block is one window of the buffer. Returns ``(fast, starts, merges, slow)``:
    which bins have tables, their window per block (bins x blocks), the blocks with a merge
    (``(block, row, first, at, reads, extra)``: the bin's row, the block's first read, the
    merged output's place in it, the block's reads and the merged output's second read)
    and the bins without tables (folded by :func:`_fold_bins`).
    """
    bins = np.frombuffer(bins, np.intp)
    tables = [_union_blocks(int(a), step) for a in bins]
    fast = np.array([t is not None for t in tables], bool)
    if not fast.any():
        return fast, None, None, bins
    starts = np.stack([t[0] for t in tables if t is not None]) + pad
    position = np.stack([t[1] for t in tables if t is not None])
    row, block = np.nonzero(position < _BLOCK)
    order = np.argsort(block, kind="stable")
    row, block = row[order], block[order]
    first, at = starts[row, block], position[row, block].astype(np.intp)
    # output i of a block with a merge reads bin first + i before the merge, first + i + 1
    # after it; the merged output also takes first + at + 1
    inside = np.arange(_BLOCK)
    reads = first[:, None] + inside + (inside > at[:, None])
    starts[row, block] = _fixed_base(step, pad) + _BLOCK * np.arange(row.size)
    return fast, starts, (block, row, first, at, reads, first + at + 1), bins[~fast]


def _fixed_base(step: float, pad: int) -> int:
    """Start of the scratch rows of merged blocks in a fold buffer (after the largest grid)."""
    return pad + round(1.0 / step) + 2 + 2 * _BLOCK


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
    new bin ``k`` collects one bin of the running histogram, or two neighbours where the
    rounded product steps (:func:`_union_merges`). Cut into blocks of 64 new bins, each
    block reads one window of the running histogram, shifted by one after its merge (at
    most one per block for bins below ~1,500, i.e. MA values below ~0.015; the few blocks
    with a merge are read bin by bin once per experiment). The new histogram is the
    experiment's probabilities times the gathered windows, summed over its bins
    (:func:`_union_blocks`, :func:`_union_plan`); bins with denser merges move the running
    histogram as a block (:func:`_fold_bins`). Every product of the pairwise definition is
    formed once; only the order of the sums differs (a merged pair is added before it is
    scaled): ~1e-15 relative, also on upper-tail sums (``tests/test_nulls.py``).
    """
    n_bins = bin_centers.shape[0]
    step = float(bin_centers[1] - bin_centers[0])
    if initial is None:
        initial, exp_hists = exp_hists[0], exp_hists[1:]
    pad = exp_hists.shape[1] + _BLOCK
    plans = [_union_plan(np.flatnonzero(hist).tobytes(), step, pad) for hist in exp_hists]
    n_fixed = max([plan[2][0].size for plan in plans if plan[1] is not None], default=0)
    # The running histogram and the next one live in two zero-padded buffers (with the
    # scratch rows of merged blocks), reused for every experiment. Reads stay within the
    # grid plus two blocks, or fall on scratch rows written first: only that is zeroed.
    old, new = np.empty((2, _fixed_base(step, pad) + _BLOCK * n_fixed))
    old[: pad + n_bins + 2 * _BLOCK] = new[: pad + n_bins + 2 * _BLOCK] = 0.0
    old[pad : pad + len(initial)] = initial
    layout = (step, pad, n_bins, _fixed_base(step, pad))
    nonzero = np.flatnonzero(initial)
    support = int(nonzero[0]), int(nonzero[-1]) + 1
    _reuse_freed_memory()
    # A pool per call, not per module: a process forked after a fit must not inherit a pool
    # whose threads are gone.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nimare_jax-fold") as pool:
        for hist, plan in zip(exp_hists, plans, strict=True):
            support = _fold_experiment(old, new, support, hist, plan, layout, pool)
            old, new = new, old
    return old[pad : pad + n_bins].copy()


@functools.cache
def _reuse_freed_memory() -> None:
    """Let malloc keep freed blocks of up to 32 MB for reuse rather than unmap them.

    glibc raises its mmap threshold to the size of an mmapped block when that block is
    freed (up to 32 MB); blocks below it then come from the heap, which is trimmed only
    when twice that lies free. The fold gathers ~1 MB per chunk: without this, in a fresh
    process each gather maps new pages and faults on them (~1,000 page faults per
    experiment, more time than the gather). Allocating and freeing an untouched block
    just under 32 MB does it (once per process: the setting stays); nothing is written,
    other allocators ignore it.
    """
    np.empty(2**22 - 2**10)


def _fold_experiment(old, new, support, hist, plan, layout, pool):
    """Write into ``new`` the running histogram ``old`` folded with one experiment's.

    Both histograms sit at ``pad`` in their buffers (``layout``: step, pad, grid size,
    start of the scratch rows), with zeros around them; ``support``
    is the range of bins holding the non-zero values of ``old``. Returns that of ``new``.
    """
    step, pad, n_bins, fixed_base = layout
    lo, hi = support
    bins = np.flatnonzero(hist)
    if bins.size == 0:
        raise ValueError("an experiment's MA histogram is empty (all zero)")
    fast, starts, merges, slow = plan
    hist_new = new[pad : pad + n_bins]
    hist_new[:] = 0.0
    if starts is not None:
        weights = hist[bins[fast]]
        # unions of bins j and a fall in [j, j + a]; the last bin takes every union past it
        last = min(hi + int(bins[fast][-1]), n_bins - 2)
        b0, b1 = lo // _BLOCK, last // _BLOCK + 1
        block, row, first, at, reads, extra = merges
        q0, q1 = np.searchsorted(block, (b0, b1))
        if q1 > q0:  # the blocks holding a merge, read bin by bin into the scratch rows
            rows = old[fixed_base + _BLOCK * q0 : fixed_base + _BLOCK * q1].reshape(-1, _BLOCK)
            np.take(old[:fixed_base], reads[q0:q1], out=rows, mode="clip")
            rows[np.arange(q1 - q0), at[q0:q1]] += old[extra[q0:q1]]
        per_chunk = max(1, _CHUNK // (weights.size * _BLOCK))
        chunks = [(c, min(c + per_chunk, b1)) for c in range(b0, b1, per_chunk)]
        # the later chunks on the pool's thread, the first ones here (NumPy releases the
        # GIL while it gathers and sums); a few chunks are not worth the hand-over
        half = (len(chunks) + 1) // 2 if len(chunks) >= _THREAD_CHUNKS else len(chunks)
        later = chunks[half:] and pool.submit(
            _fold_blocks, chunks[half:], old, starts, weights, hist_new
        )
        _fold_blocks(chunks[:half], old, starts, weights, hist_new)
        if later:
            later.result()
        # unions past the last centre
        k = n_bins - 1
        b, off = divmod(k, _BLOCK)
        if hi + int(bins[fast][-1]) >= k:
            first_in = starts[:, b] + off
            here = block == b
            first_in[row[here]] = first[here] + off + (at[here] < off)
            for w, j in zip(weights, first_in, strict=True):
                if j < pad + hi:
                    hist_new[k] += w * old[max(j, pad + lo) : pad + hi].sum()
    if slow.size:
        hist_new += _fold_bins(old[pad + lo : pad + hi], lo, hist, slow, step, n_bins)
    # unions of bins j and a fall in [j, j + a]
    return _nonzero_range(hist_new, lo, min(n_bins, hi + int(bins[-1])))


def _nonzero_range(values, lo, hi):
    """First and one past the last index of ``values[lo:hi]`` holding a non-zero value.

    Scans from both ends a few hundred values at a time (the ends are usually close).
    """
    width = 256
    start = lo
    while not values[start : start + width].any():
        start += width
        if start >= hi:
            raise ValueError("the folded histogram underflowed to zero")
    start += int(np.flatnonzero(values[start : start + width])[0])
    end = hi
    while not values[max(start, end - width) : end].any():
        end -= width
    begin = max(start, end - width)
    end = begin + int(np.flatnonzero(values[begin:end])[-1]) + 1
    return start, end


def _fold_blocks(chunks, old, starts, weights, new):
    """Output blocks ``c0 : c1`` of the new histogram, for each ``(c0, c1)`` in ``chunks``.

    ``old``: the running histogram's buffer, as ``starts`` reads it (one window of
    ``_BLOCK`` bins per experiment bin and block); ``new`` is written up to its last bin
    (excluded).
    """
    windows = np.lib.stride_tricks.as_strided(
        old, (old.size - _BLOCK + 1, _BLOCK), (old.itemsize,) * 2, writeable=False
    )
    end = new.shape[0] - 1
    for c0, c1 in chunks:
        gathered = windows[starts[:, c0:c1]]  # (bins, c1 - c0, _BLOCK)
        if c1 * _BLOCK <= end:
            out = new[c0 * _BLOCK : c1 * _BLOCK].reshape(-1, _BLOCK)
            np.einsum("e,ebk->bk", weights, gathered, out=out)
        else:  # the chunk holding the last bin: bins from it on are summed apart
            flat = np.einsum("e,ebk->bk", weights, gathered).ravel()
            new[c0 * _BLOCK : end] = flat[: end - c0 * _BLOCK]


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
