"""NiMARE 0.22.1 behaviours of the data side: transforms, Dataset tables, utils, generate.

Each test checks a behaviour nimare_jax follows for NiMARE scripts (and NiMARE's own test
suite, ``scripts/run_nimare_tests.py``) against an independent computation: a closed form,
NumPy/SciPy, or a brute-force count.
"""

import logging
import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.stats as sps

from nimare_jax import generate, transforms, utils
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import InputFileError
from nimare_jax.io import convert_dataset_to_json, convert_sleuth_to_dataset
from nimare_jax.meta.kernel import MKDAKernel
from nimare_jax.references import load_references
from nimare_jax.spatial import get_masker, mm2vox, vox2mm
from nimare_jax.studyset import Studyset

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (20, 20, 20)


def _mask():
    data = np.zeros(SHAPE, np.int8)
    data[1:-1, 1:-1, 1:-1] = 1
    return nib.Nifti1Image(data, AFFINE)


def _blob(center, peak, sigma=1.5):
    grid = np.indices(SHAPE).astype(float)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, center, strict=True))
    return peak * np.exp(-d2 / (2 * sigma**2))


def _save(tmp_path, name, data):
    path = str(tmp_path / f"{name}.nii.gz")
    nib.Nifti1Image(data.astype(np.float32), AFFINE).to_filename(path)
    return path


# ----------------------------------------------------------------- resolve_transforms
@pytest.fixture
def t_map(tmp_path):
    rng = np.random.default_rng(3)
    t = rng.normal(scale=2.0, size=SHAPE)
    return t, _save(tmp_path, "t", t)


def test_resolve_transforms_effect_sizes_match_closed_forms(t_map):
    t, path = t_map
    masker = get_masker(_mask())
    inside = np.asanyarray(masker.mask_img_.dataobj) > 0
    n = 25
    d = t[inside] / np.sqrt(n)
    h = 1 - 3 / (4 * (n - 1) - 1)  # Hedges' small-sample correction
    want = {
        "d": d,
        "g": h * d,
        "g_var": (n - 1) * (1 + n * d**2) * h**2 / (n * (n - 3)) - d**2,
        "z": sps.norm.isf(sps.t.sf(t[inside], n - 1)),
        "p": 2 * sps.t.sf(np.abs(t[inside]), n - 1),
    }
    for target, expected in want.items():
        img = transforms.resolve_transforms(target, {"t": path, "sample_sizes": [n]}, masker)
        assert img.shape == SHAPE and img.get_data_dtype() == np.float32
        got = np.asanyarray(img.dataobj)[inside]
        np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-6, err_msg=target)


def test_resolve_transforms_declines_without_a_sample_size(t_map):
    masker = get_masker(_mask())
    for target in ("d", "g", "g_var", "p"):
        assert transforms.resolve_transforms(target, {"t": t_map[1]}, masker) is None
    # an available target is returned as given (NiMARE logs that it is already there)
    assert transforms.resolve_transforms("t", {"t": t_map[1]}, masker) == t_map[1]


def test_resolve_transforms_logs_what_it_cannot_do_right(t_map, tmp_path, caplog):
    t, path = t_map
    masker = get_masker(_mask())
    with caplog.at_level(logging.WARNING, logger=transforms.LGR.name):
        transforms.resolve_transforms("g", {"t": path, "sample_sizes": [20, 20]}, masker)
    assert "one-sample" in caplog.text
    caplog.clear()
    p = 2 * sps.norm.sf(np.abs(t))
    p_path = _save(tmp_path, "p", p)
    with caplog.at_level(logging.WARNING, logger=transforms.LGR.name):
        z = transforms.resolve_transforms("z", {"p": p_path, "id": "s-1"}, masker)
    assert "s-1: " in caplog.text and "unsigned" in caplog.text
    inside = np.asanyarray(masker.mask_img_.dataobj) > 0
    np.testing.assert_allclose(np.asanyarray(z.dataobj)[inside], np.abs(t)[inside], atol=1e-3)
    caplog.clear()
    # a t map beside the p map gives the sign, and nothing is logged
    with caplog.at_level(logging.WARNING, logger=transforms.LGR.name):
        z = transforms.resolve_transforms("z", {"p": p_path, "t": path}, masker)
    assert caplog.text == ""
    np.testing.assert_allclose(np.asanyarray(z.dataobj)[inside], t[inside], atol=1e-3)


def test_transform_images_writes_the_missing_maps(t_map, tmp_path):
    t, path = t_map
    images = pd.DataFrame({"id": ["a-1", "b-1", "c-1"], "t": [path, path, None]})
    images["z"] = [str(tmp_path / "given_z.nii.gz"), None, None]
    metadata = pd.DataFrame({"id": ["a-1", "b-1", "c-1"], "sample_sizes": [[10], [30], [30]]})
    out = transforms.transform_images(images, "z", _mask(), metadata, out_dir=tmp_path)
    assert out.loc[0, "z"] == images.loc[0, "z"]  # existing entries are kept
    assert out.loc[2, "z"] is None  # nothing to derive it from
    new = out.loc[1, "z"]
    assert os.path.basename(new) == "b-1_2.0x2.0x2.0_z.nii.gz"
    # the whole grid is written, not only the mask
    np.testing.assert_allclose(
        nib.load(new).get_fdata(), sps.norm.isf(sps.t.sf(t, 29)), rtol=2e-6, atol=1e-5
    )
    assert list(images["z"].isna()) == [False, True, True]  # the input is not modified


# --------------------------------------------------------------------- threshold_image
def test_threshold_image_keeps_the_passing_values():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 5, 6)).astype(np.float32)
    decide = rng.uniform(size=values.shape)
    for tail, keep in (
        ("upper", decide >= 0.3),
        ("lower", decide <= 0.3),
        ("two-sided", np.abs(decide) >= 0.3),
    ):
        out = transforms.threshold_image(values, 0.3, thresholding_values=decide, tail=tail)
        np.testing.assert_array_equal(out, np.where(keep, values, 0))
        assert out.dtype == np.float32
    img = nib.Nifti1Image(values, AFFINE)
    out = transforms.threshold_image(img, 1.0, tail="two-sided", fill_value=-9)
    np.testing.assert_array_equal(out.get_fdata(), np.where(np.abs(values) >= 1, values, -9))
    np.testing.assert_array_equal(out.affine, AFFINE)
    with pytest.raises(ValueError, match="tail"):
        transforms.threshold_image(values, 0.3, tail="both")
    with pytest.raises(ValueError, match="differ in shape"):
        transforms.threshold_image(values, 0.3, thresholding_values=decide[0])


# ----------------------------------------------------------------- ImagesToCoordinates
@pytest.fixture
def peak_dataset(tmp_path):
    """Analyses a (z map, no foci), b (z map and foci), c (foci only)."""
    z = _blob((5, 6, 7), 5.0) + _blob((14, 13, 12), -4.5)
    z_path = _save(tmp_path, "z", z)
    focus = {"space": "MNI", "x": [0.0], "y": [2.0], "z": [4.0]}
    source = {
        "a": {"contrasts": {"1": {"images": {"z": z_path}}}},
        "b": {"contrasts": {"1": {"images": {"z": z_path}, "coords": focus}}},
        "c": {"contrasts": {"1": {"coords": focus}}},
    }
    return Dataset(source, target=None, mask=_mask()), z


def test_images_to_coordinates_finds_the_peaks(peak_dataset):
    dset, z = peak_dataset
    positive = vox2mm(np.array([[5, 6, 7]]), AFFINE)[0]
    negative = vox2mm(np.array([[14, 13, 12]]), AFFINE)[0]
    new = transforms.ImagesToCoordinates(merge_strategy="fill").transform(dset)
    a = new.coordinates[new.coordinates["id"] == "a-1"]
    np.testing.assert_allclose(a[["x", "y", "z"]].to_numpy(), [positive])
    assert a["z_stat"].iloc[0] == pytest.approx(5.0, abs=1e-5)
    # fill: b keeps its own focus, c too
    b = new.coordinates[new.coordinates["id"] == "b-1"]
    np.testing.assert_allclose(b[["x", "y", "z"]].to_numpy(), [[0.0, 2.0, 4.0]])
    assert list(new.metadata["coordinate_source"]) == ["nimare", "original", "original"]
    two = transforms.ImagesToCoordinates(merge_strategy="replace", two_sided=True)
    with pytest.warns(UserWarning, match="both positive and negative z_stats"):
        new = two.transform(dset)
    b = new.coordinates[new.coordinates["id"] == "b-1"].sort_values("z_stat")
    np.testing.assert_allclose(b[["x", "y", "z"]].to_numpy(), [negative, positive])
    np.testing.assert_allclose(b["z_stat"], [-4.5, 5.0], atol=1e-5)
    assert list(new.metadata["coordinate_source"]) == ["nimare", "nimare", "original"]
    demolish = transforms.ImagesToCoordinates(merge_strategy="demolish").transform(dset)
    assert set(demolish.coordinates["id"]) == {"a-1", "b-1"}
    high = transforms.ImagesToCoordinates(merge_strategy="demolish", z_threshold=6.0)
    with pytest.warns(UserWarning, match="must not exceed|No clusters"):  # nilearn's
        assert high.transform(dset).coordinates.empty


def test_images_to_coordinates_reads_a_p_map_as_positive_z(peak_dataset, tmp_path, caplog):
    dset, z = peak_dataset
    p_path = _save(tmp_path, "p", 2 * sps.norm.sf(np.abs(z)))
    dset.images = pd.DataFrame({"id": dset.ids, "p": [p_path, None, None]})
    with caplog.at_level(logging.WARNING, logger=transforms.LGR.name):
        new = transforms.ImagesToCoordinates(merge_strategy="replace", two_sided=True).transform(
            dset
        )
    assert "Cannot use two_sided threshold using a p map for a-1" in caplog.text
    assert "No Z or p map for b-1, skipping..." in caplog.text
    a = new.coordinates[new.coordinates["id"] == "a-1"].sort_values("z_stat")
    # both blobs, as positive z: a p-value has no sign
    np.testing.assert_allclose(a["z_stat"], [4.5, 5.0], atol=2e-2)


# ------------------------------------------------------------------- Dataset tables
def _foci_dict(z_stat, **extra):
    coords = {"space": "MNI", "x": [0, 10], "y": [0, 10], "z": [0, 10], "z_stat": z_stat}
    return {"s": {"contrasts": {"1": {"coords": {**coords, **extra}}}}}


def test_dataset_keeps_the_fields_of_each_focus():
    dset = Dataset(_foci_dict([3.5, 4.0], cluster_size=[11, 12], peak="yes"))
    assert list(dset.coordinates["z_stat"]) == [3.5, 4.0]
    assert dset.coordinates["z_stat"].dtype == float
    assert list(dset.coordinates["cluster_size"]) == [11, 12]
    assert list(dset.coordinates["peak"]) == ["yes", "yes"]  # one value for every focus
    with pytest.raises(InputFileError, match="'coords.cluster_size' has 3 values for 2 foci"):
        Dataset(_foci_dict([3.5, 4.0], cluster_size=[1, 2, 3]))


def test_dataset_warns_on_foci_of_both_signs(recwarn):
    with pytest.warns(UserWarning, match="both positive and negative z_stats"):
        Dataset(_foci_dict([3.5, -4.0]))
    recwarn.clear()
    Dataset(_foci_dict([-3.5, -4.0]))
    assert not [w for w in recwarn if "z_stats" in str(w.message)]


def test_get_metadata_and_get_texts_list_fields_without_a_field():
    source = {
        "s1": {"contrasts": {"1": {"metadata": {"sample_sizes": [20], "task": None}}}},
        "s2": {"contrasts": {"1": {"metadata": {"task": "n-back"}, "text": {"title": "T"}}}},
    }
    dset = Dataset(source, target=None, mask=_mask())
    assert dset.get_metadata() == ["sample_sizes", "task"]
    assert dset.get_metadata(ids=["s1-1"]) == ["sample_sizes"]
    assert dset.get_metadata(ids="s2-1", field="task") == "n-back"
    assert dset.get_metadata(field="task") == [None, "n-back"]
    assert dset.get_texts() == ["title"]
    assert dset.get_texts(ids=["s1-1"]) == []
    assert dset.get_texts(text_type="title") == [None, "T"]


def test_absolute_image_paths_follow_update_path(tmp_path):
    source = {
        "s1": {"contrasts": {"1": {"images": {"z": "/data/a/s1_z.nii.gz"}}}},
        "s2": {"contrasts": {"1": {"images": {"z": "/data/b/s2_z.nii.gz"}}}},
    }
    dset = Dataset(source, target=None, mask=_mask())
    assert list(dset.images["z__relative"]) == ["a/s1_z.nii.gz", "b/s2_z.nii.gz"]
    assert list(dset.images["z"]) == ["/data/a/s1_z.nii.gz", "/data/b/s2_z.nii.gz"]
    dset.update_path(tmp_path)
    assert dset.get_images(imtype="z") == [
        str(tmp_path / "a/s1_z.nii.gz"),
        str(tmp_path / "b/s2_z.nii.gz"),
    ]


# ---------------------------------------------------------------------------- utils
def test_citations_of_a_nimare_description(caplog):
    text = (
        r"An ALE \citep{Turkeltaub2002,Eickhoff2012} as in \cite{Eickhoff2009}; \citealt{No_Such}."
    )
    assert utils.find_citations(text) == [
        "Eickhoff2009",
        "Eickhoff2012",
        "No_Such",
        "Turkeltaub2002",
    ]
    with caplog.at_level(logging.WARNING, logger=utils.LGR.name):
        bib = utils.get_description_references(text)
    refs = load_references()
    assert bib == "\n".join(
        refs[k]["bibtex"] for k in ("Eickhoff2009", "Eickhoff2012", "Turkeltaub2002")
    )
    assert "Citation No_Such not found." in caplog.text
    # NiMARE's own key for an entry, listed among its ids, finds it
    assert utils.get_description_references(r"\citep{laird2005ale}") == refs["Laird2005"]["bibtex"]
    assert utils.find_citations("no citation here") == []
    assert utils.get_description_references("no citation here") == ""


def test_braces_match_a_brute_force_scan():
    text = "@a{k1, t={x{y}z}, u={w}}\n@b{k2, t={q}}{}"
    pairs = utils.find_braces(text)
    for start, end in pairs:  # each pair is balanced in between
        inner = text[start + 1 : end]
        depth = np.cumsum([{"{": 1, "}": -1}.get(c, 0) for c in inner])
        assert text[start] == "{" and text[end] == "}"
        assert depth.size == 0 or ((depth >= 0).all() and depth[-1] == 0)
    outer = [(s, e) for s, e in pairs if not any(s2 < s and e < e2 for s2, e2 in pairs)]
    assert utils.reduce_idx(pairs[::-1]) == sorted(outer)
    # the outermost pairs are the two entries and the empty pair at the end
    assert [text[s - 2 : s] for s, _ in utils.reduce_idx(pairs)] == ["@a", "@b", "}}"]
    with pytest.raises(IndexError, match="closing brace at 0"):
        utils.find_braces("}{")
    with pytest.raises(IndexError, match="opening brace at 0 is never closed"):
        utils.find_braces("{{}")


def test_use_memmap_creates_and_removes_files():
    log = logging.getLogger("test_use_memmap")

    class Estimator:
        memory_limit = "1gb"

        @utils.use_memmap(log, n_files=2)
        def run(self):
            assert all(os.path.isfile(f) for f in self.memmap_filenames)
            return list(self.memmap_filenames)

        @utils.use_memmap(log)
        def fail(self):
            raise RuntimeError("boom")

    est = Estimator()
    files = est.run()
    assert len(set(files)) == 2 and not any(os.path.exists(f) for f in files)
    with pytest.raises(RuntimeError, match="boom"):
        est.fail()
    assert not os.path.exists(est.memmap_filenames[0])
    est.memory_limit = None  # no limit: no files, the list holds None
    with pytest.raises(RuntimeError, match="boom"):
        est.fail()
    assert est.memmap_filenames == [None]


def test_minimum_positive_float_is_the_smallest_subnormal():
    assert utils._minimum_positive_float() == np.finfo(np.float32).smallest_subnormal
    assert utils._minimum_positive_float(np.float64) == np.finfo(np.float64).smallest_subnormal


# ------------------------------------------------------------------------- generate
def test_create_coordinate_studyset_is_the_dataset_simulation():
    kwargs = dict(foci=2, foci_percentage="60%", fwhm=10.0, n_studies=5, n_noise_foci=1)
    truth, studyset = generate.create_coordinate_studyset(seed=7, **kwargs)
    truth_d, dset = generate.create_coordinate_dataset(seed=7, **kwargs)
    assert isinstance(studyset, Studyset)
    assert truth == truth_d
    assert list(studyset.ids) == list(dset.ids)
    np.testing.assert_allclose(
        studyset.coordinates[["x", "y", "z"]].to_numpy(float),
        dset.coordinates[["x", "y", "z"]].to_numpy(float),
    )
    with pytest.raises(ValueError, match="foci must be an integer"):
        generate.create_coordinate_studyset(foci="many")


def test_sleuth_reader_refuses_a_number_with_a_value_error():
    with pytest.raises(ValueError, match="text_file must be a path"):
        convert_sleuth_to_dataset(5)


def test_studyset_from_dataset_keeps_image_paths_relative_to_the_inferred_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    path = str(folder / "s_z.nii.gz")
    dset = Dataset({"s": {"contrasts": {"1": {"images": {"z": path}}}}}, target=None, mask=_mask())
    studyset = Studyset.from_dataset(dset)
    assert studyset.basepath == str(folder)
    assert studyset.to_dict()["studies"][0]["analyses"][0]["images"][0]["filename"] == "s_z.nii.gz"
    assert studyset.images.loc[0, "z"] == path
    assert studyset.images.loc[0, "z__relative"] == "s_z.nii.gz"
    assert studyset.to_dataset().get_images(imtype="z") == [path]


def test_a_foci_table_indexed_in_another_grid_is_placed_by_its_mm(tmp_path):
    dset = Dataset(_foci_dict([3.5, 4.0]), target=None, mask=_mask())  # 2 mm grid
    fine = nib.Nifti1Image(np.ones((40, 40, 40), np.int8), np.diag([1.0, 1.0, 1.0, 1.0]))
    table = dset.coordinates.copy().assign(sample_size=20)
    got = MKDAKernel(r=3).transform(table, fine, return_type="array")
    # i, j, k recomputed in the 1 mm grid from x, y, z, by hand
    by_hand = table.assign(
        **dict(zip("ijk", mm2vox(table[["x", "y", "z"]], fine.affine).T, strict=True))
    )
    by_hand.attrs.clear()
    want = MKDAKernel(r=3).transform(by_hand, fine, return_type="array")
    np.testing.assert_array_equal(got, want)
    assert got.sum() > 0
    # indices of the mask's own grid are used as given (NiMARE: i, j, k take precedence)
    same = MKDAKernel(r=3).transform(dset.coordinates.assign(x=99.0), _mask(), return_type="array")
    np.testing.assert_array_equal(same, MKDAKernel(r=3).transform(dset, return_type="array"))


def test_focus_fields_survive_the_json_round_trip(tmp_path):
    dset = Dataset(_foci_dict([3.5, 4.0], cluster_size=[11, 12]))
    convert_dataset_to_json(dset, tmp_path / "d.json")
    again = Dataset(str(tmp_path / "d.json"))
    pd.testing.assert_frame_equal(
        again.coordinates[["x", "y", "z", "z_stat", "cluster_size"]],
        dset.coordinates[["x", "y", "z", "z_stat", "cluster_size"]],
    )


def test_image_transformer_takes_a_studyset(t_map):
    t, path = t_map
    source = {
        "s": {"contrasts": {"1": {"images": {"t": path}, "metadata": {"sample_sizes": [12]}}}}
    }
    dset = Dataset(source, target=None, mask=_mask())
    out = transforms.ImageTransformer(["z", "g"]).transform(Studyset.from_dataset(dset))
    z = nib.load(out.get_images(ids="s-1", imtype="z")).get_fdata()
    np.testing.assert_allclose(z, sps.norm.isf(sps.t.sf(t, 11)), rtol=2e-6, atol=1e-5)
    g = nib.load(out.get_images(ids="s-1", imtype="g")).get_fdata()
    np.testing.assert_allclose(g, t / np.sqrt(12) * (1 - 3 / (4 * 11 - 1)), rtol=2e-6, atol=1e-6)
