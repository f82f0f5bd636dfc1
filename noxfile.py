"""Task sessions: ``nox`` runs the tests; lint, bench and parity run on request (``nox -s``)."""

from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session):
    """Run the test suite on 2 cores; extra arguments go to pytest (``nox -- -k ale``)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-n", "2", *session.posargs)


@nox.session
def lint(session):
    """Ruff lint (pycodestyle, pyflakes, isort, numpydoc docstring rules) and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session):
    """Run every ``benchmarks/*.py`` script (see benchmarks/README.md); posargs go to each."""
    session.install("-e", ".")
    for script in sorted(Path("benchmarks").glob("*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session
def parity(session):
    """Compare with NiMARE 0.22.1, installed from PyPI next to nimare_jax (``-m parity``)."""
    session.install("-e", ".[test]", "nimare==0.22.1")
    session.run("python", "-m", "pytest", "-n", "2", "-m", "parity", *session.posargs)


@nox.session
def docs(session):
    """Build the documentation site (Sphinx, gallery run on CPU) into docs/_build/html.

    Warnings are errors (``-W --keep-going``); extra arguments go to ``sphinx-build``
    (``nox -s docs -- -D sphinx_gallery_conf.plot_gallery=0`` skips running the examples).
    """
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", *session.posargs,
        "docs", "docs/_build/html",
    )  # fmt: skip


@nox.session(name="nimare-tests")
def nimare_tests(session):
    """Run NiMARE 0.22.1's own tests against nimare_jax (scripts/run_nimare_tests.py)."""
    session.install("-e", ".[test]")
    session.run("python", "scripts/run_nimare_tests.py", *session.posargs)
