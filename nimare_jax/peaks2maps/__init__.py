"""peaks2maps: unthresholded maps reconstructed from peak coordinates by a 3-D U-Net.

A JAX re-implementation of the idea of Freyberg et al. (OHBM 2018), with a network trained
here on simulated studies (``scripts/train_peaks2maps.py``; weights and model card in
``nimare_jax/resources/peaks2maps/``). Modules: :mod:`~nimare_jax.peaks2maps.model` (the
network as pure functions), :mod:`~nimare_jax.peaks2maps.data` (coarse grid, resampling,
simulation), :mod:`~nimare_jax.peaks2maps.evaluate` (held-out comparison with the ALE
kernel) and :mod:`~nimare_jax.peaks2maps.kernel` (:class:`Peaks2MapsKernel`).
"""

from nimare_jax.peaks2maps.kernel import Peaks2MapsKernel

__all__ = ["Peaks2MapsKernel"]
