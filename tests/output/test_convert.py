"""The output converter: a type it cannot read is named plainly (no converter internals in the message)."""

from __future__ import annotations

import attrs
import pytest

from chatdsl import AssistantMessage, FunctionCall, OutputError, ToolCall


class Plain:
    """Neither attrs nor a dataclass."""


@attrs.frozen
class Holder:
    item: Plain


@pytest.mark.parametrize(("tp", "where"), [(Plain, ""), (Holder, " (in Holder)"), (list[Plain], " (in list)")])
def test_an_unsupported_type_is_named_with_the_supported_ones(tp: object, where: str) -> None:
    with pytest.raises(OutputError) as caught:
        AssistantMessage(content='{"item": {}}').output(tp)
    text = str(caught.value)
    assert text.startswith("Plain is not a supported output type: use attrs classes, dataclasses, TypedDicts")
    assert "pydantic models" in text
    assert text.split("\n")[0].endswith(where or "dict[str, T]")
    for internal in ("cattrs", "StructureHandlerNotFoundError", "Register a structure hook"):
        assert internal not in text
    with pytest.raises(OutputError) as caught:
        ToolCall(id="c", function=FunctionCall(name="f", arguments="{}")).parse_arguments(tp)
    assert "not a supported output type" in str(caught.value)
