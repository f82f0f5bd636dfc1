"""``annotate.text.generate_counts`` against NiMARE 0.22.1 and against closed forms.

References: ``tests/data/annotate/counts_laird.npz``, written by
``tests/data/annotate/make_annotate_reference.py`` (NiMARE 0.22.1, scikit-learn 1.9.1).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nimare_jax.annotate import generate_counts
from nimare_jax.exceptions import DatasetError

DATA = Path(__file__).parent / "data" / "annotate"


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA / "counts_laird.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize(("tfidf", "key"), [(True, "tfidf"), (False, "counts")])
def test_counts_equal_nimare(laird, ref, tfidf, key):
    out = generate_counts(laird.texts, tfidf=tfidf, min_df=1, max_df=1.0)
    assert out.index.name == "id"
    assert out.columns.tolist() == ref[f"{key}_columns"].tolist()
    assert out.index.tolist() == ref[f"{key}_ids"].tolist()
    np.testing.assert_allclose(out.to_numpy(), ref[f"{key}_values"], rtol=0, atol=1e-12)


def test_tfidf_is_smoothed_idf_of_counts_with_unit_rows(laird):
    """tf-idf = counts x (ln((1 + n) / (1 + df)) + 1), each row scaled to unit L2 norm."""
    counts = generate_counts(laird.texts, tfidf=False, min_df=1, max_df=1.0).to_numpy()
    tfidf = generate_counts(laird.texts, tfidf=True, min_df=1, max_df=1.0).to_numpy()
    n = counts.shape[0]
    idf = np.log((1 + n) / (1 + (counts > 0).sum(axis=0))) + 1
    raw = counts * idf
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(tfidf, expected, rtol=0, atol=1e-12)


def test_document_frequency_bounds_select_terms(laird):
    """min_df / max_df as integers keep exactly the terms whose document frequency is in range."""
    counts = generate_counts(laird.texts, tfidf=False, min_df=1, max_df=1.0)
    df = (counts > 0).sum(axis=0)
    out = generate_counts(laird.texts, tfidf=False, min_df=3, max_df=10)
    assert out.columns.tolist() == df.index[(df >= 3) & (df <= 10)].tolist()
    np.testing.assert_array_equal(out.to_numpy(), counts[out.columns].to_numpy())


def test_empty_and_missing_texts_are_left_out(laird):
    texts = laird.texts.copy()
    texts["abstract"] = texts["abstract"].astype(object)
    texts.loc[2, "abstract"] = ""
    texts.loc[5, "abstract"] = None
    full = generate_counts(laird.texts, tfidf=False, min_df=1, max_df=1.0)
    out = generate_counts(texts, tfidf=False, min_df=1, max_df=1.0)
    kept = [i for n, i in enumerate(laird.texts["id"]) if n not in (2, 5)]
    assert out.index.tolist() == kept
    # Raw counts of a document do not depend on the other documents: the remaining
    # documents' counts are the full corpus' counts restricted to the terms still present.
    present = full.loc[kept].columns[(full.loc[kept] > 0).any(axis=0)]
    assert out.columns.tolist() == present.tolist()
    np.testing.assert_array_equal(out.to_numpy(), full.loc[kept, present].to_numpy())


def test_id_index_is_accepted(laird):
    table = laird.texts[["id", "abstract"]].set_index("id")
    out = generate_counts(table, tfidf=False, min_df=1, max_df=1.0)
    ref = generate_counts(laird.texts, tfidf=False, min_df=1, max_df=1.0)
    pd.testing.assert_frame_equal(out, ref)


def test_nimare_defaults_on_17_documents_raise_its_value_error(laird):
    meta = json.loads((DATA / "annotate_reference.json").read_text())
    with pytest.raises(ValueError, match="min_df=50, max_df=0.5") as info:
        generate_counts(laird.texts)
    assert meta["default_error"] in str(info.value)
    assert "17 non-empty documents" in str(info.value)


def test_missing_column_is_named(laird):
    with pytest.raises(DatasetError, match="'body'.*columns: id, study_id, contrast_id"):
        generate_counts(laird.texts, text_column="body")


def test_all_texts_empty(laird):
    texts = laird.texts.assign(abstract="")
    with pytest.raises(DatasetError, match="every text in column 'abstract' is empty"):
        generate_counts(texts, min_df=1, max_df=1.0)


def test_only_stop_words_gives_a_clear_error():
    texts = pd.DataFrame({"id": ["a", "b"], "abstract": ["the of and", "and the"]})
    with pytest.raises(DatasetError, match="cannot build a vocabulary from column 'abstract'"):
        generate_counts(texts, min_df=1, max_df=1.0)
