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

import inspect

import numpy as np

from nimare_jax import stats
from nimare_jax.meta.fwe import map_name
from nimare_jax.ops.validate import check_n_iters
from nimare_jax.results import MetaResult


def _with_maps(result: MetaResult, maps, nulls=None, description="", citations=()):
    new = result.copy()
    new.maps.update(maps)
    new.null_distributions.update(nulls or {})
    new.description = (result.description + " " + description).strip()
    new.citations = tuple(dict.fromkeys(result.citations + tuple(citations)))
    return new


def _p_maps(p, corr: str, method: str, z=None) -> dict:
    """Corrected p, logp and (if the result has a ``z`` map) z maps, as NiMARE names them.

    As NiMARE 0.22.1, the corrected z is the two-tailed z of the corrected p with the sign
    of the uncorrected ``z``; without a ``z`` map there is no corrected z.
    """
    p = np.asarray(p, np.float64)
    maps = {
        map_name("p", corr=corr, method=method): p,
        map_name("logp", corr=corr, method=method): -np.log10(p),
    }
    if z is not None:
        signs = np.sign(np.asarray(z, np.float64))
        maps[map_name("z", corr=corr, method=method)] = stats.p_to_z(p, tail="two") * signs
    return maps


class FWECorrector:
    """Family-wise error correction.

    Parameters
    ----------
    method : {"bonferroni", "montecarlo"}
        Bonferroni on the uncorrected p-map (NiMARE's default), or the estimator's Monte
        Carlo max-statistic null (voxel level, and cluster size/mass for CBMA).
    voxel_thresh : float or None
        Uncorrected p-value of the cluster-forming threshold (Monte Carlo only); None leaves
        the estimator's default.
    n_iters : int or None
        Monte Carlo iterations; None uses the estimator's default, as NiMARE (its
        ``n_iters``, 5000 by default; 1000 for MKDAChi2). Fewer than 1 / 0.05 = 20 cannot
        give a corrected p-value below 0.05: the estimator warns
        (:class:`~nimare_jax.ops.validate.MonteCarloWarning`).
    n_cores : int
        Devices to spread the permutations over; ``<= 0``: all cores, as NiMARE. Never
        ignored silently: on CPU, cores become JAX devices only before JAX's first
        computation, so a later request beyond the devices JAX has warns
        (:func:`nimare_jax.ops.permute.resolve_n_devices`).
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

    def __init__(
        self,
        method: str = "bonferroni",
        voxel_thresh: float = 0.001,
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
        named = {}
        if self.method == "montecarlo":
            named = {"voxel_thresh": self.voxel_thresh, "n_iters": self.n_iters}
            named["n_cores"] = self.n_cores
        return {k: v for k, v in {**named, **self.kwargs}.items() if v is not None}

    def transform(self, result: MetaResult) -> MetaResult:
        """Return a copy of ``result`` with FWE-corrected maps added.

        Parameters
        ----------
        result : MetaResult
            Output of an estimator's ``fit``.

        Returns
        -------
        MetaResult
            With ``{p,z,logp}_corr-FWE_method-bonferroni`` or the Monte Carlo maps
            ``logp_level-voxel_corr-FWE_method-montecarlo``,
            ``z_desc-size_level-cluster_corr-FWE_method-montecarlo``, ... .
        """
        if self.method == "bonferroni":
            if "p" not in result.maps:
                raise ValueError("Bonferroni correction needs a 'p' map in the result")
            p = np.asarray(result.maps["p"], np.float64)
            p_corr = np.minimum(p * p.shape[0], 1.0)
            text = f"P-values were Bonferroni-corrected for {p.shape[0]} voxels."
            return _with_maps(
                result, _p_maps(p_corr, "FWE", "bonferroni", result.maps.get("z")), None, text
            )
        estimator = result.estimator
        if not hasattr(estimator, "correct_fwe_montecarlo"):
            raise ValueError(
                f"{type(estimator).__name__} does not support Monte Carlo FWE correction"
            )
        options = {"n_iters": self.n_iters, "n_cores": self.n_cores, **self.kwargs}
        if self.voxel_thresh is not None:  # None: the estimator's default
            options["voxel_thresh"] = self.voxel_thresh
        accepted = inspect.signature(estimator.correct_fwe_montecarlo).parameters
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise TypeError(
                f"FWECorrector arguments {unknown} are not options of "
                f"{type(estimator).__name__}.correct_fwe_montecarlo "
                f"(it takes {[k for k in accepted if k != 'result']})"
            )
        maps, nulls, text, cites = estimator.correct_fwe_montecarlo(result, **options)
        return _with_maps(result, maps, nulls, text, cites)


class FDRCorrector:
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

    def transform(self, result: MetaResult) -> MetaResult:
        """Return a copy of ``result`` with ``{p,z,logp}_corr-FDR_method-{method}`` added.

        Parameters
        ----------
        result : MetaResult
            Output of an estimator's ``fit``.

        Returns
        -------
        MetaResult
            With FDR-adjusted maps.
        """
        own = getattr(result.estimator, f"correct_fdr_{self.method}", None)
        if own is not None:  # estimators with several p-maps (MKDAChi2) correct their own
            maps, nulls, text, cites = own(result, alpha=self.alpha)
            return _with_maps(result, maps, nulls, text, cites)
        if "p" not in result.maps:
            raise ValueError("FDR correction needs a 'p' map in the result")
        p = np.asarray(result.maps["p"], np.float64)
        q = stats.fdr(p, q=self.alpha, method="bh" if self.method == "indep" else "by")
        name = "Benjamini-Hochberg" if self.method == "indep" else "Benjamini-Yekutieli"
        key = "Benjamini1995" if self.method == "indep" else "Benjamini2001"
        text = (
            f"P-values were corrected for the false discovery rate with the {name} procedure "
            f"[{key}] (alpha = {self.alpha})."
        )
        return _with_maps(
            result, _p_maps(q, "FDR", self.method, result.maps.get("z")), None, text, (key,)
        )
