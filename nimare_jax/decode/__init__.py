"""Decoding: from brain maps (or sets of experiments) to the features that describe them.

Submodules follow NiMARE 0.22.1: :mod:`~nimare_jax.decode.base` (the ``Decoder`` base
class with the feature selection shared by all decoders) and
:mod:`~nimare_jax.decode.continuous` (``CorrelationDecoder``,
``CorrelationDistributionDecoder``).
"""

from nimare_jax.decode import base, continuous

__all__ = ["base", "continuous"]
