"""Annotation of study texts: term weights, topic models and Cognitive Atlas labels.

The public names and submodules are NiMARE 0.22.1's ``nimare.annotate`` ones; ``ontology``,
``topic`` and ``vector`` are the module paths early NiMARE documented.
"""

from nimare_jax.annotate import lda, text
from nimare_jax.annotate.lda import LDAModel
from nimare_jax.annotate.text import generate_counts

__all__ = ["LDAModel", "generate_counts", "lda", "text"]
