"""Cluster tables: checked against an independent scipy.ndimage computation."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from nimare_jax.meta.cbma import ALE
from nimare_jax.reports import atlas_labels, cluster_table, load_atlas
from nimare_jax.reports.clusters import NO_LABEL
from nimare_jax.spatial import get_resource_path, get_template

AFFINE = np.array([[-3.0, 0, 0, 30.0], [0, 2.0, 0, -20.0], [0, 0, 2.5, -10.0], [0, 0, 0, 1.0]])


def reference_table(data, affine, threshold, sign=1.0):
    """Independent per-cluster statistics (scipy.ndimage only), ordered by peak."""
    values = sign * data
    labels, n = ndimage.label(values > threshold, ndimage.generate_binary_structure(3, 1))
    rows = []
    for c in range(1, n + 1):
        inside = labels == c
        peak_ijk = np.unravel_index(np.argmax(np.where(inside, values, -np.inf)), data.shape)
        com = ndimage.center_of_mass(np.where(inside, values, 0))
        rows.append(
            {
                "size_voxels": int(inside.sum()),
                "peak": nib.affines.apply_affine(affine, peak_ijk),
                "com": nib.affines.apply_affine(affine, com),
                "peak_value": sign * values[peak_ijk],
            }
        )
    return sorted(rows, key=lambda r: -sign * r["peak_value"])


def check_against_reference(table, ref, voxel_mm3):
    assert len(table) == len(ref)
    assert table["cluster_id"].tolist() == list(range(1, len(ref) + 1))
    for (_, row), r in zip(table.iterrows(), ref, strict=True):
        assert row["size_voxels"] == r["size_voxels"]
        assert row["size_mm3"] == pytest.approx(r["size_voxels"] * voxel_mm3)
        np.testing.assert_allclose(row[["peak_x", "peak_y", "peak_z"]].to_numpy(float), r["peak"])
        np.testing.assert_allclose(
            row[["com_x", "com_y", "com_z"]].to_numpy(float), r["com"], atol=1e-9
        )
        assert row["peak_value"] == pytest.approx(r["peak_value"])


@pytest.fixture
def blobs():
    """Three positive blobs (sizes 27, 8, 1) and one negative blob on an oblique-free grid."""
    rng = np.random.default_rng(0)
    data = np.zeros((20, 18, 16))
    data[2:5, 2:5, 2:5] = 2.0 + rng.random((3, 3, 3))
    data[3, 3, 3] = 9.0  # known peak of the large blob
    data[10:12, 10:12, 10:12] = 4.0 + rng.random((2, 2, 2))
    data[15, 2, 12] = 3.5  # single voxel
    data[15, 14, 3:6] = -5.0 - rng.random(3)
    data[5, 5, 5] = 7.0  # touches the large blob only diagonally (not a face neighbour)
    data[4, 4, 4] = 2.5
    data[5, 4, 4] = 0.5  # below threshold: does not bridge
    return nib.Nifti1Image(data, AFFINE)


def test_synthetic_blobs_match_scipy(blobs):
    data = blobs.get_fdata()
    table = cluster_table(blobs, 1.0, atlas=None)
    voxel_mm3 = 3.0 * 2.0 * 2.5
    check_against_reference(table, reference_table(data, AFFINE, 1.0), voxel_mm3)
    assert table["peak_value"].iloc[0] == 9.0
    np.testing.assert_allclose(table.loc[0, ["peak_x", "peak_y", "peak_z"]], [21.0, -14.0, -2.5])
    assert "peak_label" not in table
    sizes = sorted(table["size_voxels"])
    assert sizes == [1, 1, 8, 27]  # the diagonal voxel is its own cluster with 6-connectivity


def test_connectivity_min_size_and_two_sided(blobs):
    data = blobs.get_fdata()
    assert len(cluster_table(blobs, 1.0, connectivity=26, atlas=None)) == 3
    big = cluster_table(blobs, 1.0, min_size=2, atlas=None)
    assert big["size_voxels"].tolist() == [27, 8]
    both = cluster_table(blobs, 1.0, atlas=None, two_sided=True)
    assert len(both) == 5
    neg = both.iloc[4:].reset_index(drop=True)
    neg["cluster_id"] -= 4
    check_against_reference(neg, reference_table(data, AFFINE, 1.0, sign=-1.0), 15.0)
    assert both["peak_value"].iloc[4] < -5.0


def test_bad_arguments(blobs):
    with pytest.raises(ValueError, match="min_size"):
        cluster_table(blobs, 1.0, min_size=0)
    with pytest.raises(ValueError, match="connectivity"):
        cluster_table(blobs, 1.0, connectivity=8)
    with pytest.raises(ValueError, match="unknown atlas"):
        cluster_table(blobs, 1.0, atlas="aal")
    empty = cluster_table(blobs, 100.0)
    assert empty.empty and "peak_label" in empty


def test_bundled_atlas_names_match_image():
    img, names = load_atlas("harvard_oxford")
    values = np.unique(np.asanyarray(img.dataobj))
    assert int(values.max()) == len(names) - 1 == 48
    assert set(values.tolist()) == set(names)
    assert names[1] == "Frontal Pole" and names[48] == "Occipital Pole"
    folder = get_resource_path() / "atlases"
    assert (folder / "Harvard-Oxford-LICENSE").is_file()


def test_labels_use_world_coordinates_on_another_grid():
    atlas_img, names = load_atlas()
    atlas = np.asanyarray(atlas_img.dataobj)
    # a voxel deep in a region: all its face neighbours share its label
    for label in (7, 48):  # Precentral Gyrus, Occipital Pole
        ijk = np.argwhere(ndimage.binary_erosion(atlas == label, iterations=2))[0]
        xyz = nib.affines.apply_affine(atlas_img.affine, ijk)
        # the map lives on the MNI152 grid whose x axis runs the other way
        mask = get_template("mni152_2mm")
        assert np.sign(mask.affine[0, 0]) != np.sign(atlas_img.affine[0, 0])
        data = np.zeros(mask.shape)
        map_ijk = np.round(nib.affines.apply_affine(np.linalg.inv(mask.affine), xyz)).astype(int)
        data[tuple(map_ijk)] = 5.0
        table = cluster_table(nib.Nifti1Image(data, mask.affine), 1.0)
        np.testing.assert_allclose(table.loc[0, ["peak_x", "peak_y", "peak_z"]], xyz)
        assert table.loc[0, "peak_label"] == names[label]
    assert atlas_labels([[0.0, 0.0, 500.0], [0.0, 0.0, 0.0]]) == [NO_LABEL, NO_LABEL]


def test_laird_ale_table(laird):
    result = ALE().fit(laird)
    table = cluster_table(result, 3.1, map_name="z")
    z_img = result.get_map("z")
    ref = reference_table(z_img.get_fdata(), z_img.affine, 3.1)
    check_against_reference(table, ref, 8.0)
    assert table["size_voxels"].sum() == int((result.get_map("z", "array") > 3.1).sum())
    assert table["peak_label"].map(type).eq(str).all()
    assert (table["peak_label"] != NO_LABEL).sum() > len(table) / 3
    same = cluster_table(z_img, 3.1)
    pd.testing.assert_frame_equal(table, same)
