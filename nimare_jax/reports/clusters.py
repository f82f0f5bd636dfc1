"""Cluster tables: size, peak, centre of mass and atlas label of every supra-threshold cluster.

GingerALE gives its users such a table with every ALE result; NiMARE does not. Clusters are
connected sets of voxels whose value exceeds a threshold (6-, 18- or 26-neighbour
connectivity), numbered 1, 2, ... by decreasing peak value. Coordinates are world (MNI) mm;
atlas labels are looked up by world coordinate on the atlas's own grid, so the map and the
atlas need not share a grid or an orientation.

The bundled atlas is the Harvard-Oxford cortical maximum-probability atlas thresholded at
25 % (2 mm, from FSL; see ``resources/atlases/Harvard-Oxford-LICENSE``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from nimare_jax.ops.label import label_clusters
from nimare_jax.spatial import get_resource_path, mm2vox, vox2mm

__all__ = [
    "CLUSTER_COLUMNS",
    "NO_LABEL",
    "atlas_labels",
    "cluster_table",
    "load_atlas",
    "ordered_clusters",
]

#: Text given to a peak outside every atlas region (or outside the atlas volume).
NO_LABEL = "no label"

#: Columns of :func:`cluster_table`, in order.
CLUSTER_COLUMNS = [
    "cluster_id",
    "size_voxels",
    "size_mm3",
    "peak_x",
    "peak_y",
    "peak_z",
    "com_x",
    "com_y",
    "com_z",
    "peak_value",
    "peak_label",
]

_ATLASES = {
    "harvard_oxford": (
        "HarvardOxford-cort-maxprob-thr25-2mm.nii.gz",
        "HarvardOxford-cort-maxprob-thr25-2mm_labels.tsv",
    ),
}


@functools.cache
def _load_bundled(name: str):
    folder = get_resource_path() / "atlases"
    image_file, names_file = _ATLASES[name]
    img = nib.load(folder / image_file)
    table = pd.read_csv(folder / names_file, sep="\t")
    names = dict(zip(table["index"].astype(int), table["name"].astype(str), strict=True))
    return img, names


def load_atlas(atlas="harvard_oxford"):
    """Return an atlas image and its region names.

    Parameters
    ----------
    atlas : str or tuple
        ``"harvard_oxford"`` (bundled Harvard-Oxford cortical max-prob atlas, 25 % threshold,
        2 mm), or ``(image, names)`` with ``image`` a NIfTI image or path of integer labels
        and ``names`` a dict (label -> name) or a sequence indexed by label.

    Returns
    -------
    img : nibabel.Nifti1Image
        Label image.
    names : dict of int to str
        Region name of every label (label 0 is background).
    """
    if isinstance(atlas, str):
        if atlas not in _ATLASES:
            raise ValueError(f"unknown atlas {atlas!r}; expected one of {sorted(_ATLASES)}")
        return _load_bundled(atlas)
    try:
        img, names = atlas
    except (TypeError, ValueError):
        raise TypeError(
            f"atlas must be 'harvard_oxford' or an (image, names) pair, got {type(atlas).__name__}"
        ) from None
    if isinstance(img, str | Path):
        img = nib.load(img)
    if not isinstance(names, dict):
        names = dict(enumerate(names))
    return img, {int(k): str(v) for k, v in names.items()}


def atlas_labels(xyz, atlas="harvard_oxford") -> list[str]:
    """Name the atlas region at each world coordinate.

    Parameters
    ----------
    xyz : array-like, shape (n, 3)
        Coordinates in mm, in the atlas's space (MNI for the bundled atlas).
    atlas : str or tuple
        See :func:`load_atlas`.

    Returns
    -------
    list of str
        Region names; :data:`NO_LABEL` for background or points outside the atlas volume.
    """
    img, names = load_atlas(atlas)
    xyz = np.atleast_2d(np.asarray(xyz, float))
    if xyz.shape[0] == 0:
        return []
    data = np.asanyarray(img.dataobj)
    ijk = mm2vox(xyz, img.affine)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(data.shape[:3])), axis=1)
    values = np.zeros(len(ijk), int)
    i, j, k = ijk[inside].T
    values[inside] = np.rint(data[i, j, k]).astype(int)
    return [names.get(v, NO_LABEL) if v > 0 else NO_LABEL for v in values]


def ordered_clusters(
    data,
    threshold: float = 0.0,
    connectivity: int = 6,
    min_size: int = 1,
    tiebreak=None,
) -> tuple[np.ndarray, int]:
    """Label the clusters of ``data > threshold``, numbered by decreasing peak value.

    Parameters
    ----------
    data : numpy.ndarray, shape (X, Y, Z)
        Values; NaN never exceeds the threshold.
    threshold : float
        Voxels strictly above it form clusters.
    connectivity : {6, 18, 26}
        Neighbourhood defining clusters.
    min_size : int
        Clusters with fewer voxels are dropped.
    tiebreak : numpy.ndarray, shape (X, Y, Z), optional
        Second map whose cluster peaks order clusters with equal peaks in ``data`` (useful
        when ``data`` is constant within clusters, as a cluster-level corrected map is).
        Remaining ties keep :func:`scipy.ndimage.label`'s order.

    Returns
    -------
    labels : numpy.ndarray, shape (X, Y, Z), int32
        0 outside clusters, 1 for the cluster with the highest peak, and so on.
    n_clusters : int
        Number of clusters kept.
    """
    data = np.asarray(data, float)
    with np.errstate(invalid="ignore"):
        active = data > threshold
    labels, n = label_clusters(active, connectivity)
    if n == 0:
        return labels, 0
    index = np.arange(1, n + 1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peaks = np.asarray(ndimage.maximum(data, labels, index), float)
    second = (
        np.zeros(n)
        if tiebreak is None
        else np.asarray(ndimage.maximum(np.asarray(tiebreak, float), labels, index), float)
    )
    order = np.lexsort((index, -second, -peaks))
    order = order[sizes[order] >= min_size]
    relabel = np.zeros(n + 1, np.int32)
    relabel[index[order]] = np.arange(1, order.size + 1, dtype=np.int32)
    return relabel[labels], int(order.size)


def _cluster_rows(data, labels, n, affine, sign: float = 1.0) -> dict:
    """Per-cluster sizes, peaks and weighted centres of mass (``sign * data`` is positive)."""
    index = np.arange(1, n + 1)
    signed = sign * np.asarray(data, float)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peak_ijk = np.asarray(ndimage.maximum_position(signed, labels, index), float).reshape(-1, 3)
    peak_val = sign * np.asarray(ndimage.maximum(signed, labels, index), float).reshape(-1)
    weights = np.where(labels > 0, signed, 0.0)
    com_ijk = np.asarray(ndimage.center_of_mass(weights, labels, index), float).reshape(-1, 3)
    return {
        "size_voxels": sizes.astype(int),
        "peak_xyz": vox2mm(peak_ijk, affine) if n else np.zeros((0, 3)),
        "com_xyz": vox2mm(com_ijk, affine) if n else np.zeros((0, 3)),
        "peak_value": peak_val,
    }


def cluster_table(
    img,
    threshold: float,
    connectivity: int = 6,
    min_size: int = 1,
    atlas="harvard_oxford",
    two_sided: bool = False,
    map_name: str | None = None,
) -> pd.DataFrame:
    """Describe every cluster of a thresholded statistical map.

    Parameters
    ----------
    img : nibabel.Nifti1Image, str, os.PathLike or MetaResult
        Statistical map (3-D), a NIfTI file, or a result whose map ``map_name`` is used.
    threshold : float
        Cluster-forming threshold: voxels with a value strictly above it form clusters
        (with ``two_sided``, also voxels strictly below ``-threshold``).
    connectivity : {6, 18, 26}
        Neighbourhood defining clusters (NiMARE and nilearn use 6, faces).
    min_size : int
        Smallest cluster reported, in voxels.
    atlas : str, tuple or None
        Atlas naming the peaks (see :func:`load_atlas`); None leaves ``peak_label`` out.
    two_sided : bool
        Also report clusters of negative values (after the positive ones, numbered on).
    map_name : str or None
        Map of a :class:`~nimare_jax.results.MetaResult` (default ``"z"``).

    Returns
    -------
    pandas.DataFrame
        One row per cluster, ordered (and numbered from 1) by decreasing peak value
        (negative clusters by increasing peak): ``cluster_id``, ``size_voxels``,
        ``size_mm3``, ``peak_x/y/z`` (MNI mm of the peak voxel; ties go to the first voxel in
        array order), ``com_x/y/z`` (centre of mass weighted by the absolute value, mm),
        ``peak_value`` and ``peak_label`` (atlas region at the peak, or ``"no label"``).

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> data = np.zeros((10, 10, 10)); data[2:4, 2:4, 2:4] = 3.0; data[2, 2, 2] = 5.0
    >>> table = cluster_table(nib.Nifti1Image(data, np.eye(4)), 1.0, atlas=None)
    >>> len(table), int(table.loc[0, "size_voxels"]), float(table.loc[0, "peak_value"])
    (1, 8, 5.0)
    """
    if hasattr(img, "get_map") and hasattr(img, "maps"):
        img = img.get_map(map_name or "z", return_type="image")
    elif isinstance(img, str | Path):
        img = nib.load(img)
    if not isinstance(img, nib.spatialimages.SpatialImage):
        raise TypeError(
            f"expected a NIfTI image, a path or a MetaResult, got {type(img).__name__}"
        )
    data = np.asarray(img.get_fdata(), float)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"cluster_table needs a 3-D map, got shape {data.shape}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    if isinstance(min_size, bool) or int(min_size) != min_size or min_size < 1:
        raise ValueError(f"min_size must be a positive whole number, got {min_size!r}")
    voxel_mm3 = float(np.prod(img.header.get_zooms()[:3]))
    parts = []
    offset = 0
    for sign in (1.0, -1.0) if two_sided else (1.0,):
        labels, n = ordered_clusters(sign * data, threshold, connectivity, int(min_size))
        rows = _cluster_rows(data, labels, n, img.affine, sign)
        part = pd.DataFrame(
            {
                "cluster_id": np.arange(offset + 1, offset + n + 1),
                "size_voxels": rows["size_voxels"],
                "size_mm3": rows["size_voxels"] * voxel_mm3,
                "peak_x": rows["peak_xyz"][:, 0],
                "peak_y": rows["peak_xyz"][:, 1],
                "peak_z": rows["peak_xyz"][:, 2],
                "com_x": rows["com_xyz"][:, 0],
                "com_y": rows["com_xyz"][:, 1],
                "com_z": rows["com_xyz"][:, 2],
                "peak_value": rows["peak_value"],
            }
        )
        if atlas is not None:
            part["peak_label"] = atlas_labels(rows["peak_xyz"], atlas)
        parts.append(part)
        offset += n
    table = pd.concat(parts, ignore_index=True)
    columns = CLUSTER_COLUMNS if atlas is not None else CLUSTER_COLUMNS[:-1]
    return table[columns].astype({"cluster_id": int, "size_voxels": int})
