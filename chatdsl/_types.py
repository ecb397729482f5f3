"""Shared building blocks: the ``UNSET`` sentinel, JSON aliases and frozen JSON containers.

Standard library only; every other module may import from here.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any, Final, Literal, NoReturn, TypeAlias, TypeVar

__all__ = [
    "UNSET",
    "FrozenDict",
    "FrozenList",
    "JSONValue",
    "UnsetType",
    "freeze",
]


class UnsetType(enum.Enum):
    """The type of :data:`UNSET`: a field that was never given.

    ``UNSET`` is falsy and distinct from ``None``; unset request fields are not sent on the wire.
    """

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"

    def __str__(self) -> str:  # Enum's would be "UnsetType.UNSET"
        return "UNSET"

    def __format__(self, spec: str) -> str:
        return format("UNSET", spec)

    def __bool__(self) -> Literal[False]:
        return False


UNSET: Final = UnsetType.UNSET
"""Marks a field as not given: it is omitted from the wire body."""

JSONValue: TypeAlias = Any
"""Any value that JSON can carry (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``)."""

_T = TypeVar("_T")


def unset_if_none(value: _T | UnsetType | None) -> _T | UnsetType:
    """Return *value* with ``None`` read as :data:`UNSET`: in a public signature both mean "not given"."""
    return UNSET if value is None else value


def none_if_unset(value: _T | UnsetType | None) -> _T | None:
    """Return *value* with :data:`UNSET` read as ``None``: in a public signature both mean "not given"."""
    return None if value is UNSET else value


def _immutable(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is immutable; copy it with dict(...) or list(...) first")


class FrozenDict(dict[str, Any]):
    """A ``dict`` that refuses changes, used for JSON objects held by requests.

    It *is* a ``dict`` (``json``/``orjson`` encode it as one and it compares equal to a plain
    dict), so schema dicts pass through serialization untouched instead of being walked or copied.
    """

    __slots__ = ()

    __setitem__ = _immutable
    __delitem__ = _immutable
    __ior__ = _immutable
    clear = _immutable
    pop = _immutable
    popitem = _immutable
    setdefault = _immutable
    update = _immutable

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))  # like ==, blind to key order

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_dict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: object) -> FrozenDict:
        return self

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


class FrozenList(list[Any]):
    """A ``list`` that refuses changes, used for JSON arrays held by requests."""

    __slots__ = ()

    __setitem__ = _immutable
    __delitem__ = _immutable
    __iadd__ = _immutable
    __imul__ = _immutable
    append = _immutable
    clear = _immutable
    extend = _immutable
    insert = _immutable
    pop = _immutable
    remove = _immutable
    reverse = _immutable
    sort = _immutable

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_list, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: object) -> FrozenList:
        return self

    def __repr__(self) -> str:
        return f"FrozenList({list.__repr__(self)})"


def _rebuild_dict(items: dict[str, Any]) -> FrozenDict:
    return FrozenDict(items)


def _rebuild_list(items: list[Any]) -> FrozenList:
    return FrozenList(items)


_MAX_DEPTH: Final = 200

_KEEP: Final = object()
_FREEZE_KINDS: Final[dict[type, Any]] = {
    str: _KEEP,
    int: _KEEP,
    bool: _KEEP,
    type(None): _KEEP,
    FrozenDict: _KEEP,
    FrozenList: _KEEP,
    float: float,
    dict: dict,
    list: list,
    tuple: list,
}
"""How :func:`freeze` treats a value of exactly this class (anything else takes the general path)."""


def freeze(value: Any, _depth: int = 0) -> Any:
    """Return a deeply immutable copy of a JSON value (already frozen parts are shared, not copied).

    Mappings become :class:`FrozenDict`, lists and tuples :class:`FrozenList`; scalars are kept.
    Raises ``TypeError`` for values JSON cannot carry, ``ValueError`` for NaN and infinities and
    past 200 levels of nesting.

    The common types are dispatched on their exact class (a dict table, no ABC ``isinstance``);
    subclasses and other mappings take the general path, with the same result.
    """
    kind = _FREEZE_KINDS.get(value.__class__)
    if kind is _KEEP:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number; JSON cannot carry it")
        return value
    if _depth > _MAX_DEPTH:
        raise ValueError(f"JSON value is nested deeper than {_MAX_DEPTH} levels")
    if kind is dict:
        out = {}
        depth = _depth + 1
        for key, item in value.items():
            if key.__class__ is not str and not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__} {key!r}")
            out[key] = item if _FREEZE_KINDS.get(item.__class__) is _KEEP else freeze(item, depth)
        return FrozenDict(out)
    if kind is list:
        depth = _depth + 1
        return FrozenList(
            [item if _FREEZE_KINDS.get(item.__class__) is _KEEP else freeze(item, depth) for item in value]
        )
    return _freeze_other(value, _depth)


def _freeze_other(value: Any, _depth: int) -> Any:
    """The general path of :func:`freeze`: subclasses of the JSON types and other mappings."""
    if value is None or isinstance(value, (str, int, FrozenDict, FrozenList)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number; JSON cannot carry it")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__} {key!r}")
            out[key] = freeze(item, _depth + 1)
        return FrozenDict(out)
    if isinstance(value, (list, tuple)):
        return FrozenList([freeze(item, _depth + 1) for item in value])
    raise TypeError(f"{type(value).__name__} is not a JSON value: {value!r}")


def thaw(value: Any) -> Any:
    """Return a plain, mutable deep copy of a (possibly frozen) JSON value."""
    if isinstance(value, dict):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list):
        return [thaw(item) for item in value]
    return value


def short_repr(value: Any, limit: int = 80) -> str:
    """Return ``repr(value)`` cut to *limit* characters, for error messages.

    A value nested too deeply to show (``repr`` would overflow the stack) is described by its type
    instead, so building an error message never raises ``RecursionError``.
    """
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
