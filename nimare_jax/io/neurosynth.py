"""Convert Neurosynth / NeuroQuery database files (the version-7 layout) to datasets.

The database comes as a coordinates table (``id, x, y, z, ...``; one row per focus), a
metadata table (``id, space, title, authors, year, journal, ...``; one row per study) and
optional feature sets: a sparse ``(n_studies, n_terms)`` matrix (``.npz``, rows in the
metadata table's order) with its vocabulary (one term per line). Each study becomes one
experiment with contrast id ``"1"``. A feature set's labels are named ``{group}__{term}``
where the group defaults to ``{vocab}_{source}_{type}`` taken from the features file name,
e.g. ``terms_abstract_tfidf__memory``.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import InputFileError
from nimare_jax.io.nimare_json import _json_value, _write_json
from nimare_jax.parsing import read_lines

_FIELDS = ("authors", "journal", "year", "title")


def convert_neurosynth_to_dict(
    coordinates_file, metadata_file, annotations_files=None, feature_groups=None
) -> dict:
    """Read Neurosynth/NeuroQuery files into a NiMARE-format dictionary.

    Parameters
    ----------
    coordinates_file : str or os.PathLike
        Tab-separated (optionally gzipped) table with columns ``id``, ``x``, ``y``, ``z``.
    metadata_file : str or os.PathLike
        Tab-separated table with one row per study: ``id`` and optionally ``space``,
        ``authors``, ``journal``, ``year``, ``title``.
    annotations_files : dict, list of dict or None
        Feature sets, each ``{"features": npz_file, "vocabulary": txt_file}``. The features
        file name must contain ``vocab-*_``, ``source-*_`` and ``type-*_`` unless
        ``feature_groups`` names the sets.
    feature_groups : str, list of str or None
        Label prefixes, one per feature set (a trailing ``_`` is dropped, ``__`` added).

    Returns
    -------
    dict
        ``{study_id: {"metadata": {...}, "contrasts": {"1": {"metadata": {...},
        "coords": {"space", "x", "y", "z"}, "labels": {...}}}}}`` in the metadata table's
        order. Metadata holds ``authors``, ``journal``, ``year`` and ``title`` (``"n/a"``
        if the column is absent, ``None`` where a value is missing); ``space`` is the
        metadata table's (``"UNKNOWN"`` if the column is absent, with a warning); labels
        hold every term of every feature set.

    Raises
    ------
    InputFileError
        If a table lacks a required column, has repeated or unknown study ids or
        non-numeric coordinates, or a feature matrix does not match the metadata rows or
        its vocabulary.
    """
    coords = _read_table(coordinates_file, ("id", "x", "y", "z"))
    meta = _read_table(metadata_file, ("id",))
    if meta["id"].duplicated().any():
        repeated = meta["id"][meta["id"].duplicated()].iloc[0]
        raise InputFileError(f"{metadata_file}: study id {repeated!r} appears more than once")
    unknown = ~coords["id"].isin(meta["id"])
    if unknown.any():
        raise InputFileError(
            f"{coordinates_file}: {int(unknown.sum())} foci belong to studies not in "
            f"{metadata_file} (first at line {int(np.argmax(unknown)) + 2}, id "
            f"{coords['id'][unknown].iloc[0]!r})"
        )
    xyz = coords[["x", "y", "z"]].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(xyz.to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        line = int(np.argmax(bad)) + 2
        raise InputFileError(f"{coordinates_file}, line {line}: x, y, z must be finite numbers")
    if "space" not in meta.columns:
        warnings.warn(
            f"{metadata_file} has no 'space' column; foci are labelled 'UNKNOWN' and used "
            "unchanged, as MNI",
            UserWarning,
            stacklevel=2,
        )
        meta["space"] = "UNKNOWN"
    labels = _read_features(annotations_files, feature_groups, len(meta))
    foci = {ident: rows for ident, rows in xyz.groupby(coords["id"], sort=False)}
    out = {}
    for row, ident in enumerate(meta["id"]):
        fields = {f: _json_value(meta[f].iloc[row]) if f in meta else "n/a" for f in _FIELDS}
        study = foci.get(ident, xyz.iloc[:0])
        contrast = {
            "metadata": dict(fields),
            "coords": {
                "space": _json_value(meta["space"].iloc[row]),
                **{a: study[a].tolist() for a in "xyz"},
            },
        }
        if labels is not None:
            contrast["labels"] = dict(zip(labels[0], labels[1][row].tolist(), strict=True))
        out[ident] = {"metadata": fields, "contrasts": {"1": contrast}}
    return out


def convert_neurosynth_to_json(
    coordinates_file, metadata_file, out_file, annotations_files=None, feature_groups=None
) -> None:
    """Convert Neurosynth/NeuroQuery files to a NiMARE-format JSON file.

    Parameters
    ----------
    coordinates_file, metadata_file : str or os.PathLike
        Database tables; see :func:`convert_neurosynth_to_dict`.
    out_file : str or os.PathLike
        Output JSON file.
    annotations_files : dict, list of dict or None
        Feature sets; see :func:`convert_neurosynth_to_dict`.
    feature_groups : str, list of str or None
        Label prefixes; see :func:`convert_neurosynth_to_dict`.
    """
    data = convert_neurosynth_to_dict(
        coordinates_file, metadata_file, annotations_files, feature_groups
    )
    _write_json(data, out_file)


def convert_neurosynth_to_dataset(
    coordinates_file,
    metadata_file,
    annotations_files=None,
    feature_groups=None,
    target: str = "mni152_2mm",
) -> Dataset:
    """Convert Neurosynth/NeuroQuery files to a Dataset.

    Parameters
    ----------
    coordinates_file, metadata_file : str or os.PathLike
        Database tables; see :func:`convert_neurosynth_to_dict`.
    annotations_files : dict, list of dict or None
        Feature sets; they become the dataset's annotations.
    feature_groups : str, list of str or None
        Label prefixes; see :func:`convert_neurosynth_to_dict`.
    target : {"mni152_2mm", "ale_2mm"}
        Template space of the dataset.

    Returns
    -------
    Dataset
        One experiment (``"{id}-1"``) per study, Talairach foci converted to MNI.
    """
    data = convert_neurosynth_to_dict(
        coordinates_file, metadata_file, annotations_files, feature_groups
    )
    return Dataset(data, target=target)


def _read_table(path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t", dtype={"id": str})
    except FileNotFoundError as exc:
        raise InputFileError(f"{path}: file not found") from exc
    except (ValueError, OSError, EOFError) as exc:  # parser errors are ValueErrors; EOF: cut .gz
        raise InputFileError(f"{path}: not a readable tab-separated table ({exc})") from exc
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputFileError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    return table


def _read_features(annotations_files, feature_groups, n_studies: int):
    """Return (label names, dense (n_studies, n_labels) values) of all sets, or None."""
    if annotations_files is None:
        return None
    sets = [annotations_files] if isinstance(annotations_files, dict) else annotations_files
    groups = [feature_groups] if isinstance(feature_groups, str) else feature_groups
    if groups is not None and len(groups) != len(sets):
        raise ValueError(
            "feature_groups and annotations_files must have the same length: got "
            f"{len(groups)} feature_groups for {len(sets)} annotations_files"
        )
    names, values = [], []
    for k, files in enumerate(sets):
        if not isinstance(files, dict) or {"features", "vocabulary"} - set(files):
            raise ValueError(
                f"annotations_files[{k}] must be a dict with 'features' and 'vocabulary'"
            )
        features_file, vocabulary_file = files["features"], files["vocabulary"]
        prefix = _group_name(features_file) if groups is None else groups[k].rstrip("_")
        try:
            matrix = sparse.load_npz(features_file).toarray()
        except (OSError, ValueError) as exc:
            raise InputFileError(f"cannot read feature set {k}: {exc}") from exc
        terms = [t for t in read_lines(vocabulary_file) if t.strip()]
        if matrix.shape != (n_studies, len(terms)):
            raise InputFileError(
                f"{features_file}: matrix of shape {matrix.shape} does not match "
                f"{n_studies} studies x {len(terms)} terms in {vocabulary_file}"
            )
        names += [f"{prefix}__{t}" for t in terms]
        values.append(matrix)
    return names, np.hstack(values)


def _group_name(features_file) -> str:
    name = Path(os.fspath(features_file)).name
    entities = [re.search(rf"{e}-([A-Za-z0-9]+)_", name) for e in ("vocab", "source", "type")]
    missing = [e for e, m in zip(("vocab", "source", "type"), entities, strict=True) if not m]
    if missing:
        raise InputFileError(
            f"{features_file}: Could not parse feature filename entity {missing[0]!r} to name "
            "the feature set; the file name needs vocab-*_, source-*_ and type-*_ parts (or "
            "pass feature_groups)"
        )
    return "_".join(m.group(1) for m in entities)
