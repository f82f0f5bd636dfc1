"""Dataset construction, selection and validation."""

import copy

import nibabel as nib
import numpy as np
import pytest

from nimare_jax import spatial
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError, InputFileError


def small_dict():
    return {
        "s1": {
            "contrasts": {
                "c1": {
                    "coords": {
                        "space": "MNI",
                        "x": [0.0, 40.0],
                        "y": [0.0, -20.0],
                        "z": [10.0, 30.0],
                    },
                    "metadata": {"sample_sizes": [20, 30]},
                    "labels": {"pain": 0.5, "memory": 0.0},
                    "text": {"abstract": "pain study"},
                }
            }
        },
        "s2": {
            "contrasts": {
                "c1": {
                    "coords": {"space": "TAL", "x": [-30.0], "y": [20.0], "z": [0.0]},
                    "metadata": {"sample_sizes": [15]},
                    "labels": {"pain": 0.0, "memory": 0.2},
                    "text": {"abstract": "memory study"},
                }
            }
        },
    }


def test_ids_tables_and_voxel_indices():
    d = Dataset(small_dict())
    assert list(d.ids) == ["s1-c1", "s2-c1"]
    assert len(d.coordinates) == 3
    ijk = spatial.mm2vox(d.coordinates[["x", "y", "z"]].to_numpy(), d.masker.affine)
    np.testing.assert_array_equal(d.coordinates[["i", "j", "k"]].to_numpy(), ijk)


def test_talairach_foci_are_converted_to_mni():
    d = Dataset(small_dict())
    row = d.coordinates[d.coordinates.id == "s2-c1"][["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(row, spatial.tal2mni([[-30.0, 20.0, 0.0]]))


def test_unknown_space_warns_once_and_keeps_coordinates():
    src = small_dict()
    src["s1"]["contrasts"]["c1"]["coords"]["space"] = "UNKNOWN"
    src["s2"]["contrasts"]["c1"]["coords"]["space"] = "weird"
    with pytest.warns(UserWarning, match="2 experiment") as record:
        d = Dataset(src)
    assert len(record) == 1
    assert d.coordinates.loc[0, "x"] == 0.0


def test_slice_selection_and_getters():
    d = Dataset(small_dict())
    s = d.slice(["s2-c1"])
    assert list(s.ids) == ["s2-c1"] and len(s.coordinates) == 1
    assert d.get_studies_by_label("pain") == ["s1-c1"]
    assert d.get_studies_by_label(["memory"], label_threshold=0.1) == ["s2-c1"]
    assert sorted(d.get_labels()) == ["memory", "pain"]
    assert d.get_labels(ids=["s1-c1"]) == ["pain"]
    assert d.get_texts() == ["pain study", "memory study"]
    assert d.get_metadata(field="sample_sizes") == [[20, 30], [15]]
    np.testing.assert_allclose(d.get_sample_sizes(), [25, 15])
    assert d.get_studies_by_coordinate([[40, -20, 30]], r=1) == ["s1-c1"]
    assert d.get_studies_by_coordinate([[40, -20, 30]], r=200) == ["s1-c1", "s2-c1"]
    with pytest.raises(DatasetError, match="not in the dataset"):
        d.slice(["nope"])


def test_get_studies_by_mask_uses_world_coordinates():
    d = Dataset(small_dict())
    mask = spatial.get_template("ale_2mm")  # x-flipped storage, same world space
    roi = np.zeros(mask.shape, np.int8)
    ijk = spatial.mm2vox([[40.0, -20.0, 30.0]], mask.affine)[0]
    roi[tuple(ijk)] = 1
    assert d.get_studies_by_mask(nib.Nifti1Image(roi, mask.affine)) == ["s1-c1"]


def test_dataset_is_frozen():
    d = Dataset(small_dict())
    with pytest.raises(AttributeError):
        d.space = "other"


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="no experiments"):
        Dataset({})
    src = copy.deepcopy(small_dict())
    src["s1"]["contrasts"]["c1"]["coords"]["x"] = [0.0, 900.0]
    with pytest.raises(DatasetError, match="outside the image volume.*s1-c1"):
        Dataset(src)
    src = copy.deepcopy(small_dict())
    src["s2"]["contrasts"]["c1"]["coords"]["y"] = ["a"]
    with pytest.raises(InputFileError, match=r"study 's2'.*'coords.y' must hold numbers.*'a'"):
        Dataset(src)
    src = copy.deepcopy(small_dict())
    src["s2"]["contrasts"]["c1"]["metadata"]["sample_sizes"] = [0]
    with pytest.raises(DatasetError, match="s2-c1.*sample_sizes"):
        Dataset(src).get_sample_sizes()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputFileError, match="bad.json.*not valid JSON"):
        Dataset(bad)
