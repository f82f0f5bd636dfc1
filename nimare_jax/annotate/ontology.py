"""Cognitive Atlas tools under the module path early NiMARE documented (``annotate.ontology``).

The same objects as :mod:`nimare_jax.annotate.cogat`.
"""

from nimare_jax.annotate.cogat import CogAtLemmatizer, expand_counts, extract_cogat

__all__ = ["CogAtLemmatizer", "expand_counts", "extract_cogat"]
