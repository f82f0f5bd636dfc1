"""Simulated training pairs for the peaks2maps network, and resampling helpers around them.

The network and its coarse grid (32^3 voxels of 6 mm) are pure functions in
:mod:`nimare_jax.ops.unet` and :mod:`nimare_jax.ops.coarse_grid`; the coarse brain mask is
:func:`nimare_jax.meta.cbma.kernel.coarse_mask`.

Training pairs are simulated (:func:`simulate_study`): a study's unthresholded z map is a
smooth Gaussian random field plus a handful of Gaussian activation blobs inside the brain;
its peaks are reported as a researcher's table would report them: local maxima (26
neighbours) above z = 3.1, at least 8 mm apart. The network input is the peak indicator
image (1 at each reported peak's voxel; Sleuth files carry no peak heights) and the
target is the true map. Every study is drawn from ``numpy.random.default_rng([seed, index])``
so any study can be regenerated on its own.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from nimare_jax.meta.cbma.kernel import coarse_mask
from nimare_jax.ops.coarse_grid import (
    COARSE_SHAPE,
    COARSE_VOXEL,
    coarse_ijk,
    mask_sampler,
    peak_images,
    voxel_coords,
)
from nimare_jax.ops.kernels import FWHM_TO_SIGMA

__all__ = [
    "PEAK_MIN_DISTANCE",
    "PEAK_THRESHOLD",
    "SimulationConfig",
    "coarse_to_mask",
    "extract_peaks",
    "mask_to_coarse",
    "peak_image",
    "simulate_batch",
    "simulate_study",
    "xyz_to_coarse_ijk",
]

PEAK_THRESHOLD = 3.1
PEAK_MIN_DISTANCE = 8.0


class SimulationConfig:
    """Parameters of the simulated studies (defaults are the ones the weights were trained on).

    Attributes
    ----------
    n_blobs : tuple of int
        Number of activation blobs, uniform on ``[low, high]``.
    blob_fwhm : tuple of float
        Blob FWHM in mm, log-uniform on ``[low, high]``.
    blob_height : tuple of float
        Blob peak z, uniform on ``[low, high]``.
    noise_fwhm : tuple of float
        Smoothness (FWHM, mm) of the unit-variance noise field, uniform on ``[low, high]``.
    noise_sd : tuple of float
        Standard deviation of the noise field, uniform on ``[low, high]``.
    negative_share : float
        Probability that a blob is a deactivation (negative; never reported as a peak).
    """

    n_blobs = (1, 10)
    blob_fwhm = (8.0, 24.0)
    blob_height = (3.0, 8.0)
    noise_fwhm = (10.0, 18.0)
    noise_sd = (0.5, 1.2)
    negative_share = 0.2


def xyz_to_coarse_ijk(xyz) -> np.ndarray:
    """Coarse-grid voxel (nearest centre, clipped to the grid) of MNI coordinates in mm.

    Parameters
    ----------
    xyz : array-like, shape (n, 3)
        Coordinates in mm.

    Returns
    -------
    numpy.ndarray of int, shape (n, 3)
        Voxel indices.
    """
    return np.asarray(coarse_ijk(jnp.asarray(xyz, jnp.float32).reshape(-1, 3)))


def peak_image(ijk) -> np.ndarray:
    """Return the indicator image of peaks on the coarse grid (the network's input channel).

    Parameters
    ----------
    ijk : array-like, shape (n, 3)
        Coarse voxel indices of the peaks.

    Returns
    -------
    numpy.ndarray, shape (32, 32, 32), float32
        1 at the peak voxels, 0 elsewhere.
    """
    ijk = jnp.asarray(ijk, jnp.int32).reshape(1, -1, 3)
    return np.asarray(peak_images(ijk, jnp.ones(ijk.shape[:2], bool))[0])


def coarse_to_mask(volumes, mask_img) -> np.ndarray:
    """Trilinearly interpolate coarse-grid volumes at a mask's in-mask voxel centres (in mm).

    Parameters
    ----------
    volumes : array-like, shape (..., 32, 32, 32)
        Coarse maps.
    mask_img : nibabel.Nifti1Image
        Target mask (any grid; positions are matched in world space).

    Returns
    -------
    numpy.ndarray, shape (..., n_voxels), float32
        Values at the mask's voxels, in C order.
    """
    volumes = jnp.asarray(volumes, jnp.float32)
    flat = volumes.reshape((-1, *COARSE_SHAPE))
    out = mask_sampler(np.asanyarray(mask_img.dataobj) > 0, mask_img.affine)(flat)
    return np.asarray(out).reshape((*volumes.shape[:-3], out.shape[-1]))


def mask_to_coarse(values, mask_img) -> np.ndarray:
    """Average a masked map's voxels into the coarse voxels they fall in (outside: 0).

    Parameters
    ----------
    values : array-like, shape (..., n_voxels)
        Values at the mask's in-mask voxels, in C order.
    mask_img : nibabel.Nifti1Image
        The mask the values live on.

    Returns
    -------
    numpy.ndarray, shape (..., 32, 32, 32), float32
        Coarse maps (mean of the fine voxels whose centre falls in each coarse voxel).
    """
    values = np.asarray(values, np.float32)
    coords = voxel_coords(np.asanyarray(mask_img.dataobj) > 0, mask_img.affine)
    ijk = np.clip(np.rint(coords).astype(int).T, 0, COARSE_SHAPE[0] - 1)
    flat = np.ravel_multi_index(ijk.T, COARSE_SHAPE)
    n = int(np.prod(COARSE_SHAPE))
    counts = np.bincount(flat, minlength=n)
    rows = values.reshape(-1, values.shape[-1])
    out = np.stack([np.bincount(flat, weights=r, minlength=n) for r in rows])
    out = np.where(counts > 0, out / np.maximum(counts, 1), 0.0)
    return out.reshape((*values.shape[:-1], *COARSE_SHAPE)).astype(np.float32)


def extract_peaks(zmap, mask=None, threshold=PEAK_THRESHOLD, min_distance=PEAK_MIN_DISTANCE):
    """Report a map's peaks as a results table would: local maxima above a threshold.

    Parameters
    ----------
    zmap : numpy.ndarray, shape (32, 32, 32)
        Coarse z map.
    mask : numpy.ndarray of bool, optional
        Voxels that may hold a peak (default: the coarse brain mask).
    threshold : float
        Peaks must exceed this z (3.1).
    min_distance : float
        Minimum distance between reported peaks in mm (8); the higher peak is kept.

    Returns
    -------
    numpy.ndarray of int, shape (n_peaks, 3)
        Coarse voxel indices, highest peak first.
    """
    mask = coarse_mask() if mask is None else mask
    z = np.where(mask, zmap, -np.inf)
    footprint = np.ones((3, 3, 3), bool)
    footprint[1, 1, 1] = False
    neighbours = ndimage.maximum_filter(z, footprint=footprint, mode="constant", cval=-np.inf)
    is_peak = (z > neighbours) & (z > threshold)
    ijk = np.argwhere(is_peak)
    ijk = ijk[np.argsort(-z[tuple(ijk.T)], kind="stable")]
    kept = []
    for p in ijk:
        if all(np.linalg.norm((p - q) * COARSE_VOXEL) >= min_distance for q in kept):
            kept.append(p)
    return np.asarray(kept, int).reshape(-1, 3)


def _noise_field(rng, fwhm_mm):
    sigma = fwhm_mm * FWHM_TO_SIGMA / COARSE_VOXEL
    field = ndimage.gaussian_filter(rng.standard_normal(COARSE_SHAPE), sigma, mode="wrap")
    return field / field.std()


def simulate_study(seed: int, index: int, config=SimulationConfig):
    """Simulate one study: its true coarse z map and its reported peaks.

    Parameters
    ----------
    seed : int
        Seed of the simulated population (training and held-out sets use different seeds).
    index : int
        Study number; the study is drawn from ``numpy.random.default_rng([seed, index])``.
    config : SimulationConfig
        Simulation parameters.

    Returns
    -------
    zmap : numpy.ndarray, shape (32, 32, 32), float32
        True map (0 outside the coarse brain mask).
    peaks : numpy.ndarray of int, shape (n_peaks, 3)
        Reported peaks (coarse voxel indices); a study without any peak above 3.1 gets its
        population's next draw (a study with nothing to report is not published).
    """
    mask = coarse_mask()
    inside = np.argwhere(mask)
    grid = np.indices(COARSE_SHAPE).reshape(3, -1).T.astype(np.float32)
    attempt = 0
    while True:
        rng = np.random.default_rng([seed, index, attempt])
        n_blobs = rng.integers(config.n_blobs[0], config.n_blobs[1] + 1)
        centres = inside[rng.integers(len(inside), size=n_blobs)] + rng.uniform(
            -0.5, 0.5, (n_blobs, 3)
        )
        fwhm = np.exp(rng.uniform(*np.log(config.blob_fwhm), n_blobs))
        height = rng.uniform(*config.blob_height, n_blobs)
        height = np.where(rng.random(n_blobs) < config.negative_share, -height, height)
        sigma = fwhm * FWHM_TO_SIGMA / COARSE_VOXEL
        d2 = ((grid[:, None, :] - centres[None]) ** 2).sum(-1)
        signal = (height * np.exp(-0.5 * d2 / sigma**2)).sum(-1).reshape(COARSE_SHAPE)
        noise_sd = rng.uniform(*config.noise_sd)
        noise = noise_sd * _noise_field(rng, rng.uniform(*config.noise_fwhm))
        zmap = np.where(mask, signal + noise, 0.0).astype(np.float32)
        peaks = extract_peaks(zmap, mask)
        if len(peaks):
            return zmap, peaks
        attempt += 1


def simulate_batch(seed: int, indices, config=SimulationConfig):
    """Simulate several studies as network inputs and targets.

    Parameters
    ----------
    seed : int
        Population seed.
    indices : iterable of int
        Study numbers.
    config : SimulationConfig
        Simulation parameters.

    Returns
    -------
    inputs : numpy.ndarray, shape (n, 32, 32, 32), float32
        Peak indicator images.
    targets : numpy.ndarray, shape (n, 32, 32, 32), float32
        True maps.
    peaks : list of numpy.ndarray
        Each study's peaks (coarse voxel indices).
    """
    studies = [simulate_study(seed, int(i), config) for i in indices]
    inputs = np.stack([peak_image(p) for _, p in studies])
    targets = np.stack([z for z, _ in studies])
    return inputs, targets, [p for _, p in studies]
