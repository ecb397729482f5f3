"""Composition: ``base.merge(overlay)`` and ``base | overlay`` (laws, field by field)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatdsl import UNSET, ChatCompletionRequest, Tool, ToolChoice, chat
from tests.strategies import requests

# Tools from a small set of names, so that base and overlay often share some.
few_tools = st.lists(
    st.builds(Tool.of, st.sampled_from(["a", "b", "c", "d"]), description=st.sampled_from(["x", "y"])),
    max_size=4,
    unique_by=lambda t: t.name,
).map(tuple)


def _with_tools(request: ChatCompletionRequest, tools: object, how: str) -> ChatCompletionRequest:
    if tools is UNSET:
        return request
    if how == "evolve":
        return attrs.evolve(request, tools=tools)
    if how == "implied":  # with_tools() on a request without a choice: the auto it implies
        return request.without("tool_choice").with_tools(tools)  # type: ignore[arg-type]
    return request.with_tools(tools)  # type: ignore[arg-type]


any_requests = st.builds(
    _with_tools,
    requests(with_extra=True),
    st.just(UNSET) | few_tools,
    st.sampled_from(["evolve", "implied", "builder"]),
)


def _implied(request: ChatCompletionRequest) -> bool:
    return request.tool_choice is chat().with_tools([]).tool_choice


PLAIN = [a.name for a in attrs.fields(ChatCompletionRequest) if a.name not in ("messages", "tools", "extra")]


@given(any_requests, any_requests, any_requests)
def test_merge_is_associative(a, b, c):
    assert (a | b) | c == a | (b | c)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@given(any_requests)
def test_the_empty_request_is_the_identity_on_both_sides(a):
    assert chat() | a == a
    assert a | chat() == a
    assert ChatCompletionRequest() | a == a


@given(any_requests, any_requests)
def test_the_overlay_set_fields_win_and_the_rest_is_kept(a, b):
    merged = a | b
    for name in PLAIN:
        expected = getattr(b, name) if getattr(b, name) is not UNSET else getattr(a, name)
        if name == "tool_choice" and _implied(b) and a.tool_choice is not UNSET:
            expected = a.tool_choice  # an implied auto yields to a choice the base made
        assert getattr(merged, name) == expected, name
    assert merged.messages == a.messages + b.messages
    assert merged.extra == {**a.extra, **b.extra}
    assert merged.to_dict() == ChatCompletionRequest.from_dict(merged.to_dict(), allow_extra=True).to_dict()


@given(st.just(UNSET) | few_tools, st.just(UNSET) | few_tools)
def test_tools_are_merged_by_name(base_tools, overlay_tools):
    base = chat() if base_tools is UNSET else ChatCompletionRequest(tools=base_tools)
    overlay = chat() if overlay_tools is UNSET else ChatCompletionRequest(tools=overlay_tools)
    merged = (base | overlay).tools
    if base_tools is UNSET and overlay_tools is UNSET:
        assert merged is UNSET
        return
    base_names = [t.name for t in base_tools or ()]
    overlay_by_name = {t.name: t for t in overlay_tools or ()}
    expected_names = base_names + [n for n in overlay_by_name if n not in base_names]
    assert [t.name for t in merged] == expected_names
    for tool in merged:
        if tool.name in overlay_by_name:
            assert tool == overlay_by_name[tool.name]
        else:
            assert tool in base_tools


def test_merge_example():
    lookup = Tool.of("lookup", {"type": "object"}, description="old")
    lookup2 = Tool.of("lookup", {"type": "object"}, description="new")
    search = Tool.of("search")
    base = (
        chat("mistral-small-latest")
        .system("Be brief.")
        .with_temperature(0)
        .with_tools([lookup, search])
        .with_extra(a=1, b=1)
    )
    overlay = chat().user("Hi").with_temperature(0.5).with_tools([Tool.of("new"), lookup2]).with_extra(b=2)
    merged = base | overlay
    assert merged.model == "mistral-small-latest"
    assert merged.temperature == 0.5
    assert [m.content for m in merged.messages] == ["Be brief.", "Hi"]
    assert [t.name for t in merged.tools] == ["lookup", "search", "new"]
    assert merged.tools[0].function.description == "new"
    assert merged.tool_choice == ToolChoice.AUTO
    assert merged.extra == {"a": 1, "b": 2}
    assert base.temperature == 0
    assert len(base.messages) == 1
    assert base.merge(overlay) == merged


def test_the_auto_with_tools_implies_never_overrides_the_bases_choice():
    a, b = Tool.of("a", {"type": "object"}), Tool.of("b", {"type": "object"})
    base = chat("m").with_tools([a]).with_tool_choice("any")
    assert (base | chat().with_tools([b])).tool_choice == ToolChoice.ANY  # as base.with_tools([a, b]) keeps it
    assert base.with_tools([a, b]).tool_choice == ToolChoice.ANY
    assert (base | chat().with_tools([b]).with_tool_choice("auto")).tool_choice == ToolChoice.AUTO  # a choice made
    assert (chat("m") | chat().with_tools([b])).tool_choice == ToolChoice.AUTO  # nothing to yield to
    assert (chat("m") | chat().with_tools([b])).to_dict()["tool_choice"] == "auto"


def test_explicit_zero_and_false_in_the_overlay_win():
    base = chat().with_temperature(1).with_safe_prompt(True).with_random_seed(7)
    overlay = chat().with_temperature(0).with_safe_prompt(False).with_random_seed(0)
    merged = base | overlay
    assert (merged.temperature, merged.safe_prompt, merged.random_seed) == (0, False, 0)


def test_or_with_something_else_is_a_type_error():
    with pytest.raises(TypeError):
        _ = chat() | {"model": "m"}  # type: ignore[operator]
