"""``annotate.cogat`` on a hand-made Cognitive Atlas fragment (``data/annotate/cogat_toy.json``).

Expected values are worked out by hand below (and, for the expansion, by a graph search);
``data/annotate/cogat_nimare.json`` holds NiMARE 0.22.1's outputs on the same inputs
(``make_annotate_reference.py``), equal except where nimare_jax fixes NiMARE's matching of
an alias that ends in a parenthesis.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nimare_jax.annotate import CogAtLemmatizer, expand_counts, extract_cogat
from nimare_jax.annotate.cogat import uk_to_us
from nimare_jax.exceptions import DatasetError, InputFileError

DATA = Path(__file__).parent / "data" / "annotate"
TOY = json.loads((DATA / "cogat_toy.json").read_text())
NIMARE = json.loads((DATA / "cogat_nimare.json").read_text())
TERMS = ["trm_beh", "trm_col", "trm_inh", "trm_mem", "trm_stm", "trm_wm", "tsk_sst"]


@pytest.fixture
def id_df():
    return pd.DataFrame(TOY["aliases"], columns=["id", "name", "alias"])


@pytest.fixture
def rel_df():
    return pd.DataFrame(TOY["relationships"], columns=["input", "output", "rel_type"])


@pytest.fixture
def text_df():
    return pd.DataFrame({"id": list(TOY["texts"]), "abstract": list(TOY["texts"].values())})


#: By hand. a: "Stop Signal Task (SST)" (the parenthesised alias, first), "short-term
#: memory", "Working memory", then "Memory" and "WM" in what is left. b: British spellings
#: converted first; "inhibition" counted only outside "behavioral inhibition"; "stop signal
#: taskforce" is not the task. c: no text. d: "Memories" is another word.
COUNTS = {
    "a": {"trm_mem": 1, "trm_stm": 1, "trm_wm": 2, "tsk_sst": 1},
    "b": {"trm_beh": 1, "trm_col": 1, "trm_inh": 1, "tsk_sst": 1},
    "c": {},
    "d": {"trm_mem": 2},
}
REPLACED = {
    "a": "trm_wm (trm_wm) and trm_stm were tested with the tsk_sst. trm_mem load varied.",
    "b": "We measured trm_beh and trm_col; trm_inh of behavior. A tsk_sst, not a stop "
    "signal taskforce.",
    "c": "",
    "d": "trm_mem, trm_mem and Memories.",
}


def test_extract_cogat_counts_and_text(text_df, id_df):
    counts, replaced = extract_cogat(text_df, id_df=id_df)
    expected = pd.DataFrame(
        [[COUNTS[d].get(t, 0) for t in TERMS] for d in "abcd"],
        index=pd.Index(list("abcd"), name="id"),
        columns=TERMS,
    )
    pd.testing.assert_frame_equal(counts, expected)
    assert replaced.index.tolist() == list("abcd")
    assert replaced["abstract"].to_dict() == REPLACED


def test_extract_cogat_agrees_with_nimare_except_the_parenthesised_alias(text_df, id_df):
    counts, replaced = extract_cogat(text_df, id_df=id_df)
    ref = NIMARE["counts"]
    assert counts.columns.tolist() == ref["columns"]
    np.testing.assert_array_equal(counts.to_numpy(), ref["data"])
    for doc in "bcd":
        assert replaced.loc[doc, "abstract"] == NIMARE["replaced"][doc]
    # NiMARE's "\bstop signal task \(sst\)\b" cannot match before ". ": it falls back to
    # the shorter alias and leaves "(SST)" in the text.
    assert NIMARE["replaced"]["a"] == REPLACED["a"].replace("tsk_sst.", "tsk_sst (SST).")


def test_lemmatizer_transform_equals_extract_cogat_text(text_df, id_df):
    lemmatizer = CogAtLemmatizer(id_df)
    for doc in "abd":
        assert lemmatizer.transform(TOY["texts"][doc]) == REPLACED[doc]
    assert set(lemmatizer.regex_) == set(id_df["alias"])
    # Without the spelling conversion the British forms stay: only "inhibition" is found.
    kept = lemmatizer.transform(TOY["texts"]["b"], convert_uk=False)
    assert kept == (
        "We measured behavioural trm_inh and colour naming; trm_inh of behaviour. "
        "A tsk_sst, not a stop signal taskforce."
    )


def test_alias_characters_are_literal():
    ontology = pd.DataFrame(
        {"id": ["t_plus", "t_dot"], "name": ["c++", "a.b"], "alias": ["c++", "a.b"]}
    )
    text = "c++ and c+ and axb and a.b"
    assert CogAtLemmatizer(ontology).transform(text) == "t_plus and c+ and axb and t_dot"


def _reachable(rel_df, kinds):
    """Terms reached from each term along relationships of the given types (graph search)."""
    edges = {}
    for a, b, kind in rel_df.itertuples(index=False):
        if kind in kinds:
            edges.setdefault(a, set()).add(b)
    out = {}
    for start in set(rel_df["input"]) | set(rel_df["output"]):
        seen, stack = {start}, [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        out[start] = seen
    return out


def test_expand_counts_with_unit_weights_is_the_closure(text_df, id_df, rel_df):
    counts, _ = extract_cogat(text_df, id_df=id_df)
    weights = {"isKindOf": 1}
    out = expand_counts(counts, rel_df=rel_df, weights=weights)
    reach = _reachable(rel_df, {"isKindOf"})
    terms = sorted(reach)
    assert out.columns.tolist() == terms
    expected = np.zeros((4, len(terms)))
    for d, doc in enumerate("abcd"):
        for term, n in COUNTS[doc].items():
            for target in reach[term]:
                expected[d, terms.index(target)] += n
    np.testing.assert_array_equal(out.to_numpy(), expected)
    # Document a by hand: wm 2 -> stm, mem, cog; stm 1 -> mem, cog; mem 1 -> cog.
    assert out.loc["a", ["trm_wm", "trm_stm", "trm_mem", "trm_cog"]].tolist() == [2, 3, 4, 4]
    # isSelf rows of rel_df are optional; the caller's dict is left as it was.
    assert weights == {"isKindOf": 1}
    np.testing.assert_array_equal(out.to_numpy(), NIMARE["expand_1"]["data"])


def test_expand_counts_fractional_weights(text_df, id_df, rel_df):
    """isKindOf 0.5: rows traced by hand through the expansion's capped products.

    wm: (wm 1, stm .5) -> (stm 1, mem .25) -> (mem .75, cog .125) -> (mem 1, cog .5), stop.
    stm: (stm 1, mem .5) -> (mem 1, cog .25) -> (cog .75), stop.  mem: (cog .5) -> (cog 1).
    sst measures inh (1): (sst 1, inh 1).  beh: (beh 1, inh .5) -> (inh 1).
    """
    counts, _ = extract_cogat(text_df, id_df=id_df)
    out = expand_counts(counts, rel_df=rel_df, weights={"isKindOf": 0.5, "measures": 1})
    a = out.loc["a"]
    assert a["trm_cog"] == 2 * 0.5 + 1 * 0.75 + 1 * 1.0
    assert a[["trm_wm", "trm_stm", "trm_mem", "trm_inh", "tsk_sst"]].tolist() == [2, 3, 4, 1, 1]
    assert out.loc["b", "trm_inh"] == 3  # own 1, behavioral inhibition 1, the task 1
    np.testing.assert_allclose(out.to_numpy(), NIMARE["expand_frac"]["data"], rtol=0, atol=0)


def test_expand_counts_without_weights_keeps_counts(text_df, id_df, rel_df):
    counts, _ = extract_cogat(text_df, id_df=id_df)
    before = counts.copy()
    out = expand_counts(counts, rel_df=rel_df)
    pd.testing.assert_frame_equal(counts, before)
    np.testing.assert_array_equal(out[TERMS].to_numpy(), counts.to_numpy())
    assert (out["trm_cog"] == 0).all()


def test_expand_counts_unknown_term(rel_df):
    counts = pd.DataFrame({"trm_wm": [1], "trm_zzz": [2]})
    with pytest.raises(DatasetError, match="absent from the relationships table: trm_zzz"):
        expand_counts(counts, rel_df=rel_df, weights={"isKindOf": 1})


def test_expand_counts_non_numeric(rel_df):
    with pytest.raises(DatasetError, match="numbers only"):
        expand_counts(pd.DataFrame({"trm_wm": ["two"]}), rel_df=rel_df, weights={"isKindOf": 1})


def test_expand_counts_negative_weight(rel_df):
    with pytest.raises(DatasetError, match="finite and >= 0"):
        expand_counts(pd.DataFrame({"trm_wm": [1]}), rel_df=rel_df, weights={"isKindOf": -1})


def test_none_reads_nimare_download(tmp_path, monkeypatch, id_df, rel_df, text_df):
    """NiMARE 0.22.1's CogAtLemmatizer(None) raises TypeError; here it reads the download."""
    folder = tmp_path / "cognitive_atlas"
    folder.mkdir()
    id_df.to_csv(folder / "cogat_aliases.csv", index=False)
    rel_df.to_csv(folder / "cogat_relationships.csv", index=False)
    monkeypatch.delenv("NIMARE_SHARED_DATA", raising=False)
    monkeypatch.setenv("NIMARE_DATA", str(tmp_path))
    assert CogAtLemmatizer().transform(TOY["texts"]["a"]) == REPLACED["a"]
    counts, _ = extract_cogat(text_df)
    assert counts.loc["a", "trm_wm"] == 2
    out = expand_counts(counts, weights={"isKindOf": 1})
    assert out.loc["a", "trm_cog"] == 4


def test_none_without_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NIMARE_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setenv("NIMARE_DATA", str(tmp_path / "local"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(InputFileError, match="cogat_aliases.csv.*download_cognitive_atlas"):
        CogAtLemmatizer(None)


def test_bad_tables(id_df, text_df):
    with pytest.raises(DatasetError, match=r"ontology_df lacks column\(s\) \['alias'\]"):
        CogAtLemmatizer(id_df.drop(columns="alias"))
    with pytest.raises(DatasetError, match=r"text_df lacks column\(s\) \['body'\]"):
        extract_cogat(text_df, id_df=id_df, text_column="body")
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['rel_type'\]"):
        expand_counts(pd.DataFrame({"a": [1]}), rel_df=pd.DataFrame(columns=["input", "output"]))


def test_british_spellings_are_converted_word_by_word():
    table = pd.read_csv(
        Path(__file__).parents[1] / "nimare_jax" / "resources" / "text" / "english_spellings.csv"
    )
    pairs = [(uk.strip(), us.strip()) for uk, us in zip(table["UK"], table["US"], strict=True)]
    pairs = [(uk, us) for uk, us in pairs if " " not in uk]
    assert len(pairs) == len(table) - 1  # only "flyer / flier " is not one word
    text = ", ".join(uk for uk, _ in pairs) + "."
    assert uk_to_us(text) == ", ".join(us for _, us in pairs) + "."
    # Only whole, lower-case words of the table change. NiMARE 0.22.1 gives "A moral
    # judgmenttask. Its judgement. ..." (its table has "judgement " with a trailing space).
    assert uk_to_us(
        "A moral judgement task. Its judgement. The behaviour of colour-naming; "
        "Behaviour, behaviours, colourimetric."
    ) == (
        "A moral judgment task. Its judgment. The behavior of color-naming; "
        "Behaviour, behaviors, colourimetric."
    )
