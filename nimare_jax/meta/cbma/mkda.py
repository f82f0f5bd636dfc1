"""Multilevel kernel density analysis: MKDA density, KDA and the MKDA chi-square test.

Wager et al. (2007) SCAN 2:150 (MKDA; KDA as its predecessor); Yarkoni et al. (2011) Nat
Methods 8:665 (the uniformity and association chi-square maps).

Each experiment's foci become binary spheres; MKDA takes their union within an experiment
(a voxel counts once), KDA their sum. :class:`MKDADensity` and :class:`KDA` add the
experiment maps (MKDA optionally weighted) and test the density against the distribution
it would have if activation were spatially uniform: in closed form (``"approximate"``), or
from random relocations of all foci (``"montecarlo"``). :class:`MKDAChi2` compares the
per-voxel proportion of active experiments between two groups of experiments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as sps

from nimare_jax import stats
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbma.base import (
    PairwiseCBMAEstimator,
    RelocationEstimator,
    cluster_fwe_maps,
    make_kernel,
    relocation_volume,
    seed_to_key,
    summarize,
)
from nimare_jax.meta.cbma.kernel import FociArrays, KDAKernel, MKDAKernel
from nimare_jax.meta.fwe import MONTECARLO, fwe_map, fwe_null, fwe_options, map_name
from nimare_jax.ops import chi2
from nimare_jax.ops import stats as ops_stats
from nimare_jax.ops.permute import BoundSummary, run_permutations

__all__ = ["KDA", "MKDAChi2", "MKDADensity"]

#: Grid resolution of the weighted MKDA null (NiMARE's ``n_histogram_bins`` default).
DEFAULT_HISTOGRAM_BINS = 100_000


# ---------------------------------------------------------------------------------------
# null distributions of the density statistic (host, float64)
# ---------------------------------------------------------------------------------------


def bernoulli_sum_null(weights, prop_active, n_bins: int = DEFAULT_HISTOGRAM_BINS):
    """Null distribution of ``sum_e w_e I_e`` for independent ``I_e ~ Bernoulli(p_e)``.

    Under spatial uniformity a voxel lies in experiment ``e``'s spheres with probability
    ``p_e``, the fraction of the mask they cover; the MKDA density is then a weighted sum of
    independent indicators. With equal weights ``c`` the sum lives exactly on
    ``0, c, ..., n c``. Otherwise it lives on a grid of step ``sum(w) / (n_bins - 1)``, each
    weight rounded to a whole number of steps (at least one), which is NiMARE's grid.

    Parameters
    ----------
    weights : array-like, shape (n_exp,)
        Positive weight of each experiment (times the kernel value).
    prop_active : array-like, shape (n_exp,)
        Probability that each experiment covers a voxel.
    n_bins : int
        Grid resolution for unequal weights.

    Returns
    -------
    bins : numpy.ndarray, shape (n_grid,)
        Bin centres, starting at 0, equally spaced.
    hist : numpy.ndarray, shape (n_grid,)
        Probability of each bin.
    """
    w = np.asarray(weights, np.float64).ravel()
    p = np.asarray(prop_active, np.float64).ravel()
    if np.all(w == w[0]):
        step = w[0]
        shifts = np.ones(w.size, np.int64)
        n_grid = w.size + 1
    else:
        step = w.sum() / (max(int(n_bins), 2) - 1)
        shifts = np.maximum(np.rint(w / step).astype(np.int64), 1)
        n_grid = max(int(shifts.sum()), int(np.ceil(w.sum() / step))) + 1
    hist = np.zeros(n_grid)
    hist[0] = 1.0
    top = 0  # last occupied bin
    for m, pe in zip(shifts, p, strict=True):
        moved = hist[: top + 1] * pe
        hist[: top + 1] *= 1.0 - pe
        hist[m : m + top + 1] += moved
        top += m
    return np.arange(n_grid) * step, hist


def sum_null(exp_hists, n_bins: int):
    """Distribution of a sum of independent integer-valued variables, by convolution.

    Parameters
    ----------
    exp_hists : numpy.ndarray, shape (n_exp, m)
        Probability of the values ``0, 1, ..., m - 1`` (in units of the bin step) for each
        experiment.
    n_bins : int
        Length of the returned histogram (values beyond it are dropped).

    Returns
    -------
    numpy.ndarray, shape (n_bins,)
        Probability of each value of the sum.
    """
    out = np.zeros(n_bins)
    out[0] = 1.0
    top = 0
    for h in np.asarray(exp_hists, np.float64):
        last = int(np.flatnonzero(h)[-1]) if h.any() else 0
        conv = np.convolve(out[: top + 1], h[: last + 1])
        top = min(top + last, n_bins - 1)
        out[: top + 1] = conv[: top + 1]
    return out


def experiment_weights(weighting, dataset) -> tuple[np.ndarray, int]:
    """Per-experiment weights of the MKDA density, normalised to sum to ``n_exp``.

    Parameters
    ----------
    weighting : None, "uniform", "sample_size", dict or array-like
        ``None``/``"uniform"``: all ones. ``"sample_size"``: the square root of each
        experiment's mean sample size (Wager et al. 2009); experiments without a usable
        sample size get the mean weight of the others. A dict (id -> weight) or an array in
        ``dataset.ids`` order gives the weights directly.
    dataset : nimare_jax.dataset.Dataset
        The experiments.

    Returns
    -------
    weights : numpy.ndarray, shape (n_exp,)
        Weights; exactly ones when all raw weights are equal.
    n_imputed : int
        Experiments that received the mean weight.
    """
    n = len(dataset.ids)
    if weighting is None or (isinstance(weighting, str) and weighting == "uniform"):
        return np.ones(n), 0
    n_imputed = 0
    if isinstance(weighting, str):
        if weighting != "sample_size":
            raise ValueError(
                f"weighting must be None, 'uniform', 'sample_size', a dict or an array; "
                f"got {weighting!r}"
            )
        sizes = np.full(n, np.nan)
        if "sample_sizes" in dataset.metadata.columns:
            for i, value in enumerate(dataset.metadata["sample_sizes"]):
                try:
                    v = np.atleast_1d(np.asarray(value, dtype=float))
                except (TypeError, ValueError):
                    continue
                if v.size and np.all(np.isfinite(v)) and np.all(v > 0):
                    sizes[i] = v.mean()
        raw = np.sqrt(sizes)
        missing = ~np.isfinite(raw)
        if missing.all():
            raise DatasetError(
                "weighting='sample_size' needs metadata 'sample_sizes'; no experiment has a "
                "usable one"
            )
        n_imputed = int(missing.sum())
        raw[missing] = raw[~missing].mean()
    else:
        if isinstance(weighting, dict):
            absent = [i for i in dataset.ids if i not in weighting]
            if absent:
                raise DatasetError(f"weighting has no weight for experiments {absent[:5]}")
            raw = np.array([float(weighting[i]) for i in dataset.ids])
        else:
            raw = np.asarray(weighting, dtype=float).ravel()
            if raw.size != n:
                raise ValueError(f"weighting has {raw.size} weights for {n} experiments")
        if not np.all(np.isfinite(raw) & (raw > 0)):
            raise ValueError("experiment weights must be positive finite numbers")
    if np.all(raw == raw[0]):
        return np.ones(n), n_imputed
    return n * raw / raw.sum(), n_imputed


# ---------------------------------------------------------------------------------------
# Monte Carlo nulls of the chi-square maps (glue over nimare_jax.ops.chi2)
# ---------------------------------------------------------------------------------------


@fill_doc
def label_permutation_null(
    pooled,
    n1: int,
    mask_index,
    shape,
    thresh: float,
    connectivity: int = 6,
    label_backend: str = "auto",
    vfwe_only: bool = False,
):
    """Per-iteration summary of the MKDAChi2 label-permutation FWE null.

    Each iteration shuffles which experiments form group 1 (keeping the group sizes)
    (:func:`nimare_jax.ops.chi2.label_permutation_summary`).

    Parameters
    ----------
    pooled : jax.Array, shape (n_exp, n_voxels)
        Binary MA maps (0/1) of group 1's experiments followed by group 2's.
    n1 : int
        Size of group 1.
    mask_index : array, shape (n_voxels,)
        Flat indices of the mask voxels in the volume.
    shape : tuple of 3 ints
        Volume shape.
    thresh : float
        Cluster-forming chi-square threshold (voxels strictly above it).
    %(cluster_options)s
    vfwe_only : bool
        Skip the cluster statistics.

    Returns
    -------
    nimare_jax.ops.permute.BoundSummary
        Pure ``summary(key) -> {map: {"voxel", "size", "mass"}}`` for the maps of
        :func:`nimare_jax.ops.chi2.chi2_maps`; its ``summary`` (cached per configuration)
        and ``operands`` (the arrays) go to :func:`nimare_jax.ops.permute.run_permutations`
        separately, so a second correction of the same shapes compiles nothing. With
        clusters labelled on the host (``label_backend`` ``"scipy"``, or ``"auto"`` on
        CPU) its ``summary`` is a :class:`~nimare_jax.ops.permute.BatchedSummary`, which
        only ``run_permutations`` runs (the labelling happens between batches).
    """
    pooled = jnp.asarray(pooled)
    operands = chi2.LabelPermutationOperands(
        pooled=pooled, totals=pooled.sum(axis=0), mask_index=jnp.asarray(mask_index)
    )
    summary = chi2.label_permutation_summary(
        int(n1), tuple(shape), connectivity, label_backend, vfwe_only
    )
    return BoundSummary(summary, (operands, np.float32(thresh)))


def random_foci_null(
    arrays1: FociArrays,
    arrays2: FociArrays,
    thresh: float,
    connectivity: int = 6,
    label_backend: str = "auto",
    vfwe_only: bool = False,
):
    """Per-iteration summary of the MKDAChi2 null with all foci relocated in the mask.

    Parameters
    ----------
    arrays1, arrays2 : FociArrays
        The two groups' foci and sphere windows.
    thresh, connectivity, label_backend, vfwe_only
        As in :func:`label_permutation_null`.

    Returns
    -------
    nimare_jax.ops.permute.BoundSummary
        Pure ``summary(key) -> {map: {"voxel", "size", "mass"}}``
        (:func:`nimare_jax.ops.chi2.random_foci_summary`), used as in
        :func:`label_permutation_null`.
    """
    vol1, ops1 = relocation_volume(arrays1, arrays1.windows, np.ones(len(arrays1.ids)), "sum")
    vol2, ops2 = relocation_volume(arrays2, arrays2.windows, np.ones(len(arrays2.ids)), "sum")
    summary = chi2.random_foci_summary(
        vol1, vol2, tuple(arrays1.shape), connectivity, label_backend, vfwe_only
    )
    mask_index = jnp.asarray(arrays1.mask_index)
    return BoundSummary(summary, (ops1, ops2, mask_index, np.float32(thresh)))


# ---------------------------------------------------------------------------------------
# density estimators
# ---------------------------------------------------------------------------------------


class _DensityEstimator(RelocationEstimator):
    """Shared machinery of MKDADensity and KDA (sum of experiment sphere maps)."""

    _name = ""
    _stat_label = "density"
    _fwe_citations = ("Wager2007",)

    def _weights(self) -> np.ndarray:
        return np.ones(len(self.dataset_.ids))

    @property
    def weight_vec_(self) -> np.ndarray:
        """NiMARE's name of the fitted experiment weights, :attr:`weights_`."""
        return self.weights_

    def _fit(self, arrays: FociArrays):
        weights = self._weights()
        self.weights_ = weights  # fitted attribute: descriptions and FWE correction
        value = float(self.kernel_transformer.value)
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{self._name} needs a positive kernel value, got {value!r}")
        n_exp = len(arrays.ids)
        counts = np.bincount(arrays.exp_index, minlength=n_exp)
        # MA values are multiples of the kernel value: 0/1 (MKDA) or 0..n_foci (KDA).
        n_ma_bins = 2 if arrays.combine == "max" else int(counts.max()) + 2
        hists = []
        with jax.enable_x64(True):
            stat = summarize(
                arrays,
                weights,
                arrays.windows,
                "sum",
                n_ma_bins,
                1.0 / value,
                lambda hist, _: hists.append(hist),
            )
            stat = np.asarray(stat, np.float64)
        hist = np.concatenate(hists).astype(np.float64) / arrays.mask_index.shape[0]
        null = self._approximate_null(hist, weights * value, counts, value)
        key = map_name("histweights", corr="none", method=self.null_method)
        if self.null_method == MONTECARLO:
            null = {"histogram_bins": null["histogram_bins"]}
            null.update(self._montecarlo_null(arrays, null["histogram_bins"], weights))
        p = stats.nullhist_to_p(stat, null[key], null["histogram_bins"])
        maps = {
            "stat": stat.astype(np.float32),
            "p": p,
            "z": stats.p_to_z(p, tail="one"),
            "logp": -np.log10(p),
        }
        return maps, null

    def _approximate_null(self, hist, eff_weights, counts, value) -> dict:
        raise NotImplementedError

    def _relocation(self, arrays: FociArrays, exp_weight: np.ndarray):
        value = float(self.kernel_transformer.value)
        return relocation_volume(arrays, arrays.windows, exp_weight * value, "sum")


@fill_doc
class MKDADensity(_DensityEstimator):
    """Multilevel kernel density analysis: density of experiments active near each voxel.

    Each experiment contributes a binary map (the union of spheres around its foci); the
    statistic is their (optionally weighted) sum. Under spatial uniformity it is a weighted
    sum of independent Bernoulli variables, whose distribution is computed exactly
    (``"approximate"``, the default) or sampled by relocating foci (``"montecarlo"``).

    Parameters
    ----------
    kernel_transformer : MKDAKernel or Peaks2MapsKernel, class or instance
        Sphere kernel; ``kernel__r=...`` or ``kernel__value=...`` configure the default.
        ``Peaks2MapsKernel(binary=True)`` models each experiment by its thresholded
        peaks2maps reconstruction.
    %(null_method)s
    %(n_iters_relocation)s
    weighting : None, "uniform", "sample_size", dict or array-like
        Experiment weights (Wager et al. 2009): ``"sample_size"`` weights by the square root
        of the mean sample size (experiments without one get the mean weight of the others);
        a dict ``{id: weight}`` or an array in ``dataset.ids`` order gives them directly.
        Weights are rescaled to sum to the number of experiments; equal weights are exactly
        the unweighted analysis.
    n_histogram_bins : int
        Grid resolution of the null when weights differ (each weight is rounded to a whole
        number of grid steps, at least one).
    %(n_cores)s
    %(random_state_montecarlo)s
    %(kernel_kwargs)s

    Notes
    -----
    Maps: ``stat`` (density), ``p``, ``z`` (one-tailed) and ``logp``. Null distributions:
    ``histogram_bins``, ``histogram_means`` (each experiment's coverage of the mask) and
    ``histweights_corr-none_method-approximate`` (or the Monte Carlo histograms).
    Unlike NiMARE, a kernel ``value`` other than 1 scales the null's grid with the
    statistic, so p-values do not depend on it.
    """

    _name = "MKDA"
    _citations = ("Wager2007",)

    def __init__(
        self,
        kernel_transformer=MKDAKernel,
        null_method: str = "approximate",
        n_iters: int = 5000,
        weighting=None,
        n_histogram_bins: int = DEFAULT_HISTOGRAM_BINS,
        n_cores: int = 1,
        random_state: int | None = None,
        **kwargs,
    ):
        self.kernel_transformer = make_kernel(kernel_transformer, MKDAKernel, kwargs)
        kt = self.kernel_transformer
        if kt.ma_kind != "binary" or kt.combine != "max":
            raise TypeError(
                "MKDADensity needs binary MA maps (MKDAKernel, or "
                f"Peaks2MapsKernel(binary=True)), got {kt!r}"
            )
        if isinstance(weighting, str) and weighting not in ("uniform", "sample_size"):
            raise ValueError(
                f"weighting must be None, 'uniform', 'sample_size', a dict or an array; "
                f"got {weighting!r}"
            )
        if weighting is not None and not isinstance(weighting, str | dict):
            weighting = np.asarray(weighting, dtype=float)
        self.weighting = weighting
        if int(n_histogram_bins) < 2:
            raise ValueError(f"n_histogram_bins must be at least 2, got {n_histogram_bins!r}")
        self.n_histogram_bins = int(n_histogram_bins)
        self._init(null_method, n_iters, n_cores, random_state)

    def _weights(self) -> np.ndarray:
        weights, self.n_imputed_ = experiment_weights(self.weighting, self.dataset_)
        return weights

    def _approximate_null(self, hist, eff_weights, counts, value) -> dict:
        prop_active = hist[:, 1]
        bins, weights = bernoulli_sum_null(eff_weights, prop_active, self.n_histogram_bins)
        return {
            "histogram_bins": bins,
            "histogram_means": prop_active,
            map_name("histweights", corr="none", method="approximate"): weights,
        }

    def _description(self) -> str:
        kt = self.kernel_transformer
        null = (
            "the exact distribution of the density under spatially uniform activation, "
            "given each experiment's coverage of the mask [Wager2007]"
            if self.null_method == "approximate"
            else f"a Monte Carlo null distribution of {self.n_iters} random relocations of "
            "all foci within the mask"
        )
        weights = getattr(self, "weights_", None)
        if weights is None or np.all(weights == 1):
            weighting = "Every experiment had the same weight."
        else:
            ess = weights.sum() ** 2 / (weights**2).sum()
            source = (
                "the square root of its sample size"
                if isinstance(self.weighting, str)
                else "a user-supplied weight"
            )
            weighting = (
                f"Each experiment was weighted by {source}, normalised over the "
                f"{weights.size} experiments (effective number of experiments {ess:.1f})"
                + (
                    f"; {self.n_imputed_} without a sample size received the mean weight."
                    if getattr(self, "n_imputed_", 0)
                    else "."
                )
            )
        return (
            "A multilevel kernel density analysis (MKDA) [Wager2007] was performed with "
            f"nimare_jax on {len(self.inputs_.ids)} experiments "
            f"({self.inputs_.ijk.shape[0]} foci). {kt.description()} The density statistic "
            f"was the sum of the experiments' maps. {weighting} Voxel-wise p-values were "
            f"computed against {null}."
        )


@fill_doc
class KDA(_DensityEstimator):
    """Kernel density analysis: sum of spheres around all foci.

    Unlike MKDA, overlapping spheres of one experiment add up, so experiments reporting
    many nearby foci dominate; KDA has been superseded by MKDA (Wager et al. 2007) and is
    mainly of use to compare algorithms.

    Parameters
    ----------
    kernel_transformer : KDAKernel, MKDAKernel or Peaks2MapsKernel, class or instance
        Sphere kernel (an :class:`MKDAKernel` gives union maps; so does
        ``Peaks2MapsKernel(binary=True)``, its thresholded peaks2maps reconstruction).
    %(null_method)s
    %(n_iters_relocation)s
    %(n_cores)s
    %(random_state_montecarlo)s
    %(kernel_kwargs)s

    Notes
    -----
    Maps: ``stat``, ``p``, ``z`` (one-tailed) and ``logp``.
    """

    _name = "KDA"
    _citations = ("Wager2007",)

    def __init__(
        self,
        kernel_transformer=KDAKernel,
        null_method: str = "approximate",
        n_iters: int = 5000,
        n_cores: int = 1,
        random_state: int | None = None,
        **kwargs,
    ):
        self.kernel_transformer = make_kernel(kernel_transformer, KDAKernel, kwargs)
        if self.kernel_transformer.ma_kind != "binary":
            raise TypeError(
                "KDA needs binary MA maps (KDAKernel, MKDAKernel, or "
                f"Peaks2MapsKernel(binary=True)), got {self.kernel_transformer!r}"
            )
        self._init(null_method, n_iters, n_cores, random_state)

    def _approximate_null(self, hist, eff_weights, counts, value) -> dict:
        n_foci = int(counts.sum()) if self.inputs_.combine == "sum" else len(counts)
        bins = np.arange(0, value * n_foci + 1.5 * value, value)
        return {
            "histogram_bins": bins,
            map_name("histweights", corr="none", method="approximate"): sum_null(
                hist, bins.shape[0]
            ),
        }

    def _description(self) -> str:
        null = (
            "the distribution of the sum of independent draws from each experiment's map values"
            if self.null_method == "approximate"
            else f"a Monte Carlo null distribution of {self.n_iters} random relocations of "
            "all foci within the mask"
        )
        return (
            "A kernel density analysis (KDA) [Wager2007] was performed with nimare_jax on "
            f"{len(self.inputs_.ids)} experiments ({self.inputs_.ijk.shape[0]} foci). "
            f"{self.kernel_transformer.description()} The statistic was the sum of the "
            f"experiments' maps. Voxel-wise p-values were computed against {null}."
        )


# ---------------------------------------------------------------------------------------
# MKDA chi-square
# ---------------------------------------------------------------------------------------


@fill_doc
class MKDAChi2(PairwiseCBMAEstimator):
    """MKDA chi-square analysis: is activation more frequent in one group than another.

    ``fit(dataset1, dataset2)`` counts, at each voxel, the experiments of each group whose
    spheres cover it, and tests (Yarkoni et al. 2011):

    - *uniformity*: is group 1's activation at this voxel more (or less) frequent than its
      mean over the mask (one-way chi-square, ``desc-uniformity``; also ``desc-group1``;
      the same for group 2 is ``desc-group2``);
    - *association*: does the proportion of active experiments differ between the groups
      (2x2 chi-square, ``desc-association``).

    Parameters
    ----------
    kernel_transformer : MKDAKernel class or instance
        Sphere kernel; ``kernel__r=...`` configures the default.
    prior : float or None
        Prior probability that an experiment belongs to group 1, for the posterior maps
        ``prob_desc-AgF_prior`` and ``prob_desc-FgA_prior``; None or 0 skips them.
    fwe_null_method : {"label-permutation", "random-foci"}
        FWE null of :meth:`correct_fwe_montecarlo`: shuffle experiments between the groups
        (default), or relocate all foci uniformly in the mask.
    random_state : int or None
        Seed of the FWE permutations.
    undefined_posterior : {"prior", "nan"}
        Value of ``prob_desc-FgA`` and ``prob_desc-FgA_prior`` where no experiment of either
        group is active (0/0). ``"prior"`` (default) gives the value the posterior takes
        when activation is equally likely in both groups, i.e. with no evidence: the
        empirical prior ``n1 / (n1 + n2)`` for ``prob_desc-FgA`` and ``prior`` for
        ``prob_desc-FgA_prior``. ``"nan"`` gives NaN, as NiMARE does.
    %(kernel_kwargs)s

    Notes
    -----
    Maps (NiMARE's names): ``chi2_``, ``p_``, ``z_`` and ``logp_desc-{uniformity,
    association, group1, group2}``; ``z`` is ``sqrt(chi2)`` signed by the count minus its
    mean over the mask (uniformity) or by ``P(A|F) - P(A|U)`` (association).
    Probabilities: ``prob_desc-A`` (activation, both groups), ``prob_desc-AgF`` (= ``group1``,
    activation given group 1), ``prob_desc-AgU`` (= ``group2``), ``prob_desc-FgA`` (group 1
    given activation), and with a prior ``prob_desc-AgF_prior`` and ``prob_desc-FgA_prior``.
    As in NiMARE, the association chi-square is 2 (not 0) where no experiment is active
    (an empty margin of the 2x2 table); its ``z`` is 0 there.
    """

    _citations = ("Wager2007", "Yarkoni2011")
    _contrast = "association"

    def __init__(
        self,
        kernel_transformer=MKDAKernel,
        prior: float | None = 0.5,
        fwe_null_method: str = "label-permutation",
        random_state: int | None = None,
        undefined_posterior: str = "prior",
        **kwargs,
    ):
        self.kernel_transformer = make_kernel(kernel_transformer, MKDAKernel, kwargs)
        kt = self.kernel_transformer
        if kt.ma_kind != "binary" or kt.combine != "max":
            raise TypeError(
                "MKDAChi2 needs binary MA maps (MKDAKernel, or Peaks2MapsKernel(binary=True)), "
                f"got {kt!r}"
            )
        if fwe_null_method not in ("label-permutation", "random-foci"):
            raise ValueError(
                "fwe_null_method must be 'label-permutation' or 'random-foci', not "
                f"{fwe_null_method!r}"
            )
        if prior is not None and not 0 <= prior < 1:
            raise ValueError(f"prior must be in [0, 1) or None, got {prior!r}")
        if undefined_posterior not in ("prior", "nan"):
            raise ValueError(
                f"undefined_posterior must be 'prior' or 'nan', not {undefined_posterior!r}"
            )
        self.prior = prior
        self.fwe_null_method = fwe_null_method
        self.random_state = random_state
        self.undefined_posterior = undefined_posterior

    def __repr__(self) -> str:
        return f"MKDAChi2({self.kernel_transformer!r}, prior={self.prior})"

    def _counts(self, arrays: FociArrays) -> np.ndarray:
        n_exp = len(arrays.ids)
        stat = summarize(arrays, np.ones(n_exp, np.float32), arrays.windows > 0, "sum", 1, 1.0)
        return np.rint(np.asarray(stat, np.float64))

    def _fit(self, arrays1: FociArrays, arrays2: FociArrays):
        n1, n2 = len(arrays1.ids), len(arrays2.ids)
        count1, count2 = self._counts(arrays1), self._counts(arrays2)
        return self._maps(count1, count2, n1, n2), {}

    def _maps(self, count1, count2, n1, n2) -> dict:
        with jax.enable_x64(True):
            chi = {k: np.asarray(v) for k, v in chi2.chi2_maps(count1, count2, n1, n2).items()}
            # chi-square(1) = Z^2: log P(chi2 > x) = log P(|Z| > sqrt(x)), exact in the far
            # tail (scipy.stats.chi2.logsf took ~0.65 s per 228,483-voxel map)
            log_sf = {k: np.asarray(ops_stats.z_to_logp(np.sqrt(v))) for k, v in chi.items()}
        p_f = n1 / (n1 + n2)
        p_a = (count1 + count2) / (n1 + n2)
        p_a_f = count1 / n1
        p_a_u = count2 / n2
        empty = p_a == 0
        fill = np.nan if self.undefined_posterior == "nan" else None
        with np.errstate(divide="ignore", invalid="ignore"):
            p_f_a = np.where(empty, p_f if fill is None else fill, p_a_f * p_f / p_a)
        signs = {
            "group1": np.sign(count1 - count1.mean()),
            "group2": np.sign(count2 - count2.mean()),
            "association": np.sign(p_a_f - p_a_u),
        }
        maps = {}
        for name, stat in chi.items():
            logp = log_sf[name]
            maps[f"chi2_desc-{name}"] = stat
            maps[f"p_desc-{name}"] = np.exp(logp)
            maps[f"z_desc-{name}"] = np.sqrt(stat) * signs[name]
            maps[f"logp_desc-{name}"] = -logp / np.log(10.0)
        for kind in ("chi2", "p", "z", "logp"):
            maps[f"{kind}_desc-uniformity"] = maps[f"{kind}_desc-group1"]
        maps.update(
            {
                "prob_desc-A": p_a,
                "prob_desc-AgF": p_a_f,
                "prob_desc-AgU": p_a_u,
                "prob_desc-FgA": p_f_a,
                "prob_desc-group1": p_a_f,
                "prob_desc-group2": p_a_u,
            }
        )
        if self.prior:
            p_a_f_prior = self.prior * p_a_f + (1 - self.prior) * p_a_u
            with np.errstate(divide="ignore", invalid="ignore"):
                p_f_a_prior = np.where(
                    empty,
                    self.prior if fill is None else fill,
                    p_a_f * self.prior / p_a_f_prior,
                )
            maps["prob_desc-AgF_prior"] = p_a_f_prior
            maps["prob_desc-FgA_prior"] = p_f_a_prior
        return maps

    def _description(self) -> str:
        a, b = self.inputs1_, self.inputs2_
        prior = (
            f" Posterior probabilities of group membership given activation were also "
            f"computed with a uniform prior of {self.prior}."
            if self.prior
            else ""
        )
        return (
            "A multilevel kernel density chi-square analysis [Wager2007; Yarkoni2011] was "
            f"performed with nimare_jax, comparing {len(a.ids)} experiments ({a.ijk.shape[0]} "
            f"foci) with {len(b.ids)} experiments ({b.ijk.shape[0]} foci). "
            f"{self.kernel_transformer.description()} At every voxel, a one-way "
            "chi-square test assessed whether the proportion of the first group's "
            "experiments active there differed from its mean over the brain (uniformity), "
            "and a two-way chi-square test whether it differed between the groups "
            "(association)." + prior
        )

    # ----------------------------------------------------------------- corrections
    #: NiMARE's default iterations of MKDAChi2's FWE correction (``n_iters=None``).
    _fwe_n_iters = 1000

    #: Iterations per device per dispatch (``batch_size=None``; measured fastest on CPU,
    #: where host-side cluster labelling dominates).
    _fwe_batch_size = 8

    @fill_doc
    def correct_fwe_montecarlo(
        self,
        result,
        voxel_thresh: float = 0.001,
        n_iters: int | None = None,
        n_cores: int = 1,
        vfwe_only: bool | None = None,
        *,
        connectivity: int = 6,
        batch_size: int | None = None,
        tolerance: float | None = None,
        label_backend: str = "auto",
        progress: bool | None = None,
    ):
        """FWE correction of the chi-square maps by permutation.

        Parameters and returns as :meth:`nimare_jax.meta.fwe.MonteCarloFWE.correct_fwe_montecarlo`
        (``n_iters=None``: 1000, NiMARE's default for MKDAChi2; ``voxel_thresh=0.001`` is
        chi2 = 10.83). The null is :attr:`fwe_null_method`'s. Maps:
        ``{p,z,logp}_desc-{uniformity,group1,group2,association}_level-voxel`` and
        ``..._desc-{...}{Size,Mass}_level-cluster`` with the suffix
        ``_corr-FWE_method-montecarlo``; z is two-tailed and signed as the uncorrected z,
        as in NiMARE. Nulls: per-iteration maxima (``values_desc-{pAgF,pFgA,group1,
        group2}...``). ``tolerance`` monitors the maximum of the association map.

        Parameters
        ----------
        %(fwe_montecarlo_parameters)s

        Returns
        -------
        %(fwe_montecarlo_returns)s
        """
        opts = fwe_options(
            self,
            voxel_thresh=voxel_thresh,
            n_iters=n_iters,
            n_cores=n_cores,
            vfwe_only=vfwe_only,
            connectivity=connectivity,
            batch_size=batch_size,
            tolerance=tolerance,
            label_backend=label_backend,
            progress=progress,
            default_n_iters=self._fwe_n_iters,
            default_batch_size=self._fwe_batch_size,
        )
        a, b = self.inputs1_, self.inputs2_
        n1 = len(a.ids)
        ss_thresh = float(sps.chi2.isf(opts.voxel_thresh, 1))
        seed, key = seed_to_key(self.random_state)
        cluster_args = (ss_thresh, opts.connectivity, opts.label_backend, opts.vfwe_only)
        if self.fwe_null_method == "label-permutation":
            pooled = self.pooled_ma_matrix()
            null = label_permutation_null(pooled, n1, a.mask_index, a.shape, *cluster_args)
            # the observed maps through the same float32 arithmetic as the null (exact ties)
            count1 = pooled[:n1].sum(axis=0)
            observed = chi2.chi2_maps(count1, pooled.sum(axis=0) - count1, n1, len(b.ids))
            vectorize = "vmap"
            how = "the experiments were randomly reassigned to the two groups (sizes kept)"
        else:
            null = random_foci_null(a, b, *cluster_args)
            count1 = jnp.asarray(self._counts(a), jnp.float32)
            count2 = jnp.asarray(self._counts(b), jnp.float32)
            observed = chi2.chi2_maps(count1, count2, n1, len(b.ids))
            vectorize = "map"
            how = "every focus was relocated to a random voxel of the mask"
        out = run_permutations(
            null.summary,
            jax.random.fold_in(key, 2),
            opts.n_iters,
            batch_size=opts.batch_size,
            n_devices=opts.n_cores,
            progress=opts.progress,
            desc="MKDAChi2 FWE permutations",
            stop_fn=opts.stopper(lambda samples: samples["association"]["voxel"]),
            vectorize=vectorize,
            operands=null.operands,
        )
        maps, nulls_out = {}, {}
        null_names = {"group1": "pAgF", "association": "pFgA"}
        for name in ("group1", "group2", "association"):
            stat = np.asarray(observed[name], np.float64)
            sign = np.sign(np.asarray(result.maps[f"z_desc-{name}"]))
            samples = {k: np.asarray(v, np.float64) for k, v in out.samples[name].items()}
            p = {"": stats.null_to_p(stat, samples["voxel"], tail="upper")}
            aliases = [name] + (["uniformity"] if name == "group1" else [])
            nulls_names = [name] + ([null_names[name]] if name in null_names else [])
            for alias in nulls_names:
                nulls_out[fwe_null("values", "voxel", alias)] = samples["voxel"]
            if not opts.vfwe_only:
                p_size, p_mass, _ = cluster_fwe_maps(
                    stat,
                    result.mask,
                    ss_thresh,
                    samples["size"],
                    samples["mass"],
                    opts.connectivity,
                )
                p.update(Size=p_size, Mass=p_mass)
                for alias in nulls_names:
                    for desc in ("size", "mass"):
                        nulls_out[fwe_null("values", "cluster", alias + desc)] = samples[desc]
            for alias in aliases:
                for level, pv in p.items():
                    where = ("cluster" if level else "voxel", alias + level)
                    maps[fwe_map("p", *where)] = pv
                    maps[fwe_map("z", *where)] = stats.p_to_z(pv, tail="two") * sign
                    maps[fwe_map("logp", *where)] = -np.log10(pv)
        clusters = (
            ""
            if opts.vfwe_only
            else f", and the largest cluster size and mass above chi2 = {ss_thresh:.2f} "
            f"(uncorrected p < {opts.voxel_thresh}; {opts.connectivity}-neighbour connectivity)"
        )
        text = (
            "Family-wise error of the chi-square maps was controlled by permutation: in each "
            f"of {out.n_iters} iterations (seed {seed}) {how}, and the maximum of each "
            f"chi-square map was recorded{clusters}."
        )
        return maps, nulls_out, text, ("Wager2007",)

    def pooled_ma_matrix(self):
        """Binary MA maps of both groups' experiments, group 1 first.

        Returns
        -------
        jax.Array, shape (n_exp1 + n_exp2, n_voxels), float32
            1 where an experiment's spheres cover a mask voxel.
        """
        return self._pooled_ma(lambda arrays: arrays.windows > 0, jnp.float32)

    def correct_fdr_indep(self, result, alpha: float = 0.05):
        """Benjamini-Hochberg FDR correction of the uniformity, group2 and association maps.

        Called by :class:`~nimare_jax.correct.FDRCorrector`; use that instead.

        Parameters
        ----------
        result : MetaResult
            This estimator's fit.
        alpha : float
            FDR level (recorded in the description; the maps are adjusted p-values).

        Returns
        -------
        maps : dict
            ``{p,z,logp}_desc-{uniformity,group1,group2,association}_level-voxel_corr-FDR_
            method-indep``; z two-tailed, signed as the uncorrected z.
        nulls : dict
            Empty.
        description : str
            Methods text.
        citations : tuple of str
            BibTeX keys.
        """
        return self._fdr(result, "bh", "indep", alpha)

    def correct_fdr_negcorr(self, result, alpha: float = 0.05):
        """Benjamini-Yekutieli FDR correction (any dependence); see :meth:`correct_fdr_indep`.

        Parameters
        ----------
        result : MetaResult
            This estimator's fit.
        alpha : float
            FDR level.

        Returns
        -------
        maps, nulls, description, citations
            As :meth:`correct_fdr_indep`, with ``method-negcorr``.
        """
        return self._fdr(result, "by", "negcorr", alpha)

    def _fdr(self, result, method, label, alpha):
        maps = {}
        for name in ("group1", "group2", "association"):
            # from logp (-log10 p, float64): exact where p itself would underflow
            logp = -np.asarray(result.maps[f"logp_desc-{name}"], np.float64) * np.log(10.0)
            sign = np.sign(np.asarray(result.maps[f"z_desc-{name}"]))
            with jax.enable_x64(True):
                adj = np.asarray(ops_stats.fdr_logp(logp, method=method))
                z = np.asarray(ops_stats.logp_to_z(adj, tail="two")) * sign
            for alias in [name] + (["uniformity"] if name == "group1" else []):
                for kind, values in (("p", np.exp(adj)), ("z", z), ("logp", -adj / np.log(10.0))):
                    maps[map_name(kind, desc=alias, level="voxel", corr="FDR", method=label)] = (
                        values
                    )
        who = "Benjamini-Hochberg" if method == "bh" else "Benjamini-Yekutieli"
        key = "Benjamini1995" if method == "bh" else "Benjamini2001"
        text = (
            "The p-values of the uniformity, group 2 and association maps were each corrected "
            f"for the false discovery rate with the {who} procedure [{key}] (alpha = {alpha})."
        )
        return maps, {}, text, (key,)
