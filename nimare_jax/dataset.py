"""The :class:`Dataset`: a thin, frozen container of pandas tables and a mask.

A ``Dataset`` is built from a NiMARE-format dictionary (or a path to its JSON file), exactly
as :class:`nimare.dataset.Dataset` is, so scripts keep working. Coordinates are stored in MNI
mm (Talairach foci are converted with Lancaster et al.'s 2007 transform) together with their
voxel indices in the mask, computed once. Methods never modify a dataset; they return ids or
a new dataset.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from nimare_jax.exceptions import DatasetError, InputFileError
from nimare_jax.spatial import (
    MAX_COORDINATE_MM,
    load_mask,
    mm2vox,
    outside_volume,
    tal2mni,
    volume_extent,
)

_MNI_NAMES = {"mni", "mni152", "icbm", "mni152_2mm", "ale_2mm"}
_TAL_NAMES = {"tal", "talairach"}
_COORD_COLUMNS = ["id", "study_id", "contrast_id", "x", "y", "z", "space", "i", "j", "k"]


def _to_mni(xyz: np.ndarray, space: str, unknown: list, where: str) -> np.ndarray:
    """Return coordinates in MNI mm; record ``where`` in ``unknown`` if the space is unknown."""
    key = str(space).strip().lower()
    if key in _MNI_NAMES:
        return xyz
    if key in _TAL_NAMES:
        return tal2mni(xyz)
    unknown.append(f"{where} ({space!r})")
    return xyz


def _tables_from_dict(source: dict, origin: str):
    """Flatten a NiMARE-format dict into the coordinates/metadata/images/annotations/texts rows."""
    coords, meta, images, labels, texts, unknown = [], [], [], [], [], []
    if not isinstance(source, dict):
        raise InputFileError(f"{origin}: expected a JSON object of studies, got {type(source)}")
    for study_id, study in source.items():
        if not isinstance(study, dict) or not isinstance(study.get("contrasts"), dict):
            raise InputFileError(f"{origin}: study {study_id!r} has no 'contrasts' object")
        for contrast_id, con in study["contrasts"].items():
            ident = f"{study_id}-{contrast_id}"
            base = {"id": ident, "study_id": str(study_id), "contrast_id": str(contrast_id)}
            where = f"{origin}: study {study_id!r}, contrast {contrast_id!r}"
            c = con.get("coords")
            if c:
                try:
                    x, y, z = (np.asarray(c[a], dtype=float).reshape(-1) for a in "xyz")
                except KeyError as exc:
                    raise InputFileError(f"{where}: field 'coords' lacks {exc.args[0]!r}") from exc
                except (TypeError, ValueError) as exc:
                    raise InputFileError(
                        f"{where}: field 'coords' is not numeric ({exc})"
                    ) from exc
                if not (len(x) == len(y) == len(z)):
                    raise InputFileError(
                        f"{where}: field 'coords' has x/y/z of lengths {len(x)}/{len(y)}/{len(z)}"
                    )
                if not np.all(np.isfinite(np.c_[x, y, z])):
                    raise InputFileError(f"{where}: field 'coords' contains NaN or inf")
                space = c.get("space", "UNKNOWN")
                xyz = _to_mni(np.c_[x, y, z], space, unknown, f"{study_id}-{contrast_id}")
                for row in xyz:
                    coords.append({**base, "x": row[0], "y": row[1], "z": row[2], "space": space})
            md = dict(con.get("metadata") or {})
            meta.append({**base, **md})
            images.append({**base, **dict(con.get("images") or {})})
            labels.append({**base, **dict(con.get("labels") or {})})
            texts.append({**base, **dict(con.get("text") or {})})
    if unknown:
        warnings.warn(
            f"{origin}: {len(unknown)} experiment(s) have coordinates in an unknown space; "
            "they are used unchanged as MNI coordinates (as NiMARE does): "
            + ", ".join(unknown[:10])
            + (" ..." if len(unknown) > 10 else ""),
            UserWarning,
            stacklevel=4,
        )
    return coords, meta, images, labels, texts


@dataclass(frozen=True, init=False, eq=False)
class Dataset:
    """Studies of a meta-analysis: coordinates, metadata, images, annotations and texts.

    Parameters
    ----------
    source : str, pathlib.Path or dict
        A NiMARE-format JSON file or the dictionary it holds:
        ``{study_id: {"contrasts": {contrast_id: {"coords": ..., "metadata": ...}}}}``.
    target : {"mni152_2mm", "ale_2mm"}
        Template space; sets the default mask.
    mask : str, pathlib.Path, nibabel.Nifti1Image or None
        Mask image. ``None`` uses the brain mask of ``target``.

    Attributes
    ----------
    ids : numpy.ndarray of str
        Experiment identifiers ``"{study_id}-{contrast_id}"``.
    coordinates : pandas.DataFrame
        One row per focus: id, study_id, contrast_id, x, y, z (MNI mm), space (as given),
        and i, j, k (voxel indices in ``masker``'s grid, rounded to the nearest voxel as
        NiMARE 0.22 does; foci outside the volume are kept, with a warning).
    metadata, images, annotations, texts : pandas.DataFrame
        One row per experiment, keyed by ``id``.
    masker : nibabel.Nifti1Image
        The binary mask image.
    space : str
        The target space.
    basepath : str or None
        Folder relative image paths are resolved against.
    """

    ids: np.ndarray
    coordinates: pd.DataFrame
    metadata: pd.DataFrame
    images: pd.DataFrame
    annotations: pd.DataFrame
    texts: pd.DataFrame
    masker: nib.Nifti1Image
    space: str
    basepath: str | None

    def __init__(self, source, target: str = "mni152_2mm", mask=None):
        origin = "dataset dict"
        basepath = None
        if isinstance(source, str | Path):
            origin = str(source)
            basepath = str(Path(source).resolve().parent)
            try:
                with open(source) as f:
                    source = json.load(f)
            except FileNotFoundError as exc:
                raise InputFileError(f"{origin}: file not found") from exc
            except json.JSONDecodeError as exc:
                raise InputFileError(f"{origin}: not valid JSON ({exc})") from exc
        coords, meta, images, labels, texts = _tables_from_dict(source, origin)
        if not meta:
            raise DatasetError(f"{origin}: the dataset has no experiments")
        masker = load_mask(target if mask is None else mask)
        coordinates = pd.DataFrame(coords, columns=_COORD_COLUMNS[:7])
        _set(self, ids=np.array([m["id"] for m in meta]), space=target, basepath=basepath)
        _set(self, masker=masker, metadata=pd.DataFrame(meta), images=pd.DataFrame(images))
        _set(self, annotations=pd.DataFrame(labels), texts=pd.DataFrame(texts))
        _set(self, coordinates=_add_voxel_indices(coordinates, masker, origin))

    def __repr__(self) -> str:
        return (
            f"Dataset({len(self.ids)} experiments, {len(self.coordinates)} foci, "
            f"space={self.space!r})"
        )

    def __len__(self) -> int:
        return len(self.ids)

    # ------------------------------------------------------------------ selection
    def slice(self, ids) -> Dataset:
        """Return a new dataset with only the given experiments, in the order given.

        Parameters
        ----------
        ids : list of str
            Experiment ids (``"study-contrast"``).

        Returns
        -------
        Dataset
            The subset.
        """
        ids = np.asarray(list(ids), dtype=str)
        unknown = sorted(set(ids) - set(self.ids))
        if unknown:
            raise DatasetError(f"ids not in the dataset: {unknown[:5]}")

        def sub(df):
            order = {k: n for n, k in enumerate(ids)}
            out = df[df["id"].isin(ids)].copy()
            out = out.iloc[np.argsort(out["id"].map(order).to_numpy(), kind="stable")]
            return out.reset_index(drop=True)

        new = copy.copy(self)
        _set(new, ids=ids, coordinates=sub(self.coordinates), metadata=sub(self.metadata))
        _set(new, images=sub(self.images), annotations=sub(self.annotations))
        _set(new, texts=sub(self.texts))
        return new

    def with_mask(self, mask) -> Dataset:
        """Return the same studies with another mask (voxel indices are recomputed).

        Parameters
        ----------
        mask : str, pathlib.Path or nibabel.Nifti1Image
            New mask.

        Returns
        -------
        Dataset
            A new dataset.
        """
        masker = load_mask(mask)
        new = copy.copy(self)
        coords = self.coordinates[_COORD_COLUMNS[:7]]
        _set(new, masker=masker, coordinates=_add_voxel_indices(coords, masker, "dataset"))
        return new

    def update_path(self, new_path) -> Dataset:
        """Return a copy whose relative image paths resolve against ``new_path``.

        Parameters
        ----------
        new_path : str or pathlib.Path
            Folder holding the images (NiMARE's ``Dataset.update_path``).

        Returns
        -------
        Dataset
            A new dataset; this one is unchanged.
        """
        new = copy.copy(self)
        _set(new, basepath=str(Path(new_path).resolve()), images=self.images.copy())
        return new

    def with_images(self, images: pd.DataFrame) -> Dataset:
        """Return a copy with another ``images`` table (one row per experiment, by ``id``).

        Parameters
        ----------
        images : pandas.DataFrame
            Table with an ``id`` column and one column of paths per image type.

        Returns
        -------
        Dataset
            A new dataset.
        """
        if set(images["id"]) != set(self.ids):
            raise DatasetError("the images table must have one row per experiment id")
        new = copy.copy(self)
        _set(new, images=images.reset_index(drop=True))
        return new

    def get_labels(self, ids=None) -> list[str]:
        """Return the annotation labels (columns of ``annotations``).

        Parameters
        ----------
        ids : list of str or None
            If given, only labels with a non-zero value in at least one of these experiments.

        Returns
        -------
        list of str
            Label names.
        """
        cols = [c for c in self.annotations.columns if c not in ("id", "study_id", "contrast_id")]
        if ids is None:
            return cols
        sub = self.annotations[self.annotations["id"].isin(list(ids))]
        return [c for c in cols if (pd.to_numeric(sub[c], errors="coerce").fillna(0) != 0).any()]

    def get_studies_by_label(self, labels=None, label_threshold: float = 0.001) -> list[str]:
        """Return experiments whose value for every given label exceeds a threshold.

        Parameters
        ----------
        labels : str or list of str
            Annotation columns.
        label_threshold : float
            Minimum value (NiMARE's default 0.001).

        Returns
        -------
        list of str
            Experiment ids.
        """
        labels = [labels] if isinstance(labels, str) else list(labels or [])
        missing = [lab for lab in labels if lab not in self.annotations.columns]
        if missing:
            raise DatasetError(f"labels not in the dataset's annotations: {missing}")
        keep = np.ones(len(self.annotations), bool)
        for lab in labels:
            vals = pd.to_numeric(self.annotations[lab], errors="coerce").fillna(0).to_numpy()
            keep &= vals >= label_threshold
        return self.annotations["id"][keep].tolist()

    def get_studies_by_mask(self, mask) -> list[str]:
        """Return experiments with at least one focus inside a mask image.

        Parameters
        ----------
        mask : str, pathlib.Path or nibabel.Nifti1Image
            ROI image; foci are located in it by their world coordinates.

        Returns
        -------
        list of str
            Experiment ids, in dataset order.
        """
        roi = load_mask(mask)
        data = np.asanyarray(roi.dataobj)
        ijk = mm2vox(self.coordinates[["x", "y", "z"]].to_numpy(), roi.affine)
        inside = np.all((ijk >= 0) & (ijk < np.array(data.shape)), axis=1)
        hit = np.zeros(len(ijk), bool)
        hit[inside] = data[tuple(ijk[inside].T)] > 0
        found = set(self.coordinates["id"][hit])
        return [i for i in self.ids if i in found]

    def get_studies_by_coordinate(self, xyz, r: float = 20) -> list[str]:
        """Return experiments with at least one focus within ``r`` mm of any given coordinate.

        Parameters
        ----------
        xyz : array-like, shape (n, 3)
            MNI coordinates in mm.
        r : float
            Radius in mm.

        Returns
        -------
        list of str
            Experiment ids, in dataset order.
        """
        xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
        foci = self.coordinates[["x", "y", "z"]].to_numpy()
        d2 = ((foci[:, None, :] - xyz[None, :, :]) ** 2).sum(-1)
        found = set(self.coordinates["id"][(d2 <= r**2).any(axis=1)])
        return [i for i in self.ids if i in found]

    def get_metadata(self, ids=None, field=None):
        """Return metadata values.

        Parameters
        ----------
        ids : list of str or None
            Experiments (all if None), in the order given.
        field : str or None
            Column; if None, the whole table for ``ids``.

        Returns
        -------
        list or pandas.DataFrame
            One value per experiment for a field, else a table.
        """
        return _get(self.metadata, self.ids if ids is None else ids, field, "metadata")

    def get_texts(self, ids=None, text_type: str = "abstract"):
        """Return one text per experiment (e.g. abstracts).

        Parameters
        ----------
        ids : list of str or None
            Experiments (all if None).
        text_type : str
            Column of ``texts``.

        Returns
        -------
        list of str
            Texts (None where missing).
        """
        return _get(self.texts, self.ids if ids is None else ids, text_type, "texts")

    def get_sample_sizes(self) -> np.ndarray:
        """Return the mean sample size of each experiment, validated.

        Returns
        -------
        numpy.ndarray, shape (n_experiments,)
            Mean of each experiment's ``sample_sizes`` (NiMARE's rule for the ALE kernel).

        Raises
        ------
        DatasetError
            If an experiment has no, a non-numeric, a zero or a negative sample size.
        """
        if "sample_sizes" not in self.metadata.columns:
            raise DatasetError(
                "no experiment has metadata 'sample_sizes'; the ALE kernel needs them "
                "(or pass ALEKernel(fwhm=...) or ALEKernel(sample_size=...))"
            )
        out = []
        for ident, value in zip(self.metadata["id"], self.metadata["sample_sizes"], strict=True):
            vals = np.atleast_1d(np.asarray(value if value is not None else np.nan, dtype=float))
            if vals.size == 0 or not np.all(np.isfinite(vals)) or np.any(vals <= 0):
                raise DatasetError(
                    f"experiment {ident!r}: metadata 'sample_sizes' must be positive numbers, "
                    f"got {value!r}"
                )
            out.append(vals.mean())
        return np.asarray(out)


def _set(obj, **fields) -> None:
    for k, v in fields.items():
        object.__setattr__(obj, k, v)


def _get(table: pd.DataFrame, ids, field, what: str):
    ids = list(ids)
    sub = table.set_index("id").reindex(ids)
    if field is None:
        return sub.reset_index()
    if field not in table.columns:
        raise DatasetError(f"field {field!r} is not in the dataset's {what}")
    return [None if _isna(v) else v for v in sub[field].tolist()]


def _isna(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _add_voxel_indices(coords: pd.DataFrame, masker: nib.Nifti1Image, origin: str):
    """Add i, j, k columns; warn about foci outside the image volume, refuse absurd ones.

    A focus outside the volume is kept (as in NiMARE): its kernel is clipped at the edge, so
    it contributes the part that falls inside. A coordinate beyond ``MAX_COORDINATE_MM``
    is a column mistake and raises :class:`~nimare_jax.exceptions.DatasetError`.
    """
    coords = coords.reset_index(drop=True).copy()
    if coords.empty:
        for a in "ijk":
            coords[a] = np.zeros(0, int)
        return coords
    xyz = coords[["x", "y", "z"]].to_numpy(dtype=float)
    absurd = np.flatnonzero((np.abs(xyz) > MAX_COORDINATE_MM).any(axis=1))
    if absurd.size:
        r = coords.iloc[absurd[0]]
        raise DatasetError(
            f"{origin}: experiment {r.id!r}, field 'coords': focus ({r.x:g}, {r.y:g}, {r.z:g}) "
            f"(MNI mm) lies more than {MAX_COORDINATE_MM:g} mm from the origin; check the x, "
            "y, z values"
        )
    ijk = mm2vox(xyz, masker.affine)
    outside = outside_volume(ijk, masker.shape)
    if outside.any():
        ids = list(dict.fromkeys(coords["id"][outside]))
        warnings.warn(
            f"{origin}: {int(outside.sum())} foci lie outside the image volume "
            f"({volume_extent(masker.affine, masker.shape)}); they are kept, and each "
            "contributes the part of its kernel inside the volume (as in NiMARE). "
            f"Experiments: {', '.join(map(repr, ids[:5]))}" + (" ..." if len(ids) > 5 else ""),
            UserWarning,
            stacklevel=3,
        )
    coords[["i", "j", "k"]] = ijk
    return coords
