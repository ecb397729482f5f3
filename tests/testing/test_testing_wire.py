"""chatdsl.testing.wire: how the fake server spells bodies for each API (Mistral's, OpenAI's)."""

from __future__ import annotations

from chatdsl import ChatCompletionResponse, CompletionChunk
from chatdsl.testing.wire import MistralWire, OpenAIWire

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}, "index": 0}


def _chunk(delta: dict[str, object], finish: str | None = None) -> CompletionChunk:
    return CompletionChunk.from_dict({"id": "x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_an_openai_delta_without_text_or_calls_is_empty() -> None:
    body = OpenAIWire.chunk_body(_chunk({}, "stop"), first=False)
    assert body["choices"][0]["delta"] == {}
    assert MistralWire.chunk_body(_chunk({}, "stop"), first=False)["choices"][0]["delta"] == {"content": None}


def test_an_openai_delta_spells_calls_with_json_text_and_continuations_as_arguments_only() -> None:
    head = OpenAIWire.chunk_body(_chunk({"content": "", "tool_calls": [CALL]}), first=True)["choices"][0]["delta"]
    assert head["content"] is None
    assert head["tool_calls"] == [{**CALL, "function": {"name": "f", "arguments": '{"a": 1}'}}]
    more = {"type": "function", "function": {"name": "", "arguments": "}"}, "index": 0}
    tail = OpenAIWire.chunk_body(_chunk({"tool_calls": [more]}), first=False)["choices"][0]["delta"]
    assert tail["tool_calls"] == [{"index": 0, "function": {"arguments": "}"}}]


def test_an_openai_message_has_a_refusal_key_and_no_call_index() -> None:
    response = ChatCompletionResponse.from_dict(
        {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "", "tool_calls": [CALL]}}]}
    )
    message = OpenAIWire.response_body(response)["choices"][0]["message"]
    assert message["refusal"] is None
    assert message["content"] is None
    spelled = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    assert message["tool_calls"] == [spelled]
