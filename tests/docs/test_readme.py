"""The README is a front page: short, with the two Quick start commands, linking into the docs site.

Its Python blocks run and are type-checked with every other page's (``test_snippets.py``).
"""

from __future__ import annotations

import re

from tests.docs.pages import README, blocks

TEXT = README.read_text(encoding="utf-8")


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", TEXT, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_the_readme_is_a_front_page() -> None:
    assert len(TEXT.splitlines()) <= 400
    assert len(re.findall(r"\]\(docs/\w[\w-]*\.md", TEXT)) >= 10  # it links into the docs pages


def test_the_quick_start_has_two_commands_one_runs_the_example_one_runs_the_tests() -> None:
    commands = re.findall(r"^```sh\n(.*?)```", section("Quick start"), re.S | re.M)
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/python examples/quickstart.py\n",
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q -n auto\n",
    ]


def test_the_readme_says_how_to_install_chatdsl_into_your_own_project() -> None:
    assert "pip install chatdsl" in TEXT
    assert any(block.lang == "python" and "Client" in block.code for block in blocks(README))
