"""Resource bounds: ``Limits`` (response size, event size, stream size) over real sockets."""

from __future__ import annotations

import gzip
import json
import socket
import tracemalloc

import pytest

import chatdsl
from chatdsl import (
    APIError,
    Client,
    CompletionChunk,
    Limits,
    MalformedResponseError,
    StreamError,
    Timeout,
    ValidationError,
)
from chatdsl.testing import LocalServer, Reply
from tests._secrets import TEST_KEY
from tests._servers import raw_server

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it
REQUEST = chatdsl.chat("mistral-small-latest").user("one two three four five six")
MiB = 1 << 20

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


def client_for(server: LocalServer, **limits: int | None) -> Client:
    return Client(KEY, base_url=server.url, limits=Limits(**limits), timeout=Timeout(connect=2, read=2), max_retries=2)


def answer(text: str) -> dict[str, object]:
    return {
        "id": "cmpl-big",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def wire_size(body: dict[str, object]) -> int:
    return len(json.dumps(body, ensure_ascii=False).encode())  # what LocalServer sends


# ------------------------------------------------------------------------------ Limits itself


def test_the_defaults() -> None:
    assert Limits() == Limits(max_response_size=32 * MiB, max_stream_size=None, max_event_size=4 * MiB, pool_maxsize=20)
    with Client(KEY, base_url="http://127.0.0.1:9") as client:
        assert client.limits == Limits()
        assert client.session.get_adapter("http://127.0.0.1:9").poolmanager.connection_pool_kw["maxsize"] == 20
        assert client.with_options(limits=Limits(max_event_size=None)).limits.max_event_size is None
    assert chatdsl.Limits is Limits
    assert "Limits" in chatdsl.__all__


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_response_size", 0),
        ("max_response_size", -1),
        ("max_response_size", 1.5),
        ("max_response_size", True),
        ("max_stream_size", 0),
        ("max_event_size", "4MiB"),
        ("pool_maxsize", 0),
        ("pool_maxsize", None),
    ],
)
def test_bad_limits_are_refused_naming_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Limits(**{field: value})  # type: ignore[arg-type]
    assert info.value.path == f"limits.{field}"
    assert repr(value) in str(info.value)


def test_a_client_refuses_limits_that_are_not_limits() -> None:
    with pytest.raises(ValidationError, match="limits"):
        Client(KEY, base_url="http://127.0.0.1:9", limits={"max_response_size": 1})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ plain responses


def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(server: LocalServer) -> None:
    body = answer("x" * 5000)
    size = wire_size(body)
    with client_for(server, max_response_size=size) as client:
        server.enqueue(Reply.json(body))
        assert client.chat_completion(REQUEST).text() == "x" * 5000
    with client_for(server, max_response_size=size - 1) as client:
        server.clear()
        server.handler = lambda _: Reply.json(body)
        with pytest.raises(MalformedResponseError) as info:
            client.chat_completion(REQUEST)
    error = info.value
    assert f"larger than max_response_size ({size} bytes announced; the limit is {size - 1} bytes)" in str(error)
    assert error.status_code == 200
    assert error.request_id
    assert len(server.requests) == 1, "a body too large is not retried"
    assert len(error.body) <= 1000


def test_a_body_without_a_length_is_cut_at_the_limit(server: LocalServer) -> None:
    """The success body arrives chunked (here: an event stream sent to a plain call), 400 kB of it."""
    big = [CompletionChunk(id="c", choices=()) for _ in range(4000)]
    server.enqueue(Reply.stream(big))
    with client_for(server, max_response_size=50_000) as client, pytest.raises(MalformedResponseError) as info:
        client.chat_completion(REQUEST)
    assert "larger than max_response_size (more bytes; the limit is 50000 bytes)" in str(info.value)
    assert server.wait_idle(2.0), "the connection of a refused body is closed, not kept"


def test_a_compressed_body_is_counted_after_decompression_and_memory_stays_bounded(server: LocalServer) -> None:
    bomb = gzip.compress(b" " * (200 * MiB), 9)  # 200 MiB of JSON whitespace in about 200 kB
    server.enqueue(Reply.raw(bomb, content_type="application/json", headers={"Content-Encoding": "gzip"}))
    with client_for(server, max_response_size=MiB) as client:
        tracemalloc.start()
        try:
            with pytest.raises(MalformedResponseError, match="larger than max_response_size"):
                client.chat_completion(REQUEST)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(bomb) < MiB
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB while reading a 200 MiB body"


def test_error_bodies_are_kept_to_one_mib(server: LocalServer) -> None:
    server.enqueue(Reply.raw("e" * (3 * MiB), status=400))
    with client_for(server) as client, pytest.raises(APIError) as info:
        client.chat_completion(REQUEST)
    assert info.value.status_code == 400
    assert len(info.value.body) == MiB


def test_no_limit_when_none(server: LocalServer) -> None:
    server.enqueue(Reply.json(answer("y" * (2 * MiB))))
    with client_for(server, max_response_size=None) as client:
        assert len(client.chat_completion(REQUEST).text()) == 2 * MiB


# ------------------------------------------------------------------------------ streams


def _stream(client: Client) -> list[CompletionChunk]:
    with client.chat_completion_stream(REQUEST) as stream:
        return list(stream)


def test_an_event_larger_than_the_default_limit_ends_the_stream_with_an_error_chunk(server: LocalServer) -> None:
    huge = b"data: " + b"x" * (5 * MiB) + b"\n\n"
    server.enqueue(Reply.stream([CompletionChunk(id="c1"), huge, CompletionChunk(id="c2")]))
    with Client(KEY, base_url=server.url) as client:  # the default Limits: 4 MiB per event
        chunks = _stream(client)
    assert [c.id for c in chunks[:-1]] == ["c1"]
    error = chunks[-1].error
    assert isinstance(error, StreamError)
    assert "larger than max_event_size" in str(error)
    assert f"> {4 * MiB} bytes" in str(error)
    assert chunks[-1].is_last_chunk


def test_an_event_under_the_limit_passes(server: LocalServer) -> None:
    text = "z" * 100_000
    event = {"id": "c", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}
    server.enqueue(Reply.stream([event]))
    with client_for(server, max_event_size=len(json.dumps(event)) + 10) as client:
        chunks = _stream(client)
    assert chunks[-1].error is None
    assert chunks[0].text() == text


def test_a_stream_larger_than_max_stream_size_ends_with_an_error_chunk(server: LocalServer) -> None:
    server.enqueue(Reply.stream([CompletionChunk(id=f"c{i}") for i in range(2000)]))
    with client_for(server, max_stream_size=20_000) as client:
        chunks = _stream(client)
    assert 10 < len(chunks) < 2000
    error = chunks[-1].error
    assert isinstance(error, StreamError)
    assert "larger than max_stream_size (20000 bytes)" in str(error)
    assert all(c.error is None for c in chunks[:-1])


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
