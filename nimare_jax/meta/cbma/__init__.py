"""Coordinate-based meta-analysis estimators."""

from nimare_jax.meta.cbma.ale import ALE
from nimare_jax.meta.cbma.kernel import ALEKernel, KDAKernel, MKDAKernel
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


def __getattr__(name):
    # Peaks2MapsKernel lives with the network (a layer above the estimators); importing it
    # lazily keeps the estimator layer free of an upward import at load time.
    if name == "Peaks2MapsKernel":
        from nimare_jax.peaks2maps.kernel import Peaks2MapsKernel

        return Peaks2MapsKernel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
