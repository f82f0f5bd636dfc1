"""Citations: turn a description with ``[Key]`` citations into citable text and BibTeX.

Estimators and correctors describe what they did in a ``description`` whose citations are
BibTeX keys of ``resources/references.bib`` in brackets (``[Turkeltaub2002]`` or
``[Turkeltaub2002; Turkeltaub2012]``). :func:`format_boilerplate` replaces them with
author-year citations and appends the reference list; :func:`bibtex` returns the cited
entries for a reference manager. The module sits low (beside the bundled resources it
reads) so that :class:`~nimare_jax.results.MetaResult` can format its own boilerplate;
:mod:`nimare_jax.reports` re-exports it.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from nimare_jax.spatial import get_resource_path

_CITE = re.compile(r"\[([A-Za-z][\w-]*(?:;\s*[A-Za-z][\w-]*)*)\]")
_ENTRY = re.compile(r"^@(\w+)\{([^,\s]+),\n(.*?)^\}", re.MULTILINE | re.DOTALL)
_FIELD = re.compile(r"^\s*(\w+)\s*=\s*\{(.*)\},?\s*$", re.MULTILINE)
_ACCENT = re.compile(r"\{\\(['`^\"~])(\w)\}")
_ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303"}


@functools.cache
def load_references(path=None) -> dict[str, dict]:
    """Read a BibTeX file written one field per line (as ``resources/references.bib``).

    Parameters
    ----------
    path : str, os.PathLike or None
        BibTeX file; None reads the bundled ``resources/references.bib``.

    Returns
    -------
    dict of str to dict
        ``{key: {"type": ..., "bibtex": entry text, field: value, ...}}``.
    """
    path = get_resource_path() / "references.bib" if path is None else path
    with open(path, encoding="utf-8") as f:
        text = f.read()
    refs = {}
    for match in _ENTRY.finditer(text):
        kind, key, body = match.groups()
        fields = {name.lower(): value for name, value in _FIELD.findall(body)}
        refs[key] = {"type": kind.lower(), "bibtex": match.group(0), **fields}
    return refs


def cited_keys(description: str, citations=()) -> list[str]:
    """Return the citation keys of a description, in order of first appearance.

    Parameters
    ----------
    description : str
        Text with ``[Key]`` or ``[Key1; Key2]`` citations.
    citations : iterable of str
        Further keys (e.g. ``MetaResult.citations``), appended if not cited in the text.

    Returns
    -------
    list of str
        Unique keys.
    """
    keys = [k.strip() for group in _CITE.findall(description) for k in group.split(";")]
    return list(dict.fromkeys([*keys, *citations]))


def format_boilerplate(description: str, citations=(), references=None) -> str:
    """Return a methods paragraph with author-year citations, followed by its references.

    Parameters
    ----------
    description : str
        Text with ``[Key]`` citations, e.g. ``MetaResult.description``.
    citations : iterable of str
        Further keys to list among the references (e.g. ``MetaResult.citations``).
    references : dict or None
        Output of :func:`load_references`; None uses the bundled file.

    Returns
    -------
    str
        The paragraph, a blank line, ``References`` and one formatted reference per line.

    Raises
    ------
    KeyError
        If a cited key is not in the references.
    """
    refs = load_references() if references is None else references
    keys = cited_keys(description, citations)
    _check_keys(keys, refs)

    def cite(match):
        group = [k.strip() for k in match.group(1).split(";")]
        return "(" + "; ".join(_in_text(refs[k]) for k in group) + ")"

    paragraph = " ".join(_CITE.sub(cite, description).split())
    listed = sorted((_reference(refs[k]) for k in keys), key=str.casefold)
    return "\n".join([paragraph, "", "References", "", *listed]) + "\n"


def bibtex(keys, references=None) -> str:
    """Return the BibTeX entries of some keys, in the given order.

    Parameters
    ----------
    keys : iterable of str
        Citation keys.
    references : dict or None
        Output of :func:`load_references`; None uses the bundled file.

    Returns
    -------
    str
        The entries separated by blank lines.

    Raises
    ------
    KeyError
        If a key is not in the references.
    """
    refs = load_references() if references is None else references
    keys = list(dict.fromkeys(keys))
    _check_keys(keys, refs)
    return "\n\n".join(refs[k]["bibtex"] for k in keys) + "\n"


def _check_keys(keys, refs) -> None:
    missing = [k for k in keys if k not in refs]
    if missing:
        raise KeyError(f"citation key(s) {missing} not found in references.bib")


def _plain(text: str) -> str:
    """Drop BibTeX markup: accents become Unicode, protective braces vanish."""
    text = _ACCENT.sub(lambda m: m.group(2) + _ACCENTS[m.group(1)], text)
    return unicodedata.normalize("NFC", text.replace("{", "").replace("}", "")).replace(
        "--", "\u2013"
    )


def _authors(entry: dict) -> list[tuple[str, str]]:
    """Return (last name, initials) pairs; ``others`` becomes ("et al.", "")."""
    people = []
    for name in _plain(entry["author"]).split(" and "):
        if name.strip() == "others":
            people.append(("et al.", ""))
            continue
        last, _, first = (p.strip() for p in name.partition(","))
        parts = (part for part in re.split(r"[\s.]+", first) if part)
        initials = " ".join("-".join(f"{p[0]}." for p in part.split("-") if p) for part in parts)
        people.append((last, initials))
    return people


def _in_text(entry: dict) -> str:
    people = _authors(entry)
    if len(people) == 1:
        names = people[0][0]
    elif len(people) == 2 and people[1][0] != "et al.":
        names = f"{people[0][0]} & {people[1][0]}"
    else:
        names = f"{people[0][0]} et al."
    return f"{names}, {entry['year']}"


def _reference(entry: dict) -> str:
    names = [f"{last}, {initials}" if initials else last for last, initials in _authors(entry)]
    if len(names) > 1 and names[-1] != "et al.":
        names[-1] = "& " + names[-1]
    text = f"{', '.join(names)} ({entry['year']}). {_plain(entry['title'])}."
    if "journal" in entry:
        text += f" {_plain(entry['journal'])}"
        if "volume" in entry:
            text += f", {entry['volume']}"
            text += f"({entry['number']})" if "number" in entry else ""
        text += f", {_plain(entry['pages'])}." if "pages" in entry else "."
    elif "howpublished" in entry:
        text += f" {_plain(entry['howpublished'])}."
    if "doi" in entry:
        text += f" https://doi.org/{entry['doi']}"
    return text
