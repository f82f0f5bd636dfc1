"""Activation likelihood estimation (ALE).

Turkeltaub et al. (2002) NeuroImage 16:765; Eickhoff et al. (2009) HBM 30:2907; Turkeltaub
et al. (2012) HBM 33:1; Eickhoff et al. (2012) NeuroImage 59:2349; Eickhoff et al. (2016)
NeuroImage 137:70.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nimare_jax import stats
from nimare_jax.meta.cbma.base import CBMAEstimator, check_n_iters, make_kernel
from nimare_jax.meta.cbma.kernel import ALEKernel, FociArrays
from nimare_jax.ops import kernels as K
from nimare_jax.ops import nulls
from nimare_jax.ops.label import label_clusters, max_cluster_stats
from nimare_jax.ops.permute import QuantileStop, run_permutations


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


class ALE(CBMAEstimator):
    """Activation likelihood estimation.

    Parameters
    ----------
    kernel_transformer : ALEKernel class or instance
        Kernel; ``kernel__fwhm=...`` or ``kernel__sample_size=...`` configure the default.
    null_method : {"approximate", "montecarlo"}
        How the voxel-wise null is built: the analytic histogram convolution (default), or
        ``n_iters`` random relocations of all foci.
    n_iters : int
        Monte Carlo iterations for ``null_method="montecarlo"`` (NiMARE's default 5000).
    n_cores : int
        Devices to spread permutations over (see :mod:`nimare_jax.ops.permute`).
    random_state : int or None
        Seed of the permutations (also used by :class:`~nimare_jax.correct.FWECorrector`).
    **kwargs
        ``kernel__*`` arguments of the kernel.

    Notes
    -----
    Maps: ``stat`` (ALE), ``p``, ``z`` (one-tailed, not clipped at large values) and
    ``logp`` (``-log10 p``).
    """

    _citations = ("Turkeltaub2002", "Eickhoff2009", "Turkeltaub2012", "Eickhoff2012")

    def __init__(
        self,
        kernel_transformer=ALEKernel,
        null_method: str = "approximate",
        n_iters: int = 5000,
        n_cores: int = 1,
        random_state: int | None = None,
        **kwargs,
    ):
        if null_method not in ("approximate", "montecarlo"):
            raise ValueError(
                f"null_method must be 'approximate' or 'montecarlo', not {null_method!r}"
            )
        self.kernel_transformer = make_kernel(kernel_transformer, ALEKernel, kwargs)
        if not isinstance(self.kernel_transformer, ALEKernel):
            raise TypeError("ALE needs an ALEKernel")
        self.null_method = null_method
        self.n_iters = check_n_iters(n_iters)
        self.n_cores = n_cores
        self.random_state = random_state

    def __repr__(self) -> str:
        return f"ALE({self.kernel_transformer!r}, null_method={self.null_method!r})"

    def _fit(self, arrays: FociArrays):
        inv_step = 1.0 / nulls.STEP
        n_ma_bins = int(nulls.nearest_bin(arrays.windows.max(), inv_step, 10**9)) + 2
        ijk, valid = arrays.padded()
        n_exp = len(arrays.ids)
        with jax.enable_x64(True):  # one pass; float64 sums as NiMARE's (p-value bins)
            log_acc, hist, ma_max = K.summarize_experiments(
                ijk,
                valid,
                arrays.exp_window,
                jnp.ones(n_exp, jnp.float32),
                jnp.asarray(arrays.windows, jnp.float32),
                arrays.mask_index,
                arrays.shape,
                "max",
                "probabilistic",
                n_ma_bins,
                inv_step,
            )
            stat = np.asarray(-jnp.expm1(-log_acc)).astype(np.float32)
        bins = nulls.ale_histogram_bins(np.asarray(ma_max))
        n = min(n_ma_bins, bins.shape[0])
        exp_hists = np.zeros((n_exp, bins.shape[0]))
        exp_hists[:, :n] = np.asarray(hist)[:, :n] / arrays.mask_index.shape[0]
        null = {"histogram_bins": bins}
        if self.null_method == "approximate":
            key = "histweights_corr-none_method-approximate"
            null[key] = nulls.fold_union_histograms(exp_hists, bins)
        else:
            key = "histweights_corr-none_method-montecarlo"
            null.update(self._montecarlo_null(arrays, bins))
        p = stats.nullhist_to_p(stat, null[key], bins)
        maps = {
            "stat": stat,
            "p": p,
            "z": stats.p_to_z(p, tail="one"),
            "logp": -np.log10(p),
        }
        return maps, null

    def _montecarlo_null(self, arrays: FociArrays, bins: np.ndarray) -> dict:
        """Voxel-wise null from ``n_iters`` relocations of all foci (histograms summed)."""
        _, key = seed_to_key(self.random_state)
        base = relocation_maps(arrays, ale_windows(arrays))
        inv_step = 1.0 / (bins[1] - bins[0])
        n_bins = bins.shape[0]
        inside = jnp.asarray(arrays.mask_index)

        def summary(k):
            values = base(k).reshape(-1)[inside]
            idx = jnp.clip(jnp.round(values * inv_step).astype(jnp.int32), 0, n_bins - 1)
            top = jnp.clip(jnp.round(values.max() * inv_step).astype(jnp.int32), 0, n_bins - 1)
            return {
                "all": jnp.bincount(idx, length=n_bins),
                "max": jnp.zeros(n_bins, jnp.int32).at[top].add(1),
            }

        out = run_permutations(
            summary,
            jax.random.fold_in(key, 0),
            self.n_iters,
            n_devices=self.n_cores,
            desc="ALE Monte Carlo null",
            vectorize="map",
            reduce="sum",
        )
        return {
            "histweights_corr-none_method-montecarlo": out.samples["all"].astype(np.float64),
            "histweights_level-voxel_corr-fwe_method-montecarlo": out.samples["max"].astype(
                np.float64
            ),
        }

    def correct_fwe_montecarlo(
        self,
        result,
        voxel_thresh: float = 0.001,
        n_iters: int | None = None,
        n_cores: int = 1,
        connectivity: int = 6,
        vfwe_only: bool = False,
        batch_size: int = 16,
        tolerance: float | None = None,
        label_backend: str = "auto",
        progress: bool = True,
    ):
        """Monte Carlo FWE correction: relocate all foci uniformly in the mask, record maxima.

        Called by :class:`~nimare_jax.correct.FWECorrector`; use that instead.

        Parameters
        ----------
        result : MetaResult
            This estimator's fit.
        voxel_thresh : float
            Uncorrected p of the cluster-forming threshold (from the fit's null).
        n_iters : int or None
            Iterations (None: the estimator's ``n_iters``).
        n_cores : int
            Devices to spread iterations over.
        connectivity : {6, 18, 26}
            Cluster neighbourhood (NiMARE: 6).
        vfwe_only : bool
            Skip cluster-level inference.
        batch_size : int
            Iterations per device per dispatch (run one after the other on a device).
        tolerance : float or None
            Early stopping (NiMARE issue 866): stop once the Maritz-Jarrett standard error
            of the 95th percentile of the max-ALE null is below this fraction of it (checked
            after each batch, from 1000 iterations on).
        label_backend : {"auto", "jax", "scipy"}
            Cluster labelling implementation.
        progress : bool
            Show a progress bar.

        Returns
        -------
        maps : dict
            ``logp``/``z`` maps at voxel level and (unless ``vfwe_only``) for cluster size
            and mass, under NiMARE's names.
        nulls : dict
            Per-iteration maxima.
        description : str
            Methods text.
        citations : tuple of str
            BibTeX keys.
        """
        n_iters = check_n_iters(self.n_iters if n_iters is None else n_iters)
        if connectivity not in (6, 18, 26):
            raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
        arrays = self.inputs_
        bins = self.null_distributions_["histogram_bins"]
        weights = self.null_distributions_[f"histweights_corr-none_method-{self.null_method}"]
        ss_thresh = nulls.histogram_to_threshold(weights, bins, voxel_thresh)
        seed, key = seed_to_key(self.random_state)
        summary = relocation_null(
            arrays, ale_windows(arrays), ss_thresh, connectivity, label_backend
        )
        stopper = None if tolerance is None else QuantileStop("voxel", tol=tolerance)
        out = run_permutations(
            summary,
            jax.random.fold_in(key, 1),
            n_iters,
            batch_size=batch_size,
            n_devices=n_cores,
            progress=progress,
            desc="ALE FWE permutations",
            stop_fn=stopper,
            vectorize="map",
        )
        vmax, smax, mmax = (
            np.asarray(out.samples[k], np.float64) for k in ("voxel", "size", "mass")
        )
        used = vmax.shape[0]
        stat = np.asarray(result.maps["stat"], np.float64)
        p_voxel = stats.null_to_p(stat, vmax, tail="upper")
        maps = {}
        suffix = "level-voxel_corr-FWE_method-montecarlo"
        maps[f"logp_{suffix}"] = -np.log10(p_voxel)
        maps[f"z_{suffix}"] = stats.p_to_z(p_voxel, tail="one")
        nulls_out = {"values_level-voxel_corr-fwe_method-montecarlo": vmax}
        if not vfwe_only:
            p_size, p_mass, _ = cluster_fwe_maps(
                stat, result.mask, ss_thresh, smax, mmax, connectivity
            )
            for desc, p in (("size", p_size), ("mass", p_mass)):
                suffix = f"desc-{desc}_level-cluster_corr-FWE_method-montecarlo"
                maps[f"logp_{suffix}"] = -np.log10(p)
                maps[f"z_{suffix}"] = stats.p_to_z(p, tail="one")
                nulls_out[f"values_desc-{desc}_level-cluster_corr-fwe_method-montecarlo"] = (
                    smax if desc == "size" else mmax
                )
        stopped = (
            f" Iterations stopped early after {used} of {n_iters}: the Monte Carlo standard "
            f"error of the 95th percentile of the maximum ALE was {stopper.se:.2g} "
            f"(relative tolerance {tolerance}) [MaritzJarrett1978]."
            if out.stopped_early
            else ""
        )
        text = (
            "Family-wise error was controlled with a Monte Carlo procedure [Eickhoff2012; "
            f"Eickhoff2016]: in each of {used} iterations (seed {seed}) every focus was "
            "relocated to a random voxel of the mask, the ALE map recomputed, and its maximum "
            "ALE value, largest cluster size and largest cluster mass recorded. Clusters were "
            f"formed at an uncorrected p < {voxel_thresh} (ALE > {ss_thresh:.5g}) with "
            f"{connectivity}-neighbour connectivity." + stopped
        )
        return maps, nulls_out, text, ("Eickhoff2012", "Eickhoff2016")

    def _description(self) -> str:
        kt = self.kernel_transformer
        if kt.fwhm is not None:
            width = f"a fixed full width at half maximum of {kt.fwhm} mm"
        elif kt.sample_size is not None:
            width = f"a width set by a sample size of {kt.sample_size} for every experiment"
        else:
            width = "a width set by each experiment's sample size [Eickhoff2009]"
        null = (
            "an analytically derived null distribution [Eickhoff2012]"
            if self.null_method == "approximate"
            else f"a Monte Carlo null distribution of {self.n_iters} random relocations of "
            "all foci within the mask"
        )
        return (
            "An activation likelihood estimation (ALE) meta-analysis [Turkeltaub2002; "
            f"Turkeltaub2012] was performed with nimare_jax. Each focus was modelled by a "
            f"3-D Gaussian kernel with {width}; modelled activation maps took the maximum over "
            "an experiment's foci [Turkeltaub2012] and were combined into an ALE map as their "
            f"probabilistic union. Voxel-wise p-values were computed against {null}."
        )


def seed_to_key(random_state):
    """Return ``(seed, key)``: a PRNG key from an int seed, or from fresh entropy if None.

    Parameters
    ----------
    random_state : int or None
        Seed.

    Returns
    -------
    seed : int
        The seed used (recorded in descriptions so runs can be repeated).
    key : jax.Array
        Typed PRNG key.
    """
    seed = (
        int(np.random.SeedSequence().entropy % (2**31))
        if random_state is None
        else int(random_state)
    )
    return seed, jax.random.key(seed)


def relocation_maps(arrays: FociArrays, log_windows, strategy: str = "auto"):
    """ALE volume of one random relocation of all foci (uniform over the mask voxels).

    Parameters
    ----------
    arrays : FociArrays
        Prepared foci and kernels; experiments and kernels are kept, positions redrawn.
    log_windows : jax.Array, shape (n_windows, W, W, W)
        ``-log1p(-K)`` windows (:func:`ale_windows`).
    strategy : {"auto", "window", "scatter"}
        How windows are applied (:func:`nimare_jax.ops.kernels.resolve_strategy`).

    Returns
    -------
    callable
        ``ale_volume(key) -> (X, Y, Z)`` ALE values, zero outside the mask; pure.
    """
    mask = np.zeros(int(np.prod(arrays.shape)), bool)
    mask[arrays.mask_index] = True
    mask = mask.reshape(arrays.shape)
    mask_ijk = jnp.asarray(np.argwhere(mask), jnp.int32)
    mask = jnp.asarray(mask)
    n_foci = arrays.ijk.shape[0]
    focus_window = jnp.asarray(arrays.exp_window[arrays.exp_index])
    weight = jnp.ones(n_foci, jnp.float32)
    step_focus, step_flush = (jnp.asarray(a) for a in K.schedule(arrays.exp_index))
    slot, valid = (jnp.asarray(a) for a in arrays.slots())
    n_exp = slot.shape[0]
    use_scatter = K.resolve_strategy(strategy) == "scatter"

    def ale_volume(key):
        ijk = mask_ijk[jax.random.randint(key, (n_foci,), 0, mask_ijk.shape[0])]
        if use_scatter:
            acc = K.accumulate_scatter(
                ijk[slot],
                valid,
                arrays.exp_window,
                jnp.ones(n_exp, jnp.float32),
                log_windows,
                arrays.shape,
                "max",
            )
        else:
            acc = K.accumulate(
                ijk,
                focus_window,
                weight,
                log_windows,
                step_focus,
                step_flush,
                arrays.shape,
                "max",
            )
        return jnp.where(mask, -jnp.expm1(-acc), 0.0)

    return ale_volume


def relocation_null(
    arrays: FociArrays,
    log_windows,
    ss_thresh: float,
    connectivity: int,
    label_backend: str = "auto",
):
    """Per-iteration summary of the ALE Monte Carlo FWE null.

    Parameters
    ----------
    arrays : FociArrays
        Prepared foci and kernels.
    log_windows : jax.Array, shape (n_windows, W, W, W)
        ``-log1p(-K)`` windows (:func:`ale_windows`).
    ss_thresh : float
        Cluster-forming threshold on the ALE statistic (voxels strictly above it).
    connectivity : {6, 18, 26}
        Cluster neighbourhood.
    label_backend : {"auto", "jax", "scipy"}
        See :func:`nimare_jax.ops.label.max_cluster_stats`.

    Returns
    -------
    callable
        ``summary(key) -> {"voxel": max ALE, "size": max cluster size, "mass": max
        cluster mass}``; pure, jit-able.
    """
    ale_volume = relocation_maps(arrays, log_windows)
    thresh = jnp.float32(ss_thresh)

    def summary(key):
        ale = ale_volume(key)
        clusters = max_cluster_stats(
            ale > thresh, ale - thresh, connectivity=connectivity, backend=label_backend
        )
        return {"voxel": ale.max(), "size": clusters.max_size, "mass": clusters.max_mass}

    return summary


def cluster_fwe_maps(stat, mask_img, ss_thresh, null_sizes, null_masses, connectivity):
    """Cluster-size and cluster-mass FWE p-maps of an observed statistic map.

    Voxels outside supra-threshold clusters get the largest p-value (``1 - 1/n``), as in
    NiMARE.

    Parameters
    ----------
    stat : numpy.ndarray, shape (n_voxels,)
        Observed statistic over the mask.
    mask_img : nibabel.Nifti1Image
        Mask.
    ss_thresh : float
        Cluster-forming threshold (voxels strictly above form clusters).
    null_sizes, null_masses : numpy.ndarray, shape (n_iters,)
        Per-iteration maximum cluster size and mass.
    connectivity : {6, 18, 26}
        Cluster neighbourhood.

    Returns
    -------
    p_size, p_mass : numpy.ndarray, shape (n_voxels,)
        Corrected p-values.
    labels : numpy.ndarray, shape (n_voxels,)
        Cluster label of each voxel (0 outside clusters).
    """
    inside = np.asanyarray(mask_img.dataobj) > 0
    vol = np.zeros(inside.shape, np.float64)
    vol[inside] = stat
    active = vol > ss_thresh
    labels, n = label_clusters(active, connectivity)
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    masses = np.bincount(
        labels.ravel(), weights=np.where(active, vol - ss_thresh, 0.0).ravel(), minlength=n + 1
    )
    sizes[0] = masses[0] = 0.0
    p_size = stats.null_to_p(sizes, null_sizes, tail="upper")
    p_mass = stats.null_to_p(masses, null_masses, tail="upper")
    lab = labels[inside]
    return np.asarray(p_size)[lab], np.asarray(p_mass)[lab], lab
