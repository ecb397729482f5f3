"""One ``Client`` shared by many threads against one ``LocalServer``: no cross-talk, nothing lost or
duplicated, connections reused, none left open after ``close()``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import chatdsl
from chatdsl import Client, Limits, Timeout
from chatdsl.testing import LocalServer
from tests._secrets import TEST_KEY

KEY = TEST_KEY
THREADS = 16
PER_THREAD = 100


def _run_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(index)`` in *count* threads started together; return what they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def target(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,), name=f"worker-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    return errors


def test_sixteen_threads_share_one_client_without_cross_talk_loss_or_leaks() -> None:
    answers: dict[str, tuple[str, str | None]] = {}  # token -> (answer text, request id the client saw)
    lock = threading.Lock()
    with LocalServer(api_key=KEY) as server:
        client = Client(KEY, base_url=server.url, timeout=Timeout(connect=5, read=10))

        def work(thread: int) -> None:
            for i in range(PER_THREAD):
                token = f"token-{thread}-{i}"
                request = chatdsl.chat("mistral-small-latest").user(token)
                if (thread + i) % 2:
                    with client.chat_completion_stream(request) as stream:
                        chunks = list(stream)
                    assert stream.completed
                    assert chunks[-1].error is None
                    text, request_id = "".join(c.text() for c in chunks), stream.request_id
                    assert stream.final_response().text() == text
                else:
                    response = client.chat_completion(request)
                    text, request_id = response.text(), response.request_id
                with lock:
                    assert token not in answers, f"{token} answered twice"
                    answers[token] = (text, request_id)

        start = time.perf_counter()
        errors = _run_threads(THREADS, work)
        elapsed = time.perf_counter() - start
        assert errors == []
        requests = server.requests
        accepted_before_close = server.connections_accepted
        client.close()
        assert server.wait_idle(5.0), f"{server.open_connections} connections still open after close()"
        assert server.open_connections == 0

    total = THREADS * PER_THREAD
    # every request arrived once, and every answer is the echo of its own request
    assert len(requests) == total
    sent = {r.request.messages[-1].content: r for r in requests if r.request is not None}
    assert len(sent) == total, "a request was lost or sent twice"
    assert sorted(answers) == sorted(sent)
    for token, (text, request_id) in answers.items():
        assert text == f"echo: {token}"
        assert request_id == sent[token].request_id, f"{token} got the answer to another request"
    # half of them streamed
    assert sum(r.request.stream is True for r in requests if r.request is not None) == total // 2
    # connections were reused: at most one per thread when the pool holds them all (Limits.pool_maxsize=20)
    assert accepted_before_close <= 2 * THREADS, accepted_before_close
    assert elapsed < 60


def test_abandoned_streams_and_errors_leave_no_connection_open() -> None:
    """Streams closed after one chunk, broken loops and refused requests, from many threads at once."""
    with LocalServer(api_key=KEY) as server:
        client = Client(KEY, base_url=server.url, timeout=Timeout(connect=5, read=10), max_retries=0)
        wrong_key = client.with_options(api_key="sk-not-the-key")  # shares the session: 401 on every call
        request = chatdsl.chat("mistral-small-latest").user("one two three four five six")

        def work(thread: int) -> None:
            for i in range(10):
                if i % 3 == 0:
                    with client.chat_completion_stream(request) as stream:
                        next(stream)  # closed after the first chunk
                elif i % 3 == 1:
                    for _ in client.chat_completion_stream(request):
                        break  # a broken for loop closes the stream
                else:
                    try:
                        wrong_key.chat_completion(request)
                    except chatdsl.AuthenticationError:
                        pass
                    else:
                        raise AssertionError("a wrong key was accepted")

        errors = _run_threads(THREADS, work)
        assert errors == []
        assert len(server.requests) == THREADS * 7  # the 3 calls refused with 401 per thread are not recorded
        client.close()
        assert server.wait_idle(5.0), f"{server.open_connections} connections still open after close()"


def test_close_releases_pooled_connections_even_while_responses_are_referenced() -> None:
    """urllib3 2.x closes pools from a finalizer; ``Client.close()`` must not wait for the garbage collector."""
    kept: list[Any] = []
    with LocalServer(api_key=KEY) as server:
        client = Client(KEY, base_url=server.url, limits=Limits(pool_maxsize=4))
        request = chatdsl.chat("mistral-small-latest").user("hello")
        for _ in range(3):
            with client.chat_completion_stream(request) as stream:
                list(stream)
            kept.append(stream)  # keeps the requests.Response and through it the pool alive
        assert server.open_connections == 1
        client.close()
        assert server.wait_idle(2.0), f"{server.open_connections} connections still open after close()"
    assert len(kept) == 3
