"""The coarse grid the peaks2maps network works on, and resampling to and from it.

The network of Freyberg et al. (2018) works on a coarse grid of about 32^3 voxels of 5-6 mm
covering the MNI brain. Here the grid is 32^3 voxels of 6 mm centred on the bounding box of
the MNI152 2 mm brain mask (x -70..72, y -106..72, z -72..80 mm), so every brain voxel lies
inside it. Fine grids are given as a boolean mask array and its affine; positions are
matched in world (mm) space.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates
from scipy import ndimage

__all__ = [
    "COARSE_AFFINE",
    "COARSE_SHAPE",
    "COARSE_VOXEL",
    "coarse_ijk",
    "grid_mask",
    "mask_sampler",
    "peak_images",
    "voxel_coords",
]

COARSE_SHAPE = (32, 32, 32)
COARSE_VOXEL = 6.0
# Voxel (0, 0, 0) centre in mm: the brain mask's bounding-box centre (1, -17, 4) minus 15.5 voxels.
COARSE_AFFINE = np.array(
    [
        [COARSE_VOXEL, 0.0, 0.0, -92.0],
        [0.0, COARSE_VOXEL, 0.0, -110.0],
        [0.0, 0.0, COARSE_VOXEL, -89.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def coarse_ijk(xyz):
    """Return the coarse voxel (nearest centre, clipped to the grid) of coordinates in mm.

    Parameters
    ----------
    xyz : jax.Array, shape (..., 3)
        Coordinates in mm.

    Returns
    -------
    jax.Array of int32, shape (..., 3)
        Voxel indices.
    """
    ijk = jnp.rint((xyz - COARSE_AFFINE[:3, 3]) / COARSE_VOXEL).astype(jnp.int32)
    return jnp.clip(ijk, 0, np.array(COARSE_SHAPE) - 1)


def peak_images(ijk, valid):
    """Return indicator images of peaks on the coarse grid (the network's input channel).

    Parameters
    ----------
    ijk : int array, shape (n, m, 3)
        Coarse voxel indices of each image's peaks, padded.
    valid : bool array, shape (n, m)
        False for padding.

    Returns
    -------
    jax.Array, shape (n, 32, 32, 32), float32
        1 at the peak voxels, 0 elsewhere.
    """
    rows = jnp.broadcast_to(jnp.arange(ijk.shape[0])[:, None], valid.shape)
    out = jnp.zeros((ijk.shape[0], *COARSE_SHAPE), jnp.float32)
    return out.at[rows, ijk[..., 0], ijk[..., 1], ijk[..., 2]].max(valid.astype(jnp.float32))


def voxel_coords(mask, affine) -> np.ndarray:
    """Return the continuous coarse-grid coordinates of a fine mask's in-mask voxel centres.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Fine mask.
    affine : numpy.ndarray, shape (4, 4)
        Its voxel-to-mm affine.

    Returns
    -------
    numpy.ndarray, shape (3, n_voxels)
        Coarse voxel coordinates (not rounded), in C order of the in-mask voxels.
    """
    affine = np.asarray(affine)
    xyz = np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3]
    return ((xyz - COARSE_AFFINE[:3, 3]) / COARSE_VOXEL).T


def mask_sampler(mask, affine):
    """Return a pure function interpolating coarse volumes at a fine mask's voxel centres.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Fine mask (any grid).
    affine : numpy.ndarray, shape (4, 4)
        Its voxel-to-mm affine.

    Returns
    -------
    callable
        ``fn(volumes (n, 32, 32, 32)) -> (n, n_voxels)`` float32, trilinear (edge values
        beyond the grid), jit-able.
    """
    coords = list(jnp.asarray(voxel_coords(mask, affine), jnp.float32))

    def fn(volumes):
        return jax.vmap(lambda v: map_coordinates(v, coords, order=1, mode="nearest"))(volumes)

    return fn


def grid_mask(mask, affine) -> np.ndarray:
    """Return a fine mask on the coarse grid: the coarse voxels whose centre lies in it.

    A centre counts as inside where the trilinear interpolation of the mask is >= 0.5.

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Fine mask.
    affine : numpy.ndarray, shape (4, 4)
        Its voxel-to-mm affine.

    Returns
    -------
    numpy.ndarray of bool, shape (32, 32, 32)
        Coarse mask.
    """
    ijk = np.indices(COARSE_SHAPE).reshape(3, -1).T
    xyz = ijk @ COARSE_AFFINE[:3, :3].T + COARSE_AFFINE[:3, 3]
    fine = np.linalg.solve(np.asarray(affine), np.c_[xyz, np.ones(len(xyz))].T)[:3].T
    values = ndimage.map_coordinates(np.asarray(mask, np.float32), fine.T, order=1, cval=0.0)
    return (values >= 0.5).reshape(COARSE_SHAPE)
