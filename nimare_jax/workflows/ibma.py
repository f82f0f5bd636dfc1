"""Image-based meta-analysis workflow: :class:`IBMAWorkflow`.

See :mod:`nimare_jax.workflows.base` for what a workflow does and writes.
"""

from __future__ import annotations

from nimare_jax.correct import FDRCorrector
from nimare_jax.diagnostics import Jackknife
from nimare_jax.docstrings import fill_doc
from nimare_jax.meta.ibma import IBMAEstimator, Stouffers
from nimare_jax.results import MetaResult
from nimare_jax.transforms import ImageTransformer
from nimare_jax.workflows.base import Workflow

__all__ = ["IBMAWorkflow"]

#: Image types an IBMA estimator may need; missing ones are derived when possible.
_IMAGE_TYPES = ("z", "beta", "varcope")


@fill_doc
class IBMAWorkflow(Workflow):
    """Image-based meta-analysis, correction and diagnostics in one call.

    Parameters
    ----------
    estimator : IBMAEstimator (instance or class) or str, optional
        ``"stouffers"``, ``"fishers"``, ``"permutedols"``, ``"wleastsquares"``,
        ``"dersimonianlaird"``, ``"hedges"``, ``"samplesizebl"`` or ``"variancebl"``.
        Default :class:`~nimare_jax.meta.ibma.Stouffers`.
    corrector : FWECorrector, FDRCorrector (instance or class) or str, optional
        Default ``FDRCorrector(method="indep")``.
    diagnostics : Jackknife (instance or class), ``"jackknife"`` or a list, optional
        Default :class:`~nimare_jax.diagnostics.Jackknife`.
    %(workflow_options)s
    """

    _estm_bases = (IBMAEstimator,)
    _estm_options = (
        "stouffers",
        "fishers",
        "permutedols",
        "wleastsquares",
        "dersimonianlaird",
        "hedges",
        "samplesizebl",
        "variancebl",
    )
    _diag_options = ("jackknife",)
    _mcc_method = "indep"
    _estm_default = Stouffers
    _corr_default = FDRCorrector
    _diag_default = Jackknife

    def fit(self, dataset) -> MetaResult:
        """Derive missing image types, fit, correct, run the diagnostics, write outputs.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Experiments with images. Image types (z, beta, varcope) missing for some
            experiments are computed from the others where possible (written beside the
            dataset's images, as :class:`~nimare_jax.transforms.ImageTransformer` does).

        Returns
        -------
        MetaResult
            Corrected maps, cluster and contribution tables, label maps.
        """
        images = dataset.images
        missing = [t for t in _IMAGE_TYPES if t not in images.columns or images[t].isna().any()]
        if missing and len(images.columns) > 1:
            dataset = ImageTransformer(target=missing).transform(dataset)
        return self._transform(self.estimator.fit(dataset))
