"""Sphinx configuration of the jax_dfl documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (with the ``docs`` extra
installed). The tutorials are executed at build time on CPU; the results pages include the
committed artefacts under ``results/`` and re-run nothing. Nothing here needs the network.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # autodoc imports the checkout's jax_dfl

# The notebook kernels inherit this environment: run JAX on CPU, quietly.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax_dfl  # noqa: E402

project = "jax_dfl"
author = "the jax_dfl authors"
copyright = "the jax_dfl authors"
release = jax_dfl.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
# Files named _*.md are only included into other pages.
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "**/_*.md"]

# --- API pages ---------------------------------------------------------------------------------
autosummary_generate = False  # the API pages list every entry themselves (tests/test_docs.py)
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_type_aliases = {"ArrayLike": "ArrayLike"}  # not its expansion into eight types
autodoc_default_options = {"exclude-members": "count, index"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
add_module_names = False


def _alias_names(app, what, name, obj, options, signature, return_annotation):
    """Sphinx prints an alias inside a union as ``TypeAliasForwardRef('ArrayLike')``: keep the name."""
    fix = lambda s: re.sub(r"TypeAliasForwardRef\('([^']+)'\)", r"\1", s) if s else s
    return fix(signature), fix(return_annotation)


def setup(app):
    app.connect("autodoc-process-signature", _alias_names)


# --- MyST and notebooks ------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "cache"
nb_execution_timeout = 300  # seconds per cell, against hangs: each tutorial takes well under a minute
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# --- HTML --------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "jax_dfl"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
}
