"""Not given: ``None`` and ``UNSET`` mean the same in every public signature that has such an optional
parameter, at run time and for mypy; and ``ToolRunResult.output`` is typed like ``AssistantMessage.output``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest

import chatdsl
from chatdsl import UNSET, PropertyDefinition, Tool, ToolCall, chat

ROOT = Path(__file__).resolve().parents[2]
CALL = ToolCall(id="c1", function=chatdsl.FunctionCall(name="f", arguments="{}"))
SCHEMA = {"type": "object", "title": "Answer", "properties": {}}


def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


@attrs.frozen
class Point:
    """A point."""

    x: int


# Each case: a call with every "not given" parameter left out, then the same call with None, with UNSET.
CASES: dict[str, tuple[Any, Any, Any]] = {
    "chat": (lambda: chat(), lambda: chat(None), lambda: chat(UNSET)),
    "assistant": (
        lambda: chat().assistant(),
        lambda: chat().assistant(None, tool_calls=None, prefix=None),
        lambda: chat().assistant(UNSET, tool_calls=UNSET, prefix=UNSET),
    ),
    "tool": (
        lambda: chat().tool("r", tool_call_id="c1"),
        lambda: chat().tool("r", tool_call_id="c1", name=None),
        lambda: chat().tool("r", tool_call_id="c1", name=UNSET),
    ),
    "with_response_json_schema": (
        lambda: chat().with_response_json_schema(SCHEMA),
        lambda: chat().with_response_json_schema(SCHEMA, name=None, description=None),
        lambda: chat().with_response_json_schema(SCHEMA, name=UNSET, description=UNSET),
    ),
    "with_response_json_schema option": (
        lambda: chat().apply(chatdsl.with_response_json_schema(Point)),
        lambda: chat().apply(chatdsl.with_response_json_schema(Point, name=None, description=None)),
        lambda: chat().apply(chatdsl.with_response_json_schema(Point, name=UNSET, description=UNSET)),
    ),
    "Tool.of": (
        lambda: Tool.of("f"),
        lambda: Tool.of("f", None, description=None, strict=None),
        lambda: Tool.of("f", UNSET, description=UNSET, strict=UNSET),
    ),
    "Tool.from_function": (
        lambda: Tool.from_function(add),
        lambda: Tool.from_function(add, name=None, description=None, strict=None),
        lambda: Tool.from_function(add, name=UNSET, description=UNSET, strict=UNSET),
    ),
    "Tool.from_type": (
        lambda: Tool.from_type(Point),
        lambda: Tool.from_type(Point, name=None, description=None, strict=None),
        lambda: Tool.from_type(Point, name=UNSET, description=UNSET, strict=UNSET),
    ),
    "tool decorator": (
        lambda: chatdsl.tool()(add).tool,
        lambda: chatdsl.tool(name=None, description=None, strict=None)(add).tool,
        lambda: chatdsl.tool(name=UNSET, description=UNSET, strict=UNSET)(add).tool,
    ),
    "FunctionTool.from_function": (
        lambda: chatdsl.FunctionTool.from_function(add).tool,
        lambda: chatdsl.FunctionTool.from_function(add, name=None, description=None, strict=None).tool,
        lambda: chatdsl.FunctionTool.from_function(add, name=UNSET, description=UNSET, strict=UNSET).tool,
    ),
    "PropertyDefinition.object": (
        lambda: PropertyDefinition.object({"a": PropertyDefinition(type="string")}),
        lambda: PropertyDefinition.object(
            {"a": PropertyDefinition(type="string")}, required=None, description=None, additional_properties=None
        ),
        lambda: PropertyDefinition.object(
            {"a": PropertyDefinition(type="string")}, required=UNSET, description=UNSET, additional_properties=UNSET
        ),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_none_and_unset_both_mean_not_given(name: str) -> None:
    omitted, with_none, with_unset = (make() for make in CASES[name])
    assert with_none == omitted
    assert with_unset == omitted


def test_not_given_still_takes_the_documented_defaults() -> None:
    # A description left out (either way) still comes from the docstring; a name from the function or class.
    for description in (None, UNSET):
        assert Tool.from_function(add, description=description).function.description == "Add two numbers."
        assert Tool.from_type(Point, name=UNSET, description=description).function.name == "Point"
    assert chat().with_response_json_schema(SCHEMA, name=UNSET).response_format.json_schema.name == "Answer"
    assert chat().assistant(UNSET, tool_calls=[CALL]).messages[0].content is UNSET
    # Given values are still used as they are.
    tool = Tool.of("f", description="d", strict=False)
    assert (tool.function.description, tool.function.strict) == ("d", False)
    assert chat().tool("r", tool_call_id="c1", name="f").messages[0].name == "f"
    assert chat().assistant("Sure:", prefix=True).messages[0].prefix is True


def test_mypy_accepts_both_spellings_and_types_tool_run_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = pytest.importorskip("mypy.api")
    monkeypatch.setenv("MYPYPATH", str(ROOT))  # this checkout's chatdsl, wherever pytest runs from
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from typing import Any, assert_type

            import attrs

            import chatdsl
            from chatdsl import UNSET, PropertyDefinition, Tool, ToolRunResult, chat


            @attrs.frozen
            class Point:
                x: int


            def add(a: int) -> int:
                return a


            def check(result: ToolRunResult) -> None:
                assert_type(result.output(Point), Point)
                assert_type(result.output(), dict[str, Any])
                assert_type(result.message.output(Point), Point)
                chat(None), chat(UNSET)
                chat().assistant(None, tool_calls=None, prefix=None).assistant(UNSET, tool_calls=UNSET, prefix=UNSET)
                chat().tool("r", tool_call_id="c", name=None).tool("r", tool_call_id="c", name=UNSET)
                chat().with_response_json_schema({}, name=UNSET, description=None)
                chatdsl.with_response_json_schema({}, name=UNSET, description=None)
                Tool.of("f", None, description=None, strict=None)
                Tool.of("f", UNSET, description=UNSET, strict=UNSET)
                Tool.from_function(add, name=UNSET, description=UNSET, strict=None)
                Tool.from_type(Point, name=UNSET, description=UNSET, strict=None)
                chatdsl.tool(name=UNSET, description=UNSET, strict=None)(add)
                chatdsl.FunctionTool.from_function(add, name=UNSET, description=UNSET, strict=None)
                PropertyDefinition.object({}, required=UNSET, description=None, additional_properties=None)
            """
        )
    )
    limit = sys.getrecursionlimit()
    try:
        out, err, status = api.run(
            ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(snippet)]
        )
    finally:
        sys.setrecursionlimit(limit)  # mypy raises it for the whole process; later tests rely on the default
    assert status == 0, out + err
