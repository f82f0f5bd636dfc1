"""Readers and writers: parity with NiMARE 0.22.1, malformed input, round trips."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nimare_jax import io
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import InputFileError, excerpt
from nimare_jax.parsing import decode_text, parse_number, read_lines
from nimare_jax.spatial import tal2mni

DATA = Path(__file__).parent / "data"
SLEUTH = DATA / "sleuth"
NS = DATA / "neurosynth"
NS_COORDS = NS / "data-neurosynth_version-7_coordinates.tsv.gz"
NS_META = NS / "data-neurosynth_version-7_metadata.tsv.gz"
NS_FEATURES = {
    "features": NS
    / "data-neurosynth_version-7_vocab-terms_source-abstract_type-tfidf_features.npz",
    "vocabulary": NS / "data-neurosynth_version-7_vocab-terms_vocabulary.txt",
}
STUDYSET = DATA / "nimads" / "nimads_studyset.json"
ANNOTATION = DATA / "nimads" / "nimads_annotation.json"
# NiMARE 0.22.1's conversions of these files (see tests/data/make_io_expected.py).
EXPECTED = json.loads((DATA / "io_expected.json").read_text())

NO_SPACE = "give no space for their foci"  # NIMADS points of the test studyset lack a space
UNKNOWN_SPACE = "unknown space"  # Dataset's warning for Neurosynth's 'UNKNOWN' studies


def assert_dataset_matches(dset, expected):
    """Compare with NiMARE's per-experiment foci counts and mean MNI coordinates."""
    assert sorted(dset.ids) == expected["ids"]
    grouped = dset.coordinates.groupby("id")[["x", "y", "z"]]
    assert grouped.size().to_dict() == expected["n_foci"]
    mean = grouped.mean()
    for ident, xyz in expected["mean_xyz"].items():
        np.testing.assert_allclose(mean.loc[ident], xyz, rtol=0, atol=1e-9)


def assert_same_tables(a, b, ignore_space=False, missing_as_none=False):
    """Assert equal tables; ``missing_as_none`` treats NaN and None as the same value."""
    np.testing.assert_array_equal(a.ids, b.ids)
    for table in ("metadata", "images", "annotations", "texts"):
        left, right = getattr(a, table), getattr(b, table)
        if missing_as_none:
            left, right = (t.astype(object).where(t.notna(), None) for t in (left, right))
        pd.testing.assert_frame_equal(left, right)
    drop = ["space"] if ignore_space else []
    pd.testing.assert_frame_equal(
        a.coordinates.drop(columns=drop), b.coordinates.drop(columns=drop)
    )


def write(tmp_path, text, name="foci.txt", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# ------------------------------------------------------------------------ Sleuth: parity
@pytest.mark.parametrize(
    ("files", "key"),
    [
        (["test_sleuth_file.txt"], "test_sleuth_file.txt"),
        (["test_sleuth_file2.txt"], "test_sleuth_file2.txt"),
        (["test_sleuth_file.txt", "test_sleuth_file2.txt"], "both"),
        (["names.txt"], "names.txt"),
    ],
)
def test_sleuth_dict_matches_nimare(files, key):
    paths = [str(SLEUTH / f) for f in files]
    assert (
        io.convert_sleuth_to_dict(paths if len(paths) > 1 else paths[0]) == EXPECTED["sleuth"][key]
    )


def test_sleuth_counts_and_joined_header():
    one = io.convert_sleuth_to_dataset(SLEUTH / "test_sleuth_file.txt")
    two = io.convert_sleuth_to_dataset(SLEUTH / "test_sleuth_file2.txt")
    assert (len(one), len(one.coordinates), len(two), len(two.coordinates)) == (3, 7, 2, 4)
    assert one.space == "ale_2mm"
    assert one.ids[-1] == (
        "StudyName3-ExperimentName StudyName3: ExperimentName2 StudyName3: ExperimentName3"
    )
    assert one.get_metadata(field="sample_sizes") == [[50], [46], [20]]


def test_sleuth_dataset_matches_nimare():
    files = [SLEUTH / "test_sleuth_file.txt", SLEUTH / "test_sleuth_file2.txt"]
    assert_dataset_matches(io.convert_sleuth_to_dataset(files), EXPECTED["sleuth"]["dataset_both"])


def test_sleuth_talairach_converted_on_load():
    raw = io.convert_sleuth_to_dict(SLEUTH / "test_sleuth_file2.txt")
    dset = io.convert_sleuth_to_dataset(SLEUTH / "test_sleuth_file2.txt", target="mni152_2mm")
    for study, entry in raw.items():
        coords = entry["contrasts"]["ExperimentName2"]["coords"]
        assert coords["space"] == "Talairach"
        tal = np.c_[coords["x"], coords["y"], coords["z"]]
        got = dset.coordinates[dset.coordinates["study_id"] == study][["x", "y", "z"]]
        np.testing.assert_allclose(got.to_numpy(), tal2mni(tal), rtol=0, atol=1e-12)


def test_sleuth_multiple_files_pool_experiments_in_order():
    files = (SLEUTH / "test_sleuth_file.txt", str(SLEUTH / "test_sleuth_file2.txt"))
    dset = io.convert_sleuth_to_dataset(files)
    assert len(dset) == 5 and len(dset.coordinates) == 11
    # Experiments are grouped by study, studies in order of first appearance.
    assert [i.split("-")[0] for i in dset.ids] == [
        "StudyName",
        "StudyName",
        "StudyName2",
        "StudyName3",
        "StudyName4",
    ]
    # StudyName appears in both files: its contrasts are merged under one study.
    assert sorted(io.convert_sleuth_to_dict(list(files))["StudyName"]["contrasts"]) == [
        "ExperimentName",
        "ExperimentName2",
    ]
    assert set(dset.coordinates["space"]) == {"MNI", "Talairach"}


def test_sleuth_to_json_reads_back(tmp_path):
    out = tmp_path / "sub" / "sleuth.json"
    io.convert_sleuth_to_json([str(SLEUTH / "test_sleuth_file.txt")], out)
    assert io.load_json(out) == EXPECTED["sleuth"]["test_sleuth_file.txt"]
    assert_same_tables(
        Dataset(out, target="ale_2mm"),
        io.convert_sleuth_to_dataset(SLEUTH / "test_sleuth_file.txt"),
    )


@pytest.mark.parametrize(
    ("text", "space"),
    [
        ("//reference = talairach\r\n// A: B\r\n//Subjects= 5\r\n1,2,3\r\n", "Talairach"),
        (
            "\ufeff\n\n// Reference\t=\tmni\n\n// A: B\n//\n// SUBJECTS = 5\n1 2 3\n\n4\t5\t6\n",
            "MNI",
        ),
        ("// Reference=TAL\n// A: B\n// Subjects=+5\n 1, 2 ,3 \n4,5,6\n", "TAL"),
    ],
)
def test_sleuth_lenient_spelling(tmp_path, text, space):
    coords = io.convert_sleuth_to_dict(write(tmp_path, text))["A"]["contrasts"]["B"]["coords"]
    assert coords["space"] == space
    assert coords["x"][0] == 1.0 and len(coords["x"]) in (1, 2)


def test_sleuth_latin1_file(tmp_path):
    path = write(
        tmp_path,
        "// Reference=MNI\n// Müller, 2002: Tapping\n// Subjects=8\n1 2 3\n",
        encoding="latin-1",
    )
    assert list(io.convert_sleuth_to_dict(path)) == ["Müller, 2002"]


def test_sleuth_windows_1252_name_reads_as_written(tmp_path):
    # Windows-1252 bytes 0x85 ("…") and 0x96 ("–"): Latin-1 made 0x85 a line break (U+0085)
    # that str.splitlines() split the name at, then blamed line 3 for missing 'Subjects'.
    text = "// Reference=MNI\r\n// Smith et al., 2010: Task \u2026 rest \u2013 go\r\n"
    path = write(tmp_path, text + "// Subjects=20\r\n-16 -58 -22\r\n", encoding="cp1252")
    assert b"\x85" in path.read_bytes()
    assert io.convert_sleuth_to_dict(path)["Smith et al., 2010"]["contrasts"] == {
        "Task \u2026 rest \u2013 go": {
            "coords": {"space": "MNI", "x": [-16.0], "y": [-58.0], "z": [-22.0]},
            "metadata": {"sample_sizes": [20]},
        }
    }


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("inside", ["\x85", "\x0c", "\x0b", "\x1c", "\x1e", "\u2028", "\u2029"])
def test_sleuth_only_lf_crlf_cr_end_lines(tmp_path, newline, inside):
    # str.splitlines() broke lines at these characters too: the name was cut in two and the
    # bad focus on line 5 was reported on line 6.
    name = f"S: A{inside}B"
    lines = ["// Reference=MNI", f"// {name}", "// Subjects=5", "1 2 3", "1 2 x"]
    path = write(tmp_path, newline.join(lines) + newline)
    with pytest.raises(InputFileError, match=_error_pattern(path, 5, name, "must be numbers")):
        io.convert_sleuth_to_dict(path)


def test_read_lines_and_decode_text_rules(tmp_path):
    # UTF-8 first (BOM dropped), else Windows-1252 with its undefined bytes as C1 controls
    assert decode_text("\ufeffMüller \u2026".encode()) == "Müller \u2026"
    assert decode_text(b"M\xfcller \x85 \x80 \x81 \x9d") == "Müller \u2026 \u20ac \x81 \x9d"
    path = tmp_path / "lines.txt"
    path.write_bytes(b"a\x0cb\rc\r\nd\ne\xc2\x85f\n\n")
    assert read_lines(path) == ["a\x0cb", "c", "d", "e\x85f", ""]
    path.write_bytes(b"")
    assert read_lines(path) == []


def test_numbers_are_ascii_decimals():
    assert [parse_number(t) for t in ("-16", "+2.5", ".5", "1e2", " 7 ")] == [
        -16,
        2.5,
        0.5,
        100,
        7,
    ]
    assert np.isnan(parse_number("nan")) and parse_number("-inf") == -np.inf
    for bad in ("1_0", "\u0661", "\uff11", "0x10", "1.2.3", "", "dog"):
        with pytest.raises(ValueError):
            parse_number(bad)


# ------------------------------------------------------------------------ Sleuth: errors
def _error_pattern(path, line, experiment, message):
    exp = "none" if experiment is None else re.escape(repr(experiment))
    return rf"{re.escape(Path(path).name)}, line {line}, experiment {exp}.*: .*{message}"


@pytest.mark.parametrize(
    ("name", "line", "experiment", "message"),
    [
        ("test_sleuth_file3.txt", 5, "StudyName: ExperimentName", "must be numbers.*dog"),
        ("test_sleuth_file4.txt", 5, "StudyName: ExperimentName", "expected 3 coordinates.*got 2"),
        ("test_sleuth_file5.txt", 1, None, "unknown Reference space 'Dog'"),
    ],
)
def test_sleuth_shipped_malformed_files(name, line, experiment, message):
    path = SLEUTH / name
    with pytest.raises(InputFileError, match=_error_pattern(path, line, experiment, message)):
        io.convert_sleuth_to_dict(path)


HEAD = "// Reference=MNI\n// S: E\n"
MALFORMED = {
    "missing_subjects": (HEAD + "1 2 3\n", 3, "S: E", "without a 'Subjects' line"),
    "subjects_zero": (HEAD + "// Subjects=0\n1 2 3\n", 3, "S: E", "positive whole number.*'0'"),
    "subjects_negative": (HEAD + "// Subjects=-4\n1 2 3\n", 3, "S: E", "positive.*'-4'"),
    "subjects_text": (HEAD + "// Subjects=many\n1 2 3\n", 3, "S: E", "positive.*'many'"),
    "subjects_fraction": (HEAD + "// Subjects=20.5\n1 2 3\n", 3, "S: E", "whole number"),
    "subjects_empty": (HEAD + "// Subjects=\n1 2 3\n", 3, "S: E", "positive"),
    "subjects_fullwidth": (HEAD + "// Subjects=\uff12\n1 2 3\n", 3, "S: E", "whole number"),
    "subjects_5000_digits": (HEAD + "// Subjects=" + "9" * 5000 + "\n", 3, "S: E", "whole"),
    "empty_file": ("", 1, None, "empty"),
    "blank_file": ("\n \n\t\n", 3, None, "empty"),
    "no_reference": ("// S: E\n// Subjects=5\n1 2 3\n", 1, None, "start with a '// Reference"),
    "reference_twice": ("// Reference=MNI\n// Reference=TAL\n", 2, None, "once"),
    "reference_late": (HEAD + "// Subjects=5\n1 2 3\n// Reference=TAL\n", 5, "S: E", "once"),
    "only_reference": ("// Reference=MNI\n\n", 2, None, "no experiment"),
    "foci_before_header": ("// Reference=MNI\n1 2 3\n", 2, None, "before the first experiment"),
    "subjects_without_name": ("// Reference=MNI\n// Subjects=5\n1 2 3\n", 2, None, "without an"),
    "column_mistake": (
        HEAD + "// Subjects=5\n1 2 3\n501 0 0\n",
        5,
        "S: E",
        r"\(501, 0, 0\) lies more than 500 mm from the origin",
    ),
    "nan": (HEAD + "// Subjects=5\nnan 1 2\n", 4, "S: E", "finite"),
    "four_columns": (HEAD + "// Subjects=5\n1 2 3 4\n", 4, "S: E", "got 4"),
    "nul": (HEAD + "// Subjects=5\n1 2 3\x00\n", 4, "S: E", "NUL character; is the file UTF-16"),
    # float() reads both as numbers; a coordinate is an ASCII decimal
    "underscore": (HEAD + "// Subjects=5\n1_000 2 3\n", 4, "S: E", "must be numbers"),
    "fullwidth_digit": (HEAD + "// Subjects=5\n\uff11 2 3\n", 4, "S: E", "must be numbers"),
    "no_foci": (HEAD + "// Subjects=5\n\n// T: F\n// Subjects=4\n1 2 3\n", 2, "S: E", "no foci"),
    "no_foci_last": (HEAD + "// Subjects=5\n", 2, "S: E", "no foci"),
    "header_at_end": (HEAD + "// Subjects=5\n1 2 3\n// T: F\n", 5, "T: F", "no 'Subjects'"),
    "duplicate": (
        HEAD + "// Subjects=5\n1 2 3\n// S: E\n// Subjects=6\n4 5 6\n",
        5,
        "S: E",
        "already read at .*line 2",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_sleuth_malformed_input(tmp_path, case):
    text, line, experiment, message = MALFORMED[case]
    path = write(tmp_path, text, name=f"{case}.txt")
    with pytest.raises(InputFileError, match=_error_pattern(path, line, experiment, message)):
        io.convert_sleuth_to_dict(path)


@pytest.mark.parametrize(
    "text",
    [
        HEAD + "// Subjects=5\n1 2 " + "3" * 5_000_000 + "x\n",  # a 5 MB focus line
        HEAD + "// Subjects=5\n1 2 3 " + "4 " * 2_500_000 + "\n",  # 2.5 million columns
        "// Reference=MNI\n// " + "N" * 5_000_000 + "\n1 2 3\n",  # a 5 MB name
    ],
    ids=["long_focus_line", "many_columns", "long_name"],
)
def test_sleuth_error_echo_of_huge_line_is_cut(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(InputFileError) as info:
        io.convert_sleuth_to_dict(path)
    message = str(info.value)
    assert str(path) in message and len(message) < 400
    assert re.search(r"\.\.\. \(\d{7} characters\)", message)


def test_excerpt_cuts_long_reprs_and_shows_plain_strings():
    assert excerpt(np.str_("s1-c1")) == "'s1-c1'"
    assert excerpt([1, "a"]) == "[1, 'a']"
    assert excerpt("x" * 100) == repr("x" * 100)[:80] + "... (102 characters)"


def test_sleuth_duplicate_across_files(tmp_path):
    first = write(tmp_path, HEAD + "// Subjects=5\n1 2 3\n", "first.txt")
    second = write(tmp_path, "// Reference=TAL\n\n// S: E\n// Subjects=5\n1 2 3\n", "second.txt")
    with pytest.raises(
        InputFileError, match=_error_pattern(second, 3, "S: E", "first.txt, line 2")
    ):
        io.convert_sleuth_to_dict([first, second])


def test_sleuth_missing_file_and_bad_argument(tmp_path):
    with pytest.raises(InputFileError, match="nope.txt: file not found"):
        io.convert_sleuth_to_dict(tmp_path / "nope.txt")
    for bad in (42, [], [SLEUTH / "test_sleuth_file.txt", 3]):
        with pytest.raises(ValueError, match="text_file"):
            io.convert_sleuth_to_dataset(bad)


# ------------------------------------------------------------------------ NIMADS
@pytest.fixture(scope="module")
def nimads_dset():
    with pytest.warns(UserWarning, match=NO_SPACE):
        return io.convert_nimads_to_dataset(STUDYSET, ANNOTATION)


def test_nimads_matches_nimare(nimads_dset):
    expected = EXPECTED["nimads"]
    assert_dataset_matches(nimads_dset, expected)
    meta = nimads_dset.metadata.set_index("id").drop(columns=["study_id", "contrast_id"])
    assert meta.to_dict(orient="index") == expected["metadata"]
    labels = nimads_dset.annotations.set_index("id").drop(columns=["study_id", "contrast_id"])
    assert labels.to_dict(orient="index") == expected["annotations"]


def test_nimads_accepts_dicts_and_no_annotation():
    studyset = json.loads(STUDYSET.read_text())
    with pytest.warns(UserWarning, match=NO_SPACE):
        plain = io.convert_nimads_to_dataset(studyset)
    assert plain.get_labels() == []
    with pytest.warns(UserWarning, match=NO_SPACE):
        data = io.convert_nimads_to_dict(studyset, json.loads(ANNOTATION.read_text()))
    assert len(data) == len(studyset["studies"])  # studies without analyses are kept, empty
    assert sum(len(s["contrasts"]) for s in data.values()) == 27


def _studyset(points, **analysis):
    return {
        "id": "ss",
        "studies": [
            {
                "id": "s1",
                "name": "Study",
                "metadata": {"sample_size": 12, "site": "A"},
                "analyses": [{"id": "a1", "name": "", "points": points, **analysis}],
            }
        ],
    }


def test_nimads_spaces_sample_sizes_and_images():
    points = [
        {"coordinates": [-18, -58, -24], "space": "TAL"},
        {"coordinates": [26, -64, -50], "space": None},
    ]
    images = [
        {
            "value_type": "T map",
            "url": "https://x.org/img/1/",
            "filename": "t.nii.gz",
            "space": "MNI",
        },
        {"value_type": "T map", "url": "t2.nii.gz"},
        {"value_type": "F map", "url": "f.nii.gz"},
        {"value_type": "variance", "filename": "v.nii"},
    ]
    with pytest.warns(
        UserWarning, match=r"images skipped: second 't' of an analysis \(1\), type 'F map' \(1\)"
    ):
        dset = io.convert_nimads_to_dataset(
            _studyset(points, images=images, metadata={"sample_sizes": [7, 9]})
        )
    np.testing.assert_allclose(
        dset.coordinates[["x", "y", "z"]], tal2mni([[-18, -58, -24], [26, -64, -50]]), atol=1e-12
    )
    row = dset.metadata.iloc[0]
    assert row["sample_sizes"] == [7, 9] and row["site"] == "A" and row["analysis_name"] == "a1"
    assert dset.images.iloc[0][["t", "varcope", "space"]].tolist() == ["t.nii.gz", "v.nii", "MNI"]


def test_nimads_sample_size_priority():
    studyset = _studyset([{"coordinates": [0, 0, 0], "space": "MNI"}])
    note = {"notes": [{"analysis": "a1", "note": {"sample_size": 30, "x": None}}]}
    assert io.convert_nimads_to_dict(studyset)["s1"]["contrasts"]["a1"]["metadata"][
        "sample_sizes"
    ] == [12]
    contrast = io.convert_nimads_to_dict(studyset, note)["s1"]["contrasts"]["a1"]
    assert contrast["metadata"]["sample_sizes"] == [30]
    assert contrast["labels"] == {"sample_size": 30}


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([{"coordinates": [1, 2]}], r"study 's1', analysis 'a1', point 0: 'coordinates'"),
        (
            [
                {"coordinates": [1, 2, 3], "space": "MNI"},
                {"coordinates": [1, 2, 3], "space": "TAL"},
            ],
            "several spaces",
        ),
    ],
)
def test_nimads_malformed(points, message):
    with pytest.raises(InputFileError, match=message):
        io.convert_nimads_to_dict(_studyset(points))


def test_nimads_malformed_structure(tmp_path):
    with pytest.raises(InputFileError, match="no 'studies'"):
        io.convert_nimads_to_dict({"notes": []})
    with pytest.raises(InputFileError, match="'analyses' must be a list of objects"):
        io.convert_nimads_to_dict({"studies": [{"id": "s", "analyses": [{"name": "no id"}]}]})
    with pytest.raises(InputFileError, match="not valid JSON"):
        io.convert_nimads_to_dict(write(tmp_path, "{", "bad.json"))
    with pytest.raises(TypeError, match="studyset must be a path or a dict"):
        io.convert_nimads_to_dict(["x"])


def test_nimads_notes_for_unknown_analyses_warn():
    note = {"notes": [{"analysis": "zz", "note": {"include": True}}]}
    with pytest.warns(UserWarning, match="notes for 1 analyses not in the studyset.*'zz'"):
        io.convert_nimads_to_dict(_studyset([{"coordinates": [0, 0, 0], "space": "MNI"}]), note)


# ------------------------------------------------------------------------ Neurosynth
@pytest.fixture(scope="module")
def ns_dset():
    with pytest.warns(UserWarning, match=UNKNOWN_SPACE):
        return io.convert_neurosynth_to_dataset(NS_COORDS, NS_META, NS_FEATURES)


def test_neurosynth_matches_nimare(ns_dset):
    expected = EXPECTED["neurosynth"]
    assert_dataset_matches(ns_dset, expected)
    data = io.convert_neurosynth_to_dict(str(NS_COORDS), str(NS_META), [NS_FEATURES])
    assert {sid: s["contrasts"]["1"]["coords"]["space"] for sid, s in data.items()} == expected[
        "space"
    ]
    assert {sid: s["contrasts"]["1"]["metadata"] for sid, s in data.items()} == expected[
        "metadata"
    ]
    labels = ns_dset.annotations.set_index("id").drop(columns=["study_id", "contrast_id"])
    assert labels.columns.tolist() == expected["label_columns"]
    nonzero = {k: {c: x for c, x in v.items() if x != 0} for k, v in labels.iterrows()}
    assert nonzero == expected["labels_nonzero"]


def test_neurosynth_feature_groups_and_json(tmp_path, ns_dset):
    data = io.convert_neurosynth_to_dict(
        NS_COORDS, NS_META, [NS_FEATURES, NS_FEATURES], ["a_", "b"]
    )
    labels = data["9065511"]["contrasts"]["1"]["labels"]
    assert len(labels) == 200 and "a__001" in labels and "b__001" in labels
    out = tmp_path / "ns.json"
    io.convert_neurosynth_to_json(NS_COORDS, NS_META, out, annotations_files=NS_FEATURES)
    with pytest.warns(UserWarning, match=UNKNOWN_SPACE):
        assert_same_tables(Dataset(out), ns_dset)


def test_neurosynth_without_space_column_warns(tmp_path):
    meta = pd.read_csv(NS_META, sep="\t", dtype={"id": str}).drop(columns=["space", "title"])
    meta.to_csv(tmp_path / "meta.tsv", sep="\t", index=False)
    with pytest.warns(UserWarning, match="no 'space' column"):
        data = io.convert_neurosynth_to_dict(NS_COORDS, tmp_path / "meta.tsv")
    study = data["9065511"]
    assert study["contrasts"]["1"]["coords"]["space"] == "UNKNOWN"
    assert study["metadata"]["title"] == "n/a" and "labels" not in study["contrasts"]["1"]


def test_neurosynth_malformed(tmp_path):
    coords = pd.read_csv(NS_COORDS, sep="\t", dtype={"id": str})
    meta = pd.read_csv(NS_META, sep="\t", dtype={"id": str})

    def tsv(df, name):
        df.to_csv(tmp_path / name, sep="\t", index=False)
        return tmp_path / name

    with pytest.raises(InputFileError, match=r"missing column\(s\) \['z'\]"):
        io.convert_neurosynth_to_dict(tsv(coords.drop(columns="z"), "c.tsv"), NS_META)
    with pytest.raises(InputFileError, match="study id '9065511' appears more than once"):
        io.convert_neurosynth_to_dict(NS_COORDS, tsv(pd.concat([meta, meta.iloc[:1]]), "m.tsv"))
    with pytest.raises(InputFileError, match="foci belong to studies not in"):
        io.convert_neurosynth_to_dict(NS_COORDS, tsv(meta.iloc[1:], "m1.tsv"))
    bad = coords.astype({"x": object})
    bad.loc[3, "x"] = "left"
    with pytest.raises(InputFileError, match="c2.tsv, line 5: x, y, z must be finite"):
        io.convert_neurosynth_to_dict(tsv(bad, "c2.tsv"), NS_META)
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("\n".join(Path(NS_FEATURES["vocabulary"]).read_text().split()[:99]))
    with pytest.raises(InputFileError, match="does not match 20 studies x 99 terms"):
        io.convert_neurosynth_to_dict(
            NS_COORDS, NS_META, {**NS_FEATURES, "vocabulary": vocabulary}
        )
    renamed = tmp_path / "features.npz"
    renamed.write_bytes(Path(NS_FEATURES["features"]).read_bytes())
    with pytest.raises(InputFileError, match="vocab-"):
        io.convert_neurosynth_to_dict(NS_COORDS, NS_META, {**NS_FEATURES, "features": renamed})
    with pytest.raises(ValueError, match="2 feature_groups for 1 annotations_files"):
        io.convert_neurosynth_to_dict(NS_COORDS, NS_META, NS_FEATURES, ["a", "b"])
    with pytest.raises(InputFileError, match="file not found"):
        io.convert_neurosynth_to_dict(tmp_path / "none.tsv", NS_META)


# ------------------------------------------------------------------------ NiMARE JSON
def test_round_trip_sleuth_talairach(tmp_path):
    first = io.convert_sleuth_to_dataset(SLEUTH / "test_sleuth_file2.txt")
    data = io.convert_dataset_to_dict(first)
    assert {c["coords"]["space"] for s in data.values() for c in s["contrasts"].values()} == {
        "MNI"
    }
    second = Dataset(data, target="ale_2mm")
    # Coordinates are written as the MNI values the dataset holds: exactly equal, labelled MNI.
    assert_same_tables(first, second, ignore_space=True)
    assert set(second.coordinates["space"]) == {"MNI"}
    assert io.convert_dataset_to_dict(second) == data


def test_round_trip_through_json_file(tmp_path, nimads_dset, ns_dset):
    for dset in (nimads_dset, ns_dset):
        out = tmp_path / "dset.json"
        io.convert_dataset_to_json(dset, out)
        again = Dataset(out)
        assert_same_tables(dset, again, ignore_space=True)
        assert io.convert_dataset_to_dict(again) == io.load_json(out)


def test_round_trip_keeps_sparse_columns_and_missing_values():
    source = {
        "s1": {
            "contrasts": {
                "c1": {
                    "coords": {"space": "MNI", "x": [1.5], "y": [2.0], "z": [3.0]},
                    "metadata": {"sample_sizes": [10, 12], "age": 30.5},
                    "images": {"z": "a.nii.gz", "beta": None},
                    "labels": {"memory": 0.2},
                    "text": {"abstract": "words"},
                },
                "c2": {"metadata": {"sample_sizes": [5]}, "labels": {"pain": 1}},
            }
        },
        "s2": {"contrasts": {"c1": {"coords": {"space": "MNI", "x": [], "y": [], "z": []}}}},
    }
    first = Dataset(source)
    data = io.convert_dataset_to_dict(first)
    assert data["s1"]["contrasts"]["c2"]["metadata"] == {"sample_sizes": [5], "age": None}
    assert data["s1"]["contrasts"]["c2"]["images"] == {"z": None, "beta": None}
    assert data["s1"]["contrasts"]["c1"]["images"] == {"z": "a.nii.gz", "beta": None}
    assert "coords" not in data["s2"]["contrasts"]["c1"]
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    second = Dataset(data)
    assert_same_tables(first, second, missing_as_none=True)
    assert io.convert_dataset_to_dict(second) == data


def test_load_json_errors(tmp_path):
    with pytest.raises(InputFileError, match="missing.json: file not found"):
        io.load_json(tmp_path / "missing.json")
    with pytest.raises(InputFileError, match="bad.json: not valid JSON"):
        io.load_json(write(tmp_path, '{"a": ', "bad.json"))
    with pytest.raises(InputFileError, match="list.json: expected a JSON object, got list"):
        io.load_json(write(tmp_path, "[1, 2]", "list.json"))


def test_public_names():
    assert sorted(io.__all__) == sorted(
        name for name in dir(io) if name.startswith(("convert_", "load_", "fetch_"))
    )
