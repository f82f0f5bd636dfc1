"""Image transforms: derive missing image types of a dataset (NiMARE's ``nimare.transforms``).

:class:`ImageTransformer` fills a target image type (``z``, ``t``, ``p``, ``beta``,
``varcope``, ``se``, ``d``, ``g``, ``g_var``) for every experiment that lacks it but has what
it can be computed from, writes the new images (``{id}_{zooms}_{target}.nii.gz`` in
``dataset.basepath``) and returns a new dataset whose ``images`` table points at them.
:class:`ImagesToCoordinates` turns z or p maps into peak coordinates.

Conversions (dof = sum(sample_sizes) - number of groups; n = sum(sample_sizes)):

=========  =====================================================================
target     computed from (first available)
=========  =====================================================================
z          t + sample_sizes (same tail probability); p (two-sided; sign from t if present)
t          z + sample_sizes
p          t + sample_sizes; z (two-sided)
beta       t + varcope (``t * sqrt(varcope)``), deriving t or varcope first if needed
varcope    se (``se**2``); samplevar_dataset + sample_sizes (``/ n``);
           sd + sample_sizes (``(sd / sqrt(n))**2``); t + beta (``(beta / t)**2``)
se         varcope (``sqrt(varcope)``)
d          t (derived from z or p if needed) + sample_sizes (``t / sqrt(n)``)
g, g_var   d, with Hedges' small-sample correction (:func:`d_to_g`)
=========  =====================================================================

The p <-> z <-> t conversions re-exported here (:func:`p_to_z`, :func:`t_to_z`,
:func:`z_to_p`) are those of :mod:`nimare_jax.stats`.
"""

from __future__ import annotations

import logging
import os

import nibabel as nib
import numpy as np
import pandas as pd
import scipy.stats as sps
from nilearn.reporting import get_clusters_table
from scipy import special

from nimare_jax.dataset import resolve_path, warn_mixed_signs
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError
from nimare_jax.ops import stats as ops_stats
from nimare_jax.spatial import DEFAULT_FLOAT_DTYPE, get_masker, load_image, load_mask
from nimare_jax.stats import _run64, _scalar_if_0d, p_to_z, t_to_z, z_to_p
from nimare_jax.studyset import as_dataset

__all__ = [
    "LGR",
    "ImageTransformer",
    "ImagesToCoordinates",
    "d_to_g",
    "p_to_z",
    "resolve_transforms",
    "sample_sizes_to_dof",
    "sample_sizes_to_sample_size",
    "samplevar_dataset_to_varcope",
    "sd_to_varcope",
    "se_to_varcope",
    "t_and_beta_to_varcope",
    "t_and_varcope_to_beta",
    "t_to_d",
    "t_to_z",
    "threshold_image",
    "transform_images",
    "varcope_to_se",
    "z_to_p",
    "z_to_t",
]

#: The module's logger: conversion notes (an unsigned z from a p map, a skipped analysis)
#: are logged here, as NiMARE logs them, rather than raised as warnings.
LGR = logging.getLogger(__name__)

TARGETS = ("z", "t", "p", "beta", "varcope", "se", "d", "g", "g_var")


def sample_sizes_to_dof(sample_sizes) -> float:
    """Return degrees of freedom ``sum(n) - len(n)`` of a (multi-group) sample.

    Parameters
    ----------
    sample_sizes : int or array-like of int
        Group sample sizes.

    Returns
    -------
    float
        Degrees of freedom.
    """
    n = np.atleast_1d(np.asarray(sample_sizes, float))
    return float(n.sum() - n.size)


def sample_sizes_to_sample_size(sample_sizes) -> float:
    """Return the total sample size ``sum(n)``.

    Parameters
    ----------
    sample_sizes : int or array-like of int
        Group sample sizes.

    Returns
    -------
    float
        Total.
    """
    return float(np.sum(np.atleast_1d(np.asarray(sample_sizes, float))))


def se_to_varcope(se):
    """Return the variance ``se**2``.

    Parameters
    ----------
    se : array-like
        Standard errors.

    Returns
    -------
    numpy.ndarray
        Variances.
    """
    return np.asarray(se, float) ** 2


def varcope_to_se(varcope):
    """Return the standard error ``sqrt(varcope)`` (NaN where varcope < 0).

    Parameters
    ----------
    varcope : array-like
        Variances.

    Returns
    -------
    numpy.ndarray
        Standard errors.
    """
    v = np.asarray(varcope, float)
    return np.sqrt(np.where(v >= 0, v, np.nan))


def sd_to_varcope(sd, sample_size):
    """Return the variance of a mean, ``(sd / sqrt(n))**2``.

    Parameters
    ----------
    sd : array-like
        Standard deviations.
    sample_size : float
        Sample size.

    Returns
    -------
    numpy.ndarray
        Variances.
    """
    return se_to_varcope(np.asarray(sd, float) / np.sqrt(sample_size))


def t_and_varcope_to_beta(t, varcope):
    """Return ``beta = t * sqrt(varcope)``.

    Parameters
    ----------
    t, varcope : array-like
        T statistics and variances.

    Returns
    -------
    numpy.ndarray
        Effect estimates.
    """
    return np.asarray(t, float) * varcope_to_se(varcope)


def t_and_beta_to_varcope(t, beta):
    """Return ``varcope = (beta / t)**2`` (NaN where t = 0).

    Parameters
    ----------
    t, beta : array-like
        T statistics and effect estimates.

    Returns
    -------
    numpy.ndarray
        Variances.
    """
    t = np.asarray(t, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t != 0, (np.asarray(beta, float) / t) ** 2, np.nan)


def z_to_t(z, dof):
    """Convert z to t statistics with the same one-tailed probability.

    Parameters
    ----------
    z : array-like
        Z statistics.
    dof : float
        Degrees of freedom.

    Returns
    -------
    numpy.ndarray
        Signed t statistics; finite wherever the matching t fits in a double (as NiMARE
        0.22, which no longer saturates or overflows at large ``|z|``).

    Notes
    -----
    The tail probability of ``|z|`` is inverted with :func:`scipy.stats.t.isf` while it is
    representable (above 1e-280); beyond, its logarithm is matched to the t distribution's
    log tail, written with the incomplete-beta series
    ``P(T > t) = x^a (1 - x)^b 2F1(a + b, 1; a + 1; x) / (2 a B(a, b))`` with
    ``x = dof / (dof + t^2)``, ``a = dof / 2``, ``b = 1 / 2``, solved by bisection in
    ``log t``. Infinity is returned only when that ``t`` exceeds the largest double.
    """
    z = np.asarray(z, float)
    mag = np.atleast_1d(np.abs(z))
    with np.errstate(over="ignore", under="ignore"):
        p = sps.norm.sf(mag)
        t = np.asarray(sps.t.isf(p, dof), float)
    deep = (p < 1e-280) | ~np.isfinite(t)
    if deep.any():
        t[deep] = _t_isf_from_log(sps.norm.logsf(mag[deep]), float(dof))
    return np.sign(z) * t.reshape(z.shape) + 0.0


def _t_log_sf(log_t, dof: float) -> np.ndarray:
    """Log of the t distribution's upper tail at ``exp(log_t)``, accurate deep in the tail."""
    a, b = dof / 2.0, 0.5
    log_x = np.log(dof) - np.logaddexp(np.log(dof), 2.0 * log_t)
    x = np.exp(log_x)
    series = special.hyp2f1(a + b, 1.0, a + 1.0, x)
    return (
        np.log(0.5)
        + a * log_x
        + b * np.log1p(-x)
        - np.log(a)
        - special.betaln(a, b)
        + np.log(series)
    )


def _t_isf_from_log(log_p, dof: float) -> np.ndarray:
    """Return the ``t`` whose upper tail has logarithm ``log_p`` (bisection in ``log t``)."""
    lo = np.zeros_like(log_p)
    hi = np.full_like(log_p, 1000.0)  # t = e^1000 is beyond any double
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        above = _t_log_sf(mid, dof) > log_p  # tail still too heavy: t must grow
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    with np.errstate(over="ignore"):
        return np.exp(0.5 * (lo + hi))


def _image_values(value, key: str, masker) -> np.ndarray:
    """Return an image (path or loaded) as the 1-D float64 values of ``masker``'s voxels."""
    if isinstance(value, str | os.PathLike):
        value = load_image(value, f"{key} image")
    return np.asarray(masker.transform(value), dtype=np.float64).reshape(-1)


def _derive(target: str, available: dict, masker, cache: dict):
    """Return the masked values of ``target`` computed from ``available``, or None.

    ``cache`` holds the values already read or derived, so a chain of conversions (p -> z ->
    t -> g) reads each file once.
    """
    if target in cache:
        return cache[target]

    def have(key):
        return key in available

    def values(key):
        if key not in cache:
            cache[key] = _image_values(available[key], key, masker)
        return cache[key]

    n = available.get("sample_sizes")
    out = None
    if have(target):
        out = values(target)
    elif target == "z":
        if have("t") and n is not None:
            out = t_to_z(values("t"), sample_sizes_to_dof(n))
        elif have("p"):
            out = p_to_z(values("p"), tail="two")
            if have("t"):  # no sample size: p gives the magnitude, t the sign
                out = np.sign(values("t")) * out
            else:
                prefix = f"{available['id']}: " if "id" in available else ""
                LGR.warning(
                    f"{prefix}z derived from a p map is unsigned (a p-value has no direction; "
                    "p is read as two-sided), so it is unsuitable for signed tests such as "
                    "Stouffers"
                )
    elif target == "t":
        z = _derive("z", available, masker, cache)
        if z is not None and n is not None:
            out = z_to_t(z, sample_sizes_to_dof(n))
    elif target in ("d", "g", "g_var"):
        t = _derive("t", available, masker, cache)
        if t is not None and n is not None:
            if np.size(n) > 1:
                LGR.warning(
                    f"'{target}' from {np.size(n)} group sample sizes uses the one-sample "
                    "d = t / sqrt(N); a between-group contrast needs each group's size"
                )
            total = sample_sizes_to_sample_size(n)
            d = t_to_d(t, total)
            if target == "d":
                out = d
            else:
                g, g_var = d_to_g(d, total, return_variance=True)
                out = g if target == "g" else g_var
    elif target == "p":
        if have("t") and n is not None:
            out = z_to_p(t_to_z(values("t"), sample_sizes_to_dof(n)), tail="two")
        elif have("z"):
            out = z_to_p(values("z"), tail="two")
    elif target == "beta":
        t = _derive("t", available, masker, cache)
        v = _derive("varcope", available, masker, cache)
        if t is not None and v is not None:
            out = t_and_varcope_to_beta(t, v)
    elif target == "varcope":
        if have("se"):
            out = se_to_varcope(values("se"))
        elif have("samplevar_dataset") and n is not None:
            out = samplevar_dataset_to_varcope(
                values("samplevar_dataset"), sample_sizes_to_sample_size(n)
            )
        elif have("sd") and n is not None:
            out = sd_to_varcope(values("sd"), sample_sizes_to_sample_size(n))
        elif have("t") and have("beta"):
            out = t_and_beta_to_varcope(values("t"), values("beta"))
    elif target == "se":
        v = _derive("varcope", available, masker, cache)
        if v is not None:
            out = varcope_to_se(v)
    if out is not None:
        cache[target] = np.asarray(out, dtype=np.float64).reshape(-1)
        return cache[target]
    return None


def resolve_transforms(target: str, available_data: dict, masker):
    """Compute an image of type ``target`` from what one analysis has, as NiMARE does.

    Parameters
    ----------
    target : {"z", "t", "p", "beta", "varcope", "se", "d", "g", "g_var"}
        Image type wanted. ``"d"`` is Cohen's d (``t / sqrt(N)``), ``"g"`` Hedges' g and
        ``"g_var"`` its sampling variance (:func:`d_to_g`). ``"se"`` is an extension of
        NiMARE's targets.
    available_data : dict
        Image types mapped to images (paths or loaded images), plus metadata such as
        ``sample_sizes`` and ``id`` (named in warnings).
    masker : nilearn.maskers.NiftiMasker
        Fitted masker: images are read through ``masker.transform`` and the result is
        written back with ``masker.inverse_transform``.

    Returns
    -------
    nibabel.Nifti1Image, the input entry, or None
        The new image (float32, 3-D); ``available_data[target]`` itself (with a logged
        warning) if the target is already there; None if it cannot be computed (for
        instance ``d``/``g``/``g_var`` without a sample size).

    Notes
    -----
    Conversions follow NiMARE 0.22.1 (see the table in the module docstring). A ``z``
    derived from a p map alone has no sign and is logged as such through :data:`LGR`; a t
    map beside the p map gives the sign. ``d``, ``g`` and ``g_var`` use the one-sample
    ``d = t / sqrt(N)`` with ``N = sum(sample_sizes)`` and log a warning when several group
    sizes are given.
    """
    if target in available_data:
        LGR.warning(f"Target '{target}' already available.")
        return available_data[target]
    values = _derive(target, available_data, masker, {})
    if values is None:
        return None
    return masker.inverse_transform(values.astype(DEFAULT_FLOAT_DTYPE))


def _full_grid_masker(masker):
    """Return a masker of every voxel of ``masker``'s grid (derived maps are saved whole)."""
    mask_img = load_mask(masker)
    ones = nib.Nifti1Image(np.ones(mask_img.shape[:3], np.int8), mask_img.affine)
    return get_masker(ones)


def transform_images(
    images_df, target: str, masker, metadata_df=None, out_dir=None, overwrite: bool = False
):
    """Write images of type ``target`` for the analyses that lack one, where computable.

    Parameters
    ----------
    images_df : pandas.DataFrame
        One row per analysis: ``id`` and one column of image paths per type.
    target : {"z", "t", "p", "beta", "varcope", "se", "d", "g", "g_var"}
        Image type to derive (see :func:`resolve_transforms`).
    masker : nilearn.maskers.NiftiMasker, nibabel image or path
        Its grid (every voxel of it, not only the mask's) is the grid of the new images.
    metadata_df : pandas.DataFrame or None
        Metadata with an ``id`` column (``sample_sizes`` is what the conversions read).
    out_dir : str, pathlib.Path or None
        Folder of the new files; None writes each next to the analysis' first existing image
        (an analysis with none is skipped, with a logged warning).
    overwrite : bool
        Rewrite files that exist (default False: an existing file is reused).

    Returns
    -------
    pandas.DataFrame
        A copy of ``images_df`` whose ``target`` column holds the new files
        (``{id}_{zooms}_{target}.nii.gz``, zooms as ``2.0x2.0x2.0``) and None where the
        image cannot be computed; existing entries are kept.
    """
    if target not in TARGETS:
        raise ValueError(f"unsupported target image type {target!r}; choose from {TARGETS}")
    full = _full_grid_masker(masker)
    zooms = "x".join(str(z) for z in load_mask(masker).header.get_zooms())
    out = images_df.copy()
    if target in images_df.columns:
        todo = images_df.loc[images_df[target].isnull(), "id"].tolist()
    else:
        todo = images_df["id"].tolist()
    meta = None if metadata_df is None else metadata_df.drop_duplicates("id").set_index("id")
    for ident in todo:
        row = images_df.loc[images_df["id"] == ident].iloc[0]
        if out_dir is None:
            files = [v for v in row.to_numpy() if isinstance(v, str) and os.path.isfile(v)]
            if not files:
                LGR.warning(f"No existing image files for {ident}, skipping {target} transform.")
                continue
            folder = os.path.dirname(files[0])
        else:
            folder = os.fspath(out_dir)
        available = {k: v for k, v in row.items() if not _missing(v)}
        if meta is not None and ident in meta.index:
            for key, value in meta.loc[ident].items():
                if key not in available and not _missing(value):
                    available[key] = value
        img = resolve_transforms(target, available, full)
        new_file = None
        if img is not None:
            new_file = os.path.join(folder, f"{ident}_{zooms}_{target}.nii.gz")
            if overwrite or not os.path.isfile(new_file):
                os.makedirs(folder, exist_ok=True)
                img.to_filename(new_file)
        if target not in out.columns:
            out[target] = None
        out[target] = out[target].astype(object)
        out.loc[out["id"] == ident, target] = new_file
    if target not in out.columns:
        out[target] = None
    return out


def _missing(value) -> bool:
    """Tell whether a cell is None or NaN (NiMARE drops a row's null cells before converting)."""
    if value is None:
        return True
    return isinstance(value, float | np.floating) and np.isnan(value)


class ImageTransformer:
    """Create images of new types from the existing ones of a dataset.

    Parameters
    ----------
    target : str or list of str
        Image type(s) to derive: ``"z"``, ``"t"``, ``"p"``, ``"beta"``, ``"varcope"``,
        ``"se"``, ``"d"``, ``"g"``, ``"g_var"``.
    overwrite : bool
        Rewrite files that already exist (default False).
    """

    def __init__(self, target, overwrite: bool = False):
        self.target = [target] if isinstance(target, str) else list(target)
        bad = [t for t in self.target if t not in TARGETS]
        if bad:
            raise ValueError(f"unsupported target image type(s) {bad}; choose from {TARGETS}")
        self.overwrite = overwrite

    def transform(self, dataset):
        """Return a copy of ``dataset`` with the target image types added.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset or nimare_jax.studyset.Studyset
            Images, a masker, and ``sample_sizes`` metadata for the conversions that need it.

        Returns
        -------
        nimare_jax.dataset.Dataset
            New dataset; new images are written to ``dataset.basepath`` (else next to each
            analysis' images), on the grid of ``dataset.masker``.
        """
        dataset = as_dataset(dataset)
        if dataset.images is None or "id" not in dataset.images.columns:
            raise DatasetError("the dataset has no images table")
        if dataset.masker is None:
            raise DatasetError("the dataset has no masker; assign one to dataset.masker")
        images = dataset.images.copy()
        for col in [c for c in images.columns if c not in _ID_COLUMNS]:
            if not col.endswith("__relative"):
                images[col] = [resolve_path(v, dataset.basepath) for v in images[col]]
        for target in self.target:
            images = transform_images(
                images,
                target,
                dataset.masker,
                metadata_df=dataset.metadata,
                out_dir=dataset.basepath,
                overwrite=self.overwrite,
            )
            # the derived paths are absolute: a stale "<target>__relative" would override them
            images = images.drop(columns=[f"{target}__relative"], errors="ignore")
        return dataset.with_images(images)


_ID_COLUMNS = ("id", "study_id", "contrast_id", "space")


def threshold_image(image, threshold, thresholding_values=None, tail="upper", fill_value=0):
    """Keep an image's values where a threshold criterion passes, ``fill_value`` elsewhere.

    Parameters
    ----------
    image : numpy.ndarray, nibabel image or path
        Values to keep.
    threshold : float
        Threshold applied to ``thresholding_values`` (default: ``image`` itself).
    thresholding_values : numpy.ndarray, nibabel image, path or None
        Values deciding which voxels survive; same shape as ``image``.
    tail : {"upper", "lower", "two-sided"}
        Keep values ``>= threshold``, ``<= threshold`` or with ``|value| >= threshold``.
    fill_value : scalar
        Value of the voxels that do not survive (default 0).

    Returns
    -------
    numpy.ndarray or nibabel image
        Same container as ``image`` (an image keeps its affine and header); floating data
        keep their dtype.

    Raises
    ------
    ValueError
        For another ``tail``, an input of another type, or shapes that differ.
    """

    def as_array_or_image(obj, what):
        if isinstance(obj, np.ndarray):
            return obj, np.asarray(obj)
        if isinstance(obj, str | os.PathLike):
            obj = load_image(obj, what)
        if isinstance(obj, nib.spatialimages.SpatialImage):
            return obj, np.asanyarray(obj.dataobj)
        raise ValueError(
            f"{what} must be a numpy array, a nibabel image or an image path, "
            f"got {type(obj).__name__}"
        )

    if tail not in ("upper", "lower", "two-sided"):
        raise ValueError(f"tail must be 'upper', 'lower' or 'two-sided', got {tail!r}")
    image, data = as_array_or_image(image, "image")
    if thresholding_values is None:
        decide = data
    else:
        decide = as_array_or_image(thresholding_values, "thresholding_values")[1]
    if decide.shape != data.shape:
        raise ValueError(
            f"image and thresholding_values differ in shape: {data.shape} and {decide.shape}"
        )
    if tail == "upper":
        keep = decide >= threshold
    elif tail == "lower":
        keep = decide <= threshold
    else:
        keep = np.abs(decide) >= threshold
    out = np.where(keep, data, fill_value)
    if np.issubdtype(data.dtype, np.floating):
        out = out.astype(data.dtype, copy=False)
    if isinstance(image, np.ndarray):
        return out
    header = image.header.copy()
    header.set_data_dtype(out.dtype)
    return image.__class__(out, image.affine, header)


def t_to_d(t_values, sample_sizes):
    """Convert one-sample t statistics to Cohen's d, ``d = t / sqrt(N)``.

    Parameters
    ----------
    t_values : array-like
        T statistics.
    sample_sizes : float or array-like
        Sample size ``N`` (broadcast against ``t_values``).

    Returns
    -------
    numpy.ndarray
        Cohen's d.
    """
    return np.asarray(t_values, float) / np.sqrt(np.asarray(sample_sizes, float))


def d_to_g(d, N, return_variance: bool = False):
    """Convert Cohen's d to Hedges' g, optionally with g's sampling variance.

    Parameters
    ----------
    d : array-like
        Cohen's d.
    N : float or array-like
        Sample size.
    return_variance : bool
        Also return the variance.

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        ``g = h d`` with the small-sample correction ``h = 1 - 3 / (4 (N - 1) - 1)``; with
        ``return_variance``, also ``(N - 1)(1 + N d^2) h^2 / (N (N - 3)) - d^2`` (NiMARE
        0.22.1's expression).
    """
    d = np.asarray(d, float)
    n = np.asarray(N, float)
    h = 1.0 - 3.0 / (4.0 * (n - 1.0) - 1.0)
    g = d * h
    if not return_variance:
        return g
    return g, (n - 1.0) * (1.0 + n * d**2) * h**2 / (n * (n - 3.0)) - d**2


def samplevar_dataset_to_varcope(samplevar_dataset, sample_size):
    """Return the variance of a mean from the sample variance, ``samplevar / n``.

    Parameters
    ----------
    samplevar_dataset : array-like
        Sample variances.
    sample_size : float
        Sample size.

    Returns
    -------
    numpy.ndarray
        Variances.
    """
    return np.asarray(samplevar_dataset, float) / float(sample_size)


class ImagesToCoordinates:
    """Find peaks in the z (or p) maps of a dataset and use them as coordinates.

    Parameters
    ----------
    merge_strategy : {"fill", "replace", "demolish"}
        ``"fill"`` (default): only analyses without coordinates get peaks. ``"replace"``:
        peaks replace an analysis' coordinates where peaks are found; other analyses keep
        theirs. ``"demolish"``: only the peaks are kept; analyses without any are left
        without coordinates.
    cluster_threshold : int or None
        Minimum cluster size in voxels (None: no minimum).
    remove_subpeaks : bool
        Keep only each cluster's main peak (default False).
    two_sided : bool
        Also find peaks of negative z (default False; not possible from a p map).
    min_distance : float
        Minimum distance between subpeaks, in mm (default 8).
    z_threshold : float
        Cluster-forming threshold on the uncorrected z (default 3.1). A p map is thresholded
        at the two-sided p of this z.

    Notes
    -----
    Peaks are found by :func:`nilearn.reporting.get_clusters_table`, as in NiMARE 0.22.1;
    a p map is read as ``1 - p`` and its peaks' values are returned as z. What happens to
    each analysis (no map, no cluster above the threshold) is logged through :data:`LGR`.
    """

    def __init__(
        self,
        merge_strategy="fill",
        cluster_threshold=None,
        remove_subpeaks=False,
        two_sided=False,
        min_distance=8.0,
        z_threshold=3.1,
    ):
        if merge_strategy not in ("fill", "replace", "demolish"):
            raise ValueError(
                f"merge_strategy must be 'fill', 'replace' or 'demolish', got {merge_strategy!r}"
            )
        self.merge_strategy = merge_strategy
        self.cluster_threshold = cluster_threshold
        self.remove_subpeaks = remove_subpeaks
        self.two_sided = two_sided
        self.min_distance = min_distance
        self.z_threshold = z_threshold

    def transform(self, dataset):
        """Return a copy of ``dataset`` whose coordinates include the peaks of its maps.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset or nimare_jax.studyset.Studyset
            Analyses with ``z`` and/or ``p`` images.

        Returns
        -------
        nimare_jax.dataset.Dataset
            New dataset: coordinates merged by ``merge_strategy`` (peaks carry their z in a
            ``z_stat`` column) and a ``coordinate_source`` metadata column, ``"nimare"`` for
            analyses whose coordinates are peaks and ``"original"`` otherwise.
        """
        dataset = as_dataset(dataset)
        have_coords = set(dataset.coordinates["id"])
        threshold = 0 if self.cluster_threshold is None else self.cluster_threshold
        peaks = []
        for _, row in dataset.images.iterrows():
            ident = str(row["id"])
            if self.merge_strategy == "fill" and ident in have_coords:
                continue
            z_path = resolve_path(row.get("z"), dataset.basepath)
            p_path = resolve_path(row.get("p"), dataset.basepath)
            if z_path is not None:
                img = nib.funcs.squeeze_image(load_image(z_path, "z image"))
                clusters = get_clusters_table(
                    img,
                    self.z_threshold,
                    threshold,
                    two_sided=self.two_sided,
                    min_distance=self.min_distance,
                )
            elif p_path is not None:
                LGR.info(f"No Z map for {ident}, using p map (its peaks are given as z)")
                if self.two_sided:
                    LGR.warning(f"Cannot use two_sided threshold using a p map for {ident}")
                img = nib.funcs.squeeze_image(load_image(p_path, "p image"))
                one_minus_p = nib.Nifti1Image(
                    1.0 - img.get_fdata(dtype=DEFAULT_FLOAT_DTYPE), img.affine, img.header
                )
                clusters = get_clusters_table(
                    one_minus_p,
                    1.0 - z_to_p(self.z_threshold),
                    threshold,
                    two_sided=False,
                    min_distance=self.min_distance,
                )
                clusters["Peak Stat"] = p_to_z(1.0 - clusters["Peak Stat"].to_numpy(float))
            else:
                LGR.warning(f"No Z or p map for {ident}, skipping...")
                continue
            if clusters.empty:
                LGR.warning(
                    f"No clusters were found for {ident} at a threshold of {self.z_threshold}"
                )
                continue
            if self.remove_subpeaks:  # subpeaks have ids such as "1a"; main peaks are ints
                clusters = clusters[clusters["Cluster ID"].map(lambda c: isinstance(c, int))]
            peaks.append(
                pd.DataFrame(
                    {
                        "id": ident,
                        "study_id": row.get("study_id", ident),
                        "contrast_id": row.get("contrast_id", ident),
                        "x": clusters["X"].to_numpy(float),
                        "y": clusters["Y"].to_numpy(float),
                        "z": clusters["Z"].to_numpy(float),
                        "z_stat": clusters["Peak Stat"].to_numpy(float),
                        "space": _coordinate_space(dataset.space),
                    }
                )
            )
        new_coords = pd.concat(peaks, ignore_index=True) if peaks else None
        generated = set() if new_coords is None else set(new_coords["id"])
        old = dataset.coordinates.drop(columns=["i", "j", "k"], errors="ignore")
        if self.merge_strategy != "demolish":
            old = old[~old["id"].isin(generated)]
            parts = [p for p in (new_coords, old) if p is not None]
        else:
            parts = [new_coords] if new_coords is not None else [old.iloc[:0]]
        coords = pd.concat(parts, ignore_index=True, sort=False)
        if "z_stat" in coords.columns:
            coords["z_stat"] = coords["z_stat"].astype(float)
            warn_mixed_signs(coords["z_stat"].to_numpy(), stacklevel=3)
        new = dataset.copy()
        new.coordinates = coords
        metadata = new.metadata.copy()
        metadata["coordinate_source"] = [
            "nimare" if str(i) in generated else "original" for i in metadata["id"]
        ]
        new.metadata = metadata
        return new


def _coordinate_space(space) -> str:
    """Name of the coordinates' space (MNI or TAL) for a dataset's template space."""
    key = str(space or "").lower()
    return "TAL" if "tal" in key else "MNI"


# ----------------------------------------------------------------------------- log space
# NiMARE 0.21+ converters to and from ``nlogp``, the natural logarithm of a p-value (not
# negated, unlike the ``logp = -log10(p)`` maps), finite where the p-value underflows.

__all__ += ["chi2_to_nlogp", "nlogp_to_z", "t_to_nlogp", "z_to_nlogp"]

_LENTZ_TINY = 1e-300
_LENTZ_MAX_ITER = 500


def z_to_nlogp(z, tail: str = "two"):
    """Convert z-values to natural-log p-values.

    Parameters
    ----------
    z : float or array-like
        Z-statistics.
    tail : {"two", "one"}
        ``"two"``: ``log P(|Z| >= |z|)``; ``"one"``: ``log P(Z >= z)``.

    Returns
    -------
    float or numpy.ndarray
        ``log(p) <= 0``, finite for every finite ``z`` (``z = 50`` gives -1254.8, where
        ``p`` itself underflows).

    Examples
    --------
    >>> float(np.exp(z_to_nlogp(1.959963984540054)).round(6))
    0.05
    """
    return _scalar_if_0d(_run64(ops_stats.z_to_logp, z, tail=tail))


def nlogp_to_z(nlogp, tail: str = "two"):
    """Convert natural-log p-values to unsigned z-values.

    Parameters
    ----------
    nlogp : float or array-like
        ``log(p)``, as :func:`z_to_nlogp` returns it.
    tail : {"two", "one"}
        Whether the p-values are two- or one-sided.

    Returns
    -------
    float or numpy.ndarray
        ``z >= 0``; a one-sided ``p >= 0.5`` gives 0 and ``nlogp = -inf`` gives ``inf``.

    Examples
    --------
    >>> float(nlogp_to_z(np.log(0.05)).round(4))
    1.96
    """
    return _scalar_if_0d(_run64(ops_stats.logp_to_z, nlogp, tail=tail) + 0.0)


@fill_doc
def t_to_nlogp(t_values, dof, tail: str = "two"):
    """Convert t-statistics to natural-log p-values.

    Parameters
    ----------
    %(t_values_dof)s
    tail : {"two", "one"}
        ``"two"``: ``log P(|T| >= |t|)``; ``"one"``: ``log P(T >= t)``.

    Returns
    -------
    float or numpy.ndarray
        ``log(p) <= 0``, finite where the p-value underflows.

    Notes
    -----
    The tail is that of :func:`nimare_jax.stats.t_to_z` (exact in logs at any depth) read
    back through the normal tail, ``log sf_t(t) = log sf_N(z(t))``.

    Examples
    --------
    >>> float(np.exp(t_to_nlogp(2.0, 10)).round(6))
    0.073388
    """
    z = np.asarray(t_to_z(t_values, dof), dtype=float)
    return _scalar_if_0d(_run64(ops_stats.z_to_logp, z, tail=tail))


def _log_gamma_q_cf(a, x):
    """``log Q(a, x)`` (regularized upper incomplete gamma) by its continued fraction.

    ``Q = exp(-x + a log x - lgamma(a)) * F`` with ``F`` the continued fraction evaluated by
    the modified Lentz method; only the logarithm of the prefactor is formed, so nothing
    underflows. Converges in a few terms for ``x`` well above ``a``, the region where
    ``Q`` underflows and this is used.
    """
    b = x + 1.0 - a
    c = np.full_like(x, 1.0 / _LENTZ_TINY)
    d = 1.0 / b
    h = d.copy()
    for i in range(1, _LENTZ_MAX_ITER + 1):
        an = -i * (i - a)
        b = b + 2.0
        d = an * d + b
        d = np.where(np.abs(d) < _LENTZ_TINY, _LENTZ_TINY, d)
        c = b + an / c
        c = np.where(np.abs(c) < _LENTZ_TINY, _LENTZ_TINY, c)
        d = 1.0 / d
        step = d * c
        h = h * step
        if np.all(np.abs(step - 1.0) < 1e-16):
            break
    return -x + a * np.log(x) - special.gammaln(a) + np.log(h)


def chi2_to_nlogp(chi2_values, dof):
    """Convert chi-square statistics to natural-log p-values (upper tail).

    Parameters
    ----------
    chi2_values : float or array-like
        Chi-square statistics (non-negative).
    dof : int, float or array-like
        Degrees of freedom, broadcastable against ``chi2_values``.

    Returns
    -------
    float or numpy.ndarray
        ``log P(chi2_dof >= x) <= 0``, finite where the p-value underflows.

    Notes
    -----
    One degree of freedom is the two-sided normal tail at ``sqrt(x)``. Otherwise SciPy's
    ``chi2.logsf`` is used where it is finite, and the continued fraction of the upper
    incomplete gamma function, in logs, beyond.

    Examples
    --------
    >>> float(np.exp(chi2_to_nlogp(3.841458820694124, 1)).round(6))
    0.05
    """
    x = np.asarray(chi2_values, dtype=float)
    if np.ndim(dof) == 0 and dof == 1:
        return _scalar_if_0d(_run64(ops_stats.z_to_logp, np.sqrt(x), tail="two"))
    x, df = np.broadcast_arrays(x, np.asarray(dof, dtype=float))
    with np.errstate(divide="ignore"):
        out = np.array(sps.chi2.logsf(x, df), dtype=float)
    far = ~np.isfinite(out) & np.isfinite(x) & (x > 0)
    if far.any():
        out[far] = _log_gamma_q_cf(df[far] / 2.0, x[far] / 2.0)
    return _scalar_if_0d(np.minimum(out, 0.0))
