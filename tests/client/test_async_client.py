"""``chatdsl.AsyncClient``: its surface, settings, tool loop, concurrency and cancellation, over real loopback sockets.

What it shares with the sync client — the fault matrix, errors and retries, stream framing, the
secret guard — runs for both clients in those tests (the ``make_client`` fixture); here is what only
an asyncio client has.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import chatdsl
from chatdsl import (
    APIConnectionError,
    AsyncChatCompletionStream,
    AsyncClient,
    ChatCompletionResponse,
    Client,
    ClientClosedError,
    Limits,
    StreamError,
    Timeout,
    ValidationError,
)
from chatdsl.testing import LocalServer, Reply
from tests._secrets import TEST_KEY
from tests._servers import raw_server

KEY = TEST_KEY
REQUEST = chatdsl.chat("mistral-small-latest").user("one two three")


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(KEY, base_url=server.url, timeout=Timeout(connect=2, read=2)) as running:
        yield running


def _sockets() -> int:
    """How many sockets this process has open (the server's, in its threads, included)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    return count


# ------------------------------------------------------------------------------ the extra


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_import_chatdsl_imports_neither_aiohttp_nor_the_async_client() -> None:
    shown = "print(sorted(m for m in ('aiohttp', 'chatdsl.client.aio') if m in sys.modules))"
    assert _run(f"import sys, chatdsl; {shown}") == "[]"
    # naming the class loads its module, not aiohttp: that waits for a client to be made
    assert _run(f"import sys, chatdsl; chatdsl.AsyncClient; {shown}") == "['chatdsl.client.aio']"


def test_without_aiohttp_making_a_client_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['aiohttp'] = None\n"
        "import chatdsl\n"
        "try:\n"
        "    chatdsl.AsyncClient('k-1', base_url='http://127.0.0.1:1')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert _run(code) == "chatdsl.AsyncClient needs the aiohttp package: pip install 'chatdsl[async]'"


# ------------------------------------------------------------------------------ the same settings as Client


def test_the_constructor_takes_the_arguments_of_client_with_the_same_defaults() -> None:
    sync = inspect.signature(Client).parameters
    asynchronous = inspect.signature(AsyncClient).parameters
    assert list(sync) == list(asynchronous)
    assert [(p.kind, p.default) for p in sync.values()] == [(p.kind, p.default) for p in asynchronous.values()]


def test_settings_are_checked_as_client_checks_them(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="plain http to a remote host"):
        AsyncClient(KEY, base_url="http://example.com")
    with pytest.raises(ValidationError, match="ends with /v1"):
        AsyncClient(KEY, base_url="https://api.example.com/v1")
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="MISTRAL_API_KEY"):
        AsyncClient()
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    assert AsyncClient().base_url == "https://api.mistral.ai"
    # OPENAI_API_KEY is read for OpenAI's own host only
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert "'***'" in repr(AsyncClient(dialect="openai"))
    assert "api_key=None" in repr(AsyncClient(dialect="openai", base_url="http://127.0.0.1:8000"))


def test_the_key_is_never_shown_and_a_client_cannot_be_pickled_or_copied() -> None:
    client = AsyncClient(KEY, base_url="http://127.0.0.1:1")
    assert TEST_KEY not in repr(client)
    assert repr(client).startswith("AsyncClient(base_url='http://127.0.0.1:1', api_key='***'")
    for clone in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="AsyncClient cannot be pickled"):
            clone(client)


async def test_with_options_shares_the_session_and_closing_the_owner_closes_both(server: LocalServer) -> None:
    parent = AsyncClient(KEY, base_url=server.url)
    child = parent.with_options(headers={"X-Trace": "1"}, timeout=3)
    assert isinstance(child, AsyncClient)
    assert child.timeout == Timeout(connect=3, read=3)
    await child.chat_completion(REQUEST)
    await parent.chat_completion(REQUEST)
    assert child.session is parent.session is not None
    assert server.requests[0].headers["x-trace"] == "1"
    await child.aclose()
    assert not parent.closed
    await parent.chat_completion(REQUEST)
    await parent.aclose()
    assert child.closed
    assert parent.session is not None
    assert parent.session.closed
    with pytest.raises(ClientClosedError, match="this AsyncClient is closed"):
        await child.chat_completion(REQUEST)


_OTHER_LOOP = (
    "AsyncClient called from an event loop other than the one of its first call{}; an AsyncClient belongs to "
    "the event loop of its first call: make one client per loop, or close it with aclose() in that loop"
)


def test_a_client_used_from_a_second_asyncio_run_says_it_belongs_to_its_first_loop(server: LocalServer) -> None:
    client = AsyncClient(KEY, base_url=server.url, max_retries=0)  # a module global, say
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(client.chat_completion(REQUEST)).text()
        for call in (lambda: client.chat_completion(REQUEST), client.aclose):  # the first loop still runs
            with pytest.raises(chatdsl.ChatDSLError) as caught:
                asyncio.run(call())  # type: ignore[arg-type]
            assert isinstance(caught.value, RuntimeError)
            assert str(caught.value) == _OTHER_LOOP.format("")
            assert KEY not in str(caught.value)
        assert len(server.requests) == 1
        assert not client.closed  # the refused aclose() left it to be closed in its loop
        first.run_until_complete(client.aclose())
        assert client.session is not None
        assert client.session.closed
    finally:
        first.close()


def test_a_client_whose_first_loop_is_closed_says_its_session_cannot_be_used(server: LocalServer) -> None:
    client = AsyncClient(KEY, base_url=server.url, max_retries=0)
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(client.chat_completion(REQUEST)).text()
        assert client.session is not None
        first.run_until_complete(client.session.close())  # the test's own cleanup: no warning at exit
    finally:
        first.close()  # as asyncio.run() does when it returns
    with pytest.raises(chatdsl.ChatDSLError) as caught:
        asyncio.run(client.chat_completion(REQUEST))
    closed = " (that loop is closed: this client's session can no longer be used or closed)"
    assert str(caught.value) == _OTHER_LOOP.format(closed)
    assert len(server.requests) == 1


async def test_a_session_you_pass_is_used_and_left_open(server: LocalServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with AsyncClient(KEY, base_url=server.url, session=session) as client:
            assert client.session is session
            assert (await client.chat_completion(REQUEST)).text()
        assert not session.closed


async def test_pool_maxsize_caps_the_connections_to_one_host(server: LocalServer) -> None:
    server.handler = lambda _: Reply.delayed(0.05)
    async with AsyncClient(KEY, base_url=server.url, limits=Limits(pool_maxsize=3)) as client:
        answers = await asyncio.gather(*(client.chat_completion(REQUEST) for _ in range(12)))
    assert len(answers) == 12
    assert server.connections_accepted == 3


# ------------------------------------------------------------------------------ calls


async def test_a_call_a_stream_and_the_final_response(client: AsyncClient, server: LocalServer) -> None:
    response = await client.chat_completion(REQUEST)
    assert isinstance(response, ChatCompletionResponse)
    assert response.text() == "echo: one two three"
    assert response.latency is not None
    assert response.request_id
    async with client.chat_completion_stream(REQUEST) as stream:
        assert isinstance(stream, AsyncChatCompletionStream)
        chunks = [chunk async for chunk in stream]
    assert "".join(c.text() for c in chunks) == response.text()
    assert [c.is_last_chunk for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert stream.completed
    assert stream.closed
    assert (await stream.final_response()).text() == response.text()
    assert server.connections_accepted == 1  # the stream's connection went back to the pool


async def test_an_awaited_stream_is_closed_with_aclose(client: AsyncClient, server: LocalServer) -> None:
    server.enqueue(Reply.stream(delay=0.2))
    stream = await client.chat_completion_stream(REQUEST)
    first = await stream.__anext__()
    assert first.error is None
    await stream.aclose()
    await stream.aclose()  # idempotent
    assert await asyncio.to_thread(server.wait_idle, 1.0)
    last = await stream.__anext__()
    assert isinstance(last.error, StreamError)
    assert "closed by the caller" in str(last.error)
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_the_chatdsl_server_fixture_works_in_async_tests(chatdsl_server: LocalServer) -> None:
    async with AsyncClient("any-key", base_url=chatdsl_server.url) as client:
        response = await client.chat_completion(chatdsl.chat("m").user("hi"))
    assert response.text() == "echo: hi"
    assert chatdsl_server.last_request is not None


# ------------------------------------------------------------------------------ the tool loop

TOOLS_REQUEST = chatdsl.chat("mistral-small-latest").user("Weather and time in Paris?")


async def test_run_tools_runs_sync_and_async_tools_concurrently(client: AsyncClient, server: LocalServer) -> None:
    threads: set[str] = set()

    async def weather(city: str) -> dict[str, object]:
        """The weather in a city."""
        await asyncio.sleep(0.3)
        return {"city": city, "sky": "clear"}

    def local_time(city: str) -> str:
        """The local time in a city."""
        threads.add(threading.current_thread().name)
        time.sleep(0.3)
        return f"12:00 in {city}"

    server.enqueue(
        Reply.tool_calls(
            ("weather", {"city": "Paris"}), ("local_time", {"city": "Paris"}), ("weather", {"city": "Nice"})
        ),
        Reply.text("Clear, noon."),
    )
    start = time.perf_counter()
    result = await client.run_tools(TOOLS_REQUEST, [weather, local_time])
    elapsed = time.perf_counter() - start
    assert result.text() == "Clear, noon."
    assert result.rounds == 2
    assert elapsed < 0.55, f"the three 0.3 s calls ran one after another ({elapsed:.2f} s)"
    sent = server.requests[1].request
    contents = [m.content for m in sent.messages if isinstance(m, chatdsl.ToolMessage)]
    assert contents == ['{"city": "Paris", "sky": "clear"}', "12:00 in Paris", '{"city": "Nice", "sky": "clear"}']
    assert threading.current_thread().name not in threads  # a plain tool runs in a worker thread


async def test_run_tools_with_on_raise_cancels_the_other_calls(client: AsyncClient, server: LocalServer) -> None:
    finished: list[str] = []

    async def slow(city: str) -> str:
        """Slow."""
        await asyncio.sleep(1.0)
        finished.append(city)
        return city

    async def broken(city: str) -> str:
        """Broken."""
        raise RuntimeError(f"no data for {city}")

    server.enqueue(Reply.tool_calls(("slow", {"city": "Paris"}), ("broken", {"city": "Nice"})))
    with pytest.raises(RuntimeError, match="no data for Nice") as info:
        await client.run_tools(TOOLS_REQUEST, [slow, broken], on_error="raise")
    assert "raised by the tool 'broken'" in "".join(info.value.__notes__)
    await asyncio.sleep(1.1)
    assert finished == []


async def test_run_tools_streams_text_to_an_async_on_text(client: AsyncClient, server: LocalServer) -> None:
    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    def lookup(city: str) -> str:
        """Look a city up."""
        return f"{city}: sunny"

    server.enqueue(Reply.tool_call("lookup", {"city": "Paris"}), Reply.text("It is sunny in Paris."))
    result = await client.run_tools(TOOLS_REQUEST, [lookup], on_text=on_text)
    assert "".join(seen) == "It is sunny in Paris."
    assert result.text() == "It is sunny in Paris."


# ------------------------------------------------------------------------------ concurrency


@pytest.mark.slow
async def test_a_thousand_requests_in_flight_are_all_answered_and_matched() -> None:
    with LocalServer(api_key=KEY) as server:
        baseline = _sockets()
        client = AsyncClient(KEY, base_url=server.url, timeout=Timeout(connect=10, read=30), max_retries=0)

        async def plain(i: int) -> tuple[int, str]:
            response = await client.chat_completion(chatdsl.chat("m").user(f"plain request {i}"))
            return i, response.text()

        async def streamed(i: int) -> tuple[int, str]:
            async with client.chat_completion_stream(chatdsl.chat("m").user(f"streamed request {i}")) as stream:
                text = "".join([chunk.text() async for chunk in stream])
            assert stream.completed
            return i, text

        calls = [plain(i) if i % 2 else streamed(i) for i in range(1000)]
        answers = await asyncio.gather(*calls)
        await client.aclose()
        assert [i for i, _ in answers] == list(range(1000))
        for i, text in answers:
            kind = "plain" if i % 2 else "streamed"
            assert text == f"echo: {kind} request {i}"
        assert len(server.requests) == 1000  # none lost, none sent twice
        assert sorted(str(r.request.messages[0].content) for r in server.requests) == sorted(
            f"{'plain' if i % 2 else 'streamed'} request {i}" for i in range(1000)
        )
        assert await asyncio.to_thread(server.wait_idle, 5.0)
        assert _sockets() == baseline


# ------------------------------------------------------------------------------ cancellation


@contextlib.contextmanager
def _never_accepting() -> Iterator[str]:
    """A port whose accept queue is full: a new connection never completes (the client waits in connect)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(address)
        fillers.append(filler)
    time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{address[1]}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def _cancel_after(seconds: float, call: asyncio.Future[object] | asyncio.Task[object]) -> None:
    await asyncio.sleep(seconds)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_cancelling_while_connecting_leaves_no_socket() -> None:
    with _never_accepting() as url:
        baseline = _sockets()
        async with AsyncClient(KEY, base_url=url, timeout=Timeout(connect=30)) as client:
            task = asyncio.ensure_future(client.chat_completion(REQUEST))
            await asyncio.sleep(0.3)
            assert _sockets() == baseline + 1  # the client's socket, waiting in connect
            await _cancel_after(0, task)
            assert _sockets() == baseline


async def test_cancelling_while_awaiting_the_headers_closes_the_connection() -> None:
    seen_close = threading.Event()

    def never_answer(conn: socket.socket) -> None:  # reads the request, answers nothing, waits for the client
        conn.settimeout(5)
        if conn.recv(1) == b"":
            seen_close.set()

    with raw_server(never_answer) as url:
        async with AsyncClient(KEY, base_url=url) as client:
            await _cancel_after(0.3, asyncio.ensure_future(client.chat_completion(REQUEST)))
            assert await asyncio.to_thread(seen_close.wait, 2.0), "the server did not see the connection close"


async def test_cancelling_a_stream_mid_way_closes_its_connection(client: AsyncClient, server: LocalServer) -> None:
    server.enqueue(Reply.stream(delay=0.3))
    got: list[chatdsl.CompletionChunk] = []

    async def read(stream: AsyncChatCompletionStream) -> None:
        async for chunk in stream:
            got.append(chunk)

    async with client.chat_completion_stream(REQUEST) as stream:
        await _cancel_after(0.45, asyncio.ensure_future(read(stream)))
        assert await asyncio.to_thread(server.wait_idle, 1.0), "the server did not see the connection close"
        assert 1 <= len(got) <= 3
        assert stream.closed
        assert "interrupted by CancelledError" in str(stream.error)
        last = await stream.__anext__()  # the next read hands the error over once
        assert last.error is stream.error
        assert last.is_last_chunk
    assert (await client.chat_completion(REQUEST)).text()  # the client goes on


async def test_asyncio_timeout_around_a_call_closes_its_connection(client: AsyncClient, server: LocalServer) -> None:
    server.enqueue(Reply.delayed(3.0))
    start = time.perf_counter()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await client.chat_completion(REQUEST)
    assert time.perf_counter() - start < 1.0
    assert await asyncio.to_thread(server.wait_idle, 1.0)
    assert len(server.requests) == 1  # not sent again


async def test_the_total_deadline_is_an_api_timeout_error(server: LocalServer) -> None:
    server.handler = lambda _: Reply.delayed(3.0)
    async with AsyncClient(KEY, base_url=server.url, timeout=Timeout(read=10, total=0.4)) as client:
        start = time.perf_counter()
        with pytest.raises(chatdsl.APITimeoutError, match=r"total deadline of 0\.4 s passed") as info:
            await client.chat_completion(REQUEST)
    assert time.perf_counter() - start < 1.5
    assert isinstance(info.value, APIConnectionError)
    assert not info.value.response_started
