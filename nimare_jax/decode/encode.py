"""Text-to-image encoding with a GC-LDA model (Rubin et al. 2017)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from sklearn.feature_extraction.text import CountVectorizer

from nimare_jax.decode.gclda import fitted_distribution
from nimare_jax.decode.utils import apply_topic_priors


def gclda_encode(model, text, out_file=None, topic_priors=None, prior_weight=1.0):
    """Encode text into a brain map with a GC-LDA model.

    The text is counted over the model's vocabulary (unigrams up to its longest n-gram);
    topic weights are ``sum_w count(w) p(topic | w)`` (optionally times
    :func:`~nimare_jax.decode.utils.weight_priors`); voxel weights are
    ``p(voxel | topic)`` times the topic weights.

    Parameters
    ----------
    model : nimare_jax.annotate.gclda.GCLDAModel
        A fitted model.
    text : str or list of str
        Text to encode (a list is joined with spaces).
    out_file : str or path, optional
        Write the image there. Default None.
    topic_priors : array-like, shape (n_topics,), optional
        Topic weights to apply. Default None (none).
    prior_weight : float, optional
        Weight of ``topic_priors`` against a uniform distribution. Default 1.0.

    Returns
    -------
    img : nibabel.Nifti1Image
        The voxel weights (float64) on the model's mask, zero outside it.
    topic_weights : numpy.ndarray, shape (n_topics,)
        The topic weights.

    Raises
    ------
    ValueError
        If no word of the vocabulary occurs in the text (NiMARE returns an all-zero map).
    """
    if isinstance(text, list | tuple):
        text = " ".join(text)
    longest = max(len(term.replace("_", " ").split(" ")) for term in model.vocabulary)
    vectorizer = CountVectorizer(vocabulary=model.vocabulary, ngram_range=(1, longest))
    counts = np.asarray(vectorizer.fit_transform([text]).toarray(), np.float64)[0]
    if not counts.any():
        raise ValueError(f"No term of the GC-LDA model's vocabulary occurs in the text {text!r}.")
    topic_weights = counts @ fitted_distribution(model, "p_topic_g_word_")
    topic_weights = apply_topic_priors(topic_weights, topic_priors, prior_weight)
    voxel_weights = fitted_distribution(model, "p_voxel_g_topic_") @ topic_weights
    inside = np.asarray(model.mask.dataobj) > 0
    volume = np.zeros(inside.shape, np.float64)
    volume[inside] = voxel_weights
    img = nib.Nifti1Image(volume, model.mask.affine)
    if out_file is not None:
        img.to_filename(out_file)
    return img, topic_weights
