"""Convert NIMADS studysets and annotations (the Neurostore format) to datasets.

A studyset holds studies, each with analyses (NiMARE's contrasts) that carry foci
(``points``) and images; an annotation holds one ``note`` (a dict of labels) per analysis.
Experiments are identified as NiMARE does: study id and analysis id, so the dataset ids
are ``"{study_id}-{analysis_id}"``.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter

import numpy as np
import pandas as pd

from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import InputFileError, excerpt
from nimare_jax.io.nimare_json import _json_value, _write_json
from nimare_jax.io.sleuth import convert_sleuth_to_dataset
from nimare_jax.parsing import load_json

# NeuroVault/Neurostore image value types -> Dataset image columns.
_IMAGE_TYPES = {
    "t map": "t",
    "z map": "z",
    "p map (given null hypothesis)": "p",
    "univariate-beta map": "beta",
    "multivariate-beta map": "beta",
    "variance": "varcope",
}
_IMAGE_COLUMNS = {"beta", "varcope", "se", "sd", "samplevar_dataset", "t", "z", "p"}
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr", ".mgz", ".mgh", ".gii", ".gii.gz")
_SAMPLE_SIZE_KEYS = ("sample_size", "sample_sizes")


def convert_nimads_to_dict(studyset, annotation=None) -> dict:
    """Convert a NIMADS studyset (and optionally an annotation) to a NiMARE-format dict.

    Parameters
    ----------
    studyset : str, os.PathLike or dict
        NIMADS studyset JSON file or its dictionary.
    annotation : str, os.PathLike, dict or None
        NIMADS annotation JSON file or its dictionary; its notes become labels.

    Returns
    -------
    dict
        ``{study_id: {"contrasts": {analysis_id: {...}}}}``. Each contrast holds ``coords``
        (if it has foci), ``metadata`` (``authors``, ``journal``, ``study_name``,
        ``analysis_name``, ``name``, the study's then the analysis' own metadata, and
        ``sample_sizes``), ``labels`` (its note, ``null`` values dropped) and ``images``
        (supported statistic maps, e.g. ``t``, ``z``, ``varcope``, plus their ``space``).

    Raises
    ------
    InputFileError
        If the studyset is malformed (missing ids, a point without three coordinates,
        foci of one analysis in different spaces), naming the study and analysis.

    Warns
    -----
    UserWarning
        Once per conversion if foci give no space (they are used unchanged, as MNI), if
        notes name analyses not in the studyset, if sample sizes are unusable (not positive
        numbers, or a ``sample_sizes`` that is not a list; the next candidate is used), or if
        images are skipped.

    Notes
    -----
    The sample size is the first valid of: the note's ``sample_size`` then
    ``sample_sizes``, the analysis metadata's ``sample_sizes`` then ``sample_size``, the
    study metadata's ``sample_sizes`` then ``sample_size`` (NiMARE's order). A point's space
    containing "mni" or "ale" reads as ``"MNI"``, containing "tal" as ``"TAL"``.
    """
    studyset, origin = _load(studyset, "studyset")
    if "studies" not in studyset:
        raise InputFileError(f"{origin}: not a NIMADS studyset (it has no 'studies')")
    keys = [
        (str(study["id"]), str(analysis["id"]))
        for study in _records(studyset, "studies", origin)
        for analysis in _records(study, "analyses", f"{origin}: study {study['id']!r}")
    ]
    payloads = [
        (p, f"{origin}: annotations[{n}]") for n, p in enumerate(studyset.get("annotations") or [])
    ]
    if annotation is not None:
        payloads.append(_load(annotation, "annotation"))
    resolved, unmatched = [], []
    for payload, where in payloads:
        if not isinstance(payload, dict):
            raise InputFileError(f"{where}: an annotation must be an object")
        notes, missed = match_notes(keys, payload.get("notes"), where)
        labels_of = dict.fromkeys(payload.get("note_keys") or {})
        for note in notes.values():
            labels_of.update(dict.fromkeys(note))
        resolved.append((str(payload.get("id")), list(labels_of), notes))
        unmatched += [(where, m) for m in missed]
    labels = label_columns(resolved)
    out: dict = {}
    no_space, skipped_images, bad_sizes = 0, Counter(), []
    for study in _records(studyset, "studies", origin):
        study_id = str(study["id"])
        contrasts = out.setdefault(study_id, {"contrasts": {}})["contrasts"]
        for analysis in _records(study, "analyses", f"{origin}: study {study_id!r}"):
            where = f"{origin}: study {study_id!r}, analysis {analysis['id']!r}"
            label = labels.get(f"{study_id}-{analysis['id']}")
            inline = _inline(analysis, "annotations", where)
            if inline:
                label = {**inline, **(label or {})}
            unusable: list[str] = []
            contrast = {"metadata": _metadata(study, analysis, label, unusable)}
            if unusable:
                bad_sizes.append(f"{study_id}-{analysis['id']} ({', '.join(unusable)})")
            coords, space_given = _coords(analysis.get("points") or [], where)
            if coords:
                contrast["coords"] = coords
                no_space += not space_given
            if label is not None:
                contrast["labels"] = label
            texts = _inline(analysis, "texts", where)
            if texts:
                contrast["text"] = texts
            images = _images(analysis.get("images") or [], skipped_images)
            if images:
                contrast["images"] = images
            contrasts[str(analysis["id"])] = contrast
    problems = []
    if no_space:
        problems.append(
            f"{no_space} analyses give no space for their foci; they are used unchanged, "
            "as MNI (NiMARE does not transform them either)"
        )
    if unmatched:
        sources = ", ".join(dict.fromkeys(w for w, _ in unmatched))
        problems.append(
            f"{sources} has notes for {len(unmatched)} analyses not in the studyset, or "
            f"naming an analysis id several studies use (e.g. {unmatched[0][1]!r}); "
            "they are ignored"
        )
    if bad_sizes:
        problems.append(
            f"{len(bad_sizes)} analyses have sample sizes that are not positive numbers "
            "('sample_sizes' must be a list, 'sample_size' one number); they are ignored: "
            + ", ".join(bad_sizes[:5])
            + (" ..." if len(bad_sizes) > 5 else "")
        )
    if skipped_images:
        problems.append(
            "images skipped: " + ", ".join(f"{why} ({n})" for why, n in skipped_images.items())
        )
    if problems:
        warnings.warn(f"{origin}: " + "; ".join(problems), UserWarning, stacklevel=2)
    return out


def convert_nimads_to_dataset(studyset, annotation=None, target: str = "mni152_2mm") -> Dataset:
    """Convert a NIMADS studyset (and optionally an annotation) to a Dataset.

    Parameters
    ----------
    studyset : str, os.PathLike or dict
        NIMADS studyset JSON file or its dictionary.
    annotation : str, os.PathLike, dict or None
        NIMADS annotation JSON file or its dictionary; its notes become annotations.
    target : {"mni152_2mm", "ale_2mm"}
        Template space of the dataset (NiMARE always uses ``"mni152_2mm"``).

    Returns
    -------
    Dataset
        One experiment per analysis; see :func:`convert_nimads_to_dict`.
    """
    if _is_studyset(studyset):
        studyset = studyset if annotation is None else studyset.with_annotation_payload(annotation)
        return studyset.to_dataset()
    return Dataset(convert_nimads_to_dict(studyset, annotation), target=target)


#: Metadata columns a NIMADS conversion derives from study and analysis fields; they go back
#: to those fields rather than into an analysis' metadata.
_DERIVED_METADATA = ("authors", "journal", "study_name", "analysis_name", "name")
_ID_COLUMNS = ("id", "study_id", "contrast_id")
_COORD_FIELDS = ("x", "y", "z", "space", "i", "j", "k")
#: Coordinate columns <-> NIMADS point value kinds (others keep their column name).
POINT_VALUE_KINDS = {"z_stat": "Z", "t_stat": "T", "p": "P"}


def convert_dataset_to_nimads_dict(
    dataset, *, studyset_id="nimads_from_dataset", studyset_name="", out_file=None
) -> dict:
    """Convert a Dataset to a NIMADS studyset dictionary (NiMARE 0.22's layout).

    Parameters
    ----------
    dataset : Dataset
        The dataset; each study id becomes a study, each contrast an analysis.
    studyset_id : str or None
        ``id`` of the studyset.
    studyset_name : str
        ``name`` of the studyset.
    out_file : str, os.PathLike or None
        If given, the dictionary is also written there as JSON.

    Returns
    -------
    dict
        ``{"id", "name", "studies": [...]}``. A study carries ``name`` (its ``study_name``
        metadata, else its id), ``authors`` and ``publication`` (the ``journal`` metadata);
        an analysis carries ``name``, one default condition with weight 1, its foci as
        ``points`` (MNI, with any extra coordinate columns as point ``values``), its images
        (one per image column), its remaining ``metadata`` and, as NiMARE writes them, its
        ``annotations`` and ``texts`` (non-missing values only).
    """
    tables = {
        name: _rows_by_id(getattr(dataset, name))
        for name in ("metadata", "images", "annotations", "texts")
    }
    coords = dataset.coordinates
    extra = [c for c in coords.columns if c not in _ID_COLUMNS + _COORD_FIELDS]
    points = {k: g for k, g in coords.groupby("id", sort=False)}
    studies: dict[str, dict] = {}
    for ident in map(str, dataset.ids):
        meta = tables["metadata"].get(ident, {})
        study_id = str(meta.get("study_id", ident))
        contrast_id = str(meta.get("contrast_id", ident))
        study = studies.setdefault(
            study_id,
            {
                "id": study_id,
                "name": str(meta.get("study_name") or study_id),
                "authors": str(meta.get("authors") or ""),
                "publication": str(meta.get("journal") or ""),
                "metadata": {},
                "analyses": [],
            },
        )
        analysis = {
            "id": contrast_id,
            "name": str(meta.get("analysis_name") or contrast_id),
            "conditions": [{"name": "default", "description": ""}],
            "weights": [1.0],
            "images": _image_records(tables["images"].get(ident, {})),
            "points": _point_records(points.get(ident), extra),
            "metadata": {
                k: v for k, v in meta.items() if k not in _ID_COLUMNS + _DERIVED_METADATA
            },
        }
        for key, table in (("annotations", "annotations"), ("texts", "texts")):
            values = tables[table].get(ident, {})
            if values:
                analysis[key] = {k: v for k, v in values.items() if k not in _ID_COLUMNS}
        study["analyses"].append(analysis)
    out = {"id": studyset_id, "name": studyset_name, "studies": list(studies.values())}
    if out_file is not None:
        _write_json(out, out_file)
    return out


def convert_sleuth_to_nimads_dict(
    text_file, *, target=None, studyset_id=None, studyset_name=""
) -> dict:
    """Convert Sleuth text file(s) to a NIMADS studyset dictionary.

    Parameters
    ----------
    text_file : str, os.PathLike or a list or tuple of them
        Sleuth file(s).
    target : str or None
        Template of the intermediate dataset: a name containing "ale" gives ``"ale_2mm"``,
        one containing "mni" or "tal" gives ``"mni152_2mm"``; ``None`` keeps the Sleuth
        reader's default. Foci are written in MNI either way (Talairach foci converted).
    studyset_id : str or None
        ``id`` of the studyset.
    studyset_name : str
        ``name`` of the studyset.

    Returns
    -------
    dict
        See :func:`convert_dataset_to_nimads_dict`.
    """
    if isinstance(text_file, str | os.PathLike):
        files = os.fspath(text_file)
    else:
        files = [os.fspath(f) for f in text_file]
    name = str(target).lower()
    if target is None:
        dataset = convert_sleuth_to_dataset(files)
    elif "ale" in name:
        dataset = convert_sleuth_to_dataset(files, target="ale_2mm")
    elif "mni" in name or "tal" in name:
        dataset = convert_sleuth_to_dataset(files, target="mni152_2mm")
    else:
        raise ValueError(f"target must name an MNI, ALE or Talairach space, got {target!r}")
    return convert_dataset_to_nimads_dict(
        dataset, studyset_id=studyset_id, studyset_name=studyset_name
    )


def _is_studyset(source) -> bool:
    """Whether ``source`` is a Studyset (duck-typed: this module sits below it)."""
    return hasattr(source, "to_dataset") and hasattr(source, "with_annotation_payload")


def _rows_by_id(table: pd.DataFrame) -> dict[str, dict]:
    """Map each ``id`` to its row's non-missing values (plain Python values)."""
    out = {}
    for record in table.to_dict("records"):
        out[str(record["id"])] = {k: _json_value(v) for k, v in record.items() if not _missing(v)}
    return out


def _missing(value) -> bool:
    if isinstance(value, list | tuple | dict | np.ndarray):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _image_records(images: dict) -> list[dict]:
    space = images.get("space")
    return [
        {"value_type": column, "filename": str(path), "space": space}
        for column, path in images.items()
        if column not in _ID_COLUMNS + ("space",) and not column.endswith("__relative")
    ]


def _point_records(rows: pd.DataFrame | None, extra: list[str]) -> list[dict]:
    if rows is None:
        return []
    out = []
    for record in rows.to_dict("records"):
        point = {
            "space": "MNI",
            "coordinates": [float(record["x"]), float(record["y"]), float(record["z"])],
        }
        values = [
            {"kind": POINT_VALUE_KINDS.get(c, c), "value": _json_value(record[c])}
            for c in extra
            if not _missing(record[c])
        ]
        if values:
            point["values"] = values
        out.append(point)
    return out


def match_notes(keys: list, notes, where: str) -> tuple[dict, list]:
    """Attach NIMADS annotation notes to analyses.

    A note names its analysis by ``study`` and ``analysis``, by the full id
    ``"{study}-{analysis}"``, or by an analysis id that only one study uses (an id several
    studies share would be a guess, so it is not attached).

    Parameters
    ----------
    keys : list of (str, str)
        ``(study id, analysis id)`` of every analysis.
    notes : list of dict or None
        The annotation's ``notes``.
    where : str
        Names the annotation in errors.

    Returns
    -------
    notes : dict
        ``{full id: {label: value}}`` (``null`` values dropped).
    unmatched : list of str
        The analyses named by notes that were not attached.
    """
    if notes is not None and not isinstance(notes, list):
        raise InputFileError(f"{where}: field 'notes' must be a list")
    full = {f"{s}-{a}" for s, a in keys}
    by_short: dict[str, list] = {}
    for s, a in keys:
        by_short.setdefault(a, []).append(f"{s}-{a}")
    out: dict[str, dict] = {}
    unmatched = []
    for n, note in enumerate(notes or []):
        if not isinstance(note, dict) or not isinstance(note.get("note") or {}, dict):
            raise InputFileError(
                f"{where}: notes[{n}] must be an object whose 'note' is an object"
            )
        analysis, study = str(note.get("analysis")), note.get("study")
        if study is not None:
            key = f"{study}-{analysis}"
        elif analysis in full:
            key = analysis
        else:
            candidates = by_short.get(analysis, [])
            key = candidates[0] if len(candidates) == 1 else None
        if key not in full:
            unmatched.append(analysis if study is None else f"{study}-{analysis}")
            continue
        values = {k: v for k, v in (note.get("note") or {}).items() if v is not None}
        if values:
            out.setdefault(key, {}).update(values)
    return out, unmatched


def label_columns(annotations: list) -> dict:
    """Return ``{full id: {column: value}}`` over several annotations.

    Parameters
    ----------
    annotations : list of (str, list of str, dict)
        Each annotation's id, labels and ``{full id: note}``, in order.

    Returns
    -------
    dict
        A label two annotations share keeps its bare name for the first and becomes
        ``"{annotation id}.{label}"`` for the others, so no value is overwritten.
    """
    out: dict[str, dict] = {}
    seen: set = set()
    for ident, labels, notes in annotations:
        names = {label: label if label not in seen else f"{ident}.{label}" for label in labels}
        seen.update(names.values())
        for key, note in notes.items():
            for label, value in note.items():
                out.setdefault(key, {})[names.get(label, label)] = value
    return out


def _inline(analysis: dict, key: str, where: str) -> dict:
    """Return an analysis' own ``annotations`` or ``texts`` object (NiMARE's), without nulls."""
    part = analysis.get(key)
    if part is None:
        return {}
    if not isinstance(part, dict):
        raise InputFileError(
            f"{where}: field {key!r} must be an object, got {type(part).__name__}"
        )
    return {k: v for k, v in part.items() if v is not None}


def _load(source, what: str) -> tuple[dict, str]:
    if _is_studyset(source):
        return source.to_dict(), f"Studyset {source.id!r}"
    if isinstance(source, str | os.PathLike):
        return load_json(source), str(source)
    if isinstance(source, dict):
        return source, f"NIMADS {what} dict"
    raise TypeError(f"{what} must be a path or a dict, got {type(source).__name__}")


def _records(parent: dict, key: str, where: str) -> list[dict]:
    """Return ``parent[key]``, checked to be a list of objects that have an id."""
    records = parent.get(key) or []
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and r.get("id") is not None for r in records
    ):
        raise InputFileError(f"{where}: {key!r} must be a list of objects, each with an 'id'")
    return records


def _metadata(study: dict, analysis: dict, label: dict | None, unusable: list) -> dict:
    study_name = study.get("name") or study["id"]
    analysis_name = analysis.get("name") or analysis["id"]
    study_meta, analysis_meta = study.get("metadata") or {}, analysis.get("metadata") or {}
    meta = {
        "authors": study.get("authors"),
        "journal": study.get("publication"),
        "study_name": study_name,
        "analysis_name": analysis_name,
        "name": f"{study_name}-{analysis_name}",
    }
    for key, value in {**study_meta, **analysis_meta}.items():
        if key not in _SAMPLE_SIZE_KEYS:
            meta[key] = value
    candidates = [("note", label or {}), ("analysis", analysis_meta), ("study", study_meta)]
    orders = [_SAMPLE_SIZE_KEYS, _SAMPLE_SIZE_KEYS[::-1], _SAMPLE_SIZE_KEYS[::-1]]
    for (level, source), keys in zip(candidates, orders, strict=True):
        for key in keys:
            if source.get(key) is None:
                continue
            sizes = _sample_sizes(source[key], many=key == "sample_sizes")
            if sizes:
                meta["sample_sizes"] = sizes
                return meta
            unusable.append(f"{level} {key} {excerpt(source[key])}")
    return meta


def _sample_sizes(value, many: bool) -> list | None:
    """Return positive numbers as a list, or None if any is invalid.

    ``sample_sizes`` (``many``) must be a list, as NiMARE requires; ``sample_size`` is one
    number. Numbers may be given as strings ("12").
    """
    if many != isinstance(value, list | tuple):
        return None
    values = list(value) if many else [value]
    try:
        numbers = [float(v) for v in values if not isinstance(v, bool)]
    except (TypeError, ValueError):
        return None
    if len(numbers) != len(values) or not numbers:
        return None
    if not all(0 < n < float("inf") for n in numbers):
        return None
    return [int(n) if n.is_integer() else n for n in numbers]


def _coords(points: list, where: str) -> tuple[dict, bool]:
    """Return the foci as a coords dict (empty if none) and whether a space was given."""
    xyz = []
    for k, point in enumerate(points):
        c = point.get("coordinates") if isinstance(point, dict) else None
        if not isinstance(c, list | tuple) or len(c) != 3:
            raise InputFileError(f"{where}, point {k}: 'coordinates' must hold x, y and z")
        xyz.append(c)
    spaces = {_space_name(p["space"]) for p in points if p.get("space")}
    if len(spaces) > 1:
        raise InputFileError(f"{where}: foci are given in several spaces {sorted(spaces)}")
    if not xyz:
        return {}, False
    coords = {"space": next(iter(spaces), "MNI")}
    coords.update(zip("xyz", map(list, zip(*xyz, strict=True)), strict=True))
    return coords, bool(spaces)


def _space_name(space: str) -> str:
    low = str(space).lower()
    if "mni" in low or "ale" in low:
        return "MNI"
    return "TAL" if "tal" in low else space


def _images(images: list, skipped: Counter) -> dict:
    """Map the analysis' images to Dataset image columns, keeping the first of each type."""
    out = {}
    for image in images:
        column = _image_column(image.get("value_type"))
        candidates = [p for p in (image.get("url"), image.get("filename")) if p]
        path = next((p for p in candidates if _looks_like_image(p)), None) or next(
            iter(candidates), None
        )
        if column is None or path is None:
            skipped[f"type {image.get('value_type')!r}" if path else "no path"] += 1
        elif column in out:
            skipped[f"second {column!r} of an analysis"] += 1
        else:
            out[column] = path
    if out and images[0].get("space"):
        out["space"] = images[0]["space"]
    return out


def _image_column(value_type) -> str | None:
    if not isinstance(value_type, str):
        return None
    name = value_type.strip().lower()
    name = _IMAGE_TYPES.get(name, name.removesuffix(" map"))
    return name if name in _IMAGE_COLUMNS else None


def _looks_like_image(path: str) -> bool:
    return path.split("?")[0].split("#")[0].rstrip("/").lower().endswith(_IMAGE_SUFFIXES)
