"""Helpers of the fetchers: data folders and the Cognitive Atlas alias table.

``get_data_dirs`` is NiMARE's public helper (``nimare.extract.utils.get_data_dirs``), here with
nimare_jax's folder names (see :mod:`nimare_jax.io.download`). The private helpers turn the
Cognitive Atlas listings into the alias table that :mod:`nimare_jax.annotate.cogat` reads.
"""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from nimare_jax.annotate.cogat import uk_to_us
from nimare_jax.io.download import get_data_dirs, get_dataset_dir

__all__ = ["get_data_dirs", "get_dataset_dir"]

#: Concept relationships of the Cognitive Atlas (relationship, direction) -> the table's name.
_CONCEPT_RELATIONS = {
    ("PARTOF", "child"): "hasPart",
    ("PARTOF", "parent"): "isPartOf",
    ("KINDOF", "child"): "hasKind",
    ("KINDOF", "parent"): "isKindOf",
}


def _get_concept_reltype(relationship, direction):
    """Name of a concept relationship in the relationships table, or None if not kept."""
    return _CONCEPT_RELATIONS.get((relationship, direction))


def _longify(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (id, lower-case name, lower-case alias), the name being an alias too.

    The ``alias`` field holds comma-separated aliases. NiMARE 0.22.1 reads it only when it
    contains a comma, dropping a lone alias; here every non-empty alias is kept.
    """
    rows = []
    for term_id, name, alias in zip(df["id"], df["name"], df["alias"], strict=True):
        aliases = [a.strip() for a in alias.split(",")] if isinstance(alias, str) else []
        for form in [*filter(None, aliases), name]:
            rows.append([term_id, name.lower(), form.lower()])
    return pd.DataFrame(rows, columns=["id", "name", "alias"]).replace("", np.nan)


def _similarity(alias, name) -> int:
    """Percent similarity of two strings (difflib's ratio, rounded; 100 unless both text).

    This is fuzzywuzzy's ``fuzz.ratio`` without python-Levenshtein, which NiMARE uses to
    order aliases of equal length.
    """
    if not (isinstance(alias, str) and isinstance(name, str)):
        return 100
    if alias == name:
        return 100
    if not alias or not name:
        return 0
    return int(round(100 * difflib.SequenceMatcher(None, alias, name).ratio()))


def _gen_alt_forms(term) -> list:
    """Alternative spellings of a term with a parenthesised part (NiMARE's rule).

    ``"stop signal task (sst)"`` gives ``"stop signal task"`` and ``"sst stop signal task"``,
    then the same without ``" task"`` and without ``" paradigm"``. A term without
    parentheses has none; a missing term gives ``[None]``.
    """
    if not isinstance(term, str) or not term:
        return [None]
    forms = []
    if "(" in term:
        inner = term[term.find("(") + 1 : term.find(")")]
        rest = term.replace(f"({inner})", "").replace("  ", " ")
        forms = [rest.strip(), f"{inner} {rest}".strip()]
    forms += [f.replace(" task", "") for f in forms]
    forms += [f.replace(" paradigm", "") for f in forms]
    return sorted(set(forms))


def _expand_df(df: pd.DataFrame) -> pd.DataFrame:
    """Add alternative forms of the aliases, longest first, closest to the name first.

    Aliases are converted to American spelling; columns ``length`` (characters of the
    alias) and ``ratio`` (:func:`_similarity` to the name) give the order in which the
    annotator tries them.
    """
    df = df.assign(alias=df["alias"].map(uk_to_us))
    extra = [
        [*row[:-1], form]
        for row in df[["id", "name", "alias"]].itertuples(index=False)
        for form in _gen_alt_forms(row[-1])
    ]
    df = pd.concat([df, pd.DataFrame(extra, columns=["id", "name", "alias"])], axis=0)
    df["length"] = df["alias"].str.len()
    df["ratio"] = [_similarity(a, n) for a, n in zip(df["alias"], df["name"], strict=True)]
    return df.sort_values(["length", "ratio"], ascending=False, kind="stable")
