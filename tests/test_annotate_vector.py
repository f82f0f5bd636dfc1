"""``annotate.vector`` against a brute-force NumPy PPMI and SVD on the laird abstracts."""

import numpy as np
import pandas as pd
import pytest

from nimare_jax.annotate import generate_counts
from nimare_jax.annotate.vector import (
    generate_cooccurrence,
    generate_ppmi,
    generate_term_vectors,
    term_similarity,
)
from nimare_jax.exceptions import DatasetError


@pytest.fixture(scope="module")
def counts(laird):
    return generate_counts(laird.texts, tfidf=False, min_df=2, max_df=15)


def _brute_ppmi(counts):
    """PPMI by explicit loops over documents and term pairs."""
    values = counts.to_numpy()
    n_docs, n_terms = values.shape
    cooc = np.zeros((n_terms, n_terms))
    for d in range(n_docs):
        present = [t for t in range(n_terms) if values[d, t] > 0]
        for a in present:
            for b in present:
                if a != b:
                    cooc[a, b] += 1
    total = cooc.sum()
    ppmi = np.zeros_like(cooc)
    for a in range(n_terms):
        for b in range(n_terms):
            if cooc[a, b] > 0:
                p_ab = cooc[a, b] / total
                p_a = cooc[a].sum() / total
                p_b = cooc[:, b].sum() / total
                ppmi[a, b] = max(0.0, np.log(p_ab / (p_a * p_b)))
    return cooc, ppmi


@pytest.fixture(scope="module")
def brute(counts):
    return _brute_ppmi(counts)


def test_cooccurrence_and_ppmi_equal_brute_force(counts, brute):
    cooc, ppmi = brute
    ours = generate_cooccurrence(counts)
    assert ours.index.tolist() == counts.columns.tolist()
    np.testing.assert_array_equal(ours.to_numpy() - np.diag(np.diag(ours)), cooc)
    np.testing.assert_array_equal(np.diag(ours), (counts > 0).sum(axis=0))
    np.testing.assert_allclose(generate_ppmi(ours).to_numpy(), ppmi, rtol=1e-12, atol=1e-12)


def test_term_vectors_equal_numpy_svd(counts, brute):
    """U sqrt(s) is defined up to each column's sign: compare the Gram matrix U s U^T."""
    _, ppmi = brute
    k = 20
    vectors = generate_term_vectors(counts, n_components=k, random_state=0)
    assert vectors.shape == (counts.shape[1], k)
    assert vectors.index.tolist() == counts.columns.tolist()
    u, s, _ = np.linalg.svd(ppmi)
    assert s[k - 1] - s[k] > 1e-6 * s[0]  # the truncation is well defined
    gram = (u[:, :k] * s[:k]) @ u[:, :k].T
    ours = vectors.to_numpy()
    np.testing.assert_allclose(ours @ ours.T, gram, rtol=0, atol=1e-9 * s[0])
    np.testing.assert_allclose(np.linalg.norm(ours, axis=0) ** 2, s[:k], rtol=1e-9)


def test_term_similarity_is_cosine(counts, brute):
    _, ppmi = brute
    k = 20
    vectors = generate_term_vectors(counts, n_components=k, random_state=0)
    sim = term_similarity(vectors)
    u, s, _ = np.linalg.svd(ppmi)
    emb = u[:, :k] * np.sqrt(s[:k])
    norms = np.linalg.norm(emb, axis=1)
    assert norms.min() > 0  # every term shares a document with another one
    expected = (emb @ emb.T) / np.outer(norms, norms)
    np.testing.assert_allclose(sim.to_numpy(), expected, rtol=0, atol=1e-8)
    some = counts.columns[[3, 0]].tolist()
    sub = term_similarity(vectors, some)
    assert sub.index.tolist() == some
    np.testing.assert_allclose(sub.to_numpy(), sim.loc[some].to_numpy(), rtol=0, atol=1e-15)


def test_isolated_term_has_zero_vector_and_similarity():
    counts = pd.DataFrame(
        [[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 3]],
        columns=["a", "b", "c", "alone"],
    )
    vectors = generate_term_vectors(counts, n_components=1, random_state=0)
    np.testing.assert_array_equal(vectors.loc["alone"], 0.0)
    sim = term_similarity(vectors)
    np.testing.assert_array_equal(sim.loc["alone"], 0.0)
    # a, b and c each co-occur once with each other: PMI = log(1 * 6 / (2 * 2)) > 0 for
    # every pair, so PPMI = log(1.5) (J - I) on them, whose largest singular value 2 log 1.5
    # has the singular vector (1, 1, 1) / sqrt(3): each vector is +-sqrt(2 log(1.5) / 3).
    value = vectors.loc[["a", "b", "c"], "component_0"].to_numpy()
    np.testing.assert_allclose(np.abs(value), np.sqrt(2 * np.log(1.5) / 3), rtol=1e-12)
    np.testing.assert_allclose(value, value[0], rtol=1e-12)
    np.testing.assert_allclose(sim.loc["a", ["a", "b", "c"]], 1.0, rtol=1e-12)


def test_bad_input(counts):
    with pytest.raises(DatasetError, match="n_components must be between 1"):
        generate_term_vectors(counts, n_components=counts.shape[1])
    with pytest.raises(DatasetError, match="term\\(s\\) without a vector: nope"):
        term_similarity(generate_term_vectors(counts, n_components=2), ["nope"])
    with pytest.raises(DatasetError, match="NaN"):
        generate_cooccurrence(counts.where(counts > 0))
    single = pd.DataFrame({"a": [1, 0], "b": [0, 1], "c": [0, 0]})
    with pytest.raises(DatasetError, match="no two distinct terms appear in the same document"):
        generate_term_vectors(single, n_components=1)
