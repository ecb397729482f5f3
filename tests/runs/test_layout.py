"""The layout of ``chatdsl.runs``: rows and the run's core stay free of the HTTP stack (an async client reuses them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import chatdsl.runs
from tests.client.test_layout import HTTP_STACK, _imported_modules, _imported_roots

RUNS = chatdsl.runs.__path__[0]
TRANSPORT_FREE = ("rows", "core")


@pytest.mark.parametrize("name", TRANSPORT_FREE)
def test_rows_and_core_import_neither_requests_nor_the_sync_client(name: str) -> None:
    path = Path(RUNS) / f"{name}.py"
    assert not _imported_roots(path) & HTTP_STACK
    assert "chatdsl.client.sync" not in _imported_modules(path)


def test_importing_rows_and_core_loads_no_http_stack() -> None:
    code = (
        "import sys, chatdsl.runs.rows, chatdsl.runs.core; "
        "print(sorted(m for m in ('requests', 'urllib3', 'chatdsl.client.sync') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_the_asyncio_run_imports_no_http_stack_of_its_own() -> None:
    """``apool`` only awaits the client's calls: importing it loads neither aiohttp nor requests (nor the pool)."""
    code = (
        "import sys, chatdsl.runs.apool; "
        "names = ('aiohttp', 'requests', 'chatdsl.client.aio', 'chatdsl.runs.pool'); "
        "print(sorted(m for m in names if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
