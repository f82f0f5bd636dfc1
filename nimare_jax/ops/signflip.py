"""Sign-flipping max-statistic null of one-sample tests, compiled once per configuration.

Under the null hypothesis of a symmetric distribution about zero, each study's map may be
multiplied by a random sign (Winkler et al. 2014). A one-sample statistic needs only sums
that are linear in the signs (one matrix-vector product each: ``sum(s y)`` for the
ordinary t; ``sum(s q y)`` and ``sum(s a y)`` for the weighted CR2 t of Hedges et al.
2010) and sums the signs leave unchanged, so an iteration is a few products and a
maximum. The maximum is taken per degrees-of-freedom class and only those few maxima are
converted to z.

As in :mod:`nimare_jax.ops.relocation`, :func:`sign_flip_summary` is cached by static
configuration only and the arrays are operands, so a second correction of the same shapes
reuses the permutation engine's compiled runner.

References
----------
Winkler et al. (2014) NeuroImage 92:381 (permutation inference, sign flipping);
Hedges, Tipton & Johnson (2010) Res Synth Methods 1:39 (robust variance);
Tipton (2015) Psychol Methods 20:375 (small-sample CR2 correction).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

#: Factories keep this many configurations alive (each holds only small static values).
_CACHE_SIZE = 32


@functools.lru_cache(maxsize=_CACHE_SIZE)
def sign_flip_summary(t_stat, to_z, two_sided: bool, n_classes: int):
    """Return ``summary(key, linear, fixed, seg, class_dof) -> max z`` of one sign flip.

    Parameters
    ----------
    t_stat : callable
        ``t_stat(*linear_sums, *fixed_sums, eps) -> t`` per voxel, NaN where undefined,
        with ``len(linear) + 1`` fixed sums (e.g. the sum of squares and the count for the
        ordinary t); ``eps`` is the rounding unit of the flipped sums. Hashed by identity:
        pass a module-level function.
    to_z : callable
        ``to_z(t, dof) -> z`` with the same one-tailed probability (hashed by identity).
    two_sided : bool
        Maximum of ``|t|`` (True) or of ``t``.
    n_classes : int
        Number of distinct degrees of freedom among the voxels.

    Returns
    -------
    callable
        Pure ``summary(key, linear, fixed, seg, class_dof)``: ``linear`` a tuple of
        ``(n_studies, n_voxels)`` arrays (the sign-linear terms), ``fixed`` an array of
        rows of sign-free sums, ``seg`` (int32, ``(n_voxels,)``) each voxel's class and
        ``class_dof`` (``(n_classes,)``) the classes' degrees of freedom. Voxels whose
        flipped t is undefined never enter the maximum. Signs are
        ``jax.random.rademacher(key, (n_studies,))``; sums are accumulated in float64 (call
        under ``jax.enable_x64(True)``). The same object for the same arguments.
    """

    def summary(key, linear, fixed, seg, class_dof):
        signs = jax.random.rademacher(key, (linear[0].shape[0],), dtype=linear[0].dtype)
        sums = [(signs @ term).astype(jnp.float64) for term in linear]
        eps = jnp.finfo(linear[0].dtype).eps  # rounding of the flipped sums
        t = t_stat(*sums, *(fixed[i] for i in range(len(sums) + 1)), eps)
        t = jnp.abs(t) if two_sided else t
        t = jnp.where(jnp.isfinite(t), t, -jnp.inf)  # undefined t never enters the maximum
        if n_classes == 1:  # every voxel has the same dof: one max, one conversion
            return to_z(jnp.max(t), class_dof[0])
        per_class = jax.ops.segment_max(t, seg, num_segments=n_classes)
        return jnp.max(to_z(per_class, class_dof))

    return summary
