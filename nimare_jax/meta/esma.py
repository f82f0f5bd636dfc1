"""Effect-size meta-analysis functions, at NiMARE's module path ``nimare.meta.esma``.

They are pure JAX functions on arrays and live in :mod:`nimare_jax.ops.esma`; this module
re-exports the public ones.
"""

from __future__ import annotations

from nimare_jax.ops.esma import (
    dersimonian_laird,
    fisher,
    hedges,
    log_chi2_sf,
    log_t_sf,
    one_sample_t,
    random_effects,
    sample_size_based_likelihood,
    stouffer,
    t_to_z,
    variance_based_likelihood,
    weighted_least_squares,
    weighted_one_sample_t,
)

__all__ = [
    "dersimonian_laird",
    "fisher",
    "hedges",
    "log_chi2_sf",
    "log_t_sf",
    "one_sample_t",
    "random_effects",
    "sample_size_based_likelihood",
    "stouffer",
    "t_to_z",
    "variance_based_likelihood",
    "weighted_least_squares",
    "weighted_one_sample_t",
]
