"""The :class:`Dataset`: a thin container of pandas tables and a masker.

A ``Dataset`` is built from a NiMARE-format dictionary (or a path to its JSON file), exactly
as :class:`nimare.dataset.Dataset` is, so scripts keep working. Coordinates are stored in MNI
mm (Talairach foci are converted with Lancaster et al.'s 2007 transform) together with their
voxel indices in the mask. As in NiMARE, the tables and the masker can be replaced by
assignment (``dset.coordinates = ...``, ``dset.masker = ...``); each assignment is validated
and the voxel indices are recomputed. The selection methods (``slice``, ``with_mask``,
``with_images``, ``merge``, ``copy``) return a new dataset and leave this one unchanged.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nimare_jax.exceptions import DatasetError, InputFileError, excerpt
from nimare_jax.parsing import load_json, parse_number
from nimare_jax.spatial import (
    MAX_COORDINATE_MM,
    get_masker,
    load_mask,
    mm2vox,
    outside_volume,
    tal2mni,
    volume_extent,
    vox2mm,
)

_MNI_NAMES = {"mni", "mni152", "icbm", "mni152_2mm", "ale_2mm"}
_TAL_NAMES = {"tal", "talairach"}
_COORD_COLUMNS = ["id", "study_id", "contrast_id", "x", "y", "z", "space", "i", "j", "k"]
_TABLES = ("coordinates", "metadata", "images", "annotations", "texts")


def _to_mni(xyz: np.ndarray, space: str, unknown: list, where: str) -> np.ndarray:
    """Return coordinates in MNI mm; record ``where`` in ``unknown`` if the space is unknown."""
    key = str(space).strip().lower()
    if key in _MNI_NAMES:
        return xyz
    if key in _TAL_NAMES:
        return tal2mni(xyz)
    unknown.append(f"{where} ({excerpt(space)})")
    return xyz


def _experiment(origin: str, study_id, contrast_id) -> str:
    """Name an experiment in a message: source, id, study and contrast, as plain strings."""
    study, contrast = str(study_id), str(contrast_id)
    return (
        f"{origin}: experiment {excerpt(f'{study}-{contrast}')} "
        f"(study {excerpt(study)}, contrast {excerpt(contrast)})"
    )


def _numbers(value) -> np.ndarray:
    """Return a number or a list of numbers as a 1-D float array.

    Numbers are JSON numbers or strings :func:`~nimare_jax.parsing.parse_number` reads
    (NiMARE converts strings too); booleans, nulls and nested lists are not numbers.
    Raises ``ValueError`` saying which item is not a number.
    """
    items = value.tolist() if isinstance(value, np.ndarray) else value
    items = items if isinstance(items, list | tuple) else [items]
    out = []
    for k, item in enumerate(items):
        try:
            if isinstance(item, str):
                out.append(parse_number(item))
            elif isinstance(item, int | float | np.number) and not isinstance(item, bool):
                out.append(float(item))
            else:
                raise ValueError
        except (ValueError, OverflowError):
            raise ValueError(f"item {k} is {excerpt(item)}") from None
    return np.asarray(out, dtype=float)


def _section(con: dict, key: str, where: str) -> dict:
    """Return a contrast's ``metadata``/``images``/``labels``/``text`` object (empty if absent)."""
    part = con.get(key)
    if part is not None and not isinstance(part, dict):
        raise InputFileError(
            f"{where}: field {key!r} must be an object, got {type(part).__name__}"
        )
    reserved = [k for k in _COORD_COLUMNS[:3] if k in (part or {})]
    if reserved:
        raise InputFileError(
            f"{where}: field {key!r} may not hold {reserved[0]!r}; an experiment's ids come "
            "from its study and contrast keys"
        )
    return part or {}


def _foci(c, where: str, unknown: list, ident: str) -> tuple[np.ndarray, object, dict]:
    """Validate a contrast's ``coords`` object.

    Returns MNI coordinates (n, 3), the space, and the other fields (``z_stat``, ...) as
    one value per focus.
    """
    if not isinstance(c, dict):
        raise InputFileError(
            f"{where}: field 'coords' must be an object with x, y, z, got {type(c).__name__}"
        )
    missing = [a for a in "xyz" if a not in c]
    if missing:
        raise InputFileError(f"{where}: field 'coords' lacks {missing[0]!r}")
    xyz = []
    for a in "xyz":
        try:
            xyz.append(_numbers(c[a]))
        except ValueError as exc:
            raise InputFileError(f"{where}: field 'coords.{a}' must hold numbers; {exc}") from None
    x, y, z = xyz
    if not (len(x) == len(y) == len(z)):
        raise InputFileError(
            f"{where}: field 'coords' has x/y/z of lengths {len(x)}/{len(y)}/{len(z)}"
        )
    if not np.all(np.isfinite(np.c_[x, y, z])):
        raise InputFileError(f"{where}: field 'coords' contains NaN or inf")
    space = c.get("space", "UNKNOWN")
    if space is not None and not isinstance(space, str):
        raise InputFileError(
            f"{where}: field 'coords.space' must be a string, got {excerpt(space)}"
        )
    extras = {}
    for key, value in c.items():
        if key in ("x", "y", "z", "space"):
            continue
        if isinstance(value, list | tuple):
            if len(value) != len(x):
                raise InputFileError(
                    f"{where}: field 'coords.{key}' has {len(value)} values for {len(x)} foci"
                )
            extras[key] = list(value)
        else:  # one value for every focus, as NiMARE reads it
            extras[key] = [value] * len(x)
    return _to_mni(np.c_[x, y, z], space, unknown, ident), space, extras


def warn_mixed_signs(z_stat, stacklevel: int = 2) -> None:
    """Warn if foci statistics are both positive and negative (NiMARE's one-sided caveat).

    Parameters
    ----------
    z_stat : array-like
        The ``z_stat`` values of a dataset's foci; NaN values are ignored.
    stacklevel : int
        Passed to :func:`warnings.warn`.
    """
    values = pd.to_numeric(pd.Series(np.asarray(z_stat, dtype=object)), errors="coerce")
    values = values.dropna().to_numpy(float)
    if (values >= 0).any() and (values < 0).any():
        warnings.warn(
            "Coordinates dataset contains both positive and negative z_stats; the CBMA "
            "estimators treat every focus as evidence for the same effect (one-sided), so "
            "foci of opposite signs may give misleading results",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def _tables_from_dict(source: dict, origin: str):
    """Flatten a NiMARE-format dict into the coordinates/metadata/images/annotations/texts rows.

    Experiments without ``coords`` (image-only) are kept. Coordinates must be finite numbers
    and ``metadata.sample_sizes`` (read by the estimators) a number or a list of numbers;
    every error names ``origin``, the experiment and the field.
    """
    coords, meta, images, labels, texts, unknown = [], [], [], [], [], []
    if not isinstance(source, dict):
        raise InputFileError(
            f"{origin}: expected a JSON object of studies, got {type(source).__name__}"
        )
    for study_id, study in source.items():
        if not isinstance(study, dict) or not isinstance(study.get("contrasts"), dict):
            raise InputFileError(f"{origin}: study {excerpt(study_id)} has no 'contrasts' object")
        for contrast_id, con in study["contrasts"].items():
            ident = f"{study_id}-{contrast_id}"
            base = {"id": ident, "study_id": str(study_id), "contrast_id": str(contrast_id)}
            where = _experiment(origin, study_id, contrast_id)
            if not isinstance(con, dict):
                raise InputFileError(f"{where}: expected an object, got {type(con).__name__}")
            if "\x00" in ident:  # NumPy's strings drop trailing NULs: ids would change
                raise InputFileError(f"{where}: study and contrast names may not hold NUL")
            if con.get("coords") is not None:
                xyz, space, extras = _foci(con["coords"], where, unknown, ident)
                for n, row in enumerate(xyz):
                    focus = {**base, "x": row[0], "y": row[1], "z": row[2], "space": space}
                    coords.append({**focus, **{k: v[n] for k, v in extras.items()}})
            md = _section(con, "metadata", where)
            if md.get("sample_sizes") is not None:
                try:
                    _numbers(md["sample_sizes"])
                except ValueError as exc:
                    raise InputFileError(
                        f"{where}: field 'metadata.sample_sizes' must be a number or a list "
                        f"of numbers; {exc}"
                    ) from None
            meta.append({**base, **md})
            images.append({**base, **_section(con, "images", where)})
            labels.append({**base, **_section(con, "labels", where)})
            texts.append({**base, **_section(con, "text", where)})
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


@dataclass(init=False, eq=False)
class Dataset:
    """Studies of a meta-analysis: coordinates, metadata, images, annotations and texts.

    Parameters
    ----------
    source : str, pathlib.Path or dict
        A NiMARE-format JSON file or the dictionary it holds:
        ``{study_id: {"contrasts": {contrast_id: {"coords": ..., "metadata": ...}}}}``.
    target : {"mni152_2mm", "ale_2mm"} or None
        Template space; sets the default mask. With ``target=None`` and ``mask=None`` the
        dataset has no masker (as in NiMARE): it can be inspected, but an estimator needs a
        mask (its own ``mask=`` or one assigned to ``dset.masker``).
    mask : str, pathlib.Path, nibabel.Nifti1Image, nilearn masker or None
        Mask. ``None`` uses the brain mask of ``target``. A 4-D image with one volume is
        squeezed to 3-D.

    Attributes
    ----------
    ids : numpy.ndarray of str
        Experiment identifiers ``"{study_id}-{contrast_id}"``.
    coordinates : pandas.DataFrame
        One row per focus: id, study_id, contrast_id, x, y, z (MNI mm), space (as given),
        and i, j, k (voxel indices in ``masker``'s grid, rounded to the nearest voxel as
        NiMARE 0.22 does; foci outside the volume are kept, with a warning). Assigning a
        table (with at least ``id``, ``x``, ``y``, ``z``) recomputes i, j, k.
    metadata, images, annotations, texts : pandas.DataFrame
        One row per experiment, keyed by ``id``; assignable (an ``id`` column is required).
    masker : nilearn.maskers.NiftiMasker or None
        Fitted masker of the mask (``masker.mask_img_`` is the binary image), as in NiMARE.
        Assigning a path, an image or a masker converts it with
        :func:`~nimare_jax.spatial.get_masker` and recomputes the voxel indices.
        :func:`~nimare_jax.spatial.load_mask` turns it into the mask image.
    space : str or None
        The target space.
    basepath : str or None
        Folder relative image paths are resolved against.
    origin : str
        Where the dataset was read from: the JSON file's path, or ``"dataset dict"``; error
        messages about the dataset start with it.
    """

    ids: np.ndarray
    coordinates: pd.DataFrame
    metadata: pd.DataFrame
    images: pd.DataFrame
    annotations: pd.DataFrame
    texts: pd.DataFrame
    masker: object
    space: str | None
    basepath: str | None
    origin: str

    def __init__(self, source, target: str = "mni152_2mm", mask=None):
        origin = "dataset dict"
        basepath = None
        if isinstance(source, str | Path):
            origin = str(source)
            basepath = str(Path(source).resolve().parent)
            source = load_json(source)
        coords, meta, images, labels, texts = _tables_from_dict(source, origin)
        if not meta:
            raise DatasetError(f"{origin}: the dataset has no experiments")
        if mask is None and target is None:
            warnings.warn(
                "No mask or target space given: the dataset has no masker (assign one to "
                "dset.masker, or give the estimator a mask)",
                UserWarning,
                stacklevel=2,
            )
        masker = (
            None
            if mask is None and target is None
            else get_masker(target if mask is None else mask)
        )
        extra = list(dict.fromkeys(k for c in coords for k in c if k not in _COORD_COLUMNS))
        coordinates = pd.DataFrame(coords, columns=_COORD_COLUMNS[:7] + extra)
        if "z_stat" in extra:
            z_stat = pd.to_numeric(coordinates["z_stat"], errors="coerce")
            if not z_stat.isna().any():
                coordinates["z_stat"] = z_stat.astype(float)
                warn_mixed_signs(z_stat.to_numpy(), stacklevel=2)
        _set(self, ids=np.array([m["id"] for m in meta]), space=target, basepath=basepath)
        _set(self, origin=origin)
        images = _relative_columns(pd.DataFrame(images), basepath)
        _set(self, masker=masker, metadata=pd.DataFrame(meta), images=images)
        _set(self, annotations=pd.DataFrame(labels), texts=pd.DataFrame(texts))
        _set(self, coordinates=_add_voxel_indices(coordinates, masker, origin))

    def __setattr__(self, name, value):
        """Validate NiMARE's assignments to the tables and the masker (see the class notes)."""
        if name == "masker":
            value = None if value is None else get_masker(value)
            object.__setattr__(self, name, value)
            if "coordinates" in self.__dict__:
                coords = _validate_table(self.coordinates, "coordinates", _XYZ)
                _set(self, coordinates=_add_voxel_indices(coords, value, self.origin))
            return
        if name in _TABLES:
            required = _XYZ if name == "coordinates" else ()
            value = _validate_table(value, name, required)
            if name == "coordinates":
                value = _add_voxel_indices(value, self.masker, self.origin)
            elif name == "images":
                value = _relative_columns(value.reset_index(drop=True), self.basepath)
        object.__setattr__(self, name, value)

    @classmethod
    def from_coordinates(cls, coordinates: pd.DataFrame, mask) -> Dataset:
        """Build a coordinates-only dataset from a foci table, as NiMARE kernels accept one.

        Parameters
        ----------
        coordinates : pandas.DataFrame
            One row per focus with ``id`` and ``x``, ``y``, ``z`` (MNI mm) or ``i``, ``j``,
            ``k`` (voxel indices in ``mask``, which then take precedence, as in NiMARE;
            a dataset's ``coordinates`` table remembers the grid its i, j, k index, and if
            that is not ``mask``'s they are recomputed from x, y, z);
            optional ``study_id``, ``contrast_id`` and a per-experiment ``sample_size`` (or
            ``sample_sizes``) column, which becomes the ``sample_sizes`` metadata.
        mask : str, pathlib.Path, nibabel.Nifti1Image or nilearn masker
            Mask of the maps.

        Returns
        -------
        Dataset
            One experiment per distinct ``id``, in order of first appearance.
        """
        masker = get_masker(mask)
        if (
            isinstance(coordinates, pd.DataFrame)
            and {"i", "j", "k", "x", "y", "z"} <= set(coordinates)
            and coordinates.attrs.get(_IJK_GRID, _grid_key(load_mask(masker)))
            != _grid_key(load_mask(masker))
        ):
            # a dataset's foci table, indexed in another mask's grid: x, y, z decide
            coordinates = coordinates.drop(columns=["i", "j", "k"])
        if isinstance(coordinates, pd.DataFrame) and {"i", "j", "k"} <= set(coordinates):
            ijk = coordinates[["i", "j", "k"]].to_numpy(float)
            xyz = vox2mm(ijk, load_mask(masker).affine)
            coordinates = coordinates.assign(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2])
        coords = _validate_table(coordinates, "coordinates", _XYZ)
        ids = np.asarray(list(dict.fromkeys(coords["id"].astype(str))))
        coords = coords.assign(id=coords["id"].astype(str))
        for col in ("study_id", "contrast_id"):
            if col not in coords.columns:
                coords[col] = coords["id"]
        first = coords.drop_duplicates("id").set_index("id").loc[ids]
        base = pd.DataFrame({"id": ids, "study_id": first["study_id"].to_numpy()})
        base["contrast_id"] = first["contrast_id"].to_numpy()
        metadata = base.copy()
        for col in ("sample_sizes", "sample_size"):
            if col in coords.columns:
                metadata["sample_sizes"] = first[col].to_numpy()
                break
        new = cls.__new__(cls)
        _set(new, ids=ids, space=None, basepath=None, origin="coordinates table")
        _set(new, masker=masker, metadata=metadata, images=base.copy())
        _set(new, annotations=base.copy(), texts=base.copy())
        _set(new, coordinates=_add_voxel_indices(coords, new.masker, new.origin))
        return new

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
        mask : str, pathlib.Path, nibabel.Nifti1Image or nilearn masker
            New mask.

        Returns
        -------
        Dataset
            A new dataset.
        """
        new = copy.copy(self)
        new.masker = mask
        return new

    def copy(self) -> Dataset:
        """Return an independent (deep) copy, as NiMARE's ``Dataset.copy``.

        Returns
        -------
        Dataset
            A copy whose tables and masker can be changed without affecting this one.
        """
        return copy.deepcopy(self)

    def merge(self, right: Dataset) -> Dataset:
        """Return a dataset holding the experiments of this one and of ``right``.

        Parameters
        ----------
        right : Dataset
            Another dataset; its experiment ids must differ from this one's.

        Returns
        -------
        Dataset
            A new dataset with this dataset's masker, space and base path; ``right``'s
            relative image paths are made absolute against its own base path first.

        Raises
        ------
        DatasetError
            If ``right`` is not a Dataset or the two share experiment ids.
        """
        if not isinstance(right, Dataset):
            raise DatasetError(f"can only merge a Dataset, got {type(right).__name__}")
        shared = sorted(set(self.ids) & set(right.ids))
        if shared:
            raise DatasetError(
                f"cannot merge datasets sharing experiment ids: {', '.join(shared[:5])}"
                + (" ..." if len(shared) > 5 else "")
            )
        new = copy.deepcopy(self)
        _set(new, ids=np.concatenate([np.asarray(self.ids), np.asarray(right.ids)]))
        for name in _TABLES:
            left_df, right_df = getattr(self, name), getattr(right, name)
            if name == "images" and self.basepath != right.basepath:
                left_df = _absolute_paths(left_df, self.basepath)
                right_df = _absolute_paths(right_df, right.basepath)
            setattr(new, name, pd.concat([left_df, right_df], ignore_index=True, sort=False))
        if self.basepath != right.basepath:
            _set(new, basepath=None)
        _set(new, origin=f"{self.origin} + {right.origin}")
        return new

    def update_path(self, new_path) -> Dataset:
        """Resolve relative image paths against ``new_path`` from now on (in place, as NiMARE).

        Each ``<type>__relative`` column is joined to ``new_path`` to give the ``<type>``
        column, as in NiMARE; other relative paths are resolved against it when read.

        Parameters
        ----------
        new_path : str or pathlib.Path
            Folder holding the images (NiMARE's ``Dataset.update_path``).

        Returns
        -------
        Dataset
            This dataset (NiMARE returns None; returning the dataset lets calls chain).
        """
        basepath = str(Path(new_path).resolve())
        images = self.images.copy()
        for rel in [c for c in images.columns if c.endswith("__relative")]:
            col = rel[: -len("__relative")]
            old = images[col] if col in images.columns else [None] * len(images)
            new = [
                resolve_path(r, basepath) if isinstance(r, str) and r else o
                for r, o in zip(images[rel], old, strict=True)
            ]
            images[col] = pd.Series(new, index=images.index, dtype=object)
        _set(self, basepath=basepath, images=images)
        return self

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
        """Return metadata values of one field, or the fields present (as NiMARE).

        Parameters
        ----------
        ids : str, list of str or None
            Experiments (all if None), in the order given. A single id with ``field``
            returns its one value.
        field : str or None
            Column of ``metadata``. If None, the names of the fields that at least one of
            the experiments has a value for are returned instead.

        Returns
        -------
        list or object
            One value per experiment (None where missing), or the list of field names.
        """
        return _get(self.metadata, ids, field, "metadata", self.ids)

    def get_texts(self, ids=None, text_type=None):
        """Return texts of one type (e.g. abstracts), or the text types present (as NiMARE).

        Parameters
        ----------
        ids : str, list of str or None
            Experiments (all if None). A single id with ``text_type`` returns its one text.
        text_type : str or None
            Column of ``texts`` (``"abstract"``, ...). If None, the text types that at
            least one of the experiments has are returned instead.

        Returns
        -------
        list or str
            One text per experiment (None where missing), or the list of text types.
        """
        return _get(self.texts, ids, text_type, "texts", self.ids)

    def get_images(self, ids=None, imtype=None):
        """Return image paths of one type, or the image types present.

        Parameters
        ----------
        ids : str, list of str or None
            Experiments (all if None). A single id with ``imtype`` returns one path.
        imtype : str or None
            Column of ``images`` (``"z"``, ``"beta"``, ...). If None, the image types that
            at least one of the experiments has are returned instead.

        Returns
        -------
        list or str or None
            Paths (absolute when a base path is known; None where missing) in the order of
            ``ids``, or the list of image types.
        """
        single = isinstance(ids, str)
        wanted = list(self.ids) if ids is None else ([ids] if single else list(ids))
        skip = {"id", "study_id", "contrast_id", "space"}
        types = [c for c in self.images.columns if c not in skip and not c.endswith("__relative")]
        if imtype is None:
            sub = self.images[self.images["id"].isin(wanted)]
            return [c for c in types if sub[c].map(lambda v: resolve_path(v, None)).notna().any()]
        if imtype not in types:
            raise DatasetError(
                f"image type {imtype!r} is not in the dataset's images (available: "
                f"{', '.join(types) or 'none'})"
            )
        values = _get(self.images, wanted, imtype, "", None)
        paths = [resolve_path(v, self.basepath) for v in values]
        return paths[0] if single else paths

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
                f"{self.origin}: no experiment has metadata 'sample_sizes'; the ALE kernel "
                "needs them (or pass ALEKernel(fwhm=...) or ALEKernel(sample_size=...))"
            )
        out = []
        meta = self.metadata
        rows = zip(
            meta["study_id"].tolist(),
            meta["contrast_id"].tolist(),
            meta["sample_sizes"].tolist(),
            strict=True,
        )
        for study_id, contrast_id, value in rows:
            try:
                vals = np.asarray([]) if _isna(value) else _numbers(value)
            except ValueError:
                vals = np.asarray([np.nan])
            if vals.size == 0 or not np.all(np.isfinite(vals)) or np.any(vals <= 0):
                raise DatasetError(
                    f"{_experiment(self.origin, study_id, contrast_id)}: metadata "
                    f"'sample_sizes' must be positive numbers, got {excerpt(value)}"
                )
            out.append(vals.mean())
        return np.asarray(out)


def resolve_path(path, basepath) -> str | None:
    """Return an image path of a dataset's ``images`` table as a usable path.

    Parameters
    ----------
    path : str, os.PathLike, float or None
        The table's entry; None, NaN or ``""`` mean "no image".
    basepath : str, os.PathLike or None
        Folder that relative paths are relative to (``dataset.basepath``).

    Returns
    -------
    str or None
        The path (``~`` expanded, joined to ``basepath`` if relative; a URL as it is), or
        None.
    """
    if path is None or (isinstance(path, float) and np.isnan(path)) or path == "":
        return None
    if "://" in str(path):  # a URL (NeuroStore's images): Path would fold its "//"
        return str(path)
    p = Path(os.fspath(path) if isinstance(path, os.PathLike) else str(path)).expanduser()
    if not p.is_absolute() and basepath is not None:
        p = Path(basepath) / p
    return str(p)


def _relative_columns(images: pd.DataFrame, basepath) -> pd.DataFrame:
    """Lay out image paths as NiMARE does once a base folder is known.

    Missing entries become None. With a ``basepath``, an image column holding relative
    paths keeps them in ``<type>__relative`` and holds the absolute paths itself, so code
    that reads ``dset.images["z"]`` (NiMARE's scripts and tests) finds usable paths, and
    :meth:`Dataset.update_path` can rebuild them.
    """
    out = images.copy()
    for col in [c for c in out.columns if c not in _ID_SPACE and not c.endswith("__relative")]:
        values = [
            resolve_path(v, None) if isinstance(v, str | os.PathLike) else None for v in out[col]
        ]
        relative = [v is not None and not Path(v).is_absolute() for v in values]
        out[col] = pd.Series(values, index=out.index, dtype=object)
        if f"{col}__relative" in out.columns:
            continue
        if basepath is not None and any(relative):
            rel = [v if r else None for v, r in zip(values, relative, strict=True)]
            out[f"{col}__relative"] = pd.Series(rel, index=out.index, dtype=object)
            absolute = [resolve_path(v, basepath) for v in values]
            out[col] = pd.Series(absolute, index=out.index, dtype=object)
        elif basepath is None and _is_image_column(values) and not any(relative):
            # absolute paths only: relative to their shared folder, for update_path (NiMARE)
            shared = os.path.commonpath([os.path.dirname(v) for v in values if v is not None])
            rel = [None if v is None else os.path.relpath(v, shared) for v in values]
            out[f"{col}__relative"] = pd.Series(rel, index=out.index, dtype=object)
    return out


_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".img", ".hdr", ".brik", ".head")


def _is_image_column(values) -> bool:
    """Tell whether a column's entries include image file paths (by their extension)."""
    return any(v is not None and v.lower().endswith(_IMAGE_SUFFIXES) for v in values)


_ID_SPACE = ("id", "study_id", "contrast_id", "space")


def _absolute_paths(images: pd.DataFrame, basepath) -> pd.DataFrame:
    """Return ``images`` with relative paths joined to ``basepath`` (for merging)."""
    out = images.copy()
    for col in out.columns:
        if col in ("id", "study_id", "contrast_id", "space") or col.endswith("__relative"):
            continue
        out[col] = [resolve_path(v, basepath) for v in out[col]]
    return out


_XYZ = ("x", "y", "z")


def _validate_table(df, name: str, required=()) -> pd.DataFrame:
    """Check an assigned table: a DataFrame with an ``id`` column (and ``required`` ones)."""
    if not isinstance(df, pd.DataFrame):
        raise DatasetError(f"Dataset.{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in ("id", *required) if c not in df.columns]
    if missing:
        raise DatasetError(f"Dataset.{name} lacks the column(s) {missing}")
    if name == "coordinates":
        return df.drop(columns=[c for c in "ijk" if c in df.columns])
    return df


def _set(obj, **fields) -> None:
    for k, v in fields.items():
        object.__setattr__(obj, k, v)


def _get(table: pd.DataFrame, ids, field, what: str, all_ids):
    """Values of ``field`` for ``ids`` (one value for a single id), or the fields present.

    Without a field, all of the table's fields are listed when ``ids`` is None, and only
    those with a value for one of ``ids`` otherwise (NiMARE's rule).
    """
    single = isinstance(ids, str)
    everything = ids is None
    ids = list(all_ids) if everything else [ids] if single else list(ids)
    sub = table.set_index("id").reindex(ids)
    if field is None:
        fields = [c for c in sub.columns if c not in ("study_id", "contrast_id")]
        return [c for c in fields if everything or any(not _isna(v) for v in sub[c])]
    if field not in table.columns:
        raise DatasetError(f"field {field!r} is not in the dataset's {what}")
    values = [None if _isna(v) else v for v in sub[field].tolist()]
    return values[0] if single else values


def _isna(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


#: Key of ``coordinates.attrs`` naming the grid its i, j, k columns index (see _grid_key).
_IJK_GRID = "nimare_jax_ijk_grid"


def _grid_key(img) -> tuple:
    """Shape and affine of an image's voxel grid, as plain numbers (hashable, comparable)."""
    affine = tuple(tuple(float(v) for v in row) for row in np.asarray(img.affine))
    return tuple(int(n) for n in img.shape[:3]), affine


def _add_voxel_indices(coords: pd.DataFrame, masker, origin: str):
    """Add i, j, k columns; warn about foci outside the image volume, refuse absurd ones.

    A focus outside the volume is kept (as in NiMARE): its kernel is clipped at the edge, so
    it contributes the part that falls inside. A coordinate beyond ``MAX_COORDINATE_MM``
    is a column mistake and raises :class:`~nimare_jax.exceptions.DatasetError`. Without a
    masker the table is returned without i, j, k.
    """
    coords = coords.reset_index(drop=True).copy()
    coords.attrs.pop(_IJK_GRID, None)
    if masker is None:
        return coords
    masker = load_mask(masker)
    coords.attrs[_IJK_GRID] = _grid_key(masker)
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
