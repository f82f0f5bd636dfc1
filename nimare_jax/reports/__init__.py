"""Reports: methods boilerplate with citations (and, later, figures and cluster tables)."""

from nimare_jax.reports.boilerplate import bibtex, cited_keys, format_boilerplate, load_references

__all__ = ["bibtex", "cited_keys", "format_boilerplate", "load_references"]
