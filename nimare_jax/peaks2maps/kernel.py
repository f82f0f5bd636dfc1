"""``Peaks2MapsKernel``: each experiment's unthresholded map reconstructed from its peaks."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from nimare_jax.meta.cbma.kernel import KernelTransformer
from nimare_jax.peaks2maps import data, model
from nimare_jax.spatial import get_resource_path

__all__ = ["ERROR_SD", "Peaks2MapsKernel", "default_weights_path", "load_weights"]

#: Standard deviation of the bundled network's error (reconstruction minus true map) over
#: the coarse brain mask of 200 held-out simulated studies (``MODEL_CARD.md``).
ERROR_SD = 0.88


def default_weights_path() -> Path:
    """Path of the bundled network weights (``resources/peaks2maps/peaks2maps_weights.npz``).

    Returns
    -------
    pathlib.Path
        The ``.npz`` file.
    """
    return get_resource_path() / "peaks2maps" / "peaks2maps_weights.npz"


@lru_cache(maxsize=4)
def load_weights(path=None):
    """Load (and cache) network parameters.

    Parameters
    ----------
    path : str, os.PathLike or None
        Weights file; None uses :func:`default_weights_path`.

    Returns
    -------
    params : dict
        Network parameters.
    metadata : dict
        Training metadata stored with them.
    """
    path = default_weights_path() if path is None else Path(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"peaks2maps weights not found: {path}")
    return model.load_params(path)


class Peaks2MapsKernel(KernelTransformer):
    """Modelled activation from each experiment's map as reconstructed by a 3-D U-Net.

    The idea is Freyberg et al.'s peaks2maps (OHBM 2018): a network maps a study's peak
    coordinates, placed on a coarse 32^3 grid of 6 mm voxels, to its unthresholded
    statistical map. The bundled network was trained here, in JAX, **on simulated studies
    only** (smooth random fields plus Gaussian activation blobs; peaks reported as local
    maxima above z = 3.1, at least 8 mm apart; see ``resources/peaks2maps/MODEL_CARD.md``).
    Its output is resampled (trilinear, in world coordinates) to the dataset's mask.

    The MA value of a voxel is the probability that the experiment's true map exceeds the
    peak-reporting threshold there, given the reconstruction ``z_hat`` and a Gaussian
    reconstruction error: ``Phi((z_hat - threshold) / error_sd)`` -- a probability of
    activation, as ALE's union needs. With ``binary=True`` it is the indicator
    ``z_hat > threshold``, the analogue of MKDA's sphere, as MKDADensity and KDA need.
    :meth:`reconstruct` gives the reconstructed maps themselves.

    Parameters
    ----------
    weights : str, os.PathLike or None
        Network weights (``.npz`` written by :func:`nimare_jax.peaks2maps.model.save_params`);
        None uses the bundled ones.
    binary : bool
        Binary MA maps (for MKDADensity and KDA) instead of probabilities (for ALE).
    threshold : float
        Threshold on the reconstructed z map (default 3.1, the simulated studies' peak
        threshold).
    error_sd : float
        Standard deviation of the reconstruction error (default :data:`ERROR_SD`, measured on
        held-out simulated studies; on them the resulting probabilities are calibrated within
        a few percentage points, see the model card).

    Notes
    -----
    Accepted by :class:`~nimare_jax.meta.cbma.ale.ALE` (``binary=False``),
    :class:`~nimare_jax.meta.cbma.mkda.MKDADensity` and :class:`~nimare_jax.meta.cbma.mkda.KDA`
    (``binary=True``), with either null method and Monte Carlo FWE correction. Monte Carlo
    steps run the network on every relocated experiment (about 40 ms per experiment on one
    CPU core; use a GPU, or the approximate null, for large runs).
    """

    combine = "max"
    value = 1.0
    citations = ("Freyberg2018",)

    @property
    def ma_kind(self) -> str:
        """``"binary"`` or ``"probability"``, following ``binary``."""
        return "binary" if self.binary else "probability"

    def __init__(self, weights=None, binary=False, threshold=3.1, error_sd=ERROR_SD):
        if not error_sd > 0:
            raise ValueError(f"error_sd must be positive, got {error_sd!r}")
        self.weights = weights
        self.binary = bool(binary)
        self.threshold = float(threshold)
        self.error_sd = float(error_sd)

    def __repr__(self) -> str:
        return (
            f"Peaks2MapsKernel(weights={self.weights!r}, binary={self.binary}, "
            f"threshold={self.threshold}, error_sd={self.error_sd})"
        )

    def description(self) -> str:
        """Return the methods sentence on how foci were modelled.

        Returns
        -------
        str
            Text for an estimator's boilerplate.
        """
        ma = (
            f"the indicator of the reconstruction exceeding z = {self.threshold:g}"
            if self.binary
            else f"the probability that the true map exceeds z = {self.threshold:g} given the "
            f"reconstruction and a Gaussian reconstruction error of SD {self.error_sd:g}"
        )
        return (
            "Each experiment's unthresholded map was reconstructed from its foci by a "
            "peaks2maps network [Freyberg2018] trained by nimare_jax on simulated studies "
            f"only, and its modelled activation was {ma}."
        )

    def reconstruct(self, dataset) -> np.ndarray:
        """Reconstructed unthresholded z maps over the dataset's mask, one per experiment.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Studies with coordinates.

        Returns
        -------
        numpy.ndarray, shape (n_experiments, n_voxels), float32
            Maps in the order of ``dataset.ids``.
        """
        arrays = self.prepare(dataset)
        ijk, valid = arrays.padded()
        return np.asarray(jax.jit(self._reconstruct_fn(dataset.masker))(ijk, valid))

    def _reconstruct_fn(self, mask_img):
        """Pure ``fn(ijk (n_exp, m, 3) mask voxels, valid) -> (n_exp, n_voxels)`` z maps."""
        params, _ = load_weights(None if self.weights is None else str(self.weights))
        coarse_brain = jnp.asarray(data.coarse_mask(), jnp.float32)
        to_mask = data.coarse_to_mask_fn(mask_img)
        rotation = jnp.asarray(mask_img.affine[:3, :3], jnp.float32)
        shift = jnp.asarray(mask_img.affine[:3, 3], jnp.float32)

        def one(peaks):
            return model.apply(params, peaks[None], coarse_brain)[0]

        def fn(ijk, valid):
            xyz = ijk.astype(jnp.float32) @ rotation.T + shift
            peaks = data.peak_images(data.coarse_ijk(xyz), valid)
            return to_mask(jax.lax.map(one, peaks, batch_size=8))

        return fn

    def _ma_fn(self, mask_img):
        reconstruct = self._reconstruct_fn(mask_img)
        if self.binary:
            return lambda ijk, valid: (reconstruct(ijk, valid) > self.threshold).astype(
                jnp.float32
            )
        return lambda ijk, valid: ndtr((reconstruct(ijk, valid) - self.threshold) / self.error_sd)
