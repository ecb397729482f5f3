"""The documentation pages (``README.md`` and ``docs/*.md``) and the code blocks they hold.

A fenced block is ``python``, ``toml`` or anything else (shell, text: never run). The line right
before a fence may mark the block with an HTML comment, invisible on GitHub and in the built site:

- ``<!-- snippet: no-mypy -->`` — the block shows a type error on purpose; it still runs, but it is
  left out of the ``mypy --strict`` check;
- ``<!-- snippet: no-run -->`` — the block is shown, not run (and not type-checked), for code that
  needs a real API key or a server that is not there;
- ``<!-- snippet: needs-mistralai -->`` (any importable module name after ``needs-``) — code written
  for another library (the official SDKs, side by side with chatdsl): it runs when that library is
  installed and is skipped otherwise (with ``CHATDSL_DOCS_STRICT=1``, as CI sets, a missing library
  is a failure); it is not type-checked, since its types are
  that library's, not chatdsl's.

A ``toml`` block whose first line is ``# path.toml`` is written to that path before the blocks after it
run (the template files the guide loads).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STRICT = os.environ.get("CHATDSL_DOCS_STRICT") == "1"  # CI: nothing documented may be skipped
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MARKS = frozenset({"no-mypy", "no-run"})
NEEDS = "needs-"

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*$")
_MARK = re.compile(r"^\s*<!--\s*snippet:\s*(?P<marks>[\w\s,-]+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page: its language, its code, its marks and where it starts."""

    page: Path
    line: int
    lang: str
    code: str
    marks: frozenset[str]

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def needs(self) -> tuple[str, ...]:
        """The modules this block needs besides chatdsl's own (``needs-`` marks)."""
        return tuple(sorted(mark.removeprefix(NEEDS) for mark in self.marks if mark.startswith(NEEDS)))

    @property
    def runs(self) -> bool:
        return self.lang == "python" and "no-run" not in self.marks

    @property
    def type_checked(self) -> bool:
        return self.runs and "no-mypy" not in self.marks and not self.needs


def pages() -> list[Path]:
    """README.md and every Markdown page of the docs site, in a stable order."""
    return [README, *sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)]


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of *page*, in order."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = opening["indent"]
        mark = _MARK.match(lines[index - 1]) if index else None
        marks = frozenset(re.split(r"[\s,]+", mark["marks"])) if mark else frozenset()
        unknown = {m for m in marks if m not in MARKS and not m.startswith(NEEDS)}
        if unknown:
            raise ValueError(f"{page}:{index}: unknown snippet mark(s) {sorted(unknown)}")
        body: list[str] = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else lines[end])
            end += 1
        found.append(Block(page, index + 1, opening["lang"], "\n".join(body) + "\n", marks))
        index = end + 1
    return found


def template_file(block: Block) -> str | None:
    """The path a ``toml`` block names on its first line (``# prompts/base.toml``), or ``None``."""
    first = block.code.splitlines()[0] if block.code.strip() else ""
    if block.lang == "toml" and first.startswith("# ") and first.endswith(".toml"):
        return first[2:].strip()
    return None
