"""Coordinate-based meta-analysis estimators."""

from nimare_jax.meta.cbma.ale import ALE
from nimare_jax.meta.cbma.kernel import ALEKernel, KDAKernel, MKDAKernel, Peaks2MapsKernel
from nimare_jax.meta.cbma.mkda import KDA, MKDAChi2, MKDADensity
from nimare_jax.meta.cbma.scale import SCALE
from nimare_jax.meta.cbma.subtraction import ALESubtraction

__all__ = [
    "ALE",
    "ALEKernel",
    "ALESubtraction",
    "KDA",
    "KDAKernel",
    "MKDAChi2",
    "MKDADensity",
    "MKDAKernel",
    "Peaks2MapsKernel",
    "SCALE",
]
