"""Fuzz tests of the Sleuth and NiMARE-JSON readers (hypothesis, derandomized).

Structurally plausible inputs are generated, and most are then broken: a token replaced by
junk (words, "nan", "1e999", "1_0", other scripts' digits), a column dropped or added, a
line inserted, deleted or made huge, bytes inserted or cut, a JSON field deleted or given a
value of the wrong type. Whatever comes out, the reader either returns a dataset whose
coordinates are finite and equal to the numbers written, or raises InputFileError or
DatasetError with a short message that names the file; any other exception fails the test,
and so does a non-numeric coordinate or sample size that was accepted. Inputs that were not
broken must be read, with names as written.
"""

import codecs
import json
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nimare_jax import io
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError, InputFileError
from nimare_jax.parsing import decode_text
from nimare_jax.spatial import tal2mni

FUZZ = settings(
    max_examples=15,  # per kind of damage: 150 Sleuth files, 270 JSON datasets
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is stable
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# What the readers must accept as a number: an ASCII decimal (the spec, written out here).
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
LINE_BREAK = re.compile(r"\r\n|\r|\n")
MAX_MESSAGE = 1000  # echoed input is cut, so no message gets longer than this
# Hypothesis favours the start of a list: the likeliest to slip through come first.
JUNK_TOKENS = ["1_0", "nan", "\uff11", "1e999", "dog", "-inf", "\u0661", "0x10", "1.2.3", "1e300"]
TAL = {"tal", "talairach"}
NON_FINITE = {"nan", "inf", "infinity"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def read_or_refuse(read, path_text):
    """Return ``read()``'s result, or None if it refused the input as it must."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = read()
        except (InputFileError, DatasetError) as exc:
            message = str(exc)
            assert path_text in message, message[:MAX_MESSAGE]
            assert len(message) < MAX_MESSAGE, message[:MAX_MESSAGE]
            result = None
    assert all(issubclass(w.category, UserWarning) for w in caught), [str(w) for w in caught]
    return result


def is_number(value) -> bool:
    """A JSON number, or a string of a decimal or of NaN/infinity (which JSON can also hold)."""
    if isinstance(value, str):
        text = value.strip()
        return bool(NUMBER.fullmatch(text)) or text.lstrip("+-").lower() in NON_FINITE
    return isinstance(value, int | float) and not isinstance(value, bool)


# ------------------------------------------------------------------------ Sleuth
coordinate = st.tuples(
    st.floats(-60, 60), st.floats(-90, 50), st.floats(-40, 70)
)  # inside the template volume in MNI and after Talairach -> MNI
number_format = st.sampled_from(["{:.0f}", "{:.1f}", "{:.3f}", "{:g}", "{:e}", "{!r}", "{:+.2f}"])
# Characters of names: those str.splitlines() breaks at, those where Windows-1252 and
# Latin-1 differ, then any other the file's encoding can hold but NUL (refused). A
# Windows-1252 title always ends with one of its own characters, so that decoding it as
# Latin-1 would show.
TRICKY = "\u2026\u2013\u20ac\u201c\u2122\x0b\x0c\x1c\x1e;:, "
WINDOWS_1252_ONLY = st.sampled_from("\u2026\u2013\u20ac\u201c\u2122")
ALPHABETS = {
    "cp1252": st.sampled_from(TRICKY)
    | st.characters(codec="cp1252", exclude_characters="\r\n\x00"),
    "utf-8": st.sampled_from(TRICKY + "\x85\x96\u2028\u2029")
    | st.characters(exclude_characters="\r\n\x00", exclude_categories=("Cs",)),
}


def experiment(encoding):
    name_text = st.text(ALPHABETS[encoding], max_size=12)
    title = name_text
    if encoding == "cp1252":
        title = st.tuples(name_text, WINDOWS_1252_ONLY).map("".join)
    return st.fixed_dictionaries(
        {
            "title": title,
            "more": st.none() | name_text,
            "n": st.integers(1, 500),
            "foci": st.lists(st.tuples(coordinate, number_format), min_size=1, max_size=4),
        }
    )


def sleuth_lines(space, experiments, separator, blank):
    """The file's lines and, per experiment, (study, contrast, n, written numbers)."""
    lines, expected = [f"// Reference{blank}={space}"], []
    for k, exp in enumerate(experiments):
        study = f"S{k} et al., 2010"
        comments = [f"{study}: {exp['title']}"] + (
            [] if exp["more"] is None else [f"and {exp['more']}"]
        )
        lines += [f"// {c}" for c in comments] + [f"//Subjects{blank}={exp['n']}", blank]
        written = [[fmt.format(v) for v in xyz] for xyz, fmt in exp["foci"]]
        lines += [separator.join(row) for row in written]
        name = " ".join(c.strip() for c in comments)
        contrast = name[len(study) + 1 :].strip() or "analysis_1"
        expected.append((study, contrast, exp["n"], [[float(v) for v in row] for row in written]))
    return lines, expected


MUTATIONS = ["none", "token", "drop", "add", "insert", "delete", "subjects"]
MUTATIONS += ["huge", "bytes", "cut"]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def sleuth_files(draw, mutation):
    """Bytes of a Sleuth file, its expected content (None if broken) and its space."""
    space = draw(st.sampled_from(["MNI", "mni", "TAL", "Talairach"]))
    encoding = draw(st.sampled_from(["cp1252", "utf-8", "utf-8-sig"]))
    alphabet = "cp1252" if encoding == "cp1252" else "utf-8"
    experiments = draw(st.lists(experiment(alphabet), min_size=1, max_size=3))
    separator = draw(st.sampled_from([" ", "\t", ",", ", ", "  "]))
    lines, expected = sleuth_lines(space, experiments, separator, draw(st.sampled_from(["", " "])))
    if mutation != "none":
        expected = None
    at = draw(st.integers(0, len(lines) - 1))
    junk = draw(st.sampled_from(JUNK_TOKENS) | st.text(max_size=6))
    focus_rows = [i for i, line in enumerate(lines) if line.strip() and line[:2] != "//"]
    row = focus_rows[at % len(focus_rows)]
    tokens = lines[row].split(separator)
    if mutation == "token":
        tokens[draw(st.integers(0, 2))] = junk
    elif mutation == "drop":
        tokens.pop(draw(st.integers(0, 2)))
    elif mutation == "add":
        tokens.append(draw(st.sampled_from(["1", junk])))
    lines[row] = separator.join(tokens)
    if mutation == "insert":
        lines.insert(at, draw(st.text(st.characters(exclude_characters="\r\n"), max_size=12)))
    elif mutation == "delete":
        del lines[at]
    elif mutation == "subjects":
        n = draw(st.sampled_from(["\uff12", "\u0662", "0", "2.5", "-3"]) | st.just(junk))
        lines = [f"// Subjects={n}" if "Subjects" in line else line for line in lines]
    elif mutation == "huge":
        lines.insert(at, draw(st.sampled_from(["1 2 ", "// ", ""])) + "3" * 200_000 + junk)
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines) + "\n"
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:  # a junk line
        data = text.encode("utf-8")
    if encoding == "cp1252" and not data.isascii() and _is_utf8(data):
        data = text.encode("utf-8")  # such bytes are read as UTF-8, by design
    if mutation == "bytes":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(min_size=1, max_size=8)) + data[cut:]
    elif mutation == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    return data, expected, space


def numeric_rows(data: bytes) -> list[list[float]]:
    """The foci a reader may accept from this file; fail if a focus or Subjects is not numeric."""
    rows = []
    for line in LINE_BREAK.split(decode_text(data)):
        line = line.strip()
        if subjects := re.fullmatch(r"//\s*subjects\s*=\s*(.*)", line, re.IGNORECASE):
            assert re.fullmatch(r"\+?\d+", subjects.group(1), re.ASCII), line[:200]
        if line and not line.startswith("//"):
            fields = re.split(r"[\s,]+", line)
            assert len(fields) == 3 and all(map(NUMBER.fullmatch, fields)), line[:200]
            rows.append([float(f) for f in fields])
    return rows


@pytest.mark.parametrize("mutation", MUTATIONS)
@FUZZ
@given(sample=st.data())
def test_sleuth_reader_reads_numbers_or_names_the_file(folder, mutation, sample):
    data, expected, space = sample.draw(sleuth_files(mutation))
    path = folder / "foci.txt"
    path.write_bytes(data)
    result = read_or_refuse(lambda: io.convert_sleuth_to_dict(path), str(path))
    if expected is not None:  # not broken: read, with names as written
        assert result is not None
        got = [
            (study, contrast, entry["metadata"]["sample_sizes"][0], entry["coords"])
            for study, value in result.items()
            for contrast, entry in value["contrasts"].items()
        ]
        assert [g[:3] for g in got] == [e[:3] for e in expected]
        for (_, _, _, coords), (_, _, _, rows) in zip(got, expected, strict=True):
            np.testing.assert_array_equal(np.c_[coords["x"], coords["y"], coords["z"]], rows)
    if result is None:
        return
    rows = numeric_rows(data)  # every focus line holds three numbers: nothing slipped in
    got = [
        xyz
        for value in result.values()
        for entry in value["contrasts"].values()
        for xyz in zip(*(entry["coords"][a] for a in "xyz"), strict=True)
    ]
    assert sorted(map(list, got)) == sorted(rows)
    dset = read_or_refuse(lambda: io.convert_sleuth_to_dataset(path), str(path))
    assert dset is not None and len(dset.coordinates) == len(rows)
    assert list(dset.ids) == [
        f"{s}-{c}" for s, value in result.items() for c in value["contrasts"]
    ]
    xyz = dset.coordinates[["x", "y", "z"]].to_numpy(float)
    assert np.isfinite(xyz).all()
    if space.lower() not in TAL:
        assert sorted(map(list, xyz)) == sorted(rows)


# ------------------------------------------------------------------------ NiMARE JSON
# NUL is refused in names (NumPy's strings would drop it from the ids)
key = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6)
junk_scalar = st.one_of(
    st.sampled_from([True, *JUNK_TOKENS, None, "", " 12 ", "+.5e1", False]),
    st.integers(-50, 50),
    st.floats(-50, 50),
    st.text(max_size=4),
    st.integers(),
    st.floats(),
)
junk_value = st.one_of(
    junk_scalar,
    st.lists(junk_scalar, max_size=3),
    st.dictionaries(st.sampled_from(["x", "n", "id", "study_id", "contrast_id"]), junk_scalar),
    st.recursive(
        junk_scalar,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=6,
    ),
)


@st.composite
def contrast(draw):
    n = draw(st.integers(0, 4))
    xyz = draw(st.lists(coordinate, min_size=n, max_size=n))
    space = draw(st.sampled_from(["MNI", "TAL", "ale_2mm", "UNKNOWN"]))
    entry = {
        "coords": {"space": space, **{a: [p[i] for p in xyz] for i, a in enumerate("xyz")}},
        "metadata": {"sample_sizes": draw(st.lists(st.integers(1, 500), min_size=1, max_size=2))},
    }
    if draw(st.integers(0, 3)) == 0:
        del entry["coords"]  # an image-only experiment
        entry["images"] = {"z": "z.nii.gz"}
    if draw(st.booleans()):
        entry["labels"] = {"pain": draw(st.floats(0, 1))}
    return entry


def experiment_fields(source, study, con_id):
    """Where each kind of break applies: name -> (parent, key) in one experiment's entry."""
    contrasts = source[study]["contrasts"]
    con = contrasts[con_id]
    coords = con.setdefault("coords", {"space": "MNI", "x": [], "y": [], "z": []})
    if not coords["x"]:
        coords.update(x=[0.0], y=[0.0], z=[0.0])  # something to break
    meta = con["metadata"]
    return {
        "sample_sizes[0]": (meta["sample_sizes"], 0),
        "sample_sizes": (meta, "sample_sizes"),
        "metadata.id": (meta, "id"),
        "coords.x[0]": (coords["x"], 0),
        "coords.z[0]": (coords["z"], 0),
        "coords.y": (coords, "y"),
        "coords.space": (coords, "space"),
        "coords": (con, "coords"),
        "metadata": (con, "metadata"),
        "labels": (con, "labels"),
        "images": (con, "images"),
        "text": (con, "text"),
        "contrast": (contrasts, con_id),
        "contrasts": (source[study], "contrasts"),
        "study": (source, study),
    }


BREAKS = ["none", "top", "bytes", "sample_sizes[0]", "sample_sizes", "metadata.id"]
BREAKS += ["coords.x[0]", "coords.z[0]", "coords.y", "coords.space", "coords", "metadata"]
BREAKS += ["labels", "images", "text", "contrast", "contrasts", "study"]


@st.composite
def nimare_sources(draw, kind):
    """A NiMARE dict, broken as ``kind`` says, and the bytes of its JSON file (or None)."""
    source = draw(
        st.dictionaries(
            key,
            st.fixed_dictionaries(
                {"contrasts": st.dictionaries(key, contrast(), min_size=1, max_size=2)}
            ),
            min_size=1,
            max_size=3,
        )
    )
    if kind == "top":
        source = draw(junk_value)
    elif kind not in ("none", "bytes"):
        study = draw(st.sampled_from(sorted(source)))
        con_id = draw(st.sampled_from(sorted(source[study]["contrasts"])))
        parent, field = experiment_fields(source, study, con_id)[kind]
        if isinstance(parent, dict) and draw(st.integers(0, 3)) == 3:
            parent.pop(field, None)
        else:
            parent[field] = draw(junk_value)
    if kind != "bytes" and draw(st.booleans()):
        return source, None
    data = json.dumps(source).encode()  # NaN and Infinity are written as such
    if draw(st.booleans()):
        data = codecs.BOM_UTF8 + data
    if kind == "bytes":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=4)) + data[cut + draw(st.integers(0, 3)) :]
    return source, data


def expected_foci(entry) -> np.ndarray:
    """The MNI foci a contrast entry holds; fail if a coordinate is not a number."""
    coords = entry.get("coords")
    if coords is None:
        return np.zeros((0, 3))
    columns = []
    for a in "xyz":
        values = coords[a] if isinstance(coords[a], list) else [coords[a]]
        assert all(map(is_number, values)), f"non-numeric {a} accepted: {values!r}"[:200]
        columns.append([float(v) for v in values])
    xyz = np.array(columns, float).T.reshape(-1, 3)
    return tal2mni(xyz) if str(coords.get("space")).lower() in TAL else xyz


@pytest.mark.parametrize("kind", BREAKS)
@FUZZ
@given(sample=st.data())
def test_nimare_json_reader_reads_numbers_or_names_the_source(folder, kind, sample):
    source, data = sample.draw(nimare_sources(kind))
    if data is None:
        origin = source if isinstance(source, str) else "dataset dict"  # a str is a path
        dset = read_or_refuse(lambda: Dataset(source), origin)
    else:
        path = folder / "dataset.json"
        path.write_bytes(data)
        origin = str(path)
        dset = read_or_refuse(lambda: Dataset(path), origin)
        source = json.loads(data) if dset is not None else source
    if kind == "none":
        assert dset is not None
    if dset is None:
        return
    assert dset.origin == origin
    experiments = [[str(s), str(c)] for s, value in source.items() for c in value["contrasts"]]
    assert list(dset.ids) == [f"{s}-{c}" for s, c in experiments]
    assert dset.metadata[["study_id", "contrast_id"]].to_numpy().tolist() == experiments
    coords = dset.coordinates
    assert np.isfinite(coords[["x", "y", "z"]].to_numpy(float)).all()
    for study, value in source.items():
        for con, entry in value["contrasts"].items():
            mine = (coords["study_id"] == str(study)) & (coords["contrast_id"] == str(con))
            got = coords.loc[mine, ["x", "y", "z"]].to_numpy(float)
            np.testing.assert_array_equal(got, expected_foci(entry))
            sizes = (entry.get("metadata") or {}).get("sample_sizes")
            values = sizes if isinstance(sizes, list) else [sizes]
            assert sizes is None or all(map(is_number, values)), f"sample_sizes {sizes!r}"


def test_unpaired_surrogate_escape_is_named_and_pairs_are_characters(tmp_path):
    """``"\\ud800"`` alone is valid JSON syntax but no character (found by the fuzz test)."""
    lone = tmp_path / "lone.json"
    lone.write_bytes(b'{"s\\ud800": {"contrasts": {"c": {}}}}')
    with pytest.raises(InputFileError, match=rf"^{re.escape(str(lone))}: .*unpaired surrogate"):
        Dataset(lone)
    pair = tmp_path / "pair.json"
    pair.write_bytes(b'{"s\\ud83d\\ude00": {"contrasts": {"c": {}}}}')
    assert list(Dataset(pair).ids) == ["s\U0001f600-c"]
