"""Text-based parcellation (MAPBOT) on arrays: voxel term profiles and their NMF clustering.

MAPBOT (Yuan et al., 2017) treats every voxel of a region of interest as a document whose
words are the terms of the experiments reporting a focus near it, and clusters the voxels
the way Xu et al. (2003) cluster documents:

1. ``F = (S @ T) / S.sum(1)``: with the binary selection ``S`` (voxels x experiments, the
   experiments near each voxel) and the term weights ``T`` (experiments x terms), each
   voxel's mean term weight over its experiments (:func:`term_profiles`);
2. normalized-cut weighting: ``d = F @ F.T @ 1`` (each voxel's summed similarity to all
   voxels) and ``V = diag(d) ** -1/2 @ F`` (:func:`normalized_cut_weighting`);
3. non-negative factorisation ``V ~ W @ H`` (scikit-learn, outside this module);
4. each component's term vector ``H[j]`` is scaled to unit Euclidean norm and ``W[:, j]``
   scaled by the same factor, so that ``W @ H`` is unchanged and loadings are comparable
   across components; a voxel belongs to the component of its largest loading
   (:func:`assign_parcels`).

Everything is a dense product of small matrices (an ROI has thousands of voxels, a
vocabulary thousands of terms), one compilation per shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.jit
def term_profiles(selection, weights) -> tuple[jax.Array, jax.Array]:
    """Mean term weights of the experiments selected for each voxel.

    Parameters
    ----------
    selection : bool or float array, shape (n_voxels, n_experiments)
        True (or 1) where the experiment is selected for the voxel.
    weights : float array, shape (n_experiments, n_terms)
        Term weights of the experiments (non-negative).

    Returns
    -------
    profiles : jax.Array, shape (n_voxels, n_terms)
        Mean weight of each term over the voxel's selected experiments (0 for a voxel
        that selects none).
    counts : jax.Array, shape (n_voxels,)
        Number of experiments selected for each voxel.
    """
    weights = jnp.asarray(weights)
    sel = jnp.asarray(selection).astype(weights.dtype)
    counts = sel.sum(1)
    return (sel @ weights) / jnp.maximum(counts, 1)[:, None], counts


@jax.jit
def normalized_cut_weighting(profiles) -> jax.Array:
    """Normalized-cut weighting of voxel term profiles (Xu et al., 2003).

    Parameters
    ----------
    profiles : float array, shape (n_voxels, n_terms)
        Non-negative term profiles ``F``.

    Returns
    -------
    jax.Array, shape (n_voxels, n_terms)
        ``F[i] / sqrt(d[i])`` with ``d = F @ (F.T @ 1)``, the row sums of the voxel
        similarity matrix ``F @ F.T`` (computed without forming it); rows with ``d = 0``
        stay 0.
    """
    profiles = jnp.asarray(profiles)
    degree = profiles @ profiles.sum(0)
    empty = degree <= 0
    scale = jnp.where(empty, 0.0, jax.lax.rsqrt(jnp.where(empty, 1.0, degree)))
    return profiles * scale[:, None]


@jax.jit
def assign_parcels(loadings, components) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Parcels from an NMF ``V ~ W @ H``: components to unit norm, largest loading wins.

    Parameters
    ----------
    loadings : float array, shape (n_voxels, k)
        ``W``, the voxels' loadings on the components.
    components : float array, shape (k, n_terms)
        ``H``, the components' term weights.

    Returns
    -------
    labels : jax.Array of int32, shape (n_voxels,)
        Component (0 .. k-1) with the largest scaled loading (the first on ties).
    loadings : jax.Array, shape (n_voxels, k)
        ``W[:, j] * ||H[j]||``.
    components : jax.Array, shape (k, n_terms)
        ``H[j] / ||H[j]||`` (a zero component stays 0).
    """
    loadings = jnp.asarray(loadings)
    components = jnp.asarray(components)
    norm = jnp.sqrt((components**2).sum(1))
    scaled = loadings * norm[None, :]
    unit = components / jnp.where(norm > 0, norm, 1.0)[:, None]
    return jnp.argmax(scaled, axis=1).astype(jnp.int32), scaled, unit
