"""Workflow objects: estimator, corrector and diagnostics composed in one ``fit``, as NiMARE's.

A workflow fits its estimator, corrects the result, runs every diagnostic on each corrected
z map (NiMARE's choice of maps, below) and, given ``output_dir``, writes the maps, tables,
``boilerplate.txt`` and ``references.bib``. The diagnostics add the cluster tables
(``{map}_tab-clust``: peak coordinates, cluster size, Harvard-Oxford label of the peak), the
contribution tables (``{map}_diag-{Jackknife|FocusCounter}_tab-counts[_tail-...]``) and the
cluster label maps (``label_{...}_tail-{positive|negative}``), named as NiMARE 0.22.1 names
them.

Estimators, correctors and diagnostics are given as instances, classes or NiMARE's strings
(``"ale"``, ``"montecarlo"``, ``"jackknife"``, ...). The workflow's settings (``n_cores``;
``voxel_thresh`` and ``cluster_threshold`` for diagnostics) go to components built from a
string or a class, and to instances only where the instance kept its default; an instance
is copied first, never modified.

Diagnosed maps (NiMARE's rule): the corrected ``z_`` maps; with Monte Carlo FWE only the
cluster-mass ones (``_desc-mass``; for pairwise estimators ``_desc-associationMass`` /
``_desc-group1MinusGroup2Mass``, else their voxel-level maps).
"""

from __future__ import annotations

import copy
import inspect
import itertools

from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.diagnostics import Diagnostics, FocusCounter, Jackknife
from nimare_jax.exceptions import NiMAREJaxError
from nimare_jax.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity
from nimare_jax.meta.ibma import (
    DerSimonianLaird,
    Fishers,
    Hedges,
    PermutedOLS,
    SampleSizeBasedLikelihood,
    Stouffers,
    VarianceBasedLikelihood,
    WeightedLeastSquares,
)
from nimare_jax.reports import cluster_table, run_reports
from nimare_jax.results import MetaResult
from nimare_jax.workflows.staging import staged_dir

__all__ = [
    "PAIRWISE_ESTIMATORS",
    "STR_TO_CLASS",
    "ComponentError",
    "Workflow",
    "add_cluster_tables",
    "write_outputs",
    "write_report",
]


class ComponentError(NiMAREJaxError, TypeError, ValueError, AttributeError):
    """A workflow was given an estimator, corrector or diagnostic of a kind it cannot use.

    A ``TypeError``; also a ``ValueError`` and an ``AttributeError``, the exceptions
    NiMARE 0.22.1's workflows raise for the same mistakes, so code catching those works.
    """


#: NiMARE's strings for estimators, correctors and diagnostics.
STR_TO_CLASS = {
    "ale": ALE,
    "scale": SCALE,
    "mkdadensity": MKDADensity,
    "kda": KDA,
    "mkdachi2": MKDAChi2,
    "alesubtraction": ALESubtraction,
    "stouffers": Stouffers,
    "fishers": Fishers,
    "permutedols": PermutedOLS,
    "wleastsquares": WeightedLeastSquares,
    "dersimonianlaird": DerSimonianLaird,
    "hedges": Hedges,
    "samplesizebl": SampleSizeBasedLikelihood,
    "variancebl": VarianceBasedLikelihood,
    "montecarlo": FWECorrector,
    "fdr": FDRCorrector,
    "bonferroni": FWECorrector,
    "jackknife": Jackknife,
    "focuscounter": FocusCounter,
}

#: Two-group estimators (``fit(dataset1, dataset2)``).
PAIRWISE_ESTIMATORS = (MKDAChi2, ALESubtraction)

_CORRECTORS = (FWECorrector, FDRCorrector)


def _accepted(cls) -> dict:
    """Return the keyword arguments named in ``cls``'s constructors (base first) and defaults."""
    out = {}
    for klass in reversed(inspect.getmro(cls)):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, param in inspect.signature(init).parameters.items():
            if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                out[name] = param.default
    return out


def _build(obj, kind: str, bases: tuple, options: tuple, settings: dict):
    """Return an instance from a string, a class or an instance (copied, settings filled in).

    Parameters
    ----------
    obj : str, type or object
        What the user gave.
    kind : str
        ``"estimator"``, ``"corrector"`` or ``"diagnostics"`` (for messages).
    bases : tuple of type
        Accepted classes.
    options : tuple of str
        Accepted strings.
    settings : dict
        Workflow settings for the constructor (only those it accepts are passed); an
        instance gets those whose attribute still holds the constructor's default.
    """
    if isinstance(obj, str):
        key = obj.lower()
        if key not in options:
            raise ValueError(f"{kind} {obj!r} is not one of {', '.join(options)}")
        cls = STR_TO_CLASS[key]
        if cls is SCALE:
            raise ValueError(
                "SCALE needs its baseline pool of foci: pass an instance, SCALE(xyz), "
                "instead of the string 'scale'"
            )
        if cls is FWECorrector:
            settings = {**settings, "method": key}
        obj = cls
    if isinstance(obj, type):
        if not issubclass(obj, bases):
            names = ", ".join(b.__name__ for b in bases)
            raise ComponentError(
                f"{kind} must be one of {names} (or a string), got {obj.__name__}"
            )
        accepted = _accepted(obj)
        return obj(**{k: v for k, v in settings.items() if k in accepted})
    if not isinstance(obj, bases):
        names = ", ".join(b.__name__ for b in bases)
        raise ComponentError(
            f"{kind} must be one of {names}, a class or a string, got {type(obj).__name__}"
        )
    defaults = _accepted(type(obj))
    unset = {
        k: v
        for k, v in settings.items()
        if k in defaults and hasattr(obj, k) and _is_default(getattr(obj, k), defaults[k])
    }
    if not unset:
        return obj
    obj = copy.copy(obj)
    for key, value in unset.items():
        setattr(obj, key, value)
    return obj


def _is_default(value, default) -> bool:
    if value is default:
        return True
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # arrays: ambiguous truth value
        return False


def _diagnosed_maps(result: MetaResult, method: str | None, pairwise: bool) -> list[str]:
    """Corrected z maps the diagnostics run on (NiMARE 0.22.1's selection)."""
    names = [n for n in result.maps if n.startswith("z_") and "_corr-" in n]
    if not pairwise:
        if method == "montecarlo":
            names = [n for n in names if "_desc-mass" in n]
        return names
    if method != "montecarlo":
        return [n for n in names if "_desc-" in n]
    mass = ("_desc-associationMass", "_desc-group1MinusGroup2Mass")
    picked = [n for n in names if any(m in n for m in mass)]
    if picked:
        return picked
    voxel = ("_desc-association_level-voxel", "_desc-group1MinusGroup2_level-voxel")
    return [n for n in names if any(v in n for v in voxel)]


class Workflow:
    """Base class of the workflows: builds the components and runs correction and diagnostics.

    Parameters
    ----------
    estimator : object, type, str or None
        Meta-analysis estimator (None: the workflow's default).
    corrector : FWECorrector, FDRCorrector, type, str or None
        Multiple-comparison corrector (None: the workflow's default).
    diagnostics : Diagnostics, type, str, list of these, or None
        Diagnostics run on every corrected z map (None: the workflow's default).
    voxel_thresh : float or None
        Threshold of the diagnosed map defining clusters (``target_threshold`` of the
        diagnostics); 1.65 (one-tailed p = 0.05) by default.
    cluster_threshold : int or None
        Smallest cluster the diagnostics keep, in voxels (10 by default).
    output_dir : str, os.PathLike or None
        Folder to write maps (``{name}.nii.gz``), tables (``{name}.tsv``),
        ``boilerplate.txt`` and ``references.bib`` into; None writes nothing.
    n_cores : int
        Devices for the permutations of the components built by the workflow.
    """

    _estm_bases: tuple = ()
    _estm_options: tuple = ()
    _corr_options: tuple = ("montecarlo", "fdr", "bonferroni")
    _diag_options: tuple = ("jackknife", "focuscounter")
    _estm_default = None
    _corr_default = FWECorrector
    _mcc_method = "montecarlo"
    _diag_default = Jackknife

    def __init__(
        self,
        estimator=None,
        corrector=None,
        diagnostics=None,
        voxel_thresh: float | None = 1.65,
        cluster_threshold: int | None = 10,
        output_dir=None,
        n_cores: int = 1,
    ):
        if isinstance(n_cores, bool) or not isinstance(n_cores, int):
            raise TypeError(f"n_cores must be an integer, got {n_cores!r}")
        self.voxel_thresh = voxel_thresh
        self.cluster_threshold = cluster_threshold
        self.output_dir = output_dir
        self.n_cores = n_cores
        cores = {"n_cores": n_cores}
        self._check_pairwise(estimator)
        self.estimator = _build(
            self._estm_default if estimator is None else estimator,
            "estimator",
            self._estm_bases,
            self._estm_options,
            cores,
        )
        if corrector is None:
            corrector, cores = self._corr_default, {**cores, "method": self._mcc_method}
        self.corrector = _build(corrector, "corrector", _CORRECTORS, self._corr_options, cores)
        if diagnostics is None:
            diagnostics = [self._diag_default]
        elif not isinstance(diagnostics, list | tuple):
            diagnostics = [diagnostics]
        diag_settings = {
            "target_threshold": voxel_thresh,
            "cluster_threshold": cluster_threshold,
            "n_cores": n_cores,
        }
        options = (
            self._diag_options if isinstance(self._diag_options, tuple) else (self._diag_options,)
        )
        self.diagnostics = [
            _build(d, "diagnostics", (Diagnostics,), options, diag_settings) for d in diagnostics
        ]

    def _check_pairwise(self, estimator) -> None:
        """Refuse a two-group estimator in a one-sample workflow, and the reverse."""
        if estimator is None:
            return
        if isinstance(estimator, str):
            cls = STR_TO_CLASS.get(estimator.lower())
        else:
            cls = estimator if isinstance(estimator, type) else type(estimator)
        if cls is None or not (
            issubclass(cls, PAIRWISE_ESTIMATORS) or cls in STR_TO_CLASS.values()
        ):
            return  # unknown: _build names what is accepted
        pairwise = issubclass(cls, PAIRWISE_ESTIMATORS)
        if pairwise != issubclass(self._estm_default, PAIRWISE_ESTIMATORS):
            kind = "pairwise" if pairwise else "one-sample"
            raise ComponentError(
                f"{type(self).__name__} does not work with {kind} estimators such as "
                f"{cls.__name__}"
            )

    def __repr__(self) -> str:
        diags = ", ".join(type(d).__name__ for d in self.diagnostics)
        return (
            f"{type(self).__name__}(estimator={type(self.estimator).__name__}, "
            f"corrector={type(self.corrector).__name__}, diagnostics=[{diags}])"
        )

    def _transform(self, result: MetaResult) -> MetaResult:
        """Correct ``result``, run the diagnostics on its corrected z maps, write outputs.

        Parameters
        ----------
        result : MetaResult
            The estimator's result.

        Returns
        -------
        MetaResult
            Corrected result with the diagnostics' tables and label maps; its
            ``corrector`` and ``diagnostics`` attributes name what produced them.
        """
        corrected = self.corrector.transform(result)
        method = getattr(self.corrector, "method", None)
        if isinstance(self.corrector, FDRCorrector):
            method = "fdr"
        pairwise = isinstance(self.estimator, PAIRWISE_ESTIMATORS)
        applied = []
        for name, diagnostic in itertools.product(
            _diagnosed_maps(corrected, method, pairwise), self.diagnostics
        ):
            run = copy.copy(diagnostic)
            run.target_image = name
            corrected = run.transform(corrected)
            applied.append(run)
        corrected.corrector = self.corrector
        corrected.diagnostics = applied
        if self.output_dir is not None:
            with staged_dir(self.output_dir) as tmp:
                corrected.save_maps(tmp)
                corrected.save_tables(tmp)
                corrected.save_boilerplate(tmp)
        return corrected


def add_cluster_tables(
    result: MetaResult, voxel_thresh: float = 1.65, cluster_threshold: int = 10
) -> MetaResult:
    """Add cluster tables of a Monte Carlo FWE-corrected result (for the command line).

    The maps are those a workflow diagnoses (cluster-mass FWE z maps), else the voxel-level
    FWE z maps. A coordinate-based result fitted to a dataset gets
    :class:`~nimare_jax.diagnostics.FocusCounter`'s tables (``{map}_tab-clust`` and the foci
    counts); any other result (e.g. images given as arrays) gets
    :func:`~nimare_jax.reports.cluster_table`'s table as ``{map}_tab-clust``.

    Parameters
    ----------
    result : MetaResult
        Corrected result.
    voxel_thresh : float
        Threshold of the corrected z map defining clusters (1.65: corrected p < 0.05).
    cluster_threshold : int
        Smallest cluster listed, in voxels.

    Returns
    -------
    MetaResult
        A copy with the tables (and FocusCounter's label maps) added.
    """
    estimator = result.estimator
    pairwise = isinstance(estimator, PAIRWISE_ESTIMATORS)
    names = _diagnosed_maps(result, "montecarlo", pairwise)
    if not names:
        names = sorted(
            n for n in result.maps if n.startswith("z_") and "_level-voxel_corr-FWE" in n
        )
    counts = hasattr(estimator, "kernel_transformer") and (
        hasattr(estimator, "dataset_") or pairwise
    )
    out = result.copy()
    for name in names:
        if counts:
            diagnostic = FocusCounter(
                target_image=name,
                target_threshold=voxel_thresh,
                cluster_threshold=cluster_threshold,
            )
            out = diagnostic.transform(out)
        else:
            img = out.get_map(name)
            two_sided = bool((out.get_map(name, return_type="array") < 0).any())
            out.tables[f"{name}_tab-clust"] = cluster_table(
                img, voxel_thresh, min_size=cluster_threshold, two_sided=two_sided
            )
    return out


def write_outputs(result: MetaResult, folder, prefix: str | None = None, *, maps: bool = True):
    """Write a result's maps, tables, methods text and report into ``folder``.

    Parameters
    ----------
    result : MetaResult
        The result to write.
    folder : str or os.PathLike
        Output folder (a workflow's staging folder).
    prefix : str or None
        File-name prefix.
    maps : bool
        Also write the maps (``{prefix}_{name}.nii.gz``); False for a workflow that names
        its map files itself.

    Returns
    -------
    list of pathlib.Path
        The written files: maps, tables, ``boilerplate.txt`` and ``references.bib``,
        ``report.html`` (each with the prefix).
    """
    written = list(result.save_maps(folder, prefix)) if maps else []
    written += [*result.save_tables(folder, prefix), *result.save_boilerplate(folder, prefix)]
    return [*written, write_report(result, folder, prefix)]


def write_report(result: MetaResult, folder, prefix: str | None = None):
    """Write ``{prefix}_report.html`` (``report.html`` without a prefix) into ``folder``.

    Parameters
    ----------
    result : MetaResult
        The result to describe (see :func:`~nimare_jax.reports.run_reports`).
    folder : str or os.PathLike
        Output folder.
    prefix : str or None
        File-name prefix, as the maps'.

    Returns
    -------
    pathlib.Path
        The written page.
    """
    return run_reports(result, folder, out_filename=f"{prefix + '_' if prefix else ''}report.html")
