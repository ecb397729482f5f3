"""Resource bounds: ``Limits`` (response size, event size, stream size) over real sockets."""

from __future__ import annotations

import socket
import tracemalloc

import pytest

import chatdsl
from chatdsl import (
    Client,
    Limits,
    MalformedResponseError,
)
from chatdsl.testing import LocalServer, Reply
from tests._secrets import TEST_KEY
from tests._servers import raw_server

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it
REQUEST = chatdsl.chat("mistral-small-latest").user("one two three four five six")

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


def test_a_stream_longer_than_max_response_size_is_read_whole(server: LocalServer) -> None:
    text = "x" * 2000
    chunks = [
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    ] * 100  # about 250 kB of events
    server.enqueue(Reply.stream(chunks))
    limits = Limits(max_response_size=50_000)
    with Client(KEY, base_url=server.url, limits=limits) as client, client.chat_completion_stream(REQUEST) as stream:
        received = list(stream)
    assert stream.error is None
    assert stream.completed
    assert "".join(chunk.text() for chunk in received) == text * 100
    assert Limits().max_stream_size is None


def test_a_body_over_max_response_size_takes_about_the_limit_in_memory() -> None:
    """The body is read into one buffer cut at the limit (it was pieces, their join and a slice: 3x)."""
    limit = 4 << 20
    body = b'{"choices": "' + b"x" * (2 * limit) + b'"}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"  # no length

    def answer(conn: socket.socket) -> None:
        conn.sendall(head)
        conn.sendall(body)

    with raw_server(answer) as url, Client(KEY, base_url=url, limits=Limits(max_response_size=limit)) as client:
        # the method itself, not the secret guard's wrapper: the guard formats the frames' locals (the
        # 4 MiB buffer among them) as the error passes through it, which would count here
        call = getattr(Client.chat_completion, "__wrapped__", Client.chat_completion)
        tracemalloc.start()
        try:
            with pytest.raises(MalformedResponseError, match="larger than max_response_size"):
                call(client, REQUEST)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 1.5 * limit, f"peak {peak / limit:.2f}x the limit"
