"""``annotate.lda.LDAModel`` against NiMARE 0.22.1's seeded topics on laird.

Reference: ``tests/data/annotate/lda_laird.npz``, written by
``tests/data/annotate/make_annotate_reference.py`` (NiMARE 0.22.1, scikit-learn 1.9.1):
``LDAModel(5, max_iter=100, random_state=0).fit(laird)``.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from nimare_jax.annotate import LDAModel
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError
from nimare_jax.spatial import get_resource_path

DATA = Path(__file__).parent / "data" / "annotate"


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA / "lda_laird.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def fitted(laird):
    model = LDAModel(5, max_iter=100, random_state=0)
    return model, model.fit(laird)


def _laird_with_texts(change):
    """The laird dataset after ``change(abstracts)`` edits the list of abstracts in place."""
    source = json.loads((get_resource_path() / "data" / "laird_n20_dataset.json").read_text())
    contrasts = [c for study in source.values() for c in study["contrasts"].values()]
    abstracts = [c["text"]["abstract"] for c in contrasts]
    change(abstracts)
    for c, text in zip(contrasts, abstracts, strict=True):
        c["text"]["abstract"] = text
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unknown space.*")
        return Dataset(source)


def test_topics_equal_nimare(fitted, ref):
    model, _ = fitted
    topic_word = model.distributions_["p_topic_g_word"]
    assert topic_word.shape == ref["p_topic_g_word"].shape
    np.testing.assert_allclose(topic_word, ref["p_topic_g_word"], rtol=1e-4, atol=0)
    frame = model.distributions_["p_topic_g_word_df"]
    assert frame.index.tolist() == ref["topic_names"].tolist()
    assert frame.columns.tolist() == ref["vocabulary"].tolist()


def test_document_topic_weights_equal_nimare(fitted, ref, laird):
    _, out = fitted
    names = ref["topic_names"].tolist()
    assert out.annotations.columns.tolist() == laird.annotations.columns.tolist() + names
    weights = out.annotations.set_index("id").loc[ref["doc_ids"], names].to_numpy()
    np.testing.assert_allclose(weights, ref["doc_topic"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-5)


def test_input_dataset_is_unchanged(fitted, laird):
    assert not any(c.startswith("LDA5__") for c in laird.annotations.columns)
    _, out = fitted
    assert out.coordinates is laird.coordinates
    assert out.ids.tolist() == laird.ids.tolist()


def test_topic_names_are_the_three_heaviest_terms(fitted):
    model, _ = fitted
    frame = model.distributions_["p_topic_g_word_df"]
    for i, (name, row) in enumerate(frame.iterrows()):
        prefix = f"LDA5__{i + 1}_"
        assert name.startswith(prefix)
        # Terms may contain no "_" (they are words and "word word" bigrams), so split.
        top = name[len(prefix) :].split("_")
        weights = row[top].to_numpy()
        assert len(set(top)) == 3
        assert np.all(np.diff(weights) <= 0)
        # Near-empty topics have tied weights: any three of the heaviest will do.
        assert weights.min() >= row.drop(top).max()


def test_experiment_without_text_gets_nan():
    def blank(abstracts):
        abstracts[0] = ""

    dset = _laird_with_texts(blank)
    out = LDAModel(3, max_iter=5, random_state=1).fit(dset)
    topics = out.annotations.filter(like="LDA3__").to_numpy()
    assert np.isnan(topics[0]).all()
    np.testing.assert_allclose(topics[1:].sum(axis=1), 1.0, rtol=0, atol=1e-5)


def test_all_texts_empty_is_a_clear_error():
    def blank(abstracts):
        abstracts[:] = [""] * len(abstracts)

    dset = _laird_with_texts(blank)
    with pytest.raises(DatasetError, match="every text in column 'abstract' is empty"):
        LDAModel(3, max_iter=5).fit(dset)


def test_missing_text_column_is_named(laird):
    with pytest.raises(DatasetError, match="text column 'body' is not in the texts table"):
        LDAModel(3, max_iter=5, text_column="body").fit(laird)


@pytest.mark.parametrize("n_topics", [0, 2.5, True])
def test_bad_n_topics(n_topics):
    with pytest.raises((TypeError, ValueError), match="n_topics"):
        LDAModel(n_topics)
