"""ImageTransformer conversions, the image simulator and the conperm workflow."""

import nibabel as nib
import numpy as np
import pytest
import scipy.stats as ss

from nimare_jax import transforms
from nimare_jax.cli import main
from nimare_jax.generate import create_image_dataset
from nimare_jax.io.images import get_image_paths, load_images
from nimare_jax.meta import ibma
from nimare_jax.spatial import get_template
from nimare_jax.workflows.conperm import conperm_workflow


@pytest.fixture(scope="module")
def small_mask():
    tpl = get_template("mni152_2mm")
    data = np.zeros(tpl.shape, np.int8)
    data[35:55, 45:70, 35:50] = np.asanyarray(tpl.dataobj)[35:55, 45:70, 35:50] > 0
    return nib.Nifti1Image(data, tpl.affine)


@pytest.fixture(scope="module")
def sim(tmp_path_factory, small_mask):
    folder = tmp_path_factory.mktemp("sim")
    return create_image_dataset(
        n_studies=8, effect=0.8, signal_xyz=(0, -20, 20), mask=small_mask, out_dir=folder, seed=1
    )


def test_simulated_dataset_is_consistent(sim):
    z = load_images(sim, "z")
    t = load_images(sim, "t")
    beta, varcope = load_images(sim, "beta"), load_images(sim, "varcope")
    n = sim.get_sample_sizes()
    np.testing.assert_allclose(t, beta / np.sqrt(varcope), rtol=1e-4, atol=1e-4)
    want = np.sign(t) * ss.norm.isf(ss.t.sf(np.abs(t), (n - 1)[:, None]))
    np.testing.assert_allclose(z, want, atol=1e-3)
    # the known signal is found
    res = ibma.Stouffers().fit(sim)
    assert np.nanmax(res.maps["z"]) > 5


@pytest.mark.slow
def test_transformer_derives_missing_types(sim, tmp_path):
    gone = ("z", "varcope", "beta")  # with their NiMARE-style "<type>__relative" companions
    images = sim.images.drop(columns=[c for c in sim.images if c.split("__")[0] in gone])

    reduced = sim.with_images(images).update_path(sim.basepath)
    new = transforms.ImageTransformer(["varcope", "z", "p", "beta"]).transform(reduced)
    for kind in ("varcope", "z", "beta"):
        np.testing.assert_allclose(
            load_images(new, kind), load_images(sim, kind), rtol=1e-4, atol=2e-4
        )
    z = load_images(sim, "z")
    np.testing.assert_allclose(load_images(new, "p"), 2 * ss.norm.sf(np.abs(z)), atol=1e-5)
    assert get_image_paths(new, "z")[0].endswith("_2.0x2.0x2.0_z.nii.gz")
    # se from varcope (an extension of NiMARE's targets)
    only_var = sim.with_images(sim.images.drop(columns=["se"]))
    se = transforms.ImageTransformer("se").transform(only_var)
    np.testing.assert_allclose(load_images(se, "se"), load_images(sim, "se"), rtol=1e-5)


def test_transformer_skips_what_cannot_be_derived(sim):

    only_beta = sim.with_images(sim.images[["id", "study_id", "contrast_id", "beta"]])
    new = transforms.ImageTransformer("varcope").transform(only_beta)
    assert all(p is None for p in get_image_paths(new, "varcope"))
    with pytest.raises(ValueError, match="unsupported"):
        transforms.ImageTransformer("gamma")


def test_reexported_conversions():
    assert transforms.p_to_z(0.05, tail="two") == pytest.approx(1.959964, abs=1e-6)
    assert transforms.z_to_p(1.959964, tail="two") == pytest.approx(0.05, abs=1e-6)
    t = np.array([-3.0, 0.5, 4.0])
    np.testing.assert_allclose(transforms.z_to_t(transforms.t_to_z(t, 12), 12), t, rtol=1e-8)


@pytest.mark.slow
def test_conperm_workflow_from_4d_and_cli(sim, small_mask, tmp_path):
    paths = get_image_paths(sim, "beta")
    imgs = [nib.load(p) for p in paths]
    four_d = nib.Nifti1Image(np.stack([i.get_fdata() for i in imgs], -1), imgs[0].affine)
    f4 = tmp_path / "betas.nii.gz"
    four_d.to_filename(f4)
    mask_file = tmp_path / "mask.nii.gz"
    small_mask.to_filename(mask_file)
    res = conperm_workflow(
        f4, mask_image=mask_file, output_dir=tmp_path / "a", prefix="cp", n_iters=200
    )
    assert (tmp_path / "a" / "cp_z_level-voxel_corr-FWE_method-montecarlo.nii.gz").exists()
    assert (tmp_path / "a" / "cp_boilerplate.txt").read_text().startswith("A one-sample")
    assert res.maps["p_level-voxel_corr-FWE_method-montecarlo"].min() < 0.05
    # list of 3-D files through the CLI entry point gives the same maps
    argv = [*paths, "--mask", str(mask_file), "--output_dir", str(tmp_path / "b")]
    assert main(["conperm", *argv, "--n_iters", "200"]) == 0
    a = nib.load(tmp_path / "a" / "cp_t.nii.gz").get_fdata()
    b = nib.load(tmp_path / "b" / "t.nii.gz").get_fdata()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True)
