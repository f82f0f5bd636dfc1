"""Per-feature meta-analytic maps of many features at once (the CorrelationDecoder engine).

NiMARE's ``CorrelationDecoder`` runs one meta-analysis per feature. For the MKDA family
every quantity those maps need is a count (or sum) of modelled activation per voxel, and for
all features at once it is one product: with the binary label matrix ``L`` (features x
experiments) and the modelled-activation matrix ``M`` (experiments x voxels),

* MKDAChi2 (the feature's experiments against all others): ``count1 = L @ M``,
  ``count2 = M.sum(0) - count1``, ``n1 = L.sum(1)``, ``n2 = n_experiments - n1``; the
  uniformity tests' expected counts (the mean of ``count1`` over the mask) are
  ``L @ coverage / n_voxels`` with ``coverage`` each experiment's number of active voxels,
  so a chunk of voxels needs no other chunk (:func:`chi2_block`, :func:`chi2_chunk`);
* MKDADensity and KDA (the feature's experiments alone): the statistic is ``L @ M`` (in
  units of the kernel value), an integer, and every map is a function of it given the
  feature's null, read from a per-feature table (:func:`density_chunk`).

A chunk of voxels is given as the experiment/voxel pairs where ``M`` is non-zero, padded to
a fixed length, so every chunk has the same shapes and compiles once; features go in equal
blocks (``lax.map``), each block vmapped over its features. The counts are exact in float32
(integers below 2**24); the chi-square statistics are computed in the dtype of ``expected1``
(float64 under ``jax.enable_x64``), as ``MKDAChi2.fit`` does.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from nimare_jax.ops import stats as ops_stats

_LN10 = math.log(10.0)

#: Maps :func:`chi2_block` computes: ``{chi2,p,z,logp}_desc-{association,group1,
#: uniformity,group2}`` and ``prob_desc-{A,AgF,AgU,group1,group2}`` (NiMARE's MKDAChi2 names).
CHI2_TARGETS = tuple(
    f"{kind}_desc-{test}"
    for kind in ("chi2", "p", "z", "logp")
    for test in ("association", "uniformity", "group1", "group2")
) + tuple(f"prob_desc-{name}" for name in ("A", "AgF", "AgU", "group1", "group2"))


def dense_chunk(rows, cols, n_rows: int, n_cols: int, values=None) -> jax.Array:
    """Scatter experiment/voxel pairs into a dense block.

    Parameters
    ----------
    rows, cols : int array, shape (n_pairs,)
        Experiment and (chunk-local) voxel of each active pair. Padding pairs have
        ``rows == n_rows`` and land in a discarded extra row.
    n_rows, n_cols : int
        Block shape.
    values : float32 array, shape (n_pairs,), optional
        Value of each pair (default 1: a binary block).

    Returns
    -------
    jax.Array of float32, shape (n_rows, n_cols)
        The values where a pair is active, 0 elsewhere.
    """
    block = jnp.zeros((n_rows + 1, n_cols), jnp.float32)
    block = block.at[rows, cols].set(1.0) if values is None else block.at[rows, cols].add(values)
    return block[:n_rows]


def _one_way(count, n, expected):
    """One-way (uniformity) chi-square against a given expected count (0 where undefined)."""
    denominator = expected * (n - expected)
    empty = denominator == 0
    chi2 = (count - expected) ** 2 * n / jnp.where(empty, 1.0, denominator)
    return jnp.where(empty, 0.0, chi2)


def _feature_map(count1, totals, n1, n_total, expected1, expected2, target: str):
    """One feature's map over a chunk of voxels (see :data:`CHI2_TARGETS`)."""
    count2 = totals - count1
    n2 = n_total - n1
    kind, desc = target.split("_desc-")
    if kind == "prob":
        prob = {
            "A": (count1 + count2) / n_total,
            "AgF": count1 / n1,
            "group1": count1 / n1,
            "AgU": count2 / n2,
            "group2": count2 / n2,
        }
        return prob[desc]
    if desc == "association":
        chi2 = ops_stats.two_way_counts(count1, count2, n1, n2)
        sign = jnp.sign(count1 / n1 - count2 / n2)
    elif desc in ("uniformity", "group1"):
        chi2 = _one_way(count1, n1, expected1)
        sign = jnp.sign(count1 - expected1)
    else:
        chi2 = _one_way(count2, n2, expected2)
        sign = jnp.sign(count2 - expected2)
    if kind == "chi2":
        return chi2
    if kind == "z":
        return jnp.sqrt(chi2) * sign
    log_sf = ops_stats.z_to_logp(jnp.sqrt(chi2), tail="two")  # chi-square(1) upper tail
    return jnp.exp(log_sf) if kind == "p" else -log_sf / _LN10


def chi2_block(labels, ma, expected1, expected2, target: str) -> jax.Array:
    """MKDA chi-square maps of a block of features over a chunk of voxels.

    Parameters
    ----------
    labels : float32 array, shape (n_features, n_experiments)
        1 where the experiment carries the feature (rows of zeros pad a block; their maps
        are meaningless).
    ma : float32 array, shape (n_experiments, n_voxels)
        Binary modelled activation of every experiment over the chunk.
    expected1, expected2 : float array, shape (n_features,)
        Mean count of active experiments over the whole mask with / without the feature
        (the uniformity tests' expectations); their dtype is that of the statistics.
    target : str
        One of :data:`CHI2_TARGETS`.

    Returns
    -------
    jax.Array, shape (n_features, n_voxels)
        The target map of each feature, in the dtype of ``expected1``.
    """
    dtype = expected1.dtype
    n_total = jnp.asarray(labels.shape[1], dtype)
    counts = (labels @ ma).astype(dtype)
    totals = ma.sum(0).astype(dtype)
    n1 = labels.sum(1).astype(dtype)

    def one(count1, n_1, e1, e2):
        return _feature_map(count1, totals, n_1, n_total, e1, e2, target)

    return jax.vmap(one)(counts, n1, expected1, expected2)


@functools.partial(jax.jit, static_argnames=("n_cols", "target"))
def chi2_chunk(labels, rows, cols, n_cols: int, expected1, expected2, target: str):
    """MKDA chi-square maps of every feature over one chunk of voxels (float32 out).

    The chunk's dense activation block is built once from its active pairs and shared by
    the feature blocks, which run one after another (``lax.map``) to bound memory.

    Parameters
    ----------
    labels : float32 array, shape (n_blocks, block_size, n_experiments)
        Feature x experiment labels in blocks (see :func:`chi2_block`).
    rows, cols : int array, shape (n_pairs,)
        Active experiment/voxel pairs of the chunk (see :func:`dense_chunk`).
    n_cols : int
        Voxels in the chunk.
    expected1, expected2 : float array, shape (n_blocks, block_size)
        See :func:`chi2_block`.
    target : str
        One of :data:`CHI2_TARGETS`.

    Returns
    -------
    jax.Array of float32, shape (n_blocks, block_size, n_cols)
        The target map of each feature over the chunk.
    """
    if target not in CHI2_TARGETS:
        raise ValueError(f"target must be one of {list(CHI2_TARGETS)}, got {target!r}")
    ma = dense_chunk(rows, cols, labels.shape[2], n_cols)

    def block(args):
        lab, e1, e2 = args
        return chi2_block(lab, ma, e1, e2, target).astype(jnp.float32)

    return jax.lax.map(block, (labels, expected1, expected2))


@functools.partial(jax.jit, static_argnames=("n_cols",))
def density_chunk(labels, rows, cols, values, n_cols: int, table):
    """MKDA-density or KDA maps of every feature over one chunk of voxels (float32 out).

    A feature's statistic is the sum of its experiments' modelled activation
    (``labels @ MA``, in units of the kernel value), an integer ``k``; every map of the
    estimator (``stat``, ``p``, ``z``, ``logp``) is a function of ``k`` alone, given the
    feature's null, so it is read from a per-feature table at ``k``.

    Parameters
    ----------
    labels : float32 array, shape (n_blocks, block_size, n_experiments)
        Feature x experiment labels in blocks.
    rows, cols : int array, shape (n_pairs,)
        Active experiment/voxel pairs of the chunk (see :func:`dense_chunk`).
    values : float32 array, shape (n_pairs,)
        Modelled activation of each pair in units of the kernel value (integers).
    n_cols : int
        Voxels in the chunk.
    table : float array, shape (n_blocks, block_size, n_grid)
        Each feature's map value at sums ``0, 1, ..., n_grid - 1`` (larger sums take the
        last entry, as :func:`nimare_jax.ops.stats.nullhist_to_p` does).

    Returns
    -------
    jax.Array of float32, shape (n_blocks, block_size, n_cols)
        The map of each feature over the chunk.
    """
    ma = dense_chunk(rows, cols, labels.shape[2], n_cols, values)
    n_grid = table.shape[-1]

    def block(args):
        lab, tab = args
        index = jnp.clip(jnp.round(lab @ ma), 0, n_grid - 1).astype(jnp.int32)
        return jnp.take_along_axis(tab.astype(jnp.float32), index, axis=1)

    return jax.lax.map(block, (labels, table))
