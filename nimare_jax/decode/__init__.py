"""Decoding: from brain maps (or sets of experiments) to the features that describe them.

Submodules follow NiMARE 0.22.1: :mod:`~nimare_jax.decode.base` (the ``Decoder`` base
class with the feature selection shared by all decoders) and
:mod:`~nimare_jax.decode.continuous` (``CorrelationDecoder``,
``CorrelationDistributionDecoder``, ``gclda_decode_map``), :mod:`~nimare_jax.decode.discrete`
(``BrainMapDecoder``, ``NeurosynthDecoder``, ``ROIAssociationDecoder``, ``gclda_decode_roi``)
and :mod:`~nimare_jax.decode.encode` (``gclda_encode``); :mod:`~nimare_jax.decode.gclda`
holds the GCLDA decoders and :mod:`~nimare_jax.decode.utils` ``weight_priors``.
"""

from nimare_jax.decode import base, continuous, discrete, encode, gclda, utils

__all__ = ["base", "continuous", "discrete", "encode", "gclda", "utils"]
