"""The label-permutation null of the ALE subtraction, compiled once per configuration.

Each iteration draws which ``n1`` of the pooled experiments form group 1. Every
experiment's ALE log term ``-log(1 - MA)`` is stored in int32 fixed point, so a group's log
sum is one integer matrix product with a 0/1 membership vector: exact, whatever the order
of summation, and vectorised over iterations. With the pooled sum fixed, ALE1 - ALE2
increases strictly with group 1's log sum, so the voxel-wise tails compare integers (ties
included).

As in :mod:`nimare_jax.ops.relocation`, :func:`label_permutation_summary` is cached by
static configuration only and the arrays are operands (:class:`SubtractionOperands`), so a
second fit or correction of the same configuration reuses the permutation engine's
compiled runner.

References
----------
Laird et al. (2005) HBM 25:155 (ALE subtraction); Eickhoff et al. (2012) NeuroImage
59:2349 (label-permutation null of the ALE difference).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nimare_jax.ops.label import (
    masked_max_cluster_stats_host,
    max_cluster_stats,
    resolve_label_backend,
)
from nimare_jax.ops.permute import BatchedSummary

#: Factories keep this many configurations alive (each holds only small static values).
_CACHE_SIZE = 32

#: Bin width of the histogram of null ``|ALE1 - ALE2|`` (locates the cluster threshold).
THRESH_BIN = 1e-6

#: Every summary :func:`label_permutation_summary` can return.
OUTPUTS = ("upper", "lower", "voxel", "hist", "size", "mass")


class SubtractionOperands(NamedTuple):
    """Arrays of the subtraction null (a pytree, so it passes through ``jit``).

    Attributes
    ----------
    terms : int32 array, shape (n_voxels, n_exp)
        Fixed-point log terms of group 1's experiments then group 2's.
    total : int32 array, shape (n_voxels,)
        ``terms.sum(axis=1)``.
    observed_q1 : int32 array, shape (n_voxels,)
        Group 1's observed log sum, ``terms[:, :n1].sum(axis=1)``.
    mask_index : int array, shape (n_voxels,) or (0,)
        Flat C-order indices of the mask voxels (needed only for cluster statistics).
    """

    terms: jax.Array
    total: jax.Array
    observed_q1: jax.Array
    mask_index: jax.Array


def difference(q1, q2, inv_scale):
    """ALE1 - ALE2 from fixed-point log sums (float32).

    Parameters
    ----------
    q1, q2 : int array
        Fixed-point log sums of the two groups.
    inv_scale : float
        Log units per fixed-point unit.

    Returns
    -------
    jax.Array, float32
        ``(1 - exp(-l2)) - (1 - exp(-l1))`` computed as ``expm1(-l2) - expm1(-l1)``.
    """
    l1 = q1.astype(jnp.float32) * inv_scale
    l2 = q2.astype(jnp.float32) * inv_scale
    return jnp.expm1(-l2) - jnp.expm1(-l1)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def label_permutation_summary(
    n1: int,
    outputs: tuple,
    shape: tuple | None = None,
    hist_bins: int | None = None,
    connectivity: int = 6,
    label_backend: str = "auto",
):
    """Return ``summary(key, operands, inv_scale, thresh)`` of the subtraction null.

    Parameters
    ----------
    n1 : int
        Size of group 1.
    outputs : tuple of str
        Which of :data:`OUTPUTS` to return: ``upper``/``lower`` (bool per voxel: permuted
        difference >= / <= observed), ``voxel`` (max ``|ALE1 - ALE2|``), ``hist``
        (histogram of ``|ALE1 - ALE2|`` over the mask, bins of width :data:`THRESH_BIN`),
        ``size``/``mass`` (largest cluster of either sign beyond the threshold). Only what
        they need is computed.
    shape : tuple of 3 ints or None
        Volume shape (needed for ``size``/``mass``).
    hist_bins : int or None
        Histogram length (needed for ``hist``).
    connectivity : {6, 18, 26}
        Cluster neighbourhood.
    label_backend : {"auto", "jax", "scipy"}
        See :func:`nimare_jax.ops.label.max_cluster_stats`.

    Returns
    -------
    callable or nimare_jax.ops.permute.BatchedSummary
        Pure ``summary(key, operands: SubtractionOperands, inv_scale, thresh) -> dict`` of
        the requested outputs (``inv_scale``: log units per fixed-point unit; ``thresh``:
        cluster-forming threshold on ``|ALE1 - ALE2|``; both float32 operands); the same
        object for the same arguments. With ``size``/``mass`` and host labelling
        (``label_backend`` resolving to ``"scipy"``), a
        :class:`~nimare_jax.ops.permute.BatchedSummary`: the devices return the
        difference map on the mask voxels and the clusters are labelled on the host
        between batches (:func:`nimare_jax.ops.label.masked_max_cluster_stats_host`), so
        the device programs hold no host callback; every output is then kept per
        iteration (``reduce`` None or ``"keep"``).
    """
    unknown = set(outputs) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {OUTPUTS}")
    clusters = "size" in outputs or "mass" in outputs
    backend = resolve_label_backend(label_backend)

    def draw(key, o: SubtractionOperands, inv_scale):
        """Every output but the clusters, and the difference map (None if not needed)."""
        n = o.terms.shape[1]
        members = jax.random.permutation(key, n)[:n1]
        indicator = jnp.zeros(n, jnp.int32).at[members].set(1)
        q1 = o.terms @ indicator
        out, diff = {"upper": q1 >= o.observed_q1, "lower": q1 <= o.observed_q1}, None
        if {"voxel", "hist"} & set(outputs) or clusters:
            diff = difference(q1, o.total - q1, inv_scale)
            out["voxel"] = jnp.abs(diff).max()
            if "hist" in outputs:
                idx = jnp.floor(jnp.abs(diff) / THRESH_BIN).astype(jnp.int32)
                out["hist"] = jnp.bincount(jnp.clip(idx, 0, hist_bins - 1), length=hist_bins)
        return out, diff

    def summary(key, o: SubtractionOperands, inv_scale, thresh):
        out, diff = draw(key, o, inv_scale)
        if clusters:
            flat = jnp.zeros(math.prod(shape), jnp.float32).at[o.mask_index].set(diff)
            vol = flat.reshape(shape)
            pos = max_cluster_stats(
                vol > thresh, vol - thresh, connectivity=connectivity, backend=backend
            )
            neg = max_cluster_stats(
                vol < -thresh, -vol - thresh, connectivity=connectivity, backend=backend
            )
            out["size"] = jnp.maximum(pos.max_size, neg.max_size)
            out["mass"] = jnp.maximum(pos.max_mass, neg.max_mass)
        return {name: out[name] for name in outputs}

    if not clusters or backend != "scipy":
        return summary

    def each(key, o: SubtractionOperands, inv_scale, thresh):
        del thresh
        out, diff = draw(key, o, inv_scale)
        kept = {name: out[name] for name in outputs if name not in ("size", "mass")}
        return kept, diff

    def batch(result, o: SubtractionOperands, inv_scale, thresh):  # NumPy, on the host
        del inv_scale
        out, diff = result
        mask_index = np.asarray(o.mask_index)
        pos = masked_max_cluster_stats_host(diff, mask_index, shape, thresh, connectivity)
        neg = masked_max_cluster_stats_host(
            diff, mask_index, shape, thresh, connectivity, tail="lower"
        )
        out = {**out, "size": np.maximum(pos[0], neg[0]), "mass": np.maximum(pos[1], neg[1])}
        return {name: out[name] for name in outputs}

    return BatchedSummary(each, batch, on_host=True, with_operands=True)
