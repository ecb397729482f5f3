"""The ``requests``/``urllib3`` plumbing of :class:`~chatdsl.Client`: auth, the session, reads, transport errors.

The auth objects (the key in ``Authorization`` only, never in a repr), the session the client makes
(no cookies, pools that enforce the total deadline with :class:`~chatdsl.client.deadline.Watchdog`),
reading a body as it arrives, and turning a ``requests``/``urllib3`` exception into a chatdsl error
with the requests objects (which hold the headers) cut off it. Every decision about what a body or
an error means lives in the transport-free modules (``status``, ``stream``, ``retry``).
"""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs
import requests
import urllib3

from chatdsl._errors import APIConnectionError
from chatdsl.client.base import SessionState
from chatdsl.client.config import DEFAULT_LIMITS, Limits, Timeout
from chatdsl.client.deadline import Watchdog
from chatdsl.client.status import (
    Body,
    ConnectionFailure,
    body_deadline_error,
    connection_error,
    scrubbed_chain,
    short_text,
)
from chatdsl.client.stream import StreamFailure

__all__: list[str] = []

_T = TypeVar("_T")

READ_SIZE: Final = 65536
_DRAIN_WAIT: Final = 0.05  # after [DONE]: how long to wait for the end of the HTTP body (to reuse the connection)
_DRAIN_LIMIT: Final = 1 << 16


# Everything a read from an open response may raise on a transport problem.
READ_ERRORS: Final = (urllib3.exceptions.HTTPError, requests.RequestException, http.client.HTTPException, OSError)

# What ``requests`` raises before sending a byte (a malformed URL or header): never retried.
NOT_SENT: Final = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidHeader,
    urllib3.exceptions.LocationValueError,
)


@attrs.frozen
class Exchange:
    """A successful response's headers have arrived: what the caller needs to read it."""

    response: requests.Response
    sent_at: float
    retries: int
    deadline: float | None
    timeout: Timeout
    url: str
    limits: Limits = DEFAULT_LIMITS
    watchdog: Watchdog = attrs.field(factory=lambda: Watchdog(None))
    state: SessionState | None = None
    method: str = "POST"


class BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer <key>``; its repr never shows the key."""

    __slots__ = ("_value",)

    def __init__(self, key: str) -> None:
        self._value = f"Bearer {key}"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self._value
        return r

    def __repr__(self) -> str:
        return "<BearerAuth ***>"


class NoAuth(requests.auth.AuthBase):
    """Sends no ``Authorization`` header (and, being an auth object, keeps ``.netrc`` from adding one)."""

    __slots__ = ()

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r

    def __repr__(self) -> str:
        return "<NoAuth>"


def scrub(exc: BaseException) -> None:
    """Cut the ``requests`` objects off a transport error and everything chained to it.

    A ``requests`` exception keeps the ``PreparedRequest`` it failed on (``exc.request``), whose
    headers hold ``Authorization``, and sometimes the ``Response`` (whose ``request`` is the same).
    They are set to ``None`` before the error is chained to a chatdsl exception, and the locals of
    the finished frames in their tracebacks are cleared (they hold the headers too).
    """
    for current in scrubbed_chain(exc, "reason"):
        if isinstance(current, requests.RequestException):
            current.request = None
            current.response = None


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
    return short_text(current)


current_attempt: Final = threading.local()
"""The :class:`Watchdog` of the call the current thread is sending (``watchdog``), for the pools
of the client's own sessions to point it at each connection they use (:class:`_DeadlinePool`)."""


def _shutdown_connection(connection: Any) -> Callable[[], object]:
    """Return what interrupts *connection*'s exchange: shutting its socket down (if it has one yet)."""

    def interrupt() -> None:
        sock = getattr(connection, "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    return interrupt


def _watch_connection(conn: Any) -> None:
    watchdog: Watchdog | None = getattr(current_attempt, "watchdog", None)
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
    request is sent and its headers arrive (see :class:`Watchdog`)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _DeadlinePool, "https": _DeadlineHTTPSPool}


def close_response(response: requests.Response, watchdog: Watchdog) -> None:
    """Point *watchdog* away from *response*, then close it: its connection back to the pool, unless the
    watchdog shut its socket down (then the connection is closed, so no later call is handed a dead socket)."""
    watchdog.watch(None)
    if watchdog.fired:
        with contextlib.suppress(Exception):
            response.raw.close()
    response.close()


def after_release(state: SessionState | None) -> None:
    """A response was released: if the client closed its session meanwhile, close the pools again — the
    call may have made a new one after ``close()`` (``requests`` would), and pooled its connection there."""
    if state is not None and state.closed and isinstance(state.session, requests.Session):
        close_pools(state.session)


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Accepts no cookie and returns none: the API authenticates by key, and a cookie set by one
    answer (a proxy's, a load balancer's) would ride along on every later call, from every thread."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def new_session(limits: Limits) -> requests.Session:
    """Return a session that keeps no cookies, whose adapters keep ``limits.pool_maxsize`` connections per host."""
    session = requests.Session()
    session.cookies.set_policy(_NoCookies())
    for prefix in ("https://", "http://"):
        session.mount(prefix, _Adapter(pool_maxsize=limits.pool_maxsize))
    return session


def close_pools(session: requests.Session) -> None:
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


def transport_error(
    exc: BaseException,
    url: str,
    limits: Timeout,
    deadline: float | None,
    *,
    response_started: bool = False,
    fired: bool = False,
    method: str = "POST",
) -> APIConnectionError:
    """Return the chatdsl error for a ``requests``/``urllib3`` failure (chained to it, scrubbed).

    *response_started*: a success status had arrived (the body broke off); the message says so.
    *fired*: the call's watchdog cut the connection at the total deadline. *method* names the request.
    """
    scrub(exc)
    kind: ConnectionFailure
    if fired or (deadline is not None and time.perf_counter() >= deadline - 1e-3 and isinstance(exc, requests.Timeout)):
        kind = "deadline"
    elif isinstance(exc, requests.exceptions.ConnectTimeout):
        kind = "connect"
    elif isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        kind = "read"
    elif isinstance(exc, requests.exceptions.SSLError):
        kind = "tls"
    else:
        kind = "broken"
    error = connection_error(kind, url, limits, _reason(exc), response_started=response_started, method=method)
    error.__cause__ = exc
    return error


def surely_unsent(exc: BaseException) -> bool:
    """Return whether a ``requests``/``urllib3`` failure happened before any byte of the request left: no
    connection was made (refused, unreachable, DNS, or a connect timeout). Call it before :func:`scrub`."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
        elif current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
        else:
            current = current.__cause__
    return False


def read_failure(exc: BaseException, *, fired: bool) -> tuple[StreamFailure, str]:
    """Classify a failed read of a stream's body (scrubbed): its kind and reason (see ``StreamState.read_failure``)."""
    scrub(exc)
    if fired:
        return "deadline", ""
    if isinstance(exc, (urllib3.exceptions.TimeoutError, requests.Timeout, TimeoutError)):
        return "stall", _reason(exc)
    return "broken", _reason(exc)


def read_body(response: requests.Response, limit: int | None = None) -> bytearray:
    """Read the rest of the body as it arrives (``read1``: never waits to fill a buffer), at most *limit* bytes."""
    raw = response.raw
    body = Body(limit)
    while body.add(raw.read1(READ_SIZE, decode_content=True)):
        pass
    return body.data


class _WriteFailed(Exception):
    """What the destination of a download raised (a full disk is no transport failure): :func:`read_released`
    raises :attr:`error` itself."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def copy_body(response: requests.Response, write: Callable[[bytes], object]) -> int:
    """Hand the rest of the body to *write* piece by piece as it arrives; return the number of bytes."""
    raw = response.raw
    size = 0
    while data := raw.read1(READ_SIZE, decode_content=True):
        try:
            write(data)
        except Exception as exc:
            raise _WriteFailed(exc) from None
        size += len(data)
    return size


def read_released(exchange: Exchange, read: Callable[[requests.Response], _T]) -> _T:
    """Return ``read(response)`` of a success answer under the call's total deadline, then release the response;
    a transport failure raises ``APIConnectionError`` with ``response_started=True`` (never sent again)."""
    response = exchange.response
    watchdog = exchange.watchdog
    watchdog.watch(response.raw.shutdown)
    try:
        result = read(response)
    except _WriteFailed as failed:
        raise failed.error from None
    except READ_ERRORS as exc:
        scrub(exc)
        if watchdog.fired:
            raise body_deadline_error(exchange.url, exchange.timeout, exchange.method) from exc
        raise transport_error(
            exc, exchange.url, exchange.timeout, None, response_started=True, method=exchange.method
        ) from exc
    finally:
        close_response(response, watchdog)
    if watchdog.fired:
        raise body_deadline_error(exchange.url, exchange.timeout, exchange.method)
    return result


def drain(response: requests.Response) -> None:
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
            data = raw.read1(READ_SIZE, decode_content=True)
            if not data:
                return
            size += len(data)
    except READ_ERRORS:
        return
