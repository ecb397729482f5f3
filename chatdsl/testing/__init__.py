"""A real chat-completions server on 127.0.0.1 for tests and offline use.

:class:`LocalServer` speaks the wire protocol of ``POST /v1/chat/completions`` over real sockets:
it parses each body into a :class:`~chatdsl.ChatCompletionRequest` (answering 422 with the API's
error object ``{"object": "error", "message": {"detail": [...]}, ...}`` when the real API would
refuse it, and 400 to a tool-call id that breaks the API's rule), records every request (but those
refused for their key), and answers
from a script — a queue of :class:`Reply` objects or a handler function — or, by default, with a
deterministic reply derived from the request::

    from chatdsl.testing import LocalServer, Reply

    with LocalServer() as server:
        server.enqueue(Reply.error(429, "slow down", retry_after=1))  # then the default reply
        ...  # point a client at server.url
        assert server.last_request.request.model == "mistral-small-latest"

The default reply echoes the last user message (``"echo: <text>"``); ``max_tokens`` truncates it
to that many whitespace-separated words with finish reason ``length``; a JSON response format gives
a JSON answer (for ``json_schema`` an instance generated from the schema, within a budget of values);
a tool choice that forces a call gives a tool call (its id made as the API makes them); after a tool
message the answer summarises the tool's result. With ``"stream": true`` the same answer arrives as
server-sent events: first the role with empty content, then one word per event. ``GET /v1/models``
lists models, as clients that probe it expect.

Limits: a request body is read only up to :attr:`LocalServer.max_body_size` whatever its framing
(``Content-Length`` or chunked; a malformed length or chunk size is a 400, a larger body a 413,
answered before the body is read); a request refused for its key (401) is neither kept nor recorded;
at most *max_connections* connections are served at once, and further ones wait to be accepted.

Wire details: HTTP/1.1 with keep-alive. Plain bodies carry ``Content-Length``; streams are
``text/event-stream`` with ``Transfer-Encoding: chunked``, one HTTP chunk per event, each written to
the socket at once (``TCP_NODELAY``), so a client can observe every event as it is sent.

``LocalServer(dialect="openai")`` speaks OpenAI's wire format instead (as vLLM, llama.cpp's server,
Ollama and LM Studio do), so a client of either dialect can be tested offline.

The pytest fixture ``chatdsl_server`` (installed with chatdsl through a ``pytest11`` entry point)
yields a started server per test; ``@pytest.mark.chatdsl_server(dialect="openai")`` picks the dialect.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import hashlib
import hmac
import http
import http.server
import importlib
import json
import logging
import math
import re
import selectors
import socket
import string
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, Literal, TypeAlias

import attrs

from chatdsl._errors import ValidationError
from chatdsl._types import UNSET, UnsetType
from chatdsl.model.messages import AssistantMessage, FunctionCall, ToolCall, ToolMessage, UserMessage, content_text
from chatdsl.model.request import ChatCompletionRequest, _completeness_errors
from chatdsl.model.response import (
    ChatCompletionChoice,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionResponseStreamChoice,
    FinishReason,
    UsageInfo,
)
from chatdsl.model.tools import ResponseFormatType, ToolChoice
from chatdsl.testing.openai_request import request_from_openai
from chatdsl.wire.dialects import Dialect

__all__ = ["Cut", "Headers", "LocalServer", "Pause", "RecordedRequest", "Reply", "StreamItem"]

logger: Final = logging.getLogger("chatdsl.testing")

CHAT_COMPLETIONS_PATH: Final = "/v1/chat/completions"
MODELS_PATH: Final = "/v1/models"
DEFAULT_MODELS: Final = ("mistral-small-latest", "mistral-medium-latest", "mistral-large-latest")

_SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"})


# ------------------------------------------------------------------------------------ stream items


@attrs.frozen
class Pause:
    """A stream item: wait *seconds* before the next item (the connection stays open, nothing is sent)."""

    seconds: float = attrs.field(validator=attrs.validators.ge(0))


@attrs.frozen(kw_only=True)
class Cut:
    """A stream item: close the connection here, without ending the HTTP body.

    ``reset=True`` aborts with a TCP reset instead of an orderly close.
    """

    reset: bool = False


StreamItem: TypeAlias = "CompletionChunk | Mapping[str, Any] | str | bytes | Pause | Cut"
"""An item of a streamed reply.

A :class:`~chatdsl.CompletionChunk` or a dict is sent as one event ``data: <json>\\n\\n``; a ``str`` or
``bytes`` is written exactly as given (so ``"data: {broken\\n\\n"`` or ``": comment\\n\\n"`` are
possible); :class:`Pause` waits and :class:`Cut` closes the connection.
"""


# ------------------------------------------------------------------------------------------ replies

ReplyKind: TypeAlias = Literal["default", "body", "stream", "drop"]

_BROKEN_EVENT: Final = 'data: {"id": "broken", "choices": [{"delta": {"content": "unterminated\n\n'


def _headers(
    value: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None,
) -> tuple[tuple[str, str | None], ...]:
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    out: list[tuple[str, str | None]] = []
    for name, item in items:
        if not isinstance(name, str) or not name or any(ch in name for ch in ":\r\n "):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if item is not None and (not isinstance(item, str) or "\r" in item or "\n" in item):
            raise ValueError(f"header {name!r}: value {item!r} is not a single-line string or None")
        out.append((name, item))
    return tuple(out)


def _items(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    if value is None:
        return None
    items = tuple(value)
    for index, item in enumerate(items):
        if not isinstance(item, (CompletionChunk, Mapping, str, bytes, Pause, Cut)):
            raise TypeError(
                f"chunks[{index}]: {type(item).__name__} is not a CompletionChunk, dict, str, bytes, Pause or Cut"
            )
    return items


def _inject_items(value: Iterable[Any]) -> tuple[Any, ...]:
    items = tuple(value)
    _items(item for item in items if item is not _HALF_NEXT)
    return items


def _check_status(_: Any, attribute: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"{attribute.name}: {value!r} is not an HTTP status code (100 to 599)")


def _non_negative(_: Any, attribute: Any, value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not value >= 0):
        raise ValueError(f"{attribute.name}: {value!r} is not a number of seconds >= 0")


def _format_retry_after(value: float | datetime | timedelta | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"retry_after: {value!r} is not seconds >= 0, a datetime or a string")
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


_DEFAULT_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    422: "invalid_request_error",
    429: "rate_limited",
    503: "service_unavailable",
}


def _error_type(status: int) -> str:
    if status in _DEFAULT_ERROR_TYPES:
        return _DEFAULT_ERROR_TYPES[status]
    return "internal_server_error" if status >= 500 else "invalid_request_error"


_OPENAI_ERROR_TYPES: Final = {
    403: ("request_forbidden", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
}


def _openai_error_type(status: int) -> tuple[str, str | None]:
    """Return OpenAI's ``(type, code)`` for an error status (5xx: ``server_error``)."""
    if status in _OPENAI_ERROR_TYPES:
        return _OPENAI_ERROR_TYPES[status]
    return ("server_error", None) if status >= 500 else ("invalid_request_error", None)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@attrs.frozen(kw_only=True)
class Reply:
    """What :class:`LocalServer` sends for one request; build it with the class methods.

    Plain replies: :meth:`default`, :meth:`json`, :meth:`error`, :meth:`raw`, :meth:`html`.
    Streams: :meth:`stream`, and the faults :meth:`stream_cut`, :meth:`stream_malformed`,
    :meth:`stream_error`, :meth:`stream_stall`. Connection faults: :meth:`drop`, :meth:`delayed`,
    :meth:`stall`, :meth:`truncated`, :meth:`trickle`. A header value ``None`` in ``headers`` removes a header the
    server would otherwise send (such as ``mistral-correlation-id``).
    """

    kind: ReplyKind = "default"
    """``default`` (decided per request), ``body``, ``stream`` or ``drop``."""
    status: int = attrs.field(default=200, validator=_check_status)
    headers: tuple[tuple[str, str | None], ...] = attrs.field(default=(), converter=_headers)
    body: Any = attrs.field(default=None)
    """For ``body`` replies: ``bytes`` (sent as they are), a ``ChatCompletionResponse`` or a JSON value;
    ``None`` means the default answer for the request."""
    content_type: str = "application/json"
    error_fields: tuple[str, str | None, str | None] | None = None
    """``(message, type, code)`` of an error reply the server renders (``None``: the dialect's name for the status)."""
    chunks: tuple[StreamItem, ...] | None = attrs.field(default=None, converter=_items)
    """For ``stream`` replies; ``None`` means the default answer's chunks."""
    delay: float = attrs.field(default=0.0, validator=_non_negative)
    first_delay: float | None = attrs.field(default=None, validator=_non_negative)
    done: bool = True
    inject_after: int | None = None
    """Send *inject* after this many events of *chunks* (then the rest, unless *inject* cuts)."""
    inject: tuple[StreamItem, ...] = attrs.field(default=(), converter=_inject_items)
    head_delay: float = attrs.field(default=0.0, validator=_non_negative)
    """Seconds to wait before the status line (no byte is sent before)."""
    stall_seconds: float = attrs.field(default=0.0, validator=_non_negative)
    """Seconds to wait between the headers and the body."""
    truncate_at: int | None = None
    """Send only this many bytes of the body (with the full ``Content-Length``), then close; -1 is half."""
    write_size: int | None = None
    """Write the body (or each stream event) this many bytes at a time…"""
    write_delay: float = attrs.field(default=0.0, validator=_non_negative)
    """…waiting this many seconds between writes."""
    reset: bool = False
    """For ``drop`` replies: abort with a TCP reset instead of an orderly close."""

    @body.validator
    def _check_body(self, attribute: Any, value: Any) -> None:
        if value is None or isinstance(value, (bytes, ChatCompletionResponse)):
            return
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"body: {type(value).__name__} is not bytes, a ChatCompletionResponse or JSON ({exc})"
            ) from None

    # ------------------------------------------------------------------ plain replies

    @classmethod
    def default(cls, *, headers: Mapping[str, str | None] | None = None) -> Reply:
        """Return the reply the server gives when nothing is scripted (a stream iff the request streams)."""
        return cls(kind="default", headers=headers)

    @classmethod
    def json(
        cls,
        body: ChatCompletionResponse | Any = None,
        *,
        status: int = 200,
        headers: Mapping[str, str | None] | None = None,
    ) -> Reply:
        """Return a JSON reply: a ``ChatCompletionResponse``, a dict or any JSON value.

        ``None`` sends the default (not streamed) answer for the request.
        """
        return cls(kind="body", status=status, body=body, headers=headers)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | None = None,
        retry_after: float | datetime | timedelta | str | None = None,
        body: Any = None,
        headers: Mapping[str, str | None] | None = None,
    ) -> Reply:
        """Return an error reply with the API's body ``{"object": "error", "message", "type", "param", "code"}``.

        In the ``"openai"`` dialect the body is ``{"error": {"message", "type", "param", "code"}}``.
        *message* defaults to the status phrase; *type* and *code* default to the dialect's names for
        the status (OpenAI's: ``server_error`` for 5xx, ``requests`` with code ``rate_limit_exceeded``
        for 429, ``invalid_request_error`` for the other 4xx). *retry_after*
        (seconds, a ``timedelta``, a ``datetime`` sent as an HTTP date, or a string sent as it is)
        sets the ``Retry-After`` header. A *body* (a JSON value, or ``bytes``) replaces the rendered one.
        """
        extra: list[tuple[str, str | None]] = []
        if retry_after is not None:
            extra.append(("Retry-After", _format_retry_after(retry_after)))
        all_headers = extra + list(_headers(headers))
        error = (message if message is not None else _phrase(status), type, code)
        return cls(
            kind="body", status=status, body=body, error_fields=None if body is not None else error, headers=all_headers
        )

    @classmethod
    def raw(
        cls,
        body: bytes | str,
        *,
        status: int = 200,
        content_type: str = "text/plain; charset=utf-8",
        headers: Mapping[str, str | None] | None = None,
    ) -> Reply:
        """Return a reply whose body is *body* exactly (a ``str`` is encoded as UTF-8)."""
        data = body.encode() if isinstance(body, str) else bytes(body)
        return cls(kind="body", status=status, body=data, content_type=content_type, headers=headers)

    @classmethod
    def html(cls, status: int = 502, html: str | None = None) -> Reply:
        """Return an HTML error page, as a proxy in front of the API sends (``502 Bad Gateway`` by default)."""
        if html is None:
            title = f"{status} {_phrase(status)}"
            html = (
                f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
                "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            )
        return cls.raw(html, status=status, content_type="text/html")

    # ------------------------------------------------------------------ streams

    @classmethod
    def stream(
        cls,
        chunks: Iterable[StreamItem] | None = None,
        *,
        delay: float = 0.0,
        first_delay: float | None = None,
        done: bool = True,
        status: int = 200,
        headers: Mapping[str, str | None] | None = None,
    ) -> Reply:
        """Return a streamed reply (``text/event-stream``), one event per item, then ``data: [DONE]``.

        *chunks* defaults to the default answer's chunks for the request. *delay* is waited before
        every event after the first, *first_delay* (default *delay*) before the first one.
        ``done=False`` ends the stream without ``data: [DONE]``.
        """
        return cls(
            kind="stream",
            chunks=chunks,
            delay=delay,
            first_delay=first_delay,
            done=done,
            status=status,
            headers=headers,
        )

    @classmethod
    def stream_cut(
        cls,
        after: int = 1,
        *,
        mid_event: bool = False,
        reset: bool = False,
        chunks: Iterable[StreamItem] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """Return a stream whose connection is closed after *after* events, without ending the body.

        ``mid_event=True`` first sends the first half of the next event; ``reset=True`` aborts with
        a TCP reset.
        """
        inject: tuple[StreamItem, ...] = (_HALF_NEXT, Cut(reset=reset)) if mid_event else (Cut(reset=reset),)
        return cls(kind="stream", chunks=chunks, delay=delay, inject_after=_count(after), inject=inject)

    @classmethod
    def stream_malformed(
        cls,
        after: int = 1,
        *,
        event: str | bytes | None = None,
        chunks: Iterable[StreamItem] | None = None,
    ) -> Reply:
        """Return a stream with a malformed event (JSON that does not parse) after *after* events.

        The rest of the stream and ``data: [DONE]`` follow, so a client that skips the bad event
        instead of reporting it is caught.
        """
        return cls(kind="stream", chunks=chunks, inject_after=_count(after), inject=(event or _BROKEN_EVENT,))

    @classmethod
    def stream_error(
        cls,
        message: str = "Internal server error",
        *,
        after: int = 1,
        type: str = "internal_server_error",
        code: str | None = None,
        chunks: Iterable[StreamItem] | None = None,
    ) -> Reply:
        """Return a stream with an error event after *after* events, spelled in the server's dialect.

        Mistral's is ``data: {"object": "error", "message": …, "type": …, "code": …}``, OpenAI's
        ``data: {"error": {"message": …, "type": …, "code": …}}``. The rest of the stream and
        ``data: [DONE]`` follow.
        """
        event = _ErrorEvent(message=message, type=type, code=code)
        return cls(kind="stream", chunks=chunks, inject_after=_count(after), inject=(event,))

    @classmethod
    def stream_stall(
        cls,
        seconds: float,
        *,
        after: int = 1,
        chunks: Iterable[StreamItem] | None = None,
    ) -> Reply:
        """Return a stream that pauses *seconds* after *after* events, then sends the rest."""
        return cls(kind="stream", chunks=chunks, inject_after=_count(after), inject=(Pause(seconds),))

    # ------------------------------------------------------------------ connection faults

    @classmethod
    def drop(cls, *, reset: bool = False) -> Reply:
        """Return a reply that closes the connection before sending any byte (``reset=True``: a TCP reset)."""
        return cls(kind="drop", reset=reset)

    @classmethod
    def delayed(cls, seconds: float, reply: Reply | None = None) -> Reply:
        """Return *reply* (default: :meth:`default`) after *seconds* of silence before its status line.

        No byte comes before it — as from a server still generating a plain answer — so a client's
        read timeout shorter than *seconds* ends the attempt before any response arrived.
        """
        return attrs.evolve(reply or cls.default(), head_delay=seconds)

    @classmethod
    def stall(cls, seconds: float, reply: Reply | None = None) -> Reply:
        """Return *reply* (default: :meth:`default`) with *seconds* of silence between its headers and its body."""
        return attrs.evolve(reply or cls.default(), stall_seconds=seconds)

    @classmethod
    def truncated(cls, reply: Reply | None = None, *, at: int | None = None) -> Reply:
        """Return *reply* (default: the default JSON answer) cut after *at* body bytes (default: half).

        The ``Content-Length`` announces the whole body; the connection is closed after *at* bytes.
        """
        base = reply or cls.json()
        if base.kind == "default":
            base = attrs.evolve(base, kind="body")
        if base.kind != "body":
            raise ValueError(f"truncated: a {base.kind!r} reply has no body to cut; use stream_cut for streams")
        return attrs.evolve(base, truncate_at=-1 if at is None else _count(at))

    @classmethod
    def trickle(cls, reply: Reply | None = None, *, chunk_size: int = 1, delay: float = 0.01) -> Reply:
        """Return *reply* (default: :meth:`default`) written *chunk_size* bytes at a time, *delay* seconds apart.

        For a stream, each event is trickled in turn.
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size: {chunk_size!r} is not a positive integer")
        return attrs.evolve(reply or cls.default(), write_size=chunk_size, write_delay=delay)


def _count(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a count of events or bytes >= 0")
    return value


class _HalfNext:
    """Stream placeholder: the first half of the next event's bytes."""

    def __repr__(self) -> str:
        return "<first half of the next event>"


_HALF_NEXT: Final[Any] = _HalfNext()


class _ErrorEvent(dict[str, Any]):
    """An error event: Mistral's body, which the server respells in its dialect (see :meth:`Reply.stream_error`)."""

    def __init__(self, message: str, type: str, code: str | None) -> None:
        super().__init__(object="error", message=message, type=type, param=None, code=code)


@attrs.frozen
class _Partial:
    """The first half of *item*'s bytes (what a connection cut mid-event leaves)."""

    item: Any


# ------------------------------------------------------------------------------------ recordings


class Headers(dict[str, str]):
    """Request headers: names lower-cased, lookups case-insensitive, secrets redacted in ``repr``."""

    __slots__ = ()

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        """Return the header *name* (any case), or *default*."""
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def __repr__(self) -> str:
        shown = {k: ("<redacted>" if k in _SECRET_HEADERS else v) for k, v in self.items()}
        return f"Headers({shown!r})"


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One request as the server received it.

    ``json`` is the parsed body (``None`` if it was empty or not JSON), ``request`` the parsed
    request (``None`` if the body did not parse or validate; ``error`` then says why).
    ``connection_id`` numbers TCP connections from 1: equal ids mean a reused connection.
    ``index`` numbers recorded requests from 0 (it keeps counting when *max_recorded* drops old ones).
    """

    index: int
    method: str
    path: str
    headers: Headers
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    json: Any = None
    request: ChatCompletionRequest | None = None
    error: ValidationError | None = None
    connection_id: int = 0
    request_id: str = ""

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header's value, or ``None``."""
        return self.headers.get("authorization")  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------- the wire (dialect)


_PATH_TOKEN: Final = re.compile(r"\[(\d+)\]|\[(['\"])(.*?)\2\]|([^.\[\]]+)")


def _loc(path: str) -> list[str | int]:
    """Return an error path as the API's ``loc``: ``messages[0].content`` → ``["body", "messages", 0, "content"]``."""
    loc: list[str | int] = ["body"]
    for index, _, key, name in _PATH_TOKEN.findall(path):
        loc.append(int(index) if index else (key or name))
    return loc


def _detail_type(message: str) -> str:
    if message == "is required":
        return "missing"
    if message.startswith("is not a known field"):
        return "extra_forbidden"
    return "value_error"


_MISSING: Final[Any] = object()


def _input_at(value: Any, loc: Sequence[str | int]) -> Any:
    """Return the part of the request body at *loc* (after ``"body"``), or ``None`` where there is none."""
    node = value
    for key in loc[1:]:
        found = (isinstance(node, Mapping) and isinstance(key, str) and key in node) or (
            isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        )
        if not found:
            return None
        node = node[key]
    return node


_ALPHANUMERIC: Final = string.ascii_letters + string.digits
_MISTRAL_TOOL_CALL_ID: Final = re.compile(r"[a-zA-Z0-9]{9}")


def _alphanumeric(seed: str, length: int) -> str:
    """Return *length* characters of ``[a-zA-Z0-9]`` derived from *seed* (deterministic)."""
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    out = []
    for _ in range(length):
        number, rest = divmod(number, len(_ALPHANUMERIC))
        out.append(_ALPHANUMERIC[rest])
    return "".join(out)


def _tool_call_ids(request: ChatCompletionRequest) -> Iterator[str]:
    """Yield every tool-call id *request* sends: assistant tool calls' ``id`` and tool messages' ``tool_call_id``."""
    for message in request.messages:
        if isinstance(message, AssistantMessage):
            for call in message.tool_calls or ():
                if isinstance(call.id, str):
                    yield call.id
        elif isinstance(message, ToolMessage) and isinstance(message.tool_call_id, str):
            yield message.tool_call_id


class _MistralWire:
    """How Mistral's API spells bodies and errors (the seam for other dialects)."""

    path: Final = CHAT_COMPLETIONS_PATH
    validation_status: ClassVar[int] = 422
    request_id_headers: ClassVar[tuple[str, ...]] = ("mistral-correlation-id", "x-request-id")

    @staticmethod
    def parse_request(value: Any) -> ChatCompletionRequest:
        return ChatCompletionRequest.from_dict(value)

    @staticmethod
    def check(request: ChatCompletionRequest) -> ChatCompletionRequest:
        return request.validate()

    @staticmethod
    def refusal(request: ChatCompletionRequest) -> tuple[int, dict[str, Any]] | None:
        """Return ``(status, body)`` when the API refuses a request that parses and validates, else ``None``.

        Mistral's API answers 400 to a tool-call id that is not 9 characters of ``[a-zA-Z0-9]``.
        """
        for call_id in _tool_call_ids(request):
            if not _MISTRAL_TOOL_CALL_ID.fullmatch(call_id):
                message = f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9."
                return 400, {
                    "object": "error",
                    "message": message,
                    "type": "invalid_function_call",
                    "param": None,
                    "code": "3280",
                }
        return None

    @staticmethod
    def tool_call_id(seed: str) -> str:
        """Return a tool-call id as the API makes them: 9 characters of ``[a-zA-Z0-9]``."""
        return _alphanumeric(seed, 9)

    @staticmethod
    def response_id(digest: str) -> str:
        """Return a completion id as the API makes them (32 hex digits)."""
        return digest[:32]

    @staticmethod
    def error_names(status: int, type_: str | None, code: str | None) -> tuple[str, str | None]:
        """Return the error ``type`` and ``code`` for an error reply, defaulting to the dialect's names for *status*."""
        return (type_ or _error_type(status), code)

    @staticmethod
    def models_body(models: Sequence[str], created: int) -> dict[str, Any]:
        """Return the body of ``GET /v1/models``: Mistral's model list (base model cards)."""
        capabilities = {"completion_chat": True, "function_calling": True, "completion_fim": False, "vision": True}
        cards: list[dict[str, Any]] = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "mistralai",
                "capabilities": capabilities,
                "name": name,
                "description": "A model served by chatdsl's LocalServer",
                "max_context_length": 131072,
                "aliases": [],
                "deprecation": None,
                "default_model_temperature": 0.3,
                "type": "base",
            }
            for name in models
        ]
        return {"object": "list", "data": cards}

    @staticmethod
    def not_found_body(method: str, path: str) -> dict[str, Any]:
        return {"detail": "Not Found"}

    @staticmethod
    def method_not_allowed_body(method: str, path: str) -> dict[str, Any]:
        return {"detail": "Method Not Allowed"}

    @staticmethod
    def stream_chunks(chunks: list[CompletionChunk], request: ChatCompletionRequest) -> list[CompletionChunk]:
        return chunks

    @staticmethod
    def error_body(message: Any, type_: str, code: str | None) -> dict[str, Any]:
        return {"object": "error", "message": message, "type": type_, "param": None, "code": code}

    @staticmethod
    def unauthorized_body(request_id: str) -> dict[str, Any]:
        return {"message": "Unauthorized", "request_id": request_id}

    @staticmethod
    def validation_body(error: ValidationError, value: Any = None) -> dict[str, Any]:
        """Mistral's 422: its error object with the validation details as the message."""
        details = []
        for path, message in error.errors:
            loc = _loc(path)
            details.append({"type": _detail_type(message), "loc": loc, "msg": message, "input": _input_at(value, loc)})
        return _MistralWire.error_body({"detail": details}, "invalid_request_error", None)

    @staticmethod
    def json_invalid_body(exc: json.JSONDecodeError) -> dict[str, Any]:
        detail = {"type": "json_invalid", "loc": ["body", exc.pos], "msg": f"JSON decode error: {exc.msg}", "input": {}}
        return _MistralWire.error_body({"detail": [detail]}, "invalid_request_error", None)

    @staticmethod
    def response_body(response: ChatCompletionResponse) -> dict[str, Any]:
        return response.to_dict()

    @staticmethod
    def chunk_body(chunk: CompletionChunk, *, first: bool) -> dict[str, Any]:
        data = chunk.to_dict()
        if not first:  # the API names the role in the first delta only
            for choice in data.get("choices") or ():
                if isinstance(choice.get("delta"), dict):
                    choice["delta"].pop("role", None)
        return data


_FINGERPRINT: Final = "fp_chatdsl_local"
_EVENT_STREAM: Final = "text/event-stream; charset=utf-8"  # what both APIs send

_OPENAI_SERVER_EXTENSIONS: Final = frozenset(
    {"top_k", "min_tokens", "repetition_penalty", "prompt_logprobs", "top_prompt_logprobs", "guardrails"}
)
"""Fields OpenAI's API lacks that OpenAI-compatible servers (vLLM and others) and Mistral's API accept."""

_OPENAI_RATE_LIMIT_HEADERS: Final[Mapping[str, str]] = {
    "x-ratelimit-limit-requests": "120",
    "x-ratelimit-remaining-requests": "119",
    "x-ratelimit-limit-tokens": "500000",
    "x-ratelimit-remaining-tokens": "499000",
}


def _openai_error(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: usage.get(key, 0) for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if usage.get("prompt_tokens_details") is not None:  # only when set: the answer reads back as it was
        out["prompt_tokens_details"] = {"cached_tokens": usage["prompt_tokens_details"].get("cached_tokens", 0)}
    out["completion_tokens_details"] = {"reasoning_tokens": 0}
    return out


def _openai_message(message: dict[str, Any], *, delta: bool) -> None:
    """Respell an assistant message (or delta) of chatdsl's wire form as OpenAI sends it, in place."""
    message.pop("prefix", None)
    content = message.get("content")
    if isinstance(content, list):  # OpenAI answers with text only
        message["content"] = "".join(part.get("text", "") for part in content if part.get("type") == "text")
    calls = message.get("tool_calls")
    if calls:
        if message.get("content") == "":
            message["content"] = None  # OpenAI: no content beside tool calls
        for position, call in enumerate(calls):
            function = call.get("function") or {}
            arguments = function.get("arguments", "")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            if delta and not function.get("name") and "id" not in call:  # a continuation delta: arguments only
                calls[position] = {"index": call.get("index", position), "function": {"arguments": arguments}}
            else:
                call["function"] = {**function, "arguments": arguments}
                if not delta:
                    call.pop("index", None)
    if not delta:
        message.setdefault("refusal", None)
    elif not calls and message.get("content", "") is None:
        del message["content"]  # a delta without text has no content key (OpenAI's finish chunk: {})


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[start : start + size] for start in range(0, len(text), size)]


class _OpenAIWire(_MistralWire):
    """How OpenAI's API spells bodies and errors (as do vLLM, llama.cpp's server, Ollama, LM Studio).

    Requests are read with :func:`~chatdsl.wire.dialects.request_from_openai` (a Mistral-only field is a
    400); answers carry ``system_fingerprint`` and ``logprobs: null``; a default stream splits each
    tool call over several deltas (id and name first, then the arguments in pieces) and, when the
    request asks ``stream_options: {"include_usage": true}``, ends with a usage-only chunk; errors are
    ``{"error": {"message", "type", "param", "code"}}``; the request id is ``x-request-id``.
    """

    validation_status: ClassVar[int] = 400
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id",)

    @staticmethod
    def check(request: ChatCompletionRequest) -> ChatCompletionRequest:
        """Mistral's completeness rules, but any message may come last (OpenAI answers after any)."""
        errors = list(_completeness_errors(request, any_last=True))
        if errors:
            raise ValidationError("", "", errors=errors)
        return request

    @staticmethod
    def parse_request(value: Any) -> ChatCompletionRequest:
        """OpenAI's fields, plus the sampling extensions OpenAI-compatible servers (vLLM and others) accept."""
        if not isinstance(value, Mapping) or not _OPENAI_SERVER_EXTENSIONS.intersection(value):
            return request_from_openai(value)
        extensions = {k: v for k, v in value.items() if k in _OPENAI_SERVER_EXTENSIONS}
        request = request_from_openai({k: v for k, v in value.items() if k not in _OPENAI_SERVER_EXTENSIONS})
        return ChatCompletionRequest.from_dict({**request.to_dict(), **extensions}, allow_extra=True)

    @staticmethod
    def refusal(request: ChatCompletionRequest) -> tuple[int, dict[str, Any]] | None:
        return None

    @staticmethod
    def tool_call_id(seed: str) -> str:
        """Return a tool-call id as OpenAI makes them: ``call_`` and 24 characters of ``[a-zA-Z0-9]``."""
        return "call_" + _alphanumeric(seed, 24)

    @staticmethod
    def response_id(digest: str) -> str:
        """Return a completion id as OpenAI makes them: ``chatcmpl-…``."""
        return "chatcmpl-" + _alphanumeric(digest, 29)

    @staticmethod
    def error_names(status: int, type_: str | None, code: str | None) -> tuple[str, str | None]:
        default_type, default_code = _openai_error_type(status)
        return (type_ or default_type, code if code is not None or type_ is not None else default_code)

    @staticmethod
    def models_body(models: Sequence[str], created: int) -> dict[str, Any]:
        """Return the body of ``GET /v1/models``: OpenAI's model list."""
        data = [{"id": name, "object": "model", "created": created, "owned_by": "chatdsl"} for name in models]
        return {"object": "list", "data": data}

    @staticmethod
    def not_found_body(method: str, path: str) -> dict[str, Any]:
        return _openai_error(f"Invalid URL ({method} {path})", "invalid_request_error")

    @staticmethod
    def method_not_allowed_body(method: str, path: str) -> dict[str, Any]:
        return _openai_error(f"Method Not Allowed ({method} {path})", "invalid_request_error")

    @staticmethod
    def error_body(message: Any, type_: str, code: str | None) -> dict[str, Any]:
        return _openai_error(message if isinstance(message, str) else json.dumps(message), type_, None, code)

    @staticmethod
    def unauthorized_body(request_id: str) -> dict[str, Any]:
        return _openai_error("Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key")

    @staticmethod
    def validation_body(error: ValidationError, value: Any = None) -> dict[str, Any]:
        return _openai_error(str(error), "invalid_request_error", error.path or None)

    @staticmethod
    def json_invalid_body(exc: json.JSONDecodeError) -> dict[str, Any]:
        return _openai_error(f"We could not parse the JSON body of your request ({exc.msg}).", "invalid_request_error")

    @staticmethod
    def response_body(response: ChatCompletionResponse) -> dict[str, Any]:
        data = response.to_dict()
        for choice in data.get("choices") or ():
            _openai_message(choice["message"], delta=False)
            choice["logprobs"] = None
            choice.pop("prompt_logprobs", None)  # not in OpenAI's answers
        data["usage"] = _openai_usage(data.get("usage") or {})
        data["system_fingerprint"] = _FINGERPRINT
        return data

    @staticmethod
    def chunk_body(chunk: CompletionChunk, *, first: bool) -> dict[str, Any]:
        data = _MistralWire.chunk_body(chunk, first=first)
        for choice in data.get("choices") or ():
            if isinstance(choice.get("delta"), dict):
                _openai_message(choice["delta"], delta=True)
            choice["logprobs"] = None
            choice.pop("prompt_logprobs", None)
        if data.get("usage") is not None:
            data["usage"] = _openai_usage(data["usage"])
        else:  # OpenAI sends a usage only when the request asks for it (stream_options.include_usage)
            data.pop("usage", None)
        data["system_fingerprint"] = _FINGERPRINT
        return data

    @staticmethod
    def stream_chunks(chunks: list[CompletionChunk], request: ChatCompletionRequest) -> list[CompletionChunk]:
        options = request.extra.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        out: list[CompletionChunk] = []
        usage: UsageInfo | None = None
        for position, chunk in enumerate(chunks):
            if _opens_tool_calls(chunk, chunks[position + 1 : position + 2]):
                continue  # OpenAI names the role in the first tool-call delta, with no content
            if chunk.usage is not None:  # OpenAI sends the usage only on request, in a chunk of its own
                usage = chunk.usage
                chunk = attrs.evolve(chunk, usage=None)
            for part in _split_tool_calls(chunk):
                out.extend(_finish_apart(part))
        if include_usage and usage is not None:
            last = out[-1]
            out.append(CompletionChunk(id=last.id, model=last.model, created=last.created, usage=usage))
        return out


def _opens_tool_calls(chunk: CompletionChunk, following: Sequence[CompletionChunk]) -> bool:
    """Whether *chunk* is an empty opening delta followed by the same choice's tool calls."""
    if len(chunk.choices) != 1 or len(following) != 1 or len(following[0].choices) != 1:
        return False
    delta, after = chunk.choices[0].delta, following[0].choices[0]
    empty = delta.content == "" and not delta.tool_calls and chunk.choices[0].finish_reason is None
    return empty and after.index == chunk.choices[0].index and bool(after.delta.tool_calls)


def _finish_apart(chunk: CompletionChunk) -> list[CompletionChunk]:
    """Return *chunk* as OpenAI streams it: a finish reason comes in a chunk of its own, with an empty delta."""
    if len(chunk.choices) != 1 or chunk.choices[0].finish_reason is None:
        return [chunk]
    choice = chunk.choices[0]
    ending = CompletionResponseStreamChoice(
        index=choice.index, delta=AssistantMessage(), finish_reason=choice.finish_reason
    )
    return [
        attrs.evolve(chunk, choices=(attrs.evolve(choice, finish_reason=None),)),
        attrs.evolve(chunk, choices=(ending,)),
    ]


def _split_tool_calls(chunk: CompletionChunk) -> list[CompletionChunk]:
    """Return *chunk*, its tool calls split as OpenAI streams them: id and name first, then the arguments in pieces."""
    if len(chunk.choices) != 1 or not chunk.choices[0].delta.tool_calls:
        return [chunk]
    choice = chunk.choices[0]
    deltas: list[AssistantMessage] = []
    for position, call in enumerate(choice.delta.tool_calls or ()):
        index = position if isinstance(call.index, UnsetType) else call.index
        arguments = call.function.arguments
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        head = ToolCall(id=call.id, index=index, function=FunctionCall(name=call.function.name, arguments=""))
        deltas.append(AssistantMessage(content=choice.delta.content, tool_calls=(head,)))
        deltas += [
            AssistantMessage(tool_calls=(ToolCall(index=index, function=FunctionCall(name="", arguments=piece)),))
            for piece in _split(text, 3)
        ]
    return [
        attrs.evolve(
            chunk,
            choices=(
                CompletionResponseStreamChoice(
                    index=choice.index,
                    delta=delta,
                    finish_reason=choice.finish_reason if position == len(deltas) - 1 else None,
                ),
            ),
        )
        for position, delta in enumerate(deltas)
    ]


_WIRES: Final[dict[Dialect, _MistralWire]] = {Dialect.MISTRAL: _MistralWire(), Dialect.OPENAI: _OpenAIWire()}


# --------------------------------------------------------------------------------- default answers

_WORD: Final = re.compile(r"\S+")
_PIECE: Final = re.compile(r"\s*\S+")
_MAX_SCHEMA_DEPTH: Final = 8
_MAX_GENERATED: Final = 100  # array items and string length are capped here whatever the schema asks


def _words(text: str) -> int:
    return len(text.split())


def _truncate(text: str, max_words: int) -> tuple[str, bool]:
    matches = list(_WORD.finditer(text))
    if len(matches) <= max_words:
        return text, False
    if max_words == 0:
        return "", True
    return text[: matches[max_words - 1].end()], True


def _pieces(text: str) -> list[str]:
    """Split *text* into one piece per word (with its leading whitespace); joined they give *text*."""
    pieces = _PIECE.findall(text)
    if not pieces:
        return [text]
    rest = text[sum(map(len, pieces)) :]
    pieces[-1] += rest
    return pieces


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _resolve_ref(ref: Any, root: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


def _merge_all_of(schema: Mapping[str, Any], root: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    subs = schema.get("allOf")
    for sub in subs if isinstance(subs, list) else ():
        if isinstance(sub, Mapping) and "$ref" in sub:
            sub = _resolve_ref(sub["$ref"], root)
        if not isinstance(sub, Mapping):
            continue
        for key, value in sub.items():
            if key == "properties" and isinstance(value, Mapping):
                merged["properties"] = {**(merged.get("properties") or {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = list(dict.fromkeys([*(merged.get("required") or []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def _number(schema: Mapping[str, Any], integer: bool) -> int | float:
    """Return a number that the bounds and ``multipleOf`` of *schema* accept (1 when nothing constrains it)."""

    def get(key: str) -> float | None:
        value = schema.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    low, high, ex_low, ex_high = get("minimum"), get("maximum"), get("exclusiveMinimum"), get("exclusiveMaximum")
    if schema.get("exclusiveMinimum") is True:  # draft 4 spelling
        ex_low, low = low, None
    if schema.get("exclusiveMaximum") is True:
        ex_high, high = high, None
    lower = max((v for v in (low, ex_low) if v is not None), default=None)
    upper = min((v for v in (high, ex_high) if v is not None), default=None)
    lower_open = ex_low is not None and lower == ex_low and (low is None or ex_low >= low)
    upper_open = ex_high is not None and upper == ex_high and (high is None or ex_high <= high)
    step = get("multipleOf")
    unit = step if step is not None and step > 0 else (1 if integer else None)
    if unit is None:
        if lower is not None and upper is not None:
            return (lower + upper) / 2 if lower_open or upper_open else lower
        if lower is not None:
            return lower + 1 if lower_open else lower
        if upper is not None:
            return upper - 1 if upper_open or upper < 1 else 1
        return 1
    if lower is not None:
        k = math.ceil(lower / unit)
        if lower_open and k * unit <= lower:
            k += 1
    else:
        k = 1 if step is None else 0
        if upper is not None and (k * unit > upper or (upper_open and k * unit >= upper)):
            k = math.floor(upper / unit)
            if upper_open and k * unit >= upper:
                k -= 1
    value = k * unit
    return int(value) if integer else value


_FORMATS: Final = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri-reference": "https://example.com/",
    "uri-template": "https://example.com/{id}",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "json-pointer": "/a",
    "relative-json-pointer": "0",
    "regex": "a",
}
_MAX_VALUES: Final = 2000
"""How many JSON values one generated instance may hold (a recursive schema with a big ``minItems`` grows fast)."""

_sre: Final[Any] = importlib.import_module("re._parser")  # the regular-expression parser of :mod:`re`

_CLASS_CHARS: Final = "aA0x _-.@"


def _class_char(items: Sequence[Any]) -> str | None:
    """Return a character of the regex character class *items* (from :mod:`re`'s parser), or ``None``."""
    negate = bool(items) and items[0][0] is _sre.NEGATE
    chosen: list[str] = []
    for op, av in items[1:] if negate else items:
        if op is _sre.LITERAL:
            chosen.append(chr(av))
        elif op is _sre.RANGE:
            chosen.append(chr(av[0]))
        elif op is _sre.CATEGORY:
            chosen.append({_sre.CATEGORY_DIGIT: "0", _sre.CATEGORY_SPACE: " ", _sre.CATEGORY_WORD: "a"}.get(av, "a"))
    if not negate:
        return chosen[0] if chosen else None
    excluded = re.compile("[" + "".join(re.escape(c) for c in chosen) + "]") if chosen else None
    return next((c for c in _CLASS_CHARS if excluded is None or not excluded.match(c)), None)


_MAX_PATTERN_TEXT: Final = 2000
"""The longest string generated from a ``pattern`` (nested repeats would otherwise multiply)."""


def _from_regex(parsed: Any, extra: int, groups: dict[int, str], room: list[int] | None = None) -> str:
    """Return a string the parsed regex *parsed* matches, repeating each repeat *extra* times more than its minimum.

    At most :data:`_MAX_PATTERN_TEXT` characters are made (*room* counts what is left); past that the
    string is cut short and may not match.
    """
    room = [_MAX_PATTERN_TEXT] if room is None else room
    out: list[str] = []

    def put(text: str) -> None:
        out.append(text[: max(0, room[0])])
        room[0] -= len(text)

    for op, av in parsed:
        if room[0] <= 0:
            break
        if op is _sre.LITERAL:
            put(chr(av))
        elif op is _sre.NOT_LITERAL:
            put("b" if chr(av) == "a" else "a")
        elif op is _sre.ANY:
            put("a")
        elif op is _sre.IN:
            put(_class_char(av) or "a")
        elif op is _sre.CATEGORY:
            put(_class_char([(op, av)]) or "a")
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)):
            low, high, sub = av
            count = min(low + extra, high) if high is not _sre.MAXREPEAT else low + extra
            for _ in range(min(count, _MAX_GENERATED)):
                if room[0] <= 0:
                    break
                out.append(_from_regex(sub, extra, groups, room))
        elif op is _sre.SUBPATTERN:
            group, _, _, sub = av
            text = _from_regex(sub, extra, groups, room)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif op is _sre.BRANCH:
            out.append(_from_regex(av[1][0], extra, groups, room))
        elif op is _sre.GROUPREF:
            put(groups.get(av, ""))
        elif op is getattr(_sre, "ATOMIC_GROUP", None):
            out.append(_from_regex(av, extra, groups, room))
        # AT (anchors), ASSERT and ASSERT_NOT add no characters
    return "".join(out)


class _Instance:
    """Generates a deterministic JSON value a JSON schema accepts, within a budget of values and depth.

    What it could not satisfy (an unsupported pattern, ``minItems`` beyond the budget, contradictory
    bounds) is listed in :attr:`unmet`.
    """

    def __init__(self, root: Any) -> None:
        self.root = root
        self.left = _MAX_VALUES
        self.unmet: list[str] = []

    def miss(self, where: str, what: str) -> None:
        self.unmet.append(f"{where or '/'}: {what}")

    def value(self, schema: Any, where: str = "", name: str = "value", depth: int = 0) -> Any:
        if schema is True or not isinstance(schema, Mapping):
            return None
        if self.left <= 0:
            self.miss(where, f"not generated (the budget of {_MAX_VALUES} values is spent)")
            return None
        self.left -= 1  # every visit counts, so nothing beyond the budget is even tried
        if "$ref" in schema:
            if depth > _MAX_SCHEMA_DEPTH * 4:
                self.miss(where, f"not generated (references nest deeper than {_MAX_SCHEMA_DEPTH * 4})")
                return None
            return self.value(_resolve_ref(schema["$ref"], self.root), where, name, depth + 1)
        if "allOf" in schema:
            return self.value(_merge_all_of(schema, self.root), where, name, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
                pick = next(
                    (b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")), branches[0]
                )
                ref = isinstance(pick, Mapping) and "$ref" in pick
                branch = _resolve_ref(pick["$ref"], self.root) if ref else pick
                merged = {**rest, **branch} if isinstance(branch, Mapping) else branch
                return self.value(merged, where, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((t for t in kind if t != "null"), "null")
        if kind is None:
            if "properties" in schema or "required" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                return None
        if kind == "object":
            return self.object(schema, where, depth)
        if kind == "array":
            return self.array(schema, where, name, depth)
        if kind == "string":
            return self.string(schema, where, name)
        if kind in ("integer", "number"):
            number = _number(schema, kind == "integer")
            if not _within(schema, number):
                self.miss(where, f"{number} breaks the numeric bounds")
            return number
        if kind == "boolean":
            return True
        return None

    def object(self, schema: Mapping[str, Any], where: str, depth: int) -> dict[str, Any]:
        found = schema.get("properties")
        props: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        listed = schema.get("required")
        required = [r for r in listed if isinstance(r, str)] if isinstance(listed, list) else []
        names = list(props) if depth < _MAX_SCHEMA_DEPTH else [n for n in props if n in required]
        out = {key: self.value(props[key], f"{where}/{key}", key, depth + 1) for key in names}
        extra = schema.get("additionalProperties")
        for key in required:
            if key not in out:
                out[key] = self.value(extra if isinstance(extra, Mapping) else {}, f"{where}/{key}", key, depth + 1)
        return out

    def array(self, schema: Mapping[str, Any], where: str, name: str, depth: int) -> list[Any]:
        found = schema.get("prefixItems")
        prefix: list[Any] = found if isinstance(found, list) else []
        items = schema.get("items")
        minimum = schema.get("minItems", 0) if isinstance(schema.get("minItems"), int) else 0
        maximum = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else None
        count = min(max(minimum, len(prefix), 1 if depth < _MAX_SCHEMA_DEPTH else 0), _MAX_GENERATED)
        if items is False:
            count = len(prefix)
        if maximum is not None:
            count = min(count, maximum)
        values: list[Any] = []
        for index in range(count):
            if self.left <= 0:
                self.miss(
                    where, f"{len(values)} items instead of {count} (the budget of {_MAX_VALUES} values is spent)"
                )
                break
            sub = prefix[index] if index < len(prefix) else (items if isinstance(items, Mapping) else {})
            values.append(self.value(sub, f"{where}/{index}", name, depth + 1))
        if len(values) < minimum and self.left > 0:
            self.miss(where, f"{len(values)} items instead of minItems {minimum}")
        if schema.get("uniqueItems") and len(values) > 1 and all(isinstance(v, str) for v in values):
            values = [f"{v}{i}" if i else v for i, v in enumerate(values)]
        return values

    def string(self, schema: Mapping[str, Any], where: str, name: str) -> str:
        found_low, found_high = schema.get("minLength"), schema.get("maxLength")
        low: int = found_low if isinstance(found_low, int) else 0
        high: int | None = found_high if isinstance(found_high, int) else None
        pattern = schema.get("pattern")
        compiled = None
        if isinstance(pattern, str):
            try:
                compiled = re.compile(pattern)
            except re.error:
                self.miss(where, f"pattern {pattern!r} is not a regular expression Python reads")

        def fits(text: str) -> bool:
            sized = low <= len(text) and (high is None or len(text) <= high)
            return sized and (compiled is None or compiled.search(text) is not None)

        base = _FORMATS.get(str(schema.get("format")), name)
        candidates = [base, base + "x" * max(0, min(low, _MAX_GENERATED * 100) - len(base))]
        if high is not None:
            candidates.append(candidates[-1][:high])
        if compiled is not None:
            with contextlib.suppress(re.error, TypeError, ValueError, RecursionError, AttributeError):
                parsed = _sre.parse(pattern)
                longest = max(low, high or 0, 64)
                for extra in range(_MAX_GENERATED):  # longer and longer, until the length fits (or is past it)
                    candidates.append(_from_regex(parsed, extra, {}))
                    if fits(candidates[-1]) or len(candidates[-1]) > longest:
                        break
        text = next((c for c in candidates if fits(c)), None)
        if text is None:
            text = candidates[1] if high is None else candidates[2]
            broken = [f"pattern {pattern!r}"] if compiled is not None and not compiled.search(text) else []
            if not low <= len(text) or (high is not None and len(text) > high):
                broken.append(f"length {low}..{high if high is not None else ''}")
            self.miss(where, f"{text!r} breaks {', '.join(broken) or 'a constraint'}")
        elif schema.get("format") in _FORMATS and text != _FORMATS[schema["format"]]:
            self.miss(where, f"{text!r} is not a {schema['format']} (its length or pattern rules it out)")
        return text


def _within(schema: Mapping[str, Any], number: float) -> bool:
    """Whether *number* meets the bounds of *schema* (booleans and non-numbers constrain nothing)."""

    def bound(key: str) -> float | None:
        value = schema.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    low, high = bound("minimum"), bound("maximum")
    ex_low, ex_high = bound("exclusiveMinimum"), bound("exclusiveMaximum")
    if schema.get("exclusiveMinimum") is True:  # draft 4 spelling
        ex_low, low = low, None
    if schema.get("exclusiveMaximum") is True:
        ex_high, high = high, None
    return (
        (low is None or number >= low)
        and (high is None or number <= high)
        and (ex_low is None or number > ex_low)
        and (ex_high is None or number < ex_high)
    )


_UNMET_HEADER: Final = "x-localserver-unmet-constraints"
"""The response header that lists what a default JSON-schema answer could not meet."""

_UNMET: Final = threading.local()


@contextlib.contextmanager
def _unmet_notes() -> Iterator[list[str]]:
    """Collect, in this thread, what the default answers built inside the block could not meet."""
    notes: list[str] = []
    _UNMET.notes = notes
    try:
        yield notes
    finally:
        _UNMET.notes = None


def _unmet_header(notes: Sequence[str]) -> list[tuple[str, str | None]]:
    if not notes:
        return []
    text = " | ".join(notes).encode("ascii", "backslashreplace").decode()
    return [(_UNMET_HEADER, text if len(text) <= 1000 else text[:997] + "...")]


def _schema_instance(schema: Any, what: str = "json_schema") -> Any:
    """Return a JSON value *schema* accepts; an unsatisfiable or exotic schema gives a best effort (never raises).

    The value holds at most a budget of values; what could not be met is logged as a warning (and, in
    a reply, named in the ``x-localserver-unmet-constraints`` header).
    """
    generator = _Instance(schema)
    try:
        value = generator.value(schema)
    except (ArithmeticError, RecursionError, TypeError, ValueError):
        generator.miss("", "the schema could not be followed")
        value = {}
    if generator.unmet:
        shown = "; ".join(generator.unmet[:3]) + (
            f"; and {len(generator.unmet) - 3} more" if len(generator.unmet) > 3 else ""
        )
        logger.warning("LocalServer: the default answer to %s does not meet its schema: %s", what, shown)
        notes = getattr(_UNMET, "notes", None)
        if notes is not None:
            notes.append(f"{what}: {shown}")
    return value


def _max_tokens(request: ChatCompletionRequest) -> int | None:
    """The request's token limit: ``max_tokens``, else OpenAI's ``max_completion_tokens`` (the smaller if both)."""
    limits = [request.max_tokens, getattr(request, "max_completion_tokens", None)]
    limits.append(request.extra.get("max_completion_tokens"))
    found = [v for v in limits if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    return min(found) if found else None


# ------------------------------------------------------------------------------------------ server


DEFAULT_MAX_CONNECTIONS: Final = 64
"""How many connections :class:`LocalServer` serves at once by default."""

_CHUNK_SIZE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_CONTENT_LENGTH: Final = re.compile(r"[0-9]{1,19}")
_MAX_LINE: Final = 4096  # a chunk-size or trailer line longer than this is malformed
_MAX_TRAILERS: Final = 64
_READ_PIECE: Final = 1 << 16


def _read_exactly(rfile: Any, size: int, *, keep: bool) -> bytes | None:
    """Read *size* bytes from *rfile* in bounded pieces: them (``b""`` unless *keep*), or ``None`` if it ends first."""
    pieces: list[bytes] = []
    left = size
    while left:
        piece = rfile.read(min(left, _READ_PIECE))
        if not piece:
            return None
        left -= len(piece)
        if keep:
            pieces.append(piece)
    return b"".join(pieces)


def _json_problem(exc: BaseException) -> str:
    """Return what made a body unreadable as JSON, in the words of a JSON error message."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 ({exc.reason} at byte {exc.start})"
    if "integer string conversion" in str(exc):
        return f"an integer has more than {sys.get_int_max_str_digits()} digits"
    return str(exc)


class _Abort(Exception):
    """Raised inside a handler to end the connection at once (a cut, a drop or the server stopping)."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("connection aborted")
        self.reset = reset


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 overflows when many clients connect at once: the kernel then
    # drops connection attempts (a 1 s SYN retry) or resets them (ECONNRESET on the client's first send)
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: LocalServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread per connection, at most max_connections at once: past that, this (accepting) thread waits
        # for a connection to end, so further clients wait in the listen backlog instead of costing a thread each.
        if not self.owner._take_slot():  # the server is stopping
            self.shutdown_request(request)
            return
        try:
            self.owner._accepted(request)
            thread = threading.Thread(
                target=self.process_request_thread,
                args=(request, client_address),
                name=f"chatdsl-localserver-conn-{self.owner._conn_ids.get(request, 0)}",
                daemon=True,
            )
            self.owner._track(thread)
            thread.start()
        except BaseException:  # pragma: no cover - no thread could be started
            self.owner._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except ConnectionError as exc:  # the client reset the connection (it closed it with data unread)
            logger.debug("LocalServer: the client reset the connection (%s)", exc)
        except Exception:  # pragma: no cover - defensive: a handler bug must not kill the server
            logger.exception("LocalServer: connection handler failed")
        finally:
            self.shutdown_request(request)
            self.owner._closed(request)
            self.owner._slots.release()

    def shutdown_request(self, request: Any) -> None:
        if request in self.owner._reset:
            request.close()  # linger 0 + close without FIN = a TCP reset
            return
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:  # pragma: no cover - see above
        logger.exception("LocalServer: error on a connection")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 60.0  # idle keep-alive connections are closed after a minute

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("LocalServer: " + format, *args)

    def _dispatch(self) -> None:
        self.server.owner._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch


@attrs.define
class _Exchange:
    """The state of one request being answered."""

    handler: _Handler
    request_id: str
    recorded: RecordedRequest | None = None


Handler: TypeAlias = Callable[[RecordedRequest], "Reply | None"]


class LocalServer:
    """A chat-completions server on 127.0.0.1 for tests: real HTTP/1.1 on an ephemeral port, in a background thread.

    *api_key*: when set, a request without ``Authorization: Bearer <api_key>`` is answered 401.
    *strict*: parse and validate each body as the API would (422 otherwise); with ``False`` the
    script also answers bodies that do not parse (``recorded.request`` is then ``None``).
    *model*: the model named in default replies (default: the request's model).
    *rate_limit_headers*: the ``x-ratelimit-*`` headers sent with every response.
    *created*: the ``created`` time (Unix seconds) of default replies (default: when the server was made).
    *host* and *port*: where to listen (default: 127.0.0.1 and a free port chosen by the system).
    *max_recorded*: keep only the latest this many :attr:`requests` (default ``None``: all of them;
    ``0``: none, as ``chatdsl serve`` does).
    *max_connections*: serve at most this many connections at once (default 64); further clients
    wait to be accepted until one of them closes.
    *dialect*: ``"mistral"`` (default) or ``"openai"`` — the wire format spoken, as a real server of
    that kind would: with ``"openai"`` bodies are read as OpenAI's API reads them (a Mistral-only
    field such as ``random_seed``, ``safe_prompt`` or an assistant ``prefix`` is a 400), errors
    are ``{"error": {...}}`` with status 400 for a refused body, answers carry
    ``system_fingerprint``, ids are ``chatcmpl-…`` and ``call_…``, streamed tool calls come split over
    several deltas, a stream's finish reason comes in a chunk with an empty delta, a stream asked for
    ``stream_options.include_usage`` ends with a usage-only chunk (no other chunk has ``usage``),
    ``max_completion_tokens`` limits the answer, and the request id is sent as ``x-request-id`` only.
    The Mistral dialect refuses, as the API does, a tool-call id that is not 9 characters of
    ``[a-zA-Z0-9]`` (400).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Script replies with
    :meth:`enqueue` (first in, first out) or set :attr:`handler` to a function of the
    :class:`RecordedRequest` returning a :class:`Reply` (or ``None`` for the default).
    """

    DEFAULT_RATE_LIMIT_HEADERS: Final[Mapping[str, str]] = {
        "x-ratelimit-limit-req-minute": "120",
        "x-ratelimit-remaining-req-minute": "119",
        "x-ratelimit-limit-tokens-minute": "500000",
        "x-ratelimit-remaining-tokens-minute": "499000",
    }

    def __init__(
        self,
        *,
        api_key: str | None = None,
        strict: bool = True,
        model: str | None = None,
        rate_limit_headers: Mapping[str, str] | None = None,
        created: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        dialect: Dialect | str = Dialect.MISTRAL,
        max_recorded: int | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if max_recorded is not None and (
            isinstance(max_recorded, bool) or not isinstance(max_recorded, int) or max_recorded < 0
        ):
            raise ValueError(f"max_recorded: {max_recorded!r} is not None or a whole number of 0 or more")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections: {max_connections!r} is not a whole number of 1 or more")
        self.dialect: Final[Dialect] = Dialect.coerce(dialect)
        """The wire dialect this server speaks."""
        self._wire = _WIRES[self.dialect]
        self._api_key = api_key
        self.strict = strict
        """Whether bodies are parsed and validated strictly (422 otherwise)."""
        self.model = model
        """The model named in default replies (``None``: the request's model)."""
        defaults = self.DEFAULT_RATE_LIMIT_HEADERS if self.dialect is Dialect.MISTRAL else _OPENAI_RATE_LIMIT_HEADERS
        self.rate_limit_headers: dict[str, str] = dict(defaults if rate_limit_headers is None else rate_limit_headers)
        """The ``x-ratelimit-*`` headers sent with every response (change it at will)."""
        self.created = int(time.time()) if created is None else created
        """The ``created`` time of default replies, in Unix seconds."""
        self.handler: Handler | None = None
        """A function answering requests when the queue is empty: ``fn(recorded) -> Reply | None``."""
        self.max_body_size = 16 * 1024 * 1024
        """Request bodies above this many bytes are answered 413."""
        self._host, self._port = host, port
        self._lock = threading.Condition()
        self._queue: collections.deque[Reply] = collections.deque()
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=max_recorded)
        self._received = 0  # requests recorded so far, the ones no longer kept included
        self._refused = 0
        self.max_connections: Final = max_connections
        """The most connections served at once; further clients wait to be accepted."""
        self._slots = threading.BoundedSemaphore(max_connections)
        self._errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._sockets: dict[int, socket.socket] = {}
        self._conn_ids: dict[Any, int] = {}
        self._reset: set[Any] = set()
        self._accepted_count = 0

    def __repr__(self) -> str:
        state = f"url={self.url!r}" if self._httpd is not None else "stopped"
        auth = ", api_key=<set>" if self._api_key is not None else ""
        return f"<LocalServer {state}{auth}, requests={len(self._requests)}, open_connections={self.open_connections}>"

    # ------------------------------------------------------------------ life cycle

    def start(self) -> LocalServer:
        """Bind to an ephemeral port on 127.0.0.1 and serve in a daemon thread; return this server."""
        if self._httpd is not None:
            raise RuntimeError("LocalServer is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="chatdsl-localserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: close the listening socket and every open connection, and join the threads.

        Pauses and stalls in progress end at once. Calling it twice is harmless.
        """
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            sockets = list(self._sockets.values())
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for worker in [*threads, *([thread] if thread else [])]:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._httpd = self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give a client: ``http://127.0.0.1:PORT`` (raises if the server is not running)."""
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the server listens on."""
        if self._httpd is None:
            raise RuntimeError("LocalServer is not running; call start() or use it in a with block")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def chat_completions_url(self) -> str:
        """The full URL of the chat-completions endpoint."""
        return self.url + self._wire.path

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._httpd is not None

    # ------------------------------------------------------------------ script

    def enqueue(self, *replies: Reply) -> None:
        """Queue *replies*: each request takes the first one left; when none is left, the default applies."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"enqueue: {type(reply).__name__} is not a Reply; build one with Reply.json(...) etc.")
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """How many queued replies are still unused."""
        with self._lock:
            return len(self._queue)

    # ------------------------------------------------------------------ recordings

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, in arrival order (a copy; only the latest *max_recorded* when set).

        A request refused for its key (401) is not recorded.
        """
        with self._lock:
            return list(self._requests)

    @property
    def refused(self) -> int:
        """How many requests were answered 401 for their key (they are counted here, not recorded)."""
        with self._lock:
            return self._refused

    @property
    def last_request(self) -> RecordedRequest | None:
        """The latest request received, or ``None``."""
        with self._lock:
            return self._requests[-1] if self._requests else None

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by :attr:`handler` (each was answered with a 500)."""
        with self._lock:
            return list(self._errors)

    def clear(self) -> None:
        """Forget the recorded requests and handler errors (queued replies stay)."""
        with self._lock:
            self._requests.clear()
            self._errors.clear()

    # ------------------------------------------------------------------ connections

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections the server has accepted since it was made."""
        with self._lock:
            return self._accepted_count

    @property
    def open_connections(self) -> int:
        """How many accepted connections are still open (a client that leaks connections keeps this up)."""
        with self._lock:
            return len(self._sockets)

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Wait until no connection is open (a client's close is seen a moment later); return whether it happened."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._sockets, timeout)

    def _accepted(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._accepted_count += 1
            self._conn_ids[sock] = self._accepted_count
            self._sockets[self._accepted_count] = sock

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            conn_id = self._conn_ids.pop(sock, None)
            self._sockets.pop(conn_id or 0, None)
            self._reset.discard(sock)
            self._threads.discard(threading.current_thread())
            self._lock.notify_all()

    def _take_slot(self) -> bool:
        """Wait until fewer than *max_connections* connections are served; return ``False`` if the server stops."""
        while not self._slots.acquire(timeout=0.05):
            if self._stopping.is_set():
                return False
        return True

    def _model_names(self) -> list[str]:
        """The models ``GET /v1/models`` lists: the server's *model* (or a few of Mistral's), then those asked for."""
        names = [self.model] if self.model else list(DEFAULT_MODELS)
        with self._lock:
            asked = [r.request.model for r in self._requests if r.request is not None]
        return list(dict.fromkeys([*names, *(name for name in asked if isinstance(name, str))]))

    def _track(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads.add(thread)

    # ------------------------------------------------------------------ default answers

    def default_response(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        """Return the answer the server gives *request* when nothing is scripted (not streamed)."""
        message, finish = self._answer(request)
        if message.tool_calls:  # numbered, as the API numbers them (the stream's deltas carry the same index)
            calls = tuple(attrs.evolve(call, index=i) for i, call in enumerate(message.tool_calls))
            message = attrs.evolve(message, tool_calls=calls)
        n = request.n if isinstance(request.n, int) else 1
        prompt = sum(_words(content_text(m.content)) for m in request.messages)
        if message.tool_calls:
            completion = sum(_words(str(call.function.arguments)) for call in message.tool_calls)
        else:
            completion = _words(message.text())
        usage = UsageInfo(prompt_tokens=prompt, completion_tokens=completion * n, total_tokens=prompt + completion * n)
        return ChatCompletionResponse(
            id=self._response_id(request),
            model=self.model or (request.model if isinstance(request.model, str) else "local"),
            created=datetime.fromtimestamp(self.created, UTC),
            usage=usage,
            choices=tuple(ChatCompletionChoice(index=i, message=message, finish_reason=finish) for i in range(n)),
        )

    def default_chunks(self, request: ChatCompletionRequest) -> list[CompletionChunk]:
        """Return the chunks the server streams for *request* when nothing is scripted.

        As the APIs stream: first a chunk per choice with the role and empty content, then one chunk
        per word (a tool call comes whole in one chunk); the last chunk of each choice has its finish
        reason, and the very last one the usage. Joined, they give :meth:`default_response`. In the
        ``"openai"`` dialect each tool call is split over several chunks, the finish reason comes in a
        chunk of its own with an empty delta, and the usage comes in a last chunk of its own only
        when the request's ``stream_options`` ask for it.
        """
        response = self.default_response(request)
        chunks: list[CompletionChunk] = []
        common: dict[str, Any] = {"id": response.id, "model": response.model, "created": response.created}
        for choice in response.choices:  # as the APIs do: the role first, with empty content
            opening = CompletionResponseStreamChoice(index=choice.index, delta=AssistantMessage(content=""))
            chunks.append(CompletionChunk(choices=(opening,), **common))
        for choice in response.choices:
            message = choice.message
            if message.tool_calls:
                calls = tuple(attrs.evolve(call, index=i) for i, call in enumerate(message.tool_calls))
                deltas = [AssistantMessage(content="", tool_calls=calls)]
            else:
                deltas = [AssistantMessage(content=piece) for piece in _pieces(message.text())]
            for j, delta in enumerate(deltas):
                last = j == len(deltas) - 1
                stream_choice = CompletionResponseStreamChoice(
                    index=choice.index, delta=delta, finish_reason=choice.finish_reason if last else None
                )
                chunks.append(CompletionChunk(choices=(stream_choice,), **common))
        chunks[-1] = attrs.evolve(chunks[-1], usage=response.usage)
        return self._wire.stream_chunks(chunks, request)

    def _response_id(self, request: ChatCompletionRequest) -> str:
        body = {k: v for k, v in request.to_dict().items() if k not in ("stream", "stream_options")}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        return self._wire.response_id(digest)

    def _answer(self, request: ChatCompletionRequest) -> tuple[AssistantMessage, FinishReason]:
        messages = request.messages
        last = messages[-1] if messages else None
        user_text = next((content_text(m.content) for m in reversed(messages) if isinstance(m, UserMessage)), "")
        choice = request.tool_choice
        if isinstance(last, ToolMessage):
            text = f"The tool {self._tool_name(request, last)} returned: {content_text(last.content)}"
        elif isinstance(choice, ToolChoice) and choice.forces_call and request.tools:
            return self._tool_call(request, choice), FinishReason.TOOL_CALLS
        else:
            fmt = request.response_format
            if fmt is not UNSET and fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.json_schema is not UNSET:
                text = _dumps(_schema_instance(fmt.json_schema.schema, f"json_schema {fmt.json_schema.name!r}"))
            elif fmt is not UNSET and fmt.type is ResponseFormatType.JSON_OBJECT:
                text = _dumps({"echo": user_text})
            else:
                text = f"echo: {user_text}"
            if isinstance(last, AssistantMessage) and last.prefix is True:
                text = last.text() + text
        finish = FinishReason.STOP
        stops = (request.stop,) if isinstance(request.stop, str) else request.stop or ()
        cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
        limit = _max_tokens(request)
        if limit is not None:
            text, truncated = _truncate(text, limit)
            if truncated:
                finish = FinishReason.LENGTH
        return AssistantMessage(content=text), finish

    @staticmethod
    def _tool_name(request: ChatCompletionRequest, message: ToolMessage) -> str:
        if isinstance(message.name, str):
            return message.name
        for earlier in request.messages:
            if isinstance(earlier, AssistantMessage):
                for call in earlier.tool_calls or ():
                    if call.id == message.tool_call_id:
                        return call.function.name
        return "tool"

    def _tool_call(self, request: ChatCompletionRequest, choice: ToolChoice) -> AssistantMessage:
        tools = request.tools or ()
        name = choice.function if isinstance(choice.function, str) else tools[0].name
        tool = next((t for t in tools if t.name == name), tools[0])
        parameters = tool.function.parameters
        arguments = _schema_instance(parameters, f"tool {tool.name!r}") if parameters else {}
        if not isinstance(arguments, dict):
            arguments = {}
        earlier = sum(len(m.tool_calls or ()) for m in request.messages if isinstance(m, AssistantMessage))
        call_id = self._wire.tool_call_id(f"{self._response_id(request)}:{earlier}")
        call = ToolCall(id=call_id, function=FunctionCall(name=tool.name, arguments=_dumps(arguments)))
        return AssistantMessage(content="", tool_calls=(call,))

    # ------------------------------------------------------------------ serving

    def _serve(self, handler: _Handler) -> None:
        exchange = _Exchange(handler=handler, request_id=uuid.uuid4().hex)
        try:
            self._answer_request(exchange)
        except _Abort as abort:
            handler.close_connection = True
            if abort.reset:
                with contextlib.suppress(OSError):  # linger on, 0 seconds: close() sends a reset
                    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with self._lock:
                    self._reset.add(handler.connection)
        except OSError:  # the client went away mid-reply
            handler.close_connection = True

    def _answer_request(self, ex: _Exchange) -> None:
        h = ex.handler
        if self._api_key is not None and not self._authorized(h.headers.get("Authorization")):
            # Refused before anything else: its body is read (to answer cleanly) but neither kept nor recorded.
            with self._lock:
                self._refused += 1
            if self._read_body(ex, keep=False) is not None:
                self._send_json(ex, 401, self._wire.unauthorized_body(ex.request_id))
            return
        body = self._read_body(ex)
        if body is None:
            return
        path = h.path.split("?", 1)[0]
        value: Any = None
        request: ChatCompletionRequest | None = None
        error: ValidationError | None = None
        json_error: json.JSONDecodeError | None = None
        if body:
            try:
                value = json.loads(body)
            except json.JSONDecodeError as exc:
                json_error = exc
            except (ValueError, RecursionError) as exc:  # bad UTF-8, nesting too deep, an integer too long
                json_error = json.JSONDecodeError(_json_problem(exc), "", 0)
        if json_error is None and path == self._wire.path:
            try:
                request = self._wire.check(self._wire.parse_request(value))
            except ValidationError as exc:
                error = exc
        elif json_error is not None:
            error = ValidationError("", f"is not valid JSON ({json_error.msg})")
        headers = Headers((k.lower(), v) for k, v in h.headers.items())
        with self._lock:
            recorded = RecordedRequest(
                index=self._received,
                method=h.command,
                path=h.path,
                headers=headers,
                body=body,
                json=value,
                request=request,
                error=error,
                connection_id=self._conn_ids.get(h.connection, 0),
                request_id=ex.request_id,
            )
            self._requests.append(recorded)
            self._received += 1
        ex.recorded = recorded

        if path == MODELS_PATH and h.command == "GET":
            self._send_json(ex, 200, self._wire.models_body(self._model_names(), self.created))
            return
        if path != self._wire.path:
            self._send_json(ex, 404, self._wire.not_found_body(h.command, path))
            return
        if h.command != "POST":
            self._send_json(ex, 405, self._wire.method_not_allowed_body(h.command, path), extra=[("Allow", "POST")])
            return
        if self.strict and json_error is not None:
            self._send_json(ex, self._wire.validation_status, self._wire.json_invalid_body(json_error))
            return
        if self.strict and error is not None:
            self._send_json(ex, self._wire.validation_status, self._wire.validation_body(error, value))
            return
        refusal = self._wire.refusal(request) if self.strict and request is not None else None
        if refusal is not None:
            self._send_json(ex, *refusal)
            return
        self._send_reply(ex, self._script(recorded))

    def _authorized(self, value: str | None) -> bool:
        expected = f"Bearer {self._api_key}".encode()
        return value is not None and hmac.compare_digest(value.encode(), expected)

    def _script(self, recorded: RecordedRequest) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        handler = self.handler
        if handler is None:
            return Reply.default()
        try:
            reply = handler(recorded)
        except Exception as exc:
            with self._lock:
                self._errors.append(exc)
            logger.warning("LocalServer: the handler raised %s: %s", type(exc).__name__, exc)
            return Reply.error(500, f"LocalServer handler raised {type(exc).__name__}: {exc}")
        if reply is None:
            return Reply.default()
        if not isinstance(reply, Reply):  # untyped user code may return anything
            message = f"LocalServer handler returned {type(reply).__name__}, not a Reply or None"  # type: ignore[unreachable]
            exc = TypeError(message)
            with self._lock:
                self._errors.append(exc)
            return Reply.error(500, str(exc))
        return reply

    def _refuse(self, ex: _Exchange, status: int, message: str) -> None:
        """Answer *status* with *message* and close the connection (what is left of the body is never read)."""
        ex.handler.close_connection = True  # first, so the answer says "Connection: close"
        self._send_json(ex, status, self._wire.error_body(message, "invalid_request_error", None))

    def _read_body(self, ex: _Exchange, *, keep: bool = True) -> bytes | None:
        """Return the request body (``b""`` for none; with *keep* ``False``, read and drop it), or answer and
        return ``None``: 400 for malformed framing, 413 above :attr:`max_body_size`, whatever the framing.

        A length or chunk size is digits only (no sign, no ``0x``, no ``_``), and the limit is checked
        against it before any of that part is read.
        """
        h = ex.handler
        limit = self.max_body_size
        encodings = [e.strip().lower() for e in ",".join(h.headers.get_all("Transfer-Encoding") or ()).split(",")]
        if encodings != [""]:
            if encodings != ["chunked"]:
                self._refuse(ex, 400, "Unsupported Transfer-Encoding (only chunked is read)")
                return None
            parts: list[bytes] = []
            total = 0
            while True:
                line = h.rfile.readline(_MAX_LINE)
                size_text = line.split(b";", 1)[0].strip()
                if not line.endswith(b"\n") or not _CHUNK_SIZE.fullmatch(size_text):
                    self._refuse(ex, 400, "Malformed chunked body (a chunk size is hexadecimal digits)")
                    return None
                size = int(size_text, 16)
                if size == 0:
                    for _ in range(_MAX_TRAILERS):
                        trailer = h.rfile.readline(_MAX_LINE)
                        if trailer in (b"\r\n", b"\n", b""):
                            return b"".join(parts)
                    self._refuse(ex, 400, "Malformed chunked body (too many trailer lines)")
                    return None
                total += size
                if total > limit:
                    self._refuse(ex, 413, "Request body too large")
                    return None
                data = _read_exactly(h.rfile, size, keep=keep)
                if data is None or h.rfile.readline(3) not in (b"\r\n", b"\n"):
                    self._refuse(ex, 400, "Malformed chunked body (a chunk is shorter than its size)")
                    return None
                parts.append(data)
        lengths = {v.strip() for v in h.headers.get_all("Content-Length") or ()}
        if not lengths:
            return b""
        text = lengths.pop()
        if lengths or not _CONTENT_LENGTH.fullmatch(text):
            self._refuse(ex, 400, "Invalid Content-Length")
            return None
        length = int(text)
        if length > limit:
            self._refuse(ex, 413, "Request body too large")
            return None
        data = _read_exactly(h.rfile, length, keep=keep)
        if data is None:
            self._refuse(ex, 400, "Request body shorter than its Content-Length")
            return None
        return data

    # ------------------------------------------------------------------ writing

    def _sleep(self, ex: _Exchange, seconds: float) -> None:
        """Wait *seconds*, but end the exchange at once if the server stops or the client hangs up."""
        if seconds <= 0:
            return
        deadline = time.monotonic() + seconds
        sock = ex.handler.connection
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                readable = selector.select(min(left, 0.25))
                if self._stopping.is_set():
                    raise _Abort()
                if readable:
                    try:
                        gone = not sock.recv(1, socket.MSG_PEEK)
                    except OSError:
                        gone = True
                    if gone:
                        raise _Abort()
                    break  # the client sent more (a pipelined request): wait without watching it
        if (left := deadline - time.monotonic()) > 0 and self._stopping.wait(left):
            raise _Abort()

    def _head(
        self,
        ex: _Exchange,
        status: int,
        content_type: str,
        framing: tuple[str, str],
        extra: Iterable[tuple[str, str | None]] = (),
    ) -> bytes:
        headers: dict[str, tuple[str, str]] = {}

        def put(name: str, value: str | None) -> None:
            if value is None:
                headers.pop(name.lower(), None)
            else:
                headers[name.lower()] = (name, value)

        put("Date", email.utils.formatdate(usegmt=True))
        put("Server", "chatdsl-localserver")
        put("Content-Type", content_type)
        put(*framing)
        for name in self._wire.request_id_headers:
            put(name, ex.request_id)
        for name, limit in self.rate_limit_headers.items():
            put(name, limit)
        for name, value in extra:
            put(name, value)
        if ex.handler.close_connection:
            put("Connection", "close")
        lines = [f"HTTP/1.1 {status} {_phrase(status)}"]
        lines += [f"{name}: {value}" for name, value in headers.values()]
        logger.debug("LocalServer: %s %s -> %s", ex.handler.command, ex.handler.path, status)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write(self, ex: _Exchange, data: bytes, reply: Reply | None = None) -> None:
        if self._stopping.is_set():
            raise _Abort()
        wfile = ex.handler.wfile
        if reply is None or not reply.write_size:
            wfile.write(data)
            return
        for start in range(0, len(data), reply.write_size):
            if start:
                self._sleep(ex, reply.write_delay)
            wfile.write(data[start : start + reply.write_size])

    def _send_json(self, ex: _Exchange, status: int, body: Any, extra: Iterable[tuple[str, str | None]] = ()) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        head = self._head(ex, status, "application/json", ("Content-Length", str(len(data))), extra)
        self._write(ex, head + data)

    def _send_reply(self, ex: _Exchange, reply: Reply) -> None:
        recorded = ex.recorded
        request = recorded.request if recorded is not None else None
        kind = reply.kind
        if kind == "default":
            kind = "stream" if request is not None and request.stream is True else "body"
        self._sleep(ex, reply.head_delay)
        if kind == "drop":
            raise _Abort(reset=reply.reset)
        needs_default = reply.chunks is None if kind == "stream" else reply.body is None and reply.error_fields is None
        if needs_default and request is None:  # strict=False and a body that is no request: nothing to echo
            error = recorded.error if recorded is not None and recorded.error else ValidationError("", "is empty")
            self._send_json(ex, self._wire.validation_status, self._wire.validation_body(error))
            return
        if kind == "stream":
            self._send_stream(ex, reply, request)
        else:
            self._send_body(ex, reply, request)

    def _send_body(self, ex: _Exchange, reply: Reply, request: ChatCompletionRequest | None) -> None:
        content_type = reply.content_type
        notes: list[str] = []
        if reply.error_fields is not None:
            message, type_, code = reply.error_fields
            body: Any = self._wire.error_body(message, *self._wire.error_names(reply.status, type_, code))
        elif reply.body is None:
            assert request is not None
            with _unmet_notes() as notes:
                body = self._wire.response_body(self.default_response(request))
        elif isinstance(reply.body, ChatCompletionResponse):
            body = self._wire.response_body(reply.body)
        else:
            body = reply.body
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        if reply.truncate_at is not None:
            ex.handler.close_connection = True
        extra = [*_unmet_header(notes), *reply.headers]
        head = self._head(ex, reply.status, content_type, ("Content-Length", str(len(data))), extra)
        self._write(ex, head)
        self._sleep(ex, reply.stall_seconds)
        if reply.truncate_at is not None:
            cut = len(data) // 2 if reply.truncate_at < 0 else min(reply.truncate_at, len(data))
            self._write(ex, data[:cut], reply)
            raise _Abort()
        self._write(ex, data, reply)

    def _events(self, reply: Reply, items: Sequence[StreamItem]) -> Iterator[Any]:
        done: list[StreamItem] = ["data: [DONE]\n\n"] if reply.done else []
        sent = 0
        injected = reply.inject_after is None
        for position, item in enumerate([*items, *done]):
            if not injected and sent == reply.inject_after:
                injected = True
                yield from (_Partial(item) if extra is _HALF_NEXT else extra for extra in reply.inject)
            yield item
            if not isinstance(item, (Pause, Cut)) and position < len(items):
                sent += 1
        if not injected:
            yield from (extra for extra in reply.inject if extra is not _HALF_NEXT)

    def _encode_event(self, item: StreamItem, *, first: bool) -> bytes:
        if isinstance(item, bytes):
            return item
        if isinstance(item, str):
            return item.encode()
        if isinstance(item, CompletionChunk):
            data: Any = self._wire.chunk_body(item, first=first)
        elif isinstance(item, _ErrorEvent):
            data = self._wire.error_body(item["message"], item["type"], item["code"])
        else:
            data = dict(item)  # type: ignore[arg-type]
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

    def _send_stream(self, ex: _Exchange, reply: Reply, request: ChatCompletionRequest | None) -> None:
        items: Sequence[StreamItem]
        notes: list[str] = []
        if reply.chunks is not None:
            items = reply.chunks
        else:
            assert request is not None
            with _unmet_notes() as notes:
                items = self.default_chunks(request)
        extra = [*_unmet_header(notes), *reply.headers]
        head = self._head(ex, reply.status, _EVENT_STREAM, ("Transfer-Encoding", "chunked"), extra)
        self._write(ex, head)
        self._sleep(ex, reply.stall_seconds)
        first = True
        for item in self._events(reply, items):
            if isinstance(item, Pause):
                self._sleep(ex, item.seconds)
                continue
            if isinstance(item, Cut):
                raise _Abort(reset=item.reset)
            if isinstance(item, _Partial):
                whole = self._encode_event(item.item, first=first)
                data = whole[: max(1, len(whole) // 2)]
            else:
                data = self._encode_event(item, first=first)
            self._sleep(ex, reply.first_delay if first and reply.first_delay is not None else reply.delay)
            if data:
                self._write(ex, b"%x\r\n%s\r\n" % (len(data), data), reply)
            first = False
        self._write(ex, b"0\r\n\r\n")
