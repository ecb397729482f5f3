"""The total deadline and the timeouts: one scheduler thread, cancelled watchdogs, backoff past the
deadline, headers and bodies that trickle, and slow servers cut off."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import pytest

import chatdsl
from chatdsl import (
    APITimeoutError,
    ChatDSLError,
    Client,
    CompletionChunk,
    StreamError,
    Timeout,
)
from chatdsl.testing import LocalServer, Pause, Reply
from tests._secrets import TEST_KEY
from tests._servers import raw_server

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it
REQUEST = chatdsl.chat("mistral-small-latest").user("one two three four five six")

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


class _RecordingRaw:
    def __init__(self) -> None:
        self.shutdowns = 0

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_cancelled_watchdog_never_touches_the_socket_even_if_its_deadline_was_already_firing() -> None:
    from chatdsl.client.deadline import Watchdog

    raw = _RecordingRaw()
    watchdog = Watchdog(time.perf_counter() + 60)
    watchdog.watch(raw.shutdown)
    assert watchdog.cancel() is False
    watchdog.fire()  # the scheduler popped it as cancel() ran: it must now do nothing
    assert (raw.shutdowns, watchdog.fired) == (0, False)

    fired = Watchdog(time.perf_counter() + 60)
    fired.watch(raw.shutdown)
    fired.fire()
    assert fired.cancel() is True
    assert raw.shutdowns == 1
    fired.watch(raw.shutdown)  # pointed at something new after the deadline: interrupted at once
    assert raw.shutdowns == 2
    fired.watch(None)
    assert raw.shutdowns == 2


def test_one_scheduler_thread_serves_every_deadline() -> None:
    from chatdsl.client.deadline import Watchdog

    before = {thread.ident for thread in threading.enumerate()}
    raws = [_RecordingRaw() for _ in range(50)]
    watchdogs = [Watchdog(time.perf_counter() + 0.05 + index * 0.001) for index in range(50)]
    for watchdog, raw in zip(watchdogs, raws, strict=True):
        watchdog.watch(raw.shutdown)
    for watchdog in watchdogs[::2]:
        watchdog.cancel()
    new = [t for t in threading.enumerate() if t.ident not in before]
    assert len(new) <= 1  # the scheduler, unless an earlier test started it
    assert all(t.name == "chatdsl-deadlines" and not isinstance(t, threading.Timer) for t in new)
    time.sleep(0.4)
    assert [raw.shutdowns for raw in raws] == [0, 1] * 25
    assert [w.fired for w in watchdogs] == [False, True] * 25


def test_calls_without_a_deadline_are_never_cut_by_an_earlier_calls_deadline() -> None:
    failures: list[str] = []
    with LocalServer() as server, Client(KEY, base_url=server.url, max_retries=0) as client:
        for index in range(300):  # deadlines around the time a call takes: some fire as it ends
            with contextlib.suppress(APITimeoutError):
                client.chat_completion(REQUEST, timeout=Timeout(total=0.0006 + (index % 30) * 0.0001))
            try:
                client.chat_completion(REQUEST)
            except ChatDSLError as exc:
                failures.append(f"{index}: {exc!r}")
    assert failures == []


def test_a_backoff_that_overruns_the_deadline_is_a_timeout_error_not_a_value_error() -> None:
    slept: list[float] = []

    def oversleep(seconds: float) -> None:  # the scheduler woke us late
        slept.append(seconds)
        time.sleep(seconds + 0.3)

    with LocalServer() as server:
        server.enqueue(Reply.error(503, headers={"retry-after": "0.2"}), Reply.json())
        policy = chatdsl.RetryPolicy(max_retries=1, jitter=0)
        client = Client(KEY, base_url=server.url, timeout=Timeout(total=0.4), retry=policy, _sleep=oversleep)
        with client, pytest.raises(APITimeoutError, match=r"total deadline of 0\.4 s passed before attempt 2") as info:
            client.chat_completion(REQUEST)
    assert slept == [0.2]
    assert isinstance(info.value.__cause__, chatdsl.InternalServerError)
    assert len(server.requests) == 1


def trickle_headers(conn: socket.socket) -> None:
    """A status line, then one header line every 0.3 s for 6 s (each well within the read timeout)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for index in range(20):
        time.sleep(0.3)
        conn.sendall(b"X-Pad-%d: %d\r\n" % (index, index))
    conn.sendall(b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_the_total_deadline_covers_headers_that_trickle(stream: bool) -> None:
    with raw_server(trickle_headers) as url, Client(KEY, base_url=url, timeout=Timeout(read=1, total=1.5)) as client:
        started = time.perf_counter()
        call = client.chat_completion_stream if stream else client.chat_completion
        with pytest.raises(APITimeoutError, match=r"total deadline of 1\.5 s passed") as info:
            call(REQUEST)
        took = time.perf_counter() - started
    assert 1.4 <= took < 2.2, took
    assert info.value.response_started is False


def test_the_total_deadline_covers_a_request_body_the_server_reads_slowly() -> None:
    """The server takes 4 KB every 20 ms: each send progresses (no socket timeout), the whole would take 20 s."""
    received: list[int] = []
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by the connection it accepts
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def read_slowly() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(4096):
                received.append(len(data))
                time.sleep(0.02)

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    big = chatdsl.chat("m").user("x" * (4 << 20))  # far more than the socket buffers hold
    try:
        with Client(KEY, base_url=url, timeout=Timeout(read=5, total=1.0), max_retries=0) as client:
            started = time.perf_counter()
            with pytest.raises(APITimeoutError, match=r"total deadline of 1\.0 s passed"):
                client.chat_completion(big)
            assert time.perf_counter() - started < 1.8
        assert received  # the server did read: every send made progress
    finally:
        listener.close()


def test_a_stream_is_cut_at_the_total_deadline_even_if_its_bytes_keep_coming(server: LocalServer) -> None:
    chunks = [{"choices": [{"index": 0, "delta": {"content": f"{i} "}}]} for i in range(40)]
    items: list[Any] = []
    for chunk in chunks:
        items += [chunk, Pause(0.05)]
    server.enqueue(Reply.stream(items))
    client = Client(KEY, base_url=server.url, timeout=Timeout(read=1, total=0.8))
    with client, client.chat_completion_stream(REQUEST) as stream:
        received = list(stream)
        assert stream.completed is False
    assert received[-1].error is not None
    assert "total deadline of 0.8 s passed" in str(received[-1].error)
    assert len(received) < 30


# ------------------------------------------------------------------------------ slow servers


def _stream(client: Client) -> list[CompletionChunk]:
    with client.chat_completion_stream(REQUEST) as stream:
        return list(stream)


def test_one_byte_a_second_is_cut_off_by_the_total_timeout(server: LocalServer) -> None:
    server.handler = lambda _: Reply.trickle(chunk_size=1, delay=1.0)
    with Client(KEY, base_url=server.url, timeout=Timeout(read=5, total=1.5)) as client:
        start = time.perf_counter()
        with pytest.raises(APITimeoutError, match=r"total deadline of 1\.5 s"):
            client.chat_completion(REQUEST)
        plain = time.perf_counter() - start
        start = time.perf_counter()
        chunks = _stream(client)
        streamed = time.perf_counter() - start
    assert 1.4 <= plain <= 3.0, plain
    assert 1.4 <= streamed <= 3.0, streamed
    assert isinstance(chunks[-1].error, StreamError)
    assert isinstance(chunks[-1].error.__cause__, APITimeoutError)
    assert len(server.requests) == 2, "no retry past the total deadline"


def test_one_byte_a_second_is_cut_off_by_a_shorter_read_timeout(server: LocalServer) -> None:
    server.handler = lambda _: Reply.trickle(chunk_size=1, delay=1.0)
    with Client(KEY, base_url=server.url, timeout=Timeout(read=0.4), max_retries=0) as client:
        start = time.perf_counter()
        with pytest.raises(APITimeoutError, match=r"no data for 0\.4 s"):
            client.chat_completion(REQUEST)
        elapsed = time.perf_counter() - start
    assert elapsed <= 2.5, elapsed
