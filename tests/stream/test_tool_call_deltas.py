"""Streamed tool calls sharing an index: kept apart by id, continued under their index."""

from __future__ import annotations

from typing import Any

import pytest

import chatdsl
from chatdsl import (
    Client,
    FunctionCall,
    ToolCall,
)
from chatdsl.testing import LocalServer, Reply

REQUEST = chatdsl.chat("mistral-small-latest").user("one two three four five six")

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


@pytest.fixture
def client(quick_client: Client) -> Client:
    return quick_client


def tool_chunk(calls: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    """A chunk whose delta carries *calls*, as the wire spells it."""
    return {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "created": 0,
        "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": calls}, "finish_reason": finish}],
    }


def test_parallel_calls_all_numbered_0_are_kept_apart(client: Client, server: LocalServer) -> None:
    paris = {"id": "call_a", "index": 0, "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    rome = {"id": "call_b", "index": 0, "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    server.enqueue(Reply.stream([tool_chunk([paris]), tool_chunk([rome], "tool_calls")]))
    with client.chat_completion_stream(REQUEST) as stream:
        list(stream)
    assert stream.final_response().assistant_message().tool_calls == (
        ToolCall(id="call_a", index=0, function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}')),
        ToolCall(id="call_b", index=0, function=FunctionCall(name="get_weather", arguments='{"city": "Rome"}')),
    )


def test_deltas_without_an_id_continue_the_latest_call_under_their_index(client: Client, server: LocalServer) -> None:
    server.enqueue(
        Reply.stream(
            [
                tool_chunk([{"id": "call_a", "index": 0, "function": {"name": "f", "arguments": '{"x": '}}]),
                tool_chunk([{"index": 0, "function": {"arguments": "1}"}}]),
                tool_chunk([{"id": "call_b", "index": 0, "function": {"name": "g", "arguments": '{"y": '}}]),
                tool_chunk([{"id": "call_b", "index": 0, "function": {"arguments": "2"}}]),  # the same id: same call
                tool_chunk([{"index": 0, "function": {"arguments": "}"}}], "tool_calls"),
            ]
        )
    )
    with client.chat_completion_stream(REQUEST) as stream:
        list(stream)
    assert stream.final_response().assistant_message().tool_calls == (
        ToolCall(id="call_a", index=0, function=FunctionCall(name="f", arguments='{"x": 1}')),
        ToolCall(id="call_b", index=0, function=FunctionCall(name="g", arguments='{"y": 2}')),
    )
