from pathlib import Path

import jax
import nibabel as nib
import numpy as np
import pytest
import scipy.stats as ss

from nimare_jax.cli import main
from nimare_jax.io import convert_sleuth_to_dataset
from nimare_jax.io.weights import default_weights_path, load_params, load_weights, save_params
from nimare_jax.meta.cbma import (
    ALE,
    KDA,
    SCALE,
    ALESubtraction,
    MKDAChi2,
    MKDADensity,
    Peaks2MapsKernel,
)
from nimare_jax.meta.cbma.kernel import coarse_mask
from nimare_jax.ops import coarse_grid, unet
from nimare_jax.peaks2maps import data
from nimare_jax.peaks2maps.evaluate import evaluate
from nimare_jax.spatial import get_template

SLEUTH = Path(__file__).parent / "data" / "sleuth" / "test_sleuth_file.txt"


def test_apply_shapes_and_mask():
    params = unet.init(jax.random.key(0))
    peaks = np.stack([data.peak_image([[16, 16, 16]]), data.peak_image([[10, 20, 12]])])
    out = np.asarray(unet.apply(params, peaks, coarse_mask()))
    assert out.shape == (2, 32, 32, 32)
    assert np.all(out[:, ~coarse_mask()] == 0)
    assert np.isfinite(out).all()


def test_space_to_depth_round_trip():
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 32, 1)).astype(np.float32)
    folded = unet._space_to_depth(x)
    assert folded.shape == (2, 16, 16, 16, 8)
    np.testing.assert_array_equal(unet._depth_to_space(folded), x[..., 0])


def test_params_save_load_round_trip(tmp_path):
    params = unet.init(jax.random.key(1))
    save_params(params, tmp_path / "w.npz", seed=1)
    loaded, meta = load_params(tmp_path / "w.npz")
    assert int(meta["seed"]) == 1
    for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_simulation_is_reproducible_and_peaks_follow_the_rules():
    z1, p1 = data.simulate_study(7, 3)
    z2, p2 = data.simulate_study(7, 3)
    np.testing.assert_array_equal(z1, z2)
    np.testing.assert_array_equal(p1, p2)
    assert len(p1) >= 1
    assert np.all(z1[tuple(p1.T)] > data.PEAK_THRESHOLD)
    assert np.all(coarse_mask()[tuple(p1.T)])
    d = np.linalg.norm((p1[:, None] - p1[None]) * coarse_grid.COARSE_VOXEL, axis=-1)
    assert np.all(d[np.triu_indices(len(p1), 1)] >= data.PEAK_MIN_DISTANCE)


def test_grid_covers_the_brain_and_round_trips():
    mask = get_template("mni152_2mm")
    # every brain voxel lies inside the coarse grid
    ijk = np.rint(coarse_grid.voxel_coords(np.asanyarray(mask.dataobj) > 0, mask.affine))
    assert ijk.min() >= 0 and ijk.max() <= 31
    # a smooth coarse field survives coarse -> 2 mm -> coarse
    g = np.indices(coarse_grid.COARSE_SHAPE).astype(np.float32)
    field = np.sin(g[0] / 5) + np.cos(g[1] / 6) * g[2] / 31
    fine = data.coarse_to_mask(field[None], mask)
    back = data.mask_to_coarse(fine, mask)[0]
    from scipy.ndimage import binary_erosion

    interior = binary_erosion(coarse_mask(), iterations=1)
    np.testing.assert_allclose(back[interior], field[interior], atol=0.05)


def test_resampling_is_in_world_space():
    # the x-flipped ale_2mm grid gets the same value at the same mm position
    rng = np.random.default_rng(0)
    field = rng.standard_normal(coarse_grid.COARSE_SHAPE).astype(np.float32)
    a = get_template("mni152_2mm")
    b = get_template("ale_2mm")
    va = np.asanyarray(nib.Nifti1Image(np.zeros(a.shape), a.affine).dataobj)
    va = va.copy()
    va[np.asanyarray(a.dataobj) > 0] = data.coarse_to_mask(field[None], a)[0]
    vb = np.zeros(b.shape)
    vb[np.asanyarray(b.dataobj) > 0] = data.coarse_to_mask(field[None], b)[0]
    np.testing.assert_allclose(va, vb[::-1], atol=1e-5)


@pytest.fixture(scope="module")
def trained():
    return load_weights()


def test_weights_are_small_and_reproduce_stored_heldout_figures(trained):
    assert default_weights_path().stat().st_size < 20 * 2**20
    params, meta = trained
    result = evaluate(params, range(len(meta["check_network_r"])))
    np.testing.assert_allclose(result["network"], meta["check_network_r"], atol=2e-3)
    np.testing.assert_allclose(result["ale"], meta["check_ale_r"], atol=2e-3)
    # the network beats the ALE kernel's MA map on these held-out studies
    assert result["network"].mean() > result["ale"].mean() + 0.03
    assert float(meta["heldout_network_r"]) > float(meta["heldout_ale_r"])


@pytest.fixture(scope="module")
def small_dset():
    dset = convert_sleuth_to_dataset(SLEUTH)
    return dset.slice(dset.ids[:3])


def test_kernel_ma_maps_are_the_reconstruction_thresholded(small_dset):
    z = Peaks2MapsKernel().reconstruct(small_dset)
    n_vox = int((np.asanyarray(small_dset.masker.mask_img_.dataobj) > 0).sum())
    assert z.shape == (3, n_vox) and z.std() > 0
    prob = Peaks2MapsKernel(threshold=2.5, error_sd=0.7).transform(small_dset, return_type="array")
    np.testing.assert_allclose(prob, ss.norm.cdf((z - 2.5) / 0.7), rtol=1e-4, atol=1e-6)
    binary = Peaks2MapsKernel(binary=True).transform(small_dset, return_type="array")
    np.testing.assert_array_equal(binary, (z > 3.1).astype(np.float32))
    imgs = Peaks2MapsKernel().transform(small_dset.slice(small_dset.ids[:2]), return_type="image")
    assert len(imgs) == 2 and imgs[0].shape == small_dset.masker.mask_img_.shape
    with pytest.raises(ValueError, match="return_type"):
        Peaks2MapsKernel().transform(small_dset, return_type="table")


@pytest.mark.slow
def test_ale_with_peaks2maps_kernel_against_brute_force_null(small_dset):
    kernel = Peaks2MapsKernel()
    result = ALE(kernel_transformer=kernel).fit(small_dset)
    ma = kernel.transform(small_dset, return_type="array").astype(np.float64)
    stat = result.maps["stat"]
    np.testing.assert_allclose(stat, 1 - np.prod(1 - ma, axis=0), atol=1e-6)
    # The approximate null: each experiment's MA value drawn independently from its own
    # values over the mask. Sample it directly and compare p-values (4 SE + the 1e-4 bins).
    rng = np.random.default_rng(0)
    n = 400_000
    draws = np.stack([rng.choice(row, n) for row in ma])
    null = 1 - np.prod(1 - draws, axis=0)
    p = result.maps["p"]
    picks = [int(np.argmin(np.abs(p - target))) for target in (0.3, 0.05, 0.01, 0.002)]
    for i in picks:
        p_mc = ((null >= stat[i] - 5e-5).mean() + (null >= stat[i] + 5e-5).mean()) / 2
        se = np.sqrt(p_mc * (1 - p_mc) / n)
        slack = (null >= stat[i] - 2e-4).mean() - (null >= stat[i] + 2e-4).mean()
        assert abs(p[i] - p_mc) <= 4 * se + slack, (p[i], p_mc)
    assert "Freyberg2018" in result.citations and "peaks2maps network" in result.description


def test_relocation_runs_the_network_on_relocated_foci(small_dset):
    from nimare_jax.meta.cbma.ale import relocation_maps

    kernel = Peaks2MapsKernel()
    arrays = kernel.prepare(small_dset)
    key = jax.random.key(5)
    volume, operands = relocation_maps(arrays)
    vol = np.asarray(volume(key, operands))
    # the same draw, by hand: foci moved to random mask voxels, then the observed-data path
    mask = np.asanyarray(small_dset.masker.mask_img_.dataobj) > 0
    mask_ijk = np.argwhere(mask)
    moved = mask_ijk[np.asarray(jax.random.randint(key, (arrays.ijk.shape[0],), 0, len(mask_ijk)))]
    slot, valid = arrays.slots()
    ma = np.asarray(arrays.ma_fn(moved[slot], valid), np.float64)
    np.testing.assert_allclose(vol[mask], 1 - np.prod(1 - ma, axis=0), atol=2e-6)
    assert (vol[~mask] == 0).all()


def test_density_estimators_with_binary_peaks2maps(small_dset):
    kernel = Peaks2MapsKernel(binary=True)
    binary = kernel.transform(small_dset, return_type="array")
    mkda = MKDADensity(kernel_transformer=kernel).fit(small_dset)
    np.testing.assert_allclose(mkda.maps["stat"], binary.sum(0), atol=1e-6)
    # MKDA's null under uniformity: a sum of Bernoulli(coverage) variables
    coverage = binary.mean(axis=1)
    i = int(np.argmax(mkda.maps["stat"]))
    k = int(round(mkda.maps["stat"][i]))
    probs = np.array([1.0])
    for c in coverage:
        probs = np.convolve(probs, [1 - c, c])
    assert mkda.maps["p"][i] == pytest.approx(probs[k:].sum(), rel=1e-6)
    kda = KDA(kernel_transformer=kernel, null_method="montecarlo", n_iters=3).fit(small_dset)
    np.testing.assert_allclose(kda.maps["stat"], binary.sum(0), atol=1e-6)


def test_estimators_reject_the_wrong_kind_of_peaks2maps_maps():
    with pytest.raises(TypeError, match="binary=False"):
        ALE(kernel_transformer=Peaks2MapsKernel(binary=True))
    with pytest.raises(TypeError, match="binary=True"):
        MKDADensity(kernel_transformer=Peaks2MapsKernel())
    with pytest.raises(TypeError, match="binary=True"):
        KDA(kernel_transformer=Peaks2MapsKernel())
    with pytest.raises(ValueError, match="error_sd"):
        Peaks2MapsKernel(error_sd=0)


@pytest.mark.slow
def test_cli_writes_maps_and_boilerplate(tmp_path):
    argv = ["peaks2maps", str(SLEUTH), "--output_dir", str(tmp_path), "--prefix", "p2m"]
    assert main([*argv, "--n_iters", "20"]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"p2m_z.nii.gz", "p2m_z_level-voxel_corr-FWE_method-montecarlo.nii.gz"} <= names
    text = (tmp_path / "p2m_boilerplate.txt").read_text()
    assert "simulated data" in text and "Freyberg" in text
    assert "Freyberg2018" in (tmp_path / "p2m_references.bib").read_text()
    img = nib.load(tmp_path / "p2m_z.nii.gz")
    assert img.shape == (91, 109, 91)


def test_cli_refuses_experiments_with_identical_foci(tmp_path, capsys):
    # identical foci give identical reconstructions: no voxel varies across experiments, t
    # is undefined everywhere (it was +-inf, with all-NaN FWE maps and exit status 0)
    block = "// Subjects = 20\n-16\t-58\t-22\n26\t-64\t-50\n"
    same = tmp_path / "same.txt"
    same.write_text("// Reference = MNI\n// A: one\n" + block + "\n// B: two\n" + block)
    out = tmp_path / "out"
    assert main(["peaks2maps", str(same), "--output_dir", str(out), "--n_iters", "20"]) == 1
    assert "do not vary across studies" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_group_comparisons_and_scale_with_peaks2maps(small_dset):
    other = convert_sleuth_to_dataset(SLEUTH.with_name("test_sleuth_file2.txt"))
    other = other.slice(other.ids[:3])
    prob, binary = Peaks2MapsKernel(), Peaks2MapsKernel(binary=True)
    # MKDAChi2 counts active experiments from the thresholded reconstructions
    chi2 = MKDAChi2(kernel_transformer=binary).fit(small_dset, other)
    pooled = np.vstack(
        [
            binary.transform(small_dset, return_type="array"),
            binary.transform(other, return_type="array"),
        ]
    )
    np.testing.assert_array_equal(np.asarray(chi2.estimator.pooled_ma_matrix()), pooled)
    np.testing.assert_allclose(chi2.maps["prob_desc-group1"], pooled[:3].mean(0), atol=1e-6)
    # ALESubtraction: the difference of the two groups' ALE of the reconstructions
    sub = ALESubtraction(kernel_transformer=prob, n_iters=10).fit(small_dset, other)
    ale1 = 1 - np.prod(
        1 - prob.transform(small_dset, return_type="array").astype(np.float64), axis=0
    )
    ale2 = 1 - np.prod(1 - prob.transform(other, return_type="array").astype(np.float64), axis=0)
    np.testing.assert_allclose(sub.maps["stat_desc-group1MinusGroup2"], ale1 - ale2, atol=1e-6)
    # SCALE: observed ALE of the reconstructions; null draws relocate foci to the baseline
    baseline = Path(SLEUTH).with_name("test_baseline.txt")
    scale = SCALE(baseline, kernel_transformer=prob, n_iters=3, progress=False).fit(small_dset)
    np.testing.assert_allclose(scale.maps["stat"], ale1, atol=1e-6)
    assert np.isfinite(scale.maps["p"]).all() and scale.maps["p"].min() >= 1 / 4
    for result in (chi2, sub, scale):
        assert "Freyberg2018" in result.citations
