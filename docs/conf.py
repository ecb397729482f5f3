"""Sphinx configuration: Markdown pages (MyST), the furo theme, the API reference from docstrings.

Build offline with warnings as errors: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(``tests/docs/test_docs_build.py`` does it in the test suite).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's chatdsl, also when it is not installed

import chatdsl  # noqa: E402

project = "chatdsl"
author = "chatdsl developers"
copyright = "chatdsl developers"
release = version = chatdsl.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links work as on GitHub

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False  # FrozenDict.update is not dict.update: show what chatdsl documents
autodoc_default_options = {"members": True, "show-inheritance": True}
add_module_names = False

html_theme = "furo"
html_title = f"chatdsl {release}"
html_static_path: list[str] = []


def _public_bases(app: object, name: str, obj: object, options: object, bases: list[type]) -> None:
    """Show only public base classes (``Bases: ValueError``, never a private mixin)."""
    bases[:] = [base for base in bases if base is not object and not getattr(base, "__name__", "").startswith("_")]


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _public_bases)
