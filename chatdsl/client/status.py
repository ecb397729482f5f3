"""Transport-free mapping of an HTTP answer to chatdsl's errors.

The status to exception class table, ``Retry-After`` parsing, the request id, and building an
:class:`~chatdsl.APIError` from the status, headers and body bytes a transport read. Nothing here
imports ``requests`` or ``urllib3``, so an asyncio client can share it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

from chatdsl._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from chatdsl.wire.sse import describe_error_body

__all__ = ["api_error", "error_class"]

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
