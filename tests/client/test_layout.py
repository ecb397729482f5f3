"""The layout of ``chatdsl.client``: the transport-free modules stay free of the HTTP stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import chatdsl.client

CLIENT = Path(chatdsl.client.__file__).parent
TRANSPORT_FREE = ("config", "status", "retry", "stream", "deadline")
HTTP_STACK = {"requests", "urllib3"}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.partition(".")[0])
    return roots


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", TRANSPORT_FREE)
def test_a_transport_free_module_imports_neither_requests_nor_urllib3(name: str) -> None:
    path = CLIENT / f"{name}.py"
    assert not _imported_roots(path) & HTTP_STACK, f"{path.name} imports {_imported_roots(path) & HTTP_STACK}"


@pytest.mark.parametrize("name", TRANSPORT_FREE)
def test_a_transport_free_module_does_not_import_the_sync_client(name: str) -> None:
    assert "chatdsl.client.sync" not in _imported_modules(CLIENT / f"{name}.py")


def test_the_import_checker_sees_the_http_stack_of_the_sync_client() -> None:
    assert _imported_roots(CLIENT / "sync.py") >= HTTP_STACK


def test_importing_the_transport_free_modules_loads_no_http_stack() -> None:
    imports = "".join(f"import chatdsl.client.{name}; " for name in TRANSPORT_FREE)
    shown = "print(sorted(m for m in ('requests', 'urllib3', 'chatdsl.client.sync') if m in sys.modules))"
    code = f"import sys; {imports}{shown}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
