"""The layout of the package ``chatdsl``: no import circle of more than two modules, no private name imported.

The import graph is read with :mod:`ast` from every ``chatdsl/**/*.py``: imports inside functions and
under ``TYPE_CHECKING`` count (a circle that only closes at run time or for the type checker is still a
circle a reader has to follow). A circle is a set of modules that all reach one another (a strongly
connected component of the graph); two modules that import each other are allowed, three or more are not.
A name with a leading underscore is private to its module: ``from chatdsl.x import _name`` in another
module fails (importing a private *module*, ``from chatdsl import _json``, is fine within the package).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import chatdsl

PACKAGE = Path(chatdsl.__file__).parent


def _module_names(root: Path) -> dict[str, Path]:
    """Map each module's dotted name (``chatdsl.client.sync``; a package by its own name) to its file."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, str | None]]:
    """Yield ``(module, imported name or None)`` for every import of a package module in *path*, nested ones too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                found = next(
                    (".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in modules), None
                )
                if found is not None:
                    yield found, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base not in modules:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule, None) if submodule in modules else (base, alias.name)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Return, for every module of the package at *root*, the package modules it imports (itself left out)."""
    modules = _module_names(root)
    return {
        name: {target for target, _ in _imports(name, path, modules) if target != name}
        for name, path in modules.items()
    }


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the import circles of *graph*: its sets of two or more modules that all reach one another."""

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        stack = list(graph.get(start, ()))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack += graph.get(current, ())
        return seen

    reached = {name: reach(name) for name in graph}
    found: list[list[str]] = []
    done: set[str] = set()
    for name in sorted(graph):
        if name in done or name not in reached[name]:
            continue
        component = sorted(other for other in reached[name] if name in reached[other])
        done.update(component)
        found.append(component)
    return found


def private_imports(root: Path) -> list[str]:
    """Return ``importer: from module import _name`` for every private name one module takes from another."""
    modules = _module_names(root)
    return [
        f"{name}: from {target} import {imported}"
        for name, path in modules.items()
        for target, imported in _imports(name, path, modules)
        if imported is not None and imported.startswith("_") and not imported.startswith("__") and target != name
    ]


def _describe(circle: list[str], graph: dict[str, set[str]]) -> str:
    edges = [f"{a} -> {b}" for a in circle for b in sorted(graph[a]) if b in circle]
    return f"{len(circle)} modules: " + "; ".join(edges)


# ------------------------------------------------------------------------------------ the package


def test_no_import_circle_of_more_than_two_modules() -> None:
    graph = import_graph(PACKAGE)
    longer = [_describe(circle, graph) for circle in circles(graph) if len(circle) > 2]
    assert not longer, "import circles of more than two modules:\n" + "\n".join(longer)


def test_no_module_imports_a_private_name_of_another() -> None:
    assert private_imports(PACKAGE) == []


def test_the_graph_sees_nested_and_type_checking_imports_of_the_package() -> None:
    graph = import_graph(PACKAGE)
    assert "chatdsl.cli.run" in graph["chatdsl.cli.main"]  # imported inside a function (the command starts fast)
    assert "chatdsl.client.sync" in graph["chatdsl.cli.run"]  # under TYPE_CHECKING only
    assert "chatdsl._json" in graph["chatdsl.wire.sse"]  # `from chatdsl import _json`: a module, not a name
    assert ["chatdsl.model.request", "chatdsl.wire.converter"] in circles(graph)  # a known circle of two


def test_the_command_s_subcommand_modules_import_only_the_shared_module_of_the_command() -> None:
    graph = import_graph(PACKAGE)
    for name in ("chatdsl.cli.common", "chatdsl.cli.run", "chatdsl.cli.batch"):
        assert {m for m in graph[name] if m.startswith("chatdsl.cli.")} <= {"chatdsl.cli.common"}, name


# ------------------------------------------------------------------------------------ the checker itself


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_the_checker_finds_a_circle_of_three_closed_inside_a_function_and_under_type_checking(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "def f():\n    from pkg.sub import b\n",
            "sub/__init__.py": "",
            "sub/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.c\n",
            "c.py": "from . import a\nfrom pkg.d import x\n",
            "d.py": "from pkg.c import y\nx = 1\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.c"] == {"pkg.a", "pkg.d"}
    assert circles(graph) == [["pkg.a", "pkg.c", "pkg.d", "pkg.sub.b"]]


def test_the_checker_allows_two_circles_of_two_that_share_no_module(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {"a.py": "import pkg.b\n", "b.py": "from pkg.a import f\n", "c.py": "import pkg.d\n", "d.py": "import pkg.c\n"},
    )
    assert circles(import_graph(package)) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]


def test_the_checker_finds_a_private_name_but_not_a_private_module_or_a_dunder(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {
            "__init__.py": "__version__ = '1'\n",
            "_json.py": "_hidden = 1\n",
            "a.py": "from pkg import _json, __version__\ndef f():\n    from pkg._json import _hidden\n",
        },
    )
    assert private_imports(package) == ["pkg.a: from pkg._json import _hidden"]
