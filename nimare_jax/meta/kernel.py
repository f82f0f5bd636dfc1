"""Kernel transformers under NiMARE 0.22's import path (``nimare.meta.kernel``)."""

from nimare_jax.meta.cbma.kernel import (
    ALEKernel,
    KDAKernel,
    KernelTransformer,
    MKDAKernel,
    Peaks2MapsKernel,
)

__all__ = ["ALEKernel", "KDAKernel", "KernelTransformer", "MKDAKernel", "Peaks2MapsKernel"]
