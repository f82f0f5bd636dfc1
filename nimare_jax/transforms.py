"""Image transforms: derive missing image types of a dataset (NiMARE's ``nimare.transforms``).

:class:`ImageTransformer` fills a target image type (``z``, ``t``, ``p``, ``beta``,
``varcope``, ``se``) for every experiment that lacks it but has what it can be computed
from, writes the new images next to the dataset (``{id}_{resolution}_{target}.nii.gz`` in
``dataset.basepath``) and returns a new dataset whose ``images`` table points at them.

Conversions (dof = sum(sample_sizes) - number of groups; n = sum(sample_sizes)):

=========  =====================================================================
target     computed from (first available)
=========  =====================================================================
z          t + sample_sizes (same tail probability); p (two-sided; sign from t if present)
t          z + sample_sizes
p          t + sample_sizes; z (two-sided)
beta       t + varcope (``t * sqrt(varcope)``), deriving t or varcope first if needed
varcope    se (``se**2``); sd + sample_sizes (``(sd / sqrt(n))**2``);
           samplevar_dataset + sample_sizes (``/ n``); t + beta (``(beta / t)**2``)
se         varcope (``sqrt(varcope)``)
=========  =====================================================================

The p <-> z <-> t conversions re-exported here (:func:`p_to_z`, :func:`t_to_z`,
:func:`z_to_p`) are those of :mod:`nimare_jax.stats`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.special as sps_special
import scipy.stats as sps

from nimare_jax.exceptions import DatasetError
from nimare_jax.io.images import load_image, resolve_path
from nimare_jax.spatial import load_mask
from nimare_jax.stats import p_to_z, t_to_z, z_to_p

__all__ = [
    "ImageTransformer",
    "p_to_z",
    "resolve_transforms",
    "sample_sizes_to_dof",
    "sample_sizes_to_sample_size",
    "sd_to_varcope",
    "se_to_varcope",
    "t_and_beta_to_varcope",
    "t_and_varcope_to_beta",
    "t_to_z",
    "transform_images",
    "varcope_to_se",
    "z_to_p",
    "z_to_t",
]

TARGETS = ("z", "t", "p", "beta", "varcope", "se")


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
    series = sps_special.hyp2f1(a + b, 1.0, a + 1.0, x)
    return (
        np.log(0.5)
        + a * log_x
        + b * np.log1p(-x)
        - np.log(a)
        - sps_special.betaln(a, b)
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


def _get(available, key):
    value = available[key]
    if isinstance(value, str | Path):
        img = load_image(value, f"image {key!r}")
        return np.asarray(img.get_fdata(dtype=np.float64)), img
    return value


def resolve_transforms(target: str, available: dict):
    """Compute a target image from what an experiment has.

    Parameters
    ----------
    target : {"z", "t", "p", "beta", "varcope", "se"}
        Image type wanted.
    available : dict
        Image types mapped to paths (or ``(array, image)`` pairs already loaded), plus
        metadata such as ``sample_sizes`` and ``id``.

    Returns
    -------
    tuple of (numpy.ndarray, nibabel image) or None
        The data and an image whose grid it is on, or None if it cannot be computed.
    """
    have = {k: v for k, v in available.items() if v is not None}
    if target in have:
        return _get(have, target)
    n = have.get("sample_sizes")
    out = None
    if target == "z":
        if "t" in have and n is not None:
            t, img = _get(have, "t")
            out = (t_to_z(t, sample_sizes_to_dof(n)), img)
        elif "p" in have:
            p, img = _get(have, "p")
            z = p_to_z(p, tail="two")
            if "t" in have:
                z = np.sign(_get(have, "t")[0]) * z
            else:
                warnings.warn(
                    f"{have.get('id', 'experiment')}: z derived from a p map has no sign "
                    "(p is read as two-sided); it is unsuitable for signed tests",
                    UserWarning,
                    stacklevel=3,
                )
            out = (z, img)
    elif target == "t":
        z = resolve_transforms("z", have)
        if z is not None and n is not None:
            out = (z_to_t(z[0], sample_sizes_to_dof(n)), z[1])
    elif target == "p":
        if "t" in have and n is not None:
            t, img = _get(have, "t")
            out = (z_to_p(t_to_z(t, sample_sizes_to_dof(n)), tail="two"), img)
        elif "z" in have:
            z, img = _get(have, "z")
            out = (z_to_p(z, tail="two"), img)
    elif target == "beta":
        t = resolve_transforms("t", have)
        v = resolve_transforms("varcope", have)
        if t is not None and v is not None:
            out = (t_and_varcope_to_beta(t[0], v[0]), t[1])
    elif target == "varcope":
        if "se" in have:
            se, img = _get(have, "se")
            out = (se_to_varcope(se), img)
        elif "sd" in have and n is not None:
            sd, img = _get(have, "sd")
            out = (sd_to_varcope(sd, sample_sizes_to_sample_size(n)), img)
        elif "samplevar_dataset" in have and n is not None:
            sv, img = _get(have, "samplevar_dataset")
            out = (sv / sample_sizes_to_sample_size(n), img)
        elif "t" in have and "beta" in have:
            t, img = _get(have, "t")
            out = (t_and_beta_to_varcope(t, _get(have, "beta")[0]), img)
    elif target == "se":
        v = resolve_transforms("varcope", have)
        if v is not None:
            out = (varcope_to_se(v[0]), v[1])
    return out


def transform_images(dataset, target: str, out_dir=None, overwrite: bool = False):
    """Return a dataset with images of type ``target`` added where they can be computed.

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        The dataset.
    target : {"z", "t", "p", "beta", "varcope", "se"}
        Image type to derive.
    out_dir : str or pathlib.Path, optional
        Where to write the new images (default ``dataset.basepath``, else the folder of each
        experiment's first image).
    overwrite : bool
        Rewrite files that already exist.

    Returns
    -------
    nimare_jax.dataset.Dataset
        A new dataset; experiments that cannot be converted keep no ``target`` image.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {list(TARGETS)}, got {target!r}")
    images = dataset.images.copy()
    if target not in images.columns:
        images[target] = None
    images[target] = images[target].astype(object)
    meta = dataset.metadata.set_index("id")
    zooms = "x".join(f"{z:g}" for z in load_mask(dataset.masker).header.get_zooms()[:3])
    for row in images.itertuples(index=False):
        ident = str(row.id)
        current = getattr(row, target)
        if isinstance(current, str) and current:
            continue
        available = {
            col: resolve_path(getattr(row, col), dataset.basepath)
            for col in images.columns
            if col not in ("id", "study_id", "contrast_id", target)
        }
        available["id"] = ident
        if "sample_sizes" in meta.columns and ident in meta.index:
            n = meta.at[ident, "sample_sizes"]
            if n is not None and not (np.isscalar(n) and np.isnan(n)):
                available["sample_sizes"] = n
        folder = out_dir or dataset.basepath
        if folder is None:
            paths = [v for k, v in available.items() if isinstance(v, str) and Path(v).is_file()]
            if not paths:
                continue
            folder = Path(paths[0]).parent
        out = resolve_transforms(target, {k: v for k, v in available.items() if v is not None})
        if out is None:
            continue
        data, ref = out
        new_file = Path(folder) / f"{ident}_{zooms}_{target}.nii.gz"
        if overwrite or not new_file.exists():
            Path(folder).mkdir(parents=True, exist_ok=True)
            nib.Nifti1Image(np.asarray(data, np.float32), ref.affine).to_filename(new_file)
        images.loc[images["id"] == row.id, target] = str(new_file)
    # the derived paths are absolute: a stale "<target>__relative" would override them
    return dataset.with_images(images.drop(columns=[f"{target}__relative"], errors="ignore"))


class ImageTransformer:
    """Create images of new types from the existing ones of a dataset.

    Parameters
    ----------
    target : str or list of str
        Image type(s) to derive: ``"z"``, ``"t"``, ``"p"``, ``"beta"``, ``"varcope"``,
        ``"se"``.
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
        dataset : nimare_jax.dataset.Dataset
            Dataset with images (and ``sample_sizes`` metadata for t <-> z conversions).

        Returns
        -------
        nimare_jax.dataset.Dataset
            New dataset; new images are written to ``dataset.basepath``.
        """
        if dataset.images is None or "id" not in dataset.images.columns:
            raise DatasetError("the dataset has no images table")
        for target in self.target:
            dataset = transform_images(dataset, target, overwrite=self.overwrite)
        return dataset
