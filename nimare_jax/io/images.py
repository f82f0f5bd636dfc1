"""Image files of a dataset: resolving paths, loading them within a mask, resampling.

A :class:`~nimare_jax.dataset.Dataset`'s ``images`` table holds one column per image type
(``z``, ``t``, ``beta``, ``varcope``, ``se``, ``p``, ...) with paths as written in the
dataset's JSON; relative paths are relative to ``dataset.basepath``. Images are read one at
a time and reduced to the mask's voxels immediately, so peak memory is one full volume plus
the ``(n_studies, n_voxels)`` float32 array. An image whose grid differs from the mask's
is resampled onto it with nilearn (linear interpolation, clipped to the input's range, as
NiMARE does).
"""

from __future__ import annotations

import numpy as np
from nilearn.image import resample_to_img

from nimare_jax.dataset import resolve_path
from nimare_jax.exceptions import DatasetError, ImageError
from nimare_jax.spatial import load_image, load_image_3d, load_mask

__all__ = ["get_image_paths", "load_image", "load_images", "mask_image", "resolve_path"]

#: Defaults of the resampling applied when an image's grid differs from the mask's.
RESAMPLE_DEFAULTS = {"interpolation": "linear", "clip": True}


def get_image_paths(dataset, image_type: str, ids=None) -> list:
    """Return the resolved path of one image type for each experiment.

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        The dataset.
    image_type : str
        Column of ``dataset.images`` (``"z"``, ``"beta"``, ``"varcope"``, ...).
    ids : list of str, optional
        Experiments, in the order wanted (default: all, in dataset order).

    Returns
    -------
    list of str or None
        Absolute (or as-given) paths; None where the experiment has no such image.
    """
    table = dataset.images.set_index("id")
    ids = list(dataset.ids if ids is None else ids)
    if image_type not in table.columns:
        return [None] * len(ids)
    return [resolve_path(table.at[i, image_type], dataset.basepath) for i in ids]


def mask_image(img, mask_img, what: str = "image", resample_kwargs=None) -> np.ndarray:
    """Return the values of a 3-D image at the mask's voxels, resampling if grids differ.

    Parameters
    ----------
    img : nibabel image
        The image.
    mask_img : nibabel.Nifti1Image
        Binary mask defining the voxels (C order of ``mask > 0``).
    what : str
        Description used in error messages.
    resample_kwargs : dict, optional
        Options of :func:`nilearn.image.resample_to_img` (default linear, clipped).

    Returns
    -------
    numpy.ndarray of float32, shape (n_voxels,)
        Values; NaN where resampling left no data.
    """
    img = load_image_3d(img, what)
    mask = np.asanyarray(mask_img.dataobj) > 0
    same_grid = img.shape[:3] == mask_img.shape[:3] and np.allclose(
        img.affine, mask_img.affine, atol=1e-4
    )
    if not same_grid:
        affine = np.asarray(img.affine, float)
        if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ImageError(
                f"{what}: shape {img.shape} differs from the mask's {mask_img.shape[:3]} and "
                "its affine is not invertible, so it cannot be resampled to the mask"
            )
        options = {**RESAMPLE_DEFAULTS, **(resample_kwargs or {})}
        options.setdefault("force_resample", True)
        options.setdefault("copy_header", True)
        try:
            img = resample_to_img(img, mask_img, **options)
        except Exception as exc:
            raise ImageError(f"{what}: could not be resampled to the mask ({exc})") from exc
    data = np.asanyarray(img.dataobj)
    return np.asarray(data[mask], dtype=np.float32)


def load_images(dataset, image_type: str, mask=None, ids=None, resample_kwargs=None):
    """Load one image type of every experiment as a ``(n_studies, n_voxels)`` array.

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        The dataset.
    image_type : str
        Column of ``dataset.images``.
    mask : nibabel.Nifti1Image, optional
        Mask (default: the dataset's ``masker``).
    ids : list of str, optional
        Experiments (default: all).
    resample_kwargs : dict, optional
        Options of :func:`nilearn.image.resample_to_img`.

    Returns
    -------
    numpy.ndarray of float32, shape (n_studies, n_voxels)
        Masked values, one row per experiment.

    Raises
    ------
    DatasetError
        If an experiment has no image of this type.
    InputFileError
        If a file is missing or unreadable.
    ImageError
        If an image cannot be brought onto the mask's grid.
    """
    mask = load_mask(dataset.masker if mask is None else mask)
    ids = [str(i) for i in (dataset.ids if ids is None else ids)]
    paths = get_image_paths(dataset, image_type, ids)
    missing = [i for i, p in zip(ids, paths, strict=True) if p is None]
    if missing:
        raise DatasetError(
            f"{len(missing)} experiment(s) have no {image_type!r} image: "
            + ", ".join(repr(m) for m in missing[:10])
            + (" ..." if len(missing) > 10 else "")
            + f" (available image types: {', '.join(image_types(dataset)) or 'none'})"
        )
    n_vox = int((np.asanyarray(mask.dataobj) > 0).sum())
    out = np.empty((len(ids), n_vox), np.float32)
    for row, (ident, path) in enumerate(zip(ids, paths, strict=True)):
        what = f"experiment {ident!r}, image {image_type!r} ({path})"
        out[row] = mask_image(load_image(path, what), mask, what, resample_kwargs)
    return out


def image_types(dataset) -> list[str]:
    """Return the image types with at least one path in ``dataset.images``.

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        The dataset.

    Returns
    -------
    list of str
        Column names.
    """
    skip = ("id", "study_id", "contrast_id")
    cols = [c for c in dataset.images.columns if c not in skip and not c.endswith("__relative")]
    return [c for c in cols if dataset.images[c].notna().any()]
