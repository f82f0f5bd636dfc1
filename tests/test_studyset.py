"""Studyset: parity with NiMARE 0.22.1, Studyset <-> Dataset, NIMADS <-> Sleuth, bad input.

Reference values are NiMARE 0.22.1's answers on the same files, stored by
``tests/data/studyset/make_studyset_expected.py``.
"""

import json
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nimare_jax import io
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import InvalidStudysetError
from nimare_jax.nimads import Studyset as NimadsStudyset
from nimare_jax.spatial import mni2tal, tal2mni
from nimare_jax.studyset import Studyset, as_dataset, normalize_collection

DATA = Path(__file__).parent / "data"
STUDYSET = DATA / "nimads" / "nimads_studyset.json"
ANNOTATION = DATA / "nimads" / "nimads_annotation.json"
SLEUTH_TAL = DATA / "sleuth" / "test_sleuth_file2.txt"
SLEUTH_MNI = DATA / "sleuth" / "test_sleuth_file.txt"
EXPECTED = json.loads((DATA / "studyset" / "studyset_expected.json").read_text())

pytestmark = pytest.mark.filterwarnings("ignore:.*give no space for their foci:UserWarning")


@pytest.fixture(scope="module")
def document():
    return json.loads(STUDYSET.read_text())


@pytest.fixture(scope="module")
def annotation():
    return json.loads(ANNOTATION.read_text())


@pytest.fixture(scope="module")
def annotated(document, annotation):
    return Studyset(document).with_annotation_payload(annotation)


def small_document():
    """Two studies; "b" declares analysis "1" twice over studies; one TAL analysis."""
    return {
        "id": "small",
        "name": "Small",
        "studies": [
            {
                "id": "b",
                "name": "Study B",
                "authors": "Doe J.",
                "year": 2001,
                "metadata": {"sample_size": 12},
                "analyses": [
                    {
                        "id": "1",
                        "name": "B one",
                        "points": [
                            {
                                "space": "MNI",
                                "coordinates": [10, 20, 30],
                                "values": [{"kind": "Z", "value": 3.5}],
                            },
                            {"space": "MNI", "coordinates": [-10, -20, 30]},
                        ],
                        "metadata": {"sample_sizes": [20, 22]},
                        "texts": {"abstract": "b1 text"},
                    }
                ],
            },
            {
                "id": "a",
                "name": "Study A",
                "analyses": [
                    {
                        "id": "2",
                        "name": "A two",
                        "points": [{"space": "TAL", "coordinates": [0, 0, 0]}],
                        "metadata": {"sample_sizes": [30]},
                    },
                    {
                        "id": "1",
                        "name": "A one",
                        "points": [{"space": "MNI", "coordinates": [4, 5, 6]}],
                        "metadata": {"sample_sizes": [15]},
                    },
                ],
            },
        ],
    }


# --------------------------------------------------------------- parity with NiMARE
def test_tables_match_nimare(annotated):
    expected = EXPECTED["annotated"]
    assert list(annotated.ids) == expected["ids"]  # canonical order: studies, then analyses
    assert list(annotated.study_ids) == expected["study_ids"]
    for ident, group in annotated.coordinates.groupby("id"):
        np.testing.assert_allclose(
            group[["x", "y", "z"]].to_numpy(), expected["xyz"][ident], rtol=0, atol=1e-9
        )
    assert set(annotated.coordinates["id"]) == set(expected["xyz"])
    meta = annotated.metadata.set_index("id")
    assert meta["study_name"].to_dict() == expected["study_name"]
    assert meta["analysis_name"].to_dict() == expected["analysis_name"]
    sizes = {k: v if isinstance(v, list) else None for k, v in meta["sample_sizes"].items()}
    assert sizes == expected["sample_sizes"]
    labels = annotated.annotations_df.set_index("id")["include"]
    assert {k: float(v) for k, v in labels.items()} == expected["labels"]["include"]


def test_queries_match_nimare(document, annotated):
    studyset = Studyset(document)
    assert (
        studyset.get_analyses_by_coordinate([-40, -20, 50], r=10)
        == (EXPECTED["by_coordinate_r10"])
    )
    assert studyset.get_analyses_by_coordinate([-40, -20, 50], n=5) == EXPECTED["by_coordinate_n5"]
    assert (
        studyset.get_studies_by_coordinate([[40, -20, 50]], r=8)
        == (EXPECTED["studies_by_coordinate_r8"])
    )
    included = annotated.get_studies_by_label("include", label_threshold=0.5)
    assert included == EXPECTED["included"]
    assert list(annotated.slice(included[:4]).ids) == EXPECTED["sliced_ids"]
    combined = annotated.slice(included[:6]).combine_analyses()
    assert list(combined.ids) == EXPECTED["combined_ids"]


def test_coordinate_queries_against_brute_force(document):
    studyset = Studyset(document)
    coords = studyset.coordinates
    xyz = coords[["x", "y", "z"]].to_numpy()
    target = np.array([-40.0, -20.0, 50.0])
    dist = np.sqrt(((xyz - target) ** 2).sum(axis=1))
    within = set(coords["id"][dist <= 15])
    assert set(studyset.get_analyses_by_coordinate(target, r=15)) == within
    nearest = set(coords["id"].to_numpy()[np.argsort(dist)[:3]])
    assert set(studyset.get_analyses_by_coordinate(target, n=3)) == nearest


def test_analyses_by_mask_against_brute_force():
    import nibabel as nib

    studyset = Studyset(small_document(), target=None)
    data = np.zeros((20, 20, 20), dtype=np.int8)
    data[5, 10, 15] = 1  # (10, 20, 30) mm with the affine below
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    assert studyset.get_analyses_by_mask(nib.Nifti1Image(data, affine)) == ["b-1"]


# ------------------------------------------------------------- NIMADS <-> Sleuth
def _sleuth(tmp_path, *args, **kwargs):
    out = tmp_path / "sleuth"
    io.convert_nimads_to_sleuth(*args, output_dir=out, **kwargs)
    return {p.name: p.read_text() for p in sorted(out.glob("*.txt"))}


def test_nimads_to_sleuth_matches_nimare(tmp_path, document, annotation):
    assert _sleuth(tmp_path / "plain", document) == EXPECTED["sleuth"]
    annotated = _sleuth(
        tmp_path / "annotated",
        STUDYSET,
        annotation=annotation,
        export_metadata=["authors", "year"],
    )
    assert annotated == EXPECTED["sleuth_annotated"]


def _numbers(text):
    return np.array(
        [
            [float(v) for v in line.split("\t")]
            for line in text.splitlines()
            if "\t" in line and not line.startswith("//")
        ]
    )


def test_nimads_to_sleuth_talairach_converts_the_foci(tmp_path, document):
    """NiMARE writes MNI foci under //Reference=TAL unchanged; nimare_jax converts them."""
    written = _sleuth(tmp_path, document, target="Talairach", decimal_precision=3)
    text = written["nimads_sleuth_file.txt"]
    assert text.startswith("//Reference=TAL\n")
    mni = _numbers(EXPECTED["sleuth"]["nimads_sleuth_file.txt"])
    # written with 3 decimals: within half a unit of the last place
    np.testing.assert_allclose(_numbers(text), mni2tal(mni), rtol=0, atol=5e-4 + 1e-9)
    # the headers are NiMARE's
    headers = [line for line in text.splitlines() if line.startswith("//")]
    nimare_headers = [
        line
        for line in EXPECTED["sleuth_tal"]["nimads_sleuth_file.txt"].splitlines()
        if line.startswith("//")
    ]
    assert headers == nimare_headers


def test_sleuth_export_of_a_selection(tmp_path):
    sub = (
        Studyset(small_document(), target=None)
        .slice(["b-1"])
        .select_points([False, False, True, False])
    )
    written = _sleuth(tmp_path, sub)["nimads_sleuth_file.txt"]
    assert written == (
        "//Reference=MNI\n//Doe J. (Study B): B one\n//Subjects=20\n10.00\t20.00\t30.00\n\n"
    )


def test_sleuth_to_nimads_matches_nimare():
    """NiMARE keeps Talairach foci as written; nimare_jax writes them in MNI (Lancaster)."""
    ours = io.convert_sleuth_to_nimads_dict(SLEUTH_TAL, studyset_id="s")
    theirs = EXPECTED["sleuth_to_nimads"]
    assert [s["id"] for s in ours["studies"]] == [s["id"] for s in theirs["studies"]]
    for mine, ref in zip(ours["studies"], theirs["studies"], strict=True):
        assert [a["id"] for a in mine["analyses"]] == [a["id"] for a in ref["analyses"]]
        for a, b in zip(mine["analyses"], ref["analyses"], strict=True):
            assert a["metadata"] == b["metadata"]
            assert {p["space"] for p in b["points"]} == {"TAL"}
            assert {p["space"] for p in a["points"]} == {"MNI"}
            np.testing.assert_allclose(
                [p["coordinates"] for p in a["points"]],
                tal2mni(np.array([p["coordinates"] for p in b["points"]])),
                rtol=0,
                atol=1e-9,
            )


def test_sleuth_round_trip_keeps_every_focus(tmp_path):
    """Sleuth -> NIMADS -> Sleuth gives back the original file's experiments and foci."""
    written = _sleuth(tmp_path, io.convert_sleuth_to_nimads_dict(SLEUTH_MNI))
    blocks = [b for b in written["nimads_sleuth_file.txt"].split("\n\n") if "\t" in b]
    original = io.convert_sleuth_to_dataset(SLEUTH_MNI)
    expected = {
        ident: np.round(group[["x", "y", "z"]].to_numpy(), 2)
        for ident, group in original.coordinates.groupby("id")
    }
    assert len(blocks) == len(expected)
    got = sorted(_numbers(b).tolist() for b in blocks)
    assert got == sorted(v.tolist() for v in expected.values())


def test_sleuth_target_variants_are_equivalent():
    mni = io.convert_sleuth_to_nimads_dict(SLEUTH_TAL, target="mni152_2mm")
    for variant in ("TAL", "Talairach", "tal", "MNI"):
        assert io.convert_sleuth_to_nimads_dict(SLEUTH_TAL, target=variant) == mni
    assert io.convert_sleuth_to_nimads_dict([Path(SLEUTH_TAL)], target="ALE") == (
        io.convert_sleuth_to_nimads_dict(str(SLEUTH_TAL), target="ale_2mm")
    )


# --------------------------------------------------------- Studyset <-> Dataset
def as_objects(frame):
    return frame.astype(object).where(frame.notna(), None).reset_index(drop=True)


def assert_same_tables(a, b, columns_of_b=False):
    """Equal ids, foci (MNI mm and voxels) and tables; optionally only ``b``'s columns."""
    np.testing.assert_array_equal(a.ids, b.ids)
    for table in ("metadata", "annotations", "texts"):
        left, right = (as_objects(getattr(d, table)) for d in (a, b))
        if columns_of_b:
            left = left[right.columns]
        pd.testing.assert_frame_equal(left, right)
    columns = ["id", "x", "y", "z", "i", "j", "k"]
    pd.testing.assert_frame_equal(
        as_objects(a.coordinates[columns]), as_objects(b.coordinates[columns])
    )


def test_studyset_tables_are_the_converted_datasets(annotated):
    """One storage: the studyset's tables are convert_nimads_to_dataset's on the same files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = io.convert_nimads_to_dataset(STUDYSET, ANNOTATION)
    dataset = annotated.to_dataset()
    order = list(annotated.ids)
    assert sorted(direct.ids) == order
    assert_same_tables(dataset, direct.slice(order))
    pd.testing.assert_frame_equal(
        as_objects(annotated.coordinates[["id", "x", "y", "z"]]),
        as_objects(dataset.coordinates[["id", "x", "y", "z"]]),
    )
    assert as_dataset(annotated) is dataset  # built once per studyset
    assert io.convert_nimads_to_dataset(annotated) is dataset


def test_dataset_studyset_dataset_round_trip():
    source = {
        "s1": {
            "contrasts": {
                "c1": {
                    "coords": {"space": "MNI", "x": [1, 2], "y": [3, 4], "z": [5, 6]},
                    "metadata": {"sample_sizes": [20], "task": "pain"},
                    "labels": {"pain": 1.0, "kind": "thermal"},
                    "text": {"abstract": "An abstract."},
                },
                "c2": {
                    "coords": {"space": "TAL", "x": [10], "y": [-20], "z": [30]},
                    "metadata": {"sample_sizes": [12, 14]},
                    "labels": {"pain": 0.0},
                },
            }
        },
        "s0": {"contrasts": {"c1": {"coords": {"space": "MNI", "x": [0], "y": [0], "z": [0]}}}},
    }
    dataset = Dataset(source, target="ale_2mm")
    studyset = Studyset.from_dataset(dataset)
    assert studyset.space == "ale_2mm"
    back = studyset.to_dataset()
    # the NIMADS names (study_name, analysis_name, name) are added to the metadata
    assert_same_tables(back, dataset.slice(back.ids), columns_of_b=True)
    assert sorted(back.ids) == sorted(dataset.ids)
    # and through a NIMADS file
    assert NimadsStudyset is Studyset


def test_nimads_file_round_trip(tmp_path, annotated):
    path = tmp_path / "studyset.json"
    annotated.to_nimads(path)
    again = Studyset(path)
    assert again.to_dict() == json.loads(json.dumps(annotated.to_dict()))
    assert_same_tables(again.to_dataset(), annotated.to_dataset())
    assert [a.id for a in again.annotations] == [a.id for a in annotated.annotations]


def test_selection_reaches_every_face(tmp_path):
    studyset = Studyset(small_document())
    assert list(studyset.ids) == ["a-1", "a-2", "b-1"]
    points = np.array([True, True, False, True])  # store order: a-1, a-2, b-1 (two foci)
    sub = studyset.slice(["a-2", "b-1"]).select_points(points)
    assert list(sub.ids) == ["a-2", "b-1"]
    expected = np.array([tal2mni(np.array([[0.0, 0.0, 0.0]]))[0], [-10, -20, 30]])
    np.testing.assert_allclose(sub.coordinates[["x", "y", "z"]], expected, rtol=0, atol=1e-9)
    nested = [p.coordinates for a in sub.analyses for p in a.points]
    np.testing.assert_allclose(nested, expected, rtol=0, atol=1e-9)
    document = sub.to_dict()
    assert [[a["id"] for a in s["analyses"]] for s in document["studies"]] == [["2"], ["1"]]
    assert document["studies"][1]["analyses"][0]["points"] == [
        {"space": "MNI", "coordinates": [-10, -20, 30]}
    ]
    assert list(sub.to_dataset().ids) == ["a-2", "b-1"]
    with pytest.raises(ValueError, match="one entry per focus"):
        sub.select_points([True, False])


def test_short_ids_select_every_analysis_that_declares_them():
    studyset = Studyset(small_document())
    assert list(studyset.slice(["1"]).ids) == ["a-1", "b-1"]
    assert list(studyset.slice(["b"], filter_level="study").ids) == ["b-1"]
    with pytest.raises(ValueError, match=r"matches: x, y\."):
        studyset.slice(["a-1", "x", "y"])
    with pytest.raises(ValueError, match=r"and 2 more\."):
        studyset.slice([f"n{i}" for i in range(12)])


def test_spaces_and_point_values():
    document = small_document()
    raw = Studyset(document, target=None)
    mni = Studyset(document)
    tal = Studyset(document, target="TAL")
    raw_xyz = raw.coordinates[["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(raw_xyz[1], [0, 0, 0])  # a-2's TAL focus, as written
    assert raw.coordinates["space"].tolist() == ["MNI", "TAL", "MNI", "MNI"]
    mni_xyz = mni.coordinates[["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(mni_xyz[1], tal2mni(np.zeros((1, 3)))[0], atol=1e-9)
    np.testing.assert_allclose(
        tal.coordinates[["x", "y", "z"]].to_numpy(), mni2tal(mni_xyz), atol=1e-9
    )
    assert tal.analyses[0].points[0].space == "TAL"
    assert as_objects(mni.coordinates)["z_stat"].tolist()[2:] == [3.5, None]
    assert mni.analyses[2].points[0].values == {"z_stat": 3.5}


def test_metadata_texts_and_sample_sizes():
    studyset = Studyset(small_document())
    meta = studyset.metadata.set_index("id")
    assert meta.loc["b-1", "sample_sizes"] == [20, 22]  # the analysis' own before the study's
    assert meta.loc["b-1", "study_name"] == "Study B"
    assert studyset.texts.set_index("id").loc["b-1", "abstract"] == "b1 text"
    assert studyset.get_analyses_by_metadata("sample_size") == {"b-1": {"sample_size": 12}}


def test_annotations_df_round_trip_and_collisions(annotated):
    frame = annotated.annotations_df.copy()
    frame["score"] = np.arange(len(frame), dtype=float)
    frame["group"] = ["x" if i % 3 else "y" for i in range(len(frame))]
    frame = pd.concat([frame, frame.iloc[[0]].assign(id="not-here")], ignore_index=True)
    replaced = annotated.with_annotations_df(frame, name="mine", replace=True)
    got = replaced.annotations_df
    assert got["id"].tolist() == list(annotated.ids)
    assert got["score"].tolist() == list(range(len(annotated)))
    assert got["group"].tolist() == frame["group"].tolist()[:-1]
    assert [a.id for a in replaced.annotations] == ["mine"]
    note_keys = replaced.to_dict()["annotations"][0]["note_keys"]
    assert (note_keys["score"], note_keys["group"]) == ("number", "string")
    # alongside: the repeated label keeps both values under distinct columns
    both = annotated.with_annotations_df(frame[["id", "include"]].assign(include=0.25))
    assert both.annotations_df["include"].tolist() == annotated.annotations_df["include"].tolist()
    assert both.annotations_df["annotations.include"].tolist() == [0.25] * len(annotated)


def test_annotation_notes_resolve_by_study_and_analysis():
    studyset = Studyset(small_document())
    payload = {
        "id": "ann",
        "notes": [
            {"study": "a", "analysis": "1", "note": {"g": "first"}},
            {"analysis": "b-1", "note": {"g": "full id"}},
            {"analysis": "2", "note": {"g": "unique short id"}},
            {"analysis": "1", "note": {"h": "ambiguous: ignored"}},
        ],
    }
    frame = studyset.with_annotation_payload(payload).annotations_df.set_index("id")
    assert frame["g"].to_dict() == {"a-1": "first", "a-2": "unique short id", "b-1": "full id"}
    assert "h" not in frame.columns


def test_combine_and_merge():
    studyset = Studyset(small_document())
    combined = studyset.combine_analyses()
    assert list(combined.ids) == ["a-2_1", "b-1"]  # merged in document order
    assert len(combined.coordinates) == len(studyset.coordinates)
    other = Studyset({"id": "o", "name": "O", "studies": [{"id": "c", "analyses": []}]})
    merged = studyset.merge(other)
    assert (merged.id, merged.name) == ("small_o", "Merged: Small + O")
    with pytest.raises(ValueError, match="another Studyset"):
        studyset.merge("not a studyset")


def test_pickle_keeps_the_store_read_only(tmp_path):
    studyset = Studyset(small_document())
    restored = pickle.loads(pickle.dumps(studyset))
    assert list(restored.ids) == list(studyset.ids)
    assert not restored.store.xyz.flags.writeable
    studyset.save(tmp_path / "s.pkl")
    assert list(Studyset.load(tmp_path / "s.pkl").ids) == list(studyset.ids)


def test_as_dataset_and_normalize_collection():
    studyset = Studyset(small_document())
    dataset = studyset.to_dataset()
    assert as_dataset(dataset) is dataset
    assert as_dataset(studyset) is dataset
    assert normalize_collection(studyset) is studyset
    assert list(normalize_collection(dataset).ids) == list(dataset.ids)
    with pytest.raises(TypeError, match="Dataset or a Studyset, got str"):
        as_dataset("studies.json")


def test_empty_studyset(tmp_path):
    empty = Studyset({"id": "e", "name": "E", "studies": []})
    assert len(empty) == 0 and empty.coordinates.empty
    written = _sleuth(tmp_path, empty)
    assert written == {"nimads_sleuth_file.txt": "//Reference=MNI\n"}


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d.pop("studies"),
            r"field 'studies' must be a list of studies \(it is missing\)",
        ),
        (lambda d: d["studies"][1].pop("id"), r"studies\[1\]: a study must be an object"),
        (
            lambda d: d["studies"][0]["analyses"][0]["points"][1].update(coordinates=[1, 2]),
            r"studies\[0\]\.analyses\[0\] \(analysis b-1\): field 'points\[1\]\.coordinates' "
            r"must hold three finite numbers, got \[1, 2\]",
        ),
        (
            lambda d: d["studies"][1]["analyses"][0]["points"][0].update(coordinates=[1, "x", 3]),
            r"analysis a-2\): field 'points\[0\]\.coordinates'",
        ),
        (
            lambda d: d["studies"][1]["analyses"].append(d["studies"][1]["analyses"][0]),
            "study 'a' has two analyses with id '2'",
        ),
    ],
)
def test_malformed_nimads_names_file_and_field(tmp_path, mutate, message):
    document = small_document()
    mutate(document)
    path = tmp_path / "bad_studyset.json"
    path.write_text(json.dumps(document))
    with pytest.raises(InvalidStudysetError, match=re.escape(str(path)) + ".*" + message):
        Studyset(path)
    with pytest.raises(InvalidStudysetError, match="NIMADS studyset dict.*" + message):
        Studyset(document)
    with pytest.raises(InvalidStudysetError, match=message):
        io.convert_nimads_to_sleuth(document, tmp_path / "out")


def test_malformed_annotation_and_arguments(tmp_path):
    studyset = Studyset(small_document())
    with pytest.raises(InvalidStudysetError, match=r"notes\[0\] must be an object"):
        studyset.with_annotation_payload({"id": "bad", "notes": ["include"]})
    with pytest.raises(InvalidStudysetError, match="decimal_precision"):
        io.convert_nimads_to_sleuth(studyset, tmp_path, decimal_precision=-1)
    with pytest.raises(ValueError, match="Exactly one of r or n"):
        studyset.get_analyses_by_coordinate([0, 0, 0])
    with pytest.raises(ValueError, match="Missing label"):
        studyset.get_studies_by_label("nope")


def test_sample_sizes_follow_nimare_and_unusable_values_are_named():
    """NiMARE 0.22.1: a scalar 'sample_sizes' is unusable; numeric strings are numbers."""

    def one(study_metadata, analysis_metadata):
        document = small_document()
        document["studies"] = [document["studies"][0]]
        document["studies"][0]["metadata"] = study_metadata
        document["studies"][0]["analyses"][0]["metadata"] = analysis_metadata
        return Studyset(document)

    with pytest.warns(UserWarning, match=r"b-1 \(analysis sample_sizes 5\)"):
        studyset = one({"sample_size": "12"}, {"sample_sizes": 5})
        assert studyset.metadata.iloc[0]["sample_sizes"] == [12]
    assert "sample_size" not in studyset.metadata.columns
    studyset = one({"sample_size": "12"}, {"sample_sizes": ["6", "7.5"]})
    assert studyset.metadata.iloc[0]["sample_sizes"] == [6, 7.5]


def test_with_metadata_and_texts_feed_the_tables():
    studyset = Studyset(small_document())
    labelled = studyset.with_metadata("group", ["x", "y", "z"])
    assert labelled.metadata["group"].tolist() == ["x", "y", "z"]
    assert labelled.filter_metadata("group", "!=", "y").ids.tolist() == ["a-1", "b-1"]
    by_study = studyset.with_metadata("site", ["A", "B"], level="study")
    assert by_study.metadata["site"].tolist() == ["A", "A", "B"]
    texts = studyset.slice(["b-1", "a-2"]).with_texts([1], "abstract", ["new"])
    assert as_objects(texts.texts).set_index("id")["abstract"].to_dict() == {
        "a-2": None,
        "b-1": "new",
    }
    with pytest.raises(ValueError, match="expected 3 values"):
        studyset.with_metadata("group", ["x"])


def test_neurosynth_studyset_has_the_datasets_tables():
    ns = DATA / "neurosynth"
    files = (
        ns / "data-neurosynth_version-7_coordinates.tsv.gz",
        ns / "data-neurosynth_version-7_metadata.tsv.gz",
    )
    features = {
        "features": ns
        / "data-neurosynth_version-7_vocab-terms_source-abstract_type-tfidf_features.npz",
        "vocabulary": ns / "data-neurosynth_version-7_vocab-terms_vocabulary.txt",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Neurosynth's 'UNKNOWN' spaces
        dataset = io.convert_neurosynth_to_dataset(*files, annotations_files=features)
        studyset = io.convert_neurosynth_to_studyset(*files, annotations_files=features)
        back = studyset.to_dataset()
    assert len(studyset) == len(dataset) == 20
    assert "terms_abstract_tfidf__abilities" in studyset.annotations_df.columns
    assert_same_tables(back, dataset.slice(back.ids), columns_of_b=True)


def test_plain_converter_and_studyset_attach_notes_alike():
    """One note matcher: convert_nimads_to_dataset reads annotations as the Studyset does."""
    document = small_document()
    document["annotations"] = [
        {
            "id": "first",
            "notes": [
                {"study": "a", "analysis": "1", "note": {"g": 1.0}},
                {"analysis": "b-1", "note": {"g": 2.0}},
            ],
        },
        {"id": "second", "notes": [{"analysis": "2", "note": {"g": 3.0}}]},
    ]
    dataset = io.convert_nimads_to_dataset(document)
    frame = as_objects(dataset.annotations).set_index("id")
    assert frame["g"].to_dict() == {"a-1": 1.0, "a-2": None, "b-1": 2.0}
    assert frame["second.g"].to_dict() == {"a-1": None, "a-2": 3.0, "b-1": None}
    studyset = Studyset(document)  # canonical order; the plain converter keeps the file's
    pd.testing.assert_frame_equal(
        as_objects(studyset.annotations_df),
        as_objects(dataset.slice(studyset.ids).annotations),
    )
    with pytest.warns(UserWarning, match=r"notes for 1 analyses not in the studyset.*'1'"):
        io.convert_nimads_to_dict(small_document(), {"notes": [{"analysis": "1", "note": {}}]})
