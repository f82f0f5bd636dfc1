"""Multiple-comparison correction of meta-analytic maps.

``FWECorrector(method="bonferroni"|"montecarlo")`` and ``FDRCorrector(method="indep"|
"negcorr")`` take a :class:`~nimare_jax.results.MetaResult` and return a new one with the
corrected maps added under NiMARE's names. Monte Carlo FWE is delegated to the estimator
that produced the result (``result.estimator.correct_fwe_montecarlo``), which knows how to
build its own null (Eickhoff et al. 2012, 2016). Every such method takes the same
arguments with the same defaults (:class:`nimare_jax.meta.fwe.MonteCarloFWE`), and
:class:`FWECorrector` passes its own through unchanged.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np

from nimare_jax import stats
from nimare_jax.base import NiMAREBase
from nimare_jax.docstrings import fill_doc
from nimare_jax.meta.fwe import correction_suffix
from nimare_jax.ops.validate import check_n_iters
from nimare_jax.results import MetaResult


def _with_maps(result: MetaResult, maps, nulls=None, description="", citations=(), by=None):
    """Copy of ``result`` with maps and nulls added, made by corrector ``by`` (as NiMARE)."""
    new = result.copy()
    new.corrector = by if by is not None else result.corrector
    new.maps.update(maps)
    new.null_distributions.update(nulls or {})
    new.description = (result.description + " " + description).strip()
    new.citations = tuple(dict.fromkeys(result.citations + tuple(citations)))
    return new


def _p_maps(p, corr: str, method: str, z=None, desc: str = "") -> dict:
    """Corrected p, logp and (if the result has a ``z`` map) z maps, as NiMARE names them.

    As NiMARE 0.22.1, the corrected z is the two-tailed z of the corrected p with the sign
    of the uncorrected ``z``; without a ``z`` map there is no corrected z. ``desc`` is what
    follows the kind in the uncorrected map's name (``"_desc-uniformity"`` for
    ``p_desc-uniformity``; empty for ``p``).
    """
    p = np.asarray(p, np.float64)
    suffix = desc + correction_suffix(corr, method)
    maps = {f"p{suffix}": p, f"logp{suffix}": -np.log10(p)}
    if z is not None:
        signs = np.sign(np.asarray(z, np.float64))
        maps[f"z{suffix}"] = stats.p_to_z(p, tail="two") * signs
    return maps


def _correct_p_maps(result: MetaResult, correct, corr: str, method: str) -> dict:
    """Apply ``correct(p) -> p_corr`` to each uncorrected p map of ``result``, as NiMARE.

    The maps corrected are the ``p_<entities>`` maps without a ``corr-`` entity (e.g.
    MKDAChi2's ``p_desc-uniformity``) if there are any, else ``p``. NaN p-values stay NaN
    and are not counted as tests.
    """
    names = [n for n in result.maps if n.startswith("p_") and "_corr-" not in n] or ["p"]
    if names == ["p"] and "p" not in result.maps:
        raise ValueError(
            f"{corr} correction needs a 'p' map (or 'p_<desc>' maps) in the result; it has "
            f"{sorted(result.maps)}"
        )
    maps = {}
    for name in names:
        p = np.asarray(result.maps[name], np.float64)
        finite = ~np.isnan(p)
        p_corr = np.full_like(p, np.nan)
        p_corr[finite] = correct(p[finite])
        desc = name[1:]
        maps.update(_p_maps(p_corr, corr, method, result.maps.get(f"z{desc}"), desc))
    return maps


class Corrector(NiMAREBase):
    """Base class of the multiple-comparison correctors (NiMARE's ``Corrector``).

    A corrector's ``transform(result)`` returns a copy of a
    :class:`~nimare_jax.results.MetaResult` with corrected maps added; ``inspect(result)``
    lists the ``method`` values available for it.
    """

    #: ``"fwe"`` or ``"fdr"``: an estimator's own methods are ``correct_<kind>_<method>``.
    _kind = ""
    #: The methods the corrector computes itself, whatever the estimator.
    _native_methods: tuple = ()

    @classmethod
    @fill_doc
    def inspect(cls, result: MetaResult) -> list:
        """List the ``method`` values available for a result (NiMARE's ``inspect``).

        Parameters
        ----------
        %(corrector_result)s

        Returns
        -------
        list of str
            The corrector's own methods (``"bonferroni"`` for :class:`FWECorrector`;
            ``"indep"`` and ``"negcorr"`` for :class:`FDRCorrector`) and the estimator's
            ``correct_<kind>_<method>`` methods (e.g. ``"montecarlo"`` for the estimators
            that build a null), sorted.
        """
        prefix = f"correct_{cls._kind}_"
        own = [n[len(prefix) :] for n in dir(result.estimator) if n.startswith(prefix)]
        return sorted(set(cls._native_methods) | set(own))


@fill_doc
class FWECorrector(Corrector):
    """Family-wise error correction.

    Parameters
    ----------
    method : {"bonferroni", "montecarlo"}
        Bonferroni on the uncorrected p-map (NiMARE's default), or the estimator's Monte
        Carlo max-statistic null (voxel level, and cluster size/mass for CBMA).
    voxel_thresh : float or None
        Uncorrected p-value of the cluster-forming threshold (Monte Carlo only); None (the
        default, as NiMARE) leaves the estimator's default, 0.001 for every nimare_jax
        estimator. Bonferroni takes no options: giving it one raises a ``TypeError``.
    n_iters : int or None
        Monte Carlo iterations; None uses the estimator's default, as NiMARE (its
        ``n_iters``, 5000 by default; 1000 for MKDAChi2). Fewer than 1 / 0.05 = 20 cannot
        give a corrected p-value below 0.05: the estimator warns
        (:class:`~nimare_jax.ops.validate.MonteCarloWarning`).
    %(n_cores)s
    **kwargs
        Further arguments of the estimator's ``correct_fwe_montecarlo``, the same for every
        estimator (:class:`nimare_jax.meta.fwe.MonteCarloFWE`): ``vfwe_only``,
        ``connectivity``, ``batch_size``, ``tolerance``, ``label_backend``, ``progress``;
        and ``target`` for ALESubtraction.

    Attributes
    ----------
    parameters : dict
        The options given for the estimator's correction (NiMARE's
        ``Corrector.parameters``): ``voxel_thresh``, ``n_iters``, ``n_cores`` (Monte Carlo
        only) and the ``**kwargs``, without those left at None.
    """

    _kind = "fwe"
    _native_methods = ("bonferroni",)

    def __init__(
        self,
        method: str = "bonferroni",
        voxel_thresh: float | None = None,
        n_iters: int | None = None,
        n_cores: int = 1,
        **kwargs,
    ):
        if method not in ("bonferroni", "montecarlo"):
            raise ValueError(
                f"FWECorrector method must be 'bonferroni' or 'montecarlo', not {method!r}"
            )
        if voxel_thresh is not None and not 0 < voxel_thresh < 1:
            raise ValueError(f"voxel_thresh must be in (0, 1), got {voxel_thresh!r}")
        self.method = method
        self.voxel_thresh = voxel_thresh
        self.n_iters = None if n_iters is None else check_n_iters(n_iters)
        self.n_cores = n_cores
        self.kwargs = kwargs

    @property
    def parameters(self) -> dict:
        """Options passed on to the estimator's correction, None-valued ones dropped."""
        named = {"voxel_thresh": self.voxel_thresh}
        if self.method == "montecarlo":
            named.update(n_iters=self.n_iters, n_cores=self.n_cores)
        return {k: v for k, v in {**named, **self.kwargs}.items() if v is not None}

    @fill_doc
    def transform(self, result: MetaResult) -> MetaResult:
        """Return a copy of ``result`` with FWE-corrected maps added.

        Parameters
        ----------
        %(corrector_result)s

        Returns
        -------
        MetaResult
            With ``{p,z,logp}_corr-FWE_method-bonferroni`` or the Monte Carlo maps
            ``logp_level-voxel_corr-FWE_method-montecarlo``,
            ``z_desc-size_level-cluster_corr-FWE_method-montecarlo``, ... .
        """
        if self.method == "bonferroni":
            if self.parameters:
                raise TypeError(
                    f"FWECorrector(method='bonferroni') got "
                    f"{', '.join(repr(k) for k in sorted(self.parameters))}, which "
                    "FWECorrector.correct_fwe_bonferroni does not take. Accepted keyword "
                    "arguments: (none)."
                )
            maps = _correct_p_maps(
                result, lambda p: np.minimum(p * p.shape[0], 1.0), "FWE", "bonferroni"
            )
            text = "P-values were Bonferroni-corrected for the number of voxels tested."
            return _with_maps(result, maps, None, text, by=self)
        estimator = result.estimator
        if not hasattr(estimator, "correct_fwe_montecarlo"):
            raise ValueError(
                f"{type(estimator).__name__} does not support Monte Carlo FWE correction"
            )
        return _run_estimator_method(
            self, result, estimator.correct_fwe_montecarlo, self.parameters, "FWE"
        )


def _check_options(corrector, method, options: dict) -> None:
    """Raise a TypeError naming ``method`` and what it accepts if it cannot take ``options``.

    A method with ``**kwargs`` accepts anything; the result is its first, positional,
    argument.
    """
    params = list(inspect.signature(method).parameters.values())
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params[1:]]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        owner = getattr(method, "__self__", None)
        name = (
            f"{type(owner).__name__}.{method.__name__}"
            if owner is not None
            else getattr(method, "__qualname__", repr(method))
        )
        raise TypeError(
            f"{type(corrector).__name__}(method={corrector.method!r}) got "
            f"{', '.join(repr(k) for k in unknown)}, which {name} does not take. "
            f"Accepted keyword arguments: {', '.join(accepted) if accepted else '(none)'}."
        )


def _run_estimator_method(corrector, result, method, options: dict, corr: str) -> MetaResult:
    """Run an estimator's own correction method and add what it returns to a copy of ``result``.

    nimare_jax's estimators return ``(maps, null_distributions, description, citations)``
    with the maps fully named. An estimator written for NiMARE returns ``(maps, tables,
    description)``; its map and table names then get NiMARE's suffix
    ``_corr-<FWE|FDR>_method-<method>`` and floating maps become float32, as NiMARE's
    corrector does.
    """
    _check_options(corrector, method, options)
    out = method(result, **options)
    if len(out) == 4:
        maps, nulls, text, cites = out
        new = _with_maps(result, maps, nulls, text, cites, by=corrector)
        held = getattr(result.estimator, "null_distributions_", None)
        if isinstance(held, dict) and nulls:  # as NiMARE: the corrected result's estimator
            new.estimator = copy.copy(result.estimator)  # holds the nulls, not the original
            new.estimator.null_distributions_ = {**held, **nulls}
        return new
    maps, tables, text = out
    suffix = correction_suffix(corr, corrector.method)
    maps = {
        name + suffix: np.asarray(v, np.float32)
        if np.issubdtype(np.asarray(v).dtype, np.floating)
        else np.asarray(v)
        for name, v in maps.items()
    }
    new = _with_maps(result, maps, None, text, by=corrector)
    new.tables.update({name + suffix: t for name, t in (tables or {}).items()})
    return new


class FDRCorrector(Corrector):
    """False discovery rate correction of the ``p`` map.

    Parameters
    ----------
    method : {"indep", "negcorr"}
        Benjamini-Hochberg (independent or positively dependent tests) or
        Benjamini-Yekutieli (any dependence).
    alpha : float
        FDR level; recorded in the description (the corrected maps are q-values).
    **kwargs
        Accepted only with the value None (NiMARE drops None-valued options, e.g. a shared
        ``voxel_thresh=None``); the FDR correction takes no other option.

    Attributes
    ----------
    parameters : dict
        Options passed on to the estimator (NiMARE's ``Corrector.parameters``): always empty.
    """

    _kind = "fdr"
    _native_methods = ("indep", "negcorr")

    def __init__(self, method: str = "indep", alpha: float = 0.05, **kwargs):
        given = sorted(k for k, v in kwargs.items() if v is not None)
        if given:
            raise TypeError(f"FDRCorrector got unexpected keyword argument(s): {given}")
        self.parameters: dict = {}
        if method not in ("indep", "negcorr"):
            raise ValueError(f"FDRCorrector method must be 'indep' or 'negcorr', not {method!r}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        self.method = method
        self.alpha = alpha

    @fill_doc
    def transform(self, result: MetaResult) -> MetaResult:
        """Return a copy of ``result`` with ``{p,z,logp}_corr-FDR_method-{method}`` added.

        Parameters
        ----------
        %(corrector_result)s

        Returns
        -------
        MetaResult
            With FDR-adjusted maps.
        """
        own = getattr(result.estimator, f"correct_fdr_{self.method}", None)
        if own is not None:  # estimators with several p-maps (MKDAChi2) correct their own
            return _run_estimator_method(self, result, own, {"alpha": self.alpha}, "FDR")
        maps = _correct_p_maps(
            result,
            lambda p: stats.fdr(p, q=self.alpha, method="bh" if self.method == "indep" else "by"),
            "FDR",
            self.method,
        )
        name = "Benjamini-Hochberg" if self.method == "indep" else "Benjamini-Yekutieli"
        key = "Benjamini1995" if self.method == "indep" else "Benjamini2001"
        text = (
            f"P-values were corrected for the false discovery rate with the {name} procedure "
            f"[{key}] (alpha = {self.alpha})."
        )
        return _with_maps(result, maps, None, text, (key,), by=self)
