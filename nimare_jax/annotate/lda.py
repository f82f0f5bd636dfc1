"""Latent Dirichlet allocation topics of study texts (NiMARE 0.22.1's ``LDAModel``).

A thin layer over scikit-learn's batch variational Bayes
(:class:`~sklearn.decomposition.LatentDirichletAllocation`), configured and fed exactly as
NiMARE feeds it, so that a seeded model reproduces NiMARE's topics.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pandas as pd
from sklearn.decomposition import LatentDirichletAllocation

from nimare_jax.annotate.text import _vectorize
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError


def _n_cores(n_cores: int) -> int:
    """NiMARE's rule: ``n_cores <= 0`` means every core; never more than the machine has."""
    available = os.cpu_count() or 1
    return available if n_cores <= 0 else min(int(n_cores), available)


def _with_annotation_columns(dset: Dataset, table: pd.DataFrame) -> Dataset:
    """Return a copy of ``dset`` whose ``annotations`` gain the columns of ``table``.

    ``table`` is indexed by experiment id; experiments it lacks get NaN. Columns of the same
    name already present are replaced. ``Dataset`` has no public method for this yet, so the
    copy is filled the way its own ``with_*`` methods do.
    """
    annotations = dset.annotations.drop(columns=list(table.columns), errors="ignore")
    added = table.reindex(annotations["id"].astype(str).to_numpy())
    annotations = pd.concat([annotations, added.reset_index(drop=True)], axis=1)
    new = copy.copy(dset)
    object.__setattr__(new, "annotations", annotations)
    return new


class LDAModel:
    """Topic model of the studies' texts by latent Dirichlet allocation (Blei et al. 2003).

    As NiMARE 0.22.1's ``nimare.annotate.lda.LDAModel``: scikit-learn's batch variational
    Bayes on unigram and bigram counts (Poldrack et al. 2012 applied it to neuroimaging
    abstracts).

    Parameters
    ----------
    n_topics : int
        Number of topics (>= 1).
    max_iter : int
        Maximum number of variational EM iterations.
    alpha : float or None
        Dirichlet prior on each document's topic weights; None means ``1 / n_topics``.
    beta : float or None
        Dirichlet prior on each topic's word weights; None means ``1 / n_topics``.
    text_column : str
        Column of the dataset's ``texts`` holding the text.
    n_cores : int
        Processes used by scikit-learn; ``<= 0`` uses every core.
    random_state : int, numpy.random.RandomState or None
        Seed of the variational initialisation; None gives different topics each run.

    Attributes
    ----------
    model : sklearn.decomposition.LatentDirichletAllocation
        The scikit-learn model (fitted by :meth:`fit`).
    distributions_ : dict
        After :meth:`fit`: ``"p_topic_g_word"``, the topic-word weights (n_topics x
        n_terms, scikit-learn's ``components_``), and ``"p_topic_g_word_df"``, the same as a
        DataFrame with the topic names as index and the terms as columns.
    """

    def __init__(
        self,
        n_topics,
        max_iter=1000,
        alpha=None,
        beta=0.001,
        text_column="abstract",
        n_cores=1,
        random_state=None,
    ):
        if isinstance(n_topics, bool) or not isinstance(n_topics, int | np.integer):
            raise TypeError(f"n_topics must be an integer, got {n_topics!r}")
        if n_topics < 1:
            raise ValueError(f"n_topics must be at least 1, got {n_topics}")
        self.n_topics = int(n_topics)
        self.max_iter = max_iter
        self.alpha = alpha
        self.beta = beta
        self.text_column = text_column
        self.n_cores = _n_cores(n_cores)
        self.random_state = random_state
        self.model = LatentDirichletAllocation(
            n_components=self.n_topics,
            max_iter=max_iter,
            learning_method="batch",
            doc_topic_prior=alpha,
            topic_word_prior=beta,
            n_jobs=self.n_cores,
            random_state=random_state,
        )

    def fit(self, dset: Dataset) -> Dataset:
        """Fit the topics to the dataset's texts and annotate each experiment with them.

        The vocabulary is every unigram and bigram (stop words removed) found in at least 2
        and at most ``n_experiments - 2`` documents, counted as NiMARE counts them (float32).

        Parameters
        ----------
        dset : Dataset
            Experiments with text in ``texts[text_column]``; empty texts are left out.

        Returns
        -------
        Dataset
            A copy whose ``annotations`` gain one column per topic,
            ``LDA{n_topics}__{i}_{w1}_{w2}_{w3}`` (topic ``i`` from 1, named by its three
            heaviest terms), holding each document's normalised topic weights (NaN for an
            experiment without text). NiMARE 0.22.1 returns a ``Studyset`` here; nimare_jax
            has no Studyset and returns a Dataset. ``dset`` is unchanged.
        """
        if not isinstance(dset, Dataset):
            raise TypeError(f"LDAModel.fit expects a Dataset, got {type(dset).__name__}")
        counts, vocabulary, ids = _vectorize(
            dset.texts,
            self.text_column,
            tfidf=False,
            min_df=2,
            max_df=len(dset.ids) - 2,
            dtype=np.float32,
        )
        if not vocabulary:
            raise DatasetError(f"no term of column {self.text_column!r} can form a topic")
        doc_topic = self.model.fit_transform(counts.toarray())
        topic_word = self.model.components_
        names = _topic_names(topic_word, np.asarray(vocabulary), self.n_topics)
        self.distributions_ = {
            "p_topic_g_word": topic_word,
            "p_topic_g_word_df": pd.DataFrame(topic_word, index=names, columns=vocabulary),
        }
        table = pd.DataFrame(
            doc_topic.astype(np.float64), index=pd.Index(ids, name="id"), columns=names
        )
        return _with_annotation_columns(dset, table)


def _topic_names(topic_word: np.ndarray, vocabulary: np.ndarray, n_topics: int) -> list[str]:
    """Name each topic ``LDA{n}__{i}_`` followed by its (up to) three heaviest terms.

    Ties between equal weights are broken as NiMARE's partial sort breaks them.
    """
    n_top = min(3, len(vocabulary))
    top = np.argpartition(topic_word, -n_top, axis=1)[:, -n_top:]
    order = np.argsort(-np.take_along_axis(topic_word, top, axis=1), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    return [f"LDA{n_topics}__{i + 1}_" + "_".join(vocabulary[row]) for i, row in enumerate(top)]
