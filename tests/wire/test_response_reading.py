"""Reading responses: content parts with new keys and types are kept, known parts stay strict,
requests stay strict about parts, non-finite numbers name their path."""

from __future__ import annotations

from typing import Any

import pytest

import chatdsl
from chatdsl import (
    ChatCompletionResponse,
    ImageURLChunk,
    TextChunk,
    ThinkChunk,
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
