"""The asyncio client: :class:`AsyncClient` and :class:`AsyncChatCompletionStream`, on ``aiohttp``.

The same client as :class:`~chatdsl.Client` — the same arguments, checks, errors, retries,
timeouts, limits, stream semantics and secret guarantees — for ``await``. Every decision lives in
the transport-free core it shares with the sync client (``base``: settings and request
preparation; ``retry.Attempts``: the retry loop; ``status``: answers and errors; ``stream``:
decoding and stamping chunks; ``loop``: the tool loop's steps): this module only moves bytes.

``aiohttp`` is an optional extra (``pip install 'chatdsl[async]'``), imported when an
:class:`AsyncClient` is made, never by ``import chatdsl``. Its timeouts: ``sock_connect`` and
``sock_read`` (``Timeout.connect`` and ``Timeout.read``); ``Timeout.total`` is chatdsl's own
deadline (``asyncio.timeout_at``), so it spans the retries and a stream's whole body, as in the sync
client. Cancelling a call or a stream's iteration closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import time
import urllib.request
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, TypeVar

import attrs

from chatdsl._errors import (
    APIConnectionError,
    APIError,
    StreamError,
    other_loop_error,
)
from chatdsl.client.base import BaseClient
from chatdsl.client.config import Limits, Timeout
from chatdsl.client.loop import DEFAULT_MAX_ROUNDS, ToolLoop, ToolRunResult
from chatdsl.client.status import (
    ERROR_BODY_LIMIT,
    Body,
    ConnectionFailure,
    announced_too_large,
    api_error,
    body_deadline_error,
    completion,
    connection_error,
    is_json,
    not_an_event_stream,
    read_limit,
    request_id_of,
    retry_after_of,
    scrubbed_chain,
    short_text,
)
from chatdsl.client.stream import StreamFacts, StreamFailure, StreamState, UsageFold
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import ChatCompletionResponse, CompletionChunk

if TYPE_CHECKING:
    import aiohttp

    from chatdsl.client.loop import OnToolError, Tools
    from chatdsl.model.messages import ToolCall
    from chatdsl.runs.core import RunItem, RunResult

__all__ = ["AsyncChatCompletionStream", "AsyncClient"]

logger: Final = logging.getLogger("chatdsl")

_T = TypeVar("_T")

_DRAIN_WAIT: Final = 0.05  # after [DONE]: how long to wait for the end of the HTTP body (to reuse the connection)
_EXTRA: Final = "pip install 'chatdsl[async]'"


def _aiohttp() -> Any:
    """Return the ``aiohttp`` module, or raise an ``ImportError`` naming the extra."""
    try:
        import aiohttp
    except ImportError as exc:
        raise ImportError(f"chatdsl.AsyncClient needs the aiohttp package: {_EXTRA}") from exc
    return aiohttp


# ------------------------------------------------------------------------------------ plumbing


class _Headers(dict[str, str]):
    """Request headers whose repr hides their values: they hold ``Authorization`` (and a frame's locals show them)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<headers {', '.join(self)}: values not shown>"


class _SessionBox:
    """The ``aiohttp.ClientSession`` of a client and the clients derived from it, made on first use
    (inside the running event loop: a client may be made before any loop runs), and owned by that loop."""

    __slots__ = ("limits", "loop", "owned", "session")

    def __init__(self, limits: Limits, session: aiohttp.ClientSession | None = None) -> None:
        self.limits = limits
        self.session = session
        self.owned = session is None
        self.loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def check_loop(self, *, remember: bool = True) -> None:
        """Refuse a running loop other than the one of the first use (remembered now, if *remember*)."""
        running = asyncio.get_running_loop()
        first = running if self.loop is None else self.loop()
        if self.loop is None and remember:
            self.loop = weakref.ref(running)
        if first is not running:
            raise other_loop_error(closed=first is None or first.is_closed())

    def get(self) -> aiohttp.ClientSession:
        self.check_loop()
        session = self.session
        if session is None:
            aiohttp = _aiohttp()
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.limits.pool_maxsize)
            session = self.session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # the API uses no cookies: none rides from one call to the next
                trust_env=False,  # no .netrc (it could add an Authorization header); proxies are chosen per call
                auto_decompress=True,
            )
        return session

    async def close(self) -> None:
        session = self.session
        if self.owned and session is not None:
            await session.close()


def _scrub(exc: BaseException) -> None:
    """Cut what holds the request headers off an ``aiohttp`` error and everything chained to it.

    ``request_info`` (on response errors) holds the request's headers, ``Authorization`` included;
    the locals of the finished frames in their tracebacks hold them too: both are dropped.
    """
    for current in scrubbed_chain(exc, "os_error"):
        for name in ("request_info", "history"):
            if name in getattr(current, "__dict__", ()):
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(current, name, None if name == "request_info" else ())


def _reason(exc: BaseException) -> str:
    """Return a short description of the innermost cause of an ``aiohttp`` error."""
    aiohttp = _aiohttp()
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection closed before the body ended"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    current: BaseException = exc
    seen = {id(exc)}
    while True:
        nested = getattr(current, "os_error", None) or current.__cause__
        if not isinstance(nested, BaseException) or id(nested) in seen:
            break
        seen.add(id(nested))
        current = nested
    code = getattr(current, "errno", None)
    if isinstance(current, OSError) and isinstance(code, int) and code in errno.errorcode:
        return os.strerror(code)
    return short_text(current)


def _failure(exc: BaseException) -> ConnectionFailure:
    aiohttp = _aiohttp()
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect"
    if isinstance(exc, TimeoutError):  # aiohttp's SocketTimeoutError too
        return "read"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "tls"
    return "broken"


def _transport_error(
    exc: BaseException, url: str, limits: Timeout, *, deadline: bool, response_started: bool = False
) -> APIConnectionError:
    """Return the chatdsl error for an ``aiohttp`` failure (chained to it, scrubbed).

    *deadline*: the total deadline passed (it cut the exchange)."""
    _scrub(exc)
    kind: ConnectionFailure = "deadline" if deadline else _failure(exc)
    error = connection_error(kind, url, limits, _reason(exc), response_started=response_started)
    error.__cause__ = exc
    return error


def _loop_time(deadline: float | None) -> float | None:
    """The event loop's time of a ``time.perf_counter`` *deadline* (for ``asyncio.timeout_at``)."""
    if deadline is None:
        return None
    return asyncio.get_running_loop().time() + (deadline - time.perf_counter())


async def _read_body(response: aiohttp.ClientResponse, limit: int | None) -> bytearray:
    """Read the rest of the body as it arrives, at most *limit* bytes."""
    content = response.content
    body = Body(limit)
    while body.add(await content.readany()):
        pass
    return body.data


def _salvage(content: aiohttp.StreamReader) -> bytes:
    """Return what *content* received before its read failed: ``readany`` raises the failure first
    and would drop the events that arrived just before a cut."""
    if not getattr(content, "_buffer", None):
        return b""
    try:
        data: bytes = content._read_nowait(-1)
    except Exception:  # a private method of aiohttp's: if it changed, the cut is reported all the same
        return b""
    return data


def _proxy(url: str) -> str | None:
    """The proxy the environment names for *url* (``https_proxy``, ``no_proxy``, …), as ``requests`` would pick it."""
    scheme = url.partition(":")[0]
    proxies = urllib.request.getproxies()
    host = url.split("/")[2] if url.count("/") >= 2 else ""
    if not proxies or urllib.request.proxy_bypass(host):
        return None
    return proxies.get(scheme) or proxies.get("all")


@attrs.frozen
class _Exchange:
    """A successful response's headers have arrived: what the caller needs to read it."""

    response: aiohttp.ClientResponse
    sent_at: float
    retries: int
    deadline: float | None
    timeout: Timeout
    url: str
    limits: Limits


# ------------------------------------------------------------------------------------ the client


class AsyncClient(BaseClient["aiohttp.ClientSession | None"]):
    """The asyncio twin of :class:`~chatdsl.Client`, on ``aiohttp`` (``pip install 'chatdsl[async]'``).

    It takes the same arguments, with the same defaults, environment keys and checks (plain
    ``http://`` to a remote host is refused, the key never shows in a repr, an error or a traceback's
    locals, a client cannot be pickled), and ``with_options`` derives clients sharing its session.
    ``session`` is an ``aiohttp.ClientSession`` used as it is and never closed by the client; else the
    client makes one on its first call (inside the running event loop) and closes it in :meth:`aclose`.
    ``Limits.pool_maxsize`` caps the connections open to one host at once (aiohttp's
    ``limit_per_host``): further calls wait for a free connection, within ``Timeout.total``.

    ``await client.chat_completion(request)``; ``async with client.chat_completion_stream(request)
    as stream: async for chunk in stream``; ``await client.run_tools(request, tools)``. Use it as an
    async context manager, or ``await client.aclose()``. Errors, retries and timeouts are those of
    :class:`~chatdsl.Client`. Cancelling the task that awaits a call or iterates a stream (a
    ``asyncio.timeout()`` around it, a closed web request) closes that call's connection at once.
    Tasks of one event loop may share a client; it belongs to the loop of its first call.
    """

    __slots__ = ("_authorization", "_box")

    _default_sleep: ClassVar[Callable[[float], Any]] = asyncio.sleep

    def _open(self, session: aiohttp.ClientSession | None) -> aiohttp.ClientSession | None:
        _aiohttp()  # made without aiohttp: say which extra to install, now
        key = self._api_key
        self._authorization = _Headers() if key is None else _Headers(Authorization=f"Bearer {key}")
        box: object = session
        self._box = box if isinstance(box, _SessionBox) else _SessionBox(self._limits, session)
        return self._box.session

    def _session_to_share(self) -> object:
        return self._box

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The ``aiohttp.ClientSession`` every call goes through (``None`` until the first call, if the client
        makes it)."""
        return self._box.session

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close this client (idempotent); a closed client sends nothing (:class:`~chatdsl.ClientClosedError`).

        If it made its session, the session is closed too, with every connection — and every client
        derived from this one by :meth:`with_options`. It closes in the event loop of its first call.
        """
        if self._owns_session and not self.closed:
            self._box.check_loop(remember=False)  # elsewhere, aiohttp could not close the session
        if self._mark_closed():
            await self._box.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ calls

    async def chat_completion(
        self,
        request: ChatCompletionRequest,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
        drop_unsupported: bool | None = None,
    ) -> ChatCompletionResponse:
        """Send *request* and return the completion (see :meth:`chatdsl.Client.chat_completion`)."""
        return await self._send(
            self._plain_request(request),
            _read_completion,
            stream=False,
            timeout=timeout,
            max_retries=max_retries,
            headers=headers,
            drop_unsupported=drop_unsupported,
        )

    def chat_completion_stream(
        self,
        request: ChatCompletionRequest,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
        drop_unsupported: bool | None = None,
    ) -> _StreamOpener:
        """Send *request* with ``"stream": true``: ``async with client.chat_completion_stream(request) as stream``.

        The request is sent when the ``async with`` block is entered (or the result awaited: then
        close the stream with :meth:`AsyncChatCompletionStream.aclose`). Errors before the response
        headers raise there, after the retries; afterwards every failure ends the stream with an
        error chunk (see :meth:`chatdsl.Client.chat_completion_stream`).
        """
        request, expected, fold_usage = self._stream_request(request)

        async def start() -> AsyncChatCompletionStream:
            exchange = await self._send(
                request,
                _accept,
                stream=True,
                timeout=timeout,
                max_retries=max_retries,
                headers=headers,
                drop_unsupported=drop_unsupported,
            )
            return AsyncChatCompletionStream(exchange, expected_choices=expected, fold_usage=fold_usage)

        return _StreamOpener(start)

    async def run_tools(
        self,
        request: ChatCompletionRequest,
        tools: Tools,
        *,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        on_error: OnToolError = "report",
        on_text: Callable[[str], object] | None = None,
    ) -> ToolRunResult:
        """Send *request*, run every tool the model calls, send the results back, until a plain answer.

        The rules are those of :meth:`chatdsl.Client.run_tools`. Tools may be plain or ``async def``
        functions; the calls of one answer run concurrently (``async def`` tools as tasks, plain ones in
        worker threads: ``asyncio.to_thread``), and their results are sent in the calls' order. With
        ``on_error="raise"`` the first failure cancels the other calls. *on_text* may be ``async``.
        """
        loop = ToolLoop(request, tools, max_rounds=max_rounds, on_error=on_error, awaits=True)
        while True:
            if on_text is None:
                response = await self.chat_completion(loop.request)
            else:
                response = await self._streamed(loop.request, on_text)
            answer = loop.answer(response)
            if isinstance(answer, ToolRunResult):
                return answer
            loop.advance(answer, await _gather([_run_tool(loop, call) for call in answer]))

    def run_many(
        self,
        items: Iterable[RunItem] | AsyncIterable[RunItem],
        *,
        concurrency: int = 8,
        ordered: bool = True,
        max_retries: int | None = None,
        requests_per_second: float | None = None,
        tokens_per_minute: float | None = None,
        follow_rate_limits: bool = True,
    ) -> AsyncGenerator[RunResult, None]:
        """Send many requests, *concurrency* at a time: ``async for result in client.run_many(items)``.

        The rules of :meth:`chatdsl.Client.run_many` (order, keys, retries, the shared 429 pause, pacing,
        limits, one :class:`~chatdsl.RunResult` per item); *items* may also be an async iterable, read
        lazily. Closing the iterator (``aclose()``, ``contextlib.aclosing``, a cancelled task) cancels the
        calls in flight and closes their connections. Arguments are checked at the call.
        """
        from chatdsl.runs.apool import run_many

        return run_many(
            self,
            items,
            concurrency=concurrency,
            ordered=ordered,
            max_retries=max_retries,
            requests_per_second=requests_per_second,
            tokens_per_minute=tokens_per_minute,
            follow_rate_limits=follow_rate_limits,
        )

    async def _streamed(
        self, request: ChatCompletionRequest, on_text: Callable[[str], object]
    ) -> ChatCompletionResponse:
        """Stream *request*, hand every text delta to *on_text*, return the merged answer (a broken stream raises)."""
        async with self.chat_completion_stream(request) as stream:
            async for chunk in stream:
                if chunk.error is not None:
                    raise chunk.error
                text = chunk.text()
                if text:
                    shown = on_text(text)
                    if inspect.isawaitable(shown):
                        await shown
            return await stream.final_response()

    # ------------------------------------------------------------------ the exchange

    async def _send(
        self,
        request: ChatCompletionRequest,
        reader: Callable[[_Exchange], Awaitable[_T]],
        *,
        stream: bool,
        timeout: Timeout | float | None,
        max_retries: int | None,
        headers: Mapping[str, str] | None,
        drop_unsupported: bool | None = None,
    ) -> _T:
        """POST *request* with retries; once a success status arrives, return ``await reader(exchange)``
        (never sent again after that: see :meth:`chatdsl.Client._send`)."""
        aiohttp = _aiohttp()
        body, prepared, attempts = self._start(
            request,
            stream=stream,
            timeout=timeout,
            max_retries=max_retries,
            headers=headers,
            drop_unsupported=drop_unsupported,
        )
        send_headers = _Headers(prepared)
        send_headers.update(self._authorization)
        limits = attempts.limits
        url, log_url = self._url, self._log_url
        proxy = None if self._loopback else _proxy(url)  # the key stays on the machine: never through a proxy
        session = self._box.get()
        when = _loop_time(attempts.deadline)
        while True:
            error: APIError | APIConnectionError
            retry_after: float | None = None
            connect, read = attempts.begin(closed=self.closed)
            sent_at = time.perf_counter()
            scope = asyncio.timeout_at(when)
            try:
                async with scope:
                    response = await session.request(
                        "POST",
                        url,
                        data=body,
                        headers=send_headers,
                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read),
                        allow_redirects=False,
                        proxy=proxy,
                    )
            except (aiohttp.InvalidURL, ValueError) as exc:
                _scrub(exc)
                raise APIConnectionError(
                    f"POST {log_url}: the request could not be sent ({type(exc).__name__}); nothing was sent"
                ) from None
            except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
                error = _transport_error(exc, log_url, limits, deadline=scope.expired())
            else:
                if 200 <= response.status < 300:
                    exchange = _Exchange(response, sent_at, attempts.retries, when, limits, log_url, self._limits)
                    return await reader(exchange)
                error = await _status_error(response, when)
                retry_after = retry_after_of(response.headers)
                attempts.rejected(error, sent_at)
            waited = self._sleep(attempts.failed(error, retry_after))
            if inspect.isawaitable(waited):
                await waited


class _StreamOpener(Awaitable["AsyncChatCompletionStream"]):
    """What :meth:`AsyncClient.chat_completion_stream` returns: ``async with`` it (the stream is closed at
    the end of the block), or ``await`` it (close the stream yourself)."""

    __slots__ = ("_start", "_stream")

    def __init__(self, start: Callable[[], Awaitable[AsyncChatCompletionStream]]) -> None:
        self._start = start
        self._stream: AsyncChatCompletionStream | None = None

    def __await__(self) -> Generator[Any, None, AsyncChatCompletionStream]:
        return self._start().__await__()

    async def __aenter__(self) -> AsyncChatCompletionStream:
        self._stream = await self._start()
        return self._stream

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stream is not None:
            await self._stream.aclose()


async def _accept(exchange: _Exchange) -> _Exchange:
    """The reader of a stream: headers are in, the body is the stream's business (a JSON body is refused)."""
    response = exchange.response
    if is_json(response.headers):
        try:
            async with asyncio.timeout_at(exchange.deadline):
                raw = await _read_body(response, ERROR_BODY_LIMIT)
        except (_aiohttp().ClientError, OSError):
            raw = bytearray()
        finally:
            response.close()
        raise not_an_event_stream(response.status, response.headers, raw)
    logger.debug(
        "POST %s -> %d, streaming (headers after %.3f s, retries %d, request id %s)",
        exchange.url,
        response.status,
        time.perf_counter() - exchange.sent_at,
        exchange.retries,
        request_id_of(response.headers),
    )
    return exchange


async def _read_completion(exchange: _Exchange) -> ChatCompletionResponse:
    """Read and parse a success body (a transport failure: ``response_started=True``, not sent again)."""
    response = exchange.response
    limit = exchange.limits.max_response_size
    too_large = announced_too_large(response.headers, limit)
    scope = asyncio.timeout_at(exchange.deadline)
    try:
        async with scope:
            body = bytearray() if too_large else await _read_body(response, read_limit(limit))
    except (_aiohttp().ClientError, OSError) as exc:
        _scrub(exc)
        if scope.expired():
            raise body_deadline_error(exchange.url, exchange.timeout) from exc
        raise _transport_error(exc, exchange.url, exchange.timeout, deadline=False, response_started=True) from exc
    finally:
        if too_large or not response.content.at_eof():
            response.close()
        else:
            response.release()
    return completion(
        response.status,
        response.headers,
        body,
        limit=limit,
        too_large=too_large,
        url=exchange.url,
        sent_at=exchange.sent_at,
        retries=exchange.retries,
    )


async def _status_error(response: aiohttp.ClientResponse, when: float | None) -> APIError:
    """Return the exception for an error status (its body read up to 1 MiB, until the total deadline)."""
    try:
        async with asyncio.timeout_at(when):
            raw = await _read_body(response, ERROR_BODY_LIMIT)
    except (_aiohttp().ClientError, OSError):
        raw = bytearray()
    finally:
        response.close()
    return api_error(response.status, response.reason, response.headers, raw)


async def _gather(steps: list[Awaitable[str]]) -> list[str]:
    """Await *steps* concurrently, in order; if one raises, cancel the others and raise it."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _run_tool(loop: ToolLoop, call: ToolCall) -> str:
    """Run one tool call (an ``async def`` tool awaited, a plain one in a worker thread); return its message content."""
    step = loop.prepare(call)
    if isinstance(step, str):
        return step
    function, args, kwargs = step
    try:
        if inspect.iscoroutinefunction(function):
            value = await function(*args, **kwargs)
        else:
            value = await asyncio.to_thread(function, *args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
    except Exception as exc:
        return loop.failed(call, exc)
    return loop.result(call, value)


# ------------------------------------------------------------------------------------ streaming


class AsyncChatCompletionStream(StreamFacts, AsyncIterator[CompletionChunk]):
    """The chunks of a streamed completion, for ``async for`` (see :class:`~chatdsl.ChatCompletionStream`).

    The same chunks, latencies, ``is_last_chunk``, error chunk and :class:`~chatdsl.StreamError`
    semantics as the sync stream; :meth:`final_response` and :meth:`aclose` are awaited. Leaving the
    ``async with`` block closes it (a stream closed before its end gets ``StreamError("the stream was
    closed by the caller before it ended")``). Cancelling the task iterating it closes the
    connection at once; the cancellation propagates, and the stream's :attr:`error` says it was
    interrupted. One task iterates a stream at a time.
    """

    def __init__(self, exchange: _Exchange, *, expected_choices: int = 1, fold_usage: bool = False) -> None:
        response = self._response = exchange.response
        self._take_facts(response.status, response.headers, exchange.retries)
        self._when = exchange.deadline
        self._content = response.content
        self._released = False
        self._reuse = False  # [DONE] came: drain the end of the body and pool the connection
        self._closing = False
        self._state = StreamState(
            url=exchange.url,
            sent_at=exchange.sent_at,
            timeout=exchange.timeout,
            limits=exchange.limits,
            expected=expected_choices,
            request_id=self.request_id,
            release=self._release,
        )
        self._fold = UsageFold() if fold_usage else None
        self._pending: Iterator[CompletionChunk] = iter(())
        weakref.finalize(self, response.close).atexit = False

    # ------------------------------------------------------------------ iteration

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> CompletionChunk:
        state = self._state
        while True:
            chunk = next(self._pending, None)
            if chunk is not None:
                if chunk.error is not None:
                    await asyncio.sleep(0)  # the transport closes the socket on the loop's next turn: let it
                return chunk
            if state.over or self._closing:
                if self._fold is not None:
                    held = self._fold.flush()
                    if held is not None:
                        return held
                if self._reuse:
                    await self._drain()
                chunk = state.unreported()
                if chunk is None:
                    raise StopAsyncIteration
                return chunk
            await self._read()

    async def _read(self) -> None:
        """Read the next piece of the body and queue its chunks (an error chunk if the read failed)."""
        state = self._state
        scope = None
        try:
            if self._when is None:
                data = await self._content.readany()
            else:
                async with asyncio.timeout_at(self._when) as scope:
                    data = await self._content.readany()
        except (_aiohttp().ClientError, OSError) as exc:  # TimeoutError is an OSError
            _scrub(exc)
            if scope is not None and scope.expired():
                kind: StreamFailure = "deadline"
            else:
                kind = "stall" if isinstance(exc, TimeoutError) else "broken"
            self._hand(self._failed(_salvage(self._content), state.read_failure(kind, _reason(exc), exc)))
            return
        except BaseException as exc:  # a cancellation, or any exception while reading: the stream ends here
            state.interrupted(exc)
            self._release(False)
            raise
        if not data:
            self._hand((state.failure(state.end_failure(deadline=False)),))
            return
        self._hand(state.feed(data, time.perf_counter()))

    def _failed(self, arrived: bytes, error: StreamError) -> Iterator[CompletionChunk]:
        """The chunks of what *arrived* before a read failed, then the error chunk (unless they ended the stream)."""
        state = self._state
        if arrived:
            yield from state.feed(arrived, time.perf_counter())
        if not state.over:
            yield state.failure(error)

    def _hand(self, chunks: Iterable[CompletionChunk]) -> None:
        self._pending = iter(chunks) if self._fold is None else self._fold.apply(chunks)

    def _release(self, reuse: bool) -> None:
        """Free the connection: at ``[DONE]`` (*reuse*) once the body's end is read (:meth:`_drain`), else now."""
        if self._released:
            return
        if reuse:
            self._reuse = True
            return
        self._released = True
        self._response.close()

    async def _drain(self) -> None:
        """Read the end of a finished stream's body if it comes within ``_DRAIN_WAIT``, then pool the connection."""
        self._reuse = False
        if self._released:
            return
        response = self._response
        try:
            async with asyncio.timeout(_DRAIN_WAIT):
                while await self._content.readany():
                    pass
        except (_aiohttp().ClientError, OSError):
            pass
        finally:
            self._released = True
            if self._content.at_eof():
                response.release()
            else:
                response.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading and release the connection (idempotent).

        A stream closed before its end gets ``StreamError("the stream was closed by the caller before
        it ended")`` as its :attr:`error`; the iteration hands it over in one last error chunk.
        """
        if self._closing:
            return
        self._closing = True
        if self._reuse:
            await self._drain()
        self._release(False)
        self._state.closed_early()
        await asyncio.sleep(0)  # the transport closes the socket on the loop's next turn: closed when this returns

    @property
    def closed(self) -> bool:
        """Whether the stream is closed (by :meth:`aclose`, or by reaching its end or an error)."""
        return self._closing or self._released

    async def final_response(self, *, partial: bool = False) -> ChatCompletionResponse:
        """Return the chunks merged into one response (see :meth:`chatdsl.ChatCompletionStream.final_response`)."""
        return self._final(partial)

    def __repr__(self) -> str:
        return self._describe("closed" if self.closed else "open")
