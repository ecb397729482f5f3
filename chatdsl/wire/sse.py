"""Server-sent events: bytes in, events out; then events in, completion chunks out.

:class:`SSEDecoder` follows the WHATWG "event stream" interpretation rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):

- lines end with CRLF, LF or CR; a CR at the end of one read followed by an LF at the start of the
  next is one line ending (the LF is skipped), so no line is ever cut in two;
- a UTF-8 byte order mark at the very start of the stream is dropped (also when split across reads);
- ``data:`` fields (one leading space stripped) append to the event's data, joined with ``\\n``;
  ``event:`` sets its type, ``id:`` the last event id (ignored if it holds NUL), ``retry:`` the
  reconnection time (ASCII digits only); lines starting with ``:`` are comments; other fields are
  ignored; a field name without a colon has an empty value;
- a blank line dispatches the event; an event without any ``data`` field is not dispatched;
- at the end of the stream an unfinished event is discarded (the caller decides what that means;
  :meth:`SSEDecoder.complete_lines_data` shows an event whose lines are complete but whose blank
  line never came).

Invalid UTF-8 is decoded with U+FFFD replacement characters, as the specification requires; the
decoder never fails except when an event outgrows ``max_event_size`` (a :class:`StreamError`).

Bytes are split with ``bytes.split``/``bytes.replace`` (no per-byte Python loop) and every event is
returned by the ``feed`` call that receives its final blank line: nothing is held back waiting
for more input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import attrs

from chatdsl import _json
from chatdsl._errors import StreamError, ValidationError
from chatdsl._types import short_repr
from chatdsl.model.response import CompletionChunk
from chatdsl.wire.converter import converter as _converter
from chatdsl.wire.responses import structure_response

__all__ = ["DONE", "SSEDecoder", "ServerSentEvent", "decode_chunk", "describe_error_body"]

DONE: Final = "[DONE]"
"""The data of the event that ends a chat-completion stream."""

_BOM: Final = b"\xef\xbb\xbf"


@attrs.frozen(slots=True)
class ServerSentEvent:
    """One dispatched event: its ``event`` type (``"message"`` unless set), ``data`` and last ``id``."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """An incremental event-stream decoder: :meth:`feed` it bytes as they arrive, get whole events back.

    ``max_event_size`` (bytes, ``None`` for no limit) bounds one event's data plus the line being
    read; past it :meth:`feed` raises :class:`~chatdsl.StreamError`. ``last_event_id`` and
    ``retry`` (milliseconds) hold the stream's last ``id:`` and ``retry:`` values.
    """

    __slots__ = (
        "_data",
        "_data_size",
        "_event",
        "_pending",
        "_pending_size",
        "_skip_lf",
        "_started",
        "last_event_id",
        "max_event_size",
        "retry",
    )

    def __init__(self, *, max_event_size: int | None = None) -> None:
        self.max_event_size = max_event_size
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self._pending: list[bytes] = []  # pieces of the unfinished last line (never hold CR or LF)
        self._pending_size = 0
        self._data: list[bytes] = []  # data fields of the current event
        self._data_size = 0
        self._event = b""
        self._skip_lf = False  # the previous read ended with CR: an LF starting this one is part of it
        self._started = False  # the BOM check is done

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode the next bytes of the stream; return the events they complete (often none)."""
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
        if not chunk:
            return []
        if not self._started:
            head = b"".join(self._pending) + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._pending = [head]
                self._pending_size = len(head)
                return []
            self._started = True
            self._pending = []
            self._pending_size = 0
            chunk = head[3:] if head.startswith(_BOM) else head
        if b"\r" in chunk:
            if chunk[-1] == 13:
                self._skip_lf = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        elif b"\n" not in chunk:
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            self._check_size()
            return []
        if self._pending:
            self._pending.append(chunk)
            chunk = b"".join(self._pending)
            self._pending = []
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if tail:
            self._pending.append(tail)
        self._pending_size = len(tail)
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        limit = self.max_event_size
        for line in lines:
            if not line:
                if data:
                    events.append(self._dispatch())
                    data = self._data
                else:
                    self._event = b""
                continue
            if line[:5] == b"data:":
                value = line[6:] if line[5:6] == b" " else line[5:]
            elif line[0] == 58:  # ":" starts a comment
                continue
            else:
                name, colon, value = line.partition(b":")
                if colon and value[:1] == b" ":
                    value = value[1:]
                if name == b"event":
                    self._event = value
                    continue
                if name == b"id":
                    if b"\x00" not in value:
                        self.last_event_id = value.decode("utf-8", "replace")
                    continue
                if name == b"retry":
                    if value.isdigit():
                        self.retry = int(value)
                    continue
                if name != b"data":
                    continue
            data.append(value)
            if limit is not None:
                self._data_size += len(value) + 1
                self._check_size()
        return events

    def _dispatch(self) -> ServerSentEvent:
        data = self._data
        text = (data[0] if len(data) == 1 else b"\n".join(data)).decode("utf-8", "replace")
        event = self._event.decode("utf-8", "replace") if self._event else "message"
        self._data = []
        self._data_size = 0
        self._event = b""
        return ServerSentEvent(text, event, self.last_event_id)

    def _check_size(self) -> None:
        limit = self.max_event_size
        if limit is not None and self._data_size + self._pending_size > limit:
            size = self._data_size + self._pending_size
            self._data, self._pending, self._data_size, self._pending_size = [], [], 0, 0
            raise StreamError(f"an event is larger than max_event_size ({size} > {limit} bytes)")

    def complete_lines_data(self) -> str | None:
        """Return the data of the event being read if all its lines are complete and only its blank line
        is missing (``None`` otherwise). The event stays pending: this only looks.

        A ``data: [DONE]`` line followed by the end of the body, with no blank line (some servers and
        proxies end streams so), is recognised through it.
        """
        data = self._data
        if not data or self._pending:
            return None
        return (data[0] if len(data) == 1 else b"\n".join(data)).decode("utf-8", "replace")

    @property
    def has_partial_event(self) -> bool:
        """Whether bytes of an unfinished line or event are waiting (at the end: a cut event)."""
        return bool(self._data or self._pending or self._event)


def describe_error_body(body: Any, *, limit: int = 200) -> str:
    """Return the server's message from an error body (any of the shapes the API uses), or ``""``.

    Handles ``{"message": ...}`` (also ``{"object": "error", "message", "type", "code"}``, where the
    message may itself be an object, or a list of validation findings as in
    ``{"object": "Error", "detail": [...], "message": [...], "code": 3001}``), ``{"detail": [...]}``
    (validation findings, joined as ``loc: msg``),
    ``{"detail": "..."}``, ``{"error": {"message": ...}}`` and ``{"error": "..."}``; any other JSON
    is shown compactly and plain text as its first *limit* characters.
    """
    return _describe(body, limit, 0)


_MAX_DESCRIBE_DEPTH: Final = 4


def _describe(body: Any, limit: int, depth: int) -> str:
    if depth > _MAX_DESCRIBE_DEPTH:  # nested deeper than any error shape: shown compactly
        return _compact(body, limit)
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        return _shorten(" ".join(body.split()), limit)
    if isinstance(body, list):  # validation findings, as ``detail`` (or, lately, ``message``) holds them
        return _shorten("; ".join(filter(None, (_describe_detail(item, depth + 1) for item in body))), limit)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return _describe(error["message"], limit, depth + 1)
        message = body.get("message")
        if message not in (None, "", [], {}):
            text = _describe(message, limit, depth + 1)
            if text:
                return text
        detail = body.get("detail")
        if isinstance(detail, list) and detail:
            return _shorten("; ".join(_describe_detail(item, depth + 1) for item in detail), limit)
        if isinstance(detail, str):
            return _shorten(detail, limit)
        if isinstance(error, str):
            return _shorten(error, limit)
    if body is None:
        return ""
    return _compact(body, limit)


def _compact(body: Any, limit: int) -> str:
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)  # for a message: any value
    except (TypeError, ValueError, RecursionError):
        text = short_repr(body, limit)
    return _shorten(text, limit)


def _describe_detail(item: Any, depth: int) -> str:
    if isinstance(item, dict) and "msg" in item:
        loc = item.get("loc")
        where = ".".join(str(part) for part in loc) if isinstance(loc, list) else ""
        return f"{where}: {item['msg']}" if where else str(item["msg"])
    return _describe(item, 200, depth + 1)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_structure_chunk: Callable[[Any, Any], CompletionChunk] = _converter.get_structure_hook(CompletionChunk)


_ERROR_KEYS: Final = ("error", "message", "detail")


def _is_error_body(data: dict[str, Any]) -> bool:
    """Whether a streamed JSON object is an error rather than a chunk (a chunk always has ``choices``,
    if only ``[]`` in OpenAI's usage chunk)."""
    if data.get("object") == "error":
        return True
    return "choices" not in data and any(key in data for key in _ERROR_KEYS)


def decode_chunk(event: ServerSentEvent) -> CompletionChunk:
    """Return the completion chunk an event carries; raise :class:`StreamError` for anything else.

    An ``event: error``, an ``{"object": "error", ...}`` body, an object without ``choices`` that
    carries ``error``, ``message`` or ``detail`` (the API's error shapes), data that is not JSON and
    JSON that is not a chunk are all errors, their message showing the server's words or the start
    of the data. (``[DONE]`` is the caller's business: check for :data:`DONE` first.)
    """
    try:
        data = _json.loads(event.data)
    except (ValueError, RecursionError):
        if event.event == "error":
            raise StreamError(f"the server sent an error event: {describe_error_body(event.data)}") from None
        raise StreamError(f"malformed event: its data is not JSON: {_shorten(event.data, 200)!r}") from None
    if event.event == "error" or (isinstance(data, dict) and _is_error_body(data)):
        raise StreamError(f"the server sent an error event: {describe_error_body(data) or event.data[:200]}")
    if not isinstance(data, dict):
        raise StreamError(f"malformed event: its data is not a JSON object: {_shorten(event.data, 200)!r}")
    try:
        return _structure_chunk(data, CompletionChunk)  # the converter's hook itself: the hot path
    except ValidationError as exc:
        raise StreamError(f"malformed event: not a completion chunk ({exc})") from exc
    except Exception:  # anything else the hook lets through: read it again, for a path-naming error
        try:
            return structure_response(data, CompletionChunk)
        except ValidationError as exc:
            raise StreamError(f"malformed event: not a completion chunk ({exc})") from exc
