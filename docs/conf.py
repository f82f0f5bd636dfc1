"""Sphinx configuration of the nimare_jax documentation (built by ``nox -s docs``)."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api_reference import write_api_rst  # noqa: E402

write_api_rst(HERE / "api.rst")

project = "nimare_jax"
author = "the nimare_jax developers"
copyright = "the nimare_jax developers (MIT)"  # noqa: A001

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "contents"
exclude_patterns = ["_build", "examples", "**.ipynb_checkpoints", "sg_execution_times.rst"]
templates_path = ["_templates"]
html_theme = "alabaster"  # Sphinx's default: no extra dependency
html_static_path = []
html_theme_options = {"description": "Neuroimaging meta-analysis as JAX functions"}

# --- API reference -------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc sections give the types
numpydoc_show_class_members = False  # the class template lists members once, via autodoc
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()  # ruff's pydocstyle rules check the docstrings
numpydoc_xref_param_type = False
nitpicky = False

# --- markdown pages (docs/*.md) ---------------------------------------------------------
myst_heading_anchors = 3  # links such as (architecture.md#the-layers) resolve

# --- examples gallery (examples/) ----------------------------------------------------
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would flood the build log
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "abort_on_example_error": False,  # report every failing example, then fail (-W)
    "write_computation_times": True,
    "min_reported_time": 0,
}
