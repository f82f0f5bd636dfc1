"""Studyset tables built column-wise equal a brute-force, focus-by-focus construction.

The brute force is the direct route: the studyset's NIMADS document (``to_dict``), each
analysis' foci put in one space focus by focus (Talairach foci of an analysis that mixes
spaces converted one at a time), read into a Dataset through the NiMARE-format dict
(one dict per focus), then the studyset's space, raw foci and point values added focus by
focus and the string ``"None"`` read as missing cell by cell. Equality is exact: values,
dtypes, column order, and the warnings raised.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from nimare_jax.dataset import Dataset
from nimare_jax.io.nimads import POINT_VALUE_KINDS, convert_nimads_to_dict
from nimare_jax.spatial import mni2tal, tal2mni
from nimare_jax.studyset import Studyset

KINDS = {kind: column for column, kind in POINT_VALUE_KINDS.items()}
SPACES = ["MNI", "MNI", "TAL", "talairach", None, "", "mni152", "foo"]


def random_document(seed: int) -> dict:
    """A NIMADS document with mixed spaces, point values, metadata, texts, images, notes."""
    rng = np.random.default_rng(seed)
    studies = []
    for s in rng.permutation(7):
        analyses = []
        for a in rng.permutation(int(rng.integers(0, 4))):
            spaces = rng.choice(len(SPACES), size=2)
            points = []
            for _ in range(int(rng.integers(0, 5))):
                xyz = rng.integers(-70, 70, 3)
                kind = rng.random()  # JSON floats, JSON integers, or a number in a string
                xyz = xyz.tolist() if kind < 0.3 else xyz.astype(float).tolist()
                if kind > 0.9:
                    xyz[0] = f" {xyz[0]} "
                point = {"coordinates": xyz}
                space = SPACES[spaces[rng.integers(2)]]
                if space is not None:
                    point["space"] = space
                if rng.random() < 0.4:
                    kinds = rng.permutation(list(KINDS) + ["other"])[: rng.integers(1, 3)]
                    point["values"] = [
                        {"kind": str(k), "value": float(rng.normal())} for k in kinds
                    ]
                points.append(point)
            analysis = {
                "id": f"a{a}",
                "name": rng.choice(["contrast", "None", None]),
                "points": points,
                "metadata": {"sample_sizes": [int(rng.integers(5, 40))], "tag": "None"},
            }
            if rng.random() < 0.5:
                analysis["texts"] = {"abstract": str(rng.choice(["text", "None"]))}
            if rng.random() < 0.5:
                analysis["images"] = [{"value_type": "T map", "filename": f"s{s}a{a}_t.nii.gz"}]
            if rng.random() < 0.5:
                analysis["annotations"] = {"inline": bool(rng.random() < 0.5)}
            analyses.append(analysis)
        studies.append(
            {
                "id": f"s{s}" if s % 2 else int(s),
                "name": f"study {s}",
                "authors": rng.choice(["A B", "None"]),
                "publication": "J",
                "metadata": {"year": 2000 + int(s)},
                "analyses": analyses,
            }
        )
    notes = [
        {"study": str(st["id"]), "analysis": an["id"], "note": {"label": float(rng.random())}}
        for st in studies
        for an in st["analyses"]
        if rng.random() < 0.6
    ]
    return {
        "id": "random",
        "name": "random",
        "studies": studies,
        "annotations": [
            {"id": "extra", "name": "extra", "note_keys": {"label": "number"}, "notes": notes}
        ],
    }


def _space(space) -> str:
    low = str(space).lower()
    return "MNI" if "mni" in low or "ale" in low else "TAL" if "tal" in low else space


def one_space_by_focus(points: list) -> list:
    """Foci of an analysis in one space: MNI, Talairach foci converted one at a time."""
    if len({_space(p["space"]) for p in points if p.get("space")}) < 2:
        return points
    out = []
    for point in points:
        xyz = [point["coordinates"]]
        if _space(point.get("space") or "MNI") == "TAL":
            xyz = tal2mni(np.array(xyz, dtype=float)).tolist()
        out.append({**point, "coordinates": xyz[0], "space": "MNI"})
    return out


def none_strings_by_cell(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].map(lambda v: None if v == "None" else v).astype(object)
    return frame


def brute_force(studyset: Studyset, target):
    """Return the dataset and coordinates table built focus by focus from ``to_dict``."""
    document = studyset.to_dict()
    written = [
        p["coordinates"]
        for st in document["studies"]
        for an in st["analyses"]
        for p in an["points"]
    ]
    for study in document["studies"]:
        for analysis in study["analyses"]:
            analysis["points"] = one_space_by_focus(analysis.get("points") or [])
    points = [p for st in document["studies"] for an in st["analyses"] for p in an["points"]]
    dataset = Dataset(
        convert_nimads_to_dict(document),
        target=target if target in ("mni152_2mm", "ale_2mm") else "mni152_2mm",
    )
    coords = dataset.coordinates.copy()
    if target is None:
        # the foci as written, labelled with their space after the one-space step
        coords[["x", "y", "z"]] = np.array(written, dtype=float)
        coords["space"] = [p.get("space") for p in points]
    else:
        if "tal" in target.lower():
            coords[["x", "y", "z"]] = mni2tal(coords[["x", "y", "z"]].to_numpy())
        coords["space"] = target
    columns = {}
    for n, point in enumerate(points):
        for value in point.get("values") or []:
            column = KINDS.get(value["kind"], value["kind"])
            columns.setdefault(column, [None] * len(points))[n] = value["value"]
    for column, values in columns.items():
        coords[column] = values
    return dataset, coords


def recorded(function, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = function(*args)
    return out, sorted(str(w.message) for w in caught)


def selections(studyset: Studyset, rng):
    yield studyset
    yield studyset.select_analyses(rng.random(len(studyset)) < 0.6)
    yield studyset.select_points(rng.random(studyset.store.n_points) < 0.7)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", ["mni152_2mm", None, "TAL", "ale_2mm"])
def test_tables_equal_a_focus_by_focus_construction(seed, target):
    rng = np.random.default_rng(100 + seed)
    document = random_document(seed)
    for studyset in selections(Studyset(document, target=target), rng):
        if not len(studyset):
            continue
        (expected, coords), expected_warnings = recorded(brute_force, studyset, target)
        got_coords, got_warnings = recorded(getattr, studyset, "coordinates")  # first use
        assert got_warnings == expected_warnings
        pd.testing.assert_frame_equal(got_coords, none_strings_by_cell(coords), check_exact=True)
        got_coords.loc[:, "x"] = np.nan  # a caller's change does not reach the studyset
        pd.testing.assert_frame_equal(
            studyset.coordinates, none_strings_by_cell(coords), check_exact=True
        )
        dataset = studyset.to_dataset()
        for name in ("coordinates", "metadata", "images", "annotations", "texts"):
            pd.testing.assert_frame_equal(
                getattr(dataset, name), getattr(expected, name), check_exact=True
            )
        for name, table in [
            ("metadata", studyset.metadata),
            ("texts", studyset.texts),
            ("annotations", studyset.annotations_df),
        ]:
            pd.testing.assert_frame_equal(
                table, none_strings_by_cell(getattr(expected, name)), check_exact=True
            )
        images = studyset.images
        base = expected.images
        pd.testing.assert_frame_equal(images[list(base.columns)], base, check_exact=True)
        if "t" in base.columns:  # the one image type the documents hold
            relative = [
                (an.get("images") or [{}])[0].get("filename")
                for st in studyset.to_dict()["studies"]
                for an in st["analyses"]
            ]
            pd.testing.assert_series_equal(
                images["t__relative"], pd.Series(relative, name="t__relative"), check_exact=True
            )


def test_random_documents_exercise_every_space_case():
    """The random documents hold mixed-space analyses, bare and unknown spaces, values, and
    coordinates written as floats, integers and strings."""
    spaces, mixed, talairach, values, written = set(), 0, 0, 0, set()
    for seed in range(4):
        for study in random_document(seed)["studies"]:
            for analysis in study["analyses"]:
                given = {_space(p["space"]) for p in analysis["points"] if p.get("space")}
                mixed += len(given) > 1
                talairach += given == {"TAL"}
                values += sum("values" in p for p in analysis["points"])
                spaces |= {p.get("space") for p in analysis["points"]}
                written |= {type(p["coordinates"][0]) for p in analysis["points"]}
    assert mixed > 0 and talairach > 0 and values > 0 and len(written) == 3
    assert {"TAL", "MNI", "foo", None, ""} <= spaces
