"""Meta-analytic activation modelling-based parcellation (MAMP).

Yang et al. (2016) NeuroImage 124:300. Each voxel of the target region is described by its
"study series": the modelled-activation (MA) value of every experiment at that voxel. Voxels
are clustered by the Pearson correlation of their study series (``1 - r`` distances), with
the same criteria as CBP (:mod:`nimare_jax.parcellate.base`). Unlike CBP, no per-voxel
meta-analysis is run, so MAMP is one pass over the experiments' MA maps.
"""

from __future__ import annotations

import numpy as np

from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbma.base import make_kernel
from nimare_jax.meta.cbma.kernel import ALEKernel
from nimare_jax.parcellate.base import Parcellator, RegionOfInterest

__all__ = ["MAMP", "roi_ma_values"]

#: Experiments whose MA maps are made per call.
EXPERIMENT_CHUNK = 64


def roi_ma_values(kernel_transformer, dataset, position) -> np.ndarray:
    """MA values of every experiment at some voxels of the mask.

    Parameters
    ----------
    kernel_transformer : KernelTransformer
        Kernel (window kernels: ALE, MKDA, KDA).
    dataset : nimare_jax.dataset.Dataset
        Experiments with coordinates.
    position : array-like of int, shape (n,)
        Voxels, as positions among the mask's voxels.

    Returns
    -------
    numpy.ndarray of float32, shape (n_experiments, n)
        Each experiment's MA value at each voxel, as ``kernel_transformer.transform``
        gives it.
    """
    arrays = kernel_transformer.prepare(dataset)
    position = np.asarray(position)
    out = np.empty((len(arrays.ids), position.size), np.float32)
    for lo, m, ma in arrays.ma_chunks(EXPERIMENT_CHUNK):
        out[lo : lo + m] = np.asarray(ma[:, position])[:m]
    return out


@fill_doc
class MAMP(Parcellator):
    """Meta-analytic activation modelling-based parcellation of a region.

    Parameters
    ----------
    %(parcellation_region)s
    kernel_transformer : KernelTransformer class or instance
        Kernel of the MA maps (default :class:`~nimare_jax.meta.cbma.kernel.ALEKernel`);
        ``kernel__*`` keyword arguments configure the default.
    n_splits, method, n_init, random_state
        See :class:`~nimare_jax.parcellate.base.Parcellator`.
    **kwargs
        ``kernel__*`` arguments.

    Notes
    -----
    A target voxel where no experiment has modelled activation has no study series to
    correlate: an error. In a split half such a voxel gets correlation 0 with the others.
    """

    _citations = ("Yang2016", "Clos2013", "Chase2020")

    def __init__(
        self,
        target_mask,
        n_clusters,
        kernel_transformer=ALEKernel,
        n_splits: int = 2,
        method: str = "kmeans",
        n_init: int = 50,
        random_state: int = 0,
        **kwargs,
    ):
        super().__init__(target_mask, n_clusters, n_splits, method, n_init, random_state)
        self.kernel_transformer = make_kernel(kernel_transformer, ALEKernel, kwargs)

    def _profiles(self, dataset, roi: RegionOfInterest, groups) -> list[np.ndarray]:
        series = roi_ma_values(self.kernel_transformer, dataset, roi.position).astype(np.float64)
        self.study_series_ = series
        flat = np.ptp(series, axis=0) == 0
        if flat.any():
            x, y, z = roi.xyz[np.flatnonzero(flat)[0]]
            raise DatasetError(
                f"{int(flat.sum())} of the {len(roi)} target voxels have the same modelled "
                f"activation in every experiment (e.g. at ({x:g}, {y:g}, {z:g}) mm), so "
                "their study series cannot be correlated"
            )
        profiles = []
        for g in groups:
            x = series[g]
            x = x - x.mean(0)
            norm = np.sqrt((x**2).sum(0))
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = (x.T @ x) / np.outer(norm, norm)
            corr = np.clip(np.nan_to_num(corr, nan=0.0), -1.0, 1.0)
            np.fill_diagonal(corr, 1.0)
            profiles.append(corr)
        return profiles

    def _description(self, roi: RegionOfInterest) -> str:
        return (
            "A meta-analytic activation modelling-based parcellation (MAMP) [Yang2016] was "
            f"performed with nimare_jax on {len(self.dataset_.ids)} experiments. "
            f"{self.kernel_transformer.description()} Each target voxel's study series "
            "(the modelled activation of every experiment at that voxel) was correlated "
            "(Pearson) with every other voxel's. " + super()._description(roi)
        )
