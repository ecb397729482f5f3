"""Transport-free reading of an HTTP answer: a success body to a response, anything else to chatdsl's errors.

The status to exception class table, ``Retry-After`` parsing, the request id, building an
:class:`~chatdsl.APIError` from the status, headers and body bytes a transport read, parsing a
success body (:func:`completion`), and the errors of a failed exchange (:func:`connection_error`:
the transport only says which kind of failure it met). Nothing here imports ``requests``,
``urllib3`` or ``aiohttp``, so both clients share it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import traceback
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal, TypeAlias

from chatdsl import _json
from chatdsl._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ChatDSLError,
    InternalServerError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    ValidationError,
)
from chatdsl.client.config import Timeout
from chatdsl.model.response import ChatCompletionResponse, RateLimitInfo
from chatdsl.wire.responses import structure_response
from chatdsl.wire.sse import describe_error_body

__all__ = [
    "ERROR_BODY_LIMIT",
    "Body",
    "announced_too_large",
    "api_error",
    "body_deadline_error",
    "completion",
    "connection_error",
    "content_length",
    "error_class",
    "is_json",
    "json_value",
    "length_mismatch",
    "not_an_event_stream",
    "read_limit",
    "scrubbed_chain",
    "short_text",
]

logger: Final = logging.getLogger("chatdsl")

_set = object.__setattr__  # the HTTP facts of a response just parsed (not shared yet) are set in place
_MICROSECOND: Final = timedelta(microseconds=1)
_ZERO: Final = timedelta(0)


def _elapsed(start: float, end: float) -> timedelta:
    # timedelta * int is several times cheaper than timedelta(seconds=float): it is paid twice per chunk
    seconds = end - start
    return _MICROSECOND * round(seconds * 1_000_000) if seconds > 0 else _ZERO


_STATUS_ERRORS: Final[dict[int, type[APIError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


_DECIMAL: Final = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,9})?")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Return the server's requested wait in seconds (``retry-after-ms`` or ``Retry-After``), if any."""
    value = headers.get("retry-after-ms")
    if value is not None and _DECIMAL.fullmatch(value.strip()):
        return float(value) / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if _DECIMAL.fullmatch(value):  # not float(): it takes "1_0", "inf", "-1", "nan", " 1e3"
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("mistral-correlation-id") or headers.get("x-request-id") or None


def error_class(status: int) -> type[APIError]:
    """Return the exception class for an HTTP error *status*."""
    return _STATUS_ERRORS.get(status) or (InternalServerError if 500 <= status <= 599 else APIError)


def api_error(status: int, reason: str | None, headers: Mapping[str, str], raw: bytes | bytearray) -> APIError:
    """Return the exception for an error *status*, with the server's message, body and request id.

    *headers* is looked up by lower-case names (give a case-insensitive mapping, as transports do);
    *raw* is the body the transport read (empty when it could not be read); *reason* the status line's text.
    """
    text = raw.decode("utf-8", "replace")
    body: Any = text
    if text.strip():
        try:
            # the standard library, not _json: its recursion limit keeps a deeply nested error body as text
            # (orjson reads up to 1,024 levels, and the error's repr would then overflow the stack)
            body = json.loads(text)
        except (ValueError, RecursionError):
            body = text
    message = describe_error_body(body) or reason or f"HTTP {status}"
    cls = error_class(status)
    common: dict[str, Any] = {
        "status_code": status,
        "body": body,
        "request_id": _request_id(headers),
        "headers": _lower(headers),
    }
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=_retry_after(headers), **common)
    return cls(message, **common)


# ------------------------------------------------------------------------------------ a success body

ERROR_BODY_LIMIT: Final = 1 << 20  # bytes of an error body kept (they are small; a proxy page may not be)
_SHOWN_BODY: Final = 1000  # bytes of an oversized body kept on the error


class Body:
    """A body read piece by piece as it arrives, kept up to *limit* bytes (``None``: all of it).

    The pieces go into one growing buffer (no list of pieces joined at the end, no copy to cut it at
    *limit*), so a body takes about its own size in memory while it is read.
    """

    __slots__ = ("data", "limit")

    def __init__(self, limit: int | None = None) -> None:
        self.data = bytearray()
        self.limit = limit

    def add(self, piece: bytes) -> bool:
        """Keep *piece*; return whether to read on (not at the end of the body, nor at the limit)."""
        if not piece:
            return False
        data = self.data
        data += piece
        limit = self.limit
        if limit is not None and len(data) >= limit:
            del data[limit:]
            return False
        return True


def content_length(headers: Mapping[str, str]) -> int | None:
    """Return the announced ``Content-Length``, if it is a number."""
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def announced_too_large(headers: Mapping[str, str], limit: int | None) -> bool:
    """Whether the ``Content-Length`` of a success answer already exceeds *limit* (then its body is not read)."""
    announced = content_length(headers) if limit is not None else None
    return limit is not None and announced is not None and announced > limit


def read_limit(limit: int | None) -> int | None:
    """How many bytes of a success body to read: one more than *limit*, to tell a body past it."""
    return None if limit is None else limit + 1


def completion(
    status: int,
    headers: Mapping[str, str],
    body: bytes | bytearray,
    *,
    limit: int | None,
    too_large: bool,
    url: str,
    sent_at: float,
    retries: int,
) -> ChatCompletionResponse:
    """Return the response a success body holds, with its HTTP facts set; else raise
    :class:`~chatdsl.MalformedResponseError` (too large, not JSON, not a completion).

    *too_large*: the announced length exceeded *limit* (the body was not read); *sent_at*: when the
    attempt was sent (``time.perf_counter``), for ``latency``.
    """
    request_id = _request_id(headers)
    _check_size(status, headers, body, limit=limit, too_large=too_large)
    try:
        data = _json.loads(body)
    except (ValueError, RecursionError):
        data = None
        problem = _not_json(body)
    else:
        problem = "" if isinstance(data, dict) and "choices" in data else "the body has no 'choices'"
    if not problem:
        try:
            parsed = structure_response(data, ChatCompletionResponse)
        except ValidationError as exc:
            raise MalformedResponseError(
                f"the body is not a chat completion ({exc})",
                status_code=status,
                body=body.decode("utf-8", "replace"),
                request_id=request_id,
                headers=_lower(headers),
            ) from exc
        received = time.perf_counter()
        logger.debug(
            "POST %s -> %d in %.3f s (retries %d, request id %s)", url, status, received - sent_at, retries, request_id
        )
        # ``parsed`` is new and not shared yet: its HTTP facts are set in place (no copy).
        _set(parsed, "latency", _elapsed(sent_at, received))
        _set(parsed, "request_id", request_id)
        _set(parsed, "rate_limit", RateLimitInfo.from_headers(headers))
        _set(parsed, "retries_taken", retries)
        return parsed
    raise MalformedResponseError(
        problem if data is None else f"{problem}: {describe_error_body(data)!r}",
        status_code=status,
        body=body.decode("utf-8", "replace"),
        request_id=request_id,
        headers=_lower(headers),
    )


def _check_size(
    status: int, headers: Mapping[str, str], body: bytes | bytearray, *, limit: int | None, too_large: bool
) -> None:
    """Raise :class:`~chatdsl.MalformedResponseError` if a success body is past *limit* (see :func:`completion`)."""
    if too_large or (limit is not None and len(body) > limit):
        size = f"{content_length(headers)} bytes announced" if too_large else "more bytes"
        raise MalformedResponseError(
            f"the body is larger than max_response_size ({size}; the limit is {limit} bytes)",
            status_code=status,
            body=body[:_SHOWN_BODY].decode("utf-8", "replace"),
            request_id=_request_id(headers),
            headers=_lower(headers),
        )


def _not_json(body: bytes | bytearray) -> str:
    return f"the body is not JSON: {describe_error_body(body.decode('utf-8', 'replace'))!r}"


def json_value(
    status: int, headers: Mapping[str, str], body: bytes | bytearray, *, limit: int | None, too_large: bool
) -> Any:
    """Return the JSON value of a success body (of the Files and Batch APIs), read as :func:`completion`
    reads one; else raise :class:`~chatdsl.MalformedResponseError` (too large, not JSON)."""
    _check_size(status, headers, body, limit=limit, too_large=too_large)
    try:
        return _json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedResponseError(
            _not_json(body),
            status_code=status,
            body=body[:_SHOWN_BODY].decode("utf-8", "replace"),
            request_id=_request_id(headers),
            headers=_lower(headers),
        ) from None


def length_mismatch(method: str, url: str, size: int, headers: Mapping[str, str]) -> APIConnectionError | None:
    """The error of a downloaded body of *size* bytes that is not the announced ``Content-Length`` (else ``None``)."""
    announced = content_length(headers)
    if announced is None or size == announced:
        return None
    return APIConnectionError(
        f"{method} {url}: the body ended after {size} of {announced} bytes", response_started=True
    )


def is_json(headers: Mapping[str, str]) -> bool:
    """Whether the answer's ``Content-Type`` is ``application/json`` (a stream's answer must not be)."""
    return headers.get("content-type", "").partition(";")[0].strip().lower() == "application/json"


def not_an_event_stream(status: int, headers: Mapping[str, str], raw: bytes | bytearray) -> MalformedResponseError:
    """The error of a stream answered with a JSON body (a server or proxy that ignored ``"stream": true``,
    or answered an error with a success status); *raw* is what could be read of the body."""
    text = raw.decode("utf-8", "replace")
    try:
        body: Any = json.loads(text)
    except (ValueError, RecursionError):
        body = text
    return MalformedResponseError(
        f"asked for an event stream, got a JSON body: {describe_error_body(body)!r}",
        status_code=status,
        body=text,
        request_id=_request_id(headers),
        headers=_lower(headers),
    )


# ------------------------------------------------------------------------------------ no answer


_OBJECT_REPR: Final = re.compile(r"<[^<>]* (?:object )?at 0x[0-9a-fA-F]+>:?\s*")


def short_text(exc: BaseException) -> str:
    """Return *exc*'s text for a message: without object addresses, at most 200 characters."""
    text = _OBJECT_REPR.sub("", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def scrubbed_chain(exc: BaseException, link: str) -> Iterator[BaseException]:
    """Yield *exc* and every exception chained to it (causes, contexts, arguments, and the attribute *link*:
    ``reason`` for urllib3, ``os_error`` for aiohttp), each once, its finished frames' locals cleared first.

    A transport's frames hold the request headers (``Authorization``) in their locals, which
    ``traceback.TracebackException(capture_locals=True)``, ``pytest -l``, loguru and rich print: the
    frames' lines stay, their locals go (executing frames are left alone). A transport drops the
    objects its exceptions keep (requests, responses) as they come by.
    """
    stack: list[object] = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if current.__traceback__ is not None and not isinstance(current, ChatDSLError):
            traceback.clear_frames(current.__traceback__)
        yield current
        stack += [current.__cause__, current.__context__, getattr(current, link, None), *current.args]


ConnectionFailure: TypeAlias = Literal["deadline", "connect", "read", "tls", "broken"]
"""What went wrong on the way, as a transport classifies its exception."""


def connection_error(
    kind: ConnectionFailure,
    url: str,
    limits: Timeout,
    reason: str,
    *,
    response_started: bool = False,
    method: str = "POST",
) -> APIConnectionError:
    """Return the chatdsl error of a transport failure of *kind* (*reason*: the transport's short description).

    *response_started*: a success status had arrived (the body broke off); the message says so.
    *method* and *url* (redacted) name the request.
    """
    after = " after a success status (the request was not sent again)" if response_started else ""
    if kind == "deadline":
        return APITimeoutError(
            f"{method} {url}: the total deadline of {limits.total} s passed{after} ({reason})",
            response_started=response_started,
        )
    if kind == "connect":
        return APITimeoutError(f"{method} {url}: connecting timed out after {limits.connect} s ({reason})")
    if kind == "read":
        return APITimeoutError(
            f"{method} {url}: no data for {limits.read} s{after} ({reason})", response_started=response_started
        )
    if kind == "tls":
        return APIConnectionError(f"{method} {url}: TLS failed{after} ({reason})", response_started=response_started)
    return APIConnectionError(f"{method} {url} failed{after}: {reason}", response_started=response_started)


def body_deadline_error(url: str, limits: Timeout, method: str = "POST") -> APITimeoutError:
    """The error of a success body still being read when the total deadline passed."""
    return APITimeoutError(
        f"{method} {url}: the total deadline of {limits.total} s passed while reading the body "
        "(after a success status: the request was not sent again)",
        response_started=True,
    )
