"""Helpers of the ontology tools: term-to-term expansion weights (NiMARE's ``annotate.utils``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nimare_jax.exceptions import DatasetError

_RELATION_COLUMNS = ("input", "output", "rel_type")


def _generate_weights(rel_df: pd.DataFrame, weights: dict | None) -> pd.DataFrame:
    """Square table of how much a count of one term adds to every term.

    ``W[a, b]`` is the weight with which a count of term ``a`` (row) is carried over to term
    ``b`` (column) after expansion along the relationships, so that expanded counts are
    ``counts @ W``. Direct weights come from ``weights[rel_type]`` (0 for types not listed;
    the largest when a pair has several relationships); every term keeps its own count
    (weight 1, NiMARE's ``isSelf``), whether or not ``rel_df`` lists it. The expansion
    follows NiMARE 0.22.1: starting from a term's unit row, the row is multiplied by the
    direct weights, entries above 1 are set to 1, and this is repeated until the set of
    reached terms stops growing (one last product included). With weights of 1 this is the
    reachability closure (e.g. along an ``isKindOf`` chain).

    Terms are sorted; ``weights`` is not modified.
    """
    missing = [c for c in _RELATION_COLUMNS if c not in rel_df.columns]
    if missing:
        raise DatasetError(
            f"the relationships table lacks column(s) {missing}; it needs "
            f"{list(_RELATION_COLUMNS)}"
        )
    weights = {**(weights or {}), "isSelf": 1}
    bad = {k: v for k, v in weights.items() if not (np.isfinite(v) and v >= 0)}
    if bad:
        raise DatasetError(f"relationship weights must be finite and >= 0, got {bad}")
    terms = sorted(set(rel_df["input"]) | set(rel_df["output"]))
    position = {term: n for n, term in enumerate(terms)}
    rows = rel_df["input"].map(position).to_numpy()
    cols = rel_df["output"].map(position).to_numpy()
    values = rel_df["rel_type"].map(lambda r: weights.get(r, 0)).to_numpy(dtype=float)
    direct = np.zeros((len(terms), len(terms)))
    np.maximum.at(direct, (rows, cols), values)
    np.fill_diagonal(direct, np.maximum(np.diag(direct), 1.0))

    expanded = np.eye(len(terms))
    active = np.arange(len(terms))
    while active.size:
        before = expanded[active]
        after = np.minimum(before @ direct, 1.0)
        expanded[active] = after
        grew = ((after != 0) != (before != 0)).any(axis=1)
        active = active[grew]
    return pd.DataFrame(expanded, index=terms, columns=terms)
