"""Simulated meta-analysis datasets (NiMARE's ``nimare.generate``).

Coordinates: foci are drawn on the voxel grid of the ``mni152_2mm`` brain mask with NumPy's
:class:`numpy.random.Generator`, fully vectorised, so a Neurosynth-sized dataset (14,000
studies of ~36 foci) is generated in seconds; building the :class:`~nimare_jax.dataset.Dataset`
tables takes most of that time.

Images (:func:`create_image_dataset`): each study's group map is a known signal (a Gaussian
blob, scaled per study) plus smooth Gaussian noise whose standard error shrinks with the
study's sample size; ``beta``, ``varcope``, ``se``, ``t`` and ``z`` images are written as NIfTI
files and a :class:`~nimare_jax.dataset.Dataset` pointing at them is returned.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from nimare_jax.dataset import Dataset
from nimare_jax.ops.kernels import FWHM_TO_SIGMA
from nimare_jax.spatial import get_template, load_mask, mm2vox, vox2mm
from nimare_jax.stats import t_to_z
from nimare_jax.studyset import Studyset

_TRUNCATE = 4.0  # Gaussian window half-width in standard deviations (as scipy.ndimage's)


def create_coordinate_dataset(
    foci=1,
    foci_percentage="100%",
    fwhm=10,
    sample_size=30,
    n_studies=30,
    n_noise_foci=0,
    seed=None,
    space="MNI",
):
    """Simulate a coordinate dataset with known ground-truth foci.

    Each ground-truth focus is reported by a fraction of the studies, at a voxel drawn from a
    Gaussian probability map centred on it and restricted to the brain mask; every study also
    reports noise foci drawn uniformly from the mask.

    Parameters
    ----------
    foci : int or array-like, shape (n_foci, 3)
        Number of ground-truth foci, drawn uniformly (without replacement) from the mask
        voxels, or their MNI coordinates in mm (moved to the centre of the voxel they fall in).
    foci_percentage : str or float
        Share of the studies reporting the ground-truth foci: a string such as ``"60%"`` or a
        float in [0, 1]. The first ``round(share * n_studies)`` studies report them.
    fwhm : float
        Full width at half maximum, in mm, of the Gaussian spread of reported foci around
        each ground-truth focus.
    sample_size : int or array-like
        One sample size for every study; a ``(low, high)`` pair, from which each study's size
        is drawn uniformly among the integers ``low <= n < high`` (unless ``n_studies`` is 2);
        or one sample size per study.
    n_studies : int
        Number of studies.
    n_noise_foci : int
        Number of noise foci per study. Studies that report no ground-truth focus get at
        least one, so that none is empty.
    seed : int, numpy.random.Generator or None
        Seed of the :func:`numpy.random.default_rng` generator; None draws fresh entropy.
    space : {"MNI"}
        Space of the coordinates; only MNI is available.

    Returns
    -------
    ground_truth_foci : list of tuple of float
        The ground-truth foci as (x, y, z) in mm.
    dataset : nimare_jax.dataset.Dataset
        Studies ``"study-{i}"`` with one contrast ``"1"`` each, their foci and
        ``metadata["sample_sizes"] = [n]``, in the ``mni152_2mm`` space.

    Notes
    -----
    Differences from NiMARE 0.22, whose random streams (``RandomState``) cannot be
    reproduced anyway:

    - ``fwhm`` is the FWHM of the spread in mm. NiMARE passes it to its ALE kernel as a
      *sample size*, so its spread has FWHM ``sqrt(11.6**2 / fwhm + 5.7**2) * 2.355 /
      (2 sqrt(2 / pi))`` mm (10.0 mm for ``fwhm=10``, 11.4 for 5, 9.2 for 20).
    - The Gaussian window spans 4 standard deviations on every axis, without NiMARE's 31-voxel
      cap on the window.
    - An integer ``foci`` gives exactly that many distinct ground-truth foci (NiMARE draws with
      replacement and drops repeats).
    - Repeated voxels within a study are always reported once (NiMARE drops them only when
      there are noise foci), so a study may report fewer foci than requested when draws
      collide. Foci are listed in voxel order.

    Examples
    --------
    >>> truth, dset = create_coordinate_dataset(foci=2, n_studies=5, seed=0)
    >>> len(truth), len(dset), len(dset.coordinates)
    (2, 5, 10)
    """
    rng = np.random.default_rng(seed)
    share = _check_inputs(foci, foci_percentage, fwhm, sample_size, n_studies, n_noise_foci, space)
    sizes = _sample_sizes(sample_size, n_studies, rng)

    mask_img = get_template("mni152_2mm")
    mask = np.asarray(mask_img.dataobj) > 0
    affine = mask_img.affine
    mask_flat = np.flatnonzero(mask)  # C-order flat indices of the mask voxels

    if _is_int(foci):
        peaks = np.sort(rng.choice(mask_flat.size, size=foci, replace=False))
        peak_ijk = np.argwhere(mask)[peaks]
    else:
        peak_ijk = mm2vox(np.asarray(foci, dtype=float).reshape(-1, 3), affine)

    n_signal = int(round(share * n_studies)) if len(peak_ijk) else 0
    signal = np.zeros((n_signal, len(peak_ijk)), dtype=np.intp)
    for column, ijk in enumerate(peak_ijk):
        signal[:, column] = _draw_near(ijk, n_signal, fwhm, mask, affine, rng)
    noise_signal = mask_flat[rng.integers(mask_flat.size, size=(n_signal, n_noise_foci))]
    noise_only = mask_flat[
        rng.integers(mask_flat.size, size=(n_studies - n_signal, max(1, n_noise_foci)))
    ]

    flat_a, count_a = _unique_rows(np.concatenate([signal, noise_signal], axis=1))
    flat_b, count_b = _unique_rows(noise_only)
    xyz = vox2mm(np.column_stack(np.unravel_index(np.r_[flat_a, flat_b], mask.shape)), affine)
    per_study = np.split(xyz, np.cumsum(np.r_[count_a, count_b])[:-1])

    source = {
        f"study-{i}": {
            "contrasts": {
                "1": {
                    "coords": {
                        "space": space,
                        "x": c[:, 0].tolist(),
                        "y": c[:, 1].tolist(),
                        "z": c[:, 2].tolist(),
                    },
                    "metadata": {"sample_sizes": [n]},
                }
            }
        }
        for i, (c, n) in enumerate(zip(per_study, sizes, strict=True))
    }
    truth = [tuple(float(v) for v in row) for row in vox2mm(peak_ijk, affine)]
    return truth, Dataset(source)


def create_coordinate_studyset(
    foci=1,
    foci_percentage="100%",
    fwhm=10,
    sample_size=30,
    n_studies=30,
    n_noise_foci=0,
    seed=None,
    space="MNI",
):
    """Simulate a coordinate studyset with known ground-truth foci.

    The same simulation as :func:`create_coordinate_dataset`, returned as a
    :class:`~nimare_jax.studyset.Studyset` (NiMARE 0.22's preferred container).

    Parameters
    ----------
    foci, foci_percentage, fwhm, sample_size, n_studies, n_noise_foci, seed, space
        As in :func:`create_coordinate_dataset`.

    Returns
    -------
    ground_truth_foci : list of tuple of float
        The ground-truth foci as (x, y, z) in mm.
    studyset : nimare_jax.studyset.Studyset
        The simulated studies.
    """
    truth, dataset = create_coordinate_dataset(
        foci=foci,
        foci_percentage=foci_percentage,
        fwhm=fwhm,
        sample_size=sample_size,
        n_studies=n_studies,
        n_noise_foci=n_noise_foci,
        seed=seed,
        space=space,
    )
    return truth, Studyset.from_dataset(dataset)


def _check_inputs(foci, foci_percentage, fwhm, sample_size, n_studies, n_noise_foci, space):
    """Validate the arguments of :func:`create_coordinate_dataset`; return the signal share."""
    if space != "MNI":
        raise NotImplementedError(f"only space='MNI' is available, got {space!r}")
    for name, value in (("n_studies", n_studies), ("n_noise_foci", n_noise_foci)):
        if not _is_int(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if _is_int(foci):
        if foci < 0:
            raise ValueError(f"foci must be a non-negative integer, got {foci}")
    elif not _array_like(foci) or np.ndim(foci) != 2 or np.shape(foci)[1] != 3:
        raise ValueError(f"foci must be an integer or (n, 3) coordinates, got {foci!r}")
    if isinstance(foci_percentage, str) and foci_percentage.endswith("%"):
        share = float(foci_percentage[:-1]) / 100
    elif isinstance(foci_percentage, float | int) and not isinstance(foci_percentage, bool):
        share = float(foci_percentage)
    else:
        raise ValueError(f"foci_percentage must be like '60%' or a float, got {foci_percentage!r}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"foci_percentage must lie between 0 and 100%, got {foci_percentage!r}")
    if not np.isfinite(fwhm) or fwhm <= 0:
        raise ValueError(f"fwhm must be a positive number of mm, got {fwhm!r}")
    if not _is_int(sample_size) and np.ndim(sample_size) != 1:
        raise ValueError(f"sample_size must be an integer or a list, got {sample_size!r}")
    if np.ndim(sample_size) == 1 and len(sample_size) not in (2, n_studies):
        raise ValueError(
            f"sample_size must be a (low, high) pair or have one entry per study "
            f"({n_studies}), got {len(sample_size)} entries"
        )
    return share


def _array_like(obj) -> bool:
    """Tell whether ``obj`` is a list, tuple or array (NiMARE's name; its tests use it)."""
    return isinstance(obj, list | tuple | np.ndarray)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _sample_sizes(sample_size, n_studies, rng) -> list[int]:
    """One sample size per study: a constant, a uniform draw from [low, high), or as given."""
    if _is_int(sample_size):
        return [int(sample_size)] * n_studies
    if len(sample_size) == 2 and n_studies != 2:
        low, high = sample_size
        return rng.integers(low, high, size=n_studies).tolist()
    return [int(n) for n in sample_size]


def _draw_near(ijk, n, fwhm, mask, affine, rng) -> np.ndarray:
    """Draw ``n`` mask voxels (flat indices) from a Gaussian of FWHM ``fwhm`` mm at ``ijk``."""
    shape = np.array(mask.shape)
    if np.any(ijk < 0) or np.any(ijk >= shape):
        raise ValueError(f"ground-truth focus {vox2mm(ijk, affine)[0]} lies outside the template")
    sigma = fwhm / np.sqrt(8.0 * np.log(2.0))
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    radius = (_TRUNCATE * sigma / zooms + 0.5).astype(int)
    grid = np.meshgrid(*(np.arange(-r, r + 1) for r in radius), indexing="ij")
    offsets = np.stack([g.ravel() for g in grid], axis=1)
    voxels = ijk + offsets
    inside = np.all((voxels >= 0) & (voxels < shape), axis=1)
    voxels, offsets = voxels[inside], offsets[inside]
    in_mask = mask[tuple(voxels.T)]
    voxels, offsets = voxels[in_mask], offsets[in_mask]
    if not len(voxels):
        raise ValueError(f"ground-truth focus {vox2mm(ijk, affine)[0]} has no mask voxel nearby")
    weights = np.exp(-0.5 * (((offsets * zooms) / sigma) ** 2).sum(axis=1))
    chosen = rng.choice(len(voxels), size=n, p=weights / weights.sum())
    return np.ravel_multi_index(tuple(voxels[chosen].T), mask.shape)


def _unique_rows(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated entries within each row; return the kept entries and counts per row."""
    flat = np.sort(flat, axis=1)
    keep = np.ones(flat.shape, dtype=bool)
    keep[:, 1:] = flat[:, 1:] != flat[:, :-1]
    return flat[keep], keep.sum(axis=1)


def _smooth_noise(rng, shape, sigma_vox):
    field = gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="constant")
    return field / max(field.std(), 1e-12)


def create_image_dataset(
    n_studies: int = 20,
    sample_size=(15, 40),
    effect: float = 0.5,
    signal_xyz=(0.0, -20.0, 20.0),
    signal_fwhm: float = 20.0,
    noise_fwhm: float = 8.0,
    sd: float = 1.0,
    mask="mni152_2mm",
    out_dir=None,
    seed=None,
):
    """Simulate a dataset of per-study statistical images with a known effect.

    Parameters
    ----------
    n_studies : int
        Number of studies (one contrast each).
    sample_size : int or (int, int)
        Sample size of every study, or the inclusive range they are drawn from uniformly.
    effect : float
        Mean standardized effect at the centre of the signal; each study's effect is
        multiplied by a factor drawn uniformly from [0.5, 1.5].
    signal_xyz : (float, float, float)
        MNI coordinate (mm) of the signal's centre.
    signal_fwhm : float
        Full width at half maximum (mm) of the Gaussian signal.
    noise_fwhm : float
        Smoothness (mm) of the subject-level noise fields.
    sd : float
        Between-subject standard deviation (the scale of beta).
    mask : str, pathlib.Path or nibabel.Nifti1Image
        Mask / grid of the images (a template name or an image).
    out_dir : str or pathlib.Path, optional
        Folder to write images and ``dataset.json`` to (default: a new temporary folder).
    seed : int, optional
        Random seed.

    Returns
    -------
    nimare_jax.dataset.Dataset
        The dataset, with image types ``beta``, ``varcope``, ``se``, ``t``, ``z`` and
        ``sample_sizes`` metadata; its ``basepath`` is ``out_dir``. The true effect map
        (``effect`` times the blob) is written as ``truth.nii.gz``.
    """
    if n_studies < 1:
        raise ValueError(f"n_studies must be >= 1, got {n_studies}")
    rng = np.random.default_rng(seed)
    mask_img = load_mask(mask)
    inside = np.asanyarray(mask_img.dataobj) > 0
    shape, affine = inside.shape, mask_img.affine
    vox = float(np.sqrt((affine[:3, :3] ** 2).sum(0)).mean())
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="nimare_jax_"))
    out.mkdir(parents=True, exist_ok=True)
    centre = mm2vox(np.atleast_2d(signal_xyz), affine)[0]
    grid = np.indices(shape).reshape(3, -1).T
    dist2 = ((grid - centre) ** 2).sum(1).reshape(shape) * vox**2
    sigma_mm = signal_fwhm * FWHM_TO_SIGMA
    blob = np.exp(-0.5 * dist2 / sigma_mm**2)
    nib.Nifti1Image((effect * sd * blob * inside).astype(np.float32), affine).to_filename(
        out / "truth.nii.gz"
    )
    if np.ndim(sample_size) == 0:
        sizes = np.full(n_studies, int(sample_size))
    else:
        lo, hi = sample_size
        sizes = rng.integers(int(lo), int(hi) + 1, n_studies)
    noise_sigma = noise_fwhm * FWHM_TO_SIGMA / vox
    source = {}
    for i in range(n_studies):
        n = int(sizes[i])
        multiplier = rng.uniform(0.5, 1.5)
        se_field = sd / np.sqrt(n) * np.exp(0.1 * _smooth_noise(rng, shape, 2 * noise_sigma))
        beta = effect * sd * multiplier * blob + se_field * _smooth_noise(rng, shape, noise_sigma)
        t = beta / se_field
        z = t_to_z(t, n - 1)
        sid = f"study-{i + 1:03d}"
        files = {}
        for kind, data in (
            ("beta", beta),
            ("varcope", se_field**2),
            ("se", se_field),
            ("t", t),
            ("z", z),
        ):
            name = f"{sid}_{kind}.nii.gz"
            values = np.where(inside, data, 0.0).astype(np.float32)
            nib.Nifti1Image(values, affine).to_filename(out / name)
            files[kind] = name
        source[sid] = {"contrasts": {"1": {"images": files, "metadata": {"sample_sizes": [n]}}}}
    (out / "dataset.json").write_text(json.dumps(source, indent=1))
    return Dataset(out / "dataset.json", mask=mask_img)
