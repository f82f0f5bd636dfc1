"""Topic models under the module path early NiMARE documented (``annotate.topic``).

The same objects as :mod:`nimare_jax.annotate.lda`.
"""

from nimare_jax.annotate.lda import LDAModel

__all__ = ["LDAModel"]
