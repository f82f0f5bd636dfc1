"""Topic models under the module path early NiMARE documented (``annotate.topic``).

The same objects as :mod:`nimare_jax.annotate.lda` and :mod:`nimare_jax.annotate.gclda`.
"""

from nimare_jax.annotate.gclda import GCLDAModel
from nimare_jax.annotate.lda import LDAModel

__all__ = ["GCLDAModel", "LDAModel"]
