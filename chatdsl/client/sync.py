"""The HTTP client: :class:`Client`, :class:`ChatCompletionStream`, timeouts, retries, error mapping.

One ``requests.Session`` carries every call (connection reuse). A call is validated, encoded by
the converter, POSTed, retried on transient failures, and its answer parsed by the converter.

Failures become exceptions of the tree in ``_errors``::

    status 400/401/403/404/422/429/5xx/other -> BadRequestError ... InternalServerError / APIError
    a 2xx whose body is not a completion      -> MalformedResponseError
    refused, reset, DNS, TLS, cut body        -> APIConnectionError   (chained from the requests error,
                                                 its frames' locals cleared: they hold the headers)
    a request requests refuses to send        -> APIConnectionError   (not retried; its text not shown)
    connect, read or total timeout            -> APITimeoutError
    a call on a closed client                 -> ClientClosedError
    anything after a stream began             -> a last chunk whose ``error`` is a StreamError

Nothing is sent again once a success status arrived (a cut or stalled body raises with
``response_started=True``): the server has accepted the request and may have billed the answer.

The API key lives only in the ``Authorization`` header (set by a ``requests`` auth object, so a
``.netrc`` file cannot replace it); no repr, log line or exception text contains it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, ClassVar, Final, Self, TypeVar

import requests

from chatdsl._errors import (
    APIConnectionError,
    APIError,
    StreamError,
    ValidationError,
)
from chatdsl.client.base import BaseClient
from chatdsl.client.batch import BatchMethods
from chatdsl.client.config import (
    API_KEY_ENV as API_KEY_ENV,  # re-exported: it was defined here before the split
)
from chatdsl.client.config import (
    Limits,
    RetryPolicy,
    Timeout,
)
from chatdsl.client.deadline import Watchdog
from chatdsl.client.loop import DEFAULT_MAX_ROUNDS
from chatdsl.client.retry import Attempts
from chatdsl.client.status import (
    ERROR_BODY_LIMIT,
    announced_too_large,
    api_error,
    completion,
    is_json,
    json_value,
    length_mismatch,
    not_an_event_stream,
    read_limit,
    request_id_of,
    retry_after_of,
)
from chatdsl.client.stream import CLOSED_BY_CALLER, StreamFacts, StreamState, fold_trailing_usage
from chatdsl.client.transport import (
    NOT_SENT,
    READ_ERRORS,
    READ_SIZE,
    BearerAuth,
    Exchange,
    NoAuth,
    after_release,
    close_pools,
    close_response,
    copy_body,
    current_attempt,
    drain,
    new_session,
    read_body,
    read_failure,
    read_released,
    scrub,
    surely_unsent,
    transport_error,
)
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import ChatCompletionResponse, CompletionChunk

if TYPE_CHECKING:
    from collections.abc import Iterable

    from chatdsl.client.loop import OnToolError, ToolRunResult, Tools
    from chatdsl.runs.core import RunResult
    from chatdsl.runs.pool import RunItem

__all__ = ["ChatCompletionStream", "Client", "Limits", "RetryPolicy", "Timeout"]

logger: Final = logging.getLogger("chatdsl")

_T = TypeVar("_T")


# ------------------------------------------------------------------------------------ the client


class Client(BaseClient[requests.Session], BatchMethods):
    """A client of the chat-completions endpoint, around one ``requests.Session``.

    ``api_key`` falls back to the ``MISTRAL_API_KEY`` environment variable (for any ``base_url``: a
    proxy in front of Mistral's API takes the same key); a missing, empty or malformed key is a
    :class:`~chatdsl.ValidationError` here, before any I/O. ``base_url`` must be https, or http to a
    loopback host (``allow_insecure_http=True`` permits plain http elsewhere), and may not hold
    ``user:password@`` credentials (pass those with ``headers`` or ``session``).
    ``timeout`` is a :class:`Timeout` or a number of seconds (connect and read); ``max_retries``
    overrides the ``retry`` policy's count. ``session`` is used as it is and never closed by the
    client (else the client makes one and closes it in :meth:`close`). ``headers`` are added to
    every request. ``limits`` bounds response and event sizes and the connection pool (:class:`Limits`).

    ``dialect`` (a :class:`~chatdsl.Dialect` or its name) picks the server's wire format: ``"mistral"``
    (the default) or ``"openai"`` for OpenAI and the servers that copy its API (vLLM, llama.cpp's
    server, Ollama, LM Studio). With ``"openai"`` the default ``base_url`` is
    ``https://api.openai.com``; the key falls back to ``OPENAI_API_KEY`` only when ``base_url`` is
    OpenAI's own host (which needs one: none there is a :class:`~chatdsl.ValidationError`, as for
    Mistral) — any other server gets a key only when you pass ``api_key`` and none otherwise (no
    ``Authorization`` header; ``api_key=""`` is "no key" too), and a
    request field OpenAI has no equivalent for is a :class:`~chatdsl.ValidationError` before sending
    (``top_k``, ``min_tokens`` and ``repetition_penalty`` only when the host is OpenAI's own; other
    servers take them) — unless ``drop_unsupported=True`` (here or per call), which leaves such fields out and logs
    them at INFO. Either way the endpoint is ``{base_url}/v1/chat/completions``.

    Extra ``headers`` are checked here (and per call): a name must be a token, a value one line of
    visible characters — a value with a trailing newline (a token read from a file) is a
    :class:`~chatdsl.ValidationError` that does not show it. A loopback ``base_url`` (``localhost``,
    ``127.0.0.1``, ``::1``, or a ``*.localhost`` name that resolves to loopback addresses only) is
    never reached through a proxy (``http_proxy`` and the like are ignored for it): the key stays on
    the machine. A client cannot be pickled or copied (a ``TypeError``): it holds the key.

    Mistral's Files and Batch APIs are methods too (``submit_batch``, ``wait_batch_job``,
    ``batch_results``, ``upload_file``, ...: :class:`~chatdsl.client.batch.BatchMethods`), sent
    with the same key, retries, timeouts and error mapping.

    Use it as a context manager, or call :meth:`close`; a closed client raises
    :class:`~chatdsl.ClientClosedError`. Threads may share a client: it holds no per-call state
    (the auth and headers go with each call), and calls from 16 threads at once are tested. It
    relies on ``requests.Session``, which ``requests`` does not document as thread-safe; chatdsl
    changes nothing on the session after creating it, and the session it creates accepts no
    cookies (the API uses none), so no state passes from one call to another. A ``session`` you
    pass is used as it is, cookie jar included.
    """

    __slots__ = ("_auth",)

    _default_sleep: ClassVar[Callable[[float], Any]] = time.sleep

    def _open(self, session: requests.Session | None) -> requests.Session:
        self._auth: requests.auth.AuthBase = NoAuth() if self._api_key is None else BearerAuth(self._api_key)
        return new_session(self._limits) if session is None else session

    @property
    def session(self) -> requests.Session:
        """The ``requests.Session`` every call goes through."""
        return self._session

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close this client (idempotent); a closed client sends nothing (:class:`~chatdsl.ClientClosedError`).

        If it created its session, the session is closed too — and with it every client derived
        from this one by :meth:`with_options`. Its pooled connections are closed at once; a call
        still running closes its own when it ends (so once the calls in flight end, no connection
        stays open), and sends no retry.
        """
        if self._mark_closed():
            close_pools(self._session)
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ calls

    def chat_completion(
        self,
        request: ChatCompletionRequest,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
        drop_unsupported: bool | None = None,
    ) -> ChatCompletionResponse:
        """Send *request* and return the completion (the Go client's ``ChatCompletion``).

        The request is validated first (:meth:`ChatCompletionRequest.validate`) and spelled in the
        client's dialect; a request with ``stream=True`` is sent with ``"stream": false``.
        ``timeout``, ``max_retries``, ``headers`` and ``drop_unsupported`` override the client's for
        this call. The response carries ``latency`` (the
        successful attempt: request sent to body parsed), ``request_id``, ``rate_limit`` and
        ``retries_taken``. Raises an :class:`~chatdsl.APIError` subclass for an error status,
        :class:`~chatdsl.MalformedResponseError` for a success body that is not a completion, and
        :class:`~chatdsl.APIConnectionError`/:class:`~chatdsl.APITimeoutError` when no answer came.
        """
        return self._send(
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
    ) -> ChatCompletionStream:
        """Send *request* with ``"stream": true`` and return the stream of its chunks.

        Errors before the response headers (an error status, no connection) raise here, after the
        retries; once the headers arrived nothing is retried and every failure ends the stream with
        an error chunk (see :class:`ChatCompletionStream`). With the ``"openai"`` dialect the
        request asks for usage (``stream_options.include_usage``) and the stream folds the trailing
        usage-only chunk into its last chunk.
        """
        request, expected, fold_usage = self._stream_request(request)
        exchange = self._send(
            request,
            _accept,
            stream=True,
            timeout=timeout,
            max_retries=max_retries,
            headers=headers,
            drop_unsupported=drop_unsupported,
        )
        return ChatCompletionStream(exchange, expected_choices=expected, fold_usage=fold_usage)

    def run_tools(
        self,
        request: ChatCompletionRequest,
        tools: Tools,
        *,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        on_error: OnToolError = "report",
        on_text: Callable[[str], object] | None = None,
    ) -> ToolRunResult:
        """Send *request*, run every tool the model calls, send the results back, until a plain answer.

        *tools* maps names to callables, or lists ``@chatdsl.tool`` functions (or annotated plain
        ones); when the request offers no tools yet, their definitions are added. Each answer's
        tool calls (all of them, in order) are run with their arguments structured to the
        parameters' annotations; the assistant message and one tool message per call (matching
        ``tool_call_id``, with ``name``; a result that is not a string is sent as JSON) are
        appended, and the conversation is sent again. A forced tool choice holds for the first
        request only (then ``auto``). A tool that raises, an unknown tool name or arguments that do
        not fit are reported to the model as ``{"error": "..."}`` (``on_error="report"``) or raised
        (``on_error="raise"``). After *max_rounds* requests that all called tools,
        :class:`~chatdsl.ToolLoopError` carries the conversation so far. With *on_text*, each
        request is streamed and every text delta handed to it. Returns a
        :class:`~chatdsl.ToolRunResult` (the final response and the whole transcript).
        """
        from chatdsl.client.loop import run_tools, streaming_send

        send = self.chat_completion if on_text is None else streaming_send(self.chat_completion_stream, on_text)
        return run_tools(send, request, tools, max_rounds=max_rounds, on_error=on_error)

    # ------------------------------------------------------------------ files and batch jobs

    # The methods are BatchMethods' (chatdsl/client/batch.py); these two move their bytes.

    def _api_json(
        self,
        method: str,
        path: str,
        *,
        body: bytes | IO[bytes] | None = None,
        content_type: str | None = None,
        params: Mapping[str, Any] | None = None,
        unsure: str | None = None,
    ) -> tuple[Any, str | None]:
        """Send a Files or Batch API call; return the answer's JSON value and request id.

        With *unsure* the call is not idempotent (it creates something): see ``BaseClient._start_call``."""
        url, send_headers, attempts = self._start_call(
            method,
            path,
            content_type=content_type,
            accept="application/json",
            idempotent=unsure is None,
            unsure=unsure or "",
        )
        return self._exchange(url, body, send_headers, attempts, _read_json, stream=False, params=params)

    def _api_download(self, path: str, write: Callable[[bytes], object]) -> int:
        """Download *path*, handing each piece to *write* as it arrives; return the byte count."""
        url, send_headers, attempts = self._start_call(
            "GET", path, content_type=None, accept="application/octet-stream"
        )
        return self._exchange(url, None, send_headers, attempts, _read_into(write), stream=False)

    # ------------------------------------------------------------------ the exchange

    def _send(
        self,
        request: ChatCompletionRequest,
        reader: Callable[[Exchange], _T],
        *,
        stream: bool,
        timeout: Timeout | float | None,
        max_retries: int | None,
        headers: Mapping[str, str] | None,
        drop_unsupported: bool | None = None,
    ) -> _T:
        """POST *request* with retries; once a success status arrives, return ``reader(exchange)``.

        What *reader* raises is raised as it is: once a success status arrived the server has
        accepted the request (and may have generated and billed the answer), so it is never sent
        again. Before that — no connection, a timeout before any response byte, a retryable
        status — the request is sent again; a request whose answer is slow to start (longer than
        ``timeout.read``) may thus be generated more than once.
        """
        body, send_headers, attempts = self._start(
            request,
            stream=stream,
            timeout=timeout,
            max_retries=max_retries,
            headers=headers,
            drop_unsupported=drop_unsupported,
        )
        return self._exchange(self._url, body, send_headers, attempts, reader, stream=stream)

    def _exchange(
        self,
        url: str,
        body: bytes | IO[bytes] | None,
        send_headers: dict[str, str],
        attempts: Attempts,
        reader: Callable[[Exchange], _T],
        *,
        stream: bool,
        params: Mapping[str, Any] | None = None,
    ) -> _T:
        """Send ``attempts.method`` to *url* with *body* until *attempts* gives up (see :meth:`_send`); once a
        success status arrives, return ``reader(exchange)``. A file-object *body* is rewound before each attempt."""
        session = self._session
        method, log_url = attempts.method, attempts.url
        rewind = getattr(body, "seek", None)
        try:  # before anything is sent: a failure here is never retried (nor does it show what it refused)
            prepared = session.prepare_request(
                requests.Request(method, url, data=body, params=params, headers=send_headers, auth=self._auth)
            )
            settings = session.merge_environment_settings(url, {}, True, None, None)
        except (requests.RequestException, ValueError, TypeError) as exc:
            raise ValidationError(
                "request", f"could not be prepared ({type(exc).__name__}); nothing was sent"
            ) from None
        if self._loopback:
            settings["proxies"] = {}  # the key stays on the machine: never through a proxy
        limits, deadline = attempts.limits, attempts.deadline
        watchdog = Watchdog(deadline)
        state = self._shared
        try:
            while True:
                error: APIError | APIConnectionError
                retry_after: float | None = None
                unsent = False
                connect, read = attempts.begin(closed=self.closed)
                if rewind is not None:
                    rewind(0)
                sent_at = time.perf_counter()
                if deadline is not None:
                    current_attempt.watchdog = watchdog
                try:
                    response = session.send(prepared, timeout=(connect, read), allow_redirects=False, **settings)
                except NOT_SENT as exc:
                    scrub(exc)
                    raise APIConnectionError(
                        f"{method} {log_url}: the request could not be sent ({type(exc).__name__}); nothing was sent"
                    ) from None
                except READ_ERRORS as exc:
                    watchdog.watch(None)
                    unsent = surely_unsent(exc)
                    error = transport_error(exc, log_url, limits, deadline, fired=watchdog.fired, method=method)
                else:
                    watchdog.watch(response.raw.shutdown)
                    if watchdog.fired:  # the headers came as the deadline passed: too late all the same
                        close_response(response, watchdog)
                        raise attempts.late_headers()
                    if 200 <= response.status_code < 300:
                        exchange = Exchange(
                            response,
                            sent_at,
                            attempts.retries,
                            deadline,
                            timeout=limits,
                            url=log_url,
                            limits=self._limits,
                            watchdog=watchdog,
                            state=state,
                            method=method,
                        )
                        try:
                            return reader(exchange)
                        except APIConnectionError as exc:  # the body broke off after a success status
                            if attempts.idempotent:
                                raise
                            raise attempts.maybe_acted(exc) from exc
                    error = _status_error(response, watchdog)
                    retry_after = retry_after_of(response.headers)
                    attempts.rejected(error, sent_at)
                finally:
                    if deadline is not None:
                        current_attempt.watchdog = None
                self._sleep(attempts.failed(error, retry_after, unsent=unsent))
        except BaseException:
            watchdog.cancel()
            raise
        finally:
            if not stream:
                watchdog.cancel()
            after_release(state)

    # ------------------------------------------------------------------ runs

    def run_many(
        self,
        items: Iterable[RunItem],
        *,
        concurrency: int = 8,
        ordered: bool = True,
        max_retries: int | None = None,
        requests_per_second: float | None = None,
        tokens_per_minute: float | None = None,
        follow_rate_limits: bool = True,
    ) -> Iterator[RunResult]:
        """Send many requests, *concurrency* at a time, and yield one :class:`~chatdsl.RunResult` per item.

        *items* are requests or ``(key, request)`` pairs (``template.render_many(...)`` makes them),
        read lazily: memory follows *concurrency*, not the input. Results come in input order, or as
        they complete with ``ordered=False``; a failed item (after *max_retries* retries, default the
        client's) is a result with ``error`` set, and the run goes on. A 429 pauses the whole run for its
        ``Retry-After``; the ``x-ratelimit-*`` headers pace it (``follow_rate_limits``); optional
        client-side limits: *requests_per_second*, *tokens_per_minute*. See :mod:`chatdsl.runs.core`.
        Make the client with ``limits=Limits(pool_maxsize=...)`` at least *concurrency* (a warning says so).
        """
        from chatdsl.runs.pool import run_many

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


def _accept(exchange: Exchange) -> Exchange:
    """The reader of a stream: headers are in, the body is the stream's business.

    A JSON body instead of an event stream (a server or proxy that ignored ``"stream": true`` or
    answered an error with a success status) is a :class:`MalformedResponseError` at once.
    """
    response = exchange.response
    if is_json(response.headers):
        try:
            raw = read_body(response, ERROR_BODY_LIMIT)
        except READ_ERRORS:
            raw = bytearray()
        finally:
            response.close()
        raise not_an_event_stream(response.status_code, response.headers, raw)
    logger.debug(
        "POST %s -> %d, streaming (headers after %.3f s, retries %d, request id %s)",
        exchange.url,
        response.status_code,
        time.perf_counter() - exchange.sent_at,
        exchange.retries,
        request_id_of(response.headers),
    )
    return exchange


def _read_completion(exchange: Exchange) -> ChatCompletionResponse:
    """Read and parse a success body; a transport failure raises ``APIConnectionError`` with
    ``response_started=True`` (not retried: the server already generated the answer)."""
    body, too_large = _success_body(exchange)
    response = exchange.response
    return completion(
        response.status_code,
        response.headers,
        body,
        limit=exchange.limits.max_response_size,
        too_large=too_large,
        url=exchange.url,
        sent_at=exchange.sent_at,
        retries=exchange.retries,
    )


def _read_json(exchange: Exchange) -> tuple[Any, str | None]:
    """Read a success body (as :func:`_read_completion` does); return its JSON value and the request id."""
    body, too_large = _success_body(exchange)
    headers = exchange.response.headers
    value = json_value(
        exchange.response.status_code, headers, body, limit=exchange.limits.max_response_size, too_large=too_large
    )
    return value, request_id_of(headers)


def _read_into(write: Callable[[bytes], object]) -> Callable[[Exchange], int]:
    """Return the reader of a download: each piece of the body handed to *write* as it arrives; the byte count."""

    def read(exchange: Exchange) -> int:
        size = read_released(exchange, lambda response: copy_body(response, write))
        error = length_mismatch(exchange.method, exchange.url, size, exchange.response.headers)
        if error is not None:
            raise error
        return size

    return read


def _success_body(exchange: Exchange) -> tuple[bytes | bytearray, bool]:
    """Read a success body up to one byte past ``max_response_size`` (nothing when its announced length is past
    it already); return it and whether its announced length was too large."""
    limit = exchange.limits.max_response_size
    too_large = announced_too_large(exchange.response.headers, limit)
    body = read_released(exchange, lambda response: b"" if too_large else read_body(response, read_limit(limit)))
    return body, too_large


def _status_error(response: requests.Response, watchdog: Watchdog) -> APIError:
    """Return the exception for an error status, with the server's message, body and request id.

    The body is read up to 1 MiB and until the total deadline (*watchdog*); what could not be read is left out.
    """
    watchdog.watch(response.raw.shutdown)
    try:
        raw = read_body(response, ERROR_BODY_LIMIT)
    except READ_ERRORS:
        raw = bytearray()
    finally:
        close_response(response, watchdog)
    return api_error(response.status_code, response.reason, response.headers, raw)


# ------------------------------------------------------------------------------------ streaming


class ChatCompletionStream(StreamFacts, Iterator[CompletionChunk]):
    """The chunks of a streamed completion, handed over as soon as each event arrives.

    Iterate it (``for chunk in stream``, or ``next(stream)``) and close it: use ``with`` or call
    :meth:`close`. ``iter(stream)`` is the stream itself, so ``next(iter(stream))``,
    ``itertools.islice(stream, 2)`` or ``zip`` take chunks and leave the rest to be read; for the
    same reason breaking out of a ``for`` loop does not close the stream — leaving the ``with``
    block does. Closing releases the connection; a stream read to ``[DONE]`` returns it to the pool
    on its own. A stream dropped unclosed is closed when it is garbage-collected (in CPython: as soon
    as its last reference goes).

    ``is_last_chunk`` is set on the chunk with which every expected choice (``n``, default 1) has a
    finish reason, or whose event is followed by ``[DONE]`` in the same read, and on any chunk after
    it; if ``[DONE]`` comes and no chunk was marked, a final chunk with no choices is added. So the
    last chunk of every stream has ``is_last_chunk``, and no event ever waits for the next.

    Any failure after the headers arrived — a cut connection, a read timeout (stall), the total
    deadline, a malformed event, an error event, the end without ``[DONE]`` — ends the iteration
    with one more chunk: no choices, ``is_last_chunk=True`` and ``error`` a
    :class:`~chatdsl.StreamError` chained (``__cause__``) to what happened. Nothing is raised.
    Closing a stream before its end is such a failure too: ``StreamError("the stream was closed by
    the caller before it ended")``. :meth:`close` may be called from any thread: a read blocked in
    another thread returns at once, and that thread's iteration ends with the error chunk.

    An exception raised while a read is blocked (``KeyboardInterrupt``, say) propagates, and ends the
    stream: its :attr:`error` is ``StreamError("the stream was interrupted by KeyboardInterrupt …")``,
    handed over in one error chunk by the next ``next()``, and :meth:`final_response` raises it.
    Several threads may iterate one stream: each chunk goes to exactly one of them, in order.

    ``chunk_latency`` is the time from the previous chunk's arrival (the first: from the request
    being sent), ``total_latency`` from the request being sent; both measured on arrival.

    With ``fold_usage`` (the ``"openai"`` dialect, whose servers send the usage in one more chunk
    without choices after the last one) the chunk that finishes the last choice is handed over
    together with that usage chunk: its ``usage`` is set, it keeps ``is_last_chunk``, its latencies
    run to the usage chunk's arrival, and the usage chunk itself is not handed over. So the last
    chunk carries the usage in both dialects. (That one chunk waits for the next event — servers
    send the two back to back.)
    """

    def __init__(self, exchange: Exchange, *, expected_choices: int = 1, fold_usage: bool = False) -> None:
        response = exchange.response
        self._take_facts(response.status_code, response.headers, exchange.retries)
        # All reading state lives in the reader, which never refers back to the stream: dropping
        # the stream drops its last reference and the finalizer releases the connection.
        reader = self._reader = _Reader(exchange, expected_choices, self.request_id, fold_usage=fold_usage)
        self._state = reader.state
        self._chunks = reader.chunks
        weakref.finalize(self, reader.close).atexit = False

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> CompletionChunk:
        try:
            chunk = next(self._chunks, None)
        except ValueError:  # "generator already executing": another thread is reading, or close() is ending it
            chunk = self._reader.next_in_turn()
        if chunk is None:
            chunk = self._reader.closed_chunk()
            if chunk is None:
                raise StopIteration
        return chunk

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and release the connection (idempotent; callable from any thread).

        A stream closed before its end gets ``StreamError("the stream was closed by the caller
        before it ended")`` as its :attr:`error`; the iteration hands it over in one last error
        chunk — in the thread blocked in a read, if one is (that read returns at once).
        """
        self._reader.close()

    @property
    def closed(self) -> bool:
        """Whether the stream is closed (by :meth:`close`, or by reaching its end or an error)."""
        reader = self._reader
        return reader.closing or reader.released

    def final_response(self, *, partial: bool = False) -> ChatCompletionResponse:
        """Return the chunks merged into one response.

        Raises the stream's :attr:`error` if it failed (or was closed before its end), and
        ``StreamError("the stream is not complete …")`` if it was not read to its end yet — an
        answer is complete once ``[DONE]`` came or every expected choice has a finish reason. With
        ``partial=True`` it returns what was received so far instead, whatever happened.

        Content is concatenated per choice (text parts merged when the content is a list of parts),
        tool-call deltas are merged by their ``index`` (argument strings concatenated, ``id`` and
        name from the first delta that has them; a delta with another ``id`` under the same index
        starts a new call; the ``index`` is kept), refusal pieces are concatenated, ``logprobs``
        lists concatenated, unknown keys (``extra``) merged, the latest value winning; finish
        reasons are kept, and the usage (``None`` when no chunk carried one); ``id``, ``model`` and
        ``created`` come from the first chunks that have them. ``latency`` is the ``total_latency``
        of the last chunk received. The merge is linear in the number of chunks.
        """
        return self._final(partial)

    def __repr__(self) -> str:
        return self._describe("closed" if self.closed else "open")


class _Reader:
    """The reading side of one :class:`ChatCompletionStream`: the response, and the :class:`StreamState` it feeds.

    ``chunks`` is the generator of chunks. ``lock`` serializes :meth:`close` and :meth:`release`
    (never taken per event); ``closing`` is read once per socket read.
    """

    __slots__ = ("chunks", "closing", "exchange", "lock", "released", "response", "state", "turn", "watchdog")

    def __init__(self, exchange: Exchange, expected: int, request_id: str | None, *, fold_usage: bool) -> None:
        self.exchange = exchange
        self.response = exchange.response
        self.lock = threading.RLock()
        self.turn = threading.Lock()  # queues the threads waiting for another one's read (next_in_turn)
        self.closing = False
        self.released = False
        self.watchdog = exchange.watchdog
        self.state = StreamState(
            url=exchange.url,
            sent_at=exchange.sent_at,
            timeout=exchange.timeout,
            limits=exchange.limits,
            expected=expected,
            request_id=request_id,
            release=self.release,
        )
        self.chunks: Generator[CompletionChunk] = (
            fold_trailing_usage(self.generate()) if fold_usage else self.generate()
        )

    def close(self) -> None:
        with self.lock:
            if self.closing:
                return
            self.closing = True
            try:
                self.chunks.close()
            except ValueError:  # another thread is reading: wake it; it ends with the error chunk and releases
                if not self.released:
                    try:
                        self.response.raw.shutdown()
                    except Exception:  # released meanwhile: nothing to wake
                        logger.debug("closing a stream: the response was already released")
                return
            self.release()
            self.state.closed_early()

    def next_in_turn(self) -> CompletionChunk | None:
        """The next chunk, for a thread that found another one reading: wait for that read to end
        (polling — threads sharing a stream are rare, and the common path pays nothing for them)."""
        wait = 0.0005
        with self.turn:  # the waiting threads queue here; the reading one holds nothing
            while True:
                if self.closing:
                    with self.lock:  # close() is ending the chunks: wait until it is done
                        return None
                try:
                    return next(self.chunks, None)
                except ValueError:  # still busy
                    time.sleep(wait)
                    wait = min(wait * 2, 0.01)

    def closed_chunk(self) -> CompletionChunk | None:
        """Once the chunks are exhausted: the error chunk of a stream closed before its end, handed over once."""
        with self.lock:
            return self.state.unreported()

    def release(self, reuse: bool = False) -> None:
        """Free the connection (idempotent): back to the pool if the body ends at once, else closed."""
        with self.lock:
            if self.released:
                return
            self.released = True
        fired = self.watchdog.cancel()
        response = self.response
        if reuse and not fired:
            drain(response)
        close_response(response, self.watchdog)
        after_release(self.exchange.state)

    def interrupted(self) -> bool:
        """Whether :meth:`close` was called while this thread was reading (it shut the socket down)."""
        return self.closing

    def generate(self) -> Generator[CompletionChunk]:
        state = self.state
        raw = self.response.raw
        watchdog = self.watchdog
        try:
            while not self.closing:
                try:
                    data = raw.read1(READ_SIZE, decode_content=True)
                except READ_ERRORS as exc:
                    if self.interrupted():
                        break
                    kind, reason = read_failure(exc, fired=watchdog.fired)
                    yield state.failure(state.read_failure(kind, reason, exc))
                    return
                received = time.perf_counter()
                if watchdog.fired:  # what arrived as the deadline passed comes too late
                    yield state.failure(state.end_failure(deadline=True))
                    return
                if not data:
                    if self.interrupted():
                        break
                    yield state.failure(state.end_failure(deadline=False))
                    return
                yield from state.feed(data, received)
                if state.over:
                    return
            # close() was called from another thread while this one was reading
            if not state.complete():
                yield state.failure(StreamError(CLOSED_BY_CALLER))
        except GeneratorExit:
            raise
        except BaseException as exc:  # KeyboardInterrupt, or any exception while reading: the stream ends here
            state.interrupted(exc)
            raise
        finally:
            self.release()
