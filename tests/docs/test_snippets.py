"""Every Python block of the README and of the docs pages runs, offline, and passes ``mypy --strict``.

The blocks of one page run in order in one namespace, as a reader would paste them into one session,
from a scratch directory that also holds ``examples/`` (template files the page shows are written
there first); the real API is never called. Each block is also type-checked on its own, as a module
of its own, so every block is complete: a reader can paste any one of them. Marks that exempt a block
are described in ``tests/docs/pages.py``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import types
from pathlib import Path

import pytest

from tests.docs.pages import README, ROOT, STRICT, Block, blocks, pages, template_file

# one mypy cache per pytest-xdist worker: two mypy runs must not write one cache at once
CACHE = ROOT / ".mypy_cache" / f"snippets-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
PAGES = pages()


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_pages_have_snippets() -> None:
    assert len(PAGES) > 10
    runnable = [block for page in PAGES for block in blocks(page) if block.runs]
    assert len(runnable) >= 40
    assert sum(1 for block in blocks(README) if block.runs) >= 5


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_the_snippets_of_a_page_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MISTRAL_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    os.symlink(ROOT / "examples", tmp_path / "examples")
    module = types.ModuleType("snippets_of_" + re.sub(r"\W", "_", page.stem))  # a real module: annotations resolve
    monkeypatch.setitem(sys.modules, module.__name__, module)
    ran = 0
    for block in blocks(page):
        target = template_file(block)
        if target is not None:
            (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / target).write_text(block.code, encoding="utf-8")
        missing = [name for name in block.needs if importlib.util.find_spec(name) is None]
        assert not (missing and STRICT), f"{block.where} needs {missing}"
        if block.runs and not missing:
            exec(compile(block.code, block.where, "exec"), module.__dict__)  # the page's own code
            ran += 1
    if ran:
        assert capsys.readouterr().out  # the snippets print what they show


def _module_name(block: Block, number: int) -> str:
    return re.sub(r"\W", "_", f"snippet_{block.page.stem}_{number:02d}_line_{block.line}").lower()


def test_every_snippet_passes_mypy_strict(tmp_path: Path) -> None:
    from mypy import api

    where: dict[str, str] = {}
    files: list[str] = []
    for page in PAGES:
        for number, block in enumerate(b for b in blocks(page) if b.type_checked):
            path = tmp_path / f"{_module_name(block, number)}.py"
            path.write_text(block.code, encoding="utf-8")
            where[path.name] = block.where
            files.append(str(path))
    assert len(files) >= 40
    limit = sys.getrecursionlimit()
    try:  # the project's settings (strict, warn_unreachable), over the snippets instead of the package
        config = ["--config-file", str(ROOT / "pyproject.toml"), "--strict", "--no-error-summary"]
        out, err, status = api.run([*config, "--cache-dir", str(CACHE), *files])
    finally:
        sys.setrecursionlimit(limit)  # mypy.api lowers it
    report = re.sub(r"\S*?(snippet_\w+\.py):(\d+)", lambda m: f"{where[m[1]]} +{int(m[2]) - 1}", out)
    assert status == 0, report + err


def test_every_block_mark_is_used_sparingly() -> None:
    marked = [
        block.where
        for page in PAGES
        for block in blocks(page)
        if block.lang == "python" and not block.needs and not block.type_checked
    ]
    assert len(marked) <= 5, marked  # errors shown on purpose are rare; everything else is checked
