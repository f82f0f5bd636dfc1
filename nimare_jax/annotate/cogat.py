"""Cognitive Atlas labels in study texts (NiMARE 0.22.1's ``nimare.annotate.cogat``).

The Cognitive Atlas (Poldrack et al. 2011) names cognitive concepts, tasks and disorders,
each with aliases. These tools find the aliases in texts (whole words, any case, after
converting British spellings to American ones), count them per document, replace them by
the term identifiers, and spread the counts along the ontology's relationships.

The ontology tables are those of NiMARE's ``download_cognitive_atlas``: aliases (columns
``id``, ``name``, ``alias``; one row per alias, longest first) and relationships (``input``,
``output``, ``rel_type``). Passing None reads the files that download left in a data folder
(subfolder ``cognitive_atlas``): first nimare_jax's, where
:func:`nimare_jax.extract.download_cognitive_atlas` writes (``$NIMARE_JAX_SHARED_DATA``,
``$NIMARE_JAX_DATA`` or ``~/.nimare_jax``), then NiMARE's (``$NIMARE_SHARED_DATA``,
``$NIMARE_DATA`` or ``~/.nimare``).

Differences from NiMARE 0.22.1, each fixing its behaviour:

* an alias is matched as literal text between non-word characters, so an alias ending in a
  parenthesis (``"stop signal task (sst)"``) is found before a space or a full stop, and
  other regular-expression characters in an alias are taken literally (NiMARE escapes only
  parentheses and wraps the alias in word boundaries, which never matches after a closing
  parenthesis followed by a space);
* British spellings are converted word by word: NiMARE's table has entries with a trailing
  space, so it turns "judgement task" into "judgmenttask" and leaves "judgement." as it is;
  here both become "judgment";
* ``CogAtLemmatizer(None)`` works (NiMARE 0.22.1 raises ``TypeError``), and
  ``expand_counts(counts, rel_df)`` with ``weights=None`` expands along no relationship
  instead of raising.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from nimare_jax.annotate.utils import _generate_weights
from nimare_jax.exceptions import DatasetError, InputFileError
from nimare_jax.io.download import get_data_dirs
from nimare_jax.spatial import get_resource_path

_WORD = re.compile(r"\w+")
_FILES = {"ids": "cogat_aliases.csv", "relationships": "cogat_relationships.csv"}


@lru_cache(maxsize=1)
def _spellings() -> dict[str, str]:
    """Return the British-to-American spellings (``resources/text/english_spellings.csv``).

    Entries are stripped of the spaces some carry; the one entry that is not a single word
    (``"flyer / flier"``) is left out.
    """
    table = pd.read_csv(get_resource_path() / "text" / "english_spellings.csv")
    pairs = zip(table["UK"].str.strip(), table["US"].str.strip(), strict=True)
    return {uk: us for uk, us in pairs if _WORD.fullmatch(uk)}


def uk_to_us(text):
    """Replace British spellings (whole lower-case words) by American ones.

    Parameters
    ----------
    text : str or object
        Text to convert; anything else (e.g. a missing value) is returned as it is.

    Returns
    -------
    str or object
    """
    if not isinstance(text, str):
        return text
    spellings = _spellings()
    return _WORD.sub(lambda m: spellings.get(m.group(), m.group()), text)


def _data_dirs() -> list[Path]:
    """nimare_jax's data folders, then NiMARE's, each in its order of precedence."""
    dirs = [Path(d) for d in get_data_dirs()]
    for var in ("NIMARE_SHARED_DATA", "NIMARE_DATA"):
        if os.getenv(var):
            dirs.extend(Path(d) for d in os.environ[var].split(os.pathsep) if d)
    return [*dirs, Path("~/.nimare").expanduser()]


def _downloaded_cognitive_atlas(kind: str) -> pd.DataFrame:
    """Read the aliases (``kind="ids"``) or relationships a download left on disk."""
    candidates = [d / "cognitive_atlas" / _FILES[kind] for d in _data_dirs()]
    for path in candidates:
        if path.is_file():
            return pd.read_csv(path)
    raise InputFileError(
        "no Cognitive Atlas table was given and none is downloaded: looked for "
        + ", ".join(map(str, candidates))
        + "; pass the table, or download it once with "
        "nimare_jax.extract.download_cognitive_atlas()"
    )


def _check_columns(table, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DatasetError(f"{what} lacks column(s) {missing}; it needs {list(columns)}")
    return table


def _alias_patterns(ontology: pd.DataFrame) -> list[tuple[re.Pattern, str]]:
    """One (pattern, id) per row: the alias as literal text, not inside a longer word."""
    out = []
    for alias, term_id in zip(ontology["alias"], ontology["id"], strict=True):
        if not isinstance(alias, str) or not alias:
            raise DatasetError(f"term {term_id!r} has an empty or non-text alias: {alias!r}")
        regex = r"(?<!\w)" + re.escape(alias) + r"(?!\w)"
        out.append((re.compile(regex, re.MULTILINE | re.IGNORECASE), str(term_id)))
    return out


class CogAtLemmatizer:
    """Replace Cognitive Atlas aliases in a text by the terms' identifiers.

    Parameters
    ----------
    ontology_df : pandas.DataFrame or None
        Aliases: columns ``id``, ``name`` and ``alias``, one row per alias; aliases are
        replaced in row order, so list longer aliases first. None reads the downloaded
        ``cogat_aliases.csv`` (see the module notes).

    Attributes
    ----------
    ontology_ : pandas.DataFrame
        The aliases table.
    regex_ : dict
        Compiled pattern of each alias.
    """

    def __init__(self, ontology_df=None):
        if ontology_df is None:
            ontology_df = _downloaded_cognitive_atlas("ids")
        self.ontology_ = _check_columns(ontology_df, ("id", "name", "alias"), "ontology_df")
        self._patterns = _alias_patterns(self.ontology_)
        self.regex_ = {
            alias: pattern
            for alias, (pattern, _) in zip(self.ontology_["alias"], self._patterns, strict=True)
        }

    def transform(self, text: str, convert_uk: bool = True) -> str:
        """Return ``text`` with every alias replaced by its term's identifier.

        Parameters
        ----------
        text : str
            Text to convert.
        convert_uk : bool
            Convert British spellings to American ones first (the aliases are American).

        Returns
        -------
        str
            The text with aliases replaced, in the order of the ontology's rows.
        """
        if convert_uk:
            text = uk_to_us(text)
        for pattern, term_id in self._patterns:
            text = pattern.sub(lambda _, t=term_id: t, text)
        return text


def extract_cogat(text_df: pd.DataFrame, id_df=None, text_column: str = "abstract"):
    """Count the Cognitive Atlas terms mentioned in each document.

    Aliases are searched in the order of ``id_df``'s rows; each match is counted for its
    term and replaced by the term's identifier before the next alias is searched, so a
    short alias is not counted again inside a longer one already found.

    Parameters
    ----------
    text_df : pandas.DataFrame
        One row per document: an ``id`` column (or index) and the text column.
    id_df : pandas.DataFrame or None
        Aliases table (``id``, ``alias``; ``name`` unused); None reads the downloaded one.
    text_column : str
        Column holding the texts; missing texts count as empty.

    Returns
    -------
    counts_df : pandas.DataFrame, shape (n_documents, n_terms)
        Integer counts; index the document ids, one column per term id (sorted).
    rep_text_df : pandas.DataFrame
        ``text_df`` indexed by ``id``, with British spellings converted and aliases
        replaced by term identifiers in ``text_column``.
    """
    if id_df is None:
        id_df = _downloaded_cognitive_atlas("ids")
    _check_columns(id_df, ("id", "alias"), "id_df")
    text_df = _check_columns(text_df, (text_column,), "text_df").copy()
    if "id" in text_df.columns:
        text_df = text_df.set_index("id")
    texts = [uk_to_us(t) for t in text_df[text_column].fillna("")]
    terms = sorted({str(t) for t in id_df["id"]})
    column = {term: n for n, term in enumerate(terms)}
    counts = np.zeros((len(texts), len(terms)), dtype=int)
    for pattern, term_id in _alias_patterns(id_df):
        for doc, text in enumerate(texts):
            texts[doc], found = pattern.subn(lambda _, t=term_id: t, text)
            counts[doc, column[term_id]] += found
    text_df[text_column] = texts
    return pd.DataFrame(counts, index=text_df.index, columns=terms), text_df


def expand_counts(counts_df: pd.DataFrame, rel_df=None, weights=None) -> pd.DataFrame:
    """Spread term counts to related terms (e.g. a "working memory" count to "memory").

    Parameters
    ----------
    counts_df : pandas.DataFrame, shape (n_documents, n_terms)
        Term counts (e.g. from :func:`extract_cogat`); every column must be a term of
        ``rel_df``.
    rel_df : pandas.DataFrame or None
        Relationships: ``input``, ``output``, ``rel_type`` (a count of ``input`` is carried
        to ``output``). None reads the downloaded ``cogat_relationships.csv``.
    weights : dict or None
        Weight of each relationship type, e.g. ``{"isKindOf": 1}``; unlisted types weigh 0
        and each term keeps its own count. None expands along no relationship.

    Returns
    -------
    pandas.DataFrame, shape (n_documents, n_all_terms)
        ``counts @ W`` over every term of ``rel_df`` (sorted), with ``W`` the expansion
        weights described in ``nimare_jax.annotate.utils._generate_weights``. ``counts_df``
        is not modified.
    """
    if rel_df is None:
        rel_df = _downloaded_cognitive_atlas("relationships")
    if not isinstance(counts_df, pd.DataFrame):
        raise TypeError(f"counts_df must be a pandas DataFrame, got {type(counts_df).__name__}")
    expansion = _generate_weights(rel_df, weights)
    unknown = [str(c) for c in counts_df.columns if c not in expansion.index]
    if unknown:
        raise DatasetError(
            "counts_df has term(s) absent from the relationships table: " + ", ".join(unknown)
        )
    try:
        counts = counts_df.reindex(columns=expansion.index, fill_value=0).to_numpy(float)
    except (TypeError, ValueError):
        raise DatasetError("counts_df must hold numbers only") from None
    return pd.DataFrame(
        counts @ expansion.to_numpy(), index=counts_df.index, columns=expansion.columns
    )
