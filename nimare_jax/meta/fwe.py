"""Monte Carlo FWE correction: NiMARE's map and null names, and the protocol estimators follow.

Names
-----
NiMARE names a map ``{kind}_desc-{desc}_level-{level}_corr-{corr}_method-{method}``
(absent parts left out), e.g. ``z_desc-size_level-cluster_corr-FWE_method-montecarlo``.
Corrected maps say ``corr-FWE``, null distributions ``corr-fwe``. :func:`map_name` builds
any such name; :func:`fwe_map` and :func:`fwe_null` the Monte Carlo ones. Every estimator,
corrector and report builds names through them.

Protocol
--------
Every estimator supporting ``FWECorrector(method="montecarlo")`` has a
``correct_fwe_montecarlo`` with the signature of :meth:`MonteCarloFWE.correct_fwe_montecarlo`
(same parameters, same defaults; ``tests/test_correct.py`` compares them), and reads its
arguments with :func:`fwe_options`. :class:`~nimare_jax.correct.FWECorrector` passes its
arguments through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nimare_jax.docstrings import fill_doc
from nimare_jax.ops.permute import QuantileStop
from nimare_jax.ops.validate import FWE_ALPHA, check_n_iters

__all__ = [
    "MONTECARLO",
    "FWEOptions",
    "MonteCarloFWE",
    "correction_suffix",
    "fwe_map",
    "fwe_null",
    "fwe_options",
    "map_name",
]

#: NiMARE's ``method-`` entity of Monte Carlo maps and nulls.
MONTECARLO = "montecarlo"

#: Cluster neighbourhoods (faces, + edges, + corners).
CONNECTIVITIES = (6, 18, 26)

#: Cluster labelling implementations (:func:`nimare_jax.ops.label.max_cluster_stats`).
LABEL_BACKENDS = ("auto", "jax", "scipy")


def map_name(
    kind: str,
    *,
    desc: str | None = None,
    level: str | None = None,
    corr: str | None = None,
    method: str | None = None,
) -> str:
    """Return NiMARE's name of a map or null distribution.

    Parameters
    ----------
    kind : str
        What the values are: ``"z"``, ``"logp"``, ``"p"``, ``"values"``, ``"histweights"``...
    desc, level, corr, method : str or None
        The ``desc-``, ``level-``, ``corr-`` and ``method-`` entities, in this order;
        None leaves an entity out.

    Returns
    -------
    str
        E.g. ``map_name("z", desc="size", level="cluster", corr="FWE",
        method="montecarlo") == "z_desc-size_level-cluster_corr-FWE_method-montecarlo"``.
    """
    parts = [kind]
    for entity, value in (("desc", desc), ("level", level), ("corr", corr), ("method", method)):
        if value is not None:
            parts.append(f"{entity}-{value}")
    return "_".join(parts)


def correction_suffix(corr: str, method: str) -> str:
    """Return the end of a corrected map's name, ``_corr-{corr}_method-{method}``.

    Parameters
    ----------
    corr : {"FWE", "FDR", "fwe"}
        The ``corr-`` entity (lower case in null distributions' names, as NiMARE).
    method : str
        The ``method-`` entity: ``"montecarlo"``, ``"bonferroni"``, ``"indep"``...

    Returns
    -------
    str
        What :func:`map_name` appends for these entities, with its leading underscore.
    """
    return map_name("", corr=corr, method=method)


def fwe_map(kind: str, level: str = "voxel", desc: str | None = None) -> str:
    """Name of a Monte Carlo FWE-corrected map (``logp_level-voxel_corr-FWE_method-montecarlo``).

    Parameters
    ----------
    kind : {"p", "z", "logp"}
        Map kind.
    level : {"voxel", "cluster"}
        Inference level.
    desc : str or None
        ``desc-`` entity (``"size"``, ``"mass"``, ``"group1MinusGroup2Size"``...).

    Returns
    -------
    str
        The name.
    """
    return map_name(kind, desc=desc, level=level, corr="FWE", method=MONTECARLO)


def fwe_null(kind: str = "values", level: str | None = "voxel", desc: str | None = None) -> str:
    """Name of a Monte Carlo null distribution (``values_level-voxel_corr-fwe_method-montecarlo``).

    Parameters
    ----------
    kind : str
        ``"values"`` (per-iteration maxima), ``"histweights"`` (their histogram),
        ``"summary_stat_thresh"`` (a cluster-forming threshold).
    level : {"voxel", "cluster"} or None
        Inference level.
    desc : str or None
        ``desc-`` entity.

    Returns
    -------
    str
        The name.
    """
    return map_name(kind, desc=desc, level=level, corr="fwe", method=MONTECARLO)


class VoxelLevelOnlyError(ValueError, NotImplementedError):
    """Cluster-level FWE asked of an estimator that has only voxel-level inference.

    A ``ValueError`` (an option out of range), and NiMARE's ``NotImplementedError``.
    """


class MonteCarloFWE(Protocol):
    """What an estimator supporting ``FWECorrector(method="montecarlo")`` provides."""

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
        """Monte Carlo family-wise error correction of the estimator's fit.

        Called by :class:`~nimare_jax.correct.FWECorrector`, which passes its arguments
        through; use that instead. Defaults follow NiMARE 0.22.1's ``FWECorrector``.

        Parameters
        ----------
        %(fwe_montecarlo_parameters)s

        Returns
        -------
        %(fwe_montecarlo_returns)s
        """


@dataclass(frozen=True)
class FWEOptions:
    """Validated arguments of ``correct_fwe_montecarlo`` (see :class:`MonteCarloFWE`)."""

    voxel_thresh: float
    n_iters: int
    n_cores: int
    vfwe_only: bool
    connectivity: int
    batch_size: int
    tolerance: float | None
    label_backend: str
    progress: bool

    def stopper(self, select="voxel") -> QuantileStop | None:
        """Early-stopping rule for ``run_permutations`` (None without a tolerance).

        Parameters
        ----------
        select : str or callable
            Summary whose 95th percentile is monitored (see
            :class:`~nimare_jax.ops.permute.QuantileStop`).

        Returns
        -------
        QuantileStop or None
            The rule.
        """
        if self.tolerance is None:
            return None
        return QuantileStop(select, alpha=FWE_ALPHA, tol=self.tolerance)


def fwe_options(
    estimator,
    *,
    voxel_thresh,
    n_iters,
    n_cores,
    vfwe_only,
    connectivity,
    batch_size,
    tolerance,
    label_backend,
    progress,
    default_n_iters: int,
    default_batch_size: int,
    cluster_level: bool = True,
) -> FWEOptions:
    """Validate the arguments of ``correct_fwe_montecarlo`` and fill the estimator's defaults.

    Parameters
    ----------
    estimator : object
        The estimator (its ``progress`` attribute, if any, is the default progress).
    voxel_thresh, n_iters, n_cores, vfwe_only, connectivity, batch_size, tolerance, \
label_backend, progress
        As :meth:`MonteCarloFWE.correct_fwe_montecarlo`.
    default_n_iters : int
        The estimator's iterations when ``n_iters`` is None.
    default_batch_size : int
        The estimator's batch size when ``batch_size`` is None.
    cluster_level : bool
        Whether the estimator offers cluster-level inference (False: ``vfwe_only`` defaults
        to True and False is refused).

    Returns
    -------
    FWEOptions
        The arguments to use.

    Raises
    ------
    ValueError
        For an argument out of range, naming it.
    """
    name = type(estimator).__name__
    if vfwe_only is None:
        vfwe_only = not cluster_level
    elif not vfwe_only and not cluster_level:
        raise VoxelLevelOnlyError(
            f"{name} supports only voxel-level Monte Carlo FWE correction (vfwe_only=True); "
            "cluster-level inference is not defined for it"
        )
    if not vfwe_only and not (isinstance(voxel_thresh, float | int) and 0 < voxel_thresh < 1):
        raise ValueError(f"voxel_thresh must be in (0, 1), got {voxel_thresh!r}")
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
    if label_backend not in LABEL_BACKENDS:
        raise ValueError(f"label_backend must be one of {LABEL_BACKENDS}, got {label_backend!r}")
    if isinstance(n_cores, bool) or not isinstance(n_cores, int | np.integer):
        raise TypeError(f"n_cores must be an integer (<= 0: all cores), got {n_cores!r}")
    batch_size = default_batch_size if batch_size is None else batch_size
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if tolerance is not None and not tolerance > 0:
        raise ValueError(f"tolerance must be positive or None, got {tolerance!r}")
    return FWEOptions(
        voxel_thresh=float(voxel_thresh) if voxel_thresh is not None else 0.001,
        n_iters=check_n_iters(default_n_iters if n_iters is None else n_iters, FWE_ALPHA),
        n_cores=int(n_cores),
        vfwe_only=bool(vfwe_only),
        connectivity=int(connectivity),
        batch_size=int(batch_size),
        tolerance=tolerance,
        label_backend=label_backend,
        progress=bool(getattr(estimator, "progress", True) if progress is None else progress),
    )
