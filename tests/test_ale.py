"""ALE against NiMARE 0.22.1's outputs on the same 17 real experiments (tests/data/reference)."""

import tracemalloc

import jax
import numpy as np
import pytest
from scipy import ndimage

from nimare_jax import stats
from nimare_jax.exceptions import DatasetError
from nimare_jax.generate import create_coordinate_dataset
from nimare_jax.meta.cbma import ALE
from nimare_jax.meta.cbma import base as cbma_base
from nimare_jax.meta.cbma.ale import one_sided_z
from nimare_jax.meta.cbma.kernel import ALEKernel
from nimare_jax.ops.permute import BatchedSummary, run_permutations


@pytest.fixture(scope="module")
def ale_result(laird):
    return ALE().fit(laird)


def test_approximate_null_equals_nimare(ale_result, reference):
    ref = reference("ale_laird_nulls")
    ours = ale_result.null_distributions
    np.testing.assert_array_equal(ours["histogram_bins"], ref["histogram_bins"])
    key = "histweights_corr-none_method-approximate"
    # float64 histogram folding; only the summation order differs from NiMARE's loop
    np.testing.assert_allclose(ours[key], ref[key], rtol=1e-12, atol=1e-300)


def test_ale_maps_equal_nimare(ale_result, reference):
    ref = reference("ale_laird_maps")
    stat = ale_result.get_map("stat", return_type="array")
    # float32 rounding: at most one unit in the last place of the largest ALE value
    np.testing.assert_allclose(stat, ref["stat"], rtol=0, atol=np.spacing(ref["stat"].max()))
    for name in ("p", "z", "logp"):
        ours = ale_result.get_map(name, return_type="array")
        np.testing.assert_allclose(ours, ref[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_missing_sample_sizes_raise_clear_error(laird):
    bad = laird.slice(laird.ids[:2])
    meta = bad.metadata.copy()
    meta.loc[0, "sample_sizes"] = None
    object.__setattr__(bad, "metadata", meta)
    with pytest.raises(DatasetError, match=f"{bad.ids[0]}.*sample_sizes"):
        ALE().fit(bad)
    # a fixed FWHM needs no sample sizes
    assert ALE(kernel_transformer=ALEKernel(fwhm=10)).fit(bad).get_map("stat", "array").max() > 0


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10"])
def test_bad_n_iters_rejected(bad):
    with pytest.raises(ValueError, match="n_iters"):
        ALE(n_iters=bad)


@pytest.fixture(scope="module")
def simulated():
    """150 simulated experiments: the approximate null's grid reaches ~72,000 bins."""
    return create_coordinate_dataset(
        foci=3, foci_percentage="50%", n_noise_foci=8, n_studies=150, sample_size=20, seed=1
    )[1]


def test_fit_memory_bounded_by_chunk_not_experiments(simulated, monkeypatch):
    # The fit used to hold every experiment's MA histogram on the null's grid at once:
    # 150 x 71,830 float64 = 82 MB here (96 MB traced in all; 2.24 GiB at 3,000
    # experiments). Chunks of experiments are now folded as they come; what remains
    # (~14 MB traced: maps, p-values, fold buffers) does not grow with the experiments.
    monkeypatch.setattr(cbma_base, "SUMMARY_CHUNK", 16)
    ALE().fit(simulated.slice(simulated.ids[:20]))  # compile both chunk shapes
    tracemalloc.start()
    try:
        ALE().fit(simulated)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MB traced"


@pytest.mark.parametrize("null_method", ["approximate", "montecarlo"])
def test_fit_identical_for_any_chunk_size(simulated, monkeypatch, null_method):
    # chunks continue the same float64 sums and histogram fold in the same order
    dset = simulated.slice(simulated.ids[:30])
    runs = []
    for chunk in (7, 30, 64):
        monkeypatch.setattr(cbma_base, "SUMMARY_CHUNK", chunk)
        res = ALE(null_method=null_method, n_iters=2, random_state=0).fit(dset)
        runs.append({**res.maps, **res.null_distributions})
    for run in runs[1:]:
        assert run.keys() == runs[0].keys()
        for key, value in run.items():
            np.testing.assert_array_equal(value, runs[0][key], err_msg=key)


def test_fwe_null_host_lines_equal_volume_by_volume_scipy(ale_result):
    """The Monte Carlo FWE null with host labelling of gathered lines, one callback per
    batch, equals labelling each relocated ALE volume whole with scipy.ndimage."""
    est = ale_result.estimator
    volume, operands = est._relocation(est.inputs_, est.weights_)
    thresh = 0.012  # a few hundred supra-threshold voxels per relocation, as at p < 0.001
    summary, ops = cbma_base.relocation_null((volume, operands), thresh, 6, "scipy")
    assert isinstance(summary, BatchedSummary)
    key = jax.random.key(5)
    out = run_permutations(
        summary, key, 12, batch_size=5, vectorize="map", operands=ops, progress=False
    )
    vol_fn = jax.jit(volume)
    for i in range(12):
        vol = np.asarray(vol_fn(jax.random.fold_in(key, i), operands))
        active = vol > np.float32(thresh)
        labels, n = ndimage.label(active)
        sizes = np.bincount(labels.ravel())[1:]
        masses = np.bincount(labels.ravel(), (vol - np.float32(thresh)).ravel())[1:]
        assert out.samples["voxel"][i] == vol.max()
        assert out.samples["size"][i] == (sizes.max() if n else 0)
        np.testing.assert_allclose(out.samples["mass"][i], masses.max() if n else 0, rtol=1e-6)
    assert out.samples["size"].max() > 20  # clusters were formed


def _brute_force_ale(ijk, exp_of_focus, kernels, shape):
    """ALE volume of foci ``ijk`` by direct NumPy: per-experiment max of kernels, union."""
    out = np.ones(shape)
    for e in np.unique(exp_of_focus):
        ma = np.zeros(shape)
        for f in np.flatnonzero(exp_of_focus == e):
            k = kernels[e]
            h = k.shape[0] // 2
            lo, hi = ijk[f] - h, ijk[f] + h + 1
            a, b = np.maximum(lo, 0), np.minimum(hi, shape)
            win = k[tuple(slice(a[d] - lo[d], k.shape[d] - (hi[d] - b[d])) for d in range(3))]
            box = tuple(slice(a[d], b[d]) for d in range(3))
            ma[box] = np.maximum(ma[box], win)
        out *= 1 - ma
    return 1 - out


def test_relocation_on_the_mask_box_equals_brute_force(ale_result):
    """The FWE null's draws on the mask's bounding box (``crop_to_mask``) are the same
    foci as on the whole image, and their ALE values on the mask equal a brute-force
    NumPy ALE of those foci; the summaries' maximum is the volume's."""
    from nimare_jax.ops import relocation

    est = ale_result.estimator
    arrays = est.inputs_
    volume, operands = est._relocation(arrays, est.weights_)
    cropped = relocation.crop_to_mask(operands)
    mask = np.asarray(operands.mask)
    origin = np.asarray(cropped.origin)
    assert np.asarray(cropped.mask).sum() == mask.sum()
    assert np.asarray(cropped.mask).size < 0.6 * mask.size
    key = jax.random.key(11)
    full = np.asarray(volume(key, operands))
    box = np.asarray(volume(key, cropped))
    inside = tuple(slice(origin[d], origin[d] + box.shape[d]) for d in range(3))
    np.testing.assert_array_equal(box, full[inside])
    assert (full[mask] == box[np.asarray(cropped.mask)]).all()
    # the draw by hand: foci at random mask voxels, each experiment's own kernel
    n_foci = arrays.exp_index.shape[0]
    moved = np.argwhere(mask)[np.asarray(jax.random.randint(key, (n_foci,), 0, mask.sum()))]
    kernels = np.asarray(arrays.windows, np.float64)[np.asarray(arrays.exp_window)]
    expected = _brute_force_ale(moved, np.asarray(arrays.exp_index), kernels, mask.shape)
    np.testing.assert_allclose(full[mask], expected[mask], rtol=2e-5, atol=1e-7)
    for vfwe_only, backend in ((True, "auto"), (False, "jax")):
        summary, ops = cbma_base.relocation_null((volume, operands), 0.012, 6, backend, vfwe_only)
        out = jax.jit(summary)(key, *ops)
        assert float(out["voxel"]) == full.max()


def test_p_z_logp_per_bin_equal_voxel_by_voxel(ale_result):
    # p, z and logp are computed once per null-histogram bin and spread to the voxels:
    # they must equal the voxel-by-voxel computation exactly
    est = ale_result.estimator
    stat = np.asarray(ale_result.maps["stat"])
    bins = est.null_distributions_["histogram_bins"]
    weights = est.null_distributions_["histweights_corr-none_method-approximate"]
    p = stats.nullhist_to_p(stat, weights, bins)
    assert (stat <= 0).any() and (p < 1e-6).any()  # both ends of the table are exercised
    np.testing.assert_array_equal(ale_result.maps["p"], p)
    np.testing.assert_array_equal(ale_result.maps["z"], one_sided_z(p))
    np.testing.assert_array_equal(ale_result.maps["logp"], -np.log10(p))
