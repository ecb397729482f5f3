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

import contextlib
import http.client
import http.cookiejar
import json
import logging
import math
import os
import re
import socket
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar
from urllib.parse import urlsplit

import attrs
import requests
import urllib3

from chatdsl import _json
from chatdsl._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ChatDSLError,
    ClientClosedError,
    MalformedResponseError,
    StreamError,
    ValidationError,
)
from chatdsl._json import dumps_bytes
from chatdsl._types import UNSET, UnsetType
from chatdsl.client.config import (
    API_KEY_ENV as API_KEY_ENV,  # re-exported: it was defined here before the split
)
from chatdsl.client.config import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    Limits,
    RetryPolicy,
    Timeout,
    _check_base_url,
    _check_headers,
    _check_key,
    _flag,
    _is_loopback,
    _is_openai_service,
    _redact_url,
    env_key_allowed,
)
from chatdsl.client.deadline import _Watchdog
from chatdsl.client.loop import DEFAULT_MAX_ROUNDS
from chatdsl.client.merge import Merger
from chatdsl.client.retry import attempt_timeouts, retry_delay, retryable_status
from chatdsl.client.status import _lower, _request_id, _retry_after, api_error
from chatdsl.client.stream import (
    _CLOSED_BY_CALLER,
    _ZERO,
    _elapsed,
    _fold_usage,
    _set,
    _set_chunk_latency,
    _set_is_last_chunk,
    _set_total_latency,
    cut_body_error,
)
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import ChatCompletionResponse, CompletionChunk, RateLimitInfo
from chatdsl.wire.dialects import Dialect, to_wire
from chatdsl.wire.responses import structure_response
from chatdsl.wire.sse import DONE, SSEDecoder, decode_chunk, describe_error_body

if TYPE_CHECKING:
    from collections.abc import Iterable

    from chatdsl.client.loop import OnToolError, ToolRunResult, Tools
    from chatdsl.runs.core import RunResult
    from chatdsl.runs.pool import RunItem

__all__ = ["ChatCompletionStream", "Client", "Limits", "RetryPolicy", "Timeout"]

logger: Final = logging.getLogger("chatdsl")

_T = TypeVar("_T")


_PATH: Final = "/v1/chat/completions"
_READ_SIZE: Final = 65536
_ERROR_BODY_LIMIT: Final = 1 << 20  # bytes of an error body kept (they are small; a proxy page may not be)
_DRAIN_WAIT: Final = 0.05  # after [DONE]: how long to wait for the end of the HTTP body (to reuse the connection)
_DRAIN_LIMIT: Final = 1 << 16
_SHOWN_BODY: Final = 1000  # bytes of an oversized body kept on the error


# Everything a read from an open response may raise on a transport problem.
_READ_ERRORS: Final = (urllib3.exceptions.HTTPError, requests.RequestException, http.client.HTTPException, OSError)

# What ``requests`` raises before sending a byte (a malformed URL or header): never retried.
_NOT_SENT: Final = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidHeader,
    urllib3.exceptions.LocationValueError,
)


# ------------------------------------------------------------------------------------ helpers


class _BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer <key>``; its repr never shows the key."""

    __slots__ = ("_value",)

    def __init__(self, key: str) -> None:
        self._value = f"Bearer {key}"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self._value
        return r

    def __repr__(self) -> str:
        return "<BearerAuth ***>"


class _NoAuth(requests.auth.AuthBase):
    """Sends no ``Authorization`` header (and, being an auth object, keeps ``.netrc`` from adding one)."""

    __slots__ = ()

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r

    def __repr__(self) -> str:
        return "<NoAuth>"


def _scrub(exc: BaseException) -> None:
    """Cut the ``requests`` objects off a transport error and everything chained to it.

    A ``requests`` exception keeps the ``PreparedRequest`` it failed on (``exc.request``), whose
    headers hold ``Authorization``, and sometimes the ``Response`` (whose ``request`` is the same).
    They are set to ``None`` before the error is chained to a chatdsl exception, and the locals of
    the finished frames in their tracebacks are cleared (they hold the headers too).
    """
    stack: list[object] = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, requests.RequestException):
            current.request = None
            current.response = None
        if current.__traceback__ is not None and not isinstance(current, ChatDSLError):
            # the frames of requests, urllib3 and http.client hold the headers (Authorization) in their
            # locals, which traceback.TracebackException(capture_locals=True), pytest -l, loguru and
            # rich print: keep the frames' lines, drop their locals (executing frames are left alone)
            traceback.clear_frames(current.__traceback__)
        stack += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]


_OBJECT_REPR: Final = re.compile(r"<[^<>]* (?:object )?at 0x[0-9a-fA-F]+>:?\s*")


def _reason(exc: BaseException) -> str:
    """Return a short description of the innermost cause of a transport error."""
    current: BaseException = exc
    seen = {id(exc)}
    while True:
        nested: BaseException | None = None
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            nested = reason
        elif current.__cause__ is not None:
            nested = current.__cause__
        elif current.args and isinstance(current.args[-1], BaseException):
            nested = current.args[-1]
        if nested is None or id(nested) in seen:
            break
        seen.add(id(nested))
        current = nested
    if isinstance(current, http.client.IncompleteRead):
        return "the connection closed before the body ended"
    text = _OBJECT_REPR.sub("", str(current)).strip() or type(current).__name__
    return text if len(text) <= 200 else text[:199] + "…"


_attempt: Final = threading.local()
"""The :class:`_Watchdog` of the call the current thread is sending (``watchdog``), for the pools
of the client's own sessions to point it at each connection they use (:class:`_DeadlinePool`)."""


def _shutdown_connection(connection: Any) -> Callable[[], object]:
    """Return what interrupts *connection*'s exchange: shutting its socket down (if it has one yet)."""

    def interrupt() -> None:
        sock = getattr(connection, "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    return interrupt


def _watch_connection(conn: Any) -> None:
    watchdog: _Watchdog | None = getattr(_attempt, "watchdog", None)
    if watchdog is not None:
        watchdog.watch(_shutdown_connection(conn))


class _DeadlinePool(urllib3.HTTPConnectionPool):
    """A pool of the client's own session: points the sending call's watchdog at each connection it uses."""

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        _watch_connection(conn)
        return super()._make_request(conn, *args, **kwargs)


class _DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    """:class:`_DeadlinePool` for https."""

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        _watch_connection(conn)
        return super()._make_request(conn, *args, **kwargs)


class _Adapter(requests.adapters.HTTPAdapter):
    """The adapter of the client's own session: its pools enforce the total deadline while a
    request is sent and its headers arrive (see :class:`_Watchdog`)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _DeadlinePool, "https": _DeadlineHTTPSPool}


def _close(response: requests.Response, watchdog: _Watchdog) -> None:
    """Point *watchdog* away from *response*, then close it: its connection back to the pool, unless the
    watchdog shut its socket down (then the connection is closed, so no later call is handed a dead socket)."""
    watchdog.watch(None)
    if watchdog.fired:
        with contextlib.suppress(Exception):
            response.raw.close()
    response.close()


@attrs.frozen
class _Exchange:
    """A successful response's headers have arrived: what the caller needs to read it."""

    response: requests.Response
    sent_at: float
    retries: int
    deadline: float | None
    timeout: Timeout
    url: str
    limits: Limits = DEFAULT_LIMITS
    watchdog: _Watchdog = attrs.field(factory=lambda: _Watchdog(None))
    state: _SessionState | None = None


def _after_release(state: _SessionState | None) -> None:
    """A response was released: if the client closed its session meanwhile, close the pools again — the
    call may have made a new one after ``close()`` (``requests`` would), and pooled its connection there."""
    if state is not None and state.closed and state.session is not None:
        _close_pools(state.session)


class _SessionState:
    """Shared by a client and every client derived from it (they share one session)."""

    __slots__ = ("closed", "session")

    def __init__(self, session: requests.Session | None = None) -> None:
        self.closed = False
        """Whether the client that owns the session closed it."""
        self.session = session
        """The session, if the client made it (and closes its pools)."""


# ------------------------------------------------------------------------------------ the client


class Client:
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

    Use it as a context manager, or call :meth:`close`; a closed client raises
    :class:`~chatdsl.ClientClosedError`. Threads may share a client: it holds no per-call state
    (the auth and headers go with each call), and calls from 16 threads at once are tested. It
    relies on ``requests.Session``, which ``requests`` does not document as thread-safe; chatdsl
    changes nothing on the session after creating it, and the session it creates accepts no
    cookies (the API uses none), so no state passes from one call to another. A ``session`` you
    pass is used as it is, cookie jar included.
    """

    __slots__ = (
        "_allow_insecure_http",
        "_api_key",
        "_auth",
        "_base_url",
        "_closed",
        "_dialect",
        "_drop_unsupported",
        "_headers",
        "_key_given",
        "_limits",
        "_log_url",
        "_loopback",
        "_owns_session",
        "_retry",
        "_session",
        "_shared",
        "_sleep",
        "_timeout",
        "_url",
        "_user_agent",
    )

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        headers: Mapping[str, str] | None = None,
        allow_insecure_http: bool = False,
        dialect: Dialect | str = Dialect.MISTRAL,
        drop_unsupported: bool = False,
        limits: Limits | None = None,
        _sleep: Callable[[float], None] | None = None,
    ) -> None:
        try:
            from chatdsl import __version__

            self._dialect = Dialect.coerce(dialect)
            self._drop_unsupported = _flag("drop_unsupported", drop_unsupported)
            env = self._dialect.api_key_env
            target = self._dialect.default_base_url if base_url is None else base_url
            self._key_given = api_key is not None
            if api_key is None and env_key_allowed(self._dialect, target):
                api_key = os.environ.get(env)
                if not api_key:  # Mistral's API, or OpenAI's own: both need a key
                    state = "is not set" if api_key is None else "is empty"
                    raise ValidationError("api_key", f"{state}; pass api_key=... or set the {env} environment variable")
            # an OpenAI-compatible server may need no key (a local vLLM, llama.cpp or Ollama): None or "" is none
            self._api_key = None if self._dialect is Dialect.OPENAI and not api_key else _check_key(api_key, env)
            self._auth: requests.auth.AuthBase = _NoAuth() if self._api_key is None else _BearerAuth(self._api_key)
            self._allow_insecure_http = bool(allow_insecure_http)
            self._base_url = _check_base_url(
                target,
                # without a key nothing secret travels: plain http anywhere is the caller's business
                allow_insecure_http=self._allow_insecure_http or self._api_key is None,
            )
            if self._base_url.endswith("/v1"):
                raise ValidationError(
                    "base_url",
                    f"{_redact_url(self._base_url)!r} ends with /v1, and chatdsl adds /v1/chat/completions itself; "
                    f"pass {_redact_url(self._base_url[:-3])!r}",
                )
            self._loopback = _is_loopback(urlsplit(self._base_url).hostname or "")
            self._url = self._base_url + _PATH
            self._log_url = _redact_url(self._url)
            self._timeout = Timeout.coerce(timeout)
            policy = RetryPolicy() if retry is None else retry
            if not isinstance(policy, RetryPolicy):
                raise ValidationError("retry", f"{policy!r} is not a RetryPolicy")
            self._retry = policy if max_retries is None else attrs.evolve(policy, max_retries=max_retries)
            self._headers = _check_headers(headers)
            self._limits = DEFAULT_LIMITS if limits is None else limits
            if not isinstance(self._limits, Limits):
                raise ValidationError("limits", f"{self._limits!r} is not a Limits")
            self._owns_session = session is None
            self._session = _new_session(self._limits) if session is None else session
            self._sleep: Callable[[float], None] = time.sleep if _sleep is None else _sleep
            self._user_agent = f"chatdsl/{__version__}"
            self._closed = False
            self._shared = _SessionState(self._session if session is None else None)  # the parent's in with_options
        except Exception as exc:
            # this frame stays in the traceback: keep the key (and header values) out of its locals, and
            # drop the inner frames (whose arguments hold them too) — the message says what was wrong
            api_key = headers = session = None
            raise exc.with_traceback(None)  # noqa: B904 (the same exception, without its frames)

    # ------------------------------------------------------------------ settings

    @property
    def base_url(self) -> str:
        """The API's base URL (without a trailing slash)."""
        return self._base_url

    @property
    def dialect(self) -> Dialect:
        """The wire :class:`~chatdsl.Dialect` this client speaks."""
        return self._dialect

    @property
    def drop_unsupported(self) -> bool:
        """Whether request fields the dialect has no equivalent for are left out (logged) instead of refused."""
        return self._drop_unsupported

    @property
    def timeout(self) -> Timeout:
        """The default :class:`Timeout` of every call."""
        return self._timeout

    @property
    def retry(self) -> RetryPolicy:
        """The :class:`RetryPolicy` of every call."""
        return self._retry

    @property
    def max_retries(self) -> int:
        """How many times a failed call is sent again (``retry.max_retries``)."""
        return self._retry.max_retries

    @property
    def limits(self) -> Limits:
        """The :class:`Limits` of every call."""
        return self._limits

    @property
    def session(self) -> requests.Session:
        """The ``requests.Session`` every call goes through."""
        return self._session

    @property
    def headers(self) -> dict[str, str]:
        """A copy of the extra headers sent with every request."""
        return dict(self._headers)

    def with_options(
        self,
        *,
        api_key: str | UnsetType = UNSET,
        base_url: str | UnsetType = UNSET,
        timeout: Timeout | float | UnsetType = UNSET,
        max_retries: int | UnsetType = UNSET,
        retry: RetryPolicy | UnsetType = UNSET,
        headers: Mapping[str, str | None] | UnsetType = UNSET,
        allow_insecure_http: bool | UnsetType = UNSET,
        dialect: Dialect | str | UnsetType = UNSET,
        drop_unsupported: bool | UnsetType = UNSET,
        limits: Limits | UnsetType = UNSET,
    ) -> Client:
        """Return a new client with these settings changed, sharing this client's session.

        ``headers`` are merged into the current ones (a ``None`` value removes a header). The new
        client does not own the session: closing it closes only itself; closing the client that
        created the session closes the session and every client derived from it (they raise
        :class:`~chatdsl.ClientClosedError`). A new ``dialect`` keeps the key and base URL unless
        they are given too — except a key read from the environment, which is kept only where the
        new client could have read it itself (``OPENAI_API_KEY`` only for OpenAI's host).
        """
        merged = dict(self._headers)
        if not isinstance(headers, UnsetType):
            for name, value in headers.items():
                for existing in [k for k in merged if k.lower() == name.lower()]:
                    del merged[existing]
                if value is not None:
                    merged[name] = value
        policy = self._retry if isinstance(retry, UnsetType) else retry
        new_dialect = Dialect.coerce(self._dialect if isinstance(dialect, UnsetType) else dialect)
        new_base_url = self._base_url if isinstance(base_url, UnsetType) else base_url
        if not isinstance(api_key, UnsetType):
            key: str | None = api_key
        elif self._key_given or env_key_allowed(new_dialect, new_base_url):
            key = self._api_key or ""  # "": still no key
        else:
            key = ""  # a key from the environment does not travel to a host that would not have read it
        try:
            client = Client(
                key,
                base_url=new_base_url,
                timeout=self._timeout if isinstance(timeout, UnsetType) else timeout,
                max_retries=None if isinstance(max_retries, UnsetType) else max_retries,
                retry=policy,
                session=self._session,
                headers=merged,
                allow_insecure_http=(
                    self._allow_insecure_http if isinstance(allow_insecure_http, UnsetType) else allow_insecure_http
                ),
                dialect=new_dialect,
                drop_unsupported=(
                    self._drop_unsupported if isinstance(drop_unsupported, UnsetType) else drop_unsupported
                ),
                limits=self._limits if isinstance(limits, UnsetType) else limits,
                _sleep=self._sleep,
            )
        except Exception as exc:
            key = None
            api_key = UNSET  # neither may stay in this frame's locals (see __init__)
            raise exc.with_traceback(None)  # noqa: B904
        client._key_given = self._key_given if isinstance(api_key, UnsetType) else True
        client._shared = self._shared  # closing the session's owner closes every client sharing it
        return client

    def __repr__(self) -> str:
        if not hasattr(self, "_closed"):  # __init__ failed (a traceback's locals show it)
            return "<Client, not initialized>"
        key = "None" if self._api_key is None else "'***'"
        dialect = "" if self._dialect is Dialect.MISTRAL else f", dialect={self._dialect.value!r}"
        return (
            f"Client(base_url={self._base_url!r}, api_key={key}, timeout={self._timeout!r}, "
            f"max_retries={self._retry.max_retries}{dialect})"
        )

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            "a chatdsl Client cannot be pickled or copied: it holds the API key, which must not travel in bytes "
            "you did not ask for; make a Client where it is needed (or derive one with with_options())"
        )

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close this client (idempotent); a closed client sends nothing (:class:`~chatdsl.ClientClosedError`).

        If it created its session, the session is closed too — and with it every client derived
        from this one by :meth:`with_options`. Its pooled connections are closed at once; a call
        still running closes its own when it ends (so once the calls in flight end, no connection
        stays open), and sends no retry.
        """
        if self._closed:
            return
        self._closed = True
        if self._owns_session:
            self._shared.closed = True
            _close_pools(self._session)
            self._session.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called on this client, or on the client that owns its session."""
        return self._closed or self._shared.closed

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
        request = _checked(request)
        if request.stream is True:
            request = request.with_streaming(False)
        return self._send(
            request,
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
        request = _checked(request).with_streaming()
        exchange = self._send(
            request,
            _accept,
            stream=True,
            timeout=timeout,
            max_retries=max_retries,
            headers=headers,
            drop_unsupported=drop_unsupported,
        )
        n = request.n if isinstance(request.n, int) else 1
        return ChatCompletionStream(exchange, expected_choices=max(1, n), fold_usage=self._dialect is Dialect.OPENAI)

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

    # ------------------------------------------------------------------ the exchange

    def _send(
        self,
        request: ChatCompletionRequest,
        reader: Callable[[_Exchange], _T],
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
        if self._closed or self._shared.closed:
            owner = "" if self._closed else " (the client that owns its session was closed)"
            raise ClientClosedError(f"this Client is closed{owner}; it sends nothing more")
        limits = self._timeout if timeout is None else Timeout.coerce(timeout)
        policy = self._retry if max_retries is None else attrs.evolve(self._retry, max_retries=max_retries)
        data = request.to_dict()
        if self._dialect is not Dialect.MISTRAL:
            drop = self._drop_unsupported if drop_unsupported is None else _flag("drop_unsupported", drop_unsupported)
            openai_service = _is_openai_service(self._base_url)
            data = to_wire(data, self._dialect, drop_unsupported=drop, openai_service=openai_service)
        body = dumps_bytes(data)
        send_headers = {
            "User-Agent": self._user_agent,
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        if stream:
            send_headers["Accept-Encoding"] = "identity"  # compression would hold events back
        send_headers.update(self._headers)
        if headers:
            send_headers.update(_check_headers(headers))
        session = self._session
        url, log_url = self._url, self._log_url
        try:  # before anything is sent: a failure here is never retried (nor does it show what it refused)
            prepared = session.prepare_request(
                requests.Request("POST", url, data=body, headers=send_headers, auth=self._auth)
            )
            settings = session.merge_environment_settings(url, {}, True, None, None)
        except (requests.RequestException, ValueError, TypeError) as exc:
            raise ValidationError(
                "request", f"could not be prepared ({type(exc).__name__}); nothing was sent"
            ) from None
        if self._loopback:
            settings["proxies"] = {}  # the key stays on the machine: never through a proxy
        start = time.perf_counter()
        deadline = None if limits.total is None else start + limits.total
        watchdog = _Watchdog(deadline)
        state = self._shared
        retries = 0
        previous: APIError | APIConnectionError | None = None  # the failure the last backoff followed
        try:
            while True:
                error: APIError | APIConnectionError
                retry_after: float | None = None
                timeouts = attempt_timeouts(limits, deadline, time.perf_counter())
                if timeouts is None:  # a backoff sleep overran the deadline (checked before sleeping)
                    passed = f"the total deadline of {limits.total} s passed before attempt {retries + 1}"
                    late = APITimeoutError(f"POST {log_url}: {passed}")
                    raise late from previous
                connect, read = timeouts
                if retries and self.closed:
                    raise ClientClosedError("this Client was closed while the call waited to retry") from previous
                logger.debug("POST %s (attempt %d, stream=%s)", log_url, retries + 1, stream)
                sent_at = time.perf_counter()
                if deadline is not None:
                    _attempt.watchdog = watchdog
                try:
                    response = session.send(prepared, timeout=(connect, read), allow_redirects=False, **settings)
                except _NOT_SENT as exc:
                    _scrub(exc)
                    raise APIConnectionError(
                        f"POST {log_url}: the request could not be sent ({type(exc).__name__}); nothing was sent"
                    ) from None
                except _READ_ERRORS as exc:
                    watchdog.watch(None)
                    error = _transport_error(exc, log_url, limits, deadline, fired=watchdog.fired)
                else:
                    watchdog.watch(response.raw.shutdown)
                    if watchdog.fired:  # the headers came as the deadline passed: too late all the same
                        _close(response, watchdog)
                        raise APITimeoutError(
                            f"POST {log_url}: the total deadline of {limits.total} s passed while the headers arrived"
                        )
                    status = response.status_code
                    if 200 <= status < 300:
                        exchange = _Exchange(
                            response,
                            sent_at,
                            retries,
                            deadline,
                            timeout=limits,
                            url=log_url,
                            limits=self._limits,
                            watchdog=watchdog,
                            state=state,
                        )
                        return reader(exchange)
                    error = _status_error(response, watchdog)
                    retry_after = _retry_after(response.headers)
                    logger.debug(
                        "POST %s -> %d in %.3f s (request id %s)",
                        log_url,
                        status,
                        time.perf_counter() - sent_at,
                        error.request_id,
                    )
                    if not retryable_status(policy, status):
                        raise error
                finally:
                    if deadline is not None:
                        _attempt.watchdog = None
                delay = retry_delay(policy, retries, retry_after, deadline, time.perf_counter())
                if delay is None:
                    raise error
                retries += 1
                previous = error
                logger.info(
                    "POST %s failed (%s); retry %d of %d in %.2f s",
                    log_url,
                    _short(error),
                    retries,
                    policy.max_retries,
                    delay,
                )
                self._sleep(delay)
        except BaseException:
            watchdog.cancel()
            raise
        finally:
            if not stream:
                watchdog.cancel()
            _after_release(state)

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


def _accept(exchange: _Exchange) -> _Exchange:
    """The reader of a stream: headers are in, the body is the stream's business.

    A JSON body instead of an event stream (a server or proxy that ignored ``"stream": true`` or
    answered an error with a success status) is a :class:`MalformedResponseError` at once.
    """
    response = exchange.response
    content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            raw = _read_body(response, _ERROR_BODY_LIMIT)
        except _READ_ERRORS:
            raw = bytearray()
        finally:
            response.close()
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(text)
        except (ValueError, RecursionError):
            body = text
        raise MalformedResponseError(
            f"asked for an event stream, got a JSON body: {describe_error_body(body)!r}",
            status_code=response.status_code,
            body=text,
            request_id=_request_id(response.headers),
            headers=_lower(response.headers),
        )
    logger.debug(
        "POST %s -> %d, streaming (headers after %.3f s, retries %d, request id %s)",
        exchange.url,
        response.status_code,
        time.perf_counter() - exchange.sent_at,
        exchange.retries,
        _request_id(response.headers),
    )
    return exchange


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Accepts no cookie and returns none: the API authenticates by key, and a cookie set by one
    answer (a proxy's, a load balancer's) would ride along on every later call, from every thread."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def _new_session(limits: Limits) -> requests.Session:
    """Return a session that keeps no cookies, whose adapters keep ``limits.pool_maxsize`` connections per host."""
    session = requests.Session()
    session.cookies.set_policy(_NoCookies())
    for prefix in ("https://", "http://"):
        session.mount(prefix, _Adapter(pool_maxsize=limits.pool_maxsize))
    return session


def _close_pools(session: requests.Session) -> None:
    """Close the idle pooled connections of *session* now.

    ``Session.close()`` alone leaves them to the garbage collector with urllib3 2.x: its pools are
    closed by a finalizer, which waits as long as any response object still refers to its pool.
    """
    for adapter in session.adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        pools = getattr(manager, "pools", None)
        if pools is None:
            continue
        for key in list(pools.keys()):
            pool = pools.get(key)
            if pool is not None:
                pool.close()


def _checked(request: ChatCompletionRequest) -> ChatCompletionRequest:
    if not isinstance(request, ChatCompletionRequest):
        raise TypeError(f"expected a ChatCompletionRequest, got {type(request).__name__}")
    return request.validate()


def _short(error: BaseException) -> str:
    if isinstance(error, APIError):
        return f"HTTP {error.status_code}"
    return f"{type(error).__name__}: {error}"


def _transport_error(
    exc: BaseException,
    url: str,
    limits: Timeout,
    deadline: float | None,
    *,
    response_started: bool = False,
    fired: bool = False,
) -> APIConnectionError:
    """Return the chatdsl error for a ``requests``/``urllib3`` failure (chained to it, scrubbed).

    *response_started*: a success status had arrived (the body broke off); the message says so.
    *fired*: the call's watchdog cut the connection at the total deadline.
    """
    _scrub(exc)
    reason = _reason(exc)
    started = response_started
    after = " after a success status (the request was not sent again)" if started else ""
    error: APIConnectionError
    if fired or (deadline is not None and time.perf_counter() >= deadline - 1e-3 and isinstance(exc, requests.Timeout)):
        error = APITimeoutError(
            f"POST {url}: the total deadline of {limits.total} s passed{after} ({reason})", response_started=started
        )
    elif isinstance(exc, requests.exceptions.ConnectTimeout):
        error = APITimeoutError(f"POST {url}: connecting timed out after {limits.connect} s ({reason})")
    elif isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        error = APITimeoutError(f"POST {url}: no data for {limits.read} s{after} ({reason})", response_started=started)
    elif isinstance(exc, requests.exceptions.SSLError):
        error = APIConnectionError(f"POST {url}: TLS failed{after} ({reason})", response_started=started)
    else:
        error = APIConnectionError(f"POST {url} failed{after}: {reason}", response_started=started)
    error.__cause__ = exc
    return error


def _read_body(response: requests.Response, limit: int | None = None) -> bytearray:
    """Read the rest of the body as it arrives (``read1``: never waits to fill a buffer), at most *limit* bytes.

    The pieces go into one growing buffer (no list of pieces joined at the end, no copy to cut it
    at *limit*), so a body takes about its own size in memory while it is read.
    """
    raw = response.raw
    body = bytearray()
    while True:
        data = raw.read1(_READ_SIZE, decode_content=True)
        if not data:
            return body
        body += data
        if limit is not None and len(body) >= limit:
            del body[limit:]
            return body


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _read_completion(exchange: _Exchange) -> ChatCompletionResponse:
    """Read and parse a success body; a transport failure raises ``APIConnectionError`` with
    ``response_started=True`` (not retried: the server already generated the answer)."""
    response = exchange.response
    limit = exchange.limits.max_response_size
    announced = _content_length(response)
    too_large = limit is not None and announced is not None and announced > limit
    watchdog = exchange.watchdog
    watchdog.watch(response.raw.shutdown)
    try:
        body = b"" if too_large else _read_body(response, None if limit is None else limit + 1)
    except _READ_ERRORS as exc:
        _scrub(exc)
        if watchdog.fired:
            error: APIConnectionError = APITimeoutError(_deadline_message(exchange), response_started=True)
            raise error from exc
        raise _transport_error(exc, exchange.url, exchange.timeout, None, response_started=True) from exc
    finally:
        _close(response, watchdog)
    if watchdog.fired:
        raise APITimeoutError(_deadline_message(exchange), response_started=True)
    headers = response.headers
    request_id = _request_id(headers)
    if too_large or (limit is not None and len(body) > limit):
        size = f"{announced} bytes announced" if too_large else "more bytes"
        raise MalformedResponseError(
            f"the body is larger than max_response_size ({size}; the limit is {limit} bytes)",
            status_code=response.status_code,
            body=body[:_SHOWN_BODY].decode("utf-8", "replace"),
            request_id=request_id,
            headers=_lower(headers),
        )
    try:
        data = _json.loads(body)
    except (ValueError, RecursionError):
        data = None
        problem = f"the body is not JSON: {describe_error_body(body.decode('utf-8', 'replace'))!r}"
    else:
        problem = "" if isinstance(data, dict) and "choices" in data else "the body has no 'choices'"
    if not problem:
        try:
            parsed = structure_response(data, ChatCompletionResponse)
        except ValidationError as exc:
            raise MalformedResponseError(
                f"the body is not a chat completion ({exc})",
                status_code=response.status_code,
                body=body.decode("utf-8", "replace"),
                request_id=request_id,
                headers=_lower(headers),
            ) from exc
        received = time.perf_counter()
        logger.debug(
            "POST %s -> %d in %.3f s (retries %d, request id %s)",
            exchange.url,
            response.status_code,
            received - exchange.sent_at,
            exchange.retries,
            request_id,
        )
        # ``parsed`` is new and not shared yet: its HTTP facts are set in place (no copy).
        _set(parsed, "latency", _elapsed(exchange.sent_at, received))
        _set(parsed, "request_id", request_id)
        _set(parsed, "rate_limit", RateLimitInfo.from_headers(headers))
        _set(parsed, "retries_taken", exchange.retries)
        return parsed
    raise MalformedResponseError(
        problem if data is None else f"{problem}: {describe_error_body(data)!r}",
        status_code=response.status_code,
        body=body.decode("utf-8", "replace"),
        request_id=request_id,
        headers=_lower(headers),
    )


def _deadline_message(exchange: _Exchange) -> str:
    return (
        f"POST {exchange.url}: the total deadline of {exchange.timeout.total} s passed while reading the body "
        "(after a success status: the request was not sent again)"
    )


def _status_error(response: requests.Response, watchdog: _Watchdog) -> APIError:
    """Return the exception for an error status, with the server's message, body and request id.

    The body is read up to 1 MiB and until the total deadline (*watchdog*); what could not be read is left out.
    """
    watchdog.watch(response.raw.shutdown)
    try:
        raw = _read_body(response, _ERROR_BODY_LIMIT)
    except _READ_ERRORS:
        raw = bytearray()
    finally:
        _close(response, watchdog)
    return api_error(response.status_code, response.reason, response.headers, raw)


# ------------------------------------------------------------------------------------ streaming


class ChatCompletionStream(Iterator[CompletionChunk]):
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

    def __init__(self, exchange: _Exchange, *, expected_choices: int = 1, fold_usage: bool = False) -> None:
        response = exchange.response
        self.status_code: int = response.status_code
        """The HTTP status of the response."""
        self.headers: dict[str, str] = _lower(response.headers)
        """The response headers (names lower-cased)."""
        self.request_id: str | None = _request_id(response.headers)
        """The server's request id (``mistral-correlation-id``, else ``x-request-id``)."""
        self.rate_limit: RateLimitInfo | None = RateLimitInfo.from_headers(response.headers)
        """The server's ``x-ratelimit-*`` headers."""
        self.retries_taken: int = exchange.retries
        """How many times the call was sent again before this stream began."""
        # All reading state lives in the reader, which never refers back to the stream: dropping
        # the stream drops its last reference and the finalizer releases the connection.
        reader = self._reader = _Reader(exchange, expected_choices, self.request_id, fold_usage=fold_usage)
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
    def error(self) -> StreamError | None:
        """The error that ended the stream, if any (also in the last chunk)."""
        return self._reader.error

    @property
    def closed(self) -> bool:
        """Whether the stream is closed (by :meth:`close`, or by reaching its end or an error)."""
        reader = self._reader
        return reader.closing or reader.released

    @property
    def completed(self) -> bool:
        """Whether ``[DONE]`` was received."""
        return self._reader.done

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
        reader = self._reader
        if not partial:
            if reader.error is not None:
                raise reader.error
            if not reader.complete():
                raise StreamError(
                    "the stream is not complete: read it to its end first (or pass partial=True for what arrived)"
                )
        return reader.merger.response(
            request_id=self.request_id, rate_limit=self.rate_limit, retries_taken=self.retries_taken
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ChatCompletionStream {state} request_id={self.request_id!r} chunks={self._reader.merger.count}>"


class _Reader:
    """The reading side of one :class:`ChatCompletionStream`: the response, the parser and the chunks.

    ``chunks`` is the generator of chunks. ``lock`` serializes :meth:`close` and :meth:`release`
    (never taken per event); ``closing`` is read once per socket read.
    """

    __slots__ = (
        "chunks",
        "closing",
        "done",
        "error",
        "exchange",
        "expected",
        "last_at",
        "lock",
        "merger",
        "released",
        "reported",
        "request_id",
        "response",
        "since_last",
        "since_sent",
        "turn",
        "watchdog",
    )

    def __init__(self, exchange: _Exchange, expected: int, request_id: str | None, *, fold_usage: bool) -> None:
        self.exchange = exchange
        self.response = exchange.response
        self.expected = expected
        self.request_id = request_id
        self.lock = threading.RLock()
        self.turn = threading.Lock()  # queues the threads waiting for another one's read (next_in_turn)
        self.closing = False
        self.released = False
        self.done = False
        self.error: StreamError | None = None
        self.reported = False  # whether an error chunk was handed over
        self.merger = Merger()
        self.last_at = exchange.sent_at
        self.since_last = self.since_sent = _ZERO  # the latencies of the chunks of the current read
        self.watchdog = exchange.watchdog
        self.chunks: Generator[CompletionChunk] = _fold_usage(self.generate()) if fold_usage else self.generate()

    def complete(self) -> bool:
        """Whether the answer is all there: ``[DONE]`` came, or every expected choice has a finish reason."""
        return self.done or len(self.merger.finished) >= self.expected

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
            if self.error is None and not self.complete():
                self.error = StreamError(_CLOSED_BY_CALLER)

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
            if self.error is None or self.reported:
                return None
            return self.failure(self.error)

    def release(self, *, reuse: bool = False) -> None:
        """Free the connection (idempotent): back to the pool if the body ends at once, else closed."""
        with self.lock:
            if self.released:
                return
            self.released = True
        fired = self.watchdog.cancel()
        response = self.response
        if reuse and not fired:
            _drain(response)
        _close(response, self.watchdog)
        _after_release(self.exchange.state)

    # ------------------------------------------------------------------ the reader

    def generate(self) -> Generator[CompletionChunk]:
        limits = self.exchange.limits
        decoder = SSEDecoder(max_event_size=limits.max_event_size)
        raw = self.response.raw
        merger = self.merger
        expected = self.expected
        marked = False
        left = math.inf if limits.max_stream_size is None else limits.max_stream_size
        watchdog = self.watchdog
        try:
            while not self.closing:
                try:
                    data = raw.read1(_READ_SIZE, decode_content=True)
                except _READ_ERRORS as exc:
                    if self.interrupted():
                        break
                    yield self.failure(self.read_failure(exc))
                    return
                received = time.perf_counter()
                if watchdog.fired:  # what arrived as the deadline passed comes too late
                    yield self.failure(self.end_failure(decoder))
                    return
                if not data:
                    if self.interrupted():
                        break
                    yield self.failure(self.end_failure(decoder))
                    return
                left -= len(data)
                if left < 0:
                    limit = limits.max_stream_size
                    yield self.failure(StreamError(f"the stream is larger than max_stream_size ({limit} bytes)"))
                    return
                try:
                    events = decoder.feed(data)
                except StreamError as exc:
                    yield self.failure(exc)
                    return
                for position, event in enumerate(events):
                    if event.data == DONE:
                        yield from self.finish(received, marked=marked)
                        return
                    if event.event not in ("message", "error"):
                        continue  # a "ping" or other type the API does not use for chunks
                    try:
                        chunk = decode_chunk(event)
                    except StreamError as exc:
                        yield self.failure(exc)
                        return
                    finished = merger.add(chunk)
                    if not marked:
                        following = events[position + 1] if position + 1 < len(events) else None
                        marked = finished >= expected or (following is not None and following.data == DONE)
                    yield self.stamp(chunk, received, last=marked)
                if decoder.complete_lines_data() == DONE:  # its line is complete; no blank line may ever follow
                    yield from self.finish(received, marked=marked)
                    return
            # close() was called from another thread while this one was reading
            if not self.complete():
                yield self.failure(StreamError(_CLOSED_BY_CALLER))
        except GeneratorExit:
            raise
        except BaseException as exc:  # KeyboardInterrupt, or any exception while reading: the stream ends here
            if self.error is None:
                self.error = StreamError(f"the stream was interrupted by {type(exc).__name__} while it was read")
                self.reported = False  # handed over in one error chunk by the next read (closed_chunk)
            raise
        finally:
            self.release()

    def finish(self, received: float, *, marked: bool) -> Generator[CompletionChunk]:
        """End the stream at ``[DONE]``: hand over the end marker if no chunk was marked last, reuse the connection."""
        self.done = True
        logger.debug(
            "stream from %s complete: %d chunks in %.3f s (request id %s)",
            self.exchange.url,
            self.merger.count,
            received - self.exchange.sent_at,
            self.request_id,
        )
        if not marked:
            yield self.stamp(self.merger.marker(), received, last=True)
        self.release(reuse=True)

    def interrupted(self) -> bool:
        """Whether :meth:`close` was called while this thread was reading (it shut the socket down)."""
        return self.closing

    def stamp(self, chunk: CompletionChunk, received: float, *, last: bool) -> CompletionChunk:
        # The chunk was just built by this stream and nobody else holds it yet: set its timing
        # fields in place instead of copying it (``attrs.evolve`` costs more than parsing it did).
        if received != self.last_at:  # the first event of a read: later ones arrived with it
            self.since_sent = _elapsed(self.exchange.sent_at, received)
            self.since_last = _elapsed(self.last_at, received)
            self.last_at = received
        else:
            self.since_last = _ZERO
        _set_is_last_chunk(chunk, last)
        _set_chunk_latency(chunk, self.since_last)
        _set_total_latency(chunk, self.since_sent)
        self.merger.latency = self.since_sent
        return chunk

    def failure(self, error: StreamError) -> CompletionChunk:
        """Record *error*, release the connection, and return the error chunk to hand over."""
        self.error = error
        self.reported = True
        self.release()
        logger.debug("stream from %s ended with an error: %s", self.exchange.url, error)
        return self.stamp(attrs.evolve(self.merger.marker(), error=error), time.perf_counter(), last=True)

    def read_failure(self, exc: BaseException) -> StreamError:
        limits = self.exchange.timeout
        _scrub(exc)
        cause: APIConnectionError
        if self.watchdog.fired:
            cause = APITimeoutError(f"the total deadline of {limits.total} s passed", response_started=True)
            error = StreamError(f"the stream was stopped: the total deadline of {limits.total} s passed")
        elif isinstance(exc, (urllib3.exceptions.TimeoutError, requests.Timeout, TimeoutError)):
            cause = APITimeoutError(f"no data for {limits.read} s ({_reason(exc)})", response_started=True)
            error = StreamError(f"the stream stalled: no data for {limits.read} s")
        else:
            cause = APIConnectionError(f"the connection broke ({_reason(exc)})", response_started=True)
            error = StreamError(f"the stream was cut: the connection broke ({_reason(exc)})")
        cause.__cause__ = exc
        error.__cause__ = cause
        return error

    def end_failure(self, decoder: SSEDecoder) -> StreamError:
        if self.watchdog.fired:
            total = self.exchange.timeout.total
            error = StreamError(f"the stream was stopped: the total deadline of {total} s passed")
            error.__cause__ = APITimeoutError(f"the total deadline of {total} s passed", response_started=True)
            return error
        return cut_body_error(decoder)


def _drain(response: requests.Response) -> None:
    """Read the end of a finished stream's body if it comes within ``_DRAIN_WAIT`` (then the
    connection goes back to the pool); otherwise leave it for ``close()`` to discard."""
    raw = response.raw
    connection = raw.connection
    sock = getattr(connection, "sock", None) if connection is not None else None
    end = time.perf_counter() + _DRAIN_WAIT
    try:
        if sock is not None:
            sock.settimeout(_DRAIN_WAIT)
        size = 0
        while size <= _DRAIN_LIMIT and time.perf_counter() < end:
            data = raw.read1(_READ_SIZE, decode_content=True)
            if not data:
                return
            size += len(data)
    except _READ_ERRORS:
        return
