"""Shared docstring sections: placeholders expand with the placeholder's indentation, and
no public object of the package is left with an unexpanded ``%(name)s``."""

import importlib
import inspect
import pathlib
import pkgutil
import re
import textwrap

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


def _package_sources():
    root = pathlib.Path(nimare_jax.__file__).parent
    return {path: path.read_text() for path in root.rglob("*.py")}


def test_every_docdict_entry_is_used_and_well_formed():
    """No dead entry; each is numpydoc: a ``name : type`` (or names) line at column 0, then
    its description indented by four spaces, no trailing blank line."""
    sources = "\n".join(_package_sources().values())
    unused = [name for name in docdict if f"%({name})s" not in sources]
    assert not unused, f"docdict entries no docstring uses: {unused}"
    for name, entry in docdict.items():
        lines = entry.splitlines()
        assert lines and lines[-1].strip(), name
        heads = [line for line in lines if not line.startswith("    ")]
        assert heads and lines[0] == heads[0], name
        for line in lines:
            assert line == line.rstrip(), f"{name}: trailing blank in {line!r}"
            assert not line.startswith("    ") or not line.startswith("     "), (
                f"{name}: description lines are indented by exactly four spaces: {line!r}"
            )


def test_shared_parameter_reads_the_same_wherever_it_is_used():
    """A filled section appears verbatim (re-indented) in each object that names it."""
    from nimare_jax.correct import FDRCorrector, FWECorrector
    from nimare_jax.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity
    from nimare_jax.meta.fwe import MonteCarloFWE

    n_cores = textwrap.indent(docdict["n_cores"], "    ")
    for cls in (ALE, MKDADensity, KDA, ALESubtraction, SCALE, FWECorrector):
        assert n_cores in cls.__doc__, cls
    fwe = textwrap.indent(docdict["fwe_montecarlo_parameters"], "        ")
    for cls in (ALE, MKDADensity, KDA, ALESubtraction, SCALE, MKDAChi2, MonteCarloFWE):
        assert fwe in cls.correct_fwe_montecarlo.__doc__, cls
    result = textwrap.indent(docdict["corrector_result"], "        ")
    for cls in (FWECorrector, FDRCorrector):
        assert result in cls.inspect.__doc__ and result in cls.transform.__doc__, cls


def test_every_documented_parameter_exists_in_the_signature():
    """A shared section must not document a parameter the object does not take: each
    ``name :`` line of a Parameters section is a parameter of the function (or of the
    class's ``__init__``), ``**kwargs`` included."""
    section = re.compile(r"\n( *)Parameters\n\1-+\n(.*?)(?:\n\s*\n|\Z)", re.DOTALL)
    wrong = []
    for qualname, obj in _public_objects():
        doc = inspect.getdoc(obj) or ""
        if "%(" in (obj.__doc__ or "") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        # a class: the parameters of every __init__ along its MRO (passed on by **kwargs)
        if inspect.isclass(obj):
            targets = [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)]
        else:
            targets = [obj]
        params = set()
        for target in targets:
            try:
                params |= set(inspect.signature(target).parameters)
            except (TypeError, ValueError):
                continue
        if not params:
            continue
        names = params | {"*" + n for n in params} | {"**" + n for n in params}
        found = section.search("\n" + doc)
        if not found:
            continue
        for line in found.group(2).splitlines():
            if line.startswith(" ") or " : " not in line and not line.startswith("*"):
                continue
            documented = [n.strip() for n in line.split(" : ")[0].split(",")]
            missing = [n for n in documented if n and n not in names]
            if missing:
                wrong.append(f"{qualname}: {missing}")
    assert not wrong, wrong
