"""Annotation of study texts: term weights, topic models and Cognitive Atlas labels.

The public names and submodules are NiMARE 0.22.1's ``nimare.annotate`` ones; ``ontology``,
``topic`` and ``vector`` are the module paths early NiMARE documented.
"""

from nimare_jax.annotate import cogat, lda, ontology, text, topic, utils, vector
from nimare_jax.annotate.cogat import CogAtLemmatizer, expand_counts, extract_cogat
from nimare_jax.annotate.lda import LDAModel
from nimare_jax.annotate.text import generate_counts

__all__ = [
    "CogAtLemmatizer",
    "expand_counts",
    "extract_cogat",
    "LDAModel",
    "generate_counts",
    "cogat",
    "lda",
    "text",
    "utils",
    "ontology",
    "topic",
    "vector",
]
