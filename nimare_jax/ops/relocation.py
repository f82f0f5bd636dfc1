"""Relocation nulls of the coordinate-based estimators, compiled once per configuration.

A relocation null redraws every focus uniformly over the mask voxels (experiments, kernels
and weights kept) and summarises the resulting statistic volume. The functions here split
that into static configuration and arrays:

- :func:`volume_fn`, :func:`max_summary` and :func:`histogram_summary` are factories keyed
  by static configuration only (shapes come from the operands). They are cached, so the same
  configuration returns the same function object: a second fit or correction reuses the
  permutation engine's compiled runner (:func:`nimare_jax.ops.permute.run_permutations`)
  instead of tracing and compiling again.
- :class:`RelocationOperands` holds the arrays; they are passed to the engine as operands,
  never closed over (which would compile them into the program as constants).

References
----------
Eickhoff et al. (2012) NeuroImage 59:2349 (Monte Carlo FWE by random relocation of foci).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nimare_jax.ops import kernels as K
from nimare_jax.ops.label import (
    gather_active_lines,
    label_active_lines_host,
    max_cluster_stats,
    resolve_label_backend,
)
from nimare_jax.ops.permute import BatchedSummary

#: Factories keep this many configurations alive (each holds only small static values).
_CACHE_SIZE = 32


class RelocationOperands(NamedTuple):
    """Arrays of one relocation null (a pytree, so it passes through ``jit``).

    Attributes
    ----------
    mask : bool array, shape (X, Y, Z)
        The mask volume.
    mask_ijk : int32 array, shape (n_voxels, 3)
        Voxel indices of the mask voxels (where foci are redrawn).
    mask_index : int32 array, shape (n_voxels,)
        Flat C-order indices of the mask voxels.
    windows : float32 array, shape (n_windows, W, W, W)
        Kernels as accumulated (``-log1p(-K)`` for a probabilistic union).
    focus_window, focus_weight, step_focus, step_flush : arrays
        Per-focus kernel index and weight, and the window loop's schedule
        (:func:`nimare_jax.ops.kernels.schedule`).
    slot, valid : arrays, shape (n_exp, m)
        Foci of each experiment (padded) for the scatter and whole-brain paths.
    exp_window, exp_weight : arrays, shape (n_exp,)
        Kernel index and weight of each experiment.
    origin : int32 array, shape (3,), or None
        Position of the volume's first voxel in the image grid when the operands describe a
        crop of it (:func:`crop_to_mask`); ``None`` for the whole image.
    """

    mask: jax.Array
    mask_ijk: jax.Array
    mask_index: jax.Array
    windows: jax.Array
    focus_window: jax.Array
    focus_weight: jax.Array
    step_focus: jax.Array
    step_flush: jax.Array
    slot: jax.Array
    valid: jax.Array
    exp_window: jax.Array
    exp_weight: jax.Array
    origin: jax.Array | None = None


def crop_to_mask(o: RelocationOperands) -> RelocationOperands:
    """Return the same relocation null on the bounding box of the mask (host-side).

    Foci are drawn on mask voxels and every voxel outside the mask is zero, so nothing of
    a draw lies outside the mask's bounding box: the cropped operands give the same
    statistic on every mask voxel, the same maximum and the same clusters (mask voxels
    keep their order, so iteration ``i`` draws the same foci), while the accumulation
    buffer of each iteration shrinks (about 60 % of the volume for the MNI 2 mm mask).

    Parameters
    ----------
    o : RelocationOperands
        Operands of the whole image (``origin`` None).

    Returns
    -------
    RelocationOperands
        Mask, voxel indices and flat indices in the box, ``origin`` its first voxel.
    """
    mask = np.asarray(o.mask)
    ijk = np.asarray(o.mask_ijk)
    if o.origin is not None or ijk.shape[0] == 0:
        return o
    lo, hi = ijk.min(0), ijk.max(0) + 1
    box = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    inside = np.stack(np.unravel_index(np.asarray(o.mask_index), mask.shape), axis=1) - lo
    return o._replace(
        mask=jnp.asarray(box),
        mask_ijk=jnp.asarray(ijk - lo, jnp.int32),
        mask_index=jnp.asarray(np.ravel_multi_index(inside.T, box.shape), jnp.int32),
        origin=jnp.asarray(lo, jnp.int32),
    )


@dataclass(frozen=True, eq=False)
class RelocationVolume:
    """The statistic volume of one relocation, and the accumulator it is made from.

    Calling it, ``volume(key, operands)``, returns the statistic, float32, zero outside
    the mask. Summaries of the maximum and of clusters use the parts: the statistic is
    ``transform(accumulate(key, operands))`` on mask voxels, with ``transform``
    non-decreasing, so the maximum needs one transformed value and the threshold can be
    tested on the accumulator first (:func:`max_summary`).

    Attributes
    ----------
    accumulate : callable
        Pure ``accumulate(key, operands) -> (X, Y, Z)`` float32 accumulator (defined
        outside the mask too; mask it before use). ``(X, Y, Z)`` is ``operands.mask``'s
        shape.
    probabilistic : bool
        True: the statistic is ``-expm1(-acc)`` (ALE's probabilistic union); False: the
        accumulator itself.
    """

    accumulate: Callable
    probabilistic: bool

    def transform(self, acc):
        """Return the statistic of accumulator values ``acc``."""
        return -jnp.expm1(-acc) if self.probabilistic else acc

    def __call__(self, key, o: RelocationOperands):
        """Return the statistic volume of the relocation drawn from ``key``."""
        return jnp.where(o.mask, self.transform(self.accumulate(key, o)), 0.0)


def accumulate_foci(ijk, o, shape: tuple, combine: str, inside: bool):
    """Window accumulation of foci at ``ijk`` with the kernels and schedule of ``o``.

    Parameters
    ----------
    ijk : int array, shape (n_foci, 3)
        Voxel indices of the foci.
    o : RelocationOperands or any operands with the same window fields
        ``windows``, ``focus_window``, ``focus_weight``, ``step_focus``, ``step_flush``.
    shape : tuple of 3 ints
        Volume shape.
    combine : {"max", "sum"}
        How an experiment's windows combine.
    inside : bool
        Promise that ``ijk`` lies inside the volume.

    Returns
    -------
    jax.Array, shape ``shape``
        :func:`nimare_jax.ops.kernels.accumulate` of the foci.
    """
    return K.accumulate(
        ijk,
        o.focus_window,
        o.focus_weight,
        o.windows,
        o.step_focus,
        o.step_flush,
        shape,
        combine,
        inside=inside,
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def volume_fn(shape: tuple, combine: str, union: str, strategy: str, ma_fn=None):
    """Return ``volume(key, operands) -> (X, Y, Z)``: the statistic of one relocation.

    Parameters
    ----------
    shape : tuple of 3 ints
        Shape of the image (the cache key; the volume made has the shape of
        ``operands.mask``, which is smaller for operands cropped by :func:`crop_to_mask`).
    combine : {"max", "sum"}
        How an experiment's windows combine.
    union : {"probabilistic", "sum"}
        ``"probabilistic"`` returns ``-expm1(-acc)`` (ALE), ``"sum"`` the weighted sum.
    strategy : {"window", "scatter"}
        How windows are applied (resolved: :func:`nimare_jax.ops.kernels.resolve_strategy`).
    ma_fn : callable or None
        Whole-brain MA function ``ma_fn(ijk (n_exp, m, 3), valid) -> (n_exp, n_voxels)``
        of image voxel indices, replacing the windows (hashed by identity).

    Returns
    -------
    RelocationVolume
        Pure ``volume(key, operands)``, float32, zero outside the mask, and its
        accumulator; the same object for the same arguments.
    """
    del shape  # part of the cache key only: shapes come from the operands
    probabilistic = union == "probabilistic"

    def accumulate(key, o: RelocationOperands):
        shape = o.mask.shape
        n_foci = o.focus_window.shape[0]
        ijk = o.mask_ijk[jax.random.randint(key, (n_foci,), 0, o.mask_ijk.shape[0])]
        if ma_fn is not None:
            image_ijk = ijk if o.origin is None else ijk + o.origin
            ma = ma_fn(image_ijk[o.slot], o.valid)
            terms = -jnp.log1p(-ma) if probabilistic else ma
            flat = jnp.zeros(o.mask.size, jnp.float32).at[o.mask_index].set(o.exp_weight @ terms)
            return flat.reshape(shape)
        if strategy == "scatter":
            return K.accumulate_scatter(
                ijk[o.slot],
                o.valid,
                o.exp_window,
                o.exp_weight,
                o.windows,
                shape,
                combine,
                inside=True,
            )
        return accumulate_foci(ijk, o, shape, combine, inside=True)

    return RelocationVolume(accumulate, probabilistic)


#: Relative margin by which the accumulator's threshold undercuts the statistic's: the
#: float32 ``-expm1(-a)`` never exceeds ``a`` by more than a few units in the last place.
_THRESHOLD_MARGIN = 1e-5


@functools.lru_cache(maxsize=_CACHE_SIZE)
def max_summary(volume, shape: tuple, connectivity: int, label_backend: str, vfwe_only: bool):
    """Return the summary of a draw: its maximum and largest clusters.

    Parameters
    ----------
    volume : RelocationVolume
        From :func:`volume_fn`.
    shape : tuple of 3 ints
        Shape of the operands' mask (the volume labelled).
    connectivity : {6, 18, 26}
        Cluster neighbourhood.
    label_backend : {"auto", "jax", "scipy"}
        See :func:`nimare_jax.ops.label.max_cluster_stats`.
    vfwe_only : bool
        Record only the maximum.

    Returns
    -------
    callable or nimare_jax.ops.permute.BatchedSummary
        Pure ``summary(key, operands, thresh) -> {"voxel", "size", "mass"}`` with clusters
        of voxels strictly above ``thresh`` (an operand, so thresholds share one program).
        With host labelling (``label_backend`` resolving to ``"scipy"``) it is a
        :class:`~nimare_jax.ops.permute.BatchedSummary`: each iteration gathers the lines
        holding supra-threshold voxels (:func:`nimare_jax.ops.label.gather_active_lines`)
        and one host callback per batch labels them, so the callback's fixed cost and its
        hold on the GIL are paid once per batch rather than once per iteration.

    Notes
    -----
    The statistic is a non-decreasing function of the accumulator, so the maximum is the
    transformed maximum accumulator, and lines are picked with a threshold on the
    accumulator a little below the statistic's; the statistic itself (``-expm1`` for ALE)
    is computed only on the gathered lines, where clusters are formed exactly as on the
    whole volume.
    """
    backend = resolve_label_backend(label_backend)

    def masked_accumulator(key, o: RelocationOperands):
        return jnp.where(o.mask, volume.accumulate(key, o), 0.0)

    def summary(key, o: RelocationOperands, thresh):
        if vfwe_only:
            return {"voxel": volume.transform(masked_accumulator(key, o).max())}
        vol = volume(key, o)
        cl = max_cluster_stats(
            vol > thresh, vol - thresh, connectivity=connectivity, backend=backend
        )
        return {"voxel": vol.max(), "size": cl.max_size, "mass": cl.max_mass}

    if vfwe_only or backend != "scipy":
        return summary

    def each(key, o: RelocationOperands, thresh):
        acc = masked_accumulator(key, o)
        margin = _THRESHOLD_MARGIN * jnp.abs(thresh) if volume.probabilistic else 0.0

        def exact(values):  # the statistic's supra-threshold voxels and their weights
            stat = volume.transform(values)
            return stat > thresh, stat - thresh

        gathered = gather_active_lines(
            acc > thresh - margin, acc, connectivity, refine=exact, fallback="device"
        )
        return volume.transform(acc.max()), gathered

    def batch(out):  # on the host, so the device programs hold no callback
        voxel, gathered = out
        size, mass = label_active_lines_host(gathered, shape, connectivity)
        return {"voxel": voxel, "size": size, "mass": mass}

    return BatchedSummary(each, batch, on_host=True)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def histogram_summary(volume, n_bins: int):
    """Return ``summary(key, operands, inv_step)``: histograms of one draw's mask values.

    Parameters
    ----------
    volume : RelocationVolume
        From :func:`volume_fn`.
    n_bins : int
        Histogram bins of width ``1 / inv_step`` from 0.

    Returns
    -------
    callable
        Pure ``summary(key, operands, inv_step) -> {"all": counts of all mask values,
        "max": one count at the maximum's bin}``.
    """

    def summary(key, o: RelocationOperands, inv_step):
        # the statistic of the mask voxels only: their accumulator, then the transform
        values = volume.transform(volume.accumulate(key, o).reshape(-1)[o.mask_index])
        idx = jnp.clip(jnp.round(values * inv_step).astype(jnp.int32), 0, n_bins - 1)
        top = jnp.clip(jnp.round(values.max() * inv_step).astype(jnp.int32), 0, n_bins - 1)
        return {
            "all": jnp.bincount(idx, length=n_bins),
            "max": jnp.zeros(n_bins, jnp.int32).at[top].add(1),
        }

    return summary
