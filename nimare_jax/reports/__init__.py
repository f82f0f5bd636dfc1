"""Reports: cluster tables, and the methods boilerplate (from :mod:`nimare_jax.references`)."""

from nimare_jax.references import bibtex, cited_keys, format_boilerplate, load_references
from nimare_jax.reports.clusters import atlas_labels, cluster_table, load_atlas

__all__ = [
    "atlas_labels",
    "bibtex",
    "cited_keys",
    "cluster_table",
    "format_boilerplate",
    "load_atlas",
    "load_references",
]
