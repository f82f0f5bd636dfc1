"""Coordinate-based meta-analysis estimators."""

from nimare_jax.meta.cbma.ale import ALE
from nimare_jax.meta.cbma.kernel import ALEKernel, KDAKernel, MKDAKernel

__all__ = ["ALE", "ALEKernel", "KDAKernel", "MKDAKernel"]
