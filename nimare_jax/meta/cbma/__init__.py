"""Coordinate-based meta-analysis estimators."""

from nimare_jax.meta.cbma.ale import ALE
from nimare_jax.meta.cbma.kernel import ALEKernel, KDAKernel, MKDAKernel

__all__ = ["ALE", "ALEKernel", "KDAKernel", "MKDAKernel"]
from nimare_jax.meta.cbma.mkda import KDA, MKDAChi2, MKDADensity  # noqa: E402

__all__ += ["KDA", "MKDAChi2", "MKDADensity"]
