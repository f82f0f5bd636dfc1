"""Image-to-text decoding with a GC-LDA model (Rubin et al. 2017).

:func:`gclda_decode_roi` (a binary region) and :func:`gclda_decode_map` (a continuous map)
weight the topics by ``p(topic | voxel)`` over the input, then the words by
``p(word | topic)``. NiMARE 0.22.1 exposes them from ``nimare.decode.discrete`` and
``nimare.decode.continuous``. The text-to-image direction is
:func:`nimare_jax.decode.encode.gclda_encode`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nimare_jax.decode.utils import apply_topic_priors
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import ImageError
from nimare_jax.spatial import check_same_space, load_image


def fitted_distribution(model, name):
    """Return a fitted ``p_*_`` array of a GC-LDA model, or raise if the model is not fitted.

    Parameters
    ----------
    model : nimare_jax.annotate.gclda.GCLDAModel
        The model.
    name : str
        Attribute name, e.g. ``"p_topic_g_voxel_"``.

    Returns
    -------
    numpy.ndarray
        The array.
    """
    values = getattr(model, name, None)
    if values is None:
        raise ValueError(f"The GC-LDA model has no {name}: call model.fit() first.")
    return np.asarray(values, dtype=np.float64)


def _word_table(model, topic_weights):
    """Word weights ``p(word | topic) @ topic_weights`` as a ``Term``-indexed table."""
    words = fitted_distribution(model, "p_word_g_topic_") @ topic_weights
    table = pd.DataFrame({"Weight": words}, index=pd.Index(model.vocabulary, name="Term"))
    return table


def _in_model_grid(model, img, what):
    """Voxel values of ``img`` at the model's mask voxels (``img`` on the mask's grid)."""
    img = load_image(img, what)
    check_same_space(img, model.mask, f"{what} and the GC-LDA model's mask")
    mask = np.asarray(model.mask.dataobj) > 0
    return np.asarray(img.dataobj)[mask]


@fill_doc
def gclda_decode_roi(model, roi, topic_priors=None, prior_weight=1.0):
    """Decode a binary region of interest into word weights with a GC-LDA model.

    Topic weights are ``p(topic | voxel)`` summed over the ROI's voxels inside the model's
    mask (optionally times :func:`~nimare_jax.decode.utils.weight_priors`); word weights are
    ``p(word | topic)`` times the topic weights.

    Parameters
    ----------
    model : nimare_jax.annotate.gclda.GCLDAModel
        A fitted model.
    roi : str, path or nibabel.Nifti1Image
        Binary image (non-zero voxels are the region) on the grid of ``model.mask``.
    %(gclda_priors)s

    Returns
    -------
    %(gclda_decoded)s

    Raises
    ------
    ImageError
        If the ROI is on another grid than the mask (NiMARE raises ``ValueError``; this is
        a subclass) or has no voxel inside the mask (NiMARE returns zero weights).
    """
    inside = _in_model_grid(model, roi, "roi") != 0
    if not inside.any():
        raise ImageError("The ROI has no voxel inside the GC-LDA model's mask.")
    p_topic_g_voxel = fitted_distribution(model, "p_topic_g_voxel_")
    topic_weights = apply_topic_priors(
        p_topic_g_voxel[inside].sum(axis=0), topic_priors, prior_weight
    )
    return _word_table(model, topic_weights), topic_weights


@fill_doc
def gclda_decode_map(model, image, topic_priors=None, prior_weight=1):
    """Decode a continuous brain map into word weights with a GC-LDA model.

    Topic weights are ``p(topic | voxel)^T @ values`` over the model's mask voxels
    (optionally times :func:`~nimare_jax.decode.utils.weight_priors`); word weights are
    ``p(word | topic)`` times the topic weights. Computed in float64 (NiMARE reads the map
    as float32; the results differ by float32 rounding of the map, about 1e-7 relative).

    Parameters
    ----------
    model : nimare_jax.annotate.gclda.GCLDAModel
        A fitted model.
    image : str, path or nibabel.Nifti1Image
        Map on the grid of ``model.mask``.
    %(gclda_priors)s

    Returns
    -------
    %(gclda_decoded)s

    Raises
    ------
    ImageError
        If the map is on another grid than the mask or has non-finite values in the mask.
    """
    values = _in_model_grid(model, image, "image").astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageError("The image has NaN or infinite values inside the GC-LDA model's mask.")
    p_topic_g_voxel = fitted_distribution(model, "p_topic_g_voxel_")
    topic_weights = apply_topic_priors(p_topic_g_voxel.T @ values, topic_priors, prior_weight)
    return _word_table(model, topic_weights), topic_weights
