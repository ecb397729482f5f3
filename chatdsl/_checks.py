"""attrs validators that raise :class:`~chatdsl.ValidationError` naming field, value and rule.

Every validator lets :data:`~chatdsl.UNSET` through: an unset field has nothing to check.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from chatdsl._errors import ValidationError
from chatdsl._json import content_key
from chatdsl._types import UNSET, FrozenDict, freeze, short_repr

Validator = Callable[[Any, Any, Any], None]


def fail(field: str, value: Any, rule: str) -> ValidationError:
    """Return the error for *field* holding *value* that breaks *rule*."""
    return ValidationError(field, f"{short_repr(value)} {rule}")


def article(name: str) -> str:
    """Return *name* with its article: ``a message``, ``an int``."""
    return f"an {name}" if name[:1] in "aeiouAEIOU" else f"a {name}"


def type_name(value: Any) -> str:
    """Return the type of *value* with its article: ``a str``, ``an int`` (``UNSET``: ``the UNSET marker``)."""
    if value is UNSET:
        return "the UNSET marker"
    return article(type(value).__name__)


def json_value() -> Validator:
    """Any value JSON can carry (finite numbers only); lists and mappings are checked deeply."""

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET:
            return
        try:
            freeze(value)
        except (TypeError, ValueError) as exc:
            raise fail(attribute.name, value, f"is not a JSON value ({exc})") from None

    return check


def number(minimum: float | None = None, maximum: float | None = None) -> Validator:
    """A finite int or float (never a bool) within the inclusive bounds."""

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(attribute.name, value, f"is {type_name(value)}, not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise fail(attribute.name, value, "is not a finite number")
        if minimum is not None and value < minimum:
            raise fail(attribute.name, value, f"is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise fail(attribute.name, value, f"is above the maximum {maximum}")

    return check


def integer(minimum: int | None = None) -> Validator:
    """An int (never a bool) at or above *minimum*."""

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(attribute.name, value, f"is {type_name(value)}, not an integer")
        if minimum is not None and value < minimum:
            raise fail(attribute.name, value, f"is below the minimum {minimum}")

    return check


def string(*, non_empty: bool = False, nullable: bool = False) -> Validator:
    """A str (optionally non-empty; optionally ``None``)."""

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET or (nullable and value is None):
            return
        if not isinstance(value, str):
            raise fail(attribute.name, value, f"is {type_name(value)}, not a string")
        if non_empty and not value:
            raise fail(attribute.name, value, "is empty; a non-empty string is required")

    return check


def boolean() -> Validator:
    """A bool."""

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET:
            return
        if not isinstance(value, bool):
            raise fail(attribute.name, value, f"is {type_name(value)}, not a boolean")

    return check


def json_object(*, nullable: bool = False) -> Validator:
    """A (frozen) JSON object."""

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET or (nullable and value is None):
            return
        if not isinstance(value, FrozenDict):
            if isinstance(value, Mapping):
                try:
                    freeze(value)
                except (TypeError, ValueError) as exc:
                    raise fail(attribute.name, value, f"is not a JSON object ({exc})") from None
            raise fail(attribute.name, value, f"is {type_name(value)}, not a JSON object")

    return check


def instance_of(*types: type, nullable: bool = False, what: str | None = None) -> Validator:
    """An instance of one of *types*."""
    names = what or " or ".join(t.__name__ for t in types)

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET or (nullable and value is None):
            return
        if not isinstance(value, types):
            raise fail(attribute.name, value, f"is {type_name(value)}, not a {names}")

    return check


def items_of(*types: type, what: str | None = None, non_empty: bool = False) -> Validator:
    """A tuple whose every item is an instance of one of *types*."""
    names = what or " or ".join(t.__name__ for t in types)

    no_bools = bool not in types and int in types  # True is an int to isinstance, never to JSON schema

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET:
            return
        if not isinstance(value, tuple):
            raise fail(attribute.name, value, f"is {type_name(value)}, not a list of {names}")
        if non_empty and not value:
            raise fail(attribute.name, value, "is empty; at least one item is required")
        for index, item in enumerate(value):
            if not isinstance(item, types) or (no_bools and isinstance(item, bool)):
                raise fail(f"{attribute.name}[{index}]", item, f"is {type_name(item)}, not {article(names)}")

    return check


def member_of(enum_cls: type[enum.Enum]) -> Validator:
    """A member of the string enum *enum_cls* (converters turn plain strings into members)."""
    allowed = ", ".join(repr(m.value) for m in enum_cls)

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET:
            return
        if not isinstance(value, enum_cls):
            raise fail(attribute.name, value, f"is not one of {allowed}")

    return check


def open_enum(enum_cls: type[enum.Enum]) -> Validator:
    """A member of the string enum *enum_cls*, or any other non-empty string (a value the server may know).

    The forward-compatible rule for enum-typed request fields: known values become members (see
    :func:`to_enum`), a value the library does not know yet is kept as a plain ``str`` and sent as it is.
    """
    known = ", ".join(repr(m.value) for m in enum_cls)

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET or isinstance(value, enum_cls):
            return
        if not isinstance(value, str):
            raise fail(attribute.name, value, f"is {type_name(value)}, not a string (known values: {known})")
        if not value:
            raise fail(attribute.name, value, f"is empty; a non-empty string is required (known values: {known})")

    return check


@functools.cache
def to_enum(enum_cls: type[enum.Enum]) -> Callable[[Any], Any]:
    """A converter turning a known string into its enum member (anything else is left for the validator)."""
    lookup: Mapping[Any, Any] = {m.value: m for m in enum_cls}

    def convert(value: Any) -> Any:
        if isinstance(value, str) and not isinstance(value, enum_cls):
            return lookup.get(value, value)
        return value

    return convert


def to_frozen(value: Any) -> Any:
    """A converter freezing a JSON value (mappings and lists); anything else is left for the validator."""
    if value is UNSET or value is None or isinstance(value, FrozenDict):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        try:
            return freeze(value)
        except (TypeError, ValueError):
            return value
    return value


_SCHEMAS: dict[bytes, FrozenDict] = {}
"""Frozen JSON schemas by content (their compact JSON): see :func:`to_frozen_schema`. Emptied when full."""
_SCHEMAS_MAX = 256
_SCHEMA_KEY_MAX = 16 * 1024


def to_frozen_schema(value: Any) -> Any:
    """A converter freezing a JSON schema, sharing one frozen copy among equal schemas.

    Code that builds its tools per call passes a fresh but equal schema dict each time; freezing
    walks and copies it (most of a cold build), so a schema frozen before is looked up by its
    content and shared. Frozen values are immutable, so sharing is safe; the caller's dict is never
    kept, so changing it afterwards changes no request. A hit needs the same compact JSON *and*
    ``==`` with the frozen copy (so ``NaN``, enums, UUIDs and tuples, whose JSON looks like another
    value's, always take the full :func:`~chatdsl._types.freeze`, which then decides). The one
    difference from a fresh freeze: a ``StrEnum`` member may come back as the equal plain string.
    """
    if value.__class__ is not dict:
        return to_frozen(value)
    key = content_key(value)
    if key is None or len(key) > _SCHEMA_KEY_MAX:
        return to_frozen(value)
    frozen = _SCHEMAS.get(key)
    if frozen is not None and frozen == value:
        return frozen
    frozen = to_frozen(value)
    if isinstance(frozen, FrozenDict):  # else invalid: left for the validator, never shared
        if len(_SCHEMAS) >= _SCHEMAS_MAX:
            _SCHEMAS.clear()  # one call, safe beside other threads (unlike evicting while iterating)
        _SCHEMAS[key] = frozen
    return frozen


def plain_repr(value: Any) -> str:
    """The ``repr`` of a frozen JSON object field, as a plain dict (``{}`` when empty)."""
    return repr(dict(value)) if isinstance(value, dict) else repr(value)


def to_tuple(value: Any) -> Any:
    """A converter turning a list into a tuple (a tuple is shared as it is)."""
    if isinstance(value, tuple) or value is UNSET:
        return value
    if isinstance(value, list):
        return tuple(value)
    return value
