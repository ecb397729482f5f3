"""The docs site builds offline with warnings as errors, and it documents the whole public API.

The build needs the ``docs`` extra (Sphinx, MyST, furo); without it the build test is skipped — CI
installs the extra and sets ``CHATDSL_DOCS_STRICT=1`` (``.ci/run``), so there it always runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.docs.pages import DOCS, ROOT, STRICT, pages

API = (DOCS / "api.md").read_text(encoding="utf-8")


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    for extra in ("sphinx", "myst_parser", "furo"):
        if not STRICT:
            pytest.importorskip(extra, reason="the docs extra is not installed")
    out = tmp_path / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    done = subprocess.run(
        [*command, "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "index.html").is_file()
    html = (out / "api.html").read_text(encoding="utf-8")
    assert 'id="chatdsl.Client"' in html  # autodoc ran
    assert 'id="chatdsl.testing.LocalServer"' in html


def test_every_page_is_in_the_table_of_contents() -> None:
    shown = "".join(page.read_text(encoding="utf-8") for page in DOCS.glob("*.md"))
    for page in DOCS.glob("*.md"):
        if page.stem != "index":
            assert re.search(rf"^{re.escape(page.stem)}$", shown, re.M), f"{page.name} is in no toctree"


def test_every_public_name_is_in_the_api_reference() -> None:
    import chatdsl
    import chatdsl.testing

    listed = set(re.findall(r"^\.\. auto\w+:: (chatdsl(?:\.testing)?)\.(\w+)", API, re.M))
    listed |= {("chatdsl", name) for line in re.findall(r"^\s+:members: (.*)$", API, re.M) for name in line.split(", ")}
    missing = [
        f"chatdsl.{name}" for name in chatdsl.__all__ if name != "__version__" and ("chatdsl", name) not in listed
    ]
    missing += [
        f"chatdsl.testing.{name}" for name in chatdsl.testing.__all__ if ("chatdsl.testing", name) not in listed
    ]
    assert missing == [], "add them to docs/api.md"


def test_every_public_name_is_shown_in_the_docs_or_an_example() -> None:
    import chatdsl
    import chatdsl.testing

    shown = "".join(page.read_text(encoding="utf-8") for page in pages() if page.name != "api.md")
    shown += "".join(path.read_text(encoding="utf-8") for path in (ROOT / "examples").glob("*.py"))
    names = [*chatdsl.__all__, *chatdsl.testing.__all__]
    missing = [name for name in names if not re.search(rf"\b{re.escape(name)}\b", shown)]
    assert missing == []


def test_every_public_name_is_exported_sorted_and_documented() -> None:
    import chatdsl

    # isort style, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions
    assert list(chatdsl.__all__) == sorted(chatdsl.__all__, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    assert len(set(chatdsl.__all__)) == len(chatdsl.__all__)
    undocumented = [
        name
        for name in chatdsl.__all__
        if (callable(getattr(chatdsl, name)) and isinstance(getattr(chatdsl, name), type | types.FunctionType))
        and not (getattr(chatdsl, name).__doc__ or "").strip()
    ]
    assert undocumented == []


def test_relative_links_between_pages_point_at_pages_that_exist() -> None:
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(((?!https?:|#|mailto:)[^)#\s]+)(?:#[^)]*)?\)", text):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_the_fault_matrix_page_shows_the_matrix_the_tests_run() -> None:
    from tests.reliability.test_fault_matrix import markdown

    assert markdown().strip() in (DOCS / "reliability.md").read_text(encoding="utf-8")
