"""peaks2maps: unthresholded maps reconstructed from peak coordinates by a 3-D U-Net.

A JAX re-implementation of the idea of Freyberg et al. (OHBM 2018), with a network trained
here on simulated studies (``scripts/train_peaks2maps.py``; weights and model card in
``nimare_jax/resources/peaks2maps/``). The kernel and the network sit below the estimators
that use them: :class:`~nimare_jax.meta.cbma.kernel.Peaks2MapsKernel` (re-exported here),
the network as pure functions in :mod:`nimare_jax.ops.unet` on the grid of
:mod:`nimare_jax.ops.coarse_grid`, its weights files in :mod:`nimare_jax.io.weights`. This
package holds the training glue: :mod:`~nimare_jax.peaks2maps.data` (simulated studies,
resampling) and :mod:`~nimare_jax.peaks2maps.evaluate` (held-out comparison with the ALE
kernel).
"""

from nimare_jax.meta.cbma.kernel import Peaks2MapsKernel

__all__ = ["Peaks2MapsKernel"]
