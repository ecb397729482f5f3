"""When a call is sent again: never once a success status arrived, always before any response byte."""

from __future__ import annotations

import pytest

import chatdsl
from chatdsl import (
    APITimeoutError,
    Client,
    Timeout,
)
from chatdsl.testing import LocalServer, Reply
from tests._secrets import TEST_KEY

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it
REQUEST = chatdsl.chat("mistral-small-latest").user("one two three four five six")

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


def test_a_body_that_stalls_after_a_success_status_is_not_sent_again(server: LocalServer) -> None:
    server.enqueue(Reply.stall(2.0), Reply.default())
    timeout = Timeout(read=0.3)
    with Client(KEY, base_url=server.url, timeout=timeout) as client, pytest.raises(APITimeoutError) as info:
        client.chat_completion(REQUEST)
    assert info.value.response_started
    assert "not sent again" in str(info.value)
    assert len(server.requests) == 1


def test_the_total_deadline_while_reading_a_body_is_not_sent_again(server: LocalServer) -> None:
    server.enqueue(Reply.trickle(chunk_size=1, delay=0.05), Reply.default())
    timeout = Timeout(read=2, total=0.5)
    with (
        Client(KEY, base_url=server.url, timeout=timeout) as client,
        pytest.raises(APITimeoutError, match="total deadline") as info,
    ):
        client.chat_completion(REQUEST)
    assert info.value.response_started
    assert len(server.requests) == 1


def test_a_read_timeout_before_any_response_byte_is_sent_again(server: LocalServer) -> None:
    server.enqueue(Reply.delayed(2.0), Reply.default())
    with Client(KEY, base_url=server.url, timeout=Timeout(read=0.3), _sleep=lambda _: None) as client:
        response = client.chat_completion(REQUEST)  # may generate twice: documented
    assert response.retries_taken == 1
    assert len(server.requests) == 2
