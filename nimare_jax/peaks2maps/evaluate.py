"""Held-out evaluation of peaks2maps against the ALE kernel on simulated studies.

The figure of merit is the voxel-wise Pearson correlation, within the coarse brain mask,
between a reconstruction and the study's true map. The baseline is the ALE kernel's
modelled-activation map of the same peaks (:class:`~nimare_jax.meta.cbma.kernel.ALEKernel`
on the 2 mm mask, averaged into the coarse voxels).
"""

from __future__ import annotations

import jax
import numpy as np

from nimare_jax.dataset import Dataset
from nimare_jax.meta.cbma.kernel import ALEKernel, coarse_mask
from nimare_jax.ops import unet
from nimare_jax.ops.coarse_grid import COARSE_AFFINE, COARSE_SHAPE
from nimare_jax.peaks2maps import data
from nimare_jax.spatial import get_template

__all__ = [
    "HELDOUT_POPULATION",
    "TRAIN_POPULATION",
    "ale_coarse_maps",
    "correlations",
    "evaluate",
    "peaks_dataset",
    "predict",
]

TRAIN_POPULATION = 1001
HELDOUT_POPULATION = 2002
ALE_SAMPLE_SIZE = 20


def correlations(maps, truth, mask=None) -> np.ndarray:
    """Pearson correlation of each map with its true map over the coarse brain mask.

    Parameters
    ----------
    maps, truth : array-like, shape (n, 32, 32, 32)
        Reconstructions and true maps.
    mask : numpy.ndarray of bool, optional
        Voxels compared (default: the coarse brain mask).

    Returns
    -------
    numpy.ndarray, shape (n,)
        Correlations (0 for a constant reconstruction).
    """
    mask = coarse_mask() if mask is None else mask
    a = np.asarray(maps, np.float64)[:, mask]
    b = np.asarray(truth, np.float64)[:, mask]
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1.0), 0.0)


def peaks_dataset(peaks, sample_size=ALE_SAMPLE_SIZE) -> Dataset:
    """Build a ``mni152_2mm`` coordinate dataset whose studies report the given peaks.

    Parameters
    ----------
    peaks : list of numpy.ndarray, each (n_peaks, 3)
        Coarse voxel indices; each is reported at its coarse voxel's centre in mm.
    sample_size : int
        Sample size recorded for every study.

    Returns
    -------
    Dataset
        Studies ``"sim-{i}"``.
    """
    source = {}
    for i, p in enumerate(peaks):
        xyz = np.asarray(p, float) @ COARSE_AFFINE[:3, :3].T + COARSE_AFFINE[:3, 3]
        source[f"sim-{i}"] = {
            "contrasts": {
                "1": {
                    "coords": {
                        "space": "MNI",
                        "x": xyz[:, 0].tolist(),
                        "y": xyz[:, 1].tolist(),
                        "z": xyz[:, 2].tolist(),
                    },
                    "metadata": {"sample_sizes": [int(sample_size)]},
                }
            }
        }
    return Dataset(source)


def ale_coarse_maps(peaks, sample_size=ALE_SAMPLE_SIZE, fwhm=None) -> np.ndarray:
    """ALE kernel MA maps of the peaks, computed on the 2 mm mask and averaged to coarse.

    Parameters
    ----------
    peaks : list of numpy.ndarray
        Coarse voxel indices per study.
    sample_size : int
        Sample size setting the kernel width (Eickhoff et al., 2009).
    fwhm : float, optional
        Fixed kernel FWHM in mm instead.

    Returns
    -------
    numpy.ndarray, shape (n, 32, 32, 32)
        Coarse MA maps.
    """
    dset = peaks_dataset(peaks, sample_size)
    kernel = ALEKernel(fwhm=fwhm) if fwhm is not None else ALEKernel(sample_size=sample_size)
    ma = kernel.transform(dset, return_type="array")
    return data.mask_to_coarse(ma, get_template("mni152_2mm"))


_apply = jax.jit(unet.apply)


def predict(params, inputs, batch: int = 16) -> np.ndarray:
    """Run the network on coarse peak images in batches.

    Parameters
    ----------
    params : dict
        Network parameters.
    inputs : array-like, shape (n, 32, 32, 32)
        Peak indicator images.
    batch : int
        Images per call.

    Returns
    -------
    numpy.ndarray, shape (n, 32, 32, 32)
        Reconstructed maps.
    """
    mask = coarse_mask().astype(np.float32)
    inputs = np.asarray(inputs, np.float32)
    out = [
        np.asarray(_apply(params, inputs[i : i + batch], mask))
        for i in range(0, len(inputs), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, *COARSE_SHAPE), np.float32)


def evaluate(params, indices, seed=HELDOUT_POPULATION, ale_fwhms=()) -> dict:
    """Correlations with the truth of the network's and the ALE kernel's maps.

    Parameters
    ----------
    params : dict
        Network parameters.
    indices : iterable of int
        Simulated study numbers.
    seed : int
        Population seed (default: the held-out population, never used for training).
    ale_fwhms : iterable of float
        Extra fixed ALE FWHMs (mm) to evaluate besides the sample-size-20 kernel.

    Returns
    -------
    dict
        ``"network"`` and ``"ale"`` (and ``"ale_fwhm-{f}"``): arrays of per-study correlations.
    """
    inputs, targets, peaks = data.simulate_batch(seed, indices)
    out = {
        "network": correlations(predict(params, inputs), targets),
        "ale": correlations(ale_coarse_maps(peaks), targets),
    }
    for f in ale_fwhms:
        out[f"ale_fwhm-{f:g}"] = correlations(ale_coarse_maps(peaks, fwhm=f), targets)
    return out
