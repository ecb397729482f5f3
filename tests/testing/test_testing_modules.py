"""The modules of chatdsl.testing: one-way imports, a bounded size, the public names re-exported unchanged."""

from __future__ import annotations

import ast
from pathlib import Path

import chatdsl.testing

PACKAGE = Path(chatdsl.testing.__file__).parent

# Each module may import only the modules listed for it (imports inside functions and under TYPE_CHECKING count).
ALLOWED: dict[str, set[str]] = {
    "replies": set(),
    "framing": set(),
    "openai_request": set(),  # request_from_openai, when it moves here from chatdsl.wire.dialects
    "wire": {"replies", "openai_request"},
    "fake": {"replies", "wire"},  # a scripted Reply.answer is shaped like the default answers
    "batch": {"replies", "fake"},  # the Files and Batch APIs, run through the server's normal replies
    "server": {"replies", "wire", "fake", "framing", "batch"},
    "__init__": {"replies", "server"},
}


def _testing_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name.startswith("chatdsl.testing."):
                found.add(name.split(".")[2])
            elif name == "chatdsl.testing":
                found.add("__init__")
    return found


def test_the_modules_import_each_other_one_way() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert {"__init__", "replies", "wire", "fake", "framing", "server"} <= modules <= set(ALLOWED)
    for name in modules:
        assert _testing_imports(PACKAGE / f"{name}.py") <= ALLOWED[name], name


def test_no_module_is_over_800_lines() -> None:
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in PACKAGE.glob("*.py")}
    assert max(sizes.values()) <= 800, sizes


def test_the_public_names_are_those_of_before_and_importable() -> None:
    names = ["Cut", "Headers", "LocalServer", "Pause", "RecordedRequest", "Reply", "StreamItem"]
    assert chatdsl.testing.__all__ == names
    for name in names:
        assert getattr(chatdsl.testing, name) is not None
