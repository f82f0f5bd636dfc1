"""The layer contract: data flows down, and no module imports anything above its layer.

Every module of ``nimare_jax`` is read as source (nothing is imported) and checked against
four rules; docs/architecture.md explains them.

(a) **Order.** Each module belongs to one layer of :data:`LAYERS` and imports only modules
    of its own layer or lower ones. Importing ``a.b.c`` also runs ``a/__init__`` and
    ``a/b/__init__``, so those packages count as imported too.
(b) **Module level only.** Every ``import`` statement sits at module level (a module-level
    ``if`` or ``try`` is fine), never inside a function, lambda or class body; a module
    defines no ``__getattr__`` and imports nothing through ``importlib.import_module`` or
    ``__import__``. These are the ways to hide an upward import from (a).
(c) **Private names stay in their package.** A name with a leading underscore (a function,
    class or constant, imported with ``from m import _x`` or reached as ``m._x`` through an
    imported module) may be used only by modules of the package that defines it, and a
    private module (``workflows/_x.py``) only by modules inside its package. "Package" is the
    folder: ``meta/ibma.py`` may use ``meta/esma.py``'s private helpers, ``transforms.py``
    may not use ``io/images.py``'s.
(d) **Every module has a layer.** A new module (or package) that :data:`LAYERS` does not
    cover fails until it is added there.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "nimare_jax"
THIS_FILE = "tests/test_layers.py"

#: The layers, lowest first: (name, what belongs there, modules). An entry ``"x.*"`` assigns
#: the package ``nimare_jax.x`` with everything in it (a new module there takes its layer);
#: other entries are single modules. The most specific entry wins.
LAYERS = [
    (
        "ops",
        "pure jitted functions on arrays (no files, pandas or classes); the package root only "
        "configures JAX's compilation cache",
        ["nimare_jax", "nimare_jax.ops.*"],
    ),
    (
        "spatial",
        "templates, masks, affines and the small host-side helpers: exceptions, NiMARE's "
        "utils and stats modules, references.bib citations",
        [
            "nimare_jax.spatial",
            "nimare_jax.exceptions",
            "nimare_jax.utils",
            "nimare_jax.stats",
            "nimare_jax.references",
            "nimare_jax.parsing",
            "nimare_jax.docstrings",
        ],
    ),
    (
        "containers",
        "Dataset and MetaResult; NiMARE's base class of estimators, kernels and correctors",
        ["nimare_jax.dataset", "nimare_jax.results", "nimare_jax.base"],
    ),
    (
        "io",
        "Datasets from files (readers, writers, images, network weights) or from simulation, "
        "and conversions of a Dataset's image files; the NIMADS Studyset (read from files, "
        "its tables are a Dataset's) under its NiMARE import paths",
        [
            "nimare_jax.io.*",
            "nimare_jax.generate",
            "nimare_jax.transforms",
            "nimare_jax.studyset",
            "nimare_jax.nimads",
        ],
    ),
    (
        "estimators",
        "estimators, kernels and correctors: configuration and glue over ops; diagnostics, "
        "reports and kernel fitting",
        [
            "nimare_jax.meta.*",
            "nimare_jax.correct",
            "nimare_jax.diagnostics",
            "nimare_jax.reports.*",
            "nimare_jax.fitting",
        ],
    ),
    (
        "derived",
        "analyses built on estimators: peaks2maps training and evaluation, annotation, "
        "decoding, parcellation",
        [
            "nimare_jax.peaks2maps.*",
            "nimare_jax.annotate.*",
            "nimare_jax.decode.*",
            "nimare_jax.parcellate.*",
            "nimare_jax.extract.*",
        ],
    ),
    (
        "workflows",
        "compositions that write files, tables and boilerplate",
        ["nimare_jax.workflows.*"],
    ),
    ("cli", "the nimare-jax command", ["nimare_jax.cli"]),
]

LAYER_NAMES = [name for name, _, _ in LAYERS]


# ----------------------------------------------------------------------------- the model
def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of a module, by its most specific entry (None if uncovered)."""
    best, best_len = None, -1
    for index, (_, _, entries) in enumerate(LAYERS):
        for entry in entries:
            if entry.endswith(".*"):
                package = entry[:-2]
                matches = module == package or module.startswith(package + ".")
                length = len(package)
            else:
                matches, length = module == entry, len(entry) + 1  # exact beats a package
            if matches and length > best_len:
                best, best_len = index, length
    return best


def discover(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Map every module and package of ``nimare_jax`` to its source file."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def package_of(module: str, is_package: bool) -> str:
    """The package (folder) a module's code lives in: itself for a package's __init__."""
    return module if is_package else module.rpartition(".")[0]


def _parents(module: str) -> list[str]:
    """``a.b.c`` -> ``["a.b.c", "a.b", "a"]``: everything importing ``a.b.c`` runs."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class Import:
    """One imported nimare_jax module (and the private name taken from it, if any)."""

    def __init__(self, node, target, name=None):
        self.line, self.target, self.name = node.lineno, target, name
        self.text = ast.unparse(node)


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = package_of(module, is_package).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(tree, module: str, is_package: bool, known) -> list[Import]:
    """Every nimare_jax module a module's import statements name, anywhere in the file."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(node, a.name) for a in node.names if a.name.startswith("nimare_jax")]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(node, module, is_package)
            if not source.startswith("nimare_jax"):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:  # ``from package import module``
                    found.append(Import(node, sub))
                else:
                    found.append(Import(node, source, alias.name))
    return found


# ----------------------------------------------------------------------------- the rules
def order_violations(module, path, tree, is_package, known) -> list[str]:
    """Rule (a): imports of modules in a higher layer (or run through a higher package)."""
    own = layer_of(module)
    out, seen = [], set()
    for imp in imports_of(tree, module, is_package, known):
        if (imp.line, imp.target) in seen:
            continue  # ``from m import a, b``: one message per statement and module
        seen.add((imp.line, imp.target))
        for target in _parents(imp.target):
            layer = layer_of(target)
            if layer is None or layer <= own:
                continue
            via = "" if target == imp.target else f" (its package {target}'s __init__ runs)"
            out.append(
                f"{_where(path, imp.line)}: {module} (layer {LAYER_NAMES[own]!r}) imports "
                f"{imp.target}{via}, which is in the higher layer {LAYER_NAMES[layer]!r}: "
                f"`{imp.text}`. Move what it needs down, or move the importer up."
            )
            break
    return out


def placement_violations(module, path, tree) -> list[str]:
    """Rule (b): imports inside functions or classes, module __getattr__, dynamic imports."""
    out = []

    def visit(node, scope):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom) and scope:
                out.append(
                    f"{_where(path, child.lineno)}: `{ast.unparse(child)}` is inside {scope}; "
                    "imports belong at module level (a deferred import hides the layer order "
                    "and the import cost)"
                )
            if (
                isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                and child.name == "__getattr__"
                and not scope
            ):
                out.append(
                    f"{_where(path, child.lineno)}: module-level __getattr__ in {module}; a "
                    "lazy attribute dodges the layer order: import the name at module level"
                )
            if isinstance(child, ast.Call) and _is_dynamic_import(child):
                out.append(
                    f"{_where(path, child.lineno)}: dynamic import `{ast.unparse(child)}` in "
                    f"{module}; use an import statement at module level"
                )
            inner = scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = f"function {child.name}()"
            elif isinstance(child, ast.Lambda):
                inner = "a lambda"
            elif isinstance(child, ast.ClassDef):
                inner = f"class {child.name}"
            visit(child, inner)

    visit(tree, "")
    return out


def _is_dynamic_import(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in {"__import__", "import_module"}
    return isinstance(func, ast.Attribute) and func.attr in {"import_module", "__import__"}


def privacy_violations(module, path, tree, is_package, known) -> list[str]:
    """Rule (c): private names or modules used outside the package that defines them."""
    own_package = package_of(module, is_package)
    out, seen = [], set()
    for imp in imports_of(tree, module, is_package, known):
        parts = imp.target.split(".")
        private = [i for i, part in enumerate(parts) if _is_private(part)]
        if private and (imp.line, imp.target) not in seen:
            seen.add((imp.line, imp.target))
            home = ".".join(parts[: private[0]])
            if module != home and not module.startswith(home + "."):
                out.append(
                    f"{_where(path, imp.line)}: {module} imports the private module "
                    f"{imp.target}, private to the package {home}: `{imp.text}`. Give it a "
                    "public name, or move what is shared."
                )
                continue
        if imp.name is not None and _is_private(imp.name):
            home = package_of(imp.target, _is_package_name(imp.target, known))
            if home != own_package:
                out.append(
                    f"{_where(path, imp.line)}: {module} imports the private name "
                    f"{imp.name} of {imp.target} (package {home}) from the package "
                    f"{own_package}: `{imp.text}`. Give it a public name, or move it."
                )
    # ``m._x`` through a module imported from another package
    aliases = _module_aliases(tree, module, is_package, known)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _is_private(node.attr)
        ):
            target = aliases[node.value.id]
            home = package_of(target, _is_package_name(target, known))
            if home != own_package:
                out.append(
                    f"{_where(path, node.lineno)}: {module} uses the private name "
                    f"{node.value.id}.{node.attr} of {target} (package {home}) from the "
                    f"package {own_package}. Give it a public name, or move it."
                )
    return out


def _is_package_name(module: str, known) -> bool:
    path = known.get(module)
    return path is not None and path.name == "__init__.py"


def _module_aliases(tree, module, is_package, known) -> dict[str, str]:
    """Names bound to nimare_jax modules by module-level imports: ``{alias: module}``."""
    aliases = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("nimare_jax") and a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(node, module, is_package)
            for a in node.names:
                if f"{source}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{source}.{a.name}"
    return aliases


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(PACKAGE_DIR.parent)}:{line}"


def check(module, path, source, is_package, known) -> dict[str, list[str]]:
    """All violations of one module's source, by rule."""
    tree = ast.parse(source, filename=str(path))
    return {
        "order": order_violations(module, path, tree, is_package, known),
        "placement": placement_violations(module, path, tree),
        "privacy": privacy_violations(module, path, tree, is_package, known),
    }


# ----------------------------------------------------------------------------- the tests
MODULES = discover()


@functools.cache
def _all_violations() -> dict[str, list[str]]:
    out = {"order": [], "placement": [], "privacy": []}
    for module, path in MODULES.items():
        if layer_of(module) is None:
            continue  # reported by test_every_module_has_a_layer
        source = path.read_text(encoding="utf-8")
        found = check(module, path, source, path.name == "__init__.py", MODULES)
        for rule, messages in found.items():
            out[rule] += messages
    return out


def _violations(rule: str) -> list[str]:
    return _all_violations()[rule]


def _fail(violations: list[str], rule: str) -> None:
    if violations:
        pytest.fail(
            f"{len(violations)} violation(s) of {rule} (see {THIS_FILE} and "
            "docs/architecture.md):\n" + "\n".join(violations),
            pytrace=False,
        )


def test_every_module_has_a_layer():
    assert len(MODULES) > 40, f"found only {len(MODULES)} modules under {PACKAGE_DIR}"
    missing = [
        f"{path.relative_to(PACKAGE_DIR.parent)} (module {module}) has no layer: add "
        f"{module!r} (or its package as '{module}.*') to LAYERS in {THIS_FILE}, in the "
        "lowest layer that holds everything it imports"
        for module, path in MODULES.items()
        if layer_of(module) is None
    ]
    # A module may not sit below its own package: importing it runs the package's __init__.
    below = [
        f"{module} is in layer {LAYER_NAMES[layer_of(module)]!r} but its package {parent} is "
        f"in the higher layer {LAYER_NAMES[layer_of(parent)]!r}; fix the entries in {THIS_FILE}"
        for module in MODULES
        for parent in _parents(module)[1:]
        if layer_of(module) is not None
        and layer_of(parent) is not None
        and layer_of(parent) > layer_of(module)
    ]
    # Single-module entries name modules that exist (a moved module leaves no stale entry).
    stale = [
        f"LAYERS names {entry!r}, which is not a module of nimare_jax; remove it"
        for _, _, entries in LAYERS
        for entry in entries
        if not entry.endswith(".*") and entry not in MODULES
    ]
    _fail(missing + below + stale, "rule (d), every module has a layer")


def test_no_module_imports_from_a_higher_layer():
    _fail(_violations("order"), "rule (a), the layer order")


def test_imports_are_at_module_level():
    _fail(_violations("placement"), "rule (b), imports at module level")


def test_private_names_stay_in_their_package():
    _fail(_violations("privacy"), "rule (c), private names stay in their package")


@pytest.mark.slow
def test_importing_every_module_starts_no_jax_computation():
    """Module-level imports are safe: CPU devices can still be configured after them."""
    code = (
        "import importlib, warnings, jax\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    importlib.import_module(name)\n"
        "from nimare_jax.ops.permute import configure_cpu_devices\n"
        "warnings.simplefilter('error')\n"
        "assert configure_cpu_devices(2)\n"
        "assert len(jax.devices('cpu')) == 2, jax.devices('cpu')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_DIR.parent)}
    env.pop("XLA_FLAGS", None)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]


# ---------------------------------------------------- the checker catches what it should
BAD = """\
import nimare_jax.workflows
from nimare_jax.io.images import _hidden, _other
from nimare_jax.meta import esma
from . import dataset
import nimare_jax.workflows._args
from nimare_jax.meta.cbma import ALE, KDA


def f():
    from nimare_jax.meta.cbma import ALE
    return esma._cr2_t


def __getattr__(name):
    return importlib.import_module("nimare_jax.peaks2maps")
"""


def test_checker_reports_each_rule_with_the_offending_import():
    path = PACKAGE_DIR / "results.py"
    found = check("nimare_jax.results", path, BAD, False, MODULES)
    order = "\n".join(found["order"])
    assert "imports nimare_jax.workflows, which is in the higher layer 'workflows'" in order
    assert "nimare_jax/results.py:10: nimare_jax.results (layer 'containers') imports " in order
    assert "nimare_jax.meta.cbma" in order and "nimare_jax.io.images" in order
    assert order.count(":6: ") == 1  # one message for ``from m import a, b``
    assert "imports nimare_jax.dataset" not in order  # same layer, relative import resolved
    placement = "\n".join(found["placement"])
    assert "results.py:10: `from nimare_jax.meta.cbma import ALE` is inside function f()" in (
        placement
    )
    assert "module-level __getattr__" in placement and "dynamic import" in placement
    privacy = "\n".join(found["privacy"])
    assert "private name _hidden of nimare_jax.io.images (package nimare_jax.io)" in privacy
    assert "private name _other of" in privacy
    assert "private name esma._cr2_t of nimare_jax.meta.esma" in privacy
    assert "private module nimare_jax.workflows._args" in privacy


def test_checker_allows_private_names_within_their_package():
    source = "from nimare_jax.meta import esma\nfrom nimare_jax.meta.esma import _x\nesma._y\n"
    path = PACKAGE_DIR / "meta" / "ibma.py"
    assert check("nimare_jax.meta.ibma", path, source, False, MODULES)["privacy"] == []
    source = "from nimare_jax.workflows._args import positive_int\n"
    path = PACKAGE_DIR / "workflows" / "ale.py"
    assert check("nimare_jax.workflows.ale", path, source, False, MODULES)["privacy"] == []


def test_layer_lookup_prefers_the_most_specific_entry():
    assert LAYER_NAMES[layer_of("nimare_jax")] == "ops"
    assert LAYER_NAMES[layer_of("nimare_jax.ops.kernels")] == "ops"
    assert LAYER_NAMES[layer_of("nimare_jax.meta.cbma.kernel")] == "estimators"
    assert LAYER_NAMES[layer_of("nimare_jax.cli")] == "cli"
    assert layer_of("nimare_jax.clix") is None
    assert layer_of("nimare_jax.new_module") is None
