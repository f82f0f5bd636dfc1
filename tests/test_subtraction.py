"""ALESubtraction: parity with NiMARE 0.22.1 and the exact handling of permutation ties."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import ndimage

from nimare_jax.correct import FWECorrector
from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbma import ALESubtraction
from nimare_jax.meta.cbma.base import seed_to_key
from nimare_jax.meta.cbma.subtraction import _threshold_from_histogram, subtraction_null
from nimare_jax.ops import subtraction as ops_subtraction
from nimare_jax.ops.permute import BatchedSummary, run_permutations

REFERENCE = Path(__file__).parent / "data" / "reference"

C = "group1MinusGroup2"


@pytest.fixture(scope="module")
def groups(laird):
    split = json.loads((REFERENCE / "laird_split.json").read_text())
    return laird.slice(split["group1_first8"]), laird.slice(split["group2_remaining9"])


@pytest.fixture(scope="module")
def fitted(groups):
    est = ALESubtraction(n_iters=500, random_state=0, progress=False)
    return est, est.fit(*groups)


def test_map_names_and_stat_equal_nimare(fitted, reference):
    _, res = fitted
    ref = reference("alesubtraction_n500_maps")
    assert set(ref) <= set(res.maps)
    for name in (f"stat_desc-{C}", "stat_desc-group1", "stat_desc-group2"):
        np.testing.assert_allclose(res.maps[name], ref[name], rtol=0, atol=1e-8)
    for g in ("group1", "group2"):  # each group's own ALE (analytic null), as ALE's parity
        np.testing.assert_allclose(res.maps[f"z_desc-{g}"], ref[f"z_desc-{g}"], atol=5e-3)


def test_p_and_z_agree_with_nimare_statistically(fitted, reference):
    """Monte Carlo p-values (500 permutations each, different draws) agree as two runs do.

    Compared where at least 8 experiments cover the voxel: there, permutations that
    reproduce the observed split of the covering experiments (exact ties) are rare. NiMARE
    breaks such ties by float rounding (see the next test), so they are left out. Between two
    of our own seeds these figures are corr 0.993, mean |dz| 0.080; against NiMARE 0.994 and
    0.075.
    """
    est, res = fitted
    ref = reference("alesubtraction_n500_maps")
    covered = (est.terms_ > 0).sum(axis=1) >= 8
    z, zr = res.maps[f"z_desc-{C}"][covered], ref[f"z_desc-{C}"][covered]
    assert np.corrcoef(z, zr)[0, 1] > 0.99
    assert np.abs(z - zr).mean() < 0.1
    p = res.maps[f"p_desc-{C}"]
    assert p.min() >= 1 / 500 and p.max() <= 1 - 1 / 500
    null = res.null_distributions["values_level-voxel_corr-fwe_method-montecarlo"]
    ref_null = reference("alesubtraction_n500_nulls")[
        "values_level-voxel_corr-fwe_method-montecarlo"
    ]
    assert null.shape == (500,)
    for q in (0.5, 0.95):
        assert np.quantile(null, q) == pytest.approx(np.quantile(ref_null, q), rel=0.05)


def test_ties_are_exact(fitted):
    """A voxel reached by one group-1 experiment only: p is ~2 * 8/17, never significant.

    Permutations that keep that experiment in group 1 reproduce the observed difference
    exactly (fixed-point sums). NiMARE's float sums differ in the last bit between the
    observed and the permuted maps, so it gives 43 % of these voxels the smallest p (0.002).
    """
    est, res = fitted
    one = (est.terms_ > 0).sum(axis=1) == 1
    mine = one & (est.terms_[:, :8] > 0).any(axis=1)
    assert mine.sum() > 100
    p = res.maps[f"p_desc-{C}"][mine]
    assert p.min() > 0.8
    assert np.all(res.maps[f"z_desc-{C}"][mine] > 0)


def test_fwe_reuses_the_fit_null(fitted):
    est, res = fitted
    corr = FWECorrector(method="montecarlo", vfwe_only=True).transform(res)
    name = f"desc-{C}_level-voxel_corr-FWE_method-montecarlo"
    for kind in ("p", "z", "logp"):
        assert f"{kind}_{name}" in corr.maps
    assert np.all(np.sign(corr.maps[f"z_{name}"]) == np.sign(res.maps[f"z_desc-{C}"]))
    null = res.null_distributions["values_level-voxel_corr-fwe_method-montecarlo"]
    stat = np.abs(res.maps[f"stat_desc-{C}"])
    assert corr.maps[f"p_{name}"][np.argmax(stat)] == pytest.approx(
        max((null >= stat.max()).mean(), 1 / 500)
    )


@pytest.mark.slow
def test_cluster_fwe_small(groups):
    est = ALESubtraction(n_iters=20, random_state=1, progress=False, batch_size=8)
    res = FWECorrector(method="montecarlo").transform(est.fit(*groups))
    thr = res.null_distributions["summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo"]
    assert 0 < thr < 0.03
    for stem in (f"{C}Size_level-cluster", f"{C}Mass_level-cluster", f"{C}_level-voxel"):
        logp = res.maps[f"logp_desc-{stem}_corr-FWE_method-montecarlo"]
        assert np.all(logp >= 0)


@pytest.mark.parametrize("n_iters", [1, 2])
def test_one_or_two_permutations_give_p_of_one_over_n(groups, n_iters):
    # the bounds [1/n, 1 - 1/n] cross for n <= 2 and the lower one wins (NiMARE): p = 1/n
    # at every voxel, never 0 (which the inverted clip gave for n = 1: z = 38.5)
    res = ALESubtraction(n_iters=n_iters, random_state=0, progress=False).fit(*groups)
    np.testing.assert_array_equal(res.maps[f"p_desc-{C}"], 1.0 / n_iters)
    assert np.all(np.abs(res.maps[f"z_desc-{C}"]) < 1.0)


@pytest.mark.slow
def test_reproducible_across_batch_sizes(groups):
    a = ALESubtraction(n_iters=8, random_state=3, progress=False, batch_size=3).fit(*groups)
    b = ALESubtraction(n_iters=8, random_state=3, progress=False, batch_size=8).fit(*groups)
    np.testing.assert_array_equal(a.maps[f"p_desc-{C}"], b.maps[f"p_desc-{C}"])


def test_threshold_from_histogram():
    values = np.random.default_rng(0).uniform(0, 0.01, 200_000)
    hist = np.bincount((values / 1e-6).astype(int))
    assert _threshold_from_histogram(hist, 0.001) == pytest.approx(
        np.quantile(values, 0.999), abs=2e-6
    )


def test_group_with_one_experiment_is_rejected(groups):
    one = groups[0].slice(groups[0].ids[:1])
    with pytest.raises(DatasetError, match="at least two experiments"):
        ALESubtraction(n_iters=10).fit(one, groups[1])


@pytest.mark.slow
@pytest.mark.parametrize("vfwe_only", [True, False])
def test_one_pass_null_equals_the_two_pass_null(groups, vfwe_only):
    # The fit now gets the tail counts (summed) and the maxima (kept) of the same draws
    # from one run of the engine (per-leaf reductions); before, one run summed and a second
    # kept. Both must agree bit for bit; with clusters, the threshold and cluster nulls too.
    n_iters = 24
    est = ALESubtraction(
        n_iters=n_iters, random_state=2, progress=False, batch_size=8, vfwe_only=vfwe_only
    )
    res = est.fit(*groups)
    terms, scale, n1 = est.terms_, est.scale_, len(est.inputs1_.ids)
    key = jax.random.fold_in(seed_to_key(2)[1], 3)
    opts = {"batch_size": 8, "progress": False, "vectorize": "vmap"}
    wanted, n_bins = ("upper", "lower"), None
    if not vfwe_only:
        top = float((-np.expm1(-terms.sum(axis=1) / scale)).max())
        n_bins = int(top / ops_subtraction.THRESH_BIN) + 2
        wanted += ("hist",)
    first = subtraction_null(terms, scale, n1, hist_bins=n_bins, outputs=wanted)
    summed = run_permutations(
        first.summary, key, n_iters, reduce="sum", operands=first.operands, **opts
    ).samples
    thresh = None if vfwe_only else _threshold_from_histogram(summed["hist"], 0.001)
    a = est.inputs1_
    keys = ("voxel",) if vfwe_only else ("voxel", "size", "mass")
    second = subtraction_null(
        terms, scale, n1, mask_index=a.mask_index, shape=a.shape, thresh=thresh, outputs=keys
    )
    kept = run_permutations(second.summary, key, n_iters, operands=second.operands, **opts)
    upper = summed["upper"].astype(np.float64)
    lower = summed["lower"].astype(np.float64)
    p = np.maximum(
        1 / n_iters, np.minimum(2.0 * np.minimum(upper, lower) / n_iters, 1 - 1 / n_iters)
    )
    np.testing.assert_array_equal(res.maps[f"p_desc-{C}"], p)
    nulls = res.null_distributions
    np.testing.assert_array_equal(
        nulls["values_level-voxel_corr-fwe_method-montecarlo"], kept.samples["voxel"]
    )
    if not vfwe_only:
        assert nulls["summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo"] == thresh
        for desc in ("size", "mass"):
            np.testing.assert_array_equal(
                nulls[f"values_desc-{desc}_level-cluster_corr-fwe_method-montecarlo"],
                kept.samples[desc],
            )


def test_cluster_null_labelled_on_the_host_equals_scipy(fitted):
    """The cluster pass labels on the host between batches; iteration by iteration its
    largest clusters of either sign equal SciPy's labelling of the same difference maps."""
    est, _ = fitted
    a = est.inputs1_
    thresh = np.float32(0.017)  # about this split's null p < 0.001 threshold of |ALE1 - ALE2|
    null = subtraction_null(
        est.terms_,
        est.scale_,
        len(a.ids),
        mask_index=a.mask_index,
        shape=a.shape,
        thresh=thresh,
        outputs=("voxel", "size", "mass"),
    )
    assert isinstance(null.summary, BatchedSummary) and null.summary.on_host
    got = run_permutations(
        null.summary, jax.random.key(5), 5, batch_size=2, progress=False, operands=null.operands
    ).samples
    each = jax.jit(null.summary.each)
    for i in range(5):
        _, diff = each(jax.random.fold_in(jax.random.key(5), i), *null.operands)
        vol = np.zeros(int(np.prod(a.shape)), np.float32)
        vol[a.mask_index] = diff
        vol = vol.reshape(a.shape)
        size, mass = 0, 0.0
        for active, weights in ((vol > thresh, vol - thresh), (vol < -thresh, -vol - thresh)):
            labels, k = ndimage.label(active)
            if k:
                size = max(size, np.bincount(labels.ravel())[1:].max())
                sums = ndimage.sum(weights.astype(np.float64), labels, range(1, k + 1))
                mass = max(mass, sums.max())
        assert size > 0
        assert got["size"][i] == size
        assert got["voxel"][i] == np.abs(vol).max()
        np.testing.assert_allclose(got["mass"][i], mass, rtol=1e-6)
