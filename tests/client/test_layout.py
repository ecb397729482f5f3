"""The layout of ``chatdsl.client``: the transport-free modules stay free of the HTTP stacks, imports run one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import chatdsl.client

CLIENT = Path(chatdsl.client.__file__).parent
TRANSPORT_FREE = ("base", "batch", "config", "deadline", "loop", "merge", "retry", "status", "stream")
HTTP_STACK = {"requests", "urllib3", "aiohttp"}


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
def test_a_transport_free_module_imports_no_http_stack(name: str) -> None:
    path = CLIENT / f"{name}.py"
    assert not _imported_roots(path) & HTTP_STACK, f"{path.name} imports {_imported_roots(path) & HTTP_STACK}"


@pytest.mark.parametrize("name", TRANSPORT_FREE)
def test_a_transport_free_module_does_not_import_a_client(name: str) -> None:
    imported = _imported_modules(CLIENT / f"{name}.py")
    assert not imported & {"chatdsl.client.sync", "chatdsl.client.transport", "chatdsl.client.aio"}


def test_the_import_checker_sees_the_http_stack_of_the_transports() -> None:
    assert _imported_roots(CLIENT / "transport.py") >= {"requests", "urllib3"}
    assert "requests" in _imported_roots(CLIENT / "sync.py")


def test_no_client_module_is_over_800_lines() -> None:
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in CLIENT.glob("*.py")}
    assert all(size <= 800 for size in sizes.values()), sizes


def _client_graph() -> dict[str, set[str]]:
    """The imports between ``chatdsl.client`` modules (inside functions too, under TYPE_CHECKING not)."""
    graph: dict[str, set[str]] = {}
    for path in CLIENT.glob("*.py"):
        name = f"chatdsl.client.{path.stem}"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {
            id(child)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for stmt in node.body
            for child in ast.walk(stmt)
        }
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m.startswith("chatdsl.client.") and m != name}
    return graph


def test_no_import_circle_of_more_than_two_client_modules() -> None:
    graph = _client_graph()

    def reaches(start: str, goal: str, avoid: frozenset[str]) -> bool:
        stack, seen = [start], set(avoid)
        while stack:
            current = stack.pop()
            if current == goal:
                return True
            if current in seen:
                continue
            seen.add(current)
            stack += graph.get(current, ())
        return False

    for module, targets in graph.items():
        for target in targets:
            # a circle through module -> target -> ... -> module with a third module on the way
            longer = any(reaches(step, module, frozenset({target})) for step in graph.get(target, ()) if step != module)
            assert not longer, f"{module} -> {target} closes an import circle of more than two modules"


def test_importing_the_transport_free_modules_loads_no_http_stack() -> None:
    imports = "".join(f"import chatdsl.client.{name}; " for name in TRANSPORT_FREE)
    shown = "print(sorted(m for m in ('requests', 'urllib3', 'aiohttp', 'chatdsl.client.sync') if m in sys.modules))"
    code = f"import sys; {imports}{shown}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
