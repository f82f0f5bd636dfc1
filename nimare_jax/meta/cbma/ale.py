"""Activation likelihood estimation (ALE).

Turkeltaub et al. (2002) NeuroImage 16:765; Eickhoff et al. (2009) HBM 30:2907; Turkeltaub
et al. (2012) HBM 33:1; Eickhoff et al. (2012) NeuroImage 59:2349; Eickhoff et al. (2016)
NeuroImage 137:70.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from nimare_jax import stats
from nimare_jax.docstrings import fill_doc
from nimare_jax.meta.cbma.base import (
    RelocationEstimator,
    make_kernel,
    relocation_volume,
    summarize,
)
from nimare_jax.meta.cbma.kernel import ALEKernel, FociArrays
from nimare_jax.meta.fwe import map_name
from nimare_jax.ops import nulls


def ale_windows(arrays: FociArrays) -> jnp.ndarray:
    """Kernels in the log domain used by the union: ``-log1p(-K)`` as float32.

    Parameters
    ----------
    arrays : FociArrays
        Prepared foci and ALE kernels.

    Returns
    -------
    jax.Array, shape (n_windows, W, W, W)
        Windows whose per-experiment max, summed over experiments, is ``-log(1 - ALE)``.
    """
    return jnp.asarray(-np.log1p(-arrays.windows.astype(np.float32)), jnp.float32)


def one_sided_z(p: np.ndarray) -> np.ndarray:
    """One-sided z of p-values from a null histogram, as :func:`nimare_jax.stats.p_to_z`.

    The histogram's p-values are normal doubles (at least its smallest non-zero survival
    probability), where SciPy's inverse normal CDF agrees with ``p_to_z(p, tail="one")``'s
    log-space Newton refinement to a few ulp, about ten times faster on a whole map.

    Parameters
    ----------
    p : numpy.ndarray
        P-values in (0, 1].

    Returns
    -------
    numpy.ndarray, float64
        ``isf(p)``, 0 where ``p >= 0.5``.
    """
    p = np.asarray(p, dtype=float)
    if p.size and p.min() < np.finfo(float).tiny:  # only the log-space path is exact there
        return stats.p_to_z(p, tail="one")
    z = np.zeros(p.shape)
    small = p < 0.5  # often a minority of the mask: ndtri only where z is not 0
    z[small] = -special.ndtri(p[small])
    return z


def histogram_p_maps(key, weights, bins) -> dict:
    """``p``, ``z`` and ``logp`` maps against a null histogram, computed once per bin.

    A statistic's p-value depends only on its bin (and on whether it is positive), so
    :func:`nimare_jax.stats.nullhist_to_p` runs on one value per bin, :func:`one_sided_z`
    and ``-log10`` on the p-values of the bins that occur, and the results are spread to
    the voxels: the values of applying them voxel by voxel, for a few thousand bins
    instead of every voxel.

    Parameters
    ----------
    key : numpy.ndarray, shape (n_voxels,), int
        0 for statistics ``<= 0``, else 1 + the bin
        (:func:`nimare_jax.ops.nulls.ale_stat_bins`).
    weights : numpy.ndarray, shape (n_bins,)
        Null histogram.
    bins : numpy.ndarray, shape (n_bins,)
        Its bin centres (equally spaced from 0).

    Returns
    -------
    dict
        ``{"p": ..., "z": ..., "logp": ...}``, float64 arrays of shape (n_voxels,).
    """
    n_bins = bins.shape[0]
    step = bins[1] - bins[0]
    # one value per key: 0 (p = 1), a quarter bin (bin 0), then each bin centre
    probe = np.arange(-1, n_bins) * step
    probe[:2] = 0.0, step / 4
    p = stats.nullhist_to_p(probe, weights, bins)
    key = np.asarray(key, np.intp)
    used = np.bincount(key, minlength=n_bins + 1) > 0
    table = np.zeros((3, n_bins + 1))
    table[:, used] = p[used], one_sided_z(p[used]), -np.log10(p[used])
    return {name: np.take(row, key) for name, row in zip(("p", "z", "logp"), table, strict=True)}


@fill_doc
class ALE(RelocationEstimator):
    """Activation likelihood estimation.

    Parameters
    ----------
    %(ale_kernel)s
    %(null_method)s
    %(n_iters_relocation)s
    %(n_cores)s
    %(random_state_montecarlo)s
    %(kernel_kwargs)s

    Notes
    -----
    Maps: ``stat`` (ALE), ``p``, ``z`` (one-tailed, not clipped at large values) and
    ``logp`` (``-log10 p``).
    """

    _citations = ("Turkeltaub2002", "Eickhoff2009", "Turkeltaub2012", "Eickhoff2012")
    _name = "ALE"
    _stat_label = "ALE"
    _fwe_citations = ("Eickhoff2012", "Eickhoff2016")

    def __init__(
        self,
        kernel_transformer=ALEKernel,
        null_method: str = "approximate",
        n_iters: int = 5000,
        n_cores: int = 1,
        random_state: int | None = None,
        **kwargs,
    ):
        self.kernel_transformer = make_kernel(kernel_transformer, ALEKernel, kwargs)
        if self.kernel_transformer.ma_kind != "probability":
            raise TypeError(
                "ALE needs a kernel whose MA values are probabilities (ALEKernel, or "
                f"Peaks2MapsKernel(binary=False)), got {self.kernel_transformer!r}"
            )
        self._init(null_method, n_iters, n_cores, random_state)

    def _fit(self, arrays: FociArrays):
        inv_step = 1.0 / nulls.STEP
        ma_bound = 1.0 if arrays.ma_fn is not None else arrays.windows.max()
        n_ma_bins = int(nulls.nearest_bin(ma_bound, inv_step, 10**9)) + 2
        n_exp = len(arrays.ids)
        self.weights_ = np.ones(n_exp, np.float32)
        n_voxels = arrays.mask_index.shape[0]
        maxima, union = [], None

        def fold(hist, ma_max):
            # Each chunk of experiments is folded into the approximate null as soon as its
            # histograms arrive, on the grid of the experiments seen so far (a prefix of
            # the final grid, which needs every experiment's maximum).
            nonlocal union
            maxima.append(ma_max)
            if self.null_method == "approximate":
                grid = nulls.ale_histogram_bins(np.concatenate(maxima))
                probs = hist[:, : min(n_ma_bins, grid.shape[0])] / n_voxels
                union = nulls.fold_union_histograms(probs, grid, union)

        with jax.enable_x64(True):  # one pass; float64 sums as NiMARE's (p-value bins)
            log_acc = summarize(
                arrays,
                self.weights_,
                arrays.windows,
                "probabilistic",
                n_ma_bins,
                inv_step,
                fold,
            )
            bins = nulls.ale_histogram_bins(np.concatenate(maxima))
            stat, bin_key = nulls.ale_stat_bins(log_acc, 1.0 / (bins[1] - bins[0]), bins.size)
        stat, bin_key = np.array(stat), np.asarray(bin_key)
        null = {"histogram_bins": bins}
        key = map_name("histweights", corr="none", method=self.null_method)
        if self.null_method == "approximate":
            null[key] = union  # the last chunk's grid is the final one
        else:
            null.update(self._montecarlo_null(arrays, bins, self.weights_))
        return {"stat": stat, **histogram_p_maps(bin_key, null[key], bins)}, null

    def _relocation(self, arrays: FociArrays, exp_weight: np.ndarray):
        return relocation_maps(arrays, exp_weight=exp_weight)

    def _description(self) -> str:
        null = (
            "an analytically derived null distribution [Eickhoff2012]"
            if self.null_method == "approximate"
            else f"a Monte Carlo null distribution of {self.n_iters} random relocations of "
            "all foci within the mask"
        )
        return (
            "An activation likelihood estimation (ALE) meta-analysis [Turkeltaub2002; "
            "Turkeltaub2012] was performed with nimare_jax. "
            f"{self.kernel_transformer.description()} The modelled activation maps were "
            "combined into an ALE map as their probabilistic union. Voxel-wise p-values were "
            f"computed against {null}."
        )


def relocation_maps(arrays: FociArrays, strategy: str = "auto", exp_weight=None):
    """ALE volume of one random relocation of all foci (uniform over the mask voxels).

    Parameters
    ----------
    arrays : FociArrays
        Prepared foci and ALE kernels; experiments and kernels are kept, positions redrawn.
    strategy : {"auto", "window", "scatter"}
        How windows are applied (:func:`nimare_jax.ops.kernels.resolve_strategy`).
    exp_weight : array-like, shape (n_exp,), optional
        Weight of each experiment's log term (ALE: ones, the default).

    Returns
    -------
    volume : callable
        Pure ``volume(key, operands) -> (X, Y, Z)`` ALE values, zero outside the mask.
    operands : nimare_jax.ops.relocation.RelocationOperands
        Its arrays (see :func:`nimare_jax.meta.cbma.base.relocation_volume`).
    """
    if exp_weight is None:
        exp_weight = np.ones(len(arrays.ids), np.float32)
    return relocation_volume(arrays, ale_windows(arrays), exp_weight, "probabilistic", strategy)


# NiMARE 0.22 defines SCALE and ALESubtraction in its ALE module; here they live beside it.
from nimare_jax.meta.cbma.scale import SCALE  # noqa: E402, F401
from nimare_jax.meta.cbma.subtraction import ALESubtraction  # noqa: E402, F401
