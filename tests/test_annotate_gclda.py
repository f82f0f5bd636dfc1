"""GCLDAModel against NiMARE 0.22.1 (tests/data/gclda, made by make_reference.py there).

Deterministic parts (distributions, log-likelihood, region updates) must equal NiMARE's to
1e-10 relative given the same state; the sampler is checked step by step against a plain
NumPy transcription of the sequential collapsed Gibbs updates fed the same uniforms, and
statistically (log-likelihood after 200 iterations, recovery of planted topics).
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment
from test_compilation import count_traces

from nimare_jax.annotate.gclda import GCLDAModel
from nimare_jax.exceptions import DatasetError
from nimare_jax.ops import gclda as ops_gclda

DATA = Path(__file__).parent / "data" / "gclda"
RTOL = 1e-10


def load_corpus():
    """Laird word counts and foci as NiMARE's reference script built them."""
    with np.load(DATA / "laird_corpus.npz") as f:
        counts = pd.DataFrame(f["counts"], index=f["ids"], columns=f["vocabulary"])
        coords = pd.DataFrame(f["coords"], columns=["x", "y", "z"])
        coords.insert(0, "id", f["coord_ids"])
    return counts, coords


def load_state(name):
    with np.load(DATA / f"state_{name}.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def set_state(model, ref):
    """Give ``model`` NiMARE's assignments and spatial parameters (counts rebuilt in NumPy)."""
    data, n_topics = model.data, int(ref["n_topics"])
    n_docs, n_words = len(model.ids), len(model.vocabulary)

    def tally(rows, cols, shape):
        out = np.zeros(shape, np.int64)
        np.add.at(out, (rows, cols), 1)
        return out

    wt, pt, pr = ref["wtoken_topic_idx"], ref["peak_topic_idx"], ref["peak_region_idx"]
    model.topics.update(
        wtoken_topic_idx=wt,
        peak_topic_idx=pt,
        peak_region_idx=pr,
        n_word_tokens_word_by_topic=tally(data["wtoken_word_idx"], wt, (n_words, n_topics)),
        n_word_tokens_doc_by_topic=tally(data["wtoken_doc_idx"], wt, (n_docs, n_topics)),
        n_peak_tokens_doc_by_topic=tally(data["ptoken_doc_idx"], pt, (n_docs, n_topics)),
        n_peak_tokens_region_by_topic=tally(pr, pt, (int(ref["n_regions"]), n_topics)),
        regions_mu=ref["regions_mu"][:, :, None, :],
        regions_sigma=ref["regions_sigma"],
    )


def model_like(corpus, ref):
    return GCLDAModel(
        *corpus,
        n_topics=int(ref["n_topics"]),
        n_regions=int(ref["n_regions"]),
        symmetric=bool(ref["symmetric"]),
        seed_init=int(ref["seed_init"]),
    )


@pytest.mark.parametrize("name", ["symmetric", "asymmetric"])
def test_distributions_and_log_likelihood_match_nimare(corpus, name):
    ref = load_state(name)
    model = model_like(corpus, ref)
    assert model.data["mask_xyz"].shape[0] == ref["n_mask_voxels"]
    set_state(model, ref)
    dists = model.get_probability_distributions()
    rows = [ref["vox_rows"], ref["vox_rows"], ref["word_rows"], ref["word_rows"]]
    keys = ["p_topic_g_voxel", "p_voxel_g_topic", "p_topic_g_word", "p_word_g_topic"]
    for values, row, key in zip(dists, rows, keys, strict=True):
        np.testing.assert_allclose(values[row], ref[key], rtol=RTOL, atol=0, err_msg=key)
    # p(topic|voxel) rows and p(voxel|topic) columns sum to one
    np.testing.assert_allclose(dists[0].sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(dists[1].sum(axis=0), 1.0, rtol=1e-12)
    ll = model.compute_log_likelihood(update_vectors=False)
    np.testing.assert_allclose(ll, ref["loglikelihood"], rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", ["symmetric", "asymmetric"])
def test_region_update_matches_nimare(corpus, name):
    """NiMARE's last step re-estimated the regions from the final assignments: do the same."""
    ref = load_state(name)
    model = model_like(corpus, ref)
    set_state(model, ref)
    with jax.enable_x64(True):
        state = ops_gclda.update_regions(
            model._state(), model._corpus(), model._priors(), bool(ref["symmetric"])
        )
    np.testing.assert_allclose(state.regions_mu, ref["regions_mu"], rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(state.regions_sigma, ref["regions_sigma"], rtol=RTOL, atol=1e-12)


def numpy_word_sweep(u, tokens, counts, beta, gamma):
    """Sequential collapsed Gibbs word sweep, one token at a time, in NumPy."""
    words, docs, topics = tokens
    word_topic, doc_topic, peak_doc = (c.copy() for c in counts)
    total = word_topic.sum(axis=0)
    new_topics = topics.copy()
    for i, (w, d, z) in enumerate(zip(words, docs, topics, strict=True)):
        word_topic[w, z] -= 1
        total[z] -= 1
        doc_topic[d, z] -= 1
        weights = (word_topic[w] + beta) / (total + beta * word_topic.shape[0])
        weights = weights * (peak_doc[d] + gamma)
        cumulative = np.cumsum(weights)
        z = int(np.argmax(cumulative > u[i] * cumulative[-1]))
        word_topic[w, z] += 1
        total[z] += 1
        doc_topic[d, z] += 1
        new_topics[i] = z
    return new_topics, word_topic, doc_topic


def numpy_peak_sweep(u, docs, topics, regions, densities, counts, priors):
    """Sequential collapsed Gibbs sweep over foci (topic and subregion jointly), in NumPy."""
    region_topic, doc_topic, word_doc = (c.copy() for c in counts)
    alpha, gamma, delta = priors
    n_regions, n_topics = region_topic.shape
    new_topics, new_regions = topics.copy(), regions.copy()
    for i, (d, t, r) in enumerate(zip(docs, topics, regions, strict=True)):
        region_topic[r, t] -= 1
        doc_topic[d, t] -= 1
        ratio = (doc_topic[d] + gamma + 1.0) / (doc_topic[d] + gamma)
        word_term = np.exp(word_doc[d] * np.log(ratio) - np.max(word_doc[d] * np.log(ratio)))
        p_region = (region_topic + delta) / (region_topic.sum(axis=0) + n_regions * delta)
        weights = densities[i].T * p_region * (doc_topic[d] + alpha) * word_term
        cumulative = np.cumsum(weights.ravel())
        flat = int(np.argmax(cumulative > u[i] * cumulative[-1]))
        r, t = divmod(flat, n_topics)
        region_topic[r, t] += 1
        doc_topic[d, t] += 1
        new_topics[i], new_regions[i] = t, r
    return new_topics, new_regions, region_topic, doc_topic


def test_sweeps_equal_sequential_numpy_sampler(corpus):
    """Each sweep is the exact sequential sampler: same uniforms, same draws as NumPy's loop."""
    model = GCLDAModel(*corpus, n_topics=5, seed_init=3)
    priors_np = model.params
    with jax.enable_x64(True):
        data, priors = model._corpus(), model._priors()
        state = ops_gclda.update_regions(model._state(), data, priors, True)
        key_w, key_p = jax.random.split(jax.random.key(11))
        after_words = jax.jit(ops_gclda.word_sweep)(key_w, state, data, priors)
        u_words = np.asarray(jax.random.uniform(key_w, data.wtoken_word.shape, jnp.float64))
        densities = ops_gclda.gaussian_densities(
            data.ptoken_coords, state.regions_mu, state.regions_sigma
        )
        after_peaks = jax.jit(ops_gclda.peak_sweep)(key_p, after_words, data, priors)
        u_peaks = np.asarray(jax.random.uniform(key_p, data.ptoken_doc.shape, jnp.float64))

    t = model.topics
    topics, word_topic, doc_topic = numpy_word_sweep(
        u_words,
        (model.data["wtoken_word_idx"], model.data["wtoken_doc_idx"], t["wtoken_topic_idx"]),
        (
            t["n_word_tokens_word_by_topic"],
            t["n_word_tokens_doc_by_topic"],
            t["n_peak_tokens_doc_by_topic"],
        ),
        priors_np["beta"],
        priors_np["gamma"],
    )
    assert (topics != t["wtoken_topic_idx"]).mean() > 0.1  # the sweep moved tokens
    np.testing.assert_array_equal(after_words.wtoken_topic, topics)
    np.testing.assert_array_equal(after_words.word_by_topic, word_topic)
    np.testing.assert_array_equal(after_words.word_doc_by_topic, doc_topic)

    # independent Gaussian densities for the peak sweep
    coords = model.data["ptoken_coords"]
    mu, sigma = np.asarray(state.regions_mu), np.asarray(state.regions_sigma)
    diff = coords[:, None, None, :] - mu[None]
    quad = np.einsum("ntri,trij,ntrj->ntr", diff, np.linalg.inv(sigma), diff)
    dens_np = np.exp(-0.5 * quad) / np.sqrt((2 * np.pi) ** 3 * np.linalg.det(sigma))
    np.testing.assert_allclose(densities, dens_np, rtol=1e-10)
    new_topics, new_regions, region_topic, peak_doc = numpy_peak_sweep(
        u_peaks,
        model.data["ptoken_doc_idx"],
        t["peak_topic_idx"],
        t["peak_region_idx"],
        dens_np,
        (t["n_peak_tokens_region_by_topic"], t["n_peak_tokens_doc_by_topic"], doc_topic),
        (priors_np["alpha"], priors_np["gamma"], priors_np["delta"]),
    )
    assert (new_topics != t["peak_topic_idx"]).mean() > 0.1
    np.testing.assert_array_equal(after_peaks.peak_topic, new_topics)
    np.testing.assert_array_equal(after_peaks.peak_region, new_regions)
    np.testing.assert_array_equal(after_peaks.region_by_topic, region_topic)
    np.testing.assert_array_equal(after_peaks.peak_doc_by_topic, peak_doc)


def test_fit_counts_consistent_reproducible_and_chunk_independent(corpus):
    a = GCLDAModel(*corpus, n_topics=6, n_regions=4, seed_init=5)
    a.fit(n_iters=6, loglikely_freq=3)
    b = GCLDAModel(*corpus, n_topics=6, n_regions=4, seed_init=5)
    b.fit(n_iters=2, loglikely_freq=2)
    b.fit(n_iters=6, loglikely_freq=3)
    c = GCLDAModel(*corpus, n_topics=6, n_regions=4, seed_init=6)
    c.fit(n_iters=6, loglikely_freq=3)
    for key in ("wtoken_topic_idx", "peak_topic_idx", "peak_region_idx", "regions_sigma"):
        np.testing.assert_array_equal(a.topics[key], b.topics[key])
    assert (a.topics["wtoken_topic_idx"] != c.topics["wtoken_topic_idx"]).any()
    assert a.loglikelihood["iter"] == [0, 3, 6]
    assert b.loglikelihood["iter"] == [0, 2, 3, 6]
    # the count matrices are the tallies of the assignments
    t, data = a.topics, a.data
    doc_topic = np.zeros_like(t["n_peak_tokens_doc_by_topic"])
    np.add.at(doc_topic, (data["ptoken_doc_idx"], t["peak_topic_idx"]), 1)
    np.testing.assert_array_equal(doc_topic, t["n_peak_tokens_doc_by_topic"])
    word_topic = np.zeros_like(t["n_word_tokens_word_by_topic"])
    np.add.at(word_topic, (data["wtoken_word_idx"], t["wtoken_topic_idx"]), 1)
    np.testing.assert_array_equal(word_topic, t["n_word_tokens_word_by_topic"])
    region_topic = np.zeros_like(t["n_peak_tokens_region_by_topic"])
    np.add.at(region_topic, (t["peak_region_idx"], t["peak_topic_idx"]), 1)
    np.testing.assert_array_equal(region_topic, t["n_peak_tokens_region_by_topic"])
    # symmetric pairs: subregions 2k and 2k+1 mirror each other across x = 0
    mu = a.topics["regions_mu"][:, :, 0, :]
    np.testing.assert_allclose(mu[:, 0::2, 0], -mu[:, 1::2, 0])
    np.testing.assert_allclose(mu[:, 0::2, 1:], mu[:, 1::2, 1:])
    assert a.p_topic_g_voxel_.shape == (a.data["mask_xyz"].shape[0], 6)
    np.testing.assert_allclose(a.loglikelihood["total"][-1], sum(a.compute_log_likelihood()[:2]))


def test_second_fit_of_same_shapes_does_not_retrace(corpus):
    # the shapes of the previous test's models: within one session this compiles nothing new
    GCLDAModel(*corpus, n_topics=6, n_regions=4, seed_init=1).fit(n_iters=4, loglikely_freq=2)
    with count_traces() as traces:
        model = GCLDAModel(*corpus, n_topics=6, n_regions=4, seed_init=2, alpha=0.2)
        model.fit(n_iters=5, loglikely_freq=2)
        model.compute_log_likelihood()
    assert traces == [], traces


def test_bad_input(corpus):
    counts, coords = corpus
    other = coords.assign(id="other-" + coords["id"])
    with pytest.raises(DatasetError, match="share no study id"):
        GCLDAModel(counts, other, n_topics=3)
    with pytest.raises(ValueError, match="even n_regions"):
        GCLDAModel(counts, coords, n_topics=3, n_regions=3, symmetric=True)
    with pytest.raises(DatasetError, match="lacks column"):
        GCLDAModel(counts, coords.drop(columns="z"), n_topics=3)
    negative = counts.copy()
    negative.iloc[2, 5] = -1
    with pytest.raises(DatasetError, match="non-negative integer counts; study"):
        GCLDAModel(negative, coords, n_topics=3)
    partial = coords[coords["id"] != coords["id"].iloc[0]]
    with pytest.warns(UserWarning, match="16 of 17 study ids"):
        model = GCLDAModel(counts, partial, n_topics=3, n_regions=3, symmetric=False)
    assert len(model.ids) == 16


@pytest.mark.slow
def test_log_likelihood_after_200_iterations_matches_nimare(corpus):
    ref = json.loads((DATA / "loglikelihood.json").read_text())
    totals = []
    for seed in ref["seeds"]:
        model = GCLDAModel(*corpus, n_topics=ref["n_topics"], seed_init=seed)
        model.fit(n_iters=ref["n_iters"], loglikely_freq=ref["n_iters"])
        totals.append(model.loglikelihood["total"][-1])
    ours, theirs = np.mean(totals), np.mean(ref["total_loglikelihood"])
    assert abs(ours - theirs) <= 0.02 * abs(theirs), (totals, ref["total_loglikelihood"])


@pytest.mark.slow
def test_recovers_planted_topics():
    """Three topics with disjoint words and mirrored Gaussian pairs are found again."""
    rng = np.random.default_rng(0)
    n_topics, words_per_topic, n_docs = 3, 10, 60
    means = np.array([[40.0, 20.0, 30.0], [30.0, -60.0, 10.0], [20.0, -10.0, 60.0]])
    word_probs = np.zeros((n_topics, n_topics * words_per_topic))
    for k in range(n_topics):
        block = rng.dirichlet(np.ones(words_per_topic) * 2)
        word_probs[k, k * words_per_topic : (k + 1) * words_per_topic] = block
    counts, foci = [], []
    for d in range(n_docs):
        k = d % n_topics
        counts.append(rng.multinomial(40, word_probs[k]))
        sides = rng.choice([-1.0, 1.0], size=10)
        xyz = means[k] * np.c_[sides, np.ones((10, 2))] + rng.normal(0, 4.0, (10, 3))
        foci += [{"id": f"s{d}", "x": x, "y": y, "z": z} for x, y, z in xyz]
    ids = [f"s{d}" for d in range(n_docs)]
    count_df = pd.DataFrame(counts, index=ids, columns=[f"w{i}" for i in range(30)])
    model = GCLDAModel(count_df, pd.DataFrame(foci), n_topics=n_topics, seed_init=1)
    model.fit(n_iters=100, loglikely_freq=50)

    learned = model.p_word_g_topic_.T  # (topics, words)
    cos = (word_probs @ learned.T) / np.outer(
        np.linalg.norm(word_probs, axis=1), np.linalg.norm(learned, axis=1)
    )
    true_idx, learned_idx = linear_sum_assignment(-cos)
    assert cos[true_idx, learned_idx].min() >= 0.9, cos
    mu = model.topics["regions_mu"][:, :, 0, :]
    for k, t in zip(true_idx, learned_idx, strict=True):
        truth = np.stack([means[k] * [-1, 1, 1], means[k]])  # subregion 0 is the x < 0 one
        assert np.linalg.norm(mu[t] - truth, axis=1).max() <= 5.0, (mu[t], truth)
