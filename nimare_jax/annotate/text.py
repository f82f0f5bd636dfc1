"""Term weights of study texts: unigram and bigram counts or tf-idf, as NiMARE 0.22.1.

The vocabulary is built by scikit-learn's vectorizers with the Neurosynth stop list bundled
in ``nimare_jax/resources/text`` (NiMARE's, MIT-licensed), so the columns, their order and
the values are NiMARE's.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from nimare_jax.exceptions import DatasetError
from nimare_jax.spatial import get_resource_path


@lru_cache(maxsize=1)
def _stop_words() -> tuple[str, ...]:
    """Return the Neurosynth stop list (one word a line in ``resources/text``)."""
    path = get_resource_path() / "text" / "neurosynth_stoplist.txt"
    return tuple(path.read_text().splitlines())


def _document_texts(text_df: pd.DataFrame, text_column: str) -> tuple[list[str], list[str]]:
    """Return the ids and texts of the documents whose text is not empty.

    Documents are keyed by an ``id`` column (or, failing that, an index named ``id``).
    Missing and empty texts are dropped, as NiMARE does.
    """
    if not isinstance(text_df, pd.DataFrame):
        raise TypeError(f"text_df must be a pandas DataFrame, got {type(text_df).__name__}")
    if text_column not in text_df.columns:
        raise DatasetError(
            f"text column {text_column!r} is not in the texts table (columns: "
            f"{', '.join(map(str, text_df.columns))})"
        )
    if "id" in text_df.columns:
        ids = text_df["id"]
    elif text_df.index.name == "id":
        ids = text_df.index.to_series()
    else:
        raise DatasetError("the texts table needs an 'id' column naming each document")
    texts = text_df[text_column].fillna("").to_numpy()
    keep = np.array([str(t) != "" for t in texts], dtype=bool)
    if not keep.any():
        raise DatasetError(
            f"every text in column {text_column!r} is empty or missing ({len(texts)} documents)"
        )
    return [str(i) for i in ids.to_numpy()[keep]], [str(t) for t in texts[keep]]


def _vectorize(
    text_df: pd.DataFrame,
    text_column: str,
    tfidf: bool,
    min_df,
    max_df,
    dtype=np.float64,
):
    """Fit NiMARE's vectorizer to the non-empty texts.

    Returns
    -------
    weights : scipy.sparse matrix, shape (n_documents, n_terms)
    names : list of str
        The terms (unigrams and bigrams) in scikit-learn's (alphabetical) order.
    ids : list of str
        The documents kept (non-empty texts), in the table's order.
    """
    ids, texts = _document_texts(text_df, text_column)
    kind = TfidfVectorizer if tfidf else CountVectorizer
    vectorizer = kind(
        min_df=min_df,
        max_df=max_df,
        ngram_range=(1, 2),
        stop_words=list(_stop_words()),
        dtype=dtype,
    )
    try:
        weights = vectorizer.fit_transform(texts)
    except ValueError as exc:
        raise DatasetError(
            f"cannot build a vocabulary from column {text_column!r} of {len(texts)} "
            f"non-empty documents with min_df={min_df!r}, max_df={max_df!r}: {exc} "
            "(an int counts documents, a float is a proportion of them)"
        ) from None
    return weights, [str(n) for n in vectorizer.get_feature_names_out()], ids


def generate_counts(
    text_df: pd.DataFrame,
    text_column: str = "abstract",
    tfidf: bool = True,
    min_df=50,
    max_df=0.5,
) -> pd.DataFrame:
    """Weight the unigrams and bigrams of each document's text (tf-idf or raw counts).

    Parameters
    ----------
    text_df : pandas.DataFrame
        One row per document: an ``id`` column and a text column (e.g. ``Dataset.texts``).
        Documents whose text is missing or empty are left out.
    text_column : str
        Column holding the texts.
    tfidf : bool
        If True, scikit-learn's tf-idf weights (smoothed idf, rows of unit L2 norm);
        otherwise term counts.
    min_df, max_df : int or float
        A term is kept if it occurs in at least ``min_df`` and at most ``max_df`` documents;
        a float is a proportion of the documents (scikit-learn's rule).

    Returns
    -------
    pandas.DataFrame, shape (n_documents, n_terms)
        Index ``id``; one column per term, in scikit-learn's (alphabetical) order; the stop
        words are the Neurosynth list NiMARE uses.

    Raises
    ------
    DatasetError
        (a ``ValueError``) if the column is missing, every text is empty, or no term passes
        ``min_df``/``max_df`` (e.g. the defaults on fewer than 100 documents: ``max_df``
        then allows fewer documents than ``min_df`` requires).
    """
    weights, names, ids = _vectorize(text_df, text_column, tfidf, min_df, max_df)
    out = pd.DataFrame(weights.toarray(), columns=names, index=pd.Index(ids, name="id"))
    return out
