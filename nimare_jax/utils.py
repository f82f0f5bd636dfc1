r"""NiMARE-compatible home of the small helpers (``nimare.utils``).

Most live in :mod:`nimare_jax.spatial` (templates, maskers, coordinates) and are re-exported
here. This module adds NiMARE's helpers that have no other home in nimare_jax: reading
``\citep{Key}`` citations of a NiMARE-style description (:func:`find_citations`,
:func:`get_description_references`, with the BibTeX brace helpers :func:`find_braces` and
:func:`reduce_idx`), the :func:`use_memmap` decorator, and the float floor of NiMARE's p
maps.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import re
import tempfile

import numpy as np

from nimare_jax.parsing import load_json
from nimare_jax.references import load_references
from nimare_jax.spatial import (
    DEFAULT_FLOAT_DTYPE,
    get_masker,
    get_resource_path,
    get_template,
    listify,
    mm2vox,
    mni2tal,
    round2,
    tal2mni,
    vox2mm,
)

__all__ = [
    "DEFAULT_FLOAT_DTYPE",
    "LGR",
    "find_braces",
    "find_citations",
    "get_description_references",
    "get_masker",
    "get_resource_path",
    "get_template",
    "listify",
    "load_json",
    "mm2vox",
    "mni2tal",
    "reduce_idx",
    "round2",
    "tal2mni",
    "use_memmap",
    "vox2mm",
]

#: The module's logger (a cited key missing from the references is logged here, as NiMARE).
LGR = logging.getLogger(__name__)

_CITE_COMMANDS = re.compile(r"\\(?:citep|cite|citealt)\{([A-Za-z0-9,_/.]+)\}")


def _minimum_positive_float(dtype=DEFAULT_FLOAT_DTYPE):
    """Smallest positive number of a floating dtype (the floor of NiMARE's float32 p maps).

    Private in NiMARE too; provided because NiMARE's test suite reads it at import time.
    """
    dtype = np.dtype(dtype)
    return np.nextafter(dtype.type(0), dtype.type(1), dtype=dtype)


def find_braces(string: str) -> list[tuple[int, int]]:
    """Return the index pairs of matched ``{`` ``}`` in a string.

    Parameters
    ----------
    string : str
        Text, e.g. a BibTeX file.

    Returns
    -------
    list of tuple of int
        ``(opening, closing)`` index pairs, in the order their braces close.

    Raises
    ------
    IndexError
        If a brace has no partner, naming its position.
    """
    open_at, pairs = [], []
    for idx, char in enumerate(string):
        if char == "{":
            open_at.append(idx)
        elif char == "}":
            if not open_at:
                raise IndexError(f"closing brace at {idx} has no opening brace")
            pairs.append((open_at.pop(), idx))
    if open_at:
        raise IndexError(f"opening brace at {open_at[-1]} is never closed")
    return pairs


def reduce_idx(idx_list) -> list[tuple[int, int]]:
    """Keep the outermost brace pairs (BibTeX entries), dropping pairs nested inside them.

    Parameters
    ----------
    idx_list : list of tuple of int
        Matched ``(opening, closing)`` pairs, as :func:`find_braces` returns, in any order.

    Returns
    -------
    list of tuple of int
        The pairs no other pair contains, by opening index.
    """
    outermost, reach = [], -1
    for start, end in sorted(idx_list):
        if end > reach:  # pairs nest, so one closing past every earlier pair is outside them
            outermost.append((start, end))
            reach = end
    return outermost


def find_citations(description: str) -> list[str]:
    r"""Return the keys a NiMARE-style description cites with ``\citep``, ``\cite``, ``\citealt``.

    Parameters
    ----------
    description : str
        Text such as ``"... \\citep{Turkeltaub2002,Eickhoff2012}."``; keys may hold letters,
        digits, ``_``, ``/`` and ``.``.

    Returns
    -------
    list of str
        Unique keys, sorted; empty if nothing is cited.
    """
    keys = {k for group in _CITE_COMMANDS.findall(description) for k in group.split(",") if k}
    return sorted(keys)


def get_description_references(description: str) -> str:
    r"""Return the BibTeX entries of the keys a NiMARE-style description cites.

    Parameters
    ----------
    description : str
        Text with ``\citep{Key}`` citations (see :func:`find_citations`).

    Returns
    -------
    str
        The entries of nimare_jax's bundled ``references.bib``, one after another. A key
        may also be one of an entry's ``ids`` (BibLaTeX aliases, such as NiMARE's
        ``laird2005ale`` for ``Laird2005``); keys not found are left out and logged as a
        warning through :data:`LGR`.
    """
    refs = load_references()
    aliases = {
        alias.strip(): key
        for key, entry in refs.items()
        for alias in entry.get("ids", "").split(",")
        if alias.strip()
    }
    entries = []
    for key in find_citations(description):
        key = key if key in refs else aliases.get(key, key)
        if key in refs:
            entries.append(refs[key]["bibtex"])
        else:
            LGR.warning(f"Citation {key} not found.")
    return "\n".join(entries)


def use_memmap(logger, n_files: int = 1):
    """Decorate a method to give it temporary files for memory-mapped arrays (as NiMARE).

    When the object has a truthy ``memory_limit`` attribute, ``n_files`` empty temporary
    files are created and listed in ``self.memmap_filenames`` for the duration of the call,
    and removed afterwards (also when the method raises). Otherwise
    ``self.memmap_filenames`` is ``[None] * n_files``. nimare_jax's own estimators keep their
    arrays in memory and do not use it; it is provided for code written against NiMARE.

    Parameters
    ----------
    logger : logging.Logger
        Receives debug messages about the files, and an error naming them if the method
        raises.
    n_files : int
        Number of files.

    Returns
    -------
    callable
        The decorator.
    """

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            use_files = bool(getattr(self, "memory_limit", None))
            if use_files:
                stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
                filenames = []
                for _ in range(n_files):
                    fd, name = tempfile.mkstemp(prefix=type(self).__name__, suffix=stamp)
                    os.close(fd)
                    logger.debug(f"Temporary file written to {name}")
                    filenames.append(name)
            else:
                filenames = [None] * n_files
            self.memmap_filenames = filenames
            try:
                return method(self, *args, **kwargs)
            except Exception:
                logger.error(f"{method.__name__} failed, removing {filenames}")
                raise
            finally:
                for name in filenames if use_files else []:
                    if os.path.isfile(name):
                        os.remove(name)
                        logger.debug(f"Removed temporary file {name}")

        return wrapper

    return decorate
