"""Meta-analysis estimators: coordinate-based (``cbma``) and image-based (``ibma``).

The estimators and kernels are exported here as in NiMARE 0.22 (``nimare.meta.ALE``), and
``meta.ale``/``meta.mkda`` name the modules ``meta.cbma.ale``/``meta.cbma.mkda``.
"""

from nimare_jax.meta import cbma, esma, ibma, kernel
from nimare_jax.meta.cbma import ale, mkda
from nimare_jax.meta.cbma.ale import ALE, SCALE, ALESubtraction
from nimare_jax.meta.cbma.mkda import KDA, MKDAChi2, MKDADensity
from nimare_jax.meta.ibma import (
    DerSimonianLaird,
    Fishers,
    Hedges,
    PermutedOLS,
    SampleSizeBasedLikelihood,
    Stouffers,
    VarianceBasedLikelihood,
    WeightedLeastSquares,
)
from nimare_jax.meta.kernel import ALEKernel, KDAKernel, MKDAKernel

__all__ = [
    "ALE",
    "ALEKernel",
    "ALESubtraction",
    "DerSimonianLaird",
    "Fishers",
    "Hedges",
    "KDA",
    "KDAKernel",
    "MKDAChi2",
    "MKDADensity",
    "MKDAKernel",
    "PermutedOLS",
    "SCALE",
    "SampleSizeBasedLikelihood",
    "Stouffers",
    "VarianceBasedLikelihood",
    "WeightedLeastSquares",
    "ale",
    "cbma",
    "esma",
    "ibma",
    "kernel",
    "mkda",
]
