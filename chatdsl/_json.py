"""JSON text in and out: ``orjson`` (a required dependency) first, the standard library for what it refuses.

orjson is used first for speed; whatever it refuses to write (integers beyond 64 bits, lone
surrogates, indents other than 2) or to read (malformed text, ``NaN`` literals) goes through the
standard library, which then decides and words the error. Both paths give the same values, with
one exception: orjson reads an integer beyond 64 bits as a float (no chat-completion field holds
one; the request model refuses a float where it wants an integer).
"""

from __future__ import annotations

import json
from typing import Any

import orjson as _orjson

__all__ = ["dumps", "dumps_bytes", "loads"]

_EXACT = _orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_SUBCLASS


def _std_dumps(data: Any, indent: int | None) -> str:
    if indent is None:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return json.dumps(data, ensure_ascii=False, indent=indent, allow_nan=False)


def dumps_bytes(data: Any) -> bytes:
    """Return *data* as compact UTF-8 JSON bytes (the body that goes on the wire)."""
    try:
        return _orjson.dumps(data)
    except TypeError:
        pass
    return _std_dumps(data, None).encode("utf-8", "surrogatepass")


def content_key(data: Any) -> bytes | None:
    """Return compact JSON bytes naming *data*'s content, or ``None`` when orjson would have to guess.

    Values orjson writes only by converting them (dataclasses, dates, subclasses of the JSON types,
    integers beyond 64 bits) give ``None``. Enums, UUIDs and ``NaN`` still get a key (the value, its
    text, ``null``): a caller looking values up by this key must compare the found value with *data*.
    """
    try:
        return _orjson.dumps(data, option=_EXACT)
    except TypeError:
        return None


def dumps(data: Any, *, indent: int | None = None) -> str:
    """Return *data* as JSON text: compact, or indented by *indent* spaces (non-ASCII kept as it is)."""
    if indent in (None, 2):
        try:
            option = _orjson.OPT_INDENT_2 if indent == 2 else 0
            return _orjson.dumps(data, option=option).decode("utf-8")
        except TypeError:
            pass
    return _std_dumps(data, indent)


def loads(text: str | bytes | bytearray | memoryview) -> Any:
    """Return the value JSON *text* holds; raises ``ValueError`` (or ``RecursionError``) when malformed."""
    try:
        return _orjson.loads(text)
    except ValueError:
        pass  # let the standard library decide (and word the error)
    if isinstance(text, memoryview):
        text = bytes(text)
    return json.loads(text)
