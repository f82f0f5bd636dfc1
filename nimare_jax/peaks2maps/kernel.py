"""``Peaks2MapsKernel``: each experiment's unthresholded map reconstructed from its peaks."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbma.kernel import KernelTransformer
from nimare_jax.peaks2maps import data, model
from nimare_jax.spatial import get_resource_path

__all__ = ["Peaks2MapsKernel", "default_weights_path", "load_weights"]


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
    """Reconstruct each experiment's unthresholded z map from its peaks with a 3-D U-Net.

    The idea is Freyberg et al.'s peaks2maps (OHBM 2018): a network maps a study's peak
    coordinates, placed on a coarse 32^3 grid of 6 mm voxels, to its unthresholded
    statistical map. The bundled network was trained here, in JAX, **on simulated studies
    only** (smooth random fields plus Gaussian activation blobs; peaks reported as local
    maxima above z = 3.1, at least 8 mm apart; see ``resources/peaks2maps/MODEL_CARD.md``).
    Its output is resampled (trilinear, in world coordinates) to the dataset's mask.

    Parameters
    ----------
    weights : str, os.PathLike or None
        Network weights (``.npz`` written by :func:`nimare_jax.peaks2maps.model.save_params`);
        None uses the bundled ones.

    Notes
    -----
    Unlike the Gaussian and sphere kernels, this kernel makes whole-brain maps rather than
    per-focus windows, so it works through :meth:`transform` (as in NiMARE) and cannot be
    given to estimators that place kernel windows (ALE, MKDA, KDA).
    """

    def __init__(self, weights=None):
        self.weights = weights

    def __repr__(self) -> str:
        return f"Peaks2MapsKernel(weights={self.weights!r})"

    def prepare(self, dataset):
        """Not available: this kernel has no per-focus windows.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Ignored.

        Raises
        ------
        TypeError
            Always; use :meth:`transform`.
        """
        raise TypeError(
            "Peaks2MapsKernel makes whole-brain maps, not kernel windows; use its "
            "transform() method (estimators that place kernel windows cannot use it)"
        )

    def coarse_maps(self, dataset) -> np.ndarray:
        """Reconstructed maps on the coarse 32^3 grid, one per experiment.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Studies with coordinates (MNI mm).

        Returns
        -------
        numpy.ndarray, shape (n_experiments, 32, 32, 32), float32
            Maps in the order of ``dataset.ids``.
        """
        if len(dataset.ids) == 0:
            raise DatasetError("the dataset has no experiments")
        coords = dataset.coordinates
        empty = sorted(set(dataset.ids) - set(coords["id"]))
        if empty:
            raise DatasetError(f"experiments without foci: {empty[:5]}")
        groups = coords.groupby("id", sort=False)[["x", "y", "z"]]
        xyz = {k: g.to_numpy(float) for k, g in groups}
        inputs = np.stack([data.peak_image(data.xyz_to_coarse_ijk(xyz[k])) for k in dataset.ids])
        from nimare_jax.peaks2maps.evaluate import predict

        params, _ = load_weights(None if self.weights is None else str(self.weights))
        return predict(params, inputs)

    def _ma_values(self, dataset) -> np.ndarray:
        """Reconstructed z maps, (n_experiments, n_voxels) over the dataset's mask."""
        return data.coarse_to_mask(self.coarse_maps(dataset), dataset.masker)
