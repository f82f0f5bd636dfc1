from pathlib import Path

import jax
import nibabel as nib
import numpy as np
import pytest

from nimare_jax.cli import main
from nimare_jax.io import convert_sleuth_to_dataset
from nimare_jax.meta.cbma import Peaks2MapsKernel
from nimare_jax.peaks2maps import data, model
from nimare_jax.peaks2maps.evaluate import evaluate
from nimare_jax.peaks2maps.kernel import default_weights_path, load_weights
from nimare_jax.spatial import get_template

SLEUTH = Path(__file__).parent / "data" / "sleuth" / "test_sleuth_file.txt"


def test_apply_shapes_and_mask():
    params = model.init(jax.random.key(0))
    peaks = np.stack([data.peak_image([[16, 16, 16]]), data.peak_image([[10, 20, 12]])])
    out = np.asarray(model.apply(params, peaks, data.coarse_mask()))
    assert out.shape == (2, 32, 32, 32)
    assert np.all(out[:, ~data.coarse_mask()] == 0)
    assert np.isfinite(out).all()


def test_space_to_depth_round_trip():
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 32, 1)).astype(np.float32)
    folded = model._space_to_depth(x)
    assert folded.shape == (2, 16, 16, 16, 8)
    np.testing.assert_array_equal(model._depth_to_space(folded), x[..., 0])


def test_params_save_load_round_trip(tmp_path):
    params = model.init(jax.random.key(1))
    model.save_params(params, tmp_path / "w.npz", seed=1)
    loaded, meta = model.load_params(tmp_path / "w.npz")
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
    assert np.all(data.coarse_mask()[tuple(p1.T)])
    d = np.linalg.norm((p1[:, None] - p1[None]) * data.COARSE_VOXEL, axis=-1)
    assert np.all(d[np.triu_indices(len(p1), 1)] >= data.PEAK_MIN_DISTANCE)


def test_grid_covers_the_brain_and_round_trips():
    mask = get_template("mni152_2mm")
    # every brain voxel lies inside the coarse grid
    ijk = np.rint(data._fine_in_coarse(mask))
    assert ijk.min() >= 0 and ijk.max() <= 31
    # a smooth coarse field survives coarse -> 2 mm -> coarse
    g = np.indices(data.COARSE_SHAPE).astype(np.float32)
    field = np.sin(g[0] / 5) + np.cos(g[1] / 6) * g[2] / 31
    fine = data.coarse_to_mask(field[None], mask)
    back = data.mask_to_coarse(fine, mask)[0]
    from scipy.ndimage import binary_erosion

    interior = binary_erosion(data.coarse_mask(), iterations=1)
    np.testing.assert_allclose(back[interior], field[interior], atol=0.05)


def test_resampling_is_in_world_space():
    # the x-flipped ale_2mm grid gets the same value at the same mm position
    rng = np.random.default_rng(0)
    field = rng.standard_normal(data.COARSE_SHAPE).astype(np.float32)
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


def test_kernel_transform_shapes():
    dset = convert_sleuth_to_dataset(SLEUTH)
    kernel = Peaks2MapsKernel()
    arr = kernel.transform(dset, return_type="array")
    n_vox = int((np.asanyarray(dset.masker.dataobj) > 0).sum())
    assert arr.shape == (len(dset.ids), n_vox)
    assert np.isfinite(arr).all() and arr.std() > 0
    imgs = kernel.transform(dset.slice(dset.ids[:2]), return_type="image")
    assert len(imgs) == 2 and imgs[0].shape == dset.masker.shape
    with pytest.raises(TypeError, match="transform"):
        kernel.prepare(dset)
    with pytest.raises(ValueError, match="return_type"):
        kernel.transform(dset, return_type="table")


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
