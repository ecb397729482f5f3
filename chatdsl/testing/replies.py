"""Reply builders: what :class:`~chatdsl.testing.LocalServer` sends for one request.

:class:`Reply` (plain bodies, streams, connection faults), the stream items :class:`Pause` and
:class:`Cut`, the case-insensitive :class:`Headers` of a recorded request, and :func:`stream_events`,
which lays out a streamed reply's events with its injected faults. Nothing here touches a socket or
knows a dialect's spelling.
"""

from __future__ import annotations

import email.utils
import http
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias

import attrs

from chatdsl import _json
from chatdsl._errors import ValidationError
from chatdsl.model.messages import FunctionCall, ToolCall
from chatdsl.model.response import ChatCompletionResponse, CompletionChunk, FinishReason, UsageInfo

__all__ = [
    "Answer",
    "Cut",
    "ErrorEvent",
    "Headers",
    "Partial",
    "Pause",
    "Reply",
    "ReplyKind",
    "StreamItem",
    "phrase",
    "stream_events",
]

_SECRET_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"})

# ------------------------------------------------------------------------------------ stream items


def _check_pause(_: Any, attribute: Any, value: float) -> None:
    if not value >= 0:
        raise ValidationError(attribute.name, f"{value!r} is not a number of seconds >= 0")


@attrs.frozen
class Pause:
    """A stream item: wait *seconds* before the next item (the connection stays open, nothing is sent)."""

    seconds: float = attrs.field(validator=_check_pause)


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

CallSpec: TypeAlias = "ToolCall | tuple[str, Mapping[str, Any] | str] | tuple[str, Mapping[str, Any] | str, str | None]"
"""A tool call for :meth:`Reply.tool_calls`: a :class:`~chatdsl.ToolCall`, ``(name, arguments)`` or
``(name, arguments, id)``."""


def _arguments_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        try:
            parsed = _json.loads(value)
        except ValueError as exc:
            raise ValidationError(where, f"{value!r} is not JSON text ({exc})") from None
        if not isinstance(parsed, dict):
            raise ValidationError(where, f"{value!r} is not the JSON text of an object")
        return value
    if isinstance(value, Mapping):
        try:
            # the standard library, not _json: orjson would write NaN as null instead of refusing it
            return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValidationError(where, f"{value!r} is not a JSON object ({exc})") from None
    raise ValidationError(where, f"{value!r} is not a mapping or the JSON text of an object")


def _call(spec: Any, where: str) -> ToolCall:
    if isinstance(spec, ToolCall):
        return spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValidationError(where, f"{spec!r} is not a ToolCall, (name, arguments) or (name, arguments, id)")
    name, arguments, *rest = spec
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{where}.name", f"{name!r} is not a non-empty string")
    text = _arguments_text(arguments, f"{where}.arguments")
    function = FunctionCall(name=name, arguments=text)
    if rest and rest[0] is not None:
        if not isinstance(rest[0], str) or not rest[0]:
            raise ValidationError(f"{where}.id", f"{rest[0]!r} is not a non-empty string or None")
        return ToolCall(id=rest[0], function=function)
    return ToolCall(function=function)


def _check_answer(instance: Answer) -> None:
    if not isinstance(instance.content, str):
        raise ValidationError("content", f"{instance.content!r} is not a string")
    if not isinstance(instance.finish_reason, str) or not instance.finish_reason:
        raise ValidationError("finish_reason", f"{instance.finish_reason!r} is not a non-empty string")
    if instance.usage is not None and not isinstance(instance.usage, UsageInfo):
        raise ValidationError("usage", f"{instance.usage!r} is not a UsageInfo or None")
    if instance.model is not None and (not isinstance(instance.model, str) or not instance.model):
        raise ValidationError("model", f"{instance.model!r} is not a non-empty string or None")


@attrs.frozen(kw_only=True)
class Answer:
    """A scripted assistant answer (see :meth:`Reply.text`, :meth:`Reply.tool_calls`).

    The server shapes it at answer time like its default answers: in its dialect, plain or streamed
    as the request asks, tool calls without an id given one as the dialect makes them, and the
    usage (``None``) counted as for default answers.
    """

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"
    usage: UsageInfo | None = None
    model: str | None = None

    def __attrs_post_init__(self) -> None:
        _check_answer(self)


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
            raise ValidationError("headers", f"{name!r} is not a valid HTTP header name")
        if item is not None and (not isinstance(item, str) or "\r" in item or "\n" in item):
            raise ValidationError(f"headers[{name!r}]", f"{item!r} is not a single-line string or None")
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
        raise ValidationError(attribute.name, f"{value!r} is not an HTTP status code (100 to 599)")


def _non_negative(_: Any, attribute: Any, value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not value >= 0):
        raise ValidationError(attribute.name, f"{value!r} is not a number of seconds >= 0")


def _format_retry_after(value: float | datetime | timedelta | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValidationError("retry_after", f"{value!r} is not seconds >= 0, a datetime or a string")
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def phrase(status: int) -> str:
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
    answer: Answer | None = None
    """The scripted answer the server shapes for the request (``None``: the default answer)."""

    @body.validator
    def _check_body(self, attribute: Any, value: Any) -> None:
        if value is None or isinstance(value, (bytes, ChatCompletionResponse)):
            return
        try:
            json.dumps(value)  # the probe of the server's own encoder (json_text: the standard library)
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
    def text(
        cls,
        content: str,
        *,
        finish_reason: FinishReason | str = FinishReason.STOP,
        usage: UsageInfo | None = None,
        model: str | None = None,
        headers: Mapping[str, str | None] | None = None,
    ) -> Reply:
        """Return an answer whose assistant message is *content*, plain or streamed as the request asks.

        It is shaped as the server's default answers are (the dialect's ids and framing; streamed one
        word per chunk). *usage* defaults to the count the default answers make; *model* to theirs.
        """
        answer = Answer(content=content, finish_reason=_finish(finish_reason), usage=usage, model=model)
        return cls(kind="default", answer=answer, headers=headers)

    @classmethod
    def tool_call(
        cls,
        name: str,
        arguments: Mapping[str, Any] | str | None = None,
        *,
        id: str | None = None,
        content: str = "",
        usage: UsageInfo | None = None,
        model: str | None = None,
        headers: Mapping[str, str | None] | None = None,
    ) -> Reply:
        """Return an answer calling the tool *name* with *arguments* (a mapping or JSON text; default ``{}``).

        *id* defaults to one made as the server's dialect makes them (9 characters of ``[a-zA-Z0-9]``
        for Mistral, ``call_…`` for OpenAI). The finish reason is ``tool_calls``. For several calls
        at once, use :meth:`tool_calls`.
        """
        spec = (name, {} if arguments is None else arguments, id)
        return cls.tool_calls(spec, content=content, usage=usage, model=model, headers=headers)

    @classmethod
    def tool_calls(
        cls,
        *calls: CallSpec,
        content: str = "",
        usage: UsageInfo | None = None,
        model: str | None = None,
        headers: Mapping[str, str | None] | None = None,
    ) -> Reply:
        """Return an answer calling several tools at once, in order, with finish reason ``tool_calls``.

        Each call is a :class:`~chatdsl.ToolCall`, ``(name, arguments)`` or ``(name, arguments, id)``;
        a call without an id gets one made as the server's dialect makes them.
        """
        if not calls:
            raise ValidationError("calls", "() is empty; give at least one tool call")
        made = tuple(_call(spec, f"calls[{i}]") for i, spec in enumerate(calls))
        answer = Answer(content=content, tool_calls=made, finish_reason="tool_calls", usage=usage, model=model)
        return cls(kind="default", answer=answer, headers=headers)

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
        error = (message if message is not None else phrase(status), type, code)
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
            title = f"{status} {phrase(status)}"
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
        return cls(kind="stream", chunks=chunks, delay=delay, inject_after=_count(after, "after"), inject=inject)

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
        return cls(kind="stream", chunks=chunks, inject_after=_count(after, "after"), inject=(event or _BROKEN_EVENT,))

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
        event = ErrorEvent(message=message, type=type, code=code)
        return cls(kind="stream", chunks=chunks, inject_after=_count(after, "after"), inject=(event,))

    @classmethod
    def stream_stall(
        cls,
        seconds: float,
        *,
        after: int = 1,
        chunks: Iterable[StreamItem] | None = None,
    ) -> Reply:
        """Return a stream that pauses *seconds* after *after* events, then sends the rest."""
        return cls(kind="stream", chunks=chunks, inject_after=_count(after, "after"), inject=(Pause(seconds),))

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
            raise ValidationError("reply", f"a {base.kind!r} reply has no body to cut; use stream_cut for streams")
        return attrs.evolve(base, truncate_at=-1 if at is None else _count(at, "at"))

    @classmethod
    def trickle(cls, reply: Reply | None = None, *, chunk_size: int = 1, delay: float = 0.01) -> Reply:
        """Return *reply* (default: :meth:`default`) written *chunk_size* bytes at a time, *delay* seconds apart.

        For a stream, each event is trickled in turn.
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValidationError("chunk_size", f"{chunk_size!r} is not a positive integer")
        return attrs.evolve(reply or cls.default(), write_size=chunk_size, write_delay=delay)


def _finish(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("finish_reason", f"{value!r} is not a non-empty string")
    return str(value)


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(name, f"{value!r} is not a count of events or bytes >= 0")
    return value


class _HalfNext:
    """Stream placeholder: the first half of the next event's bytes."""

    def __repr__(self) -> str:
        return "<first half of the next event>"


_HALF_NEXT: Final[Any] = _HalfNext()


class ErrorEvent(dict[str, Any]):
    """An error event: Mistral's body, which the server respells in its dialect (see :meth:`Reply.stream_error`)."""

    def __init__(self, message: str, type: str, code: str | None) -> None:
        super().__init__(object="error", message=message, type=type, param=None, code=code)


@attrs.frozen
class Partial:
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


def stream_events(reply: Reply, items: Sequence[StreamItem]) -> Iterator[Any]:
    """Yield what a streamed *reply* sends: *items*, its injected items after ``inject_after`` events, ``[DONE]``.

    The first half of the next event (``mid_event``) comes as a :class:`Partial`.
    """
    done: list[StreamItem] = ["data: [DONE]\n\n"] if reply.done else []
    sent = 0
    injected = reply.inject_after is None
    for position, item in enumerate([*items, *done]):
        if not injected and sent == reply.inject_after:
            injected = True
            yield from (Partial(item) if extra is _HALF_NEXT else extra for extra in reply.inject)
        yield item
        if not isinstance(item, (Pause, Cut)) and position < len(items):
            sent += 1
    if not injected:
        yield from (extra for extra in reply.inject if extra is not _HALF_NEXT)
