"""The README's Python snippets run, in order, as a reader would paste them into one session.

TOML blocks whose first line is ``# path`` are written to that path first (the README's template
files), in a scratch directory that also holds ``examples/``; the real API is never called.
"""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(python|toml)\n(.*?)```", README, re.S)


def test_the_readme_has_snippets() -> None:
    assert sum(1 for kind, _ in BLOCKS if kind == "python") >= 10


def test_the_readme_snippets_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    os.symlink(ROOT / "examples", tmp_path / "examples")
    module = types.ModuleType("readme_snippets")  # a real module, so annotations resolve
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    ran = 0
    for index, (kind, code) in enumerate(BLOCKS):
        if kind == "toml":
            first = code.splitlines()[0]
            if first.startswith("# ") and first.endswith(".toml"):
                target = tmp_path / first[2:].strip()
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(code, encoding="utf-8")
            continue
        exec(compile(code, f"README.md python block {index}", "exec"), namespace)  # the README's own code
        ran += 1
    assert ran >= 10
    assert capsys.readouterr().out  # the snippets print what they show


def test_every_public_name_is_shown_in_the_readme_or_an_example() -> None:
    import chatdsl

    shown = README + "".join(path.read_text(encoding="utf-8") for path in (ROOT / "examples").glob("*.py"))
    missing = [name for name in chatdsl.__all__ if not re.search(rf"\b{re.escape(name)}\b", shown)]
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


def test_every_public_name_of_chatdsl_testing_is_in_the_readme() -> None:
    import chatdsl.testing

    missing = [name for name in chatdsl.testing.__all__ if not re.search(rf"\b{re.escape(name)}\b", README)]
    assert missing == []
