"""A real chat-completions server on 127.0.0.1 for tests and offline use.

:class:`LocalServer` speaks the wire protocol of ``POST /v1/chat/completions`` over real sockets:
it parses each body into a :class:`~chatdsl.ChatCompletionRequest` (answering 422 with the API's
``{"detail": [...]}`` shape when the real API would refuse it), records every request, and answers
from a script — a queue of :class:`Reply` objects or a handler function — or, by default, with a
deterministic reply derived from the request::

    from chatdsl.testing import LocalServer, Reply

    with LocalServer() as server:
        server.enqueue(Reply.error(429, "slow down", retry_after=1))  # then the default reply
        ...  # point a client at server.url
        assert server.last_request.request.model == "mistral-small-latest"

The default reply echoes the last user message (``"echo: <text>"``); ``max_tokens`` truncates it
to that many whitespace-separated words with finish reason ``length``; a JSON response format gives
a JSON answer (for ``json_schema`` an instance generated from the schema); a tool choice that forces
a call gives a tool call; after a tool message the answer summarises the tool's result. With
``"stream": true`` the same answer arrives as server-sent events, one word per event.

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
import json
import logging
import math
import re
import selectors
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, Literal, TypeAlias

import attrs

from ._dialects import Dialect, request_from_openai
from ._errors import ValidationError
from ._messages import AssistantMessage, FunctionCall, ToolCall, ToolMessage, UserMessage, content_text
from ._request import ChatCompletionRequest, _completeness_errors
from ._response import (
    ChatCompletionChoice,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionResponseStreamChoice,
    FinishReason,
    UsageInfo,
)
from ._tools import ResponseFormatType, ToolChoice
from ._types import UNSET, UnsetType

__all__ = ["Cut", "Headers", "LocalServer", "Pause", "RecordedRequest", "Reply", "StreamItem"]

logger: Final = logging.getLogger("chatdsl.testing")

CHAT_COMPLETIONS_PATH: Final = "/v1/chat/completions"

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
    error_fields: tuple[str, str, str | None] | None = None
    """``(message, type, code)`` of an error reply whose body the server renders."""
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

        *message* defaults to the status phrase and *type* to a name for the status. *retry_after*
        (seconds, a ``timedelta``, a ``datetime`` sent as an HTTP date, or a string sent as it is)
        sets the ``Retry-After`` header. A *body* (a JSON value, or ``bytes``) replaces the rendered one.
        """
        extra: list[tuple[str, str | None]] = []
        if retry_after is not None:
            extra.append(("Retry-After", _format_retry_after(retry_after)))
        all_headers = extra + list(_headers(headers))
        error = (message if message is not None else _phrase(status), type or _error_type(status), code)
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
    def not_found_body(method: str, path: str) -> dict[str, Any]:
        return {"detail": "Not Found"}

    @staticmethod
    def method_not_allowed_body(method: str, path: str) -> dict[str, Any]:
        return {"detail": "Method Not Allowed"}

    @staticmethod
    def stream_chunks(chunks: list[CompletionChunk], request: ChatCompletionRequest) -> list[CompletionChunk]:
        return chunks

    @staticmethod
    def error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
        return {"object": "error", "message": message, "type": type_, "param": None, "code": code}

    @staticmethod
    def unauthorized_body(request_id: str) -> dict[str, Any]:
        return {"message": "Unauthorized", "request_id": request_id}

    @staticmethod
    def validation_body(error: ValidationError) -> dict[str, Any]:
        return {"detail": [{"loc": _loc(p), "msg": m, "type": _detail_type(m)} for p, m in error.errors]}

    @staticmethod
    def json_invalid_body(exc: json.JSONDecodeError) -> dict[str, Any]:
        return {"detail": [{"loc": ["body", exc.pos], "msg": f"JSON decode error: {exc.msg}", "type": "json_invalid"}]}

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


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[start : start + size] for start in range(0, len(text), size)]


class _OpenAIWire(_MistralWire):
    """How OpenAI's API spells bodies and errors (as do vLLM, llama.cpp's server, Ollama, LM Studio).

    Requests are read with :func:`~chatdsl._dialects.request_from_openai` (a Mistral-only field is a
    400); answers carry ``system_fingerprint`` and ``logprobs: null``; a default stream splits each
    tool call over several deltas (id and name first, then the arguments in pieces) and, when the
    request asks ``stream_options: {"include_usage": true}``, ends with a usage-only chunk; errors are
    ``{"error": {"message", "type", "param", "code"}}``; the request id is ``x-request-id``.
    """

    validation_status: ClassVar[int] = 400
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id",)

    @staticmethod
    def parse_request(value: Any) -> ChatCompletionRequest:
        return request_from_openai(value)

    @staticmethod
    def check(request: ChatCompletionRequest) -> ChatCompletionRequest:
        """Mistral's completeness rules, but any message may come last (OpenAI answers after any)."""
        errors = list(_completeness_errors(request, any_last=True))
        if errors:
            raise ValidationError("", "", errors=errors)
        return request

    @staticmethod
    def not_found_body(method: str, path: str) -> dict[str, Any]:
        return _openai_error(f"Invalid URL ({method} {path})", "invalid_request_error")

    @staticmethod
    def method_not_allowed_body(method: str, path: str) -> dict[str, Any]:
        return _openai_error(f"Method Not Allowed ({method} {path})", "invalid_request_error")

    @staticmethod
    def error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
        return _openai_error(message, type_, None, code)

    @staticmethod
    def unauthorized_body(request_id: str) -> dict[str, Any]:
        return _openai_error("Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key")

    @staticmethod
    def validation_body(error: ValidationError) -> dict[str, Any]:
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
        if data.get("usage") is not None:
            data["usage"] = _openai_usage(data["usage"])
        data["system_fingerprint"] = _FINGERPRINT
        return data

    @staticmethod
    def stream_chunks(chunks: list[CompletionChunk], request: ChatCompletionRequest) -> list[CompletionChunk]:
        options = request.extra.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        out: list[CompletionChunk] = []
        usage: UsageInfo | None = None
        for chunk in chunks:
            if chunk.usage is not None:  # OpenAI sends the usage only on request, in a chunk of its own
                usage = chunk.usage
                chunk = attrs.evolve(chunk, usage=None)
            out.extend(_split_tool_calls(chunk))
        if include_usage and usage is not None:
            last = out[-1]
            out.append(CompletionChunk(id=last.id, model=last.model, created=last.created, usage=usage))
        return out


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
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _instance(schema: Any, root: Any, name: str = "value", depth: int = 0) -> Any:
    """Return a deterministic JSON value that *schema* accepts (common JSON-schema keywords)."""
    if schema is True or not isinstance(schema, Mapping):
        return None
    if "$ref" in schema:
        if depth > _MAX_SCHEMA_DEPTH * 4:
            return None
        return _instance(_resolve_ref(schema["$ref"], root), root, name, depth + 1)
    if "allOf" in schema:
        return _instance(_merge_all_of(schema, root), root, name, depth)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            pick = next((b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")), branches[0])
            branch = _resolve_ref(pick["$ref"], root) if isinstance(pick, Mapping) and "$ref" in pick else pick
            return _instance({**rest, **branch} if isinstance(branch, Mapping) else branch, root, name, depth + 1)
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
        found = schema.get("properties")
        props: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        listed = schema.get("required")
        required = [r for r in listed if isinstance(r, str)] if isinstance(listed, list) else []
        names = list(props) if depth < _MAX_SCHEMA_DEPTH else [n for n in props if n in required]
        out = {key: _instance(props[key], root, key, depth + 1) for key in names}
        extra = schema.get("additionalProperties")
        for key in required:
            if key not in out:
                out[key] = _instance(extra if isinstance(extra, Mapping) else {}, root, key, depth + 1)
        return out
    if kind == "array":
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
        values = []
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else (items if isinstance(items, Mapping) else {})
            values.append(_instance(sub, root, name, depth + 1))
        if schema.get("uniqueItems") and len(values) > 1 and all(isinstance(v, str) for v in values):
            values = [f"{v}{i}" if i else v for i, v in enumerate(values)]
        return values
    if kind == "string":
        text = _FORMATS.get(str(schema.get("format")), name)
        min_length, max_length = schema.get("minLength"), schema.get("maxLength")
        if isinstance(min_length, int) and len(text) < min_length:
            text += "x" * (min(min_length, _MAX_GENERATED * 100) - len(text))
        if isinstance(max_length, int) and len(text) > max_length:
            text = text[:max_length]
        return text
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    return None


def _schema_instance(schema: Any) -> Any:
    """Return a JSON value *schema* accepts; an unsatisfiable or exotic schema gives a best effort (never raises)."""
    try:
        return _instance(schema, schema)
    except (ArithmeticError, RecursionError, TypeError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------ server


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
        self.owner._accepted(request)
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"chatdsl-localserver-conn-{self.owner._conn_ids.get(request, 0)}",
            daemon=True,
        )
        self.owner._track(thread)
        thread.start()

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
    *dialect*: ``"mistral"`` (default) or ``"openai"`` — the wire format spoken, as a real server of
    that kind would: with ``"openai"`` bodies are read as OpenAI's API reads them (a Mistral-only
    field such as ``random_seed``, ``safe_prompt`` or an assistant ``prefix`` is a 400), errors
    are ``{"error": {...}}`` with status 400 for a refused body, answers carry
    ``system_fingerprint``, streamed tool calls come split over several deltas, a stream asked for
    ``stream_options.include_usage`` ends with a usage-only chunk, and the request id is sent as
    ``x-request-id`` only.

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
    ) -> None:
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
        self._requests: list[RecordedRequest] = []
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
        """The requests received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

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

        One chunk per word (a tool call comes whole in one chunk); the last chunk of each choice has
        its finish reason, and the very last one the usage. Joined, they give :meth:`default_response`.
        In the ``"openai"`` dialect each tool call is split over several chunks, and the usage
        comes in a last chunk of its own only when the request's ``stream_options`` ask for it.
        """
        response = self.default_response(request)
        chunks: list[CompletionChunk] = []
        common: dict[str, Any] = {"id": response.id, "model": response.model, "created": response.created}
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
        return f"cmpl-{digest[:24]}"

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
                text = _dumps(_schema_instance(fmt.json_schema.schema))
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
        if isinstance(request.max_tokens, int):
            text, truncated = _truncate(text, request.max_tokens)
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

    @staticmethod
    def _tool_call(request: ChatCompletionRequest, choice: ToolChoice) -> AssistantMessage:
        tools = request.tools or ()
        name = choice.function if isinstance(choice.function, str) else tools[0].name
        tool = next((t for t in tools if t.name == name), tools[0])
        arguments = _schema_instance(tool.function.parameters) if tool.function.parameters else {}
        if not isinstance(arguments, dict):
            arguments = {}
        earlier = sum(len(m.tool_calls or ()) for m in request.messages if isinstance(m, AssistantMessage))
        call = ToolCall(id=f"call_{earlier}", function=FunctionCall(name=tool.name, arguments=_dumps(arguments)))
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
            except (UnicodeDecodeError, RecursionError) as exc:
                json_error = json.JSONDecodeError(str(exc), "", 0)
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
                index=len(self._requests),
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
        ex.recorded = recorded

        if path != self._wire.path:
            self._send_json(ex, 404, self._wire.not_found_body(h.command, path))
            return
        if h.command != "POST":
            self._send_json(ex, 405, self._wire.method_not_allowed_body(h.command, path), extra=[("Allow", "POST")])
            return
        if self._api_key is not None and not self._authorized(headers.get("authorization")):
            self._send_json(ex, 401, self._wire.unauthorized_body(ex.request_id))
            return
        if self.strict and json_error is not None:
            self._send_json(ex, self._wire.validation_status, self._wire.json_invalid_body(json_error))
            return
        if self.strict and error is not None:
            self._send_json(ex, self._wire.validation_status, self._wire.validation_body(error))
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

    def _read_body(self, ex: _Exchange) -> bytes | None:
        h = ex.handler
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            size_total = 0
            while True:
                line = h.rfile.readline(1024)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._send_json(
                        ex, 400, self._wire.error_body("Malformed chunked body", "invalid_request_error", None)
                    )
                    h.close_connection = True
                    return None
                if size == 0:
                    while h.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                size_total += size
                if size_total > self.max_body_size:
                    self._send_json(
                        ex, 413, self._wire.error_body("Request body too large", "invalid_request_error", None)
                    )
                    h.close_connection = True
                    return None
                parts.append(h.rfile.read(size))
                h.rfile.readline(1024)
        try:
            length = int(h.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._send_json(ex, 400, self._wire.error_body("Invalid Content-Length", "invalid_request_error", None))
            h.close_connection = True
            return None
        if length > self.max_body_size:
            self._send_json(ex, 413, self._wire.error_body("Request body too large", "invalid_request_error", None))
            h.close_connection = True
            return None
        return h.rfile.read(length) if length else b""

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
        if reply.error_fields is not None:
            body: Any = self._wire.error_body(*reply.error_fields)
        elif reply.body is None:
            assert request is not None
            body = self._wire.response_body(self.default_response(request))
        elif isinstance(reply.body, ChatCompletionResponse):
            body = self._wire.response_body(reply.body)
        else:
            body = reply.body
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        if reply.truncate_at is not None:
            ex.handler.close_connection = True
        head = self._head(ex, reply.status, content_type, ("Content-Length", str(len(data))), reply.headers)
        self._write(ex, head)
        self._sleep(ex, reply.stall_seconds)
        if reply.truncate_at is not None:
            cut = len(data) // 2 if reply.truncate_at < 0 else min(reply.truncate_at, len(data))
            self._write(ex, data[:cut], reply)
            raise _Abort()
        self._write(ex, data, reply)

    def _events(self, reply: Reply, request: ChatCompletionRequest | None) -> Iterator[Any]:
        items: Sequence[StreamItem]
        if reply.chunks is not None:
            items = reply.chunks
        else:
            assert request is not None
            items = self.default_chunks(request)
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
        head = self._head(ex, reply.status, "text/event-stream", ("Transfer-Encoding", "chunked"), reply.headers)
        self._write(ex, head)
        self._sleep(ex, reply.stall_seconds)
        first = True
        for item in self._events(reply, request):
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
