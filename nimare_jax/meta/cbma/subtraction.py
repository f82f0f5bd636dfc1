"""ALE subtraction: where does one group of experiments converge more than another.

Laird et al. (2005) HBM 25:155; Eickhoff et al. (2012) NeuroImage 59:2349.

The statistic is the difference of the two groups' ALE maps. Its null distribution comes
from reassigning the pooled experiments at random to two groups of the original sizes.
Every experiment's modelled-activation (MA) map is computed once, as the log-domain term
``-log(1 - MA)`` stored in fixed point (int32): a group's ALE is then one matrix product
with a 0/1 membership vector, exact in integers. Exact sums mean that a permutation which
puts the same experiments covering a voxel into group 1 as the observed split reproduces
the observed difference *exactly*, so such ties are counted as ties (as they should be),
whatever the order of summation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nimare_jax import stats
from nimare_jax.docstrings import fill_doc
from nimare_jax.meta.cbma.ale import ALE
from nimare_jax.meta.cbma.base import (
    PairwiseCBMAEstimator,
    cluster_fwe_maps,
    make_kernel,
    seed_to_key,
)
from nimare_jax.meta.cbma.kernel import ALEKernel, FociArrays
from nimare_jax.meta.fwe import fwe_map, fwe_null, fwe_options
from nimare_jax.ops import subtraction as ops_subtraction
from nimare_jax.ops.permute import BoundSummary, run_permutations
from nimare_jax.ops.stats import clip_null_p
from nimare_jax.ops.validate import check_n_iters

__all__ = ["ALESubtraction", "fixed_point_terms", "subtraction_null"]

_CONTRAST = "group1MinusGroup2"


def fixed_point_terms(ma: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-experiment ALE log terms ``-log1p(-MA)`` as int32 fixed point, voxels first.

    Parameters
    ----------
    ma : numpy.ndarray, shape (n_exp, n_voxels)
        Modelled-activation values in [0, 1).

    Returns
    -------
    terms : numpy.ndarray, shape (n_voxels, n_exp), int32
        ``rint(-log1p(-MA) * scale)``.
    scale : float
        Units per log unit, as large as possible while no sum over experiments overflows.
    """
    logs = -np.log1p(-np.asarray(ma, np.float64)).T
    top = float(logs.sum(axis=1).max()) if logs.size else 0.0
    scale = (2**31 - 2 * logs.shape[1] - 2) / max(top, 1e-12)
    return np.rint(logs * scale).astype(np.int32), scale


@fill_doc
def subtraction_null(
    terms,
    scale: float,
    n1: int,
    *,
    mask_index=None,
    shape=None,
    thresh: float | None = None,
    connectivity: int = 6,
    label_backend: str = "auto",
    hist_bins: int | None = None,
    want_max: bool = True,
    outputs: tuple | None = None,
):
    """Per-iteration summary of the ALE-subtraction label-permutation null.

    Each iteration draws which ``n1`` of the pooled experiments form group 1
    (:func:`nimare_jax.ops.subtraction.label_permutation_summary`).

    Parameters
    ----------
    terms : array, shape (n_voxels, n_exp), int32
        Fixed-point log terms of group 1's experiments then group 2's
        (:func:`fixed_point_terms`).
    scale : float
        Their scale.
    n1 : int
        Size of group 1.
    mask_index, shape : optional
        Flat in-mask voxel indices and the volume shape (needed for cluster statistics).
    thresh : float or None
        Cluster-forming threshold on ``|ALE1 - ALE2|``; None skips cluster statistics.
    %(cluster_options)s
    hist_bins : int or None
        If given, also return a histogram of ``|ALE1 - ALE2|`` over the mask with bins of
        width ``1e-6`` (to locate the cluster-forming threshold).
    want_max : bool
        Compute the difference map and its maximum ``|ALE1 - ALE2|`` (the voxel-level FWE
        null); without it, the summary only compares integers.
    outputs : tuple of str or None
        Return only these summaries (see :data:`nimare_jax.ops.subtraction.OUTPUTS`);
        None: ``upper``, ``lower`` and whatever the options above ask for.

    Returns
    -------
    nimare_jax.ops.permute.BoundSummary
        Pure ``summary(key) -> {"upper", "lower": bool (n_voxels,), "voxel": max |diff|, ...}``
        where ``upper``/``lower`` mark voxels whose permuted difference is >= / <= the
        observed one (exact ties included). Its ``summary`` (cached per configuration) and
        ``operands`` (the arrays) go to :func:`nimare_jax.ops.permute.run_permutations`
        separately, so a second run of the same configuration compiles nothing.
    """
    if outputs is None:
        outputs = ("upper", "lower")
        if hist_bins is not None or thresh is not None or want_max:
            outputs += ("voxel",)
        if hist_bins is not None:
            outputs += ("hist",)
        if thresh is not None:
            outputs += ("size", "mass")
    terms = jnp.asarray(terms, jnp.int32)
    operands = ops_subtraction.SubtractionOperands(
        terms=terms,
        total=terms.sum(axis=1),
        observed_q1=terms[:, :n1].sum(axis=1),
        mask_index=jnp.asarray(np.zeros(0, np.int32) if mask_index is None else mask_index),
    )
    summary = ops_subtraction.label_permutation_summary(
        int(n1),
        tuple(outputs),
        None if shape is None else tuple(shape),
        hist_bins,
        connectivity,
        label_backend,
    )
    inv_scale = np.float32(1.0 / scale)
    return BoundSummary(
        summary, (operands, inv_scale, np.float32(0 if thresh is None else thresh))
    )


def _threshold_from_histogram(hist: np.ndarray, voxel_thresh: float) -> float:
    """Return the ``1 - voxel_thresh`` quantile of values binned at ``THRESH_BIN``."""
    hist = np.asarray(hist, np.float64)
    cum = np.cumsum(hist)
    target = (1.0 - voxel_thresh) * cum[-1]
    b = int(np.searchsorted(cum, target, side="left"))
    below = cum[b - 1] if b else 0.0
    frac = (target - below) / hist[b] if hist[b] else 0.0
    return float((b + frac) * ops_subtraction.THRESH_BIN)


def _rename_group_fwe(maps: dict, group: str) -> dict:
    """ALE FWE map names -> the ALESubtraction names of a group's main effect."""
    out = {}
    for kind in ("p", "z", "logp"):
        names = {
            fwe_map(kind): fwe_map(kind, "voxel", group),
            fwe_map(kind, "cluster", "size"): fwe_map(kind, "cluster", f"{group}Size"),
            fwe_map(kind, "cluster", "mass"): fwe_map(kind, "cluster", f"{group}Mass"),
        }
        out.update({new: maps[old] for old, new in names.items() if old in maps})
    return out


@fill_doc
class ALESubtraction(PairwiseCBMAEstimator):
    """ALE subtraction analysis of two groups of experiments.

    ``fit(dataset1, dataset2)`` computes ALE1 - ALE2 at every voxel of the mask and tests
    it, two-sided, against the differences obtained when the pooled experiments are
    randomly reassigned to groups of the original sizes (Laird et al. 2005; Eickhoff et al.
    2012). As in NiMARE, all voxels of the mask are tested (the original method tests only
    voxels significant in a group's own ALE).

    Parameters
    ----------
    %(ale_kernel)s
    n_iters : int
        Permutations of the group labels (NiMARE's default 5000).
    voxel_thresh : float or None
        Uncorrected p of the cluster-forming threshold, used when ``vfwe_only`` is False
        (None is accepted only when ``vfwe_only`` is True).
    vfwe_only : bool
        If True (default, as NiMARE), the fit records only the voxel-level FWE null (the
        maximum ``|ALE1 - ALE2|`` of each permutation); otherwise it also records the
        largest cluster size and mass above the threshold.
    %(n_cores)s
    random_state : int or None
        Seed of the permutations.
    %(batch_progress)s
    low_memory : {False, True, "auto"}
        NiMARE's switch to memory-mapped arrays; validated and without effect here (the
        permutations run in batches of ``batch_size`` whatever its value).
    %(kernel_kwargs)s

    Notes
    -----
    Maps: ``stat_desc-group1MinusGroup2`` (ALE1 - ALE2), ``p_``, ``z_`` and
    ``logp_desc-group1MinusGroup2`` with ``p = 2 min(P(null >= d), P(null <= d))`` bounded
    to ``[1/n, 1 - 1/n]`` (:func:`~nimare_jax.ops.stats.clip_null_p`) and ``z``
    two-tailed, signed towards the heavier tail (0 where the tails balance); and each
    group's own ALE maps, ``{stat,p,z,logp}_desc-group1`` and ``..._desc-group2``
    (analytic null). The voxel-wise null is never stored.
    """

    _citations = ("Laird2005", "Eickhoff2012", "Turkeltaub2012")
    _contrast = _CONTRAST

    def __init__(
        self,
        kernel_transformer=ALEKernel,
        n_iters: int = 5000,
        voxel_thresh: float | None = 0.001,
        vfwe_only: bool = True,
        n_cores: int = 1,
        random_state: int | None = None,
        batch_size: int = 32,
        progress: bool = True,
        low_memory=False,
        **kwargs,
    ):
        self.kernel_transformer = make_kernel(kernel_transformer, ALEKernel, kwargs)
        if self.kernel_transformer.ma_kind != "probability":
            raise TypeError(
                "ALESubtraction needs a kernel whose MA values are probabilities (ALEKernel, "
                f"or Peaks2MapsKernel(binary=False)), got {self.kernel_transformer!r}"
            )
        if voxel_thresh is not None or not vfwe_only:  # None: only without cluster nulls
            if voxel_thresh is None:
                raise ValueError("voxel_thresh must be provided when vfwe_only is False")
            try:  # numbers and numeric strings, as NiMARE
                if isinstance(voxel_thresh, bool):
                    raise TypeError
                value = float(voxel_thresh)
            except (TypeError, ValueError):
                raise TypeError(
                    f"voxel_thresh must be a scalar numeric value, got {voxel_thresh!r}"
                ) from None
            if not 0 < value < 1:
                raise ValueError(f"voxel_thresh must be between 0 and 1, got {voxel_thresh!r}")
            voxel_thresh = value
        if low_memory not in (False, True, "auto"):
            raise ValueError(f"low_memory must be False, True, or 'auto', got {low_memory!r}")
        self.low_memory = low_memory
        self.n_iters = check_n_iters(n_iters)
        self.voxel_thresh = voxel_thresh
        self.vfwe_only = bool(vfwe_only)
        self.n_cores = n_cores
        self.random_state = random_state
        self.batch_size = int(batch_size)
        self.progress = progress

    def __repr__(self) -> str:
        return f"ALESubtraction({self.kernel_transformer!r}, n_iters={self.n_iters})"

    # ------------------------------------------------------------------------ fit
    def _fit(self, arrays1: FociArrays, arrays2: FociArrays):
        self.group_estimators_, self.group_results_ = [], []
        maps = {}
        for label, dset in (("group1", self.dataset1_), ("group2", self.dataset2_)):
            est = ALE(kernel_transformer=self.kernel_transformer, random_state=self.random_state)
            res = est.fit(dset)
            self.group_estimators_.append(est)
            self.group_results_.append(res)
            for name in ("stat", "p", "z", "logp"):
                maps[f"{name}_desc-{label}"] = np.asarray(res.maps[name])
        stat = maps["stat_desc-group1"].astype(np.float64) - maps["stat_desc-group2"]
        with jax.enable_x64(True):
            pooled = np.asarray(self._pooled_ma(lambda arrays: arrays.windows, jnp.float64))
        self.terms_, self.scale_ = fixed_point_terms(pooled)
        samples, n, thresh = self._permute(self.n_iters, self.vfwe_only, self.voxel_thresh)
        upper = np.asarray(samples["upper"], np.float64)
        lower = np.asarray(samples["lower"], np.float64)
        with jax.enable_x64(True):
            p = np.asarray(clip_null_p(2.0 * np.minimum(upper, lower) / n, n))
        sign = np.sign(lower - upper)
        maps.update(
            {
                f"stat_desc-{_CONTRAST}": stat,
                f"p_desc-{_CONTRAST}": p,
                f"z_desc-{_CONTRAST}": stats.p_to_z(p, tail="two") * sign,
                f"logp_desc-{_CONTRAST}": -np.log10(p),
            }
        )
        self._cached_ = (n, self.voxel_thresh, self.vfwe_only)
        return maps, self._nulls(samples, thresh)

    def _permute(
        self,
        n_iters,
        vfwe_only,
        voxel_thresh,
        *,
        counts=True,
        n_cores=None,
        progress=None,
        batch_size=None,
        connectivity=6,
        label_backend="auto",
        stop_fn=None,
    ):
        """Run the label permutations (the same draws in every pass, from one seed).

        Pass 1: the per-iteration maxima, and summed over iterations the voxel-wise tail
        counts (``counts``) and, for cluster inference, the histogram of null
        ``|ALE1 - ALE2|`` that locates the cluster-forming threshold. Pass 2 (cluster
        inference only, as its threshold needs all of pass 1): the largest clusters.
        """
        _, key = seed_to_key(self.random_state)
        key = jax.random.fold_in(key, 3)
        n1 = len(self.inputs1_.ids)
        options = {
            "batch_size": self.batch_size if batch_size is None else batch_size,
            "n_devices": self.n_cores if n_cores is None else n_cores,
            "progress": self.progress if progress is None else progress,
            "vectorize": "vmap",
        }
        reduce, n_bins = {"voxel": "keep"}, None
        if counts:
            reduce.update(upper="sum", lower="sum")
        if not vfwe_only:  # the threshold is read from all voxels of all iterations
            what = "the cluster-forming threshold (voxel_thresh)"
            check_n_iters(n_iters, voxel_thresh, per_iter=self.terms_.shape[0], what=what)
            top = float((-np.expm1(-self.terms_.sum(axis=1) / self.scale_)).max())
            n_bins = int(top / ops_subtraction.THRESH_BIN) + 2
            reduce["hist"] = "sum"
        first = subtraction_null(
            self.terms_, self.scale_, n1, hist_bins=n_bins, outputs=tuple(sorted(reduce))
        )
        out = run_permutations(
            first.summary,
            key,
            n_iters,
            desc="ALE subtraction permutations",
            reduce=reduce,
            operands=first.operands,
            stop_fn=stop_fn,
            **options,
        )
        samples, thresh = dict(out.samples), None
        if not vfwe_only:
            thresh = _threshold_from_histogram(samples.pop("hist"), voxel_thresh)
            a = self.inputs1_
            second = subtraction_null(
                self.terms_,
                self.scale_,
                n1,
                mask_index=a.mask_index,
                shape=a.shape,
                thresh=thresh,
                connectivity=connectivity,
                label_backend=label_backend,
                outputs=("mass", "size"),
            )
            clusters = run_permutations(
                second.summary,
                key,
                out.n_iters,
                desc="ALE subtraction permutations (clusters)",
                operands=second.operands,
                **options,
            )
            samples.update(clusters.samples)
        return samples, out.n_iters, thresh

    def _nulls(self, samples, thresh) -> dict:
        nulls = {fwe_null(): np.asarray(samples["voxel"], np.float64)}
        if thresh is not None:
            nulls[fwe_null("summary_stat_thresh")] = thresh
            for desc in ("size", "mass"):
                nulls[fwe_null("values", "cluster", desc)] = np.asarray(samples[desc], np.float64)
        return nulls

    def _description(self) -> str:
        a, b = self.inputs1_, self.inputs2_
        return (
            "An activation likelihood estimation (ALE) subtraction analysis [Laird2005; "
            "Eickhoff2012] was performed with nimare_jax, comparing a first group of "
            f"{len(a.ids)} experiments ({a.ijk.shape[0]} foci) with a second group of "
            f"{len(b.ids)} experiments ({b.ijk.shape[0]} foci). "
            f"{self.kernel_transformer.description()} Each group's ALE map was computed from "
            "these modelled activation maps, and the difference of the two maps was computed "
            "at every "
            "voxel of the mask (not only where a group's own ALE was significant). Its null "
            f"distribution was built from {self.n_iters} random reassignments of the pooled "
            "experiments to two groups of the original sizes, without assuming symmetry, and "
            "the difference was tested two-sided."
        )

    # --------------------------------------------------------------- corrections
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
        target: str = "pairwise",
    ):
        """FWE correction of the difference (and, on request, of each group's ALE).

        Parameters and returns as :meth:`nimare_jax.meta.fwe.MonteCarloFWE.correct_fwe_montecarlo`
        (``n_iters=None``: the estimator's ``n_iters``; ``batch_size=None`` and
        ``progress=None``: the estimator's settings), plus ``target``. Reuses the fit's
        null when ``n_iters``, ``voxel_thresh`` and ``vfwe_only`` match it (connectivity
        6, no ``tolerance``), otherwise reruns the same permutations (same seed). The
        cluster-forming threshold is the ``1 - voxel_thresh`` quantile of all null
        ``|ALE1 - ALE2|`` values.

        Parameters
        ----------
        %(fwe_montecarlo_parameters)s
        target : {"pairwise", "main-effects", "all"}
            Correct the difference, each group's own ALE (Monte Carlo relocation FWE of
            :class:`~nimare_jax.meta.cbma.ALE`), or both.

        Returns
        -------
        maps, nulls, description, citations
            Maps ``{p,z,logp}_desc-group1MinusGroup2_level-voxel_corr-FWE_method-
            montecarlo``, ``..._desc-group1MinusGroup2{Size,Mass}_level-cluster_...``; z
            two-tailed and signed as the uncorrected z. Main effects:
            ``..._desc-group1_level-voxel_...``, ``..._desc-group1Size_level-cluster_...``
            and so on.
        """
        if target not in ("pairwise", "main-effects", "all"):
            raise ValueError(f"target must be 'pairwise', 'main-effects' or 'all', not {target!r}")
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
            default_n_iters=self.n_iters,
            default_batch_size=self.batch_size,
        )
        maps, nulls, texts, cites = {}, {}, [], ["Eickhoff2012"]
        if target in ("pairwise", "all"):
            fitted = (opts.n_iters, opts.voxel_thresh, opts.vfwe_only)
            if self._cached_ == fitted and opts.connectivity == 6 and tolerance is None:
                nulls = dict(self.null_distributions_)
            else:
                samples, _, thresh = self._permute(
                    opts.n_iters,
                    opts.vfwe_only,
                    opts.voxel_thresh,
                    counts=False,
                    n_cores=opts.n_cores,
                    progress=opts.progress,
                    batch_size=opts.batch_size,
                    connectivity=opts.connectivity,
                    label_backend=opts.label_backend,
                    stop_fn=opts.stopper("voxel"),
                )
                nulls = self._nulls(samples, thresh)
            stat = np.asarray(result.maps[f"stat_desc-{_CONTRAST}"], np.float64)
            sign = np.sign(np.asarray(result.maps[f"z_desc-{_CONTRAST}"]))
            vmax = nulls[fwe_null()]
            p = {"": stats.null_to_p(np.abs(stat), vmax, tail="upper")}
            text = (
                "Family-wise error of the ALE difference was controlled with the same "
                f"label permutations ({vmax.shape[0]} iterations), recording the largest "
                "absolute difference of each"
            )
            if not opts.vfwe_only:
                thresh = nulls[fwe_null("summary_stat_thresh")]
                sizes = nulls[fwe_null("values", "cluster", "size")]
                masses = nulls[fwe_null("values", "cluster", "mass")]
                ps_pos, pm_pos, _ = cluster_fwe_maps(
                    stat, result.mask, thresh, sizes, masses, opts.connectivity
                )
                ps_neg, pm_neg, _ = cluster_fwe_maps(
                    -stat, result.mask, thresh, sizes, masses, opts.connectivity
                )
                p["Size"] = np.where(stat < 0, ps_neg, ps_pos)
                p["Mass"] = np.where(stat < 0, pm_neg, pm_pos)
                text += (
                    ", and the largest size and mass of the clusters of positive and of "
                    f"negative differences beyond |ALE1 - ALE2| > {thresh:.3g} (the "
                    f"{1 - opts.voxel_thresh:g} quantile of all null differences; "
                    f"{opts.connectivity}-neighbour connectivity)"
                )
            for level, pv in p.items():
                where = ("cluster" if level else "voxel", _CONTRAST + level)
                maps[fwe_map("p", *where)] = pv
                maps[fwe_map("z", *where)] = stats.p_to_z(pv, tail="two") * sign
                maps[fwe_map("logp", *where)] = -np.log10(pv)
            texts.append(text + ".")
        if target in ("main-effects", "all"):
            for label, est, res in zip(
                ("group1", "group2"), self.group_estimators_, self.group_results_, strict=True
            ):
                gmaps, gnulls, gtext, gcites = est.correct_fwe_montecarlo(
                    res,
                    voxel_thresh=opts.voxel_thresh,
                    n_iters=opts.n_iters,
                    n_cores=opts.n_cores,
                    vfwe_only=opts.vfwe_only,
                    connectivity=opts.connectivity,
                    batch_size=batch_size,
                    tolerance=tolerance,
                    label_backend=opts.label_backend,
                    progress=opts.progress,
                )
                maps.update(_rename_group_fwe(gmaps, label))
                nulls.update({f"{k}_desc-{label}": v for k, v in gnulls.items()})
                cites += list(gcites)
            texts.append("Each group's own ALE map was corrected separately. " + gtext)
        return maps, nulls, " ".join(texts), tuple(dict.fromkeys(cites))
