"""Helpers shared by the decoders and encoders."""

from __future__ import annotations

import numpy as np


def weight_priors(topic_priors, prior_weight):
    """Mix normalised topic priors with a uniform distribution.

    Returns ``prior_weight * p + (1 - prior_weight) / n_topics`` where ``p`` is
    ``topic_priors`` scaled to sum to one; the input is not modified.

    Parameters
    ----------
    topic_priors : array-like, shape (n_topics,)
        Non-negative topic weights on any scale.
    prior_weight : float
        Weight of the priors against the uniform distribution, in [0, 1].

    Returns
    -------
    numpy.ndarray, shape (n_topics,)
        The weighted priors (they sum to one).

    Raises
    ------
    TypeError
        If ``prior_weight`` is not a number.
    ValueError
        If ``prior_weight`` is outside [0, 1] or the priors are not a non-negative 1-D
        array with a positive sum.

    Examples
    --------
    >>> weight_priors([1.0, 3.0], 0.5)
    array([0.375, 0.625])
    """
    if isinstance(prior_weight, bool) or not isinstance(prior_weight, int | float | np.number):
        raise TypeError(f"prior_weight must be a number in [0, 1], got {prior_weight!r}")
    if not 0.0 <= prior_weight <= 1.0:
        raise ValueError(f"prior_weight must be in [0, 1], got {prior_weight}")
    priors = np.array(topic_priors, dtype=np.float64)
    if priors.ndim != 1 or not np.isfinite(priors).all() or (priors < 0).any():
        raise ValueError("topic_priors must be a 1-D array of finite non-negative values")
    total = priors.sum()
    if total <= 0:
        raise ValueError("topic_priors must have a positive sum")
    prior_weight = float(prior_weight)
    return prior_weight * priors / total + (1.0 - prior_weight) / priors.size


def apply_topic_priors(topic_weights, topic_priors, prior_weight):
    """Multiply topic weights by :func:`weight_priors` (unchanged if ``topic_priors`` is None).

    Parameters
    ----------
    topic_weights : numpy.ndarray, shape (n_topics,)
        Topic weights of a decoding or encoding.
    topic_priors : array-like, shape (n_topics,) or None
        Topic priors.
    prior_weight : float
        Weight of the priors against a uniform distribution, in [0, 1].

    Returns
    -------
    numpy.ndarray, shape (n_topics,)
        The weighted topic weights (a new array).

    Raises
    ------
    ValueError
        If ``topic_priors`` does not have one value per topic.
    """
    if topic_priors is None:
        return np.array(topic_weights, dtype=np.float64)
    priors = weight_priors(topic_priors, prior_weight)
    if priors.shape != np.shape(topic_weights):
        raise ValueError(
            f"topic_priors has {priors.size} values; the model has {np.size(topic_weights)} topics"
        )
    return topic_weights * priors
