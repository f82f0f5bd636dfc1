"""Geometry helpers against closed forms and the bundled templates."""

import nibabel as nib
import numpy as np
import pytest

from nimare_jax import spatial
from nimare_jax.exceptions import ImageError, InputFileError


def test_templates_hold_the_same_voxels_mirrored():
    a, b = spatial.get_template("mni152_2mm"), spatial.get_template("ale_2mm")
    da, db = np.asanyarray(a.dataobj), np.asanyarray(b.dataobj)
    assert da.sum() == db.sum() == 228483
    assert a.affine[0, 0] == 2 and b.affine[0, 0] == -2
    # the same world coordinates are in both masks
    xyz_a = spatial.vox2mm(np.argwhere(da), a.affine)
    ijk_b = spatial.mm2vox(xyz_a, b.affine)
    assert db[tuple(ijk_b.T)].all()


def test_t1_template_is_on_the_mask_grid():
    t1, mask = spatial.get_template("mni152_2mm", mask=None), spatial.get_template()
    assert t1.shape == mask.shape
    np.testing.assert_allclose(t1.affine, mask.affine)


def test_mm2vox_rounds_to_nearest_and_inverts_vox2mm():
    affine = spatial.get_template().affine
    rng = np.random.default_rng(0)
    ijk = rng.integers(0, 90, (50, 3))
    xyz = spatial.vox2mm(ijk, affine)
    np.testing.assert_array_equal(spatial.mm2vox(xyz, affine), ijk)
    jitter = rng.uniform(-0.9, 0.9, xyz.shape)  # less than half a 2 mm voxel
    np.testing.assert_array_equal(spatial.mm2vox(xyz + jitter, affine), ijk)


def test_mm2vox_absurd_finite_coordinates_do_not_overflow():
    # 1e308 mm used to overflow the integer cast (RuntimeWarning, garbage indices)
    affine = spatial.get_template().affine
    ijk = spatial.mm2vox([[1e308, -1e308, 0.0]], affine)
    assert ijk[0, 0] == 2**31 - 1 and ijk[0, 1] == -(2**31)


def test_tal_mni_round_trip_and_direction():
    rng = np.random.default_rng(1)
    mni = rng.uniform(-70, 70, (20, 3))
    np.testing.assert_allclose(spatial.tal2mni(spatial.mni2tal(mni)), mni, atol=1e-9)
    # Talairach brains are smaller than MNI ones: converting TAL to MNI moves points outward
    tal = np.array([[60.0, 0.0, 0.0], [0.0, 60.0, 20.0]])
    assert np.all(np.abs(spatial.tal2mni(tal))[[0, 1], [0, 1]] > 60)


def test_round2_rounds_half_away_from_zero():
    np.testing.assert_array_equal(
        spatial.round2([0.5, 1.5, 2.5, -0.5, -2.5, 2.4]), [1, 2, 3, -1, -3, 2]
    )


def test_listify():
    assert spatial.listify("a") == ["a"]
    assert spatial.listify(("a", "b")) == ["a", "b"]


def test_resource_path_has_templates():
    assert (spatial.get_resource_path() / "templates").is_dir()


def test_load_mask_rejects_bad_images(tmp_path):
    with pytest.raises(ImageError, match="empty"):
        spatial.load_mask(nib.Nifti1Image(np.zeros((4, 5, 6)), np.eye(4)))
    with pytest.raises(ImageError, match="3-D"):
        spatial.load_mask(nib.Nifti1Image(np.ones((4, 5, 6, 2)), np.eye(4)))
    bad = np.ones((4, 5, 6))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        spatial.load_mask(nib.Nifti1Image(bad, np.eye(4)))
    with pytest.raises(InputFileError, match="mask image: file not found: .*missing.nii.gz"):
        spatial.load_mask(tmp_path / "missing.nii.gz")


def test_load_image_3d_takes_a_single_volume_and_names_other_shapes(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    path = tmp_path / "one_volume.nii.gz"
    nib.Nifti1Image(data[..., None], affine).to_filename(path)
    img = spatial.load_image_3d(path, "study 'a'")
    assert img.shape == (4, 5, 6)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), data)
    np.testing.assert_array_equal(img.affine, affine)
    same = nib.Nifti1Image(data, affine)
    assert spatial.load_image_3d(same) is same
    for shape in ((4, 5, 6, 2), (4, 5)):
        with pytest.raises(
            ImageError, match=rf"study 'a': expected a 3-D image, got shape \({shape[0]}, 5"
        ):
            spatial.load_image_3d(nib.Nifti1Image(np.ones(shape), affine), "study 'a'")
    with pytest.raises(InputFileError, match="study 'a': file not found"):
        spatial.load_image_3d(tmp_path / "missing.nii.gz", "study 'a'")


@pytest.mark.parametrize("order", ["C", "F"])
def test_mask_voxels_are_c_order_flat_indices_cached_by_value(order):
    rng = np.random.default_rng(3)
    data = np.asarray(rng.random((7, 6, 5)) > 0.6, np.uint8, order=order)
    img = nib.Nifti1Image(data, np.eye(4))
    shape, index = spatial.mask_voxels(img)
    assert shape == (7, 6, 5)
    np.testing.assert_array_equal(index, np.flatnonzero(np.ascontiguousarray(data) > 0))
    assert index.dtype == np.int32 and not index.flags.writeable
    # another mask of the same shape (a cache keyed by shape alone would return the first)
    other = data.copy(order=order)
    other[0, 0, 0] = 1 - other[0, 0, 0]
    _, index2 = spatial.mask_voxels(nib.Nifti1Image(other, np.eye(4)))
    np.testing.assert_array_equal(index2, np.flatnonzero(np.ascontiguousarray(other) > 0))
