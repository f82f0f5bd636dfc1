"""Chi-square maps of the MKDA chi-square test and their Monte Carlo FWE nulls.

:func:`chi2_maps` turns per-voxel counts of active experiments in two groups into the
uniformity (one-way) and association (two-way) chi-square maps. Two nulls summarise those
maps per iteration (maximum, largest cluster size and mass of each map):

- :func:`label_permutation_summary`: the experiments are reassigned at random to the two
  groups (sizes kept); a group's counts are one product of a 0/1 membership vector with the
  pooled binary MA matrix, so the summary vectorises over iterations.
- :func:`random_foci_summary`: every focus of both groups is relocated uniformly in the
  mask (the volumes come from :func:`nimare_jax.ops.relocation.volume_fn`).

As in :mod:`nimare_jax.ops.relocation`, the factories are cached by static configuration
only and the arrays are operands (:class:`LabelPermutationOperands`, or the two groups'
:class:`~nimare_jax.ops.relocation.RelocationOperands`), so a second correction of the same
shapes reuses the permutation engine's compiled runner.

References
----------
Wager et al. (2007) SCAN 2:150 (MKDA); Yarkoni et al. (2011) Nat Methods 8:665 (the
uniformity and association chi-square tests).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nimare_jax.ops import stats as ops_stats
from nimare_jax.ops.label import max_cluster_stats

#: Factories keep this many configurations alive (each holds only small static values).
_CACHE_SIZE = 32


def chi2_maps(count1, count2, n1: int, n2: int) -> dict:
    """Compute the three chi-square maps of MKDAChi2 from per-voxel active counts.

    Parameters
    ----------
    count1, count2 : jax.Array, shape (n_voxels,)
        Experiments of group 1 / group 2 active at each voxel.
    n1, n2 : int
        Group sizes.

    Returns
    -------
    dict
        ``group1`` (uniformity of group 1, one-way), ``group2`` (one-way) and
        ``association`` (two-way) chi-square statistics.
    """
    return {
        "group1": ops_stats.one_way(count1, n1),
        "group2": ops_stats.one_way(count2, n2),
        "association": ops_stats.two_way_counts(count1, count2, n1, n2),
    }


def _maxima(maps, mask_index, shape, thresh, connectivity, backend, vfwe_only):
    """Maximum and largest clusters (strictly above ``thresh``) of each chi-square map."""
    out = {}
    for name, chi in maps.items():
        entry = {"voxel": chi.max()}
        if not vfwe_only:
            flat = jnp.zeros(math.prod(shape), chi.dtype)
            vol = flat.at[mask_index].set(chi).reshape(shape)
            cl = max_cluster_stats(
                vol > thresh, vol - thresh, connectivity=connectivity, backend=backend
            )
            entry.update(size=cl.max_size, mass=cl.max_mass)
        out[name] = entry
    return out


class LabelPermutationOperands(NamedTuple):
    """Arrays of the label-permutation null (a pytree, so it passes through ``jit``).

    Attributes
    ----------
    pooled : float array, shape (n_exp, n_voxels)
        Binary MA maps (0/1) of group 1's experiments followed by group 2's.
    totals : float array, shape (n_voxels,)
        ``pooled.sum(axis=0)``.
    mask_index : int array, shape (n_voxels,)
        Flat C-order indices of the mask voxels in the volume.
    """

    pooled: jax.Array
    totals: jax.Array
    mask_index: jax.Array


@functools.lru_cache(maxsize=_CACHE_SIZE)
def label_permutation_summary(
    n1: int, shape: tuple, connectivity: int, label_backend: str, vfwe_only: bool
):
    """Return ``summary(key, operands, thresh)`` of the label-permutation null.

    Parameters
    ----------
    n1 : int
        Size of group 1 (the rest of the pooled experiments form group 2).
    shape : tuple of 3 ints
        Volume shape.
    connectivity : {6, 18, 26}
        Cluster neighbourhood.
    label_backend : {"auto", "jax", "scipy"}
        See :func:`nimare_jax.ops.label.max_cluster_stats`.
    vfwe_only : bool
        Record only the maxima.

    Returns
    -------
    callable
        Pure ``summary(key, operands: LabelPermutationOperands, thresh) -> {map: {"voxel",
        "size", "mass"}}`` for the maps of :func:`chi2_maps`, clusters strictly above
        ``thresh`` (an operand); the same object for the same arguments.
    """

    def summary(key, o: LabelPermutationOperands, thresh):
        n = o.pooled.shape[0]
        members = jax.random.permutation(key, n)[:n1]
        indicator = jnp.zeros(n, o.pooled.dtype).at[members].set(1)
        count1 = indicator @ o.pooled
        maps = chi2_maps(count1, o.totals - count1, n1, n - n1)
        return _maxima(maps, o.mask_index, shape, thresh, connectivity, label_backend, vfwe_only)

    return summary


@functools.lru_cache(maxsize=_CACHE_SIZE)
def random_foci_summary(
    volume1, volume2, shape: tuple, connectivity: int, label_backend: str, vfwe_only: bool
):
    """Return ``summary(key, operands1, operands2, mask_index, thresh)`` of the random-foci null.

    Parameters
    ----------
    volume1, volume2 : callable
        Each group's count volume of one relocation (``"sum"`` union of unit-weight binary
        spheres), from :func:`nimare_jax.ops.relocation.volume_fn` (hashed by identity).
    shape : tuple of 3 ints
        Volume shape.
    connectivity, label_backend, vfwe_only
        As in :func:`label_permutation_summary`.

    Returns
    -------
    callable
        Pure ``summary(key, operands1, operands2, mask_index, thresh)`` (the groups'
        :class:`~nimare_jax.ops.relocation.RelocationOperands`, the flat mask indices and
        the cluster-forming threshold) ``-> {map: {"voxel", "size", "mass"}}``; group 1
        draws from the first half of ``jax.random.split(key)``, group 2 from the second.
    """

    def summary(key, o1, o2, mask_index, thresh):
        k1, k2 = jax.random.split(key)
        count1 = volume1(k1, o1).reshape(-1)[mask_index]
        count2 = volume2(k2, o2).reshape(-1)[mask_index]
        n1, n2 = o1.exp_weight.shape[0], o2.exp_weight.shape[0]
        maps = chi2_maps(count1, count2, n1, n2)
        return _maxima(maps, mask_index, shape, thresh, connectivity, label_backend, vfwe_only)

    return summary
