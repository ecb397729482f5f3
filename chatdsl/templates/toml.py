"""TOML writing for template files: plain data (dicts, lists, strings, numbers, booleans) to TOML text.

Pure: no file access and no model. ``null`` has no TOML form, so a value holding one is a
:class:`~chatdsl.ValidationError` naming its path (such templates are written as ``.json``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from chatdsl._checks import type_name
from chatdsl._errors import ValidationError, nest

__all__ = ["dumps_toml"]

# ----------------------------------------------------------------------------------- TOML writer

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+\Z")
_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _escape(text: str, *, multiline: bool = False) -> str:
    out = []
    last = len(text) - 1
    for index, char in enumerate(text):
        if multiline and char == "\n":
            out.append(char)
        elif multiline and char == '"':
            # Never two unescaped quotes in a row (no accidental '"""'), and none before the closing quotes.
            out.append('\\"' if index == last or text[index + 1] == '"' else '"')
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def _toml_string(text: str, *, multiline: bool = False) -> str:
    if multiline and "\n" in text:
        # A newline right after the opening quotes is dropped by TOML readers.
        return '"""\n' + _escape(text, multiline=True) + '"""'
    return '"' + _escape(text) + '"'


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _toml_value(value: Any, path: str, *, multiline: bool = False) -> str:
    if isinstance(value, str):
        return _toml_string(value, multiline=multiline)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(path, f"{value!r} is not a finite number")
        return repr(value)
    if isinstance(value, dict):
        items = [f"{_toml_key(k)} = {_toml_value(v, nest(path, k))}" for k, v in value.items()]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, f"{path}[{i}]") for i, v in enumerate(value)) + "]"
    if value is None:
        raise ValidationError(path, "is null, which TOML cannot hold; save this template as .json")
    raise ValidationError(path, f"{value!r} is {type_name(value)}, which a template file cannot hold")


def _toml_table(lines: list[str], keys: tuple[str, ...], path: str, table: Mapping[str, Any], header: str) -> None:
    """Append *table*: its header line (*header*, if any), its plain values, then its tables in key order.

    A table holding only tables gets no header of its own: TOML defines it through its children's.
    """
    plain = [(k, v) for k, v in table.items() if not isinstance(v, dict) and not _is_table_array(v)]
    nested = [(k, v) for k, v in table.items() if isinstance(v, dict) or _is_table_array(v)]
    if header and (plain or not nested or header.startswith("[[")):
        lines += ["", header]
    for key, value in plain:
        lines.append(f"{_toml_key(key)} = {_toml_value(value, nest(path, key), multiline=True)}")
    for key, value in nested:
        names = (*keys, key)
        dotted = ".".join(_toml_key(k) for k in names)
        if isinstance(value, dict):
            _toml_table(lines, names, nest(path, key), value, f"[{dotted}]")
        else:
            for index, item in enumerate(value):
                _toml_table(lines, names, f"{nest(path, key)}[{index}]", item, f"[[{dotted}]]")


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Return *data* (JSON-like: no nulls) as TOML text that ``tomllib`` reads back equal."""
    lines: list[str] = []
    _toml_table(lines, (), "", data, "")
    return "\n".join(lines).lstrip("\n") + "\n"
