"""Client hardening, over real sockets: a stream is its own iterator, close() from another thread,
no re-send once a success status arrived, tool calls sharing an index, no silently partial answer,
where the environment's key may go, credentials in URLs, closed clients, scrubbed transport errors,
derived clients, the stream size limit and cookies."""

from __future__ import annotations

import contextlib
import gc
import itertools
import random
import threading
import time
import types
from collections.abc import Iterator
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
    StreamError,
    Timeout,
    ToolCall,
    ValidationError,
)
from chatdsl.testing import LocalServer, Pause, Reply
from tests._secrets import TEST_KEY

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
    assert first.text() == "echo:"
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
        assert next(stream).text()
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
    assert next(stream).text() == "echo:"
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
    server.enqueue(Reply.stream_cut(after=2))
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


def test_a_cancelled_watchdog_never_touches_the_socket_even_if_its_timer_was_already_firing() -> None:
    from chatdsl._client import _Watchdog

    raw = _RecordingRaw()
    watchdog = _Watchdog(types.SimpleNamespace(raw=raw), time.perf_counter() + 60)  # type: ignore[arg-type]
    assert watchdog._timer is not None
    fire = watchdog._timer.function  # what the timer thread runs
    assert watchdog.cancel() is False
    fire()  # a timer that had started firing as cancel() ran: it must now do nothing
    assert (raw.shutdowns, watchdog.fired) == (0, False)

    fired = _Watchdog(types.SimpleNamespace(raw=raw), time.perf_counter() + 60)  # type: ignore[arg-type]
    assert fired._timer is not None
    fired._timer.function()
    assert fired.cancel() is True
    assert raw.shutdowns == 1


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
