"""Numerics of the GC-LDA topic model: collapsed Gibbs sampling and its distributions.

Generalized correspondence LDA (Rubin et al. 2017) explains every study of a corpus by a
mixture of topics; a topic is a distribution over words and a mixture of ``R`` spatial
Gaussians ("subregions") over foci. One Gibbs iteration (:func:`run_iterations`) has three
steps:

1. **Word sweep.** Every word token in turn is removed from the counts and given a new topic
   with probability proportional to ``p(w|t) * (n_peaks(d, t) + gamma)``.
2. **Peak sweep.** Every focus in turn gets a new (topic, subregion) pair with probability
   proportional to ``p(x|t, r) * p(r|t) * (n_peaks(d, t) + alpha) *
   ((n_peaks(d, t) + gamma + 1) / (n_peaks(d, t) + gamma)) ** n_words(d, t)``, with
   ``p(x|t, r)`` the Gaussian density of the focus under every topic's subregions, evaluated
   in the step (the arithmetic of :func:`gaussian_densities`).
3. **Region update** (:func:`update_regions`): each subregion's mean and covariance from the
   sums and cross-products of its foci (segment sums), the covariance shrunk towards
   ``roi_size * I`` with weight ``n / (n + dobs)``; with ``symmetric=True`` the subregions
   come in pairs mirrored across ``x = 0``.

Steps 1 and 2 are the exact sequential collapsed sampler (a ``lax.scan`` over tokens, each
draw seeing the counts left by the previous one); the uniforms each sweep consumes are drawn
at once from a key ``fold_in(key, iteration)``, so a run depends only on the seed and on
the number of iterations, not on how they are split into calls. Everything else, and
:func:`probability_distributions` and :func:`log_likelihood`, is vectorised. Counts are
int32; probabilities are computed in float64 when called under ``jax.enable_x64(True)``
(as :class:`nimare_jax.annotate.gclda.GCLDAModel` does).

References
----------
Rubin et al. (2017) PLoS Comput Biol 13:e1005649 (GC-LDA); Newman et al. (2009) JMLR
10:1801 (the posterior-predictive log-likelihood).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

#: Points per block when evaluating Gaussian densities (bounds the temporaries).
_CHUNK = 4096
#: Weights per block in the two-level inverse-CDF draw of :func:`_draw_weights`.
_DRAW_BLOCK = 16
#: Word-sweep steps per loop iteration (amortises the loop overhead: ~13 % less CPU on laird).
_UNROLL = 2


class Corpus(NamedTuple):
    """Token-level description of a corpus (the data a model is fitted to).

    Attributes
    ----------
    wtoken_word, wtoken_doc : jax.Array, shape (n_word_tokens,), int32
        Word-type index and document index of every word token.
    ptoken_doc : jax.Array, shape (n_peak_tokens,), int32
        Document index of every focus.
    ptoken_coords : jax.Array, shape (n_peak_tokens, 3), float
        Focus coordinates in mm.
    """

    wtoken_word: jax.Array
    wtoken_doc: jax.Array
    ptoken_doc: jax.Array
    ptoken_coords: jax.Array


class Priors(NamedTuple):
    """Hyperparameters (scalars, traced: changing them does not recompile).

    Attributes
    ----------
    alpha, beta, gamma, delta : float
        Prior counts on topics per document, words per topic, peak counts when sampling word
        topics, and subregions per topic.
    roi_size : float
        Diagonal of the default covariance the estimates are shrunk towards (mm^2).
    dobs : float
        Pseudo-observations weighting the default covariance.
    """

    alpha: jax.Array
    beta: jax.Array
    gamma: jax.Array
    delta: jax.Array
    roi_size: jax.Array
    dobs: jax.Array


class State(NamedTuple):
    """Assignments, count matrices and spatial parameters of a GC-LDA model.

    Attributes
    ----------
    wtoken_topic : jax.Array, shape (n_word_tokens,), int32
        Topic of every word token.
    peak_topic, peak_region : jax.Array, shape (n_peak_tokens,), int32
        Topic and subregion of every focus.
    word_by_topic : jax.Array, shape (n_words, n_topics), int32
        Word tokens of each word type assigned to each topic.
    word_doc_by_topic, peak_doc_by_topic : jax.Array, shape (n_docs, n_topics), int32
        Word tokens / foci of each document assigned to each topic.
    region_by_topic : jax.Array, shape (n_regions, n_topics), int32
        Foci assigned to each subregion of each topic.
    regions_mu : jax.Array, shape (n_topics, n_regions, 3), float
        Subregion means (mm).
    regions_sigma : jax.Array, shape (n_topics, n_regions, 3, 3), float
        Subregion covariances (mm^2).
    """

    wtoken_topic: jax.Array
    peak_topic: jax.Array
    peak_region: jax.Array
    word_by_topic: jax.Array
    word_doc_by_topic: jax.Array
    peak_doc_by_topic: jax.Array
    region_by_topic: jax.Array
    regions_mu: jax.Array
    regions_sigma: jax.Array


def precision_and_log_norm(sigma):
    """Invert 3x3 covariances and return the log normalising constants of their Gaussians.

    The inverse is the transposed cofactor matrix over the determinant, written with cross
    products of the rows (exact arithmetic, no pivoting), so it is identical on any backend.

    Parameters
    ----------
    sigma : jax.Array, shape (..., 3, 3)
        Symmetric positive-definite covariances.

    Returns
    -------
    precision : jax.Array, shape (..., 3, 3)
        The inverses.
    log_norm : jax.Array, shape (...)
        ``-0.5 * (3 * log(2 pi) + log det sigma)``.
    """
    r0, r1, r2 = sigma[..., 0, :], sigma[..., 1, :], sigma[..., 2, :]
    cofactors = jnp.stack([jnp.cross(r1, r2), jnp.cross(r2, r0), jnp.cross(r0, r1)], axis=-1)
    det = jnp.sum(r0 * cofactors[..., :, 0], axis=-1)
    precision = cofactors / det[..., None, None]
    log_norm = -0.5 * (3.0 * jnp.log(2.0 * jnp.pi) + jnp.log(det))
    return precision, log_norm


def _quadratic_coefficients(regions_mu, regions_sigma):
    """Coefficients of each subregion's log-density as a linear function of point features.

    ``log p(x|t,r) = features(x) @ coefficients[:, t, r]`` with ``features(x) = (x_i x_j for
    i <= j, x, 1)``: the quadratic form ``(x - mu)' P (x - mu)`` expanded, so the densities of
    many points under all subregions are ten multiply-adds and an exp per value.
    """
    precision, log_norm = precision_and_log_norm(regions_sigma)
    rows, cols = jnp.triu_indices(3)
    off_diagonal = jnp.where(rows == cols, 1.0, 2.0)
    quad_terms = -0.5 * off_diagonal * precision[..., rows, cols]  # (T, R, 6)
    p_mu = jnp.einsum("trij,trj->tri", precision, regions_mu)
    constant = log_norm - 0.5 * jnp.sum(regions_mu * p_mu, axis=-1)
    coefficients = jnp.concatenate([quad_terms, p_mu, constant[..., None]], axis=-1)
    return jnp.moveaxis(coefficients, -1, 0)  # (10, T, R)


def _point_features(points):
    """``(x_i x_j for i <= j, x, 1)`` of each point: (n, 10), the log-density's regressors."""
    rows, cols = jnp.triu_indices(3)
    ones = jnp.ones((points.shape[0], 1), points.dtype)
    return jnp.concatenate([points[:, rows] * points[:, cols], points, ones], axis=1)


def _feature_densities(features, coefficients):
    """Gaussian densities from point features: (n, n_topics, n_regions)."""
    n_features, n_topics, n_regions = coefficients.shape
    flat = coefficients.reshape(n_features, n_topics * n_regions)
    # ten broadcast multiply-adds fuse with the exp into one loop (a K=10 dot product is slower)
    log_p = features[:, :1] * flat[0]
    for k in range(1, n_features):
        log_p = log_p + features[:, k : k + 1] * flat[k]
    return jnp.exp(log_p).reshape(-1, n_topics, n_regions)


def _densities_block(points, coefficients):
    """Gaussian densities of a block of points: (n, n_topics, n_regions)."""
    return _feature_densities(_point_features(points), coefficients)


def _blocked(fn, points, *args):
    """Apply ``fn(block, *args)`` to blocks of at most ``_CHUNK`` points and concatenate."""
    n = points.shape[0]
    n_blocks = -(-n // _CHUNK)
    size = -(-n // n_blocks)
    padded = jnp.zeros((n_blocks * size, points.shape[1]), points.dtype).at[:n].set(points)
    out = lax.map(lambda block: fn(block, *args), padded.reshape(n_blocks, size, -1))
    return out.reshape((n_blocks * size, *out.shape[2:]))[:n]


def gaussian_densities(points, regions_mu, regions_sigma):
    """Density of every point under every topic's subregion Gaussians.

    Parameters
    ----------
    points : jax.Array, shape (n_points, 3)
        Coordinates in mm.
    regions_mu : jax.Array, shape (n_topics, n_regions, 3)
        Means.
    regions_sigma : jax.Array, shape (n_topics, n_regions, 3, 3)
        Covariances.

    Returns
    -------
    jax.Array, shape (n_points, n_topics, n_regions)
        ``p(x | t, r)``.
    """
    coefficients = _quadratic_coefficients(regions_mu, regions_sigma)
    return _blocked(_densities_block, points, coefficients)


def _draw(cumulative, u):
    """Index drawn from unnormalised weights given their cumulative sums and a uniform.

    The first index whose cumulative weight exceeds ``u * total`` (inverse-CDF sampling).
    """
    threshold = u * cumulative[-1]
    return jnp.minimum(jnp.sum(cumulative <= threshold), cumulative.shape[0] - 1)


def _draw_weights(weights, u):
    """Inverse-CDF draw from 1-D unnormalised weights, in two levels of blocks.

    A cumulative sum costs O(n^2) on XLA's CPU backend (a reduce-window), so the index is
    found in two steps: the block of ``_DRAW_BLOCK`` weights whose cumulative block total
    first exceeds ``u * total``, then the index inside it. Up to rounding of the partial
    sums this is the index :func:`_draw` returns.
    """
    n = weights.shape[0]
    n_blocks = -(-n // _DRAW_BLOCK)
    blocks = jnp.zeros(n_blocks * _DRAW_BLOCK, weights.dtype).at[:n].set(weights)
    blocks = blocks.reshape(n_blocks, _DRAW_BLOCK)
    block_cumulative = jnp.cumsum(blocks.sum(axis=1))
    threshold = u * block_cumulative[-1]
    block = jnp.minimum(jnp.sum(block_cumulative <= threshold), n_blocks - 1)
    before = jnp.where(block > 0, block_cumulative[jnp.maximum(block - 1, 0)], 0.0)
    inner = jnp.cumsum(blocks[block])
    index = block * _DRAW_BLOCK + jnp.minimum(
        jnp.sum(inner <= threshold - before), _DRAW_BLOCK - 1
    )
    return jnp.minimum(index, n - 1)


@partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def initialize(key, corpus: Corpus, priors: Priors, n_words, n_docs, n_topics, n_regions, sym):
    """Draw the initial assignments and counts (spatial parameters left at zero).

    Foci get uniform topics and uniform subregions (with ``sym``: a uniform pair, the
    subregion of the pair on the focus' side of ``x = 0``); word tokens then get topics with
    probability proportional to ``n_peaks(d, t) + gamma``.

    Parameters
    ----------
    key : jax.Array
        PRNG key.
    corpus : Corpus
        The tokens.
    priors : Priors
        Hyperparameters (``gamma`` is used).
    n_words, n_docs, n_topics, n_regions : int
        Sizes (static).
    sym : bool
        Symmetric subregion pairs (static; ``n_regions`` even).

    Returns
    -------
    State
        The initial state.
    """
    k_topic, k_region, k_word = jax.random.split(key, 3)
    n_peaks = corpus.ptoken_doc.shape[0]
    peak_topic = jax.random.randint(k_topic, (n_peaks,), 0, n_topics, jnp.int32)
    if sym:
        pair = jax.random.randint(k_region, (n_peaks,), 0, n_regions // 2, jnp.int32)
        peak_region = 2 * pair + (corpus.ptoken_coords[:, 0] > 0).astype(jnp.int32)
    else:
        peak_region = jax.random.randint(k_region, (n_peaks,), 0, n_regions, jnp.int32)
    peak_doc_by_topic = (
        jnp.zeros((n_docs, n_topics), jnp.int32).at[corpus.ptoken_doc, peak_topic].add(1)
    )
    region_by_topic = (
        jnp.zeros((n_regions, n_topics), jnp.int32).at[peak_region, peak_topic].add(1)
    )
    cumulative = jnp.cumsum(peak_doc_by_topic + priors.gamma, axis=1)
    u = jax.random.uniform(k_word, corpus.wtoken_doc.shape, cumulative.dtype)
    wtoken_topic = jax.vmap(_draw)(cumulative[corpus.wtoken_doc], u).astype(jnp.int32)
    word_by_topic = (
        jnp.zeros((n_words, n_topics), jnp.int32).at[corpus.wtoken_word, wtoken_topic].add(1)
    )
    word_doc_by_topic = (
        jnp.zeros((n_docs, n_topics), jnp.int32).at[corpus.wtoken_doc, wtoken_topic].add(1)
    )
    dtype = cumulative.dtype
    return State(
        wtoken_topic=wtoken_topic,
        peak_topic=peak_topic,
        peak_region=peak_region,
        word_by_topic=word_by_topic,
        word_doc_by_topic=word_doc_by_topic,
        peak_doc_by_topic=peak_doc_by_topic,
        region_by_topic=region_by_topic,
        regions_mu=jnp.zeros((n_topics, n_regions, 3), dtype),
        regions_sigma=jnp.zeros((n_topics, n_regions, 3, 3), dtype),
    )


def word_sweep(key, state: State, corpus: Corpus, priors: Priors) -> State:
    """Resample the topic of every word token in order (collapsed Gibbs, exact).

    Parameters
    ----------
    key : jax.Array
        PRNG key of this sweep.
    state : State
        Current state.
    corpus : Corpus
        The tokens.
    priors : Priors
        Hyperparameters.

    Returns
    -------
    State
        The state with new word-token topics and word counts.
    """
    n_words = state.word_by_topic.shape[0]
    beta_vocabulary = priors.beta * n_words
    peak_doc = state.peak_doc_by_topic + priors.gamma  # fixed during the sweep
    u = jax.random.uniform(key, state.wtoken_topic.shape, peak_doc.dtype)

    topic_ids = jnp.arange(state.word_by_topic.shape[1], dtype=jnp.int32)

    def step(carry, token):
        word_topic, topic_total = carry
        word, doc, old, uniform = token
        # whole rows are read and written back once: fewer, cheaper ops than scatters
        removed = (topic_ids == old).astype(jnp.int32)
        word_row = lax.dynamic_index_in_dim(word_topic, word, keepdims=False) - removed
        topic_total = topic_total - removed
        weights = (word_row + priors.beta) / (topic_total + beta_vocabulary) * peak_doc[doc]
        new = _draw_weights(weights, uniform).astype(jnp.int32)
        added = (topic_ids == new).astype(jnp.int32)
        word_topic = lax.dynamic_update_index_in_dim(word_topic, word_row + added, word, 0)
        return (word_topic, topic_total + added), new

    # the document counts do not enter the word weights: rebuilt once after the sweep
    init = (state.word_by_topic, state.word_by_topic.sum(axis=0))
    tokens = (corpus.wtoken_word, corpus.wtoken_doc, state.wtoken_topic, u)
    (word_by_topic, _), topics = lax.scan(step, init, tokens, unroll=_UNROLL)
    word_doc_by_topic = (
        jnp.zeros_like(state.word_doc_by_topic).at[corpus.wtoken_doc, topics].add(1)
    )
    return state._replace(
        wtoken_topic=topics, word_by_topic=word_by_topic, word_doc_by_topic=word_doc_by_topic
    )


def peak_sweep(key, state: State, corpus: Corpus, priors: Priors) -> State:
    """Resample the (topic, subregion) pair of every focus in order (collapsed Gibbs, exact).

    Each step evaluates its focus' Gaussian densities under every topic's subregions
    (``p(x | t, r)``, the current spatial parameters; the arithmetic of
    :func:`gaussian_densities`) itself: ten multiply-adds and an exponential per value in
    registers, instead of writing and re-reading an (n_peak_tokens x n_topics x n_regions)
    array, which cost as much as the sweep on a Neurosynth-size corpus.

    Parameters
    ----------
    key : jax.Array
        PRNG key of this sweep.
    state : State
        Current state.
    corpus : Corpus
        The tokens.
    priors : Priors
        Hyperparameters.

    Returns
    -------
    State
        The state with new focus assignments and peak counts.
    """
    n_regions, n_topics = state.region_by_topic.shape
    word_doc = state.word_doc_by_topic  # fixed during the sweep
    coefficients = _quadratic_coefficients(state.regions_mu, state.regions_sigma)
    u = jax.random.uniform(key, state.peak_topic.shape, coefficients.dtype)

    region_ids = jnp.arange(n_regions, dtype=jnp.int32)[:, None]
    topic_ids = jnp.arange(n_topics, dtype=jnp.int32)

    def step(carry, token):
        region_topic, region_total, doc_topic = carry
        doc, old_topic, old_region, features, uniform = token
        density = _feature_densities(features[None, :], coefficients)[0]  # (n_topics, n_regions)
        removed_topic = (topic_ids == old_topic).astype(jnp.int32)
        region_topic = region_topic - (region_ids == old_region) * removed_topic
        region_total = region_total - removed_topic
        doc_row = lax.dynamic_index_in_dim(doc_topic, doc, keepdims=False) - removed_topic
        log_word_term = word_doc[doc] * jnp.log1p(1.0 / (doc_row + priors.gamma))
        word_term = jnp.exp(log_word_term - jnp.max(log_word_term))
        p_region = (region_topic + priors.delta) / (region_total + priors.delta * n_regions)
        weights = density.T * p_region * ((doc_row + priors.alpha) * word_term)
        flat = _draw_weights(weights.reshape(-1), uniform)
        region, topic = (flat // n_topics).astype(jnp.int32), (flat % n_topics).astype(jnp.int32)
        added_topic = (topic_ids == topic).astype(jnp.int32)
        region_topic = region_topic + (region_ids == region) * added_topic
        region_total = region_total + added_topic
        doc_topic = lax.dynamic_update_index_in_dim(doc_topic, doc_row + added_topic, doc, 0)
        return (region_topic, region_total, doc_topic), (topic, region)

    init = (state.region_by_topic, state.region_by_topic.sum(axis=0), state.peak_doc_by_topic)
    features = _point_features(corpus.ptoken_coords)  # (n_peak_tokens, 10), 80 bytes a focus
    tokens = (corpus.ptoken_doc, state.peak_topic, state.peak_region, features, u)
    (region_by_topic, _, peak_doc_by_topic), (topics, regions) = lax.scan(step, init, tokens)
    return state._replace(
        peak_topic=topics,
        peak_region=regions,
        region_by_topic=region_by_topic,
        peak_doc_by_topic=peak_doc_by_topic,
    )


def update_regions(state: State, corpus: Corpus, priors: Priors, sym: bool) -> State:
    """Re-estimate every subregion's mean and covariance from the foci assigned to it.

    With ``n`` foci, the mean is their centroid (zero if ``n == 0``) and the covariance
    ``c * S + (1 - c) * roi_size * I`` with ``c = n / (n + dobs)`` and ``S`` the unbiased
    sample covariance (``roi_size * I`` if ``n <= 1``). With ``sym``, subregions ``2k`` and
    ``2k + 1`` share one mean mirrored across ``x = 0``: its ``|x|`` is the count-weighted
    mean of ``-x`` over the first and ``x`` over the second, its ``y, z`` the pooled mean.

    Parameters
    ----------
    state : State
        Current state (assignments and ``region_by_topic``).
    corpus : Corpus
        The tokens.
    priors : Priors
        Hyperparameters (``roi_size``, ``dobs``).
    sym : bool
        Symmetric subregion pairs.

    Returns
    -------
    State
        The state with new ``regions_mu`` and ``regions_sigma``.
    """
    n_topics, n_regions = state.regions_mu.shape[:2]
    coords = corpus.ptoken_coords
    segment = state.peak_topic * n_regions + state.peak_region
    n_segments = n_topics * n_regions
    sums = jax.ops.segment_sum(coords, segment, n_segments).reshape(n_topics, n_regions, 3)
    outer = coords[:, :, None] * coords[:, None, :]
    cross = jax.ops.segment_sum(outer, segment, n_segments).reshape(n_topics, n_regions, 3, 3)
    n = state.region_by_topic.T.astype(coords.dtype)  # (n_topics, n_regions)

    default = priors.roi_size * jnp.eye(3, dtype=coords.dtype)
    safe_n = jnp.maximum(n, 2.0)[..., None, None]
    sample_cov = (cross - sums[..., :, None] * sums[..., None, :] / safe_n) / (safe_n - 1.0)
    c_hat = jnp.where((n > 1)[..., None, None], sample_cov, default)
    shrink = (n / (n + priors.dobs))[..., None, None]
    sigma = shrink * c_hat + (1.0 - shrink) * default

    if sym:
        pairs = (n_topics, n_regions // 2, 2)
        n_p, sums_p = n.reshape(pairs), sums.reshape((*pairs, 3))
        total = n_p.sum(axis=-1)
        safe_total = jnp.where(total > 0, total, 1.0)[..., None]
        abs_x = (sums_p[..., 1, 0] - sums_p[..., 0, 0])[..., None] / safe_total
        rest = (sums_p[..., 0, 1:] + sums_p[..., 1, 1:]) / safe_total
        pair_mu = jnp.stack(
            [jnp.concatenate([-abs_x, rest], -1), jnp.concatenate([abs_x, rest], -1)], axis=-2
        )
        mu = jnp.where((total > 0)[..., None, None], pair_mu, 0.0).reshape(n_topics, n_regions, 3)
    else:
        mu = jnp.where((n > 0)[..., None], sums / jnp.maximum(n, 1.0)[..., None], 0.0)
    return state._replace(regions_mu=mu, regions_sigma=sigma)


@partial(jax.jit, static_argnames="sym")
def run_iterations(key, start, stop, state: State, corpus: Corpus, priors: Priors, sym: bool):
    """Run Gibbs iterations ``start + 1 .. stop`` (word sweep, peak sweep, region update).

    Iteration ``i`` draws from ``fold_in(key, i)``, so running 0..10 then 10..20 gives the
    same state as 0..20. ``start`` and ``stop`` are traced: any split reuses one program.

    Parameters
    ----------
    key : jax.Array
        Root PRNG key of the model.
    start, stop : int
        Iterations already run, and the iteration to stop after.
    state : State
        Current state (spatial parameters already estimated).
    corpus : Corpus
        The tokens.
    priors : Priors
        Hyperparameters.
    sym : bool
        Symmetric subregion pairs (static).

    Returns
    -------
    State
        The state after iteration ``stop``.
    """

    def body(i, current):
        k_word, k_peak = jax.random.split(jax.random.fold_in(key, i + 1))
        current = word_sweep(k_word, current, corpus, priors)
        current = peak_sweep(k_peak, current, corpus, priors)
        return update_regions(current, corpus, priors, sym)

    return lax.fori_loop(start, stop, body, state)


update_regions_jit = jax.jit(update_regions, static_argnames="sym")


@jax.jit
def log_likelihood(state: State, corpus: Corpus, priors: Priors):
    """Posterior-predictive log-likelihood of the foci and word tokens (Newman et al. 2009).

    ``p(x | d) = sum_{t, r} p(t | d) p(r | t) p(x | t, r)`` with ``p(t | d)`` from the peak
    counts plus ``alpha``; ``p(w | d) = sum_t p(t | d) p(w | t)`` with ``p(t | d)`` from
    the peak counts plus ``gamma`` and ``p(w | t)`` from the word counts plus ``beta``.

    Parameters
    ----------
    state : State
        Current state.
    corpus : Corpus
        The tokens to evaluate (documents indexed as in ``state``).
    priors : Priors
        Hyperparameters.

    Returns
    -------
    jax.Array, shape (3,)
        Log-likelihood of the foci, of the word tokens, and their sum.
    """
    peaks = state.peak_doc_by_topic
    dtype = corpus.ptoken_coords.dtype
    doc_y = (peaks + priors.alpha) / jnp.sum(peaks + priors.alpha, axis=1, keepdims=True)
    doc_z = (peaks + priors.gamma) / jnp.sum(peaks + priors.gamma, axis=1, keepdims=True)
    regions = state.region_by_topic + priors.delta
    p_region = regions / regions.sum(axis=0)  # (n_regions, n_topics)
    words = state.word_by_topic + priors.beta
    p_word = (words / words.sum(axis=0)).astype(dtype)  # (n_words, n_topics)
    coefficients = _quadratic_coefficients(state.regions_mu, state.regions_sigma)

    # Blocks of foci and of word tokens (indices carried as exact floats beside the
    # coordinates): neither the foci x topics x regions densities nor the documents x words
    # product is formed (0.8 and 0.4 GB on a Neurosynth-size corpus).
    def log_p_x(block):
        densities = _densities_block(block[:, :3], coefficients)
        doc = block[:, 3].astype(jnp.int32)
        return jnp.log(jnp.einsum("nt,rt,ntr->n", doc_y[doc], p_region, densities))

    def log_p_w(block):
        doc, word = block[:, 0].astype(jnp.int32), block[:, 1].astype(jnp.int32)
        return jnp.log(jnp.sum(doc_z[doc] * p_word[word], axis=1))

    foci = jnp.concatenate([corpus.ptoken_coords, corpus.ptoken_doc[:, None].astype(dtype)], 1)
    x_ll = jnp.sum(_blocked(log_p_x, foci))
    tokens = jnp.stack([corpus.wtoken_doc, corpus.wtoken_word], axis=1).astype(dtype)
    w_ll = jnp.sum(_blocked(log_p_w, tokens))
    return jnp.stack([x_ll, w_ll, x_ll + w_ll])


def _normalise(x, axis):
    """``x`` divided by its sum along ``axis``; zero where that sum is zero."""
    total = jnp.sum(x, axis=axis, keepdims=True)
    return jnp.where(total > 0, x / jnp.where(total > 0, total, 1), 0)


def _topic_densities_block(points, coefficients):
    """Sum over subregions of the densities of a block of points: (n, n_topics)."""
    return _densities_block(points, coefficients).sum(axis=-1)


@jax.jit
def probability_distributions(mask_xyz, word_by_topic, regions_mu, regions_sigma):
    """Compute the four conditional distributions of a fitted model.

    Parameters
    ----------
    mask_xyz : jax.Array, shape (n_voxels, 3)
        Coordinates (mm) of the mask voxels.
    word_by_topic : jax.Array, shape (n_words, n_topics)
        Word-token counts.
    regions_mu, regions_sigma : jax.Array
        Spatial parameters, shapes (n_topics, n_regions, 3) and (n_topics, n_regions, 3, 3).

    Returns
    -------
    tuple of jax.Array
        ``p_topic_g_voxel`` and ``p_voxel_g_topic`` (n_voxels, n_topics) from the topics'
        summed subregion densities at each voxel, ``p_topic_g_word`` and ``p_word_g_topic``
        (n_words, n_topics) from the counts; rows or columns with zero total are zero.
    """
    coefficients = _quadratic_coefficients(regions_mu, regions_sigma)
    spatial = _blocked(_topic_densities_block, mask_xyz, coefficients)
    counts = word_by_topic.astype(mask_xyz.dtype)
    return (
        _normalise(spatial, 1),
        _normalise(spatial, 0),
        _normalise(counts, 1),
        _normalise(counts, 0),
    )
