"""The ALE approximate null's histogram fold (``ops/nulls.py``) against its pairwise definition.

NiMARE 0.22.1 folds each experiment's MA histogram into the running null pair by pair: for
every non-zero bin ``a`` of the experiment and ``b`` of the null, the product of their
probabilities goes to the bin centre nearest ``1 - (1 - a)(1 - b)`` (ties upward; unions
past the last centre go to it). ``_pairwise_fold`` is that definition, written directly.
"""

import numpy as np
import pytest

from nimare_jax.ops import nulls


def _pairwise_fold(hists, centers, initial=None):
    n = centers.shape[0]
    inv_step = 1.0 / (centers[1] - centers[0])
    out = np.zeros(n)
    if initial is None:
        initial, hists = hists[0], hists[1:]
    out[: initial.shape[0]] = initial
    for hist in hists:
        a, b = np.flatnonzero(hist), np.flatnonzero(out)
        scaled = (1.0 - np.multiply.outer(1.0 - centers[a], 1.0 - centers[b])) * inv_step
        lower = np.floor(scaled)
        idx = np.minimum(lower.astype(np.int64) + (scaled - lower >= 0.5), n - 1)
        out = np.bincount(idx.ravel(), np.multiply.outer(hist[a], out[b]).ravel(), minlength=n)
    return out


def _random_hists(rng, n_exp, width, n_nonzero, high=(), mass=0.1):
    """MA histograms: ``mass`` spread over random bins below ``width`` (plus the bins
    ``high``), the rest at MA = 0."""
    hists = np.zeros((n_exp, max(width, *high, 0) + 1))
    for row in hists:
        bins = np.concatenate([rng.choice(np.arange(1, width), n_nonzero, replace=False), high])
        row[bins.astype(int)] = rng.random(bins.size) + 1e-3
        row *= mass / row.sum()
        row[0] = 1.0 - mass
    return hists


def _assert_fold_matches(folded, expected, deep_tail=True):
    # every product of the definition is formed once; only the order of the sums differs
    np.testing.assert_array_equal(folded == 0, expected == 0)
    np.testing.assert_allclose(folded, expected, rtol=1e-13, atol=0)
    # the upper tail (what p-values read) to the same relative accuracy, down to its end
    tail, tail_expected = (np.cumsum(h[::-1])[::-1] for h in (folded, expected))
    if deep_tail:  # the tail is checked below 1e-15 (a grid cut short lumps it in one bin)
        assert tail_expected[np.flatnonzero(tail_expected)[-1]] < 1e-15 * tail_expected[0]
    np.testing.assert_allclose(tail, tail_expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("n_bins", [None, 3000, 64 * 46 + 1])
def test_fold_equals_pairwise_definition(n_bins):
    # ALE-like MA values (below 0.009): each experiment bin moves the null in blocks of 64
    # bins with at most one merge each; a grid cut at 3,000 or 2,945 bins (the last bin
    # starting a block) sends the unions past it to the last bin; and the grid grows
    # between calls, as in the chunked fit
    rng = np.random.default_rng(0)
    n_exp, width = 12, 900
    hists = _random_hists(rng, n_exp, width, 30)
    centers = nulls.ale_histogram_bins(np.full(n_exp, (width - 1) * nulls.STEP))[:n_bins]
    padded = np.pad(hists, ((0, 0), (0, centers.shape[0] - hists.shape[1])))
    expected = _pairwise_fold(padded, centers)
    first = nulls.fold_union_histograms(hists[:5], centers[: 5 * width])
    folded = nulls.fold_union_histograms(hists[5:], centers, first)
    _assert_fold_matches(folded, expected, deep_tail=n_bins is None)


def test_fold_equals_pairwise_definition_large_ma_values():
    # MA values up to 0.05 (bins 1,600-5,000): unions merge neighbouring null bins more
    # often than once per 64, so those experiment bins take the block-move path
    rng = np.random.default_rng(1)
    step = nulls.STEP
    high = (1_600, 2_417, 5_000)
    assert all(nulls._union_blocks(a, step) is None for a in high)
    assert nulls._union_blocks(1_400, step) is not None
    hists = _random_hists(rng, 6, 1_500, 15, high, mass=0.02)
    centers = nulls.ale_histogram_bins(np.full(6, hists.shape[1] * step))
    padded = np.pad(hists, ((0, 0), (0, centers.shape[0] - hists.shape[1])))
    _assert_fold_matches(
        nulls.fold_union_histograms(hists, centers), _pairwise_fold(padded, centers)
    )


@pytest.mark.parametrize("a_bin", [0, 1, 7, 500, 842, 49_999, 100_000])
def test_union_merges_found_near_crossings_equal_full_grid(a_bin):
    # merges are looked for only near where a j step passes k + 1/2: the same as checking
    # every bin of the full grid
    centers = np.round(np.arange(100_002) * nulls.STEP, 5)
    union = 1.0 - (1.0 - centers[a_bin]) * (1.0 - centers)
    idx = nulls.nearest_bin(union, 1.0 / centers[1], 10**9)
    first, merges = nulls._union_merges(a_bin, centers[1])
    assert first == idx[0]
    np.testing.assert_array_equal(merges, np.flatnonzero(np.diff(idx) == 0) + 1)
