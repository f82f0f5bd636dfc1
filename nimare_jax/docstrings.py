"""Docstring sections shared by many public objects, filled in with :func:`fill_doc`.

A docstring names a shared section as ``%(name)s`` on a line of its own; :func:`fill_doc`
replaces it with ``docdict[name]``, indented like the placeholder. One definition per
parameter keeps the descriptions of, e.g., ``n_iters`` or ``random_state`` identical
wherever they appear (the pattern of nilearn's ``fill_doc``).

Examples
--------
>>> @fill_doc
... def save(output_dir="."):
...     '''Save something.
...
...     Parameters
...     ----------
...     %(output_dir)s
...     '''
>>> "Folder, created if needed." in save.__doc__
True
"""

from __future__ import annotations

import re
import textwrap

__all__ = ["docdict", "fill_doc"]

#: Shared sections, keyed by placeholder name. Entries start at column 0; continuation
#: lines are indented by four spaces relative to the first line.
docdict: dict[str, str] = {
    "small_sample_correction": """small_sample_correction : {None, "knapp-hartung", "wald"}
    None means Knapp-Hartung, PyMARE's default.""",
    "ibma_kwargs": """aggressive_mask, mask, **kwargs
    See :class:`IBMAEstimator`.""",
    "regression_maps": (
        "Needs ``beta`` and ``varcope`` images. Output maps: ``z``, ``p``, ``logp``, ``est``,\n"
        "``se``, ``tau2``, ``dof``."
    ),
    "output_dir": """output_dir : str or pathlib.Path
    Folder, created if needed.""",
    "prefix": """prefix : str
    File-name prefix.""",
    "count_decoder_attributes": """features_ : list of str
    After ``fit``: the features decoded.
labels_ : object
    After ``fit``: the binarized features and foci per experiment, shared by every
    ``transform`` (NiMARE recomputes them on each call).""",
    "gclda_priors": """topic_priors : array-like, shape (n_topics,), optional
    Topic weights to apply. Default None (none).
prior_weight : float, optional
    Weight of ``topic_priors`` against a uniform distribution. Default 1.0.""",
    "gclda_decoded": """decoded_df : pandas.DataFrame
    Column ``Weight``, index ``Term`` (the model's vocabulary).
topic_weights : numpy.ndarray, shape (n_topics,)
    The topic weights.""",
}

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<name>\w+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(obj):
    """Replace ``%(name)s`` lines of ``obj.__doc__`` with :data:`docdict` entries.

    Parameters
    ----------
    obj : function or class
        Object whose docstring holds placeholders, each on a line of its own.

    Returns
    -------
    obj
        The same object, docstring filled in.

    Raises
    ------
    KeyError
        If a placeholder names no :data:`docdict` entry (caught at import time).
    """
    doc = obj.__doc__
    if doc:

        def expand(match):
            return textwrap.indent(docdict[match["name"]], match["indent"])

        obj.__doc__ = _PLACEHOLDER.sub(expand, doc)
    return obj
