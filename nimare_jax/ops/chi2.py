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

With host labelling (the default on CPU), a factory returns a
:class:`~nimare_jax.ops.permute.BatchedSummary`: the devices compute the maps and their
maxima, and the clusters are labelled on the host between batches
(:func:`nimare_jax.ops.label.masked_max_cluster_stats_host`), outside the device programs,
which then run side by side on several CPU devices.

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
import numpy as np

from nimare_jax.ops import stats as ops_stats
from nimare_jax.ops.label import (
    masked_max_cluster_stats_host,
    max_cluster_stats,
    resolve_label_backend,
)
from nimare_jax.ops.permute import BatchedSummary

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


def _summary(maps_fn, shape, connectivity, label_backend, vfwe_only, locate):
    """Return the summary of a null whose draw ``maps_fn(key, *operands)`` gives the maps.

    ``locate(*operands) -> (mask_index, thresh)`` picks the mask's flat indices and the
    cluster-forming threshold from the operands. With host labelling (``label_backend``
    resolving to ``"scipy"``) and clusters, the result is a
    :class:`~nimare_jax.ops.permute.BatchedSummary` whose devices return each map's maximum
    and the map itself (float32 on the mask voxels), labelled on the host between batches
    (:func:`nimare_jax.ops.label.masked_max_cluster_stats_host`): a device program holding
    a host callback does not run beside the other devices' programs on CPU. Otherwise the
    maps are labelled in the device program (``"jax"``).
    """
    backend = resolve_label_backend(label_backend)

    def summary(key, *operands):
        mask_index, thresh = locate(*operands)
        maps = maps_fn(key, *operands)
        return _maxima(maps, mask_index, shape, thresh, connectivity, backend, vfwe_only)

    if vfwe_only or backend != "scipy":
        return summary

    def each(key, *operands):
        return {name: (chi.max(), chi) for name, chi in maps_fn(key, *operands).items()}

    def batch(out, *operands):  # on the host, NumPy arrays with a leading batch axis
        mask_index, thresh = locate(*operands)
        mask_index = np.asarray(mask_index)
        result = {}
        for name, (voxel, chi) in out.items():
            size, mass = masked_max_cluster_stats_host(
                chi, mask_index, shape, np.float32(thresh), connectivity
            )
            result[name] = {"voxel": voxel, "size": size, "mass": mass}
        return result

    return BatchedSummary(each, batch, on_host=True, with_operands=True)


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
    callable or nimare_jax.ops.permute.BatchedSummary
        Pure ``summary(key, operands: LabelPermutationOperands, thresh) -> {map: {"voxel",
        "size", "mass"}}`` for the maps of :func:`chi2_maps`, clusters strictly above
        ``thresh`` (an operand); the same object for the same arguments. With host
        labelling, a :class:`~nimare_jax.ops.permute.BatchedSummary` whose host stage
        labels the maps between batches (give it to
        :func:`~nimare_jax.ops.permute.run_permutations`).
    """

    def maps_fn(key, o: LabelPermutationOperands, thresh):
        del thresh
        n = o.pooled.shape[0]
        members = jax.random.permutation(key, n)[:n1]
        indicator = jnp.zeros(n, o.pooled.dtype).at[members].set(1)
        count1 = indicator @ o.pooled
        return chi2_maps(count1, o.totals - count1, n1, n - n1)

    def locate(o: LabelPermutationOperands, thresh):
        return o.mask_index, thresh

    return _summary(maps_fn, shape, connectivity, label_backend, vfwe_only, locate)


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
    callable or nimare_jax.ops.permute.BatchedSummary
        Pure ``summary(key, operands1, operands2, mask_index, thresh)`` (the groups'
        :class:`~nimare_jax.ops.relocation.RelocationOperands`, the flat mask indices and
        the cluster-forming threshold) ``-> {map: {"voxel", "size", "mass"}}``; group 1
        draws from the first half of ``jax.random.split(key)``, group 2 from the second.
        With host labelling, a :class:`~nimare_jax.ops.permute.BatchedSummary`, as in
        :func:`label_permutation_summary`.
    """

    def maps_fn(key, o1, o2, mask_index, thresh):
        del thresh
        k1, k2 = jax.random.split(key)
        count1 = volume1(k1, o1).reshape(-1)[mask_index]
        count2 = volume2(k2, o2).reshape(-1)[mask_index]
        n1, n2 = o1.exp_weight.shape[0], o2.exp_weight.shape[0]
        return chi2_maps(count1, count2, n1, n2)

    def locate(o1, o2, mask_index, thresh):
        del o1, o2
        return mask_index, thresh

    return _summary(maps_fn, shape, connectivity, label_backend, vfwe_only, locate)
