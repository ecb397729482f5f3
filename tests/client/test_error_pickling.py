"""Errors survive pickling and copying, with their attributes."""

from __future__ import annotations

import copy
import pickle

import pytest

import chatdsl
from chatdsl import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    OutputError,
    RateLimitError,
    ValidationError,
)

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


def test_response_started_survives_pickling() -> None:

    error = APIConnectionError("cut", response_started=True)
    assert pickle.loads(pickle.dumps(error)).response_started
    assert APITimeoutError("slow").response_started is False


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
