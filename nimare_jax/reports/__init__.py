"""Reports: the HTML report, its figures, cluster tables, and the methods boilerplate.

The boilerplate functions come from :mod:`nimare_jax.references`.
"""

from nimare_jax.references import bibtex, cited_keys, format_boilerplate, load_references
from nimare_jax.reports.base import Report, run_reports
from nimare_jax.reports.clusters import atlas_labels, cluster_table, load_atlas
from nimare_jax.reports.figures import plot_coordinates, plot_heatmap, plot_static_brain

__all__ = [
    "Report",
    "atlas_labels",
    "bibtex",
    "cited_keys",
    "cluster_table",
    "format_boilerplate",
    "load_atlas",
    "load_references",
    "plot_coordinates",
    "plot_heatmap",
    "plot_static_brain",
    "run_reports",
]
