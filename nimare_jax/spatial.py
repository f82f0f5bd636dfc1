"""Geometry: templates, masks, affines, mm <-> voxel and Talairach <-> MNI transforms.

Everything here is host-side NumPy/nibabel; nothing imports JAX.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from nilearn.maskers import NiftiMasker

from nimare_jax.exceptions import ImageError, InputFileError

#: Floating-point type of NiMARE's maps and maskers (``nimare.utils.DEFAULT_FLOAT_DTYPE``).
DEFAULT_FLOAT_DTYPE = np.float32

_TEMPLATES = {
    # MNI152NLin6Asym 2 mm brain mask, x axis +2 mm: the default of a JSON Dataset.
    "mni152_2mm": "tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz",
    # The same 228,483 voxels stored with the x axis flipped (-2 mm): Sleuth's target.
    "ale_2mm": "MNI152_2x2x2_brainmask.nii.gz",
    # MNI152NLin6Asym 1 mm brain mask (68 kB); its 1 mm T1 image (11 MB) is not bundled.
    "mni152_1mm": "tpl-MNI152NLin6Asym_res-01_desc-brain_mask.nii.gz",
}
_T1 = "tpl-MNI152NLin6Asym_res-02_T1w.nii.gz"
_NO_T1 = {"mni152_1mm"}

# Lancaster et al. (2007) HBM 28:1194, "icbm_other" -> Talairach (the BrainMap transform for
# MNI coordinates normalised with templates other than SPM's or FSL's).
_ICBM_OTHER_TO_TAL = np.array(
    [
        [0.9357, 0.0029, -0.0072, -1.0423],
        [-0.0065, 0.9396, -0.0726, -1.3940],
        [0.0103, 0.0752, 0.8967, 3.6475],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def get_resource_path() -> Path:
    """Return the folder of data files shipped with nimare_jax.

    Returns
    -------
    pathlib.Path
        Absolute path of ``nimare_jax/resources``.
    """
    return Path(str(resources.files("nimare_jax") / "resources"))


def get_template(space: str = "mni152_2mm", mask: str | None = "brain") -> nib.Nifti1Image:
    """Load a bundled template.

    Parameters
    ----------
    space : {"mni152_2mm", "ale_2mm", "mni152_1mm"}
        Template space. ``"ale_2mm"`` holds the same voxels as ``"mni152_2mm"`` stored with
        the x axis flipped, as in GingerALE and NiMARE's Sleuth conversion. Of
        ``"mni152_1mm"`` only the brain mask is bundled: its T1 image (``mask=None``)
        raises ``ValueError`` saying so.
    mask : {"brain", None}
        ``"brain"`` returns the binary brain mask; ``None`` the T1-weighted template
        (float32, as in NiMARE; the same 2 mm T1 image for both spaces).

    Returns
    -------
    nibabel.Nifti1Image
        The template image.
    """
    folder = get_resource_path() / "templates"
    if space not in _TEMPLATES:
        raise ValueError(f"Unknown template space {space!r}; expected one of {sorted(_TEMPLATES)}")
    if mask == "brain":
        img = nib.load(folder / _TEMPLATES[space])
        data = (np.asanyarray(img.dataobj) > 0).astype(np.int8)
        return nib.Nifti1Image(data, img.affine)
    if mask is None:
        if space in _NO_T1:
            raise ValueError(
                f"The T1 image of template space {space!r} is not bundled with nimare_jax "
                "(11 MB); its brain mask is (mask='brain')"
            )
        img = nib.load(folder / _T1)
        out = nib.Nifti1Image(img.get_fdata(dtype=DEFAULT_FLOAT_DTYPE), img.affine, img.header)
        out.set_data_dtype(DEFAULT_FLOAT_DTYPE)
        return out
    raise ValueError(f"Mask option {mask!r} is not supported; expected 'brain' or None")


def load_image(path, what: str = "image") -> nib.spatialimages.SpatialImage:
    """Read an image file into memory, raising :class:`InputFileError` if it cannot.

    The voxel data are read here, so a damaged file (a truncated ``.nii.gz``, say) fails
    with a message naming it rather than later, wherever the data are first used.

    Parameters
    ----------
    path : str, pathlib.Path or nibabel image
        File to read (an image is returned as is).
    what : str
        Description used in error messages (e.g. ``"study 'a-1', image 'z'"``).

    Returns
    -------
    nibabel.spatialimages.SpatialImage
        The image, its data in memory.

    Raises
    ------
    InputFileError
        If the file is missing or cannot be read as an image; the message names ``what``
        and the file.
    """
    if isinstance(path, nib.spatialimages.SpatialImage):
        return path
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except FileNotFoundError as exc:
        raise InputFileError(f"{what}: file not found: {path}") from exc
    except Exception as exc:  # nibabel, gzip and zlib raise several types for damaged files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputFileError(f"{what}: cannot read {path} as an image ({reason})") from exc
    return type(img)(data, img.affine, img.header)


def load_image_3d(img, what: str = "image") -> nib.spatialimages.SpatialImage:
    """Read a 3-D image (:func:`load_image`), accepting a 4-D image of one volume.

    Parameters
    ----------
    img : str, pathlib.Path or nibabel image
        File to read, or an image.
    what : str
        Description used in error messages.

    Returns
    -------
    nibabel.spatialimages.SpatialImage
        The image, 3-D (a 4-D image's single volume), its data in memory.

    Raises
    ------
    InputFileError
        As :func:`load_image`.
    ImageError
        If the image has another shape; the message names ``what`` and the shape.
    """
    img = load_image(img, what)
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3:
        raise ImageError(f"{what}: expected a 3-D image, got shape {img.shape}")
    return img


def load_mask(mask) -> nib.Nifti1Image:
    """Return a binary int8 mask image from a path, an image, a masker or a template name.

    This is the one conversion from whatever describes a mask (a ``Dataset``'s or an
    estimator's ``masker`` included) to the image the numerics read.

    Parameters
    ----------
    mask : str, pathlib.Path, nibabel.Nifti1Image or nilearn.maskers.NiftiMasker
        A template name accepted by :func:`get_template`, a NIfTI file, an image, or a
        nilearn masker (its fitted ``mask_img_``, else its ``mask_img``). A 4-D image with
        one volume is squeezed to 3-D, as NiMARE does.

    Returns
    -------
    nibabel.Nifti1Image
        3-D image with ones inside the mask: int8, or a fitted masker's own ``mask_img_``
        (binary, one byte per voxel), returned as is so that it is the same object on
        every call.

    Raises
    ------
    ValueError
        If ``mask`` is None (no mask was given and none can be assumed).
    """
    if mask is None:
        raise ValueError("a masker is required: give a mask (or a Dataset with a target space)")
    if _is_masker(mask):
        if getattr(mask, "mask_img", None) is None and getattr(mask, "mask_img_", None) is None:
            raise ValueError(
                f"{type(mask).__name__} has no mask image: nimare_jax analyses voxels and "
                "supports voxel maskers (nilearn's NiftiMasker), not region-averaging ones"
            )
        fitted = getattr(mask, "mask_img_", None)
        if fitted is not None and np.asanyarray(fitted.dataobj).dtype.itemsize == 1:
            return fitted  # nilearn's binary 0/1 image: the same object on every call
        mask = fitted if fitted is not None else mask.mask_img
    if isinstance(mask, str) and mask in _TEMPLATES:
        return get_template(mask, mask="brain")
    if isinstance(mask, str | Path):
        mask = load_image(mask, "mask image")
    if not isinstance(mask, nib.spatialimages.SpatialImage):
        raise TypeError(
            f"mask must be a path, a nibabel image or a nilearn masker, got {type(mask).__name__}"
        )
    data = np.asanyarray(mask.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ImageError(f"mask must be 3-D, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ImageError("mask contains NaN or infinite values")
    binary = (data > 0).astype(np.int8)
    if not binary.any():
        raise ImageError("mask is empty (no voxel > 0)")
    return nib.Nifti1Image(binary, mask.affine)


def mask_voxels(mask_img) -> tuple[tuple[int, int, int], np.ndarray]:
    """Return a mask image's shape and the flat C-order indices of its voxels.

    Parameters
    ----------
    mask_img : nibabel.Nifti1Image
        A 3-D mask (:func:`load_mask`); voxels above 0 are in it.

    Returns
    -------
    shape : tuple of 3 ints
        The image's shape.
    index : numpy.ndarray, shape (n_voxels,), int32
        Ascending flat C-order indices of the mask voxels (read-only).

    Notes
    -----
    Cached by the mask's values: a repeated fit on one mask skips the flat copy of a
    Fortran-ordered NIfTI array and its scan (~1.5 ms for the MNI 2 mm mask).
    """
    data = np.asanyarray(mask_img.dataobj) > 0
    fortran = data.flags.f_contiguous and not data.flags.c_contiguous
    shape = tuple(int(n) for n in data.shape)
    return shape, _mask_voxels(data.tobytes(order="A"), shape, fortran)


@lru_cache(maxsize=8)
def _mask_voxels(flat: bytes, shape: tuple, fortran: bool) -> np.ndarray:
    data = np.frombuffer(flat, bool).reshape(shape, order="F" if fortran else "C")
    index = np.flatnonzero(data.reshape(-1)).astype(np.int32)
    index.flags.writeable = False
    return index


def _is_masker(obj) -> bool:
    """Tell whether ``obj`` is a nilearn masker (has transform, inverse_transform, fit)."""
    return all(hasattr(obj, a) for a in ("transform", "inverse_transform", "fit"))


def get_masker(mask) -> NiftiMasker:
    """Return a fitted nilearn masker for a mask, as ``nimare.utils.get_masker`` does.

    Parameters
    ----------
    mask : str, pathlib.Path, nibabel.Nifti1Image or nilearn masker
        A NIfTI file, a template name (:func:`get_template`), an image (binarised: voxels
        > 0) or a masker, which is fitted if it is not yet and otherwise returned as is.

    Returns
    -------
    nilearn.maskers.NiftiMasker
        Fitted masker (``mask_img_`` set) without standardisation, detrending or smoothing,
        producing float32 values.
    """
    if _is_masker(mask):
        if getattr(mask, "dtype", "") is None:
            mask.dtype = DEFAULT_FLOAT_DTYPE
        if not hasattr(mask, "mask_img_"):
            mask.fit()
        return mask
    img = load_mask(mask)
    # standardize=None: no scaling (nilearn 0.14 deprecates the equivalent ``False``).
    return NiftiMasker(img, standardize=None, dtype=DEFAULT_FLOAT_DTYPE).fit()


def mm2vox(xyz, affine) -> np.ndarray:
    """Convert mm coordinates to the nearest voxel indices, as NiMARE 0.22 does.

    Parameters
    ----------
    xyz : array-like, shape (n, 3)
        World coordinates in mm.
    affine : array-like, shape (4, 4)
        Voxel-to-world affine.

    Returns
    -------
    numpy.ndarray, shape (n, 3), int
        Voxel indices, rounded to the nearest voxel (halves to even, ``numpy.round``);
        indices beyond the 32-bit integer range are clipped to it.

    Notes
    -----
    Older NiMARE releases truncated toward zero; NiMARE 0.22 (whose outputs nimare_jax is
    tested against) rounds, so a focus moves by at most half a voxel along each axis.

    Examples
    --------
    >>> import numpy as np
    >>> mm2vox([[-37.0, 3.0, 0.9]], np.diag([2.0, 2.0, 2.0, 1.0]))
    array([[-18,   2,   0]])
    """
    xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
    ijk = nib.affines.apply_affine(np.linalg.inv(affine), xyz)
    # An absurd but finite coordinate (1e308 mm) stays far outside any volume instead of
    # overflowing the integer cast.
    return np.clip(np.round(ijk), -(2**31), 2**31 - 1).astype(int)


def vox2mm(ijk, affine) -> np.ndarray:
    """Convert voxel indices to world coordinates in mm.

    Parameters
    ----------
    ijk : array-like, shape (n, 3)
        Voxel indices.
    affine : array-like, shape (4, 4)
        Voxel-to-world affine.

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        World coordinates.
    """
    return nib.affines.apply_affine(affine, np.atleast_2d(np.asarray(ijk, dtype=float)))


#: A coordinate beyond this many mm from the origin is a column mistake (a t value or a
#: sample size read as a coordinate), not a focus just outside the brain: the 2 mm MNI152
#: volume spans -126..108 mm.
MAX_COORDINATE_MM = 500.0


def outside_volume(ijk, shape) -> np.ndarray:
    """Which voxel indices fall outside a volume.

    Parameters
    ----------
    ijk : array-like, shape (n, 3)
        Voxel indices (e.g. from :func:`mm2vox`).
    shape : sequence of at least 3 ints
        Volume shape.

    Returns
    -------
    numpy.ndarray, shape (n,), bool
        True where an index is negative or beyond the volume along some axis.
    """
    ijk = np.atleast_2d(np.asarray(ijk))
    return np.any((ijk < 0) | (ijk >= np.asarray(shape[:3])), axis=1)


def volume_extent(affine, shape) -> str:
    """Describe a volume's extent in mm, e.g. ``"x -90..90, y -126..90, z -72..108 mm"``.

    Parameters
    ----------
    affine : array-like, shape (4, 4)
        Voxel-to-world affine.
    shape : sequence of at least 3 ints
        Volume shape.

    Returns
    -------
    str
        Range of voxel centres along each world axis.
    """
    ends = vox2mm([[0, 0, 0], np.asarray(shape[:3]) - 1], affine)
    lo, hi = ends.min(axis=0), ends.max(axis=0)
    return ", ".join(f"{a} {lo[n]:g}..{hi[n]:g}" for n, a in enumerate("xyz")) + " mm"


def tal2mni(coords) -> np.ndarray:
    """Convert Talairach coordinates to MNI with Lancaster et al.'s (2007) tal2icbm transform.

    Parameters
    ----------
    coords : array-like, shape (n, 3)
        Talairach coordinates in mm.

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        MNI coordinates.
    """
    return nib.affines.apply_affine(np.linalg.inv(_ICBM_OTHER_TO_TAL), np.atleast_2d(coords))


def mni2tal(coords) -> np.ndarray:
    """Convert MNI coordinates to Talairach with Lancaster et al.'s (2007) icbm2tal transform.

    Parameters
    ----------
    coords : array-like, shape (n, 3)
        MNI coordinates in mm.

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        Talairach coordinates.
    """
    return nib.affines.apply_affine(_ICBM_OTHER_TO_TAL, np.atleast_2d(coords))


def listify(obj) -> list:
    """Wrap a single item in a list; leave lists and tuples as lists.

    Parameters
    ----------
    obj : object
        Anything.

    Returns
    -------
    list
        ``list(obj)`` for lists and tuples, else ``[obj]``.
    """
    return list(obj) if isinstance(obj, list | tuple) else [obj]


def round2(values) -> np.ndarray:
    """Round half away from zero (not to even, as :func:`numpy.round` does).

    Parameters
    ----------
    values : array-like
        Numbers.

    Returns
    -------
    numpy.ndarray of int
        Rounded values.

    Examples
    --------
    >>> round2([0.5, 1.5, -2.5])
    array([ 1,  2, -3])
    """
    values = np.asarray(values, dtype=float)
    return (np.sign(values) * np.floor(np.abs(values) + 0.5)).astype(int)


def check_same_space(img_a, img_b, what: str = "images") -> None:
    """Raise :class:`ImageError` unless two images share shape and affine.

    Parameters
    ----------
    img_a, img_b : nibabel.Nifti1Image
        Images to compare.
    what : str
        Description used in the error message.
    """
    if img_a.shape[:3] != img_b.shape[:3] or not np.allclose(img_a.affine, img_b.affine):
        raise ImageError(
            f"{what} differ in geometry: shape {img_a.shape[:3]} vs {img_b.shape[:3]}, "
            f"affine\n{img_a.affine}\nvs\n{img_b.affine}"
        )
