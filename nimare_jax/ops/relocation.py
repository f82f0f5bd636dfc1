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
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nimare_jax.ops import kernels as K
from nimare_jax.ops.label import (
    gather_active_lines,
    label_active_lines,
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
        Volume shape.
    combine : {"max", "sum"}
        How an experiment's windows combine.
    union : {"probabilistic", "sum"}
        ``"probabilistic"`` returns ``-expm1(-acc)`` (ALE), ``"sum"`` the weighted sum.
    strategy : {"window", "scatter"}
        How windows are applied (resolved: :func:`nimare_jax.ops.kernels.resolve_strategy`).
    ma_fn : callable or None
        Whole-brain MA function ``ma_fn(ijk (n_exp, m, 3), valid) -> (n_exp, n_voxels)``
        replacing the windows (hashed by identity).

    Returns
    -------
    callable
        Pure ``volume(key, operands)``, float32, zero outside the mask; the same object for
        the same arguments.
    """
    probabilistic = union == "probabilistic"

    def volume(key, o: RelocationOperands):
        n_foci = o.focus_window.shape[0]
        ijk = o.mask_ijk[jax.random.randint(key, (n_foci,), 0, o.mask_ijk.shape[0])]
        if ma_fn is not None:
            ma = ma_fn(ijk[o.slot], o.valid)
            terms = -jnp.log1p(-ma) if probabilistic else ma
            flat = jnp.zeros(o.mask.size, jnp.float32).at[o.mask_index].set(o.exp_weight @ terms)
            acc = flat.reshape(shape)
        elif strategy == "scatter":
            acc = K.accumulate_scatter(
                ijk[o.slot],
                o.valid,
                o.exp_window,
                o.exp_weight,
                o.windows,
                shape,
                combine,
                inside=True,
            )
        else:
            acc = accumulate_foci(ijk, o, shape, combine, inside=True)
        return jnp.where(o.mask, -jnp.expm1(-acc) if probabilistic else acc, 0.0)

    return volume


@functools.lru_cache(maxsize=_CACHE_SIZE)
def max_summary(volume, shape: tuple, connectivity: int, label_backend: str, vfwe_only: bool):
    """Return the summary of a draw: its maximum and largest clusters.

    Parameters
    ----------
    volume : callable
        From :func:`volume_fn`.
    shape : tuple of 3 ints
        Volume shape.
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
        :class:`~nimare_jax.ops.permute.BatchedSummary`: each iteration gathers its active
        lines (:func:`nimare_jax.ops.label.gather_active_lines`) and one host callback per
        batch labels them, so the callback's fixed cost and its hold on the GIL are paid
        once per batch rather than once per iteration.
    """
    backend = resolve_label_backend(label_backend)

    def summary(key, o: RelocationOperands, thresh):
        vol = volume(key, o)
        out = {"voxel": vol.max()}
        if not vfwe_only:
            cl = max_cluster_stats(
                vol > thresh, vol - thresh, connectivity=connectivity, backend=backend
            )
            out.update(size=cl.max_size, mass=cl.max_mass)
        return out

    if vfwe_only or backend != "scipy":
        return summary

    def each(key, o: RelocationOperands, thresh):
        vol = volume(key, o)
        return vol.max(), gather_active_lines(vol > thresh, vol - thresh, connectivity)

    def batch(out):
        voxel, gathered = out
        cl = label_active_lines(gathered, shape, connectivity)
        return {"voxel": voxel, "size": cl.max_size, "mass": cl.max_mass}

    return BatchedSummary(each, batch)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def histogram_summary(volume, n_bins: int):
    """Return ``summary(key, operands, inv_step)``: histograms of one draw's mask values.

    Parameters
    ----------
    volume : callable
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
        values = volume(key, o).reshape(-1)[o.mask_index]
        idx = jnp.clip(jnp.round(values * inv_step).astype(jnp.int32), 0, n_bins - 1)
        top = jnp.clip(jnp.round(values.max() * inv_step).astype(jnp.int32), 0, n_bins - 1)
        return {
            "all": jnp.bincount(idx, length=n_bins),
            "max": jnp.zeros(n_bins, jnp.int32).at[top].add(1),
        }

    return summary
