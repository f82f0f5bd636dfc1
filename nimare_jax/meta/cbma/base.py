"""Shared machinery of the coordinate-based estimators (configuration and glue only)."""

from __future__ import annotations

import copy
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from nimare_jax import stats
from nimare_jax.base import NiMAREBase
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbma.kernel import (
    FociArrays,
    KernelTransformer,
    drop_experiments_without_foci,
)
from nimare_jax.meta.fwe import MONTECARLO, fwe_map, fwe_null, fwe_options, map_name
from nimare_jax.nimads import as_dataset  # NiMARE's path of the Studyset coercion
from nimare_jax.ops import kernels as K
from nimare_jax.ops import nulls, relocation
from nimare_jax.ops.label import label_clusters
from nimare_jax.ops.permute import run_permutations
from nimare_jax.ops.validate import FWE_ALPHA, IGNORED_NIMARE_OPTIONS, check_n_iters
from nimare_jax.results import MetaResult
from nimare_jax.spatial import load_mask


def make_kernel(kernel_transformer, default, kwargs) -> KernelTransformer:
    """Return a kernel instance from a class, an instance or None (plus ``kernel__`` kwargs).

    Parameters
    ----------
    kernel_transformer : type, KernelTransformer or None
        Kernel class or instance.
    default : type
        Class used when ``kernel_transformer`` is None.
    kwargs : dict
        Estimator keyword arguments; those starting with ``kernel__`` configure the kernel.

    Returns
    -------
    KernelTransformer
        The kernel (an instance is returned as given; ``kernel__`` arguments with it are
        ignored with a warning, as NiMARE).
    """
    kernel_args = {k[len("kernel__") :]: v for k, v in kwargs.items() if k.startswith("kernel__")}
    unknown = [
        k for k in kwargs if not k.startswith("kernel__") and k not in IGNORED_NIMARE_OPTIONS
    ]
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {unknown}")
    kt = default if kernel_transformer is None else kernel_transformer
    if isinstance(kt, type):
        if not issubclass(kt, KernelTransformer):
            raise TypeError(f"kernel_transformer must be a KernelTransformer, got {kt!r}")
        return kt(**kernel_args)
    if not isinstance(kt, KernelTransformer):
        raise TypeError(f"kernel_transformer must be a KernelTransformer, got {kt!r}")
    if kernel_args:  # as NiMARE: the instance is used as given
        warnings.warn(
            f"kernel__ arguments {sorted(kernel_args)} are ignored: they configure a kernel "
            f"class, and {kt!r} is an instance (set its parameters with set_params)",
            UserWarning,
            stacklevel=3,
        )
    return kt


class CBMAEstimator(NiMAREBase):
    """Base class: ``fit(dataset)`` validates, calls :meth:`_fit`, wraps a :class:`MetaResult`.

    Subclasses implement ``_fit(arrays) -> (maps, null_distributions)``, ``_description()``
    and, for Monte Carlo FWE, ``correct_fwe_montecarlo``.
    """

    _citations: tuple = ()

    @fill_doc
    def fit(self, dataset, drop_invalid: bool = True, ma_maps=None) -> MetaResult:
        """Fit the estimator to a dataset.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Studies with coordinates.
        %(cbma_drop_invalid)s
        ma_maps : None
            NiMARE's precomputed MA maps; nimare_jax computes them inside its statistic,
            so only None is accepted.

        Returns
        -------
        MetaResult
            Maps and null distributions; ``result.estimator`` is this (fitted) estimator.
        """
        if not drop_invalid:
            raise ValueError(f"{type(self).__name__}.fit supports only drop_invalid=True")
        if ma_maps is not None:
            raise ValueError(
                f"{type(self).__name__}.fit computes the MA maps itself; ma_maps must be None"
            )
        dataset = as_dataset(dataset)
        if len(dataset.ids) == 0:
            raise DatasetError("cannot fit an estimator to an empty dataset")
        dataset = drop_experiments_without_foci(dataset)
        self.dataset_ = dataset
        self.masker = dataset.masker
        self.inputs_ = self.kernel_transformer.prepare(dataset)
        maps, nulls = self._fit(self.inputs_)
        return self._result(maps, nulls, dataset.masker)

    def _result(self, maps: dict, nulls: dict, mask) -> MetaResult:
        """Record the fitted nulls and wrap the maps in a :class:`MetaResult`."""
        self.null_distributions_ = dict(nulls)
        return MetaResult(
            maps=maps,
            mask=mask,
            null_distributions=nulls,
            description=self._description(),
            citations=(*self._citations, *self.kernel_transformer.citations),
            # a snapshot, as NiMARE's deep copy: a later fit must not change this result
            estimator=copy.copy(self),
        )

    def _fit(self, arrays):
        raise NotImplementedError

    def _description(self) -> str:
        raise NotImplementedError


class PairwiseCBMAEstimator(CBMAEstimator):
    """Base class of two-group estimators (MKDAChi2, ALESubtraction), as NiMARE's.

    ``fit(dataset1, dataset2)`` leaves out experiments without foci (with a warning), checks
    that each group has at least two experiments and
    that both use the same mask, warns about experiments in both groups, prepares each
    group's foci and kernels (``inputs1_``, ``inputs2_``), calls
    ``_fit(inputs1, inputs2) -> (maps, null_distributions)`` and wraps a
    :class:`MetaResult` on the groups' mask. Subclasses set ``kernel_transformer`` and
    implement ``_fit`` and ``_description``, and name their signed contrast map
    (``_contrast``: ``"group1MinusGroup2"``, ``"association"``).
    """

    _contrast: str = ""

    @fill_doc
    def fit(
        self,
        dataset1,
        dataset2,
        drop_invalid: bool = True,
        inference_map1=None,
        inference_map2=None,
        ma_maps1=None,
        ma_maps2=None,
    ) -> MetaResult:
        """Compare two groups of experiments.

        Parameters
        ----------
        dataset1, dataset2 : nimare_jax.dataset.Dataset
            The groups, on the same mask; at least two experiments each.
        %(cbma_drop_invalid)s
        inference_map1, inference_map2 : array of shape (n_voxels,), image or None
            Directional inference masks (NiMARE 0.22): a positive contrast (group 1 above
            group 2) is kept only where ``inference_map1 > 0`` and a negative one only where
            ``inference_map2 > 0``; elsewhere the contrast's z and statistic are 0, its p 1
            and its logp 0. Applied to the fitted contrast maps; the permutation null
            itself is that of the whole mask.
        ma_maps1, ma_maps2 : None
            NiMARE's precomputed MA maps; nimare_jax computes them on the fly, so only None
            is accepted.

        Returns
        -------
        MetaResult
            The estimator's maps and null distributions; ``result.estimator`` is this
            (fitted) estimator.
        """
        name = type(self).__name__
        if not drop_invalid:
            raise ValueError(f"{name}.fit supports only drop_invalid=True")
        if ma_maps1 is not None or ma_maps2 is not None:
            raise ValueError(
                f"{name}.fit computes the MA maps itself; ma_maps1/ma_maps2 must be None"
            )
        dataset1 = drop_experiments_without_foci(as_dataset(dataset1))
        dataset2 = drop_experiments_without_foci(as_dataset(dataset2))
        for label, dataset in (("dataset1", dataset1), ("dataset2", dataset2)):
            if len(dataset.ids) < 2:
                raise DatasetError(
                    f"{name} needs at least two experiments with foci in each group; "
                    f"{label} has {len(dataset.ids)}"
                )
        m1, m2 = load_mask(dataset1.masker), load_mask(dataset2.masker)
        if m1.shape[:3] != m2.shape[:3] or not np.allclose(m1.affine, m2.affine):
            raise DatasetError("dataset1 and dataset2 must use the same mask (shape and affine)")
        if not np.array_equal(np.asanyarray(m1.dataobj) > 0, np.asanyarray(m2.dataobj) > 0):
            raise DatasetError("dataset1 and dataset2 must use the same mask")
        shared = sorted(set(dataset1.ids) & set(dataset2.ids))
        if shared:
            warnings.warn(
                f"{len(shared)} experiments are in both groups (e.g. {shared[0]!r}); the "
                f"groups of {name} are meant to be disjoint",
                UserWarning,
                stacklevel=2,
            )
        self.dataset1_, self.dataset2_ = dataset1, dataset2
        self.masker = dataset1.masker
        self.inputs1_ = self.kernel_transformer.prepare(dataset1)
        self.inputs2_ = self.kernel_transformer.prepare(dataset2)
        self.inputs_ = {  # NiMARE's view of the two groups
            f"{key}{g}": arrays[key]
            for g, arrays in ((1, self.inputs1_), (2, self.inputs2_))
            for key in ("id", "coordinates")
        }
        maps, nulls = self._fit(self.inputs1_, self.inputs2_)
        gates = [_inference_mask(m, m1, n) for m, n in ((inference_map1, 1), (inference_map2, 2))]
        if any(g is not None for g in gates):
            maps = self._gate_contrast(maps, *gates)
        return self._result(maps, nulls, m1)

    def _gate_contrast(self, maps: dict, gate1, gate2) -> dict:
        """Zero the contrast where its direction lacks support in the inference masks."""
        z = np.asarray(maps[f"z_desc-{self._contrast}"])
        keep = np.zeros(z.shape, bool)
        if gate1 is not None:
            keep |= (z > 0) & gate1
        if gate2 is not None:
            keep |= (z < 0) & gate2
        out = dict(maps)
        for name, value in maps.items():
            kind, _, rest = name.partition("_")
            if rest == f"desc-{self._contrast}":
                out[name] = np.where(keep, np.asarray(value), 1.0 if kind == "p" else 0.0)
        return out

    def _fit(self, arrays1: FociArrays, arrays2: FociArrays):
        raise NotImplementedError

    def _pooled_ma(self, windows, dtype) -> jax.Array:
        """MA maps of both groups' experiments over the mask, group 1 first.

        Parameters
        ----------
        windows : callable
            ``windows(arrays) -> kernels`` of a group (e.g. its windows, or ``> 0`` of
            them for binary maps).
        dtype : dtype
            Of the maps (float64 needs ``jax.enable_x64``).

        Returns
        -------
        jax.Array, shape (n_exp1 + n_exp2, n_voxels)
            One row per experiment.
        """
        rows = [
            arrays.ma_values(jnp.asarray(windows(arrays), dtype))
            for arrays in (self.inputs1_, self.inputs2_)
        ]
        return jnp.concatenate(rows, axis=0)


def _inference_mask(values, mask_img, group: int):
    """Boolean (n_voxels,) of ``values > 0`` from an array over the mask or an image."""
    if values is None:
        return None
    in_mask = np.asanyarray(mask_img.dataobj) > 0
    if hasattr(values, "affine"):  # an image on the mask's grid
        data = np.asanyarray(values.dataobj)
        if data.shape[:3] != in_mask.shape:
            raise ValueError(
                f"inference_map{group} has shape {data.shape}, the mask {in_mask.shape}"
            )
        values = data.reshape(in_mask.shape)[in_mask]
    values = np.asarray(values)
    if values.shape != (int(in_mask.sum()),):
        raise ValueError(
            f"inference_map{group} must hold one value per mask voxel ({int(in_mask.sum())}), "
            f"got shape {values.shape}"
        )
    return values > 0


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


#: Experiments summarised per call of the statistic pass: bounds the MA histograms (and,
#: for whole-brain kernels, MA maps) held at once, whatever the number of experiments.
SUMMARY_CHUNK = 64

#: Share of a chunk's foci whose experiments' MA histograms the device counts; the host
#: counts the others meanwhile (it counts a focus about half as fast as the device, which
#: also sums the statistic of every focus): measured on laird and 1,000 simulated
#: experiments, ``benchmarks/README.md``.
DEVICE_COUNT_SHARE = 0.5


def summarize(
    arrays: FociArrays,
    exp_weight,
    windows,
    union: str,
    n_bins: int,
    inv_step,
    on_chunk=None,
):
    """Return the combined statistic of the observed foci, one chunk of experiments at a time.

    Window kernels: :data:`SUMMARY_CHUNK` experiments per call of
    :func:`nimare_jax.ops.kernels.summarize_experiments` on the device, each call continuing
    the previous one's statistic, so the result does not depend on the chunking (at most
    three programs: the first chunk, which starts from zeros without an accumulator, the
    full chunks after it and the last one). Every call is dispatched at once; the device
    counts the MA histograms of the first experiments of each chunk (about
    :data:`DEVICE_COUNT_SHARE` of its foci) while the host counts the others
    (:func:`nimare_jax.ops.kernels.experiment_histograms`), then each chunk's histograms go
    to ``on_chunk``. Whole-brain kernels: ``arrays.ma_fn`` and
    :func:`nimare_jax.ops.kernels.summarize_values` (two programs: full and last), the
    next chunk dispatched before the host reads the last. Memory is bounded by the chunk
    size, not by the number of experiments. Call under ``jax.enable_x64(True)`` for a
    float64 accumulator.

    Parameters
    ----------
    arrays : FociArrays
        Prepared foci and kernels.
    exp_weight : array-like, shape (n_exp,)
        Weight of each experiment.
    windows : array, shape (n_windows, W, W, W)
        Kernels (unused for whole-brain kernels).
    union : {"probabilistic", "sum"}
        See :func:`nimare_jax.ops.kernels.summarize_experiments`.
    n_bins : int
        Histogram bins.
    inv_step : float
        Inverse bin width.
    on_chunk : callable, optional
        ``on_chunk(hist, ma_max)`` with numpy arrays ``hist`` (n_chunk, n_bins) int and
        ``ma_max`` (n_chunk,), called for consecutive chunks in experiment order. Without
        it no histogram is counted.

    Returns
    -------
    jax.Array, shape (n_voxels,)
        The statistic, as :func:`nimare_jax.ops.kernels.summarize_experiments`.
    """
    ijk, valid = arrays.padded()
    exp_weight = np.asarray(exp_weight)
    n_exp = ijk.shape[0]
    parts = [slice(lo, lo + SUMMARY_CHUNK) for lo in range(0, n_exp, SUMMARY_CHUNK)]
    if arrays.ma_fn is not None:
        acc = jnp.zeros(arrays.mask_index.shape[0], jnp.result_type(float))
        pending = None
        for part in parts:
            ma = arrays.ma_fn(ijk[part], valid[part])
            acc, *upcoming = K.summarize_values(acc, ma, exp_weight[part], union, n_bins, inv_step)
            if on_chunk is not None and pending is not None:
                on_chunk(*(np.asarray(x) for x in pending))
            pending = upcoming
        if on_chunk is not None:
            on_chunk(*(np.asarray(x) for x in pending))
        return acc
    windows = np.asarray(windows, np.float32)  # cast here: no device program for it
    # windows are placed in the mask's bounding box: a smaller volume, the same values
    origin, box, box_index = K.mask_box(arrays.mask_index, arrays.shape)
    box_ijk = ijk - origin
    inside = bool(np.all((box_ijk[valid] >= 0) & (box_ijk[valid] < box)))  # less padding
    frame = K.mask_frame(box_index, box, K.window_pad(windows.shape[-1], inside))
    counting = on_chunk is not None
    tables = K.window_levels(windows) if counting and arrays.combine == "max" else None
    n_device = [0] * len(parts)  # experiments of each chunk counted on the device
    for n, part in enumerate(parts if counting else ()):
        # about DEVICE_COUNT_SHARE of the chunk's foci; every full chunk takes the first
        # chunk's number (a static argument: one program serves them all)
        foci = np.cumsum(valid[part].sum(axis=1))
        share = int(np.searchsorted(foci, DEVICE_COUNT_SHARE * foci[-1]))
        n_device[n] = n_device[0] if n and foci.size == SUMMARY_CHUNK else share
    acc, chunks = None, []  # the first chunk starts from zeros, without a scatter
    for part, n_counted in zip(parts, n_device, strict=True):  # the device runs them in turn
        acc, *counts = K.summarize_experiments(
            acc,
            box_ijk[part],
            valid[part],
            arrays.exp_window[part],
            exp_weight[part],
            windows,
            box_index,
            box,
            arrays.combine,
            union,
            n_bins,
            inv_step,
            n_counted,
            tables,
            inside,
            frame,
        )
        chunks.append((part, n_counted, counts))
    for part, n_counted, counts in chunks if counting else ():
        rest = slice(part.start + n_counted, part.stop)  # counted here, meanwhile
        host = K.experiment_histograms(
            box_ijk[rest],
            valid[rest],
            arrays.exp_window[rest],
            windows,
            frame,
            box,
            arrays.combine,
            n_bins,
            inv_step,
            inside,
        )
        on_chunk(*(np.concatenate([np.asarray(d), h]) for d, h in zip(counts, host, strict=True)))
    return acc


def relocation_volume(arrays: FociArrays, windows, exp_weight, union: str, strategy="auto"):
    """Statistic volume of one random relocation of all foci (uniform over the mask voxels).

    Parameters
    ----------
    arrays : FociArrays
        Prepared foci and kernels; experiments and kernels are kept, positions redrawn.
    windows : array, shape (n_windows, W, W, W)
        Kernels as accumulated: ``-log1p(-K)`` for ALE, the spheres for densities.
    exp_weight : array-like, shape (n_exp,)
        Weight of each experiment.
    union : {"probabilistic", "sum"}
        ``"probabilistic"`` returns ``-expm1(-acc)`` (ALE), ``"sum"`` the weighted sum.
    strategy : {"auto", "window", "scatter"}
        How windows are applied (:func:`nimare_jax.ops.kernels.resolve_strategy`).

    Returns
    -------
    volume : callable
        Pure ``volume(key, operands) -> (X, Y, Z)`` float32 statistic, zero outside the
        mask (:func:`nimare_jax.ops.relocation.volume_fn`; the same function for the same
        configuration).
    operands : nimare_jax.ops.relocation.RelocationOperands
        Its arrays.
    """
    mask = np.zeros(int(np.prod(arrays.shape)), bool)
    mask[arrays.mask_index] = True
    mask = mask.reshape(arrays.shape)
    exp_weight = np.asarray(exp_weight, np.float32)
    slot, valid = arrays.slots()
    step_focus, step_flush = K.schedule(arrays.exp_index)
    operands = relocation.RelocationOperands(
        mask=jnp.asarray(mask),
        mask_ijk=jnp.asarray(np.argwhere(mask), jnp.int32),
        mask_index=jnp.asarray(arrays.mask_index),
        windows=jnp.asarray(windows, jnp.float32),
        focus_window=jnp.asarray(arrays.exp_window[arrays.exp_index]),
        focus_weight=jnp.asarray(exp_weight[arrays.exp_index]),
        step_focus=jnp.asarray(step_focus),
        step_flush=jnp.asarray(step_flush),
        slot=jnp.asarray(slot),
        valid=jnp.asarray(valid),
        exp_window=jnp.asarray(arrays.exp_window, jnp.int32),
        exp_weight=jnp.asarray(exp_weight),
    )
    volume = relocation.volume_fn(
        tuple(arrays.shape), arrays.combine, union, K.resolve_strategy(strategy), arrays.ma_fn
    )
    return volume, operands


@fill_doc
def relocation_null(
    volume,
    ss_thresh: float,
    connectivity: int = 6,
    label_backend: str = "auto",
    vfwe_only: bool = False,
):
    """Per-iteration summary of a Monte Carlo FWE null: maximum and largest clusters.

    Parameters
    ----------
    volume : tuple
        ``(volume, operands)`` of one null draw (:func:`relocation_volume`).
    ss_thresh : float
        Cluster-forming threshold on the statistic (voxels strictly above it).
    %(cluster_options)s
    vfwe_only : bool
        Record only the maximum.

    Returns
    -------
    summary : callable or nimare_jax.ops.permute.BatchedSummary
        Pure ``summary(key, *operands) -> {"voxel": max, "size": max cluster size,
        "mass": max cluster mass}`` (:func:`nimare_jax.ops.relocation.max_summary`), for
        :func:`nimare_jax.ops.permute.run_permutations`.
    operands : tuple
        Its arguments after the key, for ``run_permutations(..., operands=operands)``.
    """
    fn, operands = volume
    operands = relocation.crop_to_mask(operands)
    summary = relocation.max_summary(
        fn, operands.mask.shape, connectivity, label_backend, vfwe_only
    )
    return summary, (operands, np.float32(ss_thresh))


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


class RelocationEstimator(CBMAEstimator):
    """CBMA estimator whose nulls relocate every focus uniformly within the mask.

    Subclasses define :meth:`_relocation` (the statistic volume of one relocation, given
    the experiments' weights), set the fitted ``weights_`` (one per experiment) in
    ``_fit``, and define the class attributes ``_name``, ``_stat_label`` and
    ``_fwe_citations`` used in descriptions. Provides the Monte Carlo voxel-wise null and
    :meth:`correct_fwe_montecarlo`.
    """

    _name = ""
    _stat_label = "statistic"
    _fwe_citations: tuple = ()

    #: Iterations per device per dispatch of the FWE null (``batch_size=None``).
    _fwe_batch_size = 16

    def _init(self, null_method, n_iters, n_cores, random_state):
        """Check and set the options every relocation estimator takes."""
        if null_method not in ("approximate", "montecarlo"):
            raise ValueError(
                f"null_method must be 'approximate' or 'montecarlo', not {null_method!r}"
            )
        self.null_method = null_method
        self.n_iters = check_n_iters(n_iters)
        self.n_cores = n_cores
        self.random_state = random_state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.kernel_transformer!r}, null_method={self.null_method!r})"
        )

    def _relocation(self, arrays: FociArrays, exp_weight: np.ndarray):
        """Return ``relocation_volume(...)`` of one relocation with these experiment weights."""
        raise NotImplementedError

    def _montecarlo_null(self, arrays: FociArrays, bins: np.ndarray, exp_weight) -> dict:
        """Voxel-wise null from ``n_iters`` relocations of all foci (histograms summed)."""
        _, key = seed_to_key(self.random_state)
        volume, operands = self._relocation(arrays, exp_weight)
        inv_step = np.float32(1.0 / (bins[1] - bins[0]))
        summary = relocation.histogram_summary(volume, bins.shape[0])
        out = run_permutations(
            summary,
            jax.random.fold_in(key, 0),
            self.n_iters,
            operands=(operands, inv_step),
            n_devices=self.n_cores,
            desc=f"{self._name} Monte Carlo null",
            vectorize="map",
            reduce="sum",
        )
        return {
            map_name("histweights", corr="none", method=MONTECARLO): (
                out.samples["all"].astype(np.float64)
            ),
            fwe_null("histweights"): out.samples["max"].astype(np.float64),
        }

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
        """Monte Carlo FWE correction: relocate all foci uniformly in the mask, record maxima.

        Parameters and returns as :meth:`nimare_jax.meta.fwe.MonteCarloFWE.correct_fwe_montecarlo`
        (``n_iters=None``: the estimator's ``n_iters``). The cluster-forming threshold is
        read from the fit's voxel-wise null. With ``vfwe_only=True`` and
        ``null_method="montecarlo"`` the voxel-level maps come from the fit's histogram of
        maxima, without new iterations. Maps: ``{logp,z}_level-voxel_corr-FWE_method-
        montecarlo`` and, with clusters, ``{logp,z}_desc-{size,mass}_level-cluster_...``.

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
            default_n_iters=self.n_iters,
            default_batch_size=self._fwe_batch_size,
        )
        stat = np.asarray(result.maps["stat"], np.float64)
        bins = self.null_distributions_["histogram_bins"]
        cites = self._fwe_citations
        refs = "; ".join(cites)
        maps, nulls_out = {}, {}
        if opts.vfwe_only and self.null_method == MONTECARLO:
            check_n_iters(self.n_iters, FWE_ALPHA)
            hist_max = self.null_distributions_[fwe_null("histweights")]
            p_voxel = stats.nullhist_to_p(stat, hist_max, bins)
            maps[fwe_map("logp")] = -np.log10(p_voxel)
            maps[fwe_map("z")] = stats.p_to_z(p_voxel, tail="one")
            text = (
                "Family-wise error was controlled at the voxel level with the distribution of "
                f"the maximum {self._stat_label} over the {self.n_iters} relocations of the "
                f"Monte Carlo null [{refs}]."
            )
            return maps, nulls_out, text, cites
        n_iters = opts.n_iters
        if self.null_method == MONTECARLO and not opts.vfwe_only:  # pooled over voxels
            n_voxels = self.inputs_.mask_index.shape[0]
            what = "the cluster-forming threshold (voxel_thresh)"
            check_n_iters(self.n_iters, opts.voxel_thresh, per_iter=n_voxels, what=what)
        weights = self.null_distributions_[
            map_name("histweights", corr="none", method=self.null_method)
        ]
        ss_thresh = nulls.histogram_to_threshold(weights, bins, opts.voxel_thresh)
        seed, key = seed_to_key(self.random_state)
        summary, operands = relocation_null(
            self._relocation(self.inputs_, self.weights_),
            ss_thresh,
            opts.connectivity,
            opts.label_backend,
            opts.vfwe_only,
        )
        stopper = opts.stopper("voxel")
        out = run_permutations(
            summary,
            jax.random.fold_in(key, 1),
            n_iters,
            batch_size=opts.batch_size,
            n_devices=opts.n_cores,
            progress=opts.progress,
            desc=f"{self._name} FWE permutations",
            stop_fn=stopper,
            vectorize="map",
            operands=operands,
        )
        vmax = np.asarray(out.samples["voxel"], np.float64)
        used = vmax.shape[0]
        p_voxel = stats.null_to_p(stat, vmax, tail="upper")
        maps[fwe_map("logp")] = -np.log10(p_voxel)
        maps[fwe_map("z")] = stats.p_to_z(p_voxel, tail="one")
        nulls_out[fwe_null()] = vmax
        if not opts.vfwe_only:
            smax = np.asarray(out.samples["size"], np.float64)
            mmax = np.asarray(out.samples["mass"], np.float64)
            p_size, p_mass, _ = cluster_fwe_maps(
                stat, result.mask, ss_thresh, smax, mmax, opts.connectivity
            )
            for desc, p, null in (("size", p_size, smax), ("mass", p_mass, mmax)):
                maps[fwe_map("logp", "cluster", desc)] = -np.log10(p)
                maps[fwe_map("z", "cluster", desc)] = stats.p_to_z(p, tail="one")
                nulls_out[fwe_null("values", "cluster", desc)] = null
        stopped = ""
        if out.stopped_early:
            stopped = (
                f" Iterations stopped early after {used} of {n_iters}: the Monte Carlo "
                f"standard error of the 95th percentile of the maximum {self._stat_label} was "
                f"{stopper.se:.2g} (relative tolerance {opts.tolerance}) [MaritzJarrett1978]."
            )
            cites = cites + ("MaritzJarrett1978",)
        clusters = (
            " recorded"
            if opts.vfwe_only
            else ", largest cluster size and largest cluster mass recorded. Clusters were "
            f"formed at an uncorrected p < {opts.voxel_thresh} ({self._stat_label} > "
            f"{ss_thresh:.5g}) with {opts.connectivity}-neighbour connectivity"
        )
        text = (
            f"Family-wise error was controlled with a Monte Carlo procedure [{refs}]: in each "
            f"of {used} iterations (seed {seed}) every focus was relocated to a random voxel "
            f"of the mask, the {self._stat_label} map recomputed, and its maximum"
            + clusters
            + "."
            + stopped
        )
        return maps, nulls_out, text, cites
