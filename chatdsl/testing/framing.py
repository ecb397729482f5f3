"""Reading a request body off the socket, whatever its framing, within a size limit.

:func:`read_request_body` reads ``Content-Length`` and chunked bodies; a malformed length or chunk
size (:class:`BodyRefused` with status 400) or a body over the limit (413, raised before that part
is read) ends the read. A length or chunk size is digits only (no sign, no ``0x``, no ``_``).
:func:`json_problem` words why a body that was read is not JSON.
"""

from __future__ import annotations

import re
import sys
from email.message import Message
from typing import Any, Final

__all__ = ["BodyRefused", "json_problem", "read_request_body"]

_CHUNK_SIZE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_CONTENT_LENGTH: Final = re.compile(r"[0-9]{1,19}")
_MAX_LINE: Final = 4096  # a chunk-size or trailer line longer than this is malformed
_MAX_TRAILERS: Final = 64
_READ_PIECE: Final = 1 << 16


class BodyRefused(Exception):
    """The request body cannot be read: answer *status* with *message* and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


def read_request_body(headers: Message, rfile: Any, limit: int, *, keep: bool = True) -> bytes:
    """Return the request body read from *rfile* (``b""`` for none; with *keep* ``False``, read and drop it).

    Raises :class:`BodyRefused`: 400 for malformed framing, 413 above *limit* bytes, whatever the framing.
    """
    encodings = [e.strip().lower() for e in ",".join(headers.get_all("Transfer-Encoding") or ()).split(",")]
    if encodings != [""]:
        if encodings != ["chunked"]:
            raise BodyRefused(400, "Unsupported Transfer-Encoding (only chunked is read)")
        parts: list[bytes] = []
        total = 0
        while True:
            line = rfile.readline(_MAX_LINE)
            size_text = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not _CHUNK_SIZE.fullmatch(size_text):
                raise BodyRefused(400, "Malformed chunked body (a chunk size is hexadecimal digits)")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(_MAX_TRAILERS):
                    trailer = rfile.readline(_MAX_LINE)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
                raise BodyRefused(400, "Malformed chunked body (too many trailer lines)")
            total += size
            if total > limit:
                raise BodyRefused(413, "Request body too large")
            data = _read_exactly(rfile, size, keep=keep)
            if data is None or rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BodyRefused(400, "Malformed chunked body (a chunk is shorter than its size)")
            parts.append(data)
    lengths = {v.strip() for v in headers.get_all("Content-Length") or ()}
    if not lengths:
        return b""
    text = lengths.pop()
    if lengths or not _CONTENT_LENGTH.fullmatch(text):
        raise BodyRefused(400, "Invalid Content-Length")
    length = int(text)
    if length > limit:
        raise BodyRefused(413, "Request body too large")
    data = _read_exactly(rfile, length, keep=keep)
    if data is None:
        raise BodyRefused(400, "Request body shorter than its Content-Length")
    return data


def json_problem(exc: BaseException) -> str:
    """Return what made a body unreadable as JSON, in the words of a JSON error message."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 ({exc.reason} at byte {exc.start})"
    if "integer string conversion" in str(exc):
        return f"an integer has more than {sys.get_int_max_str_digits()} digits"
    return str(exc)
