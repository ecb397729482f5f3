"""A stream's life over real sockets: it is its own iterator, close() from another thread,
no silently partial answer (final_response), an exception inside a read, two threads on one stream."""

from __future__ import annotations

import gc
import itertools
import random
import signal
import threading
import time
from typing import Any

import pytest

import chatdsl
from chatdsl import (
    Client,
    CompletionChunk,
    StreamError,
    Timeout,
)
from chatdsl.testing import LocalServer, Pause, Reply
from tests._echo import ANSWER, KEY, REQUEST

pytestmark = pytest.mark.usefixtures("no_keys_in_the_environment")


@pytest.fixture
def client(quick_client: Client) -> Client:
    return quick_client


def test_iter_of_a_stream_is_the_stream(client: Client) -> None:
    with client.chat_completion_stream(REQUEST) as stream:
        assert iter(stream) is stream
        assert list(stream)[-1].is_last_chunk


def test_next_of_iter_then_the_rest(client: Client) -> None:
    stream = client.chat_completion_stream(REQUEST)
    first = next(iter(stream))  # the temporary iterator is the stream: dropping it closes nothing
    rest = list(stream)
    assert first.text() == ""  # as from the API: the first chunk names the role, with empty content
    assert rest, "the rest of the stream was lost"
    assert (stream.completed, stream.error, stream.closed) == (True, None, True)
    assert stream.final_response().text() == ANSWER
    assert first.text() + "".join(chunk.text() for chunk in rest) == ANSWER


def test_islice_then_list_and_zip_read_the_whole_stream(client: Client) -> None:
    stream = client.chat_completion_stream(REQUEST)
    head = list(itertools.islice(stream, 2))
    rest = list(stream)
    assert len(head) == 2
    assert stream.completed
    assert stream.error is None
    assert "".join(chunk.text() for chunk in head + rest) == ANSWER

    with client.chat_completion_stream(REQUEST) as stream:
        pairs = list(zip(range(3), stream, strict=False))
        rest = list(stream)
    assert [i for i, _ in pairs] == [0, 1, 2]
    assert stream.completed
    assert stream.error is None
    assert "".join(chunk.text() for _, chunk in pairs) + "".join(chunk.text() for chunk in rest) == ANSWER


def test_dropping_an_unclosed_stream_releases_its_connection(client: Client, server: LocalServer) -> None:
    server.enqueue(Reply.stream(delay=0.5))
    gc.disable()  # the last reference going is enough: no garbage collection needed
    try:
        stream = client.chat_completion_stream(REQUEST)
        assert next(stream).choices  # the role chunk
        assert server.open_connections == 1
        del stream
        assert server.wait_idle(1.0), "dropping the stream did not release its connection"
    finally:
        gc.enable()
    assert client.chat_completion(REQUEST).text() == ANSWER


def test_close_from_another_thread_wakes_a_blocked_reader(client: Client, server: LocalServer) -> None:
    first = server.default_chunks(REQUEST.with_streaming())[0]
    server.enqueue(Reply.stream([first, Pause(10)], done=False))
    stream = client.chat_completion_stream(REQUEST)
    got: list[CompletionChunk] = []
    failures: list[BaseException] = []

    def read() -> None:
        try:
            got.extend(stream)
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the reader is now blocked in a read: the server pauses for 10 s
    start = time.perf_counter()
    stream.close()  # must not raise "generator already executing"
    stream.close()  # idempotent
    reader.join(5)
    assert not reader.is_alive(), "the reader was not woken"
    assert time.perf_counter() - start < 2.0
    assert failures == []
    assert len(got) == 2
    last = got[-1]
    assert last.is_last_chunk
    assert not last.choices
    assert isinstance(last.error, StreamError)
    assert str(last.error) == "the stream was closed by the caller before it ended"
    assert stream.error is last.error
    assert stream.closed
    assert not stream.completed
    assert server.wait_idle(2.0)
    with pytest.raises(StopIteration):
        next(stream)


def test_a_stream_closed_between_two_reads_ends_with_one_error_chunk(client: Client, server: LocalServer) -> None:
    server.enqueue(Reply.stream(delay=0.3))
    stream = client.chat_completion_stream(REQUEST)
    assert next(stream).text() == ""  # the role chunk
    closer = threading.Thread(target=stream.close)
    closer.start()
    closer.join(5)
    rest = list(stream)
    assert len(rest) == 1
    assert isinstance(rest[0].error, StreamError)
    assert "closed by the caller" in str(rest[0].error)
    assert server.wait_idle(2.0)


def test_closing_at_random_moments_from_another_thread_never_raises(server: LocalServer) -> None:
    """Readers and closers race; every read ends with a complete stream or one closing error chunk."""
    rng = random.Random(7)
    with Client(KEY, base_url=server.url, timeout=Timeout(connect=2, read=2)) as client:
        for _ in range(25):
            server.enqueue(Reply.stream(delay=0.002))
            stream = client.chat_completion_stream(REQUEST)
            got: list[CompletionChunk] = []
            failures: list[BaseException] = []

            def read(
                stream: chatdsl.ChatCompletionStream = stream,
                got: list[CompletionChunk] = got,
                failures: list[BaseException] = failures,
            ) -> None:
                try:
                    got.extend(stream)
                except BaseException as exc:  # reported by the test
                    failures.append(exc)

            reader = threading.Thread(target=read)
            reader.start()
            time.sleep(rng.uniform(0, 0.02))
            stream.close()
            reader.join(5)
            assert not reader.is_alive()
            assert failures == []
            errors = [chunk for chunk in got if chunk.error is not None]
            if stream.error is None:
                assert errors == []
                assert not got or got[-1].is_last_chunk
            else:
                assert errors == [got[-1]]
                assert got[-1].error is stream.error
                assert "closed by the caller" in str(stream.error)
    assert server.wait_idle(2.0)


def test_final_response_of_a_stream_not_read_yet_raises(client: Client) -> None:
    with client.chat_completion_stream(REQUEST) as stream:
        with pytest.raises(StreamError, match="not complete"):
            stream.final_response()
        assert stream.final_response(partial=True).text() == ""
        list(stream)
        assert stream.final_response().text() == ANSWER


def test_final_response_of_a_cut_stream_raises_its_error(client: Client, server: LocalServer) -> None:
    server.enqueue(Reply.stream_cut(after=3))  # the role chunk, "echo:", " one"
    with client.chat_completion_stream(REQUEST) as stream:
        chunks = list(stream)
    with pytest.raises(StreamError, match="the stream was cut") as info:
        stream.final_response()
    assert info.value is stream.error is chunks[-1].error
    assert stream.final_response(partial=True).text() == "echo: one"


def test_final_response_of_a_stream_closed_before_its_end_raises(client: Client, server: LocalServer) -> None:
    server.enqueue(Reply.stream(delay=0.2))
    with client.chat_completion_stream(REQUEST) as stream:
        next(stream)
        next(stream)  # the role chunk, then "echo:"
    with pytest.raises(StreamError, match="closed by the caller"):
        stream.final_response()
    assert stream.final_response(partial=True).text() == "echo:"


def test_a_stream_left_after_its_last_chunk_is_complete(client: Client, server: LocalServer) -> None:
    """Every choice has its finish reason: leaving before [DONE] arrives loses nothing."""
    chunks = server.default_chunks(REQUEST.with_streaming())
    server.enqueue(Reply.stream([*chunks, Pause(5)], done=False))
    with client.chat_completion_stream(REQUEST) as stream:
        for chunk in stream:
            if chunk.is_last_chunk:
                break
    assert stream.error is None
    assert not stream.completed  # no [DONE]
    assert stream.final_response().text() == ANSWER
    assert server.wait_idle(2.0)


def test_an_exception_inside_a_stream_read_is_recorded_as_the_streams_error(
    client: Client, server: LocalServer
) -> None:
    server.enqueue(Reply.stream([{"choices": [{"index": 0, "delta": {"content": "a"}}]}, Pause(5.0)]))
    with client.chat_completion_stream(REQUEST) as stream:
        first = next(stream)
        assert first.error is None
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        main = threading.get_ident()  # pytest runs tests in the main thread, which Python hands signals to
        timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))  # Ctrl-C during the read
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                next(stream)
        finally:
            timer.join()
            signal.signal(signal.SIGINT, previous)
        rest = list(stream)
    assert [chunk.error is not None for chunk in rest] == [True]
    assert "interrupted by KeyboardInterrupt" in str(rest[0].error)
    assert isinstance(stream.error, StreamError)
    with pytest.raises(StreamError, match="interrupted by KeyboardInterrupt"):
        stream.final_response()


def test_two_threads_iterating_one_stream_share_its_chunks(client: Client, server: LocalServer) -> None:
    chunks: list[Any] = []
    for i in range(200):
        chunks.append({"choices": [{"index": 0, "delta": {"content": f"{i} "}}]})
        if i % 20 == 0:
            chunks.append(Pause(0.01))  # one thread blocks in a read while the other asks for a chunk
    server.enqueue(Reply.stream(chunks))
    taken: list[list[Any]] = [[], []]
    failures: list[BaseException] = []

    def take(into: list[Any]) -> None:
        try:
            into.extend(stream)
        except BaseException as exc:
            failures.append(exc)

    with client.chat_completion_stream(REQUEST) as stream:
        threads = [threading.Thread(target=take, args=(into,)) for into in taken]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert failures == []
    got = sorted((chunk for part in taken for chunk in part), key=lambda c: c.total_latency)
    assert len(got) == 201  # 200 chunks and the end marker, each handed to exactly one thread
    assert stream.final_response().choices[0].message.content == "".join(f"{i} " for i in range(200))
