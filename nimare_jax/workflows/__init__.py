"""Workflows: analyses composed end to end, writing their outputs (used by the CLI)."""

from nimare_jax.workflows.ale import ale_sleuth_workflow
from nimare_jax.workflows.cbma import CBMAWorkflow, ContrastWorkflow, PairwiseCBMAWorkflow
from nimare_jax.workflows.conperm import conperm_workflow
from nimare_jax.workflows.ibma import IBMAWorkflow
from nimare_jax.workflows.macm import macm_workflow
from nimare_jax.workflows.metacluster import metacluster_workflow
from nimare_jax.workflows.misc import conjunction_analysis
from nimare_jax.workflows.peaks2maps import peaks2maps_workflow
from nimare_jax.workflows.scale import scale_workflow

__all__ = [
    "CBMAWorkflow",
    "ContrastWorkflow",
    "IBMAWorkflow",
    "PairwiseCBMAWorkflow",
    "ale_sleuth_workflow",
    "conjunction_analysis",
    "conperm_workflow",
    "macm_workflow",
    "metacluster_workflow",
    "peaks2maps_workflow",
    "scale_workflow",
]
