"""Kernel transformers under NiMARE 0.22's import path (``nimare.meta.kernel``)."""

from nimare_jax.meta.cbma.kernel import ALEKernel, KDAKernel, KernelTransformer, MKDAKernel

__all__ = ["ALEKernel", "KDAKernel", "KernelTransformer", "MKDAKernel", "Peaks2MapsKernel"]  # noqa: F822


def __getattr__(name):
    # See nimare_jax.meta.cbma: the network's kernel is imported on first use.
    if name == "Peaks2MapsKernel":
        from nimare_jax.peaks2maps.kernel import Peaks2MapsKernel

        return Peaks2MapsKernel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
