"""Coordinate-based meta-analysis workflows.

:class:`CBMAWorkflow` and :class:`PairwiseCBMAWorkflow` (see
:mod:`nimare_jax.workflows.base` for what they do and write), and
:class:`ContrastWorkflow`, NiMARE 0.22's contrast of two groups gated by their main effects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.docstrings import fill_doc
from nimare_jax.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity
from nimare_jax.meta.cbma.base import PairwiseCBMAEstimator
from nimare_jax.meta.fwe import MONTECARLO, correction_suffix
from nimare_jax.results import MetaResult
from nimare_jax.workflows.base import Workflow, _build
from nimare_jax.workflows.staging import staged_dir

__all__ = ["CBMAWorkflow", "ContrastWorkflow", "PairwiseCBMAWorkflow"]


@fill_doc
class CBMAWorkflow(Workflow):
    """Coordinate-based meta-analysis, correction and diagnostics in one call.

    Parameters
    ----------
    estimator : ALE, MKDADensity, KDA, SCALE (instance or class) or str, optional
        ``"ale"``, ``"mkdadensity"`` or ``"kda"`` (``"scale"`` needs an instance with its
        baseline pool). Default :class:`~nimare_jax.meta.cbma.ALE`.
    corrector : FWECorrector, FDRCorrector (instance or class) or str, optional
        ``"montecarlo"``, ``"fdr"`` or ``"bonferroni"``. Default
        ``FWECorrector(method="montecarlo")`` (the estimator's ``n_iters``, 5000).
    diagnostics : Jackknife, FocusCounter (instance or class), str or a list, optional
        ``"jackknife"`` or ``"focuscounter"``. Default :class:`~nimare_jax.diagnostics.Jackknife`
        (as NiMARE 0.22.1, whose docstring says FocusCounter).
    %(workflow_options)s

    Examples
    --------
    >>> from nimare_jax.correct import FWECorrector
    >>> wf = CBMAWorkflow(corrector=FWECorrector(method="montecarlo", n_iters=100),
    ...                   diagnostics="focuscounter")
    >>> wf
    CBMAWorkflow(estimator=ALE, corrector=FWECorrector, diagnostics=[FocusCounter])
    """

    _estm_bases = (ALE, MKDADensity, KDA, SCALE)
    _estm_options = ("ale", "scale", "mkdadensity", "kda")
    _estm_default = ALE

    def fit(self, dataset) -> MetaResult:
        """Fit the estimator, correct, run the diagnostics and write the outputs.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Experiments with coordinates.

        Returns
        -------
        MetaResult
            Corrected maps, cluster and contribution tables, label maps.
        """
        return self._transform(self.estimator.fit(dataset))


@fill_doc
class PairwiseCBMAWorkflow(Workflow):
    """Two-group coordinate-based meta-analysis, correction and diagnostics in one call.

    Parameters
    ----------
    estimator : MKDAChi2, ALESubtraction (instance or class) or str, optional
        ``"mkdachi2"`` or ``"alesubtraction"``. Default
        :class:`~nimare_jax.meta.cbma.MKDAChi2`.
    corrector : FWECorrector, FDRCorrector (instance or class) or str, optional
        ``"montecarlo"``, ``"fdr"`` or ``"bonferroni"``. Default
        ``FWECorrector(method="montecarlo")``.
    diagnostics : Jackknife, FocusCounter (instance or class), str or a list, optional
        Default :class:`~nimare_jax.diagnostics.Jackknife`. For the negative tail (group 2)
        set ``display_second_group=True`` on the diagnostic.
    %(workflow_options)s
    """

    _estm_bases = (MKDAChi2, ALESubtraction)
    _estm_options = ("alesubtraction", "mkdachi2")
    _estm_default = MKDAChi2

    def fit(self, dataset1, dataset2) -> MetaResult:
        """Compare two groups, correct, run the diagnostics and write the outputs.

        Parameters
        ----------
        dataset1, dataset2 : nimare_jax.dataset.Dataset
            The groups (same mask).

        Returns
        -------
        MetaResult
            Corrected maps, cluster and contribution tables, label maps.
        """
        return self._transform(self.estimator.fit(dataset1, dataset2))


# Preference among corrected main-effect maps (NiMARE 0.22.1's order): cluster size, cluster
# mass, voxel level, other; then Monte Carlo FWE, FDR (indep, negcorr), Bonferroni.
_SCOPES = ("ize_level-cluster", "ass_level-cluster", "level-voxel")
_METHODS = tuple(
    correction_suffix(corr, method)
    for corr, method in (
        ("FWE", MONTECARLO),
        ("FDR", "indep"),
        ("FDR", "negcorr"),
        ("FWE", "bonferroni"),
    )
)


def _rank(name: str) -> tuple:
    scope = next((i for i, s in enumerate(_SCOPES) if s in name), len(_SCOPES))
    method = next((i for i, m in enumerate(_METHODS) if m in name), len(_METHODS))
    return scope, method, name


def main_effect_map(corrected: MetaResult, alpha: float) -> np.ndarray:
    """Corrected z of a main effect where it is significant at ``alpha``, else 0 (float32).

    The corrected z map is chosen among the result's ``z_*_corr-*`` maps that have a
    matching corrected ``p_`` (thresholded at ``p <= alpha``) or ``logp_`` map (``logp >=
    -log10 alpha``), preferring cluster-size, then cluster-mass, then voxel-level
    inference, and Monte Carlo FWE, then FDR, then Bonferroni, as NiMARE 0.22.1.

    Parameters
    ----------
    corrected : MetaResult
        Output of a corrector.
    alpha : float
        Significance level.

    Returns
    -------
    numpy.ndarray, shape (n_voxels,), float32
        The thresholded z map.

    Raises
    ------
    ValueError
        If the result has no corrected z map with a corrected p or logp map.
    """
    pairs = []
    for z_name in corrected.maps:
        if z_name.startswith("z_") and "_corr-" in z_name:
            for kind in ("p", "logp"):
                other = kind + z_name[1:]
                if other in corrected.maps:
                    pairs.append((_rank(other), z_name, other, kind))
                    break
    if not pairs:
        raise ValueError(
            "no corrected z map with a corrected p or logp map to threshold the main effect "
            f"with; the result has {sorted(corrected.maps)}"
        )
    _, z_name, other, kind = min(pairs)
    values = np.asarray(corrected.maps[other], np.float64)
    keep = values <= alpha if kind == "p" else values >= -np.log10(alpha)
    z = np.asarray(corrected.maps[z_name], np.float64)
    return np.where(keep, z, 0.0).astype(np.float32)


class ContrastWorkflow:
    """Contrast of two groups, tested only where each group's main effect supports it.

    As NiMARE 0.22's ``ContrastWorkflow`` (after the JALE implementation and the
    main-effect-gated ALE subtraction of Laird et al. 2005): each group's main effect is
    fitted, corrected and thresholded at ``alpha``; the pairwise estimator is fitted with
    the two thresholded maps as directional inference masks (group 1 > group 2 only where
    group 1 has a main effect, group 2 > group 1 only where group 2 has one); the contrast
    is thresholded at ``p <= alpha``.

    Parameters
    ----------
    main_estimator : ALE, MKDADensity, KDA, SCALE (instance or class) or str
        ``"ale"``, ``"mkdadensity"``, ``"kda"``. Default :class:`~nimare_jax.meta.cbma.ALE`.
    pairwise_estimator : ALESubtraction, MKDAChi2 (instance or class) or str
        ``"alesubtraction"``, ``"mkdachi2"``. Default ALESubtraction.
    corrector : FWECorrector, FDRCorrector (instance or class), str or None
        ``"fdr"``, ``"montecarlo"``, ``"bonferroni"``; None: ``FDRCorrector("indep")``.
    alpha : float
        Level of the main-effect and contrast thresholds (default 0.05).
    output_dir : str, os.PathLike or None
        Folder for the maps, tables, ``boilerplate.txt`` and ``references.bib``.
    generate_description : bool
        Describe the workflow in the result (default True); False leaves the description
        and citations empty.
    n_cores : int
        Devices for the components built here, and for given instances that kept their
        default.

    Notes
    -----
    The result is the pairwise estimator's, plus ``z_desc-group1MainEffect``,
    ``z_desc-group2MainEffect``, ``z_desc-conjunction`` (their voxel-wise minimum),
    ``{z,p,logp}_desc-contrast`` (the gated contrast where ``p <= alpha``; elsewhere 0, 1,
    0) and the table ``contrast_tab-metadata``.
    """

    _main_options = ("ale", "scale", "mkdadensity", "kda")
    _pairwise_options = ("alesubtraction", "mkdachi2")
    _corr_options = ("fdr", "montecarlo", "bonferroni")

    def __init__(
        self,
        main_estimator=ALE,
        pairwise_estimator=ALESubtraction,
        corrector=None,
        alpha: float = 0.05,
        output_dir=None,
        generate_description: bool = True,
        n_cores: int = 1,
    ):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
        if isinstance(n_cores, bool) or not isinstance(n_cores, int):
            raise TypeError(f"n_cores must be an integer, got {n_cores!r}")
        self.alpha = alpha
        self.output_dir = output_dir
        self.generate_description = bool(generate_description)
        self.n_cores = n_cores
        cores = {"n_cores": n_cores}
        self.main_estimator = _build(
            main_estimator, "main_estimator", CBMAWorkflow._estm_bases, self._main_options, cores
        )
        self.pairwise_estimator = _build(
            pairwise_estimator,
            "pairwise_estimator",
            (PairwiseCBMAEstimator,),
            self._pairwise_options,
            cores,
        )
        self.corrector = (
            FDRCorrector(method="indep")
            if corrector is None
            else _build(
                corrector, "corrector", (FWECorrector, FDRCorrector), self._corr_options, cores
            )
        )

    def __repr__(self) -> str:
        return (
            f"ContrastWorkflow(main_estimator={type(self.main_estimator).__name__}, "
            f"pairwise_estimator={type(self.pairwise_estimator).__name__}, "
            f"corrector={type(self.corrector).__name__}, alpha={self.alpha})"
        )

    def _check_cached(self, result: MetaResult, corrected: MetaResult) -> None:
        """Refuse a corrected result that is not ``result`` corrected by this corrector."""
        if corrected.corrector is None and not any("_corr-" in n for n in corrected.maps):
            raise ValueError("corr_result must be a corrected MetaResult")
        held = corrected.corrector
        if held is not None and (
            type(held) is not type(self.corrector)
            or held.get_params(deep=False) != self.corrector.get_params(deep=False)
        ):
            raise ValueError("corr_result was made by a different corrector or parameters")
        ids = [getattr(r.estimator, "inputs_", None) for r in (result, corrected)]
        ids = [None if i is None else i.get("id") for i in ids]
        if all(i is not None for i in ids) and not np.array_equal(ids[0], ids[1]):
            raise ValueError("corr_result does not match the study ids in result")
        sizes = {np.shape(next(iter(r.maps.values())))[0] for r in (result, corrected)}
        if len(sizes) > 1:
            raise ValueError(f"corr_result and result have different voxels: {sorted(sizes)}")

    def _main_effect(self, result: MetaResult, corrected) -> tuple:
        if corrected is None:
            corrected = self.corrector.transform(result)
        else:
            self._check_cached(result, corrected)
        return main_effect_map(corrected, self.alpha), corrected

    @fill_doc
    def fit(
        self,
        dataset1,
        dataset2,
        drop_invalid: bool = True,
        result1=None,
        result2=None,
        corr_result1=None,
        corr_result2=None,
    ) -> MetaResult:
        """Fit the main effects, the gated contrast, and threshold.

        Parameters
        ----------
        dataset1, dataset2 : nimare_jax.dataset.Dataset
            The groups (same mask).
        %(cbma_drop_invalid)s
        result1, result2 : MetaResult, optional
            Main-effect results already fitted (``main_estimator.fit(dataset)``).
        corr_result1, corr_result2 : MetaResult, optional
            Those results already corrected by ``corrector``; checked to match.

        Returns
        -------
        MetaResult
            The pairwise result with the maps listed in the class notes.
        """
        if not drop_invalid:
            raise ValueError("ContrastWorkflow supports only drop_invalid=True")
        result1 = self.main_estimator.fit(dataset1) if result1 is None else result1
        result2 = self.main_estimator.fit(dataset2) if result2 is None else result2
        map1, corrected1 = self._main_effect(result1, corr_result1)
        map2, corrected2 = self._main_effect(result2, corr_result2)
        pairwise = self.pairwise_estimator.fit(
            dataset1, dataset2, inference_map1=map1, inference_map2=map2
        )
        label = self.pairwise_estimator._contrast
        p = np.asarray(pairwise.maps[f"p_desc-{label}"], np.float64)
        z = np.asarray(pairwise.maps[f"z_desc-{label}"], np.float64)
        logp = np.asarray(pairwise.maps[f"logp_desc-{label}"], np.float64)
        z_thr = np.where(p <= self.alpha, z, 0.0)
        result = pairwise.copy()
        result.maps.update(
            {
                "z_desc-group1MainEffect": map1,
                "z_desc-group2MainEffect": map2,
                "z_desc-conjunction": np.minimum(map1, map2),
                "z_desc-contrast": z_thr.astype(np.float32),
                "p_desc-contrast": np.where(z_thr != 0, p, 1.0).astype(np.float32),
                "logp_desc-contrast": np.where(z_thr != 0, logp, 0.0).astype(np.float32),
            }
        )
        result.tables["contrast_tab-metadata"] = pd.DataFrame(
            [
                {
                    "alpha": self.alpha,
                    "main_estimator": type(self.main_estimator).__name__,
                    "pairwise_estimator": type(self.pairwise_estimator).__name__,
                    "corrector": type(self.corrector).__name__,
                }
            ]
        )
        if self.generate_description:
            result.description = self._description(corrected1, corrected2, pairwise)
            result.citations = tuple(
                dict.fromkeys(
                    (*corrected1.citations, *pairwise.citations, "Laird2005", "FrahmJALE")
                )
            )
        else:
            result.description, result.citations = "", ()
        if self.output_dir is not None:
            with staged_dir(self.output_dir) as tmp:
                result.save_maps(tmp)
                result.save_tables(tmp)
                result.save_boilerplate(tmp)
        return result

    def _description(self, corrected1, corrected2, pairwise) -> str:
        parts = [
            f"{what}: {r.description}"
            for what, r in (
                ("Group 1 main-effect analysis", corrected1),
                ("Group 2 main-effect analysis", corrected2),
                ("Pairwise contrast analysis", pairwise),
            )
            if r.description
        ]
        parts.append(
            "Masked contrast workflow: each group's main effect was corrected with "
            f"{type(self.corrector).__name__} and thresholded at alpha = {self.alpha}; the "
            f"thresholded maps were given to {type(self.pairwise_estimator).__name__} as "
            "directional inference masks, so that group 1 > group 2 was tested only where "
            "group 1 had a main effect and group 2 > group 1 only where group 2 had one, and "
            f"the contrast was thresholded at p <= {self.alpha}. This follows the "
            "main-effect-gated ALE subtraction [Laird2005] as implemented in JALE "
            "[FrahmJALE]."
        )
        return " ".join(parts)
