"""Shared docstring sections: placeholders expand with the placeholder's indentation, and
no public object of the package is left with an unexpanded ``%(name)s``."""

import importlib
import inspect
import pkgutil
import re

import pytest

import nimare_jax
from nimare_jax.docstrings import docdict, fill_doc

PLACEHOLDER = re.compile(r"^[ \t]*%\(\w+\)s[ \t]*$", re.MULTILINE)  # as fill_doc reads them


def test_placeholder_is_replaced_with_the_entry_indented_like_it():
    def f():
        """Do.

        Parameters
        ----------
        %(output_dir)s
        x : int
            Other.
        """

    fill_doc(f)
    entry = docdict["output_dir"].splitlines()
    lines = f.__doc__.splitlines()
    start = lines.index("        " + entry[0])
    assert lines[start : start + len(entry)] == ["        " + line for line in entry]
    assert lines[start + len(entry)] == "        x : int"


def test_unknown_placeholder_fails_at_decoration():
    def f():
        """%(no_such_section)s"""

    with pytest.raises(KeyError, match="no_such_section"):
        fill_doc(f)


def _public_objects():
    for info in pkgutil.walk_packages(nimare_jax.__path__, "nimare_jax."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            yield f"{info.name}.{name}", obj
            if inspect.isclass(obj):
                for meth_name, meth in vars(obj).items():
                    if not meth_name.startswith("_") and callable(meth):
                        yield f"{info.name}.{name}.{meth_name}", meth


def test_no_public_docstring_keeps_a_placeholder():
    left = [name for name, obj in _public_objects() if PLACEHOLDER.search(obj.__doc__ or "")]
    assert not left, f"docstrings with unexpanded placeholders (add @fill_doc): {left}"
