"""The documentation's API reference (docs/api_reference.py) covers the public API table.

The page is generated at every docs build; this checks, without Sphinx, that every name
of tests/test_public_api.py's table that imports today gets a page or a link on it, and
that no object gets two pages (Sphinx would fail on a duplicate description).
"""

import importlib
import importlib.util
import re
from pathlib import Path

from test_public_api import API

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "api_reference", ROOT / "docs" / "api_reference.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sections(text):
    """{module: (names with a page, names linked elsewhere)} parsed back from api.rst."""
    out = {}
    for block in re.split(r"^\.\. currentmodule:: ", text, flags=re.M)[1:]:
        module, _, body = block.partition("\n")
        own, _, linked = body.partition("Also importable from here:")
        entries = [re.findall(r"^   (~?[\w.]+)$", part, flags=re.M) for part in (own, linked)]
        out[module.strip()] = entries
    return out


def test_every_public_name_of_the_table_is_in_the_reference():
    gen = _generator()
    assert gen.table() == API  # the generator reads the same table
    sections = _sections(gen.api_rst())
    missing = []
    for module, names, _issue in API:
        full = f"nimare_jax.{module}"
        try:
            mod = importlib.import_module(full)
        except ImportError:
            continue  # not there yet: test_public_api's strict xfail covers it
        own, linked = sections.get(full, ([], []))
        listed = set(own) | {entry.rsplit(".", 1)[-1] for entry in linked}
        missing += [f"{full}.{n}" for n in names if hasattr(mod, n) and n not in listed]
    assert not missing


def test_each_object_has_one_page_and_links_resolve_to_it():
    gen = _generator()
    sections = _sections(gen.api_rst())
    pages = {}
    for module, (own, _linked) in sections.items():
        mod = importlib.import_module(module)
        for name in own:
            obj = getattr(mod, name)
            pages.setdefault(gen._key(obj, name), []).append(f"{module}.{name}")
    assert not {k: v for k, v in pages.items() if len(v) > 1}
    for module, (_own, linked) in sections.items():
        mod = importlib.import_module(module)
        for entry in linked:
            path = entry.lstrip("~")
            target = path if path.startswith("nimare_jax.") else f"{module}.{path}"
            home_module, name = target.rsplit(".", 1)
            obj = getattr(mod, name)
            assert getattr(importlib.import_module(home_module), name) is obj
            assert target in pages[gen._key(obj, name)]
