"""The JSON backend: orjson (required), the standard library for what orjson refuses — the same values either way."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given

import chatdsl
from chatdsl import _json
from tests import strategies as s


@given(s.requests())
def test_both_backends_encode_the_same_values(request: chatdsl.ChatCompletionRequest) -> None:
    fast = _json.dumps_bytes(request.to_dict())
    slow = json.dumps(request.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    assert json.loads(fast) == json.loads(slow)
    assert json.loads(request.to_json(indent=2)) == json.loads(slow)


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
