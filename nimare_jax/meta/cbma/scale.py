"""Specific coactivation likelihood estimation (SCALE).

Langner et al. (2014) NeuroImage 98:8.

SCALE asks whether a voxel's ALE value is higher than expected given where foci usually
fall. Its null keeps every experiment and its kernel but redraws each focus's position
from a baseline pool of coordinates (e.g. all foci of a large database), so voxels that
are active in many studies anyway need more convergence to reach significance.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nimare_jax import stats
from nimare_jax.base import NiMAREBase
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError, InputFileError, excerpt
from nimare_jax.meta.cbma.ale import ALE, ale_windows
from nimare_jax.meta.cbma.base import make_kernel, seed_to_key
from nimare_jax.meta.cbma.kernel import ALEKernel, FociArrays
from nimare_jax.meta.fwe import fwe_map, fwe_null, fwe_options
from nimare_jax.nimads import as_dataset  # NiMARE's path of the Studyset coercion
from nimare_jax.ops import baseline
from nimare_jax.ops import kernels as K
from nimare_jax.ops.permute import BoundSummary, run_permutations
from nimare_jax.ops.stats import clip_null_p
from nimare_jax.ops.validate import check_n_iters
from nimare_jax.parsing import parse_number, read_lines
from nimare_jax.results import MetaResult
from nimare_jax.spatial import (
    MAX_COORDINATE_MM,
    load_mask,
    mm2vox,
    outside_volume,
    volume_extent,
)

__all__ = ["SCALE", "baseline_null", "baseline_operands", "read_baseline"]


def read_baseline(path) -> np.ndarray:
    """Read a baseline pool of coordinates: one ``x y z`` row (mm) per line.

    Fields are separated by white space or commas; blank lines and lines starting with
    ``#`` or ``//`` are skipped. Decoding, line breaks and numbers follow
    :mod:`nimare_jax.parsing`, as for Sleuth files.

    Parameters
    ----------
    path : str or os.PathLike
        Text file.

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        Coordinates.

    Raises
    ------
    InputFileError
        If the file is missing or unreadable, a row does not hold exactly three finite
        numbers, or the file has no rows.
    """
    rows = []
    for number, line in enumerate(read_lines(path), start=1):
        text = line.strip()
        if not text or text.startswith(("#", "//")):
            continue
        fields = text.replace(",", " ").split()
        try:
            values = [parse_number(f) for f in fields]
        except ValueError:
            values = []
        if len(fields) != 3 or len(values) != 3 or not np.all(np.isfinite(values)):
            raise InputFileError(
                f"baseline file {path}, line {number}: expected three numbers (x y z), "
                f"got {excerpt(text)}"
            )
        rows.append(values)
    if not rows:
        raise InputFileError(f"baseline file {path} has no coordinates")
    return np.asarray(rows, np.float64)


class BaselineNotFoundError(InputFileError, TypeError):
    """SCALE's ``xyz`` is a string naming no file.

    An :class:`~nimare_jax.exceptions.InputFileError`, and the ``TypeError`` NiMARE (which
    takes only arrays) raises for a string.
    """


def _check_xyz(xyz) -> np.ndarray:
    if isinstance(xyz, str | Path):
        if not Path(xyz).is_file():
            raise BaselineNotFoundError(
                f"baseline file {excerpt(str(xyz))}: file not found (xyz must be an (n, 3) "
                "array of mm coordinates or the path of a baseline file)"
            )
        arr, what, error = read_baseline(xyz), f"baseline file {xyz}", InputFileError
    else:
        arr, what, error = np.asarray(xyz, dtype=float), "xyz", ValueError
        if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
            raise ValueError(f"xyz must be an (n, 3) array of coordinates, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("xyz must hold finite coordinates")
    absurd = np.flatnonzero((np.abs(arr) > MAX_COORDINATE_MM).any(axis=1))
    if absurd.size:
        x, y, z = arr[absurd[0]]
        raise error(
            f"{what}: coordinate {absurd[0] + 1} ({x:g}, {y:g}, {z:g}) lies more than "
            f"{MAX_COORDINATE_MM:g} mm from the origin; check the columns"
        )
    return arr


def baseline_operands(arrays: FociArrays, log_windows, pool_ijk):
    """Arrays of the SCALE null and of the observed map.

    Parameters
    ----------
    arrays : FociArrays
        Prepared foci and kernels (experiments and kernels are kept, positions replaced).
    log_windows : jax.Array, shape (n_windows, W, W, W)
        ``-log1p(-K)`` windows.
    pool_ijk : array, shape (n_pool, 3), int
        Voxel indices of the baseline coordinates (inside the volume or not).

    Returns
    -------
    nimare_jax.ops.baseline.BaselineOperands
        The arrays, for :func:`nimare_jax.ops.baseline.log_union_fn` and
        :func:`nimare_jax.ops.baseline.baseline_summary`.
    """
    slot, valid = arrays.slots()
    step_focus, step_flush = K.schedule(arrays.exp_index)
    return baseline.BaselineOperands(
        pool_ijk=jnp.asarray(pool_ijk, jnp.int32),
        mask_index=jnp.asarray(arrays.mask_index),
        windows=jnp.asarray(log_windows),
        focus_window=jnp.asarray(arrays.exp_window[arrays.exp_index]),
        focus_weight=jnp.ones(arrays.ijk.shape[0], jnp.float32),
        step_focus=jnp.asarray(step_focus),
        step_flush=jnp.asarray(step_flush),
        slot=jnp.asarray(slot),
        valid=jnp.asarray(valid),
    )


def baseline_null(arrays: FociArrays, log_windows, pool_ijk, observed_log, outputs=None):
    """Per-iteration summary of the SCALE null: foci redrawn from a baseline pool.

    Parameters
    ----------
    arrays : FociArrays
        Prepared foci and kernels; experiments and kernels are kept, positions redrawn.
    log_windows : jax.Array, shape (n_windows, W, W, W)
        ``-log1p(-K)`` windows.
    pool_ijk : array, shape (n_pool, 3), int
        Voxel indices of the baseline coordinates (inside the volume or not).
    observed_log : jax.Array, shape (n_voxels,)
        The observed ``-log(1 - ALE)`` over the mask, computed by the same arithmetic
        (:func:`nimare_jax.ops.baseline.log_union_fn`), so identical configurations tie
        exactly.
    outputs : tuple of str or None
        Return only these summaries (None: both, ``("exceed", "voxel")``).

    Returns
    -------
    nimare_jax.ops.permute.BoundSummary
        Pure ``summary(key) -> {"exceed": bool (n_voxels,), "voxel": max ALE}``
        (:func:`nimare_jax.ops.baseline.baseline_summary`). Its ``summary`` (cached per
        configuration) and ``operands`` (the arrays) go to
        :func:`nimare_jax.ops.permute.run_permutations` separately, so a second fit of the
        same configuration compiles nothing.
    """
    in_volume = not outside_volume(pool_ijk, arrays.shape).any()
    log_union = baseline.log_union_fn(tuple(arrays.shape), bool(in_volume), arrays.ma_fn)
    summary = baseline.baseline_summary(log_union, tuple(outputs or baseline.OUTPUTS))
    operands = baseline_operands(arrays, log_windows, pool_ijk)
    return BoundSummary(summary, (operands, observed_log))


@fill_doc
class SCALE(NiMAREBase):
    """Specific coactivation likelihood estimation (Langner et al. 2014).

    Parameters
    ----------
    xyz : array-like, shape (n, 3), or str / os.PathLike
        Baseline pool of MNI coordinates in mm, or a text file of ``x y z`` rows
        (:func:`read_baseline`). Coordinates outside the image volume are kept, with a
        warning, as in NiMARE; one beyond 500 mm of the origin is refused.
    n_iters : int
        Null iterations (NiMARE's default 5000).
    %(n_cores)s
    %(ale_kernel)s
    random_state : int or None
        Seed of the redraws.
    %(batch_progress)s
    %(kernel_kwargs)s

    Notes
    -----
    Maps: ``stat`` (ALE), ``p`` (fraction of redraws whose ALE at the voxel is at least the
    observed one, bounded to ``[1/n, 1 - 1/n]`` as NiMARE: p = 1 for one redraw,
    :func:`~nimare_jax.ops.stats.clip_null_p`), ``z`` (one-tailed) and
    ``logp``. NiMARE returns no ``p`` map; nimare_jax adds it so FDR and Bonferroni
    correction work. Voxel-level FWE (:class:`~nimare_jax.correct.FWECorrector` with
    ``method="montecarlo"``) compares the ALE map with the maximum ALE of each redraw;
    cluster-level FWE is not defined for SCALE.
    """

    _citations = ("Langner2014", "Eickhoff2009", "Turkeltaub2012")

    def __init__(
        self,
        xyz,
        n_iters: int = 5000,
        n_cores: int = 1,
        kernel_transformer=ALEKernel,
        random_state: int | None = None,
        batch_size: int = 8,
        progress: bool = True,
        **kwargs,
    ):
        self.xyz = _check_xyz(xyz)
        self.n_iters = check_n_iters(n_iters)
        self.n_cores = n_cores
        self.kernel_transformer = make_kernel(kernel_transformer, ALEKernel, kwargs)
        if self.kernel_transformer.ma_kind != "probability":
            raise TypeError(
                "SCALE needs a kernel whose MA values are probabilities (ALEKernel, or "
                f"Peaks2MapsKernel(binary=False)), got {self.kernel_transformer!r}"
            )
        self.random_state = random_state
        self.batch_size = int(batch_size)
        self.progress = progress

    def __repr__(self) -> str:
        return (
            f"SCALE({self.kernel_transformer!r}, n_pool={len(self.xyz)}, n_iters={self.n_iters})"
        )

    def fit(self, dataset) -> MetaResult:
        """Run SCALE on a dataset.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Studies with coordinates.

        Returns
        -------
        MetaResult
            ``stat``, ``p``, ``z`` and ``logp`` maps; null distribution
            ``values_level-voxel_corr-fwe_method-montecarlo`` (maximum ALE per redraw).
        """
        dataset = as_dataset(dataset)
        if len(dataset.ids) == 0:
            raise DatasetError("cannot fit SCALE to an empty dataset")
        self.dataset_ = dataset
        ale = ALE(kernel_transformer=self.kernel_transformer)
        stat = np.asarray(ale.fit(dataset).maps["stat"])
        self.inputs_ = ale.inputs_
        self.masker = dataset.masker
        self.pool_ijk_ = self._pool_ijk(load_mask(dataset.masker))
        counts, vmax = self._run(self.n_iters, self.n_cores, self.progress)
        n = self.n_iters
        with jax.enable_x64(True):
            p = np.asarray(clip_null_p(counts / n, n))
        maps = {"stat": stat, "p": p, "z": stats.p_to_z(p, tail="one"), "logp": -np.log10(p)}
        nulls = {fwe_null(): vmax}
        self.null_distributions_ = dict(nulls)
        return MetaResult(
            maps=maps,
            mask=dataset.masker,
            null_distributions=nulls,
            description=self._description(),
            citations=(*self._citations, *self.kernel_transformer.citations),
            # a snapshot, as NiMARE's deep copy: a later fit must not change this result
            estimator=copy.copy(self),
        )

    def _pool_ijk(self, masker) -> np.ndarray:
        ijk = mm2vox(self.xyz, masker.affine)
        outside = outside_volume(ijk, masker.shape)
        if outside.any():
            x, y, z = self.xyz[np.flatnonzero(outside)[0]]
            warnings.warn(
                f"{int(outside.sum())} baseline coordinates lie outside the image volume "
                f"({volume_extent(masker.affine, masker.shape)}), e.g. ({x:g}, {y:g}, {z:g}); "
                "they are kept, and a focus drawn there contributes the part of its kernel "
                "inside the volume (as in NiMARE)",
                UserWarning,
                stacklevel=3,
            )
        return np.asarray(ijk, np.int32)

    def _run(self, n_iters, n_cores, progress, counts=True, batch_size=None, stop_fn=None):
        """Redraw the foci ``n_iters`` times; return ``(counts or None, maxima)``.

        One pass gives both the voxel-wise exceedance counts (summed over iterations, if
        ``counts``) and the per-iteration maxima of the same draws.
        """
        _, key = seed_to_key(self.random_state)
        arrays = self.inputs_
        log_windows = ale_windows(arrays)
        observed = baseline.log_union_fn(tuple(arrays.shape), False, arrays.ma_fn)(
            jnp.asarray(arrays.ijk), baseline_operands(arrays, log_windows, self.pool_ijk_)
        )
        reduce = {"exceed": "sum", "voxel": "keep"} if counts else {"voxel": "keep"}
        null = baseline_null(arrays, log_windows, self.pool_ijk_, observed, tuple(sorted(reduce)))
        out = run_permutations(
            null.summary,
            jax.random.fold_in(key, 4),  # the fit's and the FWE correction's draws agree
            n_iters,
            batch_size=self.batch_size if batch_size is None else batch_size,
            n_devices=n_cores,
            progress=progress,
            desc="SCALE null",
            vectorize="map",
            reduce=reduce,
            operands=null.operands,
            stop_fn=stop_fn,
        ).samples
        exceed = np.asarray(out["exceed"], np.float64) if counts else None
        return exceed, np.asarray(out["voxel"], np.float64)

    def _description(self) -> str:
        a = self.inputs_
        return (
            "A specific coactivation likelihood estimation (SCALE) meta-analysis "
            f"[Langner2014] was performed with nimare_jax on {len(a.ids)} experiments "
            f"({a.ijk.shape[0]} foci). {self.kernel_transformer.description()} The modelled "
            "activation maps were combined into an activation likelihood estimation (ALE) "
            "map. Each voxel's ALE "
            f"value was compared with its values in {self.n_iters} null data sets in which "
            "every focus was redrawn at random from a baseline pool of "
            f"{len(self.xyz)} coordinates, keeping experiments and kernels."
        )

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
        """Voxel-level FWE: compare the ALE map with the maximum ALE of each null redraw.

        Parameters and returns as :meth:`nimare_jax.meta.fwe.MonteCarloFWE.correct_fwe_montecarlo`
        (``n_iters=None``: the estimator's ``n_iters``; ``batch_size=None`` and
        ``progress=None``: the estimator's settings). Voxel level only: ``vfwe_only``
        defaults to True and False is an error; ``voxel_thresh``, ``connectivity`` and
        ``label_backend`` have no use. Reuses the fit's null when ``n_iters`` matches and
        no ``tolerance`` is given (the draws are the same). Maps:
        ``{p,z,logp}_level-voxel_corr-FWE_method-montecarlo``.

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
            default_batch_size=self.batch_size,
            cluster_level=False,
        )
        if opts.n_iters == self.n_iters and tolerance is None:
            vmax = self.null_distributions_[fwe_null()]
        else:
            _, vmax = self._run(
                opts.n_iters,
                opts.n_cores,
                opts.progress,
                counts=False,
                batch_size=opts.batch_size,
                stop_fn=opts.stopper("voxel"),
            )
        stat = np.asarray(result.maps["stat"], np.float64)
        p = stats.null_to_p(stat, vmax, tail="upper")
        maps = {
            fwe_map("p"): p,
            fwe_map("z"): stats.p_to_z(p, tail="one"),
            fwe_map("logp"): -np.log10(p),
        }
        text = (
            "Family-wise error was controlled at the voxel level by comparing each voxel's ALE "
            f"value with the maximum ALE of each of {vmax.shape[0]} null data sets drawn from "
            "the baseline pool [Langner2014]."
        )
        return maps, {fwe_null(): vmax}, text, ("Langner2014",)
