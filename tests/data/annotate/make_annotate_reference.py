"""Write the NiMARE references that tests/test_annotate_*.py compare against.

Run with the separate NiMARE environment (NiMARE 0.22.1, scikit-learn 1.9.1):

    /work/venv-nimare/bin/python tests/data/annotate/make_annotate_reference.py

Input: the laird dataset bundled with nimare_jax (``nimare_jax/resources/data/
laird_n20_dataset.json``; 17 experiments, each with an abstract). Output, beside this script:

* ``counts_laird.npz``: ``generate_counts(text_df, tfidf=..., min_df=1, max_df=1.0)`` for
  tfidf True and False (dense values, the column names in NiMARE's order, the index);
* ``lda_laird.npz``: ``LDAModel(5, max_iter=100, random_state=0).fit(dset)``: topic-word
  weights (``distributions_["p_topic_g_word"]``), vocabulary, topic names and the document
  by topic weights NiMARE stores as annotations;
* ``cogat_nimare.json``: ``extract_cogat`` and ``expand_counts`` on the hand-made ontology
  of ``cogat_toy.json`` (with an ``isSelf`` row added for every term, which NiMARE's
  expansion needs), weights ``{"isKindOf": 1}`` and ``{"isKindOf": 0.5, "measures": 1}``;
* ``annotate_reference.json``: versions and the ``ValueError`` NiMARE raises with the
  defaults (``min_df=50, max_df=0.5``) on the 17 documents.
"""

import json
from pathlib import Path

import nimare
import numpy as np
import pandas as pd
import sklearn
from nimare.annotate.cogat import expand_counts, extract_cogat
from nimare.annotate.lda import LDAModel
from nimare.annotate.text import generate_counts
from nimare.dataset import Dataset

HERE = Path(__file__).resolve().parent
LAIRD = HERE.parents[2] / "nimare_jax" / "resources" / "data" / "laird_n20_dataset.json"

assert nimare.__version__ == "0.22.1", nimare.__version__


def main():
    """Compute and save the references."""
    dset = Dataset(str(LAIRD))
    text_df = dset.texts[["id", "abstract"]]

    arrays = {}
    for tfidf in (True, False):
        df = generate_counts(text_df, tfidf=tfidf, min_df=1, max_df=1.0)
        key = "tfidf" if tfidf else "counts"
        arrays[f"{key}_values"] = df.to_numpy(dtype=np.float64)
        arrays[f"{key}_columns"] = np.array(df.columns.tolist(), dtype=str)
        arrays[f"{key}_ids"] = np.array(df.index.tolist(), dtype=str)
    np.savez_compressed(HERE / "counts_laird.npz", **arrays)

    try:
        generate_counts(text_df)
    except ValueError as exc:
        default_error = str(exc)
    else:
        raise AssertionError("NiMARE's defaults were expected to fail on 17 documents")

    model = LDAModel(5, max_iter=100, random_state=0)
    out = model.fit(dset)
    topic_df = model.distributions_["p_topic_g_word_df"]
    names = topic_df.index.tolist()
    # NiMARE returns a Studyset; its annotations table holds the document-topic weights.
    doc_topic = out.annotations_df.set_index("id").loc[list(dset.ids), names].astype(float)
    np.savez_compressed(
        HERE / "lda_laird.npz",
        p_topic_g_word=model.distributions_["p_topic_g_word"].astype(np.float64),
        vocabulary=np.array(topic_df.columns.tolist(), dtype=str),
        topic_names=np.array(names, dtype=str),
        doc_topic=doc_topic.to_numpy(),
        doc_ids=np.array(doc_topic.index.tolist(), dtype=str),
    )

    toy = json.loads((HERE / "cogat_toy.json").read_text())
    id_df = pd.DataFrame(toy["aliases"], columns=["id", "name", "alias"])
    rel_df = pd.DataFrame(toy["relationships"], columns=["input", "output", "rel_type"])
    terms = sorted(set(rel_df["input"]) | set(rel_df["output"]))
    self_rows = pd.DataFrame({"input": terms, "output": terms, "rel_type": "isSelf"})
    rel_df = pd.concat([rel_df, self_rows], ignore_index=True)
    texts = pd.DataFrame({"id": list(toy["texts"]), "abstract": list(toy["texts"].values())})
    counts, rep = extract_cogat(texts, id_df=id_df)
    cogat = {
        "counts": counts.to_dict(orient="split"),
        "replaced": rep["abstract"].to_dict(),
    }
    for key, weights in [
        ("expand_1", {"isKindOf": 1}),
        ("expand_frac", {"isKindOf": 0.5, "measures": 1}),
    ]:
        out = expand_counts(counts.copy(), rel_df=rel_df, weights=weights)
        cogat[key] = out.to_dict(orient="split")
    (HERE / "cogat_nimare.json").write_text(json.dumps(cogat, indent=1) + "\n")

    meta = {
        "nimare": nimare.__version__,
        "sklearn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "default_error": default_error,
        "lda_output_type": type(out).__name__,
    }
    (HERE / "annotate_reference.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
