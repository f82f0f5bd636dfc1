"""Term vectors from the corpus' co-occurrence statistics (early NiMARE's ``annotate.vector``).

Two terms are related when they appear in the same documents more often than chance. The
document co-occurrence counts are turned into positive pointwise mutual information (PPMI;
Church & Hanks 1990, Bullinaria & Levy 2007), which a truncated singular value decomposition
(scikit-learn's ``TruncatedSVD``, exact ARPACK solver) compresses into dense term vectors,
weighted by the square roots of the singular values (Levy, Goldberg & Dagan 2015). Cosine
similarity between the vectors relates terms to one another.

Typical use::

    counts = generate_counts(dset.texts, tfidf=False, min_df=2, max_df=0.5)
    vectors = generate_term_vectors(counts, n_components=50, random_state=0)
    term_similarity(vectors, ["memory"]).T.sort_values("memory").tail()
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.decomposition import TruncatedSVD

from nimare_jax.exceptions import DatasetError


def generate_cooccurrence(counts_df: pd.DataFrame) -> pd.DataFrame:
    """Count the documents in which each pair of terms appears together.

    Parameters
    ----------
    counts_df : pandas.DataFrame, shape (n_documents, n_terms)
        Term weights per document (counts or tf-idf, e.g. from ``generate_counts``); a term
        appears in a document where its weight is positive.

    Returns
    -------
    pandas.DataFrame, shape (n_terms, n_terms)
        Symmetric integer table; the diagonal holds each term's document frequency.
    """
    present = _presence(counts_df)
    cooc = (present.T @ present).toarray()
    return pd.DataFrame(cooc, index=counts_df.columns, columns=counts_df.columns)


def generate_ppmi(cooccurrence_df: pd.DataFrame) -> pd.DataFrame:
    """Positive pointwise mutual information between terms from their co-occurrence counts.

    With ``C`` the co-occurrence counts of distinct terms (the diagonal is ignored: a term
    is not its own context), ``N`` their total and ``c_i`` the row sums,
    ``PPMI[i, j] = max(0, log(C[i, j] * N / (c_i * c_j)))``, and 0 where ``C[i, j] = 0``.

    Parameters
    ----------
    cooccurrence_df : pandas.DataFrame, shape (n_terms, n_terms)
        Symmetric non-negative counts, e.g. from :func:`generate_cooccurrence`.

    Returns
    -------
    pandas.DataFrame, shape (n_terms, n_terms)
        Symmetric, non-negative, zero on the diagonal.
    """
    counts = _check_matrix(cooccurrence_df)
    counts = counts - np.diag(np.diag(counts))
    total = counts.sum()
    if total <= 0:
        raise DatasetError("no two distinct terms appear in the same document")
    margins = counts.sum(axis=1)
    i, j = np.nonzero(counts)
    values = np.log(counts[i, j] * total / (margins[i] * margins[j]))
    ppmi = np.zeros_like(counts)
    ppmi[i, j] = np.maximum(values, 0.0)
    return pd.DataFrame(ppmi, index=cooccurrence_df.index, columns=cooccurrence_df.columns)


def generate_term_vectors(
    counts_df: pd.DataFrame, n_components: int = 100, random_state=None
) -> pd.DataFrame:
    """Embed each term as a dense vector: truncated SVD of the terms' PPMI matrix.

    Parameters
    ----------
    counts_df : pandas.DataFrame, shape (n_documents, n_terms)
        Term weights per document (counts or tf-idf, e.g. from ``generate_counts``).
    n_components : int
        Length of the vectors; less than the number of terms.
    random_state : int, numpy.random.RandomState or None
        Start vector of the ARPACK solver (the result does not depend on it beyond
        round-off; each component's sign is fixed by scikit-learn).

    Returns
    -------
    pandas.DataFrame, shape (n_terms, n_components)
        ``U * sqrt(s)`` for the ``n_components`` largest singular values ``s`` of the PPMI
        matrix and their left singular vectors ``U``; index the terms, columns
        ``component_0`` ... ``component_{n_components - 1}``.
    """
    n_terms = counts_df.shape[1]
    if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
        raise TypeError(f"n_components must be an integer, got {n_components!r}")
    if not 1 <= n_components < n_terms:
        raise DatasetError(
            f"n_components must be between 1 and the number of terms - 1 ({n_terms - 1}), "
            f"got {n_components}"
        )
    ppmi = generate_ppmi(generate_cooccurrence(counts_df))
    svd = TruncatedSVD(int(n_components), algorithm="arpack", random_state=random_state)
    scaled = svd.fit_transform(sparse.csr_matrix(ppmi.to_numpy()))  # U * s
    s = svd.singular_values_
    root = np.divide(1.0, np.sqrt(s), out=np.zeros_like(s), where=s > 0)
    columns = [f"component_{k}" for k in range(int(n_components))]
    return pd.DataFrame(scaled * root, index=counts_df.columns, columns=columns)


def term_similarity(vectors_df: pd.DataFrame, terms=None) -> pd.DataFrame:
    """Cosine similarity between term vectors.

    Parameters
    ----------
    vectors_df : pandas.DataFrame, shape (n_terms, n_components)
        Term vectors, e.g. from :func:`generate_term_vectors`.
    terms : list of str or None
        Terms to relate to every term (rows of the result); None for all.

    Returns
    -------
    pandas.DataFrame, shape (n_selected, n_terms)
        Cosine similarities in [-1, 1]; a term whose vector is zero (it shares no document
        with another term) has similarity 0 with every term, itself included.
    """
    vectors = _check_matrix(vectors_df, square=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    rows = unit
    index = vectors_df.index
    if terms is not None:
        terms = [terms] if isinstance(terms, str) else list(terms)
        unknown = [t for t in terms if t not in vectors_df.index]
        if unknown:
            raise DatasetError(f"term(s) without a vector: {', '.join(map(str, unknown))}")
        rows = unit[vectors_df.index.get_indexer(terms)]
        index = pd.Index(terms)
    similarity = np.clip(rows @ unit.T, -1.0, 1.0)
    return pd.DataFrame(similarity, index=index, columns=vectors_df.index)


def _presence(counts_df: pd.DataFrame) -> sparse.csr_matrix:
    """Documents x terms 0/1 matrix of the terms each document contains."""
    values = _check_matrix(counts_df, square=False)
    if (values < 0).any():
        raise DatasetError("term weights must be non-negative")
    return sparse.csr_matrix((values > 0).astype(np.int64))


def _check_matrix(table, square: bool = True) -> np.ndarray:
    """Return a table's values as finite float64, with a clear error otherwise."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(table).__name__}")
    try:
        values = table.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError("the table must hold numbers only") from None
    if not np.isfinite(values).all():
        raise DatasetError("the table holds NaN or infinite values")
    if square and (values.shape[0] != values.shape[1] or (values < 0).any()):
        raise DatasetError(f"expected a square non-negative table, got shape {values.shape}")
    return values
