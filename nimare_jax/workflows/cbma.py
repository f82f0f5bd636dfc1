"""Coordinate-based meta-analysis workflows: :class:`CBMAWorkflow`, :class:`PairwiseCBMAWorkflow`.

See :mod:`nimare_jax.workflows.base` for what a workflow does and writes.
"""

from __future__ import annotations

from nimare_jax.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity
from nimare_jax.results import MetaResult
from nimare_jax.workflows.base import Workflow

__all__ = ["CBMAWorkflow", "PairwiseCBMAWorkflow"]


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
    voxel_thresh, cluster_threshold, output_dir, n_cores
        See :class:`~nimare_jax.workflows.base.Workflow`.

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
    voxel_thresh, cluster_threshold, output_dir, n_cores
        See :class:`~nimare_jax.workflows.base.Workflow`.
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
