"""The JSON backend: orjson when installed, the standard library otherwise — the same values either way."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given

import chatdsl
from chatdsl import _json
from tests import strategies as s


@pytest.fixture
def stdlib_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test as on a machine without orjson."""
    monkeypatch.setattr(_json, "_orjson", None)
    assert not _json.using_orjson()


def test_orjson_is_used_when_installed() -> None:
    pytest.importorskip("orjson")
    assert _json.using_orjson()


@given(s.requests())
def test_both_backends_encode_the_same_values(request: chatdsl.ChatCompletionRequest) -> None:
    fast = _json.dumps_bytes(request.to_dict())
    slow = json.dumps(request.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    assert json.loads(fast) == json.loads(slow)
    assert json.loads(request.to_json(indent=2)) == json.loads(slow)


@given(s.requests())
def test_requests_round_trip_without_orjson(request: chatdsl.ChatCompletionRequest) -> None:
    saved = _json._orjson
    _json._orjson = None
    try:
        text = request.to_json()
        assert chatdsl.ChatCompletionRequest.from_json(text) == request
        assert _json.loads(_json.dumps_bytes(request.to_dict())) == json.loads(text)
    finally:
        _json._orjson = saved


@pytest.mark.usefixtures("stdlib_only")
def test_responses_and_chunks_parse_without_orjson() -> None:
    body = (
        '{"id":"x","object":"chat.completion","model":"m","created":1,'
        '"choices":[{"index":0,"message":{"role":"assistant","content":"hé"},"finish_reason":"stop"}]}'
    )
    assert chatdsl.ChatCompletionResponse.from_json(body).text() == "hé"
    chunk = '{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}'
    assert chatdsl.CompletionChunk.from_json(chunk.encode()).text() == "a"


def test_what_orjson_refuses_goes_through_the_standard_library() -> None:
    big = {"n": 2**70, "text": "lone \ud800 surrogate"}
    assert json.loads(_json.dumps_bytes(big).decode("utf-8", "surrogatepass")) == big
    assert _json.dumps({"a": 1}, indent=4) == '{\n    "a": 1\n}'
    # Reading, orjson takes integers beyond 64 bits as floats (documented in chatdsl._json).
    assert _json.loads(b'{"n": 18446744073709551615}') == {"n": 2**64 - 1}


def test_non_finite_numbers_are_refused_when_the_request_is_built() -> None:
    with pytest.raises(chatdsl.ValidationError, match="metadata"):
        chatdsl.chat("m").with_metadata({"x": math.nan})


@pytest.mark.parametrize("text", ["{", "[1,", "\xff", "[" * 5000 + "]" * 5000])
def test_malformed_json_is_a_validation_error(text: str) -> None:
    with pytest.raises(chatdsl.ValidationError):
        chatdsl.ChatCompletionRequest.from_json(text)
