"""The stream merger (``chatdsl.client.merge``): chunks in, one response out, in linear time, nothing lost."""

from __future__ import annotations

from typing import Any

import pytest

import chatdsl
from chatdsl import (
    AssistantMessage,
    CompletionChunk,
    CompletionResponseStreamChoice,
    FunctionCall,
    ReferenceChunk,
    TextChunk,
    ThinkChunk,
    ToolCall,
    UnknownChunk,
)
from chatdsl.client.merge import Merger, join_content


def _chunk(delta: AssistantMessage, **choice: Any) -> CompletionChunk:
    return CompletionChunk(id="c", model="m", choices=(CompletionResponseStreamChoice(delta=delta, **choice),))


def _count_constructions(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[int]:
    count = [0]
    original = cls.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        count[0] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", counting)
    return count


def test_merging_part_deltas_builds_each_part_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: adjacent text parts were rebuilt (and their text copied) per delta, quadratic in the deltas."""
    deltas = 2000
    think = [(ThinkChunk(thinking=(TextChunk(text="t"),)),) for _ in range(deltas)]
    text = [(TextChunk(text="x"),) for _ in range(deltas)]
    pieces: list[Any] = [*think, *text]
    texts = _count_constructions(monkeypatch, TextChunk)
    thoughts = _count_constructions(monkeypatch, ThinkChunk)
    content = join_content(pieces)
    built_texts, built_thoughts = texts[0], thoughts[0]
    assert content == (ThinkChunk(thinking=(TextChunk(text="t" * deltas),)), TextChunk(text="x" * deltas))
    assert built_texts == 2  # one per merged part, whatever the number of deltas (it was one per delta)
    assert built_thoughts == 1


def test_join_content_keeps_the_former_rules() -> None:
    image = chatdsl.ImageURLChunk(url="https://x")
    pieces: list[Any] = [
        "a",
        (TextChunk(text="b"), image),
        (TextChunk(text=""),),  # an empty text part on its own is dropped
        (ThinkChunk(thinking=(TextChunk(text="t"),), signature="s1"),),
        (ThinkChunk(thinking=(TextChunk(text="u"), ReferenceChunk(reference_ids=("w",))), closed=True, signature="2"),),
        (UnknownChunk(type="resource", extra={"uri": "u"}),),
    ]
    assert join_content(pieces) == (
        TextChunk(text="ab"),
        image,
        ThinkChunk(thinking=(TextChunk(text="tu"), ReferenceChunk(reference_ids=("w",))), closed=True, signature="s12"),
        UnknownChunk(type="resource", extra={"uri": "u"}),
    )
    assert join_content([]) is chatdsl.UNSET
    assert join_content(["a", "b"]) == "ab"


def test_the_merger_keeps_indexes_extras_logprobs_and_no_usage() -> None:
    merger = Merger()
    head = ToolCall(id="call_1", index=0, function=FunctionCall(name="f", arguments=""), extra={"k": 1})
    tail = ToolCall(index=0, function=FunctionCall(name="", arguments="{}"))
    merger.add(_chunk(AssistantMessage(tool_calls=(head,), extra={"role_note": 1}), logprobs={"content": [1]}))
    merger.add(_chunk(AssistantMessage(tool_calls=(tail,)), logprobs={"content": [2]}, finish_reason="tool_calls"))
    response = merger.response()
    assert response.usage is None
    choice = response.choices[0]
    assert choice.logprobs == {"content": [1, 2]}
    assert choice.message.extra == {"role_note": 1}
    assert choice.message.tool_calls == (
        ToolCall(id="call_1", index=0, function=FunctionCall(name="f", arguments="{}"), extra={"k": 1}),
    )


def test_merging_many_text_deltas_is_linear_through_the_merger(monkeypatch: pytest.MonkeyPatch) -> None:
    merger = Merger()
    for _ in range(5000):
        merger.add(_chunk(AssistantMessage(content=(TextChunk(text="ab"),))))
    texts = _count_constructions(monkeypatch, TextChunk)
    response = merger.response()
    assert texts[0] == 1
    assert response.text() == "ab" * 5000
