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

from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import InputFileError
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
        notes name analyses not in the studyset, or if images are skipped.

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
    notes, note_origin = ({}, None) if annotation is None else _load(annotation, "annotation")
    labels: dict[str, dict] = {}
    for note in notes.get("notes") or []:
        values = note.get("note") or {}
        labels.setdefault(str(note.get("analysis")), {}).update(
            {k: v for k, v in values.items() if v is not None}
        )
    out: dict = {}
    no_space, skipped_images = 0, Counter()
    for study in _records(studyset, "studies", origin):
        study_id = str(study["id"])
        contrasts = out.setdefault(study_id, {"contrasts": {}})["contrasts"]
        for analysis in _records(study, "analyses", f"{origin}: study {study_id!r}"):
            where = f"{origin}: study {study_id!r}, analysis {analysis['id']!r}"
            label = labels.pop(str(analysis["id"]), None)
            contrast = {"metadata": _metadata(study, analysis, label)}
            coords, space_given = _coords(analysis.get("points") or [], where)
            if coords:
                contrast["coords"] = coords
                no_space += not space_given
            if label is not None:
                contrast["labels"] = label
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
    if labels:
        problems.append(
            f"{note_origin} has notes for {len(labels)} analyses not in the studyset "
            f"(e.g. {next(iter(labels))!r}); they are ignored"
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
    return Dataset(convert_nimads_to_dict(studyset, annotation), target=target)


def _load(source, what: str) -> tuple[dict, str]:
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


def _metadata(study: dict, analysis: dict, label: dict | None) -> dict:
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
    candidates = [label or {}, analysis_meta, study_meta]
    orders = [_SAMPLE_SIZE_KEYS, _SAMPLE_SIZE_KEYS[::-1], _SAMPLE_SIZE_KEYS[::-1]]
    for source, keys in zip(candidates, orders, strict=True):
        for key in keys:
            sizes = _sample_sizes(source.get(key))
            if sizes:
                meta["sample_sizes"] = sizes
                return meta
    return meta


def _sample_sizes(value) -> list | None:
    """Return positive numbers (one or a list) as a list, or None if any is invalid."""
    values = list(value) if isinstance(value, list | tuple) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    if not numbers or not all(0 < n < float("inf") for n in numbers):
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
