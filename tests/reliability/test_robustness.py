"""Regression tests: lenient response parts, picklable errors, hashing, message paths, tool-loop input."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

import chatdsl
from chatdsl import (
    APIError,
    ChatCompletionResponse,
    ImageURLChunk,
    OutputError,
    RateLimitError,
    TextChunk,
    ThinkChunk,
    ToolCall,
    UnknownChunk,
    ValidationError,
)


def _response(content: object) -> dict[str, object]:
    return {
        "id": "x",
        "model": "m",
        "created": 1,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
    }


def test_response_parts_with_new_keys_and_types_parse_and_are_kept() -> None:
    content = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm", "signature": "s"}], "signature": "abc"},
        {"type": "text", "text": "hi", "annotations": []},
        {"type": "audio_url", "audio_url": "https://example.com/a.mp3"},
        {"type": "image_url", "image_url": {"url": "https://example.com/i.png", "detail": "ultra", "width": 3}},
    ]
    message = ChatCompletionResponse.from_dict(_response(content)).assistant_message()
    assert message is not None
    assert message.content == (
        ThinkChunk(thinking=(TextChunk(text="hmm", extra={"signature": "s"}),), signature="abc"),
        TextChunk(text="hi", extra={"annotations": []}),
        UnknownChunk(type="audio_url", extra={"audio_url": "https://example.com/a.mp3"}),
        ImageURLChunk(url="https://example.com/i.png", extra={"image_url": content[3]["image_url"]}),
    )
    assert message.text() == "hi"
    assert ChatCompletionResponse.from_dict(_response(content)).to_dict()["choices"][0]["message"]["content"] == content


def test_a_malformed_known_part_is_still_an_error() -> None:
    with pytest.raises(ValidationError, match=r"content\[0\]\.text"):
        ChatCompletionResponse.from_dict(_response([{"type": "text", "text": 3}]))


def test_requests_stay_strict_about_parts() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]}]}
    with pytest.raises(ValidationError, match=r"messages\[0\]\.content\[0\]\.x: is not a known field"):
        chatdsl.ChatCompletionRequest.from_dict(body)


@pytest.mark.parametrize(
    "error",
    [
        ValidationError("temperature", "2.0 is above the maximum 1.5"),
        APIError("boom", status_code=500, body={"message": "boom"}, request_id="r1"),
        RateLimitError("slow down", retry_after=2.0, status_code=429, request_id="r2"),
        OutputError("is not valid JSON", content="{", path="a"),
        chatdsl.StreamError("the stream was cut"),
        chatdsl.ToolLoopError("too many rounds", request=chatdsl.chat("m").user("x")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_error_survives_pickling_and_copying(error: Exception) -> None:
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert type(clone) is type(error)
        assert str(clone) == str(error)
        assert clone.__dict__ == error.__dict__


def test_equal_requests_hash_equal_whatever_the_key_order() -> None:
    first = chatdsl.chat("m").with_metadata({"a": 1, "b": {"c": 2, "d": 3}})
    second = chatdsl.chat("m").with_metadata({"b": {"d": 3, "c": 2}, "a": 1})
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1


def test_add_names_the_position_the_message_would_take() -> None:
    request = chatdsl.chat("m").user("a").user("b")
    with pytest.raises(ValidationError, match=r"^messages\[3\]: 'oops' is a str, not a message$"):
        request.add(chatdsl.UserMessage(content="c"), "oops")  # type: ignore[arg-type]


def test_deeply_nested_tool_arguments_are_an_output_error() -> None:
    call = ToolCall(id="c", function=chatdsl.FunctionCall(name="f", arguments='{"x": ' + "[" * 5000 + "}"))
    with pytest.raises(OutputError, match="not valid JSON"):
        call.arguments()


def test_async_functions_are_refused_as_tools() -> None:
    async def fetch(url: str) -> str:
        """Fetch a page."""
        return url

    with pytest.raises(ValidationError, match="async function"):
        chatdsl.tool(fetch)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["created", "usage.prompt_tokens"])
def test_non_finite_numbers_in_a_response_name_their_path(value: float, where: str) -> None:
    body: dict[str, Any] = {"id": "x", "model": "m", "created": 1, "choices": []}
    if where == "created":
        body["created"] = value
    else:
        body["usage"] = {"prompt_tokens": value}
    with pytest.raises(ValidationError) as info:
        chatdsl.ChatCompletionResponse.from_dict(body)
    assert str(info.value).startswith(f"{where}: ")
    assert "is not a number" in str(info.value)
