"""Run NiMARE 0.22.1's own test suite against nimare_jax and print one table.

Usage::

    python scripts/run_nimare_tests.py [--modules dataset io ...] [--workdir DIR]
        [--cache DIR] [--keep] [-- extra pytest arguments]

What it does, without ever importing NiMARE:

1. ``pip download nimare==0.22.1 --no-deps`` into a cache folder
   (``~/.cache/nimare_jax/nimare-tests`` unless ``--cache``/``NIMARE_JAX_TEST_CACHE``), once.
2. Installs PyMARE (:data:`TEST_DEPS`, an independent reference some tests compare with)
   into ``<cache>/deps`` without dependencies.
3. Unzips ``nimare/tests/**`` (the test modules, ``conftest.py``, ``utils.py`` and ``data/``)
   from the wheel into a fresh work folder, as the package ``nimare_tests``.
4. Restores the ``test_pain_dataset`` images that the wheel does not ship, from the copy kept
   in this repository (``tests/data/nimare_test_pain_dataset``, NiMARE's MIT files).
5. Rewrites the *import statements only* (``import nimare``, ``from nimare.x import y``,
   ``import nimare.x as y``, at any indentation): ``nimare.tests`` becomes the copied
   ``nimare_tests`` package and every other ``nimare`` module becomes ``nimare_jax``. Each
   name is bound through a small shim (written next to the tests) that returns a stand-in
   when nimare_jax lacks the name; the stand-in raises ``ImportError: nimare_jax lacks
   <dotted name>`` when a test uses it. One missing private helper therefore fails only the
   tests that use it rather than the whole module, and the table names it as the cause. The
   replacement keeps the statement's line numbers. Test bodies are not edited.
6. Runs pytest once (single process, ``-p no:cacheprovider``, junit XML) on the modules, with
   the tests in :data:`EXCLUDED` deselected, from a run folder holding a
   ``nimare/tests/data`` link (some NiMARE tests open ``"nimare/tests/data/..."`` relative to
   NiMARE's repository root).
7. Prints one row per module: passed, failed, errors, skipped, excluded, and the most
   frequent causes (exception type and the start of its message).

Exit status: 0 when the run completed (whatever the pass rate), 1 when pytest could not run.
"""

from __future__ import annotations

import argparse
import ast
import collections
import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

NIMARE_VERSION = "0.22.1"
REPO = Path(__file__).resolve().parents[1]
PAIN_IMAGES = REPO / "tests" / "data" / "nimare_test_pain_dataset"
DEFAULT_CACHE = Path(
    os.environ.get("NIMARE_JAX_TEST_CACHE", Path.home() / ".cache" / "nimare_jax" / "nimare-tests")
)
PACKAGE = "nimare_tests"
#: Third-party packages NiMARE's tests import beyond nimare_jax's own dependencies: PyMARE
#: supplies the reference FDR/Bonferroni that test_stats and test_correct compare against.
#: Installed without dependencies into ``<cache>/deps`` (its own needs, numpy, scipy, pandas
#: and sympy, come with the environment), so the active environment is left unchanged.
TEST_DEPS = ["pymare==0.0.13"]

#: Short module names (issue 12) -> NiMARE's test file in ``nimare/tests/``.
MODULES = {
    "dataset": "test_dataset.py",
    "io": "test_io.py",
    "sleuth_conversion": "test_sleuth_conversion.py",
    "nimads": "test_nimads.py",
    "utils": "test_utils.py",
    "stats": "test_stats.py",
    "generate": "test_generate.py",
    "transforms": "test_transforms.py",
    "meta_kernel": "test_meta_kernel.py",
    "meta_ale": "test_meta_ale.py",
    "meta_mkda": "test_meta_mkda.py",
    "meta_ibma": "test_meta_ibma.py",
    "correct": "test_correct.py",
    "diagnostics": "test_diagnostics.py",
    "results": "test_results.py",
    "workflows": "test_workflows.py",
    "reproducibility": "test_reproducibility.py",
    "logspace_p_values": "test_logspace_p_values.py",
}

_NET = "needs the network (live NeuroStore/NeuroVault API); not a nimare_jax feature to test"

#: Deselected tests, node id (relative to the copied package) -> reason.
#: Categories: tests that need the network; tests of NiMARE's private helpers, whose
#: names and internals nimare_jax does not reproduce (its numerics live in jitted
#: ``nimare_jax.ops`` kernels, tested against NiMARE's outputs instead); deliberate
#: differences from NiMARE.
EXCLUDED: dict[str, str] = {
    "test_io.py::test_fetch_neurostore_studyset": _NET,
    "test_io.py::test_fetch_neurostore_studyset_with_annotation": _NET,
    "test_generate.py::test_create_neurovault_dataset": _NET,
    "test_generate.py::test_create_neurovault_studyset": _NET,
}

SHIM = '''\
"""Bind names for the rewritten NiMARE tests (written by scripts/run_nimare_tests.py)."""

import importlib


class Missing:
    """Stand-in for a name nimare_jax lacks; using it raises ImportError naming it."""

    def __init__(self, name):
        object.__setattr__(self, "_name", name)

    def _fail(self, *args, **kwargs):
        raise ImportError(f"nimare_jax lacks {self._name}")

    @property
    def __name__(self):
        return self._name.rsplit(".", 1)[-1]

    def __getattr__(self, attr):
        if attr == "__qualname__":
            return self.__name__
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Missing(f"{self._name}.{attr}")

    __call__ = _fail
    __iter__ = _fail
    __getitem__ = _fail
    __enter__ = _fail
    __fspath__ = _fail

    def __repr__(self):
        return f"<missing {self._name}>"


def module(name):
    """Import module ``name`` or return a stand-in."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return Missing(name)


def name(modname, attr):
    """``from modname import attr`` or a stand-in."""
    mod = module(modname)
    if not isinstance(mod, Missing):
        if hasattr(mod, attr):
            return getattr(mod, attr)
        sub = module(f"{modname}.{attr}")
        if not isinstance(sub, Missing):
            return sub
    return Missing(f"{modname}.{attr}")
'''


def _target(modname: str) -> str:
    """Map a NiMARE module path to the module the rewritten test imports."""
    if modname == "nimare.tests" or modname.startswith("nimare.tests."):
        return PACKAGE + modname[len("nimare.tests") :]
    return "nimare_jax" + modname[len("nimare") :]


def _is_nimare(modname: str | None) -> bool:
    return modname is not None and (modname == "nimare" or modname.startswith("nimare."))


def rewrite_imports(source: str) -> str:
    """Rewrite NiMARE import statements in ``source``; every other line is kept verbatim."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_is_nimare(a.name) for a in node.names):
            stmts = []
            for alias in node.names:
                if not _is_nimare(alias.name):
                    stmts.append(
                        f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                    )
                elif alias.asname:
                    stmts.append(f"{alias.asname} = _nj_shim.module({_target(alias.name)!r})")
                else:  # ``import nimare.x.y`` binds ``nimare`` after importing the submodule
                    stmts.append(f"_nj_shim.module({_target(alias.name)!r})")
                    stmts.append(f"{alias.name.split('.')[0]} = _nj_shim.module('nimare_jax')")
            edits.append((node, stmts))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_nimare(node.module):
            target = _target(node.module)
            stmts = [
                f"{a.asname or a.name} = _nj_shim.name({target!r}, {a.name!r})" for a in node.names
            ]
            edits.append((node, stmts))
    for node, stmts in sorted(edits, key=lambda e: e[0].lineno, reverse=True):
        first = lines[node.lineno - 1]
        indent = first[: len(first) - len(first.lstrip())]
        new = indent + f"import {PACKAGE}._nj_shim as _nj_shim; " + "; ".join(stmts) + "\n"
        n_lines = node.end_lineno - node.lineno + 1
        lines[node.lineno - 1 : node.end_lineno] = [new] + ["\n"] * (n_lines - 1)
    return "".join(lines)


def fetch_wheel(cache: Path) -> Path:
    """Return NiMARE's wheel, downloading it (no dependencies, nothing installed) if needed."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob(f"nimare-{NIMARE_VERSION}-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"nimare=={NIMARE_VERSION}"]
            + ["--no-deps", "--only-binary", ":all:", "-d", str(cache)],
            check=True,
        )
        wheels = sorted(cache.glob(f"nimare-{NIMARE_VERSION}-*.whl"))
    return wheels[0]


def fetch_test_deps(cache: Path) -> Path:
    """Install :data:`TEST_DEPS` into ``cache/deps`` once; return that folder."""
    deps = cache / "deps"
    stamp = deps / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(TEST_DEPS):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--upgrade", "--quiet"]
            + ["--target", str(deps), *TEST_DEPS],
            check=True,
        )
        stamp.write_text(" ".join(TEST_DEPS))
    return deps


def prepare(wheel: Path, workdir: Path) -> Path:
    """Lay out ``workdir/nimare_tests`` (rewritten tests + data) and ``workdir/run``."""
    if workdir.exists():
        shutil.rmtree(workdir)
    pkg = workdir / PACKAGE
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if not member.startswith("nimare/tests/") or member.endswith("/"):
                continue
            if "__pycache__" in member:
                continue
            dest = pkg / member[len("nimare/tests/") :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = zf.read(member)
            if dest.suffix == ".py":
                data = rewrite_imports(data.decode()).encode()
            dest.write_bytes(data)
    (pkg / "__init__.py").touch()
    (pkg / "_nj_shim.py").write_text(SHIM)
    pain = pkg / "data" / "test_pain_dataset"
    pain.mkdir(parents=True, exist_ok=True)
    for f in PAIN_IMAGES.iterdir():
        shutil.copy(f, pain / f.name)
    (workdir / "pytest.ini").write_text("[pytest]\n")
    run = workdir / "run"
    (run / "nimare" / "tests").mkdir(parents=True)
    (run / "nimare" / "tests" / "data").symlink_to(pkg / "data", target_is_directory=True)
    return run


def _cause(elem: ET.Element) -> str:
    """``ExceptionType: message prefix`` from a junit failure/error element."""
    msg = (elem.get("message") or "").strip().splitlines()
    text = msg[0] if msg else ""
    if not text or text == "collection failure":
        body = (elem.text or "").strip().splitlines()
        errs = [ln[2:].strip() for ln in body if ln.startswith("E ")]
        errs = [e for e in errs if re.match(r"[\w.]+(Error|Exception|Warning)\b", e)] or errs
        text = errs[0] if errs else (body[-1] if body else elem.tag)
        if msg and msg[0] == "collection failure":
            text = "collection: " + text
    text = re.sub(r"0x[0-9a-f]+", "0x..", text)
    text = re.sub(r"/\S+/", ".../", text)
    return text[:90]


def _count_tests(path: Path) -> int:
    """Test functions defined in ``path`` (parametrised cases not expanded)."""
    tree = ast.parse(path.read_text())
    return sum(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test")
        for n in ast.walk(tree)
    )


def summarise(junit: Path, modules: list[str], files_dir: Path) -> list[dict]:
    """Count outcomes per module from pytest's junit XML.

    A module that fails to import counts one error per test function it defines.
    """
    files = {MODULES[m][:-3]: m for m in modules}
    rows = {m: collections.Counter() for m in modules}
    causes = {m: collections.Counter() for m in modules}
    for case in ET.parse(junit).getroot().iter("testcase"):
        cls = case.get("classname", "") or case.get("name", "")
        parts = cls.split(".")
        mod = next((files[p] for p in parts if p in files), None)
        if mod is None:
            continue
        kinds = {child.tag: child for child in case}
        if "error" in kinds and (kinds["error"].get("message") or "") == "collection failure":
            # the module did not import: count each of its test functions as an error
            n = _count_tests(files_dir / MODULES[mod])
            rows[mod]["errors"] += n
            causes[mod][_cause(kinds["error"])] += n
        elif "error" in kinds:
            rows[mod]["errors"] += 1
            causes[mod][_cause(kinds["error"])] += 1
        elif "failure" in kinds:
            rows[mod]["failed"] += 1
            causes[mod][_cause(kinds["failure"])] += 1
        elif "skipped" in kinds:
            rows[mod]["skipped"] += 1
        else:
            rows[mod]["passed"] += 1
    out = []
    for m in modules:
        excluded = sum(1 for k in EXCLUDED if k.split("::")[0] == MODULES[m])
        out.append({"module": m, **rows[m], "excluded": excluded, "causes": causes[m]})
    return out


def table(rows: list[dict], n_causes: int = 2) -> str:
    """Markdown table: one row per module, then totals."""
    head = "| module | passed | failed | errors | skipped | excluded | top causes |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---|"]
    total = collections.Counter()
    for r in rows:
        top = "; ".join(f"{n}x `{c}`" for c, n in r["causes"].most_common(n_causes))
        for k in ("passed", "failed", "errors", "skipped", "excluded"):
            total[k] += r.get(k, 0)
        lines.append(
            f"| {r['module']} | {r.get('passed', 0)} | {r.get('failed', 0)} | "
            f"{r.get('errors', 0)} | {r.get('skipped', 0)} | {r['excluded']} | {top} |"
        )
    lines.append(
        f"| **total** | {total['passed']} | {total['failed']} | {total['errors']} | "
        f"{total['skipped']} | {total['excluded']} | |"
    )
    ran = total["passed"] + total["failed"] + total["errors"]
    if ran:
        lines.append("")
        lines.append(
            f"{total['passed']} of {ran} non-excluded, non-skipped tests pass "
            f"({100 * total['passed'] / ran:.1f} %)."
        )
    return "\n".join(lines)


def overall_causes(rows: list[dict], n: int = 15) -> str:
    """Return the most frequent causes over all modules, one per line."""
    agg = collections.Counter()
    for r in rows:
        agg.update(r["causes"])
    return "\n".join(f"{k:5d}  {c}" for c, k in agg.most_common(n))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, prepare the tests, run pytest and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=list(MODULES))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--workdir", type=Path, default=None, help="default: <cache>/work")
    parser.add_argument("--causes", type=int, default=2, help="causes listed per module")
    parser.add_argument(
        "--repo",
        type=Path,
        default=REPO,
        help="checkout whose nimare_jax is tested (default: this one), e.g. to compare branches",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest after '--'")
    args = parser.parse_args(argv)

    workdir = (args.workdir or args.cache / "work").resolve()
    run = prepare(fetch_wheel(args.cache), workdir)
    deps = fetch_test_deps(args.cache)
    junit = workdir / "junit.xml"
    pkg = workdir / PACKAGE
    cmd = [sys.executable, "-P", "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist"]
    cmd += [
        "-p",
        "no:randomly",
        "--continue-on-collection-errors",
        "-q",
        "--no-header",
        "-rN",
        "--tb=short",
    ]
    cmd += ["--rootdir", str(workdir), "-c", str(workdir / "pytest.ini")]
    cmd += ["--junitxml", str(junit), "-o", "junit_family=xunit1"]
    for node in EXCLUDED:
        cmd += ["--deselect", f"{PACKAGE}/{node}"]
    cmd += [str(pkg / MODULES[m]) for m in args.modules] + list(args.pytest_args)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(args.repo.resolve()), str(workdir), str(deps)])
    print("+", " ".join(cmd[:8]), "...", flush=True)
    proc = subprocess.run(cmd, cwd=run, env=env)
    if not junit.exists():
        print(f"pytest did not produce {junit} (exit {proc.returncode})", file=sys.stderr)
        return 1
    rows = summarise(junit, args.modules, pkg)
    print()
    print(f"NiMARE {NIMARE_VERSION} test suite against nimare_jax ({args.repo.resolve()})")
    print(table(rows, args.causes))
    print("\nMost frequent causes overall:")
    print(overall_causes(rows))
    print("\nExcluded tests:")
    for node, reason in EXCLUDED.items():
        print(textwrap.fill(f"{node}: {reason}", 100, subsequent_indent="    "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
