"""Connected-component labelling of supra-threshold voxels, on device.

Cluster-level Monte Carlo FWE correction (Eickhoff et al. 2012, NeuroImage 59:2349;
Eickhoff et al. 2016, NeuroImage 137:70) records, for every null permutation, the size of
the largest supra-threshold cluster and the largest cluster mass (sum over the cluster of a
weight volume, usually ``stat - threshold``). This module computes those numbers inside
``jit``/``vmap`` so that the permutation loop never leaves the device.

Algorithm (``backend="jax"``)
-----------------------------
1. The boolean volume is padded by one voxel on every side (so neighbour offsets never wrap)
   and its active voxels are compacted, in increasing linear (C-order) index, into a buffer
   of static ``capacity`` with :func:`jax.numpy.nonzero`.
2. A position volume maps each active voxel to its buffer slot; one gather per neighbour
   offset (6, 18 or 26 of them) gives a ``(capacity, n_offsets)`` neighbour table.
3. Min-label propagation with pointer jumping inside :func:`jax.lax.while_loop`: every slot
   takes the smallest label among itself and its neighbours, then follows its label twice
   (``label = label[label]``). Labels are always slots of the same component that are not
   larger than the slot itself, so the fixed point is the smallest slot of each component,
   i.e. the component's first voxel in raster order -- exactly the order in which
   :func:`scipy.ndimage.label` numbers clusters. Pointer jumping makes the number of sweeps
   grow roughly with the logarithm of the cluster diameter.
4. Sizes and masses are segment sums over the root slots.

The work per sweep scales with ``capacity`` (the number of supra-threshold voxels that fit),
not with the volume. If more voxels are active than the buffer holds, the ``overflow`` flag
is set and the answer is recomputed by a dense fallback (the same propagation on the whole
volume). The fallback is wrapped in a ``while_loop`` that runs at most once, so under
``vmap`` it costs nothing unless some element of the batch overflowed (a ``lax.cond`` would
be turned into a ``select`` that always pays for both branches). Results are therefore
exact for any input; ``capacity`` only decides speed.

``backend="scipy"`` labels on the host through :func:`jax.pure_callback` (the active
voxels' neighbour edges and a vectorised NumPy union-find). Only the lines along the last
axis that hold active voxels are copied to the host (up to :func:`line_capacity` of them,
gathered on the device; a volume with more is sent whole), so the callback, which holds
the Python GIL and therefore serialises devices, handles a few hundred voxels rather
than the whole volume;
``backend="auto"`` chooses per platform from the measurements in
``benchmarks/bench_label.py``. Permutation nulls keep callbacks out of their device
programs altogether (a program holding one does not run beside the other CPU devices'):
they label on the host between batches, from gathered lines
(:func:`label_active_lines_host`) or from maps on the mask voxels
(:func:`masked_max_cluster_stats_host`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from scipy import ndimage

__all__ = [
    "AUTO_BACKEND_CPU",
    "ActiveLines",
    "ClusterTable",
    "MaxClusterStats",
    "cluster_table",
    "default_capacity",
    "gather_active_lines",
    "label_clusters",
    "label_active_lines",
    "label_active_lines_host",
    "label_clusters_jax",
    "line_capacity",
    "masked_max_cluster_stats_host",
    "max_cluster_stats",
    "neighbour_offsets",
    "resolve_label_backend",
    "structuring_element",
]

#: Backend picked by ``backend="auto"`` on CPU (set from ``benchmarks/bench_label.py``).
AUTO_BACKEND_CPU = "scipy"

_CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}
_BACKENDS = ("auto", "jax", "scipy")


class MaxClusterStats(NamedTuple):
    """Largest cluster size and mass of one volume.

    Attributes
    ----------
    max_size : jax.Array, shape (), int32
        Number of voxels of the largest cluster (0 if no voxel is active).
    max_mass : jax.Array, shape (), dtype of the weights
        Largest sum of weights over a cluster (0 if no voxel is active).
    overflow : jax.Array, shape (), bool
        True if the active voxels did not fit in the capacity buffer (``"jax"``) or the
        active lines did not fit in :func:`line_capacity` (``"scipy"``), so the dense
        fallback produced the (still exact) answer.
    """

    max_size: jax.Array
    max_mass: jax.Array
    overflow: jax.Array


class ClusterTable(NamedTuple):
    """Per-cluster sizes and masses in :func:`scipy.ndimage.label` order.

    Entry ``k`` describes the cluster that :func:`scipy.ndimage.label` numbers ``k + 1``
    (clusters are numbered by their first voxel in C order).

    Attributes
    ----------
    sizes : jax.Array, shape (capacity,), int32
        Cluster sizes; entries ``k >= n_clusters`` are 0.
    masses : jax.Array, shape (capacity,)
        Cluster masses; entries ``k >= n_clusters`` are 0.
    n_clusters : jax.Array, shape (), int32
        Number of clusters (may exceed ``capacity`` only if ``overflow``).
    overflow : jax.Array, shape (), bool
        True if the buffer overflowed; the first ``capacity`` clusters are still exact.
    """

    sizes: jax.Array
    masses: jax.Array
    n_clusters: jax.Array
    overflow: jax.Array


# --------------------------------------------------------------------------------------
# validation and small helpers
# --------------------------------------------------------------------------------------


def _check_connectivity(connectivity: int) -> int:
    if connectivity not in _CONNECTIVITY_RANK:
        raise ValueError(f"connectivity must be 6, 18 or 26; got {connectivity!r}.")
    return int(connectivity)


def _check_volume(active) -> tuple[int, int, int]:
    shape = tuple(np.shape(active))
    if len(shape) != 3:
        raise ValueError(f"Expected a 3-D volume of shape (X, Y, Z); got shape {shape}.")
    return shape


def structuring_element(connectivity: int = 6) -> np.ndarray:
    """Return the 3x3x3 structuring element :func:`scipy.ndimage.label` uses.

    Parameters
    ----------
    connectivity : {6, 18, 26}
        Faces, faces + edges, or faces + edges + corners.

    Returns
    -------
    numpy.ndarray, shape (3, 3, 3), bool
        ``scipy.ndimage.generate_binary_structure(3, rank)`` with rank 1, 2 or 3.
    """
    rank = _CONNECTIVITY_RANK[_check_connectivity(connectivity)]
    return ndimage.generate_binary_structure(3, rank)


def neighbour_offsets(connectivity: int = 6) -> np.ndarray:
    """Return the neighbour displacements of a connectivity.

    Parameters
    ----------
    connectivity : {6, 18, 26}
        Neighbourhood size.

    Returns
    -------
    numpy.ndarray, shape (connectivity, 3), int
        Displacements ``(dx, dy, dz)``, excluding ``(0, 0, 0)``.
    """
    struct = structuring_element(connectivity)
    offsets = np.argwhere(struct) - 1
    return offsets[np.any(offsets != 0, axis=1)]


def _flat_offsets(padded_shape: tuple[int, int, int], connectivity: int) -> np.ndarray:
    _, ny, nz = padded_shape
    d = neighbour_offsets(connectivity)
    return (d[:, 0] * ny * nz + d[:, 1] * nz + d[:, 2]).astype(np.int32)


def default_capacity(shape: tuple[int, int, int]) -> int:
    """Return the default number of active voxels the labelling buffer holds.

    One sixty-fourth of the volume (at least 1024, at most the volume): about 14,000 voxels
    for a 91 x 109 x 91 grid, several times more than a null ALE map has above the
    p < 0.001 cluster-forming threshold. Larger inputs stay exact through the fallback.

    Parameters
    ----------
    shape : tuple of int
        Volume shape ``(X, Y, Z)``.

    Returns
    -------
    int
        Buffer capacity.
    """
    n_vox = math.prod(shape)
    return int(min(n_vox, max(1024, -(-n_vox // 64))))


def resolve_label_backend(backend: str = "auto", platform: str | None = None) -> str:
    """Resolve ``"auto"`` to the labelling backend used on a platform.

    Parameters
    ----------
    backend : {"auto", "jax", "scipy"}
        Requested backend.
    platform : str, optional
        JAX platform (``"cpu"``, ``"gpu"``, ``"tpu"``); default ``jax.default_backend()``.

    Returns
    -------
    str
        ``"jax"`` or ``"scipy"``. ``"auto"`` gives :data:`AUTO_BACKEND_CPU` on CPU and
        ``"jax"`` on accelerators (a host callback would copy every volume off the device).
    """
    if backend not in _BACKENDS:
        raise ValueError(f"label backend must be one of {_BACKENDS}; got {backend!r}.")
    if backend != "auto":
        return backend
    platform = jax.default_backend() if platform is None else platform
    return AUTO_BACKEND_CPU if platform == "cpu" else "jax"


def _run_once_if(pred, fn, default):
    """Return ``fn()`` if ``pred`` else ``default``; free under ``vmap`` when all False.

    A ``while_loop`` whose body clears the predicate runs at most once. Under ``vmap`` a
    batched predicate keeps the loop (and its cost) at zero iterations unless some batch
    element needs it, whereas a batched ``lax.cond`` always evaluates both branches.
    """

    def body(carry):
        del carry
        return jnp.zeros_like(pred), fn()

    return lax.while_loop(lambda carry: carry[0], body, (pred, default))[1]


# --------------------------------------------------------------------------------------
# the two labelling cores: they return, for each active voxel, its component root
# --------------------------------------------------------------------------------------


def _propagate(labels, neighbour_min):
    """Min-label propagation with pointer jumping until nothing changes.

    ``labels`` has a trailing sentinel slot that maps to itself and is larger than every
    real label; ``neighbour_min(labels)`` returns, per slot, the minimum label over its
    neighbours (the sentinel for missing neighbours).
    """

    def body(carry):
        old, _ = carry
        new = jnp.minimum(old, neighbour_min(old))
        new = new[new]
        new = new[new]
        return new, jnp.any(new != old)

    return lax.while_loop(lambda carry: carry[1], body, (labels, jnp.array(True)))[0]


def _sparse_components(active, connectivity: int, capacity: int):
    """Label the active voxels held in a fixed-capacity buffer.

    Returns
    -------
    lin : (capacity,) int32 linear indices into the unpadded volume (0 for empty slots)
    root : (capacity,) int32 root slot of each slot (empty slots are their own root)
    valid : (capacity,) bool, slot holds an active voxel
    n_active : () int32
    overflow : () bool
    """
    nx, ny, nz = active.shape
    padded = jnp.pad(active.astype(bool), 1)
    pshape = padded.shape
    n_pad = math.prod(pshape)
    flat = padded.reshape(-1)
    n_active = jnp.sum(flat, dtype=jnp.int32)
    overflow = n_active > capacity
    (idx,) = jnp.nonzero(flat, size=capacity, fill_value=n_pad)
    idx = idx.astype(jnp.int32)
    slots = jnp.arange(capacity, dtype=jnp.int32)
    valid = slots < n_active
    # position volume: slot of each active voxel, ``capacity`` (= "none") elsewhere
    position = jnp.full((n_pad,), capacity, jnp.int32).at[idx].set(slots, mode="drop")
    offsets = jnp.asarray(_flat_offsets(pshape, connectivity))
    neighbours = position.at[idx[:, None] + offsets[None, :]].get(mode="fill", fill_value=capacity)
    neighbours = jnp.where(valid[:, None], neighbours, capacity)

    def neighbour_min(labels):
        return jnp.min(labels[neighbours], axis=1)

    labels0 = jnp.arange(capacity + 1, dtype=jnp.int32)
    root = _propagate(labels0, lambda lab: jnp.append(neighbour_min(lab), capacity))[:capacity]
    # padded linear index -> unpadded linear index
    pyz = pshape[1] * pshape[2]
    x = idx // pyz - 1
    y = (idx // pshape[2]) % pshape[1] - 1
    z = idx % pshape[2] - 1
    lin = jnp.where(valid, (x * ny + y) * nz + z, 0)
    del nx
    return lin, root, valid, n_active, overflow


def _dense_components(active, connectivity: int):
    """Label the whole volume (fallback). Returns the root linear index per voxel.

    Inactive voxels get the sentinel ``n_vox``. Roots are the smallest linear index of the
    component in the unpadded volume.
    """
    shape = active.shape
    n_vox = math.prod(shape)
    padded = jnp.pad(active.astype(bool), 1)
    pshape = padded.shape
    n_pad = math.prod(pshape)
    flat = padded.reshape(-1)
    offsets = [int(o) for o in _flat_offsets(pshape, connectivity)]
    sentinel = n_pad

    def neighbour_min(labels):
        lab = labels[:n_pad]
        out = jnp.full((n_pad,), sentinel, jnp.int32)
        for o in offsets:
            fill = jnp.full((abs(o),), sentinel, jnp.int32)
            if o > 0:
                shifted = jnp.concatenate([lab[o:], fill])
            else:
                shifted = jnp.concatenate([fill, lab[:o]])
            out = jnp.minimum(out, shifted)
        out = jnp.where(flat, out, sentinel)
        return jnp.append(out, sentinel)

    labels0 = jnp.append(jnp.where(flat, jnp.arange(n_pad, dtype=jnp.int32), sentinel), sentinel)
    root_pad = _propagate(labels0, neighbour_min)[:n_pad].reshape(pshape)[1:-1, 1:-1, 1:-1]
    # padded linear index of the root -> unpadded linear index (order is preserved)
    pyz = pshape[1] * pshape[2]
    x = root_pad // pyz - 1
    y = (root_pad // pshape[2]) % pshape[1] - 1
    z = root_pad % pshape[2] - 1
    root = (x * shape[1] + y) * shape[2] + z
    return jnp.where(active, root, n_vox).reshape(-1)


# --------------------------------------------------------------------------------------
# public jit-able functions
# --------------------------------------------------------------------------------------


def _max_stats_dense(active, weights, connectivity):
    n_vox = math.prod(active.shape)
    root = _dense_components(active, connectivity)
    act = active.reshape(-1)
    w = jnp.where(act, weights.reshape(-1), 0)
    sizes = jnp.zeros(n_vox + 1, jnp.int32).at[root].add(act.astype(jnp.int32))[:n_vox]
    masses = jnp.zeros(n_vox + 1, w.dtype).at[root].add(w)[:n_vox]
    is_root = act & (root == jnp.arange(n_vox, dtype=root.dtype))
    return _reduce_max(sizes, masses, is_root)


def _reduce_max(sizes, masses, is_root):
    any_cluster = jnp.any(is_root)
    max_size = jnp.max(jnp.where(is_root, sizes, 0))
    max_mass = jnp.max(jnp.where(is_root, masses, -jnp.inf))
    max_mass = jnp.where(any_cluster, max_mass, 0).astype(masses.dtype)
    return max_size.astype(jnp.int32), max_mass


def _max_stats_jax(active, weights, connectivity, capacity):
    lin, root, valid, _, overflow = _sparse_components(active, connectivity, capacity)
    w = jnp.where(valid, weights.reshape(-1)[lin], 0)
    sizes = jnp.zeros(capacity, jnp.int32).at[root].add(valid.astype(jnp.int32))
    masses = jnp.zeros(capacity, w.dtype).at[root].add(w)
    is_root = valid & (root == jnp.arange(capacity, dtype=root.dtype))
    sparse = _reduce_max(sizes, masses, is_root)
    max_size, max_mass = _run_once_if(
        overflow, lambda: _max_stats_dense(active, weights, connectivity), sparse
    )
    return MaxClusterStats(max_size, max_mass, overflow)


def _host_components(idx: np.ndarray, shape: tuple, connectivity: int):
    """Return connected components of a volume's active voxels, on the host.

    ``idx`` are the active voxels' linear (C-order) indices in increasing order. Cost grows
    with their number, not with the volume: the voxels are numbered in the volume padded
    by one voxel on every side (so no neighbour wraps around and no bounds are checked),
    each half-neighbourhood offset is looked up with ``searchsorted``, and the edges are
    joined by a vectorised union-find (hook every edge's larger root onto its smaller one,
    then compress paths fully; repeat until every edge lies inside one component). A null
    map's few hundred supra-threshold voxels take well under a millisecond, most of it in
    plain NumPy calls, which matters because the host stage holds the GIL. Component
    numbers are the smallest member's position in ``idx`` (use :func:`label_clusters` for
    scipy's numbering).
    """
    i, j, k = np.unravel_index(idx, shape)
    pshape = (shape[0] + 2, shape[1] + 2, shape[2] + 2)
    padded = ((i + 1) * pshape[1] + j + 1) * pshape[2] + k + 1  # increasing, as idx
    rows, cols = [], []
    for step in _flat_offsets(pshape, connectivity):
        if step <= 0:  # each undirected edge once
            continue
        cand = padded + step
        pos = np.minimum(np.searchsorted(padded, cand), max(idx.size - 1, 0))
        hit = padded[pos] == cand
        rows.append(np.flatnonzero(hit))
        cols.append(pos[hit])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    root = np.arange(idx.size)
    while True:
        ra, rb = root[rows], root[cols]
        split = ra != rb
        if not split.any():
            return root
        ra, rb = ra[split], rb[split]
        np.minimum.at(root, np.maximum(ra, rb), np.minimum(ra, rb))
        while True:  # roots only ever point to smaller slots, so this ends
            jumped = root[root]
            if np.array_equal(jumped, root):
                break
            root = jumped


def _host_max_of(idx, weights, shape, connectivity):
    """Largest cluster size and mass (float64 sums) of sorted active voxels ``idx``."""
    if not idx.size:
        return 0, 0.0
    comp = _host_components(idx, shape, connectivity)
    return np.bincount(comp).max(), np.bincount(comp, weights.astype(np.float64)).max()


def _host_max_stats(active, weights, connectivity):
    """Max cluster size and mass of dense volumes on the host; accepts a leading batch axis."""
    active = np.asarray(active, bool)
    weights = np.asarray(weights)
    shape = active.shape[-3:]
    batch_shape = active.shape[:-3]
    act = active.reshape((-1, *shape))
    if weights.shape != active.shape:  # broadcast only when needed (it copies)
        weights = np.broadcast_to(weights, active.shape)
    wts = weights.reshape(act.shape[0], -1)
    sizes = np.zeros(act.shape[0], np.int32)
    masses = np.zeros(act.shape[0], weights.dtype)
    for i in range(act.shape[0]):
        idx = np.flatnonzero(act[i])
        sizes[i], masses[i] = _host_max_of(idx, wts[i][idx], shape, connectivity)
    return sizes.reshape(batch_shape), masses.reshape(batch_shape)


def _host_max_stats_lines(lines, active, weights, shape, connectivity):
    """As :func:`_host_max_stats`, from the lines along the last axis holding active voxels.

    ``lines`` (..., L) are increasing line numbers (``X * Y`` marks an empty slot);
    ``active`` and ``weights`` (..., L, Z) are those lines' voxels.
    """
    lines = np.asarray(lines)
    batch_shape = lines.shape[:-1]
    n_z = shape[2]
    lines = lines.reshape(-1, lines.shape[-1])
    active = np.asarray(active, bool).reshape(*lines.shape, n_z)
    weights = np.asarray(weights).reshape(*lines.shape, n_z)
    sizes = np.zeros(lines.shape[0], np.int32)
    masses = np.zeros(lines.shape[0], weights.dtype)
    for i in range(lines.shape[0]):
        used = lines[i] < shape[0] * shape[1]
        li, zi = np.nonzero(active[i][used])  # C order: idx below is increasing
        idx = lines[i][used][li].astype(np.int64) * n_z + zi
        w = weights[i][used][li, zi]
        sizes[i], masses[i] = _host_max_of(idx, w, shape, connectivity)
    return sizes.reshape(batch_shape), masses.reshape(batch_shape)


def line_capacity(shape: tuple[int, int, int]) -> int:
    """Return how many lines the ``"scipy"`` backend copies to the host per volume.

    A line is a row of voxels along the last axis. One sixteenth of the lines (at least
    64, at most all): 620 for a 91 x 109 x 91 grid, about twice the number of lines a null
    ALE map has above the p < 0.001 cluster-forming threshold. Volumes with more active
    lines go to the host whole (exact, slower).

    Parameters
    ----------
    shape : tuple of int
        Volume shape ``(X, Y, Z)``.

    Returns
    -------
    int
        Number of lines.
    """
    n_lines = shape[0] * shape[1]
    return int(min(n_lines, max(64, -(-n_lines // 16))))


class ActiveLines(NamedTuple):
    """The lines of a volume that hold active voxels, gathered on the device.

    Made by :func:`gather_active_lines`, labelled on the host by
    :func:`label_active_lines`. A line is a row of voxels along the last axis. Every field
    may carry leading batch axes.

    Attributes
    ----------
    lines : jax.Array, shape (L,), int32
        Line numbers (``x * Y + y``) in increasing order; ``X * Y`` marks an empty slot.
    active, weights : jax.Array, shape (L, Z)
        Those lines' voxels.
    overflow : jax.Array, shape (), bool
        More lines were active than ``L`` (:func:`line_capacity`); the volume was then
        labelled whole and its result is in ``max_size`` and ``max_mass``.
    max_size, max_mass : jax.Array, shape ()
        The overflowed volume's result (0 otherwise).
    """

    lines: jax.Array
    active: jax.Array
    weights: jax.Array
    overflow: jax.Array
    max_size: jax.Array
    max_mass: jax.Array


def gather_active_lines(
    active, weights, connectivity: int = 6, refine=None, fallback: str = "host"
) -> ActiveLines:
    """Gather the lines of a volume that hold active voxels (jit/vmap-able).

    Line numbers come from a cumulative sum over the ``X * Y`` line flags and a binary
    search per buffer slot, then one gather: XLA on CPU has no fast stream compaction
    (``jnp.nonzero`` or a scatter of the whole volume costs more than the labelling). A
    volume with more than :func:`line_capacity` active lines is labelled at once by a host
    callback given the whole volume (exact; under ``vmap`` or ``lax.map`` only volumes
    that overflow pay for it).

    Parameters
    ----------
    active : jax.Array, shape (X, Y, Z), bool
        Supra-threshold voxels.
    weights : jax.Array, shape (X, Y, Z), float
        Per-voxel weights summed into cluster masses.
    connectivity : {6, 18, 26}
        Neighbourhood (used by the overflow path).
    refine : callable, optional
        Elementwise ``refine(weights) -> (active, weights)`` giving the voxels and weights
        to label, evaluated only on the gathered lines (and on the whole volume if they
        overflow). ``active`` then only picks the lines: it must hold every voxel that
        ``refine`` marks active (a cheap superset, e.g. a threshold on a monotone
        function's argument), and ``refine(0)`` must be inactive (empty slots).
    fallback : {"host", "device"}
        How a volume with more active lines than the buffer is labelled: by a host
        callback (``"host"``) or by the on-device dense propagation (``"device"``, for
        programs that must hold no host callback, see
        :class:`nimare_jax.ops.permute.BatchedSummary`).

    Returns
    -------
    ActiveLines
        Input of :func:`label_active_lines`.
    """
    shape = active.shape
    n_lines, n_z = shape[0] * shape[1], shape[2]
    cap = line_capacity(shape)
    act = active.reshape(n_lines, n_z)
    count = jnp.cumsum(jnp.any(act, axis=1), dtype=jnp.int32)
    lines = jnp.searchsorted(count, jnp.arange(1, cap + 1, dtype=jnp.int32), side="left")
    lines = lines.astype(jnp.int32)  # n_lines for empty slots
    overflow = count[-1] > cap
    wblocks = weights.reshape(n_lines, n_z).at[lines].get(mode="fill", fill_value=0)
    if refine is None:
        blocks = act.at[lines].get(mode="fill", fill_value=False)
    else:
        blocks, wblocks = refine(wblocks)

    def dense():
        a, w = (active, weights) if refine is None else refine(weights)
        if fallback == "device":
            return _max_stats_dense(a, w, connectivity)
        out_shapes = (
            jax.ShapeDtypeStruct((), jnp.int32),
            jax.ShapeDtypeStruct((), w.dtype),
        )
        return jax.pure_callback(
            lambda a, w: _host_max_stats(a, w, connectivity),
            out_shapes,
            a,
            w,
            vmap_method="broadcast_all",
        )

    zero = (jnp.zeros((), jnp.int32), jnp.zeros((), weights.dtype))
    max_size, max_mass = _run_once_if(overflow, dense, zero)
    return ActiveLines(lines, blocks, wblocks, overflow, max_size, max_mass)


def label_active_lines(
    gathered: ActiveLines, shape: tuple[int, int, int], connectivity: int = 6
) -> MaxClusterStats:
    """Largest cluster size and mass of gathered lines, in one host callback.

    Any leading batch axes of ``gathered`` are labelled in the same callback (one Python
    call, which holds the GIL, for a whole batch of volumes).

    Parameters
    ----------
    gathered : ActiveLines
        From :func:`gather_active_lines`.
    shape : tuple of int
        Volume shape ``(X, Y, Z)``.
    connectivity : {6, 18, 26}
        Neighbourhood defining clusters.

    Returns
    -------
    MaxClusterStats
        With the leading axes of ``gathered``; equal to
        :func:`scipy.ndimage.label`-based sizes and masses.
    """
    shape = tuple(int(n) for n in shape)
    connectivity = _check_connectivity(connectivity)
    batch = gathered.overflow.shape
    out_shapes = (
        jax.ShapeDtypeStruct(batch, jnp.int32),
        jax.ShapeDtypeStruct(batch, gathered.weights.dtype),
    )
    max_size, max_mass = jax.pure_callback(
        lambda li, a, w: _host_max_stats_lines(li, a, w, shape, connectivity),
        out_shapes,
        gathered.lines,
        gathered.active,
        gathered.weights,
        vmap_method="broadcast_all",
    )
    max_size = jnp.where(gathered.overflow, gathered.max_size, max_size)
    max_mass = jnp.where(gathered.overflow, gathered.max_mass, max_mass)
    return MaxClusterStats(max_size, max_mass, gathered.overflow)


def label_active_lines_host(gathered: ActiveLines, shape, connectivity: int = 6):
    """:func:`label_active_lines` on the host: NumPy arrays in, ``(max_size, max_mass)`` out.

    Parameters
    ----------
    gathered : ActiveLines
        From :func:`gather_active_lines`, copied to the host (any leading batch axes).
    shape : tuple of int
        Volume shape ``(X, Y, Z)``.
    connectivity : {6, 18, 26}
        Neighbourhood defining clusters.

    Returns
    -------
    max_size, max_mass : numpy.ndarray
        With the leading axes of ``gathered``.
    """
    shape = tuple(int(n) for n in shape)
    size, mass = _host_max_stats_lines(
        gathered.lines, gathered.active, gathered.weights, shape, _check_connectivity(connectivity)
    )
    overflow = np.asarray(gathered.overflow)
    size = np.where(overflow, np.asarray(gathered.max_size), size).astype(np.int32)
    return size, np.where(overflow, np.asarray(gathered.max_mass), mass).astype(mass.dtype)


def masked_max_cluster_stats_host(
    values, mask_index, shape, thresh, connectivity: int = 6, tail: str = "upper"
):
    """Largest cluster size and mass of maps given on mask voxels, on the host (NumPy).

    The host stage of a permutation null whose statistic lives on the mask voxels (see
    :class:`nimare_jax.ops.permute.BatchedSummary`): the devices return the maps, this
    labels them. Equal to placing each map in a volume of zeros and calling
    :func:`max_cluster_stats` with ``active = vol > thresh`` and ``weights = vol - thresh``
    (``tail="upper"``) or ``active = vol < -thresh`` and ``weights = -vol - thresh``
    (``"lower"``); the weights are computed in the maps' dtype, as on the device, and
    summed in float64.

    Parameters
    ----------
    values : numpy.ndarray, shape (..., n_voxels), float
        Maps on the mask voxels, any leading batch axes.
    mask_index : numpy.ndarray, shape (n_voxels,), int
        Flat C-order indices of the mask voxels in a volume of shape ``shape``.
    shape : tuple of 3 ints
        Volume shape.
    thresh : float
        Cluster-forming threshold, cast to the maps' dtype (voxels strictly beyond it).
    connectivity : {6, 18, 26}
        Neighbourhood defining clusters.
    tail : {"upper", "lower"}
        Clusters above ``thresh`` or below ``-thresh``.

    Returns
    -------
    max_size : numpy.ndarray, int32
        With the leading axes of ``values`` (0 where no voxel is active).
    max_mass : numpy.ndarray, dtype of ``values``
        Likewise.
    """
    if tail not in ("upper", "lower"):
        raise ValueError(f"tail must be 'upper' or 'lower'; got {tail!r}.")
    connectivity = _check_connectivity(connectivity)
    shape = tuple(int(n) for n in shape)
    values = np.asarray(values)
    mask_index = np.asarray(mask_index)
    if values.shape[-1:] != mask_index.shape:
        raise ValueError(
            f"values must end with the {mask_index.shape[0]} mask voxels; got shape "
            f"{values.shape}."
        )
    thresh = values.dtype.type(thresh)
    rows = values.reshape(-1, values.shape[-1])
    sizes = np.zeros(rows.shape[0], np.int32)
    masses = np.zeros(rows.shape[0], values.dtype)
    for n, row in enumerate(rows):
        (idx,) = np.nonzero(row > thresh if tail == "upper" else row < -thresh)
        weights = row[idx] - thresh if tail == "upper" else -row[idx] - thresh
        lin = mask_index[idx]
        if lin.size > 1 and np.any(lin[1:] < lin[:-1]):  # a mask given out of order
            order = np.argsort(lin)
            lin, weights = lin[order], weights[order]
        sizes[n], masses[n] = _host_max_of(lin, weights, shape, connectivity)
    batch = values.shape[:-1]
    return sizes.reshape(batch), masses.reshape(batch)


def max_cluster_stats(
    active,
    weights=None,
    *,
    connectivity: int = 6,
    capacity: int | None = None,
    backend: str = "auto",
) -> MaxClusterStats:
    """Return the largest cluster size and cluster mass of a boolean volume.

    Pure and ``jit``/``vmap``-able; ``connectivity``, ``capacity`` and ``backend`` are
    static. Equals ``scipy.ndimage.label(active, generate_binary_structure(3, r))`` followed
    by the maximum voxel count and the maximum weight sum over labels (0 and 0 when no
    voxel is active), which is what NiMARE's ``_calculate_cluster_measures`` records.

    Parameters
    ----------
    active : array-like, shape (X, Y, Z), bool
        Supra-threshold voxels.
    weights : array-like, shape (X, Y, Z), float, optional
        Per-voxel weights whose sum over a cluster is its mass, e.g. ``stat - threshold``.
        Default: all ones (mass equals size).
    connectivity : {6, 18, 26}
        Neighbourhood defining clusters (faces, + edges, + corners). NiMARE uses 6.
    capacity : int, optional
        Static number of active voxels the ``"jax"`` backend labels in its compact buffer;
        default :func:`default_capacity`. Inputs with more active voxels are still labelled
        exactly (dense fallback, slower) and flagged with ``overflow``.
    backend : {"auto", "jax", "scipy"}
        ``"jax"``: on-device label propagation; ``"scipy"``: a host callback given the
        lines holding active voxels (NumPy union-find, same result as
        :func:`scipy.ndimage.label`); ``"auto"``: see :func:`resolve_label_backend`.

    Returns
    -------
    MaxClusterStats
        ``(max_size, max_mass, overflow)`` scalars.

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.zeros((4, 4, 4), bool)
    >>> vol[0, 0, :3] = True
    >>> vol[3, 3, 3] = True
    >>> out = max_cluster_stats(vol, backend="jax")
    >>> int(out.max_size), float(out.max_mass)
    (3, 3.0)
    """
    connectivity = _check_connectivity(connectivity)
    shape = _check_volume(active)
    backend = resolve_label_backend(backend)
    active = jnp.asarray(active, bool)
    weights = jnp.ones(shape, jnp.result_type(float)) if weights is None else jnp.asarray(weights)
    if weights.shape != shape:
        raise ValueError(f"weights must have the shape of active {shape}; got {weights.shape}.")
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        weights = weights.astype(jnp.result_type(float))
    if backend == "scipy":
        gathered = gather_active_lines(active, weights, connectivity)
        return label_active_lines(gathered, shape, connectivity)
    capacity = default_capacity(shape) if capacity is None else int(capacity)
    if capacity < 1:
        raise ValueError(f"capacity must be a positive integer; got {capacity}.")
    return _max_stats_jax(active, weights, connectivity, capacity)


def cluster_table(
    active,
    weights=None,
    *,
    connectivity: int = 6,
    capacity: int | None = None,
) -> ClusterTable:
    """Return every cluster's size and mass, in :func:`scipy.ndimage.label` order.

    Pure and ``jit``/``vmap``-able (on-device algorithm of this module).

    Parameters
    ----------
    active : array-like, shape (X, Y, Z), bool
        Supra-threshold voxels.
    weights : array-like, shape (X, Y, Z), float, optional
        Weights summed into the mass; default all ones.
    connectivity : {6, 18, 26}
        Neighbourhood defining clusters.
    capacity : int, optional
        Static buffer size (see :func:`max_cluster_stats`); also the length of the output
        arrays.

    Returns
    -------
    ClusterTable
        ``(sizes, masses, n_clusters, overflow)``.
    """
    connectivity = _check_connectivity(connectivity)
    shape = _check_volume(active)
    active = jnp.asarray(active, bool)
    weights = jnp.ones(shape, jnp.result_type(float)) if weights is None else jnp.asarray(weights)
    if weights.shape != shape:
        raise ValueError(f"weights must have the shape of active {shape}; got {weights.shape}.")
    capacity = default_capacity(shape) if capacity is None else int(capacity)
    lin, root, valid, _, overflow = _sparse_components(active, connectivity, capacity)
    slots = jnp.arange(capacity, dtype=jnp.int32)
    is_root = valid & (root == slots)
    rank = jnp.cumsum(is_root, dtype=jnp.int32) - 1  # cluster number - 1 of each root slot
    cluster = rank[root]
    w = jnp.where(valid, weights.reshape(-1)[lin], 0)
    sizes = jnp.zeros(capacity, jnp.int32).at[cluster].add(valid.astype(jnp.int32), mode="drop")
    masses = jnp.zeros(capacity, w.dtype).at[cluster].add(w, mode="drop")
    n_clusters = jnp.sum(is_root, dtype=jnp.int32)

    def dense():
        n_vox = math.prod(shape)
        droot = _dense_components(active, connectivity)
        act = active.reshape(-1)
        d_is_root = act & (droot == jnp.arange(n_vox, dtype=droot.dtype))
        d_rank = jnp.cumsum(d_is_root, dtype=jnp.int32) - 1
        d_cluster = jnp.where(act, d_rank[jnp.minimum(droot, n_vox - 1)], capacity)
        d_w = jnp.where(act, weights.reshape(-1), 0)
        d_sizes = (
            jnp.zeros(capacity, jnp.int32).at[d_cluster].add(act.astype(jnp.int32), mode="drop")
        )
        d_masses = jnp.zeros(capacity, d_w.dtype).at[d_cluster].add(d_w, mode="drop")
        return d_sizes, d_masses, jnp.sum(d_is_root, dtype=jnp.int32)

    sizes, masses, n_clusters = _run_once_if(overflow, dense, (sizes, masses, n_clusters))
    return ClusterTable(sizes, masses, n_clusters, overflow)


def label_clusters_jax(active, *, connectivity: int = 6, capacity: int | None = None):
    """Return a label volume identical to :func:`scipy.ndimage.label`'s, on device.

    Parameters
    ----------
    active : array-like, shape (X, Y, Z), bool
        Supra-threshold voxels.
    connectivity : {6, 18, 26}
        Neighbourhood defining clusters.
    capacity : int, optional
        Static buffer size (see :func:`max_cluster_stats`); larger inputs use the exact
        dense fallback.

    Returns
    -------
    labels : jax.Array, shape (X, Y, Z), int32
        0 for background, clusters numbered 1..n by their first voxel in C order.
    n_clusters : jax.Array, shape (), int32
        Number of clusters.
    """
    connectivity = _check_connectivity(connectivity)
    shape = _check_volume(active)
    active = jnp.asarray(active, bool)
    n_vox = math.prod(shape)
    capacity = default_capacity(shape) if capacity is None else int(capacity)
    lin, root, valid, _, overflow = _sparse_components(active, connectivity, capacity)
    is_root = valid & (root == jnp.arange(capacity, dtype=jnp.int32))
    number = jnp.cumsum(is_root, dtype=jnp.int32)[root]
    sparse = jnp.zeros(n_vox, jnp.int32).at[jnp.where(valid, lin, n_vox)].set(number, mode="drop")

    def dense():
        droot = _dense_components(active, connectivity)
        act = active.reshape(-1)
        d_is_root = act & (droot == jnp.arange(n_vox, dtype=droot.dtype))
        d_number = jnp.cumsum(d_is_root, dtype=jnp.int32)
        return jnp.where(act, d_number[jnp.minimum(droot, n_vox - 1)], 0)

    labels = _run_once_if(overflow, dense, sparse)
    return labels.reshape(shape), jnp.max(labels, initial=0)


def label_clusters(active, connectivity: int = 6) -> tuple[np.ndarray, int]:
    """Label clusters on the host with :func:`scipy.ndimage.label` (observed map, once).

    Parameters
    ----------
    active : array-like, shape (X, Y, Z), bool
        Supra-threshold voxels.
    connectivity : {6, 18, 26}
        Neighbourhood defining clusters.

    Returns
    -------
    labels : numpy.ndarray, shape (X, Y, Z), int32
        0 for background, clusters numbered 1..n by their first voxel in C order.
    n_clusters : int
        Number of clusters.
    """
    _check_volume(active)
    labels, n = ndimage.label(
        np.asarray(active, bool), structuring_element(connectivity), output=np.int32
    )
    return labels, int(n)
