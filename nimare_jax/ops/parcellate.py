"""Batched per-voxel meta-analyses and correlations for meta-analytic parcellation.

Coactivation-based parcellation (CBP; Bzdok et al. 2013, Chase et al. 2020) runs one
meta-analysis per voxel of a region of interest, on the experiments reporting a focus near
that voxel. For the CBMA statistics used here every such map is a sum over the selected
experiments of one per-experiment term:

* MKDA density: the term is the experiment's modelled-activation (MA) value;
* ALE: the term is ``-log(1 - MA)``, and ALE is ``1 - exp(-sum)``.

So with each experiment's terms over a chunk of brain voxels (rows of ``terms``) and each
selection as a padded list of experiment indices, a chunk of all the voxels' maps is a
gather-and-add (:func:`macm_chunk`), in the same order and precision as the estimators
(float32 terms added in float64), followed by a per-selection table lookup that turns the
statistic into ``z``, ``p`` or ``logp`` through that selection's own null distribution. The
maps are never stored: each chunk updates the sums and the cross-product matrix from which
the voxel x voxel correlation of the maps is computed (:func:`gram_update`,
:func:`correlation_from_gram`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from nimare_jax.ops.kernels import _nearest_bin, _union_term


@partial(jax.jit, static_argnames=("union", "n_bins"))
def experiment_terms(ma, union: str, n_bins: int, inv_step):
    """Per-experiment terms of the union, MA histograms and maxima (as the estimators).

    Parameters
    ----------
    ma : float32 array, shape (n_exp, n_voxels)
        MA values of each experiment over the mask.
    union : {"probabilistic", "sum"}
        ``"probabilistic"`` (ALE): the term is ``-log1p(-MA)``; ``"sum"`` (MKDA): ``MA``.
    n_bins : int
        Histogram bins of width ``1 / inv_step`` from 0 (static).
    inv_step : float
        Inverse bin width.

    Returns
    -------
    terms : jax.Array of float32, shape (n_exp, n_voxels)
        Each experiment's additive term.
    hist : jax.Array of int32, shape (n_exp, n_bins)
        Number of mask voxels in each MA bin (nearest centre, ties upward).
    ma_max : jax.Array, shape (n_exp,)
        Largest MA value of each experiment.
    """
    hist = jax.vmap(lambda v: jnp.bincount(_nearest_bin(v, inv_step, n_bins), length=n_bins))(ma)
    return _union_term(ma, union), hist, ma.max(axis=1)


@jax.jit
def selection_distances(roi_xyz, foci_xyz, foci_exp, n_exp_pad):
    """Squared distance from each ROI voxel to each experiment's nearest focus.

    Parameters
    ----------
    roi_xyz : float array, shape (n_roi, 3)
        ROI voxel centres in mm.
    foci_xyz : float array, shape (n_foci, 3)
        Foci in mm.
    foci_exp : int array, shape (n_foci,)
        Experiment of each focus, in ``[0, n_exp)``.
    n_exp_pad : int array, shape (n_exp,)
        Only its length is used: the number of experiments.

    Returns
    -------
    jax.Array, shape (n_roi, n_exp)
        ``min`` over the experiment's foci of the squared distance (inf for none).
    """
    d2 = ((roi_xyz[:, None, :] - foci_xyz[None, :, :]) ** 2).sum(-1)
    per_exp = jax.ops.segment_min(d2.T, foci_exp, num_segments=n_exp_pad.shape[0])
    return per_exp.T


@partial(jax.jit, static_argnames=("kind",))
def macm_chunk(terms, index, table, offset, length, inv_step, kind: str):
    """Compute the maps of many experiment selections over one chunk of brain voxels.

    Parameters
    ----------
    terms : float32 array, shape (n_exp + 1, n_cols)
        Each experiment's term over the chunk; the last row is zeros (the padding target).
    index : int array, shape (n_rows, max_sel)
        Selected experiments of each row, ascending, padded with ``n_exp``.
    table : float array, shape (n_table,)
        Every row's map value at each bin of its null, concatenated (unused for ``stat``).
    offset, length : int arrays, shape (n_rows,)
        Where each row's table starts in ``table`` and its length.
    inv_step : float
        Inverse bin width of the tables (statistic units).
    kind : {"ale", "sum"} with suffix ``"_stat"`` or ``"_table"``
        Statistic (ALE or a sum of MA values) and whether it is looked up in the tables.

    Returns
    -------
    jax.Array of float64 (float32 without x64), shape (n_rows, n_cols)
        The map of each row. ``stat`` is rounded to float32 as the estimators store it; a
        table map is read at the statistic's bin (``round(stat * inv_step)``, halves
        upward, clipped to the table), as :func:`nimare_jax.ops.stats.nullhist_to_p` reads
        a null histogram.
    """
    acc_dtype = jnp.result_type(float)

    def add(k, acc):
        return acc + terms[index[:, k]].astype(acc_dtype)

    acc = jnp.zeros((index.shape[0], terms.shape[1]), acc_dtype)
    acc = jax.lax.fori_loop(0, index.shape[1], add, acc)
    statistic, mode = kind.split("_")
    stat = -jnp.expm1(-acc) if statistic == "ale" else acc
    stat = stat.astype(jnp.float32).astype(acc_dtype)
    if mode == "stat":
        return stat
    scaled = jnp.where(stat > 0, stat, 0.0) * inv_step
    nearest = jnp.round(scaled)
    bin_ = jnp.where(jnp.abs(scaled - nearest) == 0.5, jnp.ceil(scaled), nearest)
    bin_ = jnp.minimum(bin_, (length - 1)[:, None]).astype(jnp.int32)
    return table[offset[:, None] + bin_].astype(acc_dtype)


@partial(jax.jit, static_argnames=("n_blocks",))
def gram_update(gram, total, maps, rows, valid, n_blocks: int = 1):
    """Add one chunk of maps to the running cross-product matrix and row sums.

    Parameters
    ----------
    gram : float array, shape (n_rows, n_rows)
        Running ``sum_b x_ib x_jb`` (float64 under x64); with ``n_blocks > 1`` only its
        upper block triangle is kept (see :func:`symmetric_from_blocks`).
    total : float array, shape (n_rows,)
        Running ``sum_b x_ib``.
    maps : float array, shape (n_maps, n_cols)
        The chunk.
    rows : int array, shape (n_rows,)
        The rows of ``maps`` this matrix is about.
    valid : float array, shape (n_cols,)
        1 for real voxels, 0 for the padding of the last chunk.
    n_blocks : int
        The rows are cut into this many equal blocks (``n_rows`` must be a multiple) and
        only the products of blocks ``i <= j`` are computed: ``(b + 1) / (2 b)`` of the
        full product's work (static).

    Returns
    -------
    gram, total : jax.Array
        Updated (each chunk's product in float32, accumulated in ``gram``'s dtype).
    """
    x = (maps[rows] * valid[None, :]).astype(jnp.float32)
    size = rows.shape[0] // n_blocks
    for i in range(n_blocks):
        for j in range(i, n_blocks):
            block = x[i * size : (i + 1) * size] @ x[j * size : (j + 1) * size].T
            gram = gram.at[i * size : (i + 1) * size, j * size : (j + 1) * size].add(
                block.astype(gram.dtype)
            )
    return gram, total + x.sum(1).astype(total.dtype)


def symmetric_from_blocks(gram, n_blocks: int) -> np.ndarray:
    """Fill the lower block triangle of a matrix kept by :func:`gram_update` (symmetric).

    Parameters
    ----------
    gram : array, shape (n, n)
        Blocks ``i <= j`` of ``n_blocks`` equal row blocks filled, blocks ``i > j`` zero.
    n_blocks : int
        Number of blocks.

    Returns
    -------
    numpy.ndarray, shape (n, n)
        ``gram`` with each block ``i > j`` set to the transpose of block ``j, i``.
    """
    gram = np.array(gram)
    size = gram.shape[0] // n_blocks
    block = np.arange(gram.shape[0]) // size
    lower = block[:, None] > block[None, :]
    gram[lower] = gram.T[lower]
    return gram


def correlation_from_gram(gram, total, n: int) -> np.ndarray:
    """Pearson correlation of rows from their cross-products and sums over ``n`` columns.

    Parameters
    ----------
    gram : array, shape (n_rows, n_rows)
        ``sum_b x_ib x_jb``.
    total : array, shape (n_rows,)
        ``sum_b x_ib``.
    n : int
        Number of columns.

    Returns
    -------
    numpy.ndarray of float64, shape (n_rows, n_rows)
        Correlation matrix, clipped to [-1, 1]; NaN rows and columns for constant rows.
    """
    gram = np.asarray(gram, np.float64)
    mean = np.asarray(total, np.float64) / n
    cov = gram / n - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    corr[sd <= 1e-12 * np.maximum(np.abs(mean), 1.0), :] = np.nan
    corr[:, sd <= 1e-12 * np.maximum(np.abs(mean), 1.0)] = np.nan
    return np.clip(corr, -1.0, 1.0)
