"""The SCALE null: foci redrawn from a baseline pool, compiled once per configuration.

Every experiment and its kernel are kept; each focus's position is redrawn uniformly from
a pool of baseline coordinates (e.g. all foci of a database), and the ALE map of the draw is
summarised (voxels where it reaches the observed ALE; its maximum). The observed map and
every draw share one arithmetic, :func:`log_union_fn`, so identical configurations tie
exactly.

As in :mod:`nimare_jax.ops.relocation`, the factories are cached by static configuration
only and the arrays are operands (:class:`BaselineOperands`), so a second fit of the same
configuration reuses the permutation engine's compiled runner.

References
----------
Langner et al. (2014) NeuroImage 98:8 (SCALE); Eickhoff et al. (2009) HBM 30:2907 and
Turkeltaub et al. (2012) HBM 33:1 (the ALE statistic).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nimare_jax.ops.relocation import accumulate_foci

#: Factories keep this many configurations alive (each holds only small static values).
_CACHE_SIZE = 32

#: Every summary :func:`baseline_summary` can return.
OUTPUTS = ("exceed", "voxel")


class BaselineOperands(NamedTuple):
    """Arrays of the SCALE null (a pytree, so it passes through ``jit``).

    Attributes
    ----------
    pool_ijk : int32 array, shape (n_pool, 3)
        Voxel indices of the baseline coordinates (inside the volume or not).
    mask_index : int array, shape (n_voxels,)
        Flat C-order indices of the mask voxels.
    windows : float array, shape (n_windows, W, W, W)
        The kernels as ``-log1p(-K)``.
    focus_window, focus_weight, step_focus, step_flush : arrays
        Per-focus kernel index and (unit) weight, and the window loop's schedule
        (:func:`nimare_jax.ops.kernels.schedule`).
    slot, valid : arrays, shape (n_exp, m)
        Foci of each experiment (padded), for a whole-brain ``ma_fn``.
    """

    pool_ijk: jax.Array
    mask_index: jax.Array
    windows: jax.Array
    focus_window: jax.Array
    focus_weight: jax.Array
    step_focus: jax.Array
    step_flush: jax.Array
    slot: jax.Array
    valid: jax.Array


@functools.lru_cache(maxsize=_CACHE_SIZE)
def log_union_fn(shape: tuple, in_volume: bool, ma_fn=None):
    """Return ``log_union(ijk, operands) -> -log(1 - ALE)`` over the mask for foci at ``ijk``.

    Parameters
    ----------
    shape : tuple of 3 ints
        Volume shape.
    in_volume : bool
        Promise that the positions lie inside the volume (a smaller padded volume; the
        values are the same, see :func:`nimare_jax.ops.kernels.window_frame`).
    ma_fn : callable or None
        Whole-brain MA function ``ma_fn(ijk (n_exp, m, 3), valid) -> (n_exp, n_voxels)``
        replacing the windows (hashed by identity).

    Returns
    -------
    callable
        Pure ``log_union(ijk (n_foci, 3), operands: BaselineOperands) -> (n_voxels,)``;
        the same object for the same arguments.
    """

    def log_union(ijk, o: BaselineOperands):
        if ma_fn is not None:
            return (-jnp.log1p(-ma_fn(ijk[o.slot], o.valid))).sum(0)
        acc = accumulate_foci(ijk, o, shape, "max", inside=in_volume)
        return acc.reshape(-1)[o.mask_index]

    return log_union


@functools.lru_cache(maxsize=_CACHE_SIZE)
def baseline_summary(log_union, outputs: tuple):
    """Return ``summary(key, operands, observed_log)`` of one redraw from the pool.

    Parameters
    ----------
    log_union : callable
        From :func:`log_union_fn`.
    outputs : tuple of str
        Which of :data:`OUTPUTS` to return: ``exceed`` (bool per voxel: the draw's ALE is
        at least the observed one) and ``voxel`` (the draw's maximum ALE).

    Returns
    -------
    callable
        Pure ``summary(key, operands: BaselineOperands, observed_log) -> dict`` of the
        requested outputs, ``observed_log`` being the observed ``-log(1 - ALE)`` over the
        mask (computed by ``log_union``); the same object for the same arguments.
    """
    unknown = set(outputs) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {OUTPUTS}")

    def summary(key, o: BaselineOperands, observed_log):
        n_foci = o.focus_window.shape[0]
        idx = jax.random.randint(key, (n_foci,), 0, o.pool_ijk.shape[0])
        values = log_union(o.pool_ijk[idx], o)
        out = {"exceed": values >= observed_log, "voxel": -jnp.expm1(-values.max())}
        return {name: out[name] for name in outputs}

    return summary
