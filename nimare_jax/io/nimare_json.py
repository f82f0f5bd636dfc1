"""Read and write NiMARE-format JSON: ``{study: {"contrasts": {contrast: {...}}}}``.

Reading is :class:`~nimare_jax.dataset.Dataset`'s job (``Dataset(path_or_dict)``);
:func:`nimare_jax.io.load_json` (from :mod:`nimare_jax.parsing`) only returns the dictionary
a file holds, with errors that name the file.
The writers turn a dataset back into that dictionary. A dataset holds its foci in MNI mm, so
they are written as MNI: a Talairach dataset written and read again gives the same
coordinates (no second transform, no rounding) with ``space`` ``"MNI"``. The other tables
(metadata, images, labels, texts) are written in full, every column for every experiment,
missing values (NaN, None) as ``null``. So ``Dataset(convert_dataset_to_dict(dset))`` has
the same tables as ``dset`` (same columns and values; a missing value may come back as None
where it was NaN, which pandas cannot tell apart once read from JSON), and writing that
dataset again gives the same dictionary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

_KEY_COLUMNS = ("id", "study_id", "contrast_id")
# Dataset table -> key of the contrast entry in a NiMARE dictionary.
_SECTIONS = {"metadata": "metadata", "images": "images", "annotations": "labels", "texts": "text"}


_FOCUS_COLUMNS = ("id", "study_id", "contrast_id", "x", "y", "z", "space", "i", "j", "k")


def convert_dataset_to_dict(dset) -> dict:
    """Return a dataset as a NiMARE-format dictionary.

    Parameters
    ----------
    dset : nimare_jax.dataset.Dataset
        The dataset.

    Returns
    -------
    dict
        ``{study_id: {"contrasts": {contrast_id: {"coords", "metadata", "images", "labels",
        "text"}}}}`` in the dataset's experiment order. ``coords`` (omitted for experiments
        without foci) holds the stored MNI coordinates with ``space`` ``"MNI"`` and any
        other per-focus field (``z_stat``, ...) as one list per field; the other
        entries hold every column of the matching table (omitted when it has none), missing
        values as ``None``. Values are plain Python objects, ready for :mod:`json`.
    """
    foci = {ident: rows for ident, rows in dset.coordinates.groupby("id", sort=False)}
    extra = [c for c in dset.coordinates.columns if c not in _FOCUS_COLUMNS]
    sections = {
        key: getattr(dset, table).set_index("id").drop(columns=["study_id", "contrast_id"])
        for table, key in _SECTIONS.items()
    }
    out = {}
    for ident, study_id, contrast_id in dset.metadata[list(_KEY_COLUMNS)].itertuples(index=False):
        contrast = {}
        if ident in foci:
            rows = foci[ident]
            contrast["coords"] = {"space": "MNI", **{a: rows[a].tolist() for a in "xyz"}}
            for column in extra:  # per-focus fields such as z_stat
                contrast["coords"][column] = [_json_value(v) for v in rows[column]]
        for key, table in sections.items():
            if len(table.columns):
                contrast[key] = {c: _json_value(v) for c, v in table.loc[ident].items()}
        out.setdefault(study_id, {"contrasts": {}})["contrasts"][contrast_id] = contrast
    return out


def convert_dataset_to_json(dset, out_file) -> None:
    """Write a dataset to a NiMARE-format JSON file.

    Parameters
    ----------
    dset : nimare_jax.dataset.Dataset
        The dataset.
    out_file : str or os.PathLike
        Output file; ``Dataset(out_file)`` reads it back (see
        :func:`convert_dataset_to_dict` for what is written).
    """
    _write_json(convert_dataset_to_dict(dset), out_file)


def _write_json(data: dict, out_file) -> None:
    """Write a dictionary as indented JSON, refusing NaN and infinity (not valid JSON).

    Parameters
    ----------
    data : dict
        JSON-ready object (see :func:`convert_dataset_to_dict`).
    out_file : str or os.PathLike
        Output file; its folder is created if needed.
    """
    out_file = Path(os.fspath(out_file))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=4, allow_nan=False)


def _json_value(value):
    """Return ``value`` as plain Python (lists, dicts, numbers, str), missing as ``None``."""
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_value(v) for v in value]
    if pd.isna(value):
        return None
    return value.item() if isinstance(value, np.generic) else value
