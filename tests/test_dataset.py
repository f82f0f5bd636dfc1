"""Dataset construction, selection and validation."""

import codecs
import copy
import json
import re

import nibabel as nib
import numpy as np
import pytest

from nimare_jax import spatial
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError, InputFileError
from nimare_jax.meta.cbma.kernel import ALEKernel, MKDAKernel


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
    ijk = spatial.mm2vox(d.coordinates[["x", "y", "z"]].to_numpy(), d.masker.mask_img_.affine)
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
    assert d.get_texts(text_type="abstract") == ["pain study", "memory study"]
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


def test_assignments_revalidate_and_recompute_voxel_indices():
    # NiMARE scripts assign tables; the voxel indices must follow the new coordinates.
    d = Dataset(small_dict())
    affine = d.masker.mask_img_.affine
    d.coordinates = d.coordinates.drop_duplicates(subset=["id"])
    assert list(d.coordinates["id"]) == ["s1-c1", "s2-c1"]
    moved = d.coordinates.copy()
    moved["x"] = moved["x"] + 10.0
    d.coordinates = moved
    expect = np.round(
        np.c_[moved[["x", "y", "z"]].to_numpy(), np.ones(2)] @ np.linalg.inv(affine).T
    )[:, :3]
    np.testing.assert_array_equal(d.coordinates[["i", "j", "k"]].to_numpy(), expect)
    d.annotations = d.annotations.assign(extra=[1, 2])
    d.metadata = d.metadata.assign(sample_sizes=[[10], [12]])
    np.testing.assert_array_equal(d.get_sample_sizes(), [10.0, 12.0])
    with pytest.raises(DatasetError, match=r"coordinates lacks .*'x'"):
        d.coordinates = moved.drop(columns=["x"])
    with pytest.raises(DatasetError, match="must be a pandas DataFrame"):
        d.metadata = {"id": ["s1-c1"]}
    with pytest.raises(DatasetError, match="lacks the column"):
        d.texts = d.texts.drop(columns=["id"])


def test_masker_is_a_fitted_niftimasker_and_assignment_reindexes():
    d = Dataset(small_dict())
    assert hasattr(d.masker, "mask_img_") and hasattr(d.masker, "inverse_transform")
    template = spatial.get_template("mni152_2mm")
    np.testing.assert_array_equal(
        np.asanyarray(d.masker.mask_img_.dataobj), np.asanyarray(template.dataobj)
    )
    n_vox = int(np.asanyarray(template.dataobj).sum())
    np.testing.assert_array_equal(np.ravel(d.masker.transform(template)), np.ones(n_vox))
    # A mask on another grid (3 mm, shifted): indices follow its affine.
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-60, -90, -40]
    d.masker = nib.Nifti1Image(np.ones((40, 50, 40), np.int8), affine)
    xyz = d.coordinates[["x", "y", "z"]].to_numpy()
    np.testing.assert_array_equal(
        d.coordinates[["i", "j", "k"]].to_numpy(), np.round((xyz - [-60, -90, -40]) / 3.0)
    )


def test_four_d_single_volume_mask_is_squeezed():
    data = np.zeros((10, 10, 10, 1), np.int8)
    data[2:8, 2:8, 2:8, 0] = 1
    affine = np.diag([20.0, 20.0, 20.0, 1.0])
    affine[:3, 3] = -100  # every focus of small_dict() inside
    d = Dataset(small_dict(), mask=nib.Nifti1Image(data, affine))
    assert d.masker.mask_img_.shape == (10, 10, 10)
    assert int(np.asanyarray(d.masker.mask_img_.dataobj).sum()) == 6**3


def test_no_mask_and_no_target_gives_no_masker():
    with pytest.warns(UserWarning, match="no masker"):
        d = Dataset(small_dict(), target=None, mask=None)
    assert d.masker is None and "i" not in d.coordinates.columns
    with pytest.raises(ValueError, match="masker is required"):
        ALEKernel().transform(d, return_type="array")


def test_copy_is_independent():
    d = Dataset(small_dict())
    c = d.copy()
    c.coordinates = c.coordinates.iloc[:1]
    c.annotations.loc[0, "pain"] = 99.0
    assert len(d.coordinates) == 3 and d.annotations.loc[0, "pain"] == 0.5


def test_merge_concatenates_experiments_and_refuses_shared_ids():
    a = Dataset(small_dict())
    src = copy.deepcopy(small_dict())
    other = Dataset({"s3": src["s1"], "s4": src["s2"]})
    m = a.merge(other)
    assert list(m.ids) == ["s1-c1", "s2-c1", "s3-c1", "s4-c1"]
    assert len(m.coordinates) == 6 and len(m.metadata) == 4
    # Each focus keeps its MNI coordinate and its voxel index in the first dataset's mask.
    np.testing.assert_allclose(
        m.coordinates[["x", "y", "z"]].to_numpy(),
        np.vstack([a.coordinates[["x", "y", "z"]], other.coordinates[["x", "y", "z"]]]),
    )
    np.testing.assert_array_equal(
        m.coordinates[["i", "j", "k"]].to_numpy(),
        spatial.mm2vox(m.coordinates[["x", "y", "z"]].to_numpy(), a.masker.mask_img_.affine),
    )
    with pytest.raises(DatasetError, match="sharing experiment ids: s1-c1"):
        a.merge(a)


def test_get_images_and_update_path_in_place(tmp_path):
    src = small_dict()
    src["s1"]["contrasts"]["c1"]["images"] = {"z": "s1_z.nii.gz", "beta": "/abs/s1_beta.nii"}
    src["s2"]["contrasts"]["c1"]["images"] = {"z": "sub/s2_z.nii.gz"}
    d = Dataset(src)
    assert d.get_images(imtype=None) == ["z", "beta"]
    assert d.get_images(ids=["s2-c1"]) == ["z"]
    assert d.update_path(tmp_path) is d  # in place, as NiMARE
    assert d.get_images(imtype="z") == [
        str(tmp_path / "s1_z.nii.gz"),
        str(tmp_path / "sub/s2_z.nii.gz"),
    ]
    # An all-absolute column is kept relative to its folder too, so it moves (as NiMARE).
    assert d.get_images(ids="s1-c1", imtype="beta") == str(tmp_path / "s1_beta.nii")
    assert d.get_images(ids=["s2-c1"], imtype="beta") == [None]
    with pytest.raises(DatasetError, match="image type 'se' is not"):
        d.get_images(imtype="se")


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="no experiments"):
        Dataset({})
    src = copy.deepcopy(small_dict())
    src["s1"]["contrasts"]["c1"]["coords"]["x"] = [0.0, 900.0]
    with pytest.raises(DatasetError, match=r"dict: experiment 's1-c1', field 'coords'.*900.*500"):
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


# ------------------------------------------------------------------------ NiMARE JSON files
def write_json(tmp_path, source, name="dset.json", prefix=b""):
    path = tmp_path / name
    path.write_bytes(prefix + json.dumps(source).encode())
    return path


def test_json_file_with_utf8_bom_loads(tmp_path):
    # Windows editors save UTF-8 with a byte-order mark; json.load refused it
    path = write_json(tmp_path, small_dict(), prefix=codecs.BOM_UTF8)
    dset = Dataset(path)
    assert list(dset.ids) == ["s1-c1", "s2-c1"] and dset.origin == str(path)


def test_sleuth_file_given_to_dataset_points_to_the_converter(tmp_path):
    path = tmp_path / "foci.txt"
    path.write_bytes(b"// Reference=MNI\r\n// Smith, 2010: A \x85 B\r\n// Subjects=5\r\n1 2 3\r\n")
    with pytest.raises(
        InputFileError,
        match=r"foci.txt: not valid JSON.*Sleuth text file.*"
        r"nimare_jax.io.convert_sleuth_to_dataset",
    ):
        Dataset(path)


def image_only_dict():
    src = small_dict()
    del src["s1"]["contrasts"]["c1"]["coords"]  # NiMARE keeps image-only experiments
    src["s2"]["contrasts"]["c1"]["coords"].update(x=[], y=[], z=[])
    src["s2"]["contrasts"]["c1"]["images"] = {"z": "s2_z.nii.gz"}
    return src


def test_experiments_without_foci_load_and_cbma_names_file_and_ids(tmp_path):
    path = write_json(tmp_path, image_only_dict())
    dset = Dataset(path)
    assert list(dset.ids) == ["s1-c1", "s2-c1"] and dset.coordinates.empty
    assert dset.images["z"].tolist()[1].endswith("s2_z.nii.gz")
    # the estimator that needs foci names the file and the ids, as plain strings
    with pytest.raises(DatasetError) as info:
        MKDAKernel().prepare(dset)
    message = str(info.value)
    assert message.startswith(f"{path}: 2 experiment(s) have no foci")
    assert message.endswith(": 's1-c1', 's2-c1'") and "np.str_" not in message
    with pytest.raises(DatasetError, match=r"^dataset dict: 2 experiment\(s\) have no foci"):
        MKDAKernel().prepare(Dataset(image_only_dict()).slice(["s2-c1", "s1-c1"]))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (["abc"], "item 0 is 'abc'"),
        ("abc", "item 0 is 'abc'"),
        ([20, True], "item 1 is True"),
        ([[20]], r"item 0 is \[20\]"),
        ({"n": 20}, r"item 0 is \{'n': 20\}"),
        (["1_0"], "item 0 is '1_0'"),
    ],
)
def test_non_numeric_sample_sizes_are_refused_at_load(tmp_path, value, shown):
    # used to load, then fail in the ALE kernel with "could not convert string to float"
    src = small_dict()
    src["s2"]["contrasts"]["c1"]["metadata"]["sample_sizes"] = value
    path = write_json(tmp_path, src)
    where = re.escape(f"{path}: experiment 's2-c1' (study 's2', contrast 'c1')")
    with pytest.raises(
        InputFileError, match=rf"^{where}: field 'metadata.sample_sizes' .*; {shown}$"
    ):
        Dataset(path)


@pytest.mark.parametrize("value", [[0], [-5], [], [20, 0], None, float("nan")])
def test_unusable_sample_sizes_are_named_where_the_ale_kernel_reads_them(tmp_path, value):
    src = small_dict()
    src["s2"]["contrasts"]["c1"]["metadata"]["sample_sizes"] = value
    path = write_json(tmp_path, src)
    dset = Dataset(path)  # loads: only estimators that need sample sizes refuse them
    where = re.escape(f"{path}: experiment 's2-c1' (study 's2', contrast 'c1')")
    # the kernel says why it needs sample sizes, then names the file, experiment and field
    with pytest.raises(DatasetError, match=rf"\): {where}: metadata 'sample_sizes' must be posit"):
        ALEKernel().fwhms(dset)
    assert np.all(ALEKernel(sample_size=10).fwhms(dset) > 0)  # a fixed size needs none


def test_numeric_strings_are_numbers_as_in_nimare():
    src = small_dict()
    src["s2"]["contrasts"]["c1"]["coords"].update(x=["-30"], y=[" 2e1"], z=[0])
    src["s2"]["contrasts"]["c1"]["metadata"]["sample_sizes"] = ["15"]
    dset = Dataset(src)
    np.testing.assert_array_equal(
        dset.coordinates[["x", "y", "z"]], Dataset(small_dict()).coordinates[["x", "y", "z"]]
    )
    np.testing.assert_array_equal(dset.get_sample_sizes(), [25, 15])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c.update(coords=[1, 2, 3]),
            "field 'coords' must be an object with x, y, z, got list",
        ),
        (lambda c: c["coords"].pop("z"), "field 'coords' lacks 'z'"),
        (
            lambda c: c["coords"].update(x=[True]),
            r"field 'coords.x' must hold numbers; item 0 is True",
        ),
        (
            lambda c: c["coords"].update(y=[None]),
            r"field 'coords.y' must hold numbers; item 0 is None",
        ),
        (lambda c: c["coords"].update(x=["nan"]), "field 'coords' contains NaN or inf"),
        (lambda c: c["coords"].update(x=[1, 2]), "field 'coords' has x/y/z of lengths 2/1/1"),
        (lambda c: c["coords"].update(space=3), "field 'coords.space' must be a string, got 3"),
        (lambda c: c.update(metadata="n=20"), "field 'metadata' must be an object, got str"),
        (lambda c: c.update(labels=[1]), "field 'labels' must be an object, got list"),
    ],
)
def test_malformed_contrast_fields_name_file_experiment_and_field(tmp_path, change, message):
    src = small_dict()
    change(src["s2"]["contrasts"]["c1"])
    path = write_json(tmp_path, src)
    where = re.escape(f"{path}: experiment 's2-c1' (study 's2', contrast 'c1')")
    with pytest.raises(InputFileError, match=rf"^{where}: {message}"):
        Dataset(path)


def test_malformed_contrast_entry_and_top_level(tmp_path):
    # NumPy's strings drop trailing NULs, so the id would silently lose it
    with pytest.raises(InputFileError, match=r"experiment 's-c\\x00'.*may not hold NUL"):
        Dataset({"s": {"contrasts": {"c\x00": {}}}})
    with pytest.raises(
        InputFileError, match=r"dset.json: experiment 's-c' .*expected an object, got list"
    ):
        Dataset(write_json(tmp_path, {"s": {"contrasts": {"c": []}}}))
    with pytest.raises(InputFileError, match=r"dset.json: expected a JSON object, got list"):
        Dataset(write_json(tmp_path, [1]))


def test_json_error_echo_of_huge_value_is_cut(tmp_path):
    src = small_dict()
    src["s2"]["contrasts"]["c1"]["metadata"]["sample_sizes"] = ["9" * 5_000_000 + "x"]
    with pytest.raises(InputFileError) as info:
        Dataset(write_json(tmp_path, src))
    assert len(str(info.value)) < 400 and "(5000003 characters)" in str(info.value)
