"""Client hardening, over real sockets: a stream is its own iterator, close() from another thread,
no re-send once a success status arrived, tool calls sharing an index, no silently partial answer,
where the environment's key may go, credentials in URLs, closed clients, scrubbed transport errors,
derived clients, the stream size limit and cookies."""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
import logging
import pickle
import random
import re
import signal
import socket
import threading
import time
import traceback
import tracemalloc
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

import chatdsl
from chatdsl import (
    APIConnectionError,
    APITimeoutError,
    ChatDSLError,
    Client,
    ClientClosedError,
    CompletionChunk,
    FunctionCall,
    Limits,
    MalformedResponseError,
    StreamError,
    Timeout,
    ToolCall,
    ValidationError,
)
from chatdsl.testing import LocalServer, Pause, Reply
from tests._secrets import TEST_KEY, leaked

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it
REQUEST = chatdsl.chat("mistral-small-latest").user("one two three four five six")
ANSWER = "echo: one two three four five six"


@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    with Client(KEY, base_url=server.url, timeout=Timeout(connect=2, read=2), _sleep=lambda _: None) as c:
        yield c


@pytest.fixture(autouse=True)
def no_keys_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)


def tool_chunk(calls: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    """A chunk whose delta carries *calls*, as the wire spells it."""
    return {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "created": 0,
        "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": calls}, "finish_reason": finish}],
    }


# ------------------------------------------------------------------------------ 1. the stream is its own iterator


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


# ------------------------------------------------------------------------------ 2. close() from another thread


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


# ------------------------------------------------------------------------------ 3. no re-send after a success status


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


def test_response_started_survives_pickling() -> None:
    import pickle

    error = APIConnectionError("cut", response_started=True)
    assert pickle.loads(pickle.dumps(error)).response_started
    assert APITimeoutError("slow").response_started is False


# ------------------------------------------------------------------------------ 4. tool calls sharing an index


def test_parallel_calls_all_numbered_0_are_kept_apart(client: Client, server: LocalServer) -> None:
    paris = {"id": "call_a", "index": 0, "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    rome = {"id": "call_b", "index": 0, "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    server.enqueue(Reply.stream([tool_chunk([paris]), tool_chunk([rome], "tool_calls")]))
    with client.chat_completion_stream(REQUEST) as stream:
        list(stream)
    assert stream.final_response().assistant_message().tool_calls == (
        ToolCall(id="call_a", index=0, function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}')),
        ToolCall(id="call_b", index=0, function=FunctionCall(name="get_weather", arguments='{"city": "Rome"}')),
    )


def test_deltas_without_an_id_continue_the_latest_call_under_their_index(client: Client, server: LocalServer) -> None:
    server.enqueue(
        Reply.stream(
            [
                tool_chunk([{"id": "call_a", "index": 0, "function": {"name": "f", "arguments": '{"x": '}}]),
                tool_chunk([{"index": 0, "function": {"arguments": "1}"}}]),
                tool_chunk([{"id": "call_b", "index": 0, "function": {"name": "g", "arguments": '{"y": '}}]),
                tool_chunk([{"id": "call_b", "index": 0, "function": {"arguments": "2"}}]),  # the same id: same call
                tool_chunk([{"index": 0, "function": {"arguments": "}"}}], "tool_calls"),
            ]
        )
    )
    with client.chat_completion_stream(REQUEST) as stream:
        list(stream)
    assert stream.final_response().assistant_message().tool_calls == (
        ToolCall(id="call_a", index=0, function=FunctionCall(name="f", arguments='{"x": 1}')),
        ToolCall(id="call_b", index=0, function=FunctionCall(name="g", arguments='{"y": 2}')),
    )


# ------------------------------------------------------------------------------ 5. no silently partial answer


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


# ---------------------------------------------------------------------- 6. the environment's key, URL credentials


def test_openai_api_key_is_read_for_openais_host_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with LocalServer(dialect="openai") as server:  # takes any key, or none
        _openai_key_cases(server)


def _openai_key_cases(server: LocalServer) -> None:
    official = Client(dialect="openai")
    assert "api_key='***'" in repr(official)
    for base_url in (server.url, "https://openai.example.com", "https://api.openai.com.example.org"):
        assert "api_key=None" in repr(Client(base_url=base_url, dialect="openai")), base_url
    with Client(base_url=server.url, dialect="openai") as local:
        local.chat_completion(REQUEST)
    assert server.last_request is not None
    assert server.last_request.authorization is None
    # a derived client keeps an environment key only where it could have read it itself
    assert "api_key=None" in repr(official.with_options(base_url=server.url))
    assert "api_key='***'" in repr(official.with_options(max_retries=0))
    explicit = Client(KEY, dialect="openai")
    with explicit.with_options(base_url=server.url) as derived:  # a key you pass goes where you send it
        derived.chat_completion(REQUEST)
    assert server.last_request.authorization == f"Bearer {KEY}"


def test_mistral_api_key_is_read_for_any_host(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    with Client(base_url=server.url) as client:  # a proxy in front of Mistral's API takes the same key
        client.chat_completion(REQUEST)
    assert server.last_request is not None
    assert server.last_request.authorization == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "url",
    ["https://alice:s3cret-pw@proxy.example/mistral", "http://alice:s3cret-pw@127.0.0.1:8080", "https://tok@x.example"],
)
def test_credentials_in_the_base_url_are_refused(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        Client(KEY, base_url=url)
    assert info.value.path == "base_url"
    assert "headers=" in info.value.rule
    assert "session=" in info.value.rule
    assert "s3cret" not in str(info.value)
    assert "tok@" not in str(info.value)
    with Client(KEY, base_url="https://proxy.example") as client, pytest.raises(ValidationError) as derived:
        client.with_options(base_url=url)
    assert derived.value.path == "base_url"


# ------------------------------------------------------------------------------ 7. a closed client


def test_a_closed_client_raises_client_closed_error(server: LocalServer) -> None:
    client = Client(KEY, base_url=server.url)
    client.close()
    for call in (client.chat_completion, client.chat_completion_stream):
        with pytest.raises(ClientClosedError, match="closed") as info:
            call(REQUEST)
        assert isinstance(info.value, ChatDSLError)
        assert isinstance(info.value, RuntimeError)
    assert server.requests == []
    assert chatdsl.ClientClosedError is ClientClosedError
    assert "ClientClosedError" in chatdsl.__all__


def test_a_wrong_argument_type_is_still_a_type_error(client: Client) -> None:
    with pytest.raises(TypeError, match="expected a ChatCompletionRequest, got dict"):
        client.chat_completion({"model": "m"})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ 8. scrubbed transport errors

_SKIPPED = (types.TracebackType, types.FrameType, types.ModuleType, type, types.FunctionType, types.MethodType)


def _reachable(root: BaseException) -> list[str]:
    """Paths from *root*, through causes, contexts, arguments and attributes (not frames), to a
    ``requests`` request or response or to the key."""
    found: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[object, str]] = [(root, "error")]
    while stack:
        value, path = stack.pop()
        if id(value) in seen or isinstance(value, _SKIPPED):
            continue
        seen.add(id(value))
        if isinstance(value, (requests.PreparedRequest, requests.Response)):
            found.append(path)
        if isinstance(value, (str, bytes)):
            if (KEY if isinstance(value, str) else KEY.encode()) in value:
                found.append(path)
            continue
        if isinstance(value, BaseException):
            stack += [
                (v, f"{path}.{n}") for n, v in (("__cause__", value.__cause__), ("__context__", value.__context__))
            ]
            stack += [(arg, f"{path}.args[{i}]") for i, arg in enumerate(value.args)]
        if isinstance(value, dict):
            stack += [(item, f"{path}[{key!r}]") for key, item in value.items()]
            stack += [(key, f"{path}.keys()") for key in value]
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            stack += [(item, f"{path}[{i}]") for i, item in enumerate(value)]
            continue
        stack += [(item, f"{path}.{name}") for name, item in getattr(value, "__dict__", {}).items()]
        for cls in type(value).__mro__:
            slots = getattr(cls, "__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if hasattr(value, name):
                    stack.append((getattr(value, name), f"{path}.{name}"))
    return found


def test_no_request_or_key_is_reachable_from_a_transport_error(server: LocalServer) -> None:
    errors: list[BaseException] = []
    faults = [Reply.drop(reset=True), Reply.drop(), Reply.delayed(1.0), Reply.stall(1.0), Reply.truncated()]
    with Client(KEY, base_url=server.url, timeout=Timeout(connect=1, read=0.2), max_retries=0) as client:
        for fault in faults:
            server.enqueue(fault)
            with pytest.raises(APIConnectionError) as info:
                client.chat_completion(REQUEST)
            errors.append(info.value)
        for fault in (Reply.delayed(1.0), Reply.drop(reset=True)):
            server.enqueue(fault)
            with pytest.raises(APIConnectionError) as info:
                client.chat_completion_stream(REQUEST)
            errors.append(info.value)
        for fault in (Reply.stream_cut(1, reset=True), Reply.stream_stall(1.0)):
            server.enqueue(fault)
            with client.chat_completion_stream(REQUEST) as stream:
                error = list(stream)[-1].error
            assert error is not None
            errors.append(error)
    url = server.url
    server.stop()
    with Client(KEY, base_url=url, max_retries=0) as client, pytest.raises(APIConnectionError) as refused:
        client.chat_completion(REQUEST)
    errors.append(refused.value)
    for error in errors:
        assert error.__cause__ is not None
        assert _reachable(error) == [], repr(error)


def test_the_reachability_check_finds_an_unscrubbed_request(server: LocalServer) -> None:
    """The check above can fail: a raw ``requests`` error does hold the request and its key."""
    with pytest.raises(requests.ConnectionError) as info:
        requests.post("http://127.0.0.1:1/v1/chat/completions", headers={"Authorization": KEY}, timeout=2)
    assert "error.request" in _reachable(info.value)


# ------------------------------------------------------------------------------ 9. derived clients


def test_closing_the_session_owner_closes_every_derived_client(server: LocalServer) -> None:
    owner = Client(KEY, base_url=server.url)
    child = owner.with_options(max_retries=0)
    grandchild = child.with_options(headers={"X-A": "1"})
    sibling = owner.with_options(timeout=5)
    child.close()  # closes only itself: the session is the owner's
    assert child.closed
    assert not owner.closed
    assert not grandchild.closed
    assert not sibling.closed
    assert grandchild.chat_completion(REQUEST).text() == "echo: one two three four five six"
    with pytest.raises(ClientClosedError, match="this Client is closed"):
        child.chat_completion(REQUEST)
    owner.close()
    for client in (owner, child, grandchild, sibling):
        assert client.closed
        with pytest.raises(ClientClosedError):
            client.chat_completion(REQUEST)
    with pytest.raises(ClientClosedError, match="owns its session"):
        sibling.chat_completion_stream(REQUEST)
    assert len(server.requests) == 1
    assert server.wait_idle(2.0)


def test_clients_on_a_session_you_pass_are_closed_one_by_one(server: LocalServer) -> None:
    with requests.Session() as session:
        first = Client(KEY, base_url=server.url, session=session)
        derived = first.with_options(max_retries=0)
        first.close()  # it does not own the session: the session and the derived client stay open
        assert not derived.closed
        assert derived.chat_completion(REQUEST).text() == ANSWER


# ------------------------------------------------------------------------------ 10. the stream size limit


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


# ------------------------------------------------------------------------------ 12. no cookies


def test_the_clients_own_session_keeps_no_cookies(client: Client, server: LocalServer) -> None:
    server.enqueue(Reply.json(headers={"Set-Cookie": "affinity=node-7; Path=/"}))
    client.chat_completion(REQUEST)
    client.chat_completion(REQUEST)
    assert server.last_request is not None
    assert "cookie" not in server.last_request.headers
    assert len(client.session.cookies) == 0


def test_a_session_you_pass_keeps_its_cookies(server: LocalServer) -> None:
    with requests.Session() as session, Client(KEY, base_url=server.url, session=session) as client:
        server.enqueue(Reply.json(headers={"Set-Cookie": "affinity=node-7; Path=/"}))
        client.chat_completion(REQUEST)
        client.chat_completion(REQUEST)
    assert server.last_request is not None
    assert server.last_request.headers.get("cookie") == "affinity=node-7"


# ------------------------------------------------------------------------ the total deadline


class _RecordingRaw:
    def __init__(self) -> None:
        self.shutdowns = 0

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_cancelled_watchdog_never_touches_the_socket_even_if_its_deadline_was_already_firing() -> None:
    from chatdsl.client.sync import _Watchdog

    raw = _RecordingRaw()
    watchdog = _Watchdog(time.perf_counter() + 60)
    watchdog.watch(raw.shutdown)
    assert watchdog.cancel() is False
    watchdog.fire()  # the scheduler popped it as cancel() ran: it must now do nothing
    assert (raw.shutdowns, watchdog.fired) == (0, False)

    fired = _Watchdog(time.perf_counter() + 60)
    fired.watch(raw.shutdown)
    fired.fire()
    assert fired.cancel() is True
    assert raw.shutdowns == 1
    fired.watch(raw.shutdown)  # pointed at something new after the deadline: interrupted at once
    assert raw.shutdowns == 2
    fired.watch(None)
    assert raw.shutdowns == 2


def test_one_scheduler_thread_serves_every_deadline() -> None:
    from chatdsl.client.sync import _Watchdog

    before = {thread.ident for thread in threading.enumerate()}
    raws = [_RecordingRaw() for _ in range(50)]
    watchdogs = [_Watchdog(time.perf_counter() + 0.05 + index * 0.001) for index in range(50)]
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


# ------------------------------------------------------------------------------ the second pass (issue 13)


@contextlib.contextmanager
def raw_server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback server that reads one request per connection and hands the socket to *handle*."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            while len(body) < length:
                body += conn.recv(65536)
            with contextlib.suppress(OSError):
                handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


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


@pytest.mark.parametrize(
    "headers",
    [{"X-Token": "tok-123456\n"}, {"X-Token": "tok-123456\r\nX-Evil: 1"}, {"X-Token": " tok-123456"}],
    ids=["trailing newline", "injected header", "leading space"],
)
def test_a_bad_header_value_is_refused_when_the_client_is_made_and_never_shown(headers: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match=r"headers\['X-Token'\]: is not one line") as info:
        Client(KEY, base_url="http://127.0.0.1:1", headers=headers)
    assert "tok-123456" not in str(info.value)


@pytest.mark.parametrize("name", ["X Token", "X-Token\n", "", "Ünicode"])
def test_a_bad_header_name_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=r"is not a header name"):
        Client(KEY, base_url="http://127.0.0.1:1", headers={name: "1"})


def test_a_bad_per_call_header_is_refused_and_never_retried(
    client: Client, server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "chatdsl")
    with pytest.raises(ValidationError) as info:
        client.chat_completion(REQUEST, headers={"X-Token": "tok-123456\n"})
    assert "tok-123456" not in str(info.value)
    with pytest.raises(ValidationError):
        client.with_options(headers={"X-Token": "tok-123456\n"})
    assert server.requests == []
    assert "tok-123456" not in caplog.text
    assert "retry" not in caplog.text
    # a fine header still goes through, unchanged
    client.chat_completion(REQUEST, headers={"X-Token": "tok-1 2\t3"})
    assert server.last_request.headers["x-token"] == "tok-1 2\t3"


def test_no_frame_of_a_transport_error_holds_the_key(server: LocalServer) -> None:
    """The frames of requests, urllib3 and http.client hold the headers; their locals are cleared."""
    url = server.url
    errors: list[BaseException] = []
    server.enqueue(Reply.drop(reset=True), Reply.stall(1.0))
    with Client(KEY, base_url=url, timeout=Timeout(connect=1, read=0.2), max_retries=0) as client:
        for _ in range(2):
            with pytest.raises(APIConnectionError) as info:
                client.chat_completion(REQUEST)
            errors.append(info.value)
        server.enqueue(Reply.stream_cut(1, reset=True))
        with client.chat_completion_stream(REQUEST) as stream:
            errors.append(list(stream)[-1].error)  # type: ignore[arg-type]
    server.stop()
    with Client(KEY, base_url=url, max_retries=0) as client, pytest.raises(APIConnectionError) as refused:
        client.chat_completion(REQUEST)
    errors.append(refused.value)
    for error in errors:
        shown = "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
        assert "urllib3" in shown  # the foreign frames are still there, with their lines
        assert not leaked(shown), repr(error)


def test_a_loopback_base_url_never_goes_through_a_proxy(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = socket.create_server(("127.0.0.1", 0))
    proxy.setblocking(False)
    address = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, address)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    try:
        with Client(KEY, base_url=server.url, timeout=Timeout(connect=1, read=1), max_retries=0) as client:
            assert client.chat_completion(REQUEST).choices[0].message.content == ANSWER
            with pytest.raises(BlockingIOError):
                proxy.accept()  # nobody came
        assert len(server.requests) == 1
    finally:
        proxy.close()


def test_a_dot_localhost_name_is_loopback_only_if_it_resolves_there(monkeypatch: pytest.MonkeyPatch) -> None:
    from chatdsl.client import sync as _client

    answers = {"api.localhost": "127.0.0.1", "evil.localhost": "203.0.113.7"}

    def resolve(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], 0))]

    monkeypatch.setattr(_client.socket, "getaddrinfo", resolve)
    assert Client(KEY, base_url="http://api.localhost:8000").base_url == "http://api.localhost:8000"
    assert Client(KEY, base_url="http://localhost:8000").base_url == "http://localhost:8000"
    for host in ("evil.localhost", "unknown.localhost"):
        with pytest.raises(ValidationError, match="plain http to a remote host"):
            Client(KEY, base_url=f"http://{host}:8000")


def test_close_racing_calls_leaves_no_connection_open() -> None:
    """Calls in flight as close() runs may make a new pool (requests would); it is closed as they end."""
    left: list[str] = []
    with LocalServer(api_key=KEY) as server:
        for trial in range(30):
            client = Client(KEY, base_url=server.url, max_retries=0)
            server.enqueue(*[Reply.delayed(0.005 * (i % 3)) for i in range(4)])
            threads = [threading.Thread(target=_call, args=(client,)) for _ in range(4)]
            for thread in threads:
                thread.start()
            time.sleep(0.001 * (trial % 10))
            client.close()
            for thread in threads:
                thread.join(5)
            if not server.wait_idle(1.0):
                left.append(f"trial {trial}: {server.open_connections} open")
    assert left == []


def _call(client: Client) -> None:
    with contextlib.suppress(ChatDSLError):
        client.chat_completion(REQUEST)


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


def test_a_client_refuses_to_be_pickled_or_copied(client: Client) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled") as info:
            pickle.dumps(client, protocol)
        assert not leaked(str(info.value))
    with pytest.raises(TypeError, match="cannot be pickled"):
        copy.copy(client)


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


def test_an_error_raised_before_sending_is_never_retried_nor_shown(caplog: pytest.LogCaptureFixture) -> None:
    """What an adapter refuses before sending (a malformed URL or header) is raised at once, its text left out."""
    attempts: list[str] = []

    class Refusing(requests.adapters.BaseAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            attempts.append(str(request.url))
            raise requests.exceptions.InvalidHeader("Invalid header value: 'tok-123456\\n'")

        def close(self) -> None:
            pass

    session = requests.Session()
    session.mount("https://", Refusing())
    caplog.set_level(logging.DEBUG, "chatdsl")
    with Client(KEY, session=session, _sleep=lambda _: None) as client, pytest.raises(APIConnectionError) as info:
        client.chat_completion(REQUEST)
    assert len(attempts) == 1
    assert "nothing was sent" in str(info.value)
    assert "tok-123456" not in str(info.value)
    assert "tok-123456" not in caplog.text
    assert info.value.__cause__ is None


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
