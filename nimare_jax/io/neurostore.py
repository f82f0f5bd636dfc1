"""NeuroStore: one studyset from its API, and the parquet tables of its studyset releases.

:func:`fetch_neurostore_studyset` is NiMARE 0.22.1's ``nimare.io.fetch_neurostore_studyset``
without the ``neurostore_sdk`` dependency: it asks the API for the nested studyset
(``/api/studysets/<id>?nested=true``) and the annotation (``/api/annotations/<id>``) with the
standard library and returns a :class:`~nimare_jax.studyset.Studyset`.

:func:`read_neurostore_release` reads a release folder (what
:func:`nimare_jax.extract.fetch_neurostore` downloads): ``studyset.json`` plus the tables
``studies``, ``analyses``, ``coordinates``, ``metadata``, ``texts``, ``images`` and
``annotations`` as parquet files, keyed by analysis id ``"<study>-<analysis>"``. It rebuilds
the NIMADS document those tables were written from, so every reader of nimare_jax (the
Studyset, ``convert_nimads_to_dataset``) accepts it. Reading parquet needs ``pyarrow``, an
optional dependency (``pip install "nimare_jax[parquet]"``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from nimare_jax.exceptions import InputFileError
from nimare_jax.io.download import fetch_json
from nimare_jax.io.nimads import POINT_VALUE_KINDS
from nimare_jax.io.studyset import Studyset

try:
    import pyarrow
except ImportError:  # optional: only the parquet release reader needs it
    pyarrow = None

#: Root of the NeuroStore API (studysets, annotations, studyset releases).
NEUROSTORE_API_URL = "https://neurostore.org/api"
#: Table columns that are keys, not values.
_KEYS = ("id", "study_id", "contrast_id")
#: Columns of the studies table that are fields of a NIMADS study (others go to metadata).
_STUDY_FIELDS = ("name", "description", "authors", "publication", "doi", "pmid", "year")


def fetch_neurostore_studyset(
    studyset_id, annotation_id=None, target="mni152_2mm", url=None, timeout=30
):
    """Download a NeuroStore studyset (and optionally an annotation) as a Studyset.

    Parameters
    ----------
    studyset_id : str
        NeuroStore id of the studyset; it is requested nested (studies, analyses, points).
    annotation_id : str or None
        NeuroStore id of an annotation to attach.
    target : str
        Space of the returned studyset (see :class:`~nimare_jax.studyset.Studyset`).
    url : str or None
        Root of the API; default :data:`NEUROSTORE_API_URL`.
    timeout : float
        Seconds to wait for the server at each step.

    Returns
    -------
    Studyset

    Raises
    ------
    DownloadError
        If a request fails (offline, unknown id: HTTP 404), naming its URL.
    InvalidStudysetError
        If the answer is not a NIMADS studyset.
    """
    root = (url or NEUROSTORE_API_URL).rstrip("/")
    studyset = fetch_json(
        f"{root}/studysets/{quote(str(studyset_id), safe='')}?nested=true", timeout=timeout
    )
    annotations = None
    if annotation_id is not None:
        annotation = fetch_json(
            f"{root}/annotations/{quote(str(annotation_id), safe='')}", timeout=timeout
        )
        annotations = [annotation]
    return Studyset(studyset, target=target, annotations=annotations)


def _read_table(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / f"{name}.parquet"
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: not a readable parquet table ({exc})") from None


def _plain(value):
    """Return a table cell as a JSON-like Python value (None if missing)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value


def _present(column: pd.Series) -> tuple[np.ndarray, list]:
    """Positions of a column's non-missing cells and their JSON-like values."""
    keep = np.flatnonzero(column.notna().to_numpy())
    values = column.iloc[keep]
    if values.dtype != object:  # numbers, booleans, strings: tolist gives Python values
        return keep, values.tolist()
    return keep, [_plain(v) for v in values.tolist()]


def _fields(table: pd.DataFrame | None, skip=_KEYS) -> dict[str, dict]:
    """Non-missing values of each row of an analysis-keyed table, by analysis id."""
    if table is None:
        return {}
    ids = table["id"].astype(str).tolist()
    out = {key: {} for key in ids}
    for column in table.columns:
        if column in skip:
            continue
        for row, value in zip(*_present(table[column]), strict=True):
            out[ids[row]][column] = value
    return out


def _require(table, name: str, columns: tuple, folder: Path) -> pd.DataFrame:
    if table is None:
        raise InputFileError(f"{folder}: not a studyset release (no {name}.parquet)")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputFileError(f"{folder / f'{name}.parquet'}: lacks column(s) {missing}")
    return table


def read_neurostore_release(directory) -> dict:
    """Read a NeuroStore studyset release folder into a NIMADS studyset document.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder holding ``studyset.json`` and the release's parquet tables.

    Returns
    -------
    dict
        ``{"id", "name", "studies": [...], "annotations": [...]}``: studies with their fields,
        analyses with ``metadata``, ``texts``, ``points`` (``coordinates``, ``space``,
        ``kind`` and the point value columns as ``values``, e.g. ``z_stat`` as kind ``"Z"``)
        and ``images`` (one per image column); the ``annotations`` table becomes one
        annotation whose id is the first that ``studyset.json`` declares (``"release"`` if
        none).

    Raises
    ------
    ImportError
        If pyarrow is not installed.
    InputFileError
        If a required table or column is missing, or a table is not parquet.
    """
    if pyarrow is None:
        raise ImportError(
            "reading a NeuroStore release (parquet tables) needs pyarrow: "
            'pip install "nimare_jax[parquet]" (or pip install pyarrow)'
        )
    folder = Path(directory)
    manifest = {}
    if (folder / "studyset.json").is_file():
        with open(folder / "studyset.json", encoding="utf-8") as handle:
            try:
                manifest = json.load(handle)
            except ValueError as exc:
                raise InputFileError(f"{folder / 'studyset.json'}: not JSON ({exc})") from None
    studies = _require(_read_table(folder, "studies"), "studies", ("study_id",), folder)
    analyses = _require(_read_table(folder, "analyses"), "analyses", _KEYS, folder)
    metadata = _fields(_read_table(folder, "metadata"))
    texts = _fields(_read_table(folder, "texts"))
    points = _points(_read_table(folder, "coordinates"), folder)
    images = _image_records(_read_table(folder, "images"))

    document = {"id": manifest.get("id"), "name": manifest.get("name") or "", "studies": []}
    by_study = {}
    for row in studies.to_dict("records"):
        study = {"id": str(row["study_id"]), "metadata": {}, "analyses": []}
        for column, value in row.items():
            value = _plain(value)
            if column == "study_id" or value is None:
                continue
            (study if column in _STUDY_FIELDS else study["metadata"])[column] = value
        by_study[study["id"]] = study
        document["studies"].append(study)
    for full_id, study_id, analysis_id, name in zip(
        analyses["id"].astype(str),
        analyses["study_id"].astype(str),
        analyses["contrast_id"].astype(str),
        analyses["name"] if "name" in analyses else [None] * len(analyses),
        strict=True,
    ):
        if study_id not in by_study:
            raise InputFileError(
                f"{folder / 'analyses.parquet'}: analysis {full_id!r} belongs to study "
                f"{study_id!r}, which studies.parquet does not list"
            )
        by_study[study_id]["analyses"].append(
            {
                "id": analysis_id,
                "name": _plain(name),
                "metadata": metadata.get(full_id, {}),
                "texts": texts.get(full_id, {}),
                "points": points.get(full_id, []),
                "images": images.get(full_id, []),
            }
        )
    table = _read_table(folder, "annotations")
    if table is not None and len(table.columns) > len(_KEYS):
        notes = _fields(table)
        declared = [a.get("id") for a in manifest.get("annotations") or [] if a.get("id")]
        # every column is a note key, even one no analysis fills (NiMARE keeps them too)
        keys = {c: _note_type(table[c]) for c in table.columns if c not in _KEYS}
        document["annotations"] = [
            {
                "id": declared[0] if declared else "release",
                "name": "neurostore release annotation",
                "note_keys": keys,
                "notes": [
                    {"study": study_id, "analysis": analysis_id, "note": notes[full_id]}
                    for full_id, study_id, analysis_id in zip(
                        analyses["id"].astype(str),
                        analyses["study_id"].astype(str),
                        analyses["contrast_id"].astype(str),
                        strict=True,
                    )
                    if full_id in notes
                ],
            }
        ]
    return document


def _note_type(column: pd.Series) -> str:
    """Return the NIMADS ``note_keys`` type of an annotation column."""
    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    return "number" if pd.api.types.is_numeric_dtype(column) else "string"


def _points(table: pd.DataFrame | None, folder: Path) -> dict[str, list]:
    """NIMADS points of each analysis from the coordinates table (column by column)."""
    if table is None:
        return {}
    _require(table, "coordinates", ("id", "x", "y", "z"), folder)
    xyz = table[["x", "y", "z"]].to_numpy(dtype=float)
    if not np.isfinite(xyz).all():
        row = int(np.flatnonzero(~np.isfinite(xyz).all(axis=1))[0])
        raise InputFileError(
            f"{folder / 'coordinates.parquet'}: row {row} (analysis "
            f"{table['id'].iloc[row]!r}) has a missing or non-finite coordinate"
        )
    points = [{"coordinates": c} for c in xyz.tolist()]
    for column in table.columns:
        if column in (*_KEYS, "x", "y", "z"):
            continue
        for row, value in zip(*_present(table[column]), strict=True):
            if column in ("space", "kind"):
                points[row][column] = value
            else:
                kind = POINT_VALUE_KINDS.get(column, column)
                points[row].setdefault("values", []).append({"kind": kind, "value": value})
    out: dict[str, list] = {}
    for key, point in zip(table["id"].astype(str).tolist(), points, strict=True):
        out.setdefault(key, []).append(point)
    return out


def _image_records(table: pd.DataFrame | None) -> dict[str, list]:
    """NIMADS images of each analysis from the images table.

    A release names an image column ``<type>__source``; NiMARE 0.22.1's writer
    (``Studyset.to_parquet``) names it ``<type>`` beside a ``<type>__relative`` flag (and its
    reader then finds no image). Both are read.
    """
    if table is None:
        return {}
    sources = {c: c.removesuffix("__source") for c in table.columns if c.endswith("__source")}
    if not sources:
        sources = {
            c: c
            for c in table.columns
            if c not in (*_KEYS, "space") and not c.endswith("__relative")
        }
    out: dict[str, list] = {}
    for row in table.to_dict("records"):
        for column, value_type in sources.items():
            path = _plain(row[column])
            if path is None:
                continue
            image = {"filename": path, "value_type": value_type}
            if _plain(row.get("space")) is not None:
                image["space"] = row["space"]
            out.setdefault(str(row["id"]), []).append(image)
    return out


def find_release_folder(root) -> str:
    """Return the folder of a release holding ``studyset.json`` (``root`` or one level down).

    Parameters
    ----------
    root : str or os.PathLike
        Folder a release archive was extracted into.

    Returns
    -------
    str

    Raises
    ------
    InputFileError
        If neither ``root`` nor exactly one of its subfolders holds ``studyset.json``.
    """
    root = Path(root)
    if (root / "studyset.json").is_file():
        return str(root)
    found = sorted(p for p in root.iterdir() if (p / "studyset.json").is_file())
    if len(found) != 1:
        raise InputFileError(
            f"{root}: expected one studyset release (a folder with studyset.json), found "
            f"{len(found)}"
        )
    return os.fspath(found[0])
