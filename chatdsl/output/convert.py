"""The output converter: user-defined types (typed answers, tool arguments) from and to JSON values.

Kept apart from the wire converter and free of chatdsl's models: strict keys, ISO dates, JSON scalars
taken as they are, arrays and objects only from JSON arrays and objects. :func:`problems` flattens a
structuring error into ``(path, message)`` pairs for both converters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import is_dataclass
from datetime import datetime
from typing import Any, Final

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
    StructureHandlerNotFoundError,
)

from chatdsl import _json
from chatdsl._checks import type_name
from chatdsl._errors import OutputError, ValidationError, nest
from chatdsl._types import short_repr
from chatdsl.output.pydantic_models import is_pydantic_model, validate_pydantic


def problems(exc: BaseException, path: str = "") -> list[tuple[str, str]]:
    """Flatten a (possibly grouped) structuring error into ``(path, message)`` pairs."""
    if isinstance(exc, ValidationError):
        return [(nest(path, p), m) for p, m in exc.errors]
    if isinstance(exc, ForbiddenExtraKeysError):
        names = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        known = ", ".join(n for n in names if n != "extra")
        hint = f" (known: {known})" if known else ""
        return [(nest(path, str(key)), f"is not a known field{hint}") for key in sorted(map(str, exc.extra_fields))]
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        out: list[tuple[str, str]] = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            note_: object = note
            if isinstance(note_, AttributeValidationNote):
                out += problems(sub, nest(path, note_.name))
            elif isinstance(note_, IterableValidationNote):
                out += problems(sub, f"{path}[{note_.index!r}]")
            else:
                out += problems(sub, path)
        for sub in without:
            out += problems(sub, path)
        return out
    if isinstance(exc, KeyError):
        return [(path, "is required")]
    if isinstance(exc, StructureHandlerNotFoundError):
        return [(path, unsupported_output_type(exc.type_))]
    return [(path, f"{type(exc).__name__}: {exc}")]


_OUTPUT_TYPES: Final = (
    "use attrs classes, dataclasses, TypedDicts, pydantic models (with pydantic installed), enums, "
    "str, int, float, bool, None, datetime, date, Literal[...], unions, list[T], set[T], tuple[...], dict[str, T]"
)


def unsupported_output_type(tp: Any) -> str:
    """Return the message for a type the output converter cannot read (naming no converter internals)."""
    label = getattr(tp, "__qualname__", None) if isinstance(tp, type) else None
    return f"{label or short_repr(tp, 200)} is not a supported output type: {_OUTPUT_TYPES}"


def parse_output(content: str, cls: Any) -> Any:
    """Parse the JSON text *content* into *cls* through the converter (raising :class:`OutputError`)."""
    try:
        data = _json.loads(content)
    except (ValueError, RecursionError) as exc:
        raise OutputError(f"is not valid JSON ({exc})", content=content) from None
    return structure_output(data, cls, content=content)


def structure_output(data: Any, cls: Any, *, content: str, path: str = "") -> Any:
    """Structure parsed JSON *data* into *cls* with :data:`output_converter` (raising :class:`OutputError`).

    *content* is the raw text the data came from (kept on the error); *path* prefixes the error's path.
    """
    if cls is dict or cls is Any or cls is object:
        if cls is dict and not isinstance(data, dict):
            raise OutputError(f"is {type_name(data)}, not a JSON object", content=content, path=path)
        return data
    if isinstance(cls, type) and (attrs.has(cls) or is_dataclass(cls)) and not isinstance(data, Mapping):
        raise OutputError(f"is {type_name(data)}, not a JSON object ({cls.__name__})", content=content, path=path)
    try:
        return output_converter.structure(data, cls)
    except RecursionError:
        raise OutputError("is nested too deeply", content=content, path=path) from None
    except StructureHandlerNotFoundError as exc:  # a programming error, not the content's: no "does not fit"
        where = "" if exc.type_ is cls else f" (in {getattr(cls, '__qualname__', short_repr(cls))})"
        raise OutputError(unsupported_output_type(exc.type_) + where, content=content, path=path) from None
    except Exception as exc:
        found = [(nest(path, p), m) for p, m in problems(exc)]
        first_path, message = found[0] if found else (path, str(exc))
        text = "; ".join(f"{p}: {m}" if p else m for p, m in found) or message
        raise OutputError(
            f"does not fit {getattr(cls, '__name__', cls)} ({text})", content=content, path=first_path
        ) from None


def _make_output_converter() -> cattrs.Converter:
    """A converter for user types (answers and tool arguments): strict keys, ISO dates."""
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
    from collections.abc import Set as AbstractSet
    from datetime import date
    from typing import Union

    from cattrs.strategies import configure_union_passthrough

    conv.register_structure_hook(datetime, lambda v, _: datetime.fromisoformat(_expect(v, str)))
    conv.register_unstructure_hook(datetime, lambda v: v.isoformat())
    conv.register_structure_hook(date, lambda v, _: date.fromisoformat(_expect(v, str)))
    conv.register_unstructure_hook(date, lambda v: v.isoformat())
    # JSON scalars are taken as they are: cattrs' defaults would turn "false" into True and 2.7 into 2.
    conv.register_structure_hook(str, lambda v, _: _expect(v, str))
    conv.register_structure_hook(bool, lambda v, _: _expect(v, bool))
    conv.register_structure_hook(int, lambda v, _: _expect(v, int))
    conv.register_structure_hook(float, lambda v, _: float(_expect(v, float)))
    sets = (set, frozenset, AbstractSet)
    conv.register_unstructure_hook_func(  # JSON has no sets: they are written as arrays
        lambda t: t in sets or getattr(t, "__origin__", None) in sets,
        lambda value: [conv.unstructure(item) for item in value],
    )
    _configure_json_shapes(conv)
    conv.register_structure_hook_func(is_pydantic_model, validate_pydantic)
    configure_union_passthrough(Union[str, int, float, bool, None], conv)  # noqa: UP007 - a runtime union object
    return conv


def _configure_json_shapes(conv: cattrs.Converter) -> None:
    """Make arrays need JSON arrays and objects need JSON objects (cattrs would take "abc" as a list)."""
    from collections.abc import MutableMapping, MutableSequence, MutableSet, Sequence
    from collections.abc import Set as AbstractSet
    from types import GenericAlias

    from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory

    sequences = (list, tuple, Sequence, MutableSequence)
    sets = (set, frozenset, AbstractSet, MutableSet)
    mappings = (dict, Mapping, MutableMapping)

    def origin(tp: Any) -> Any:
        return getattr(tp, "__origin__", None) or tp

    def shaped(kind: type, what: str, inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def structure(value: Any, tp: Any) -> Any:
            if not isinstance(value, kind) or isinstance(value, str):
                raise TypeError(f"{short_repr(value)} is {type_name(value)}, not {what}")
            return inner(value, tp)

        return structure

    def arrays(tp: Any) -> Callable[[Any, Any], Any]:
        args = getattr(tp, "__args__", ())
        inner: Callable[[Any, Any], Any]
        if origin(tp) is tuple:
            if not args:
                inner = lambda value, _: tuple(value)  # noqa: E731
            elif len(args) == 2 and args[1] is Ellipsis:
                inner = homogenous_tuple_structure_factory(tp, conv)
            else:
                hetero = conv.gen_structure_hetero_tuple(tp)

                def inner(value: Any, t: Any) -> Any:
                    if len(value) != len(args):
                        raise ValueError(f"has {len(value)} items, not {len(args)}")
                    return hetero(value, t)

        elif origin(tp) in sets:
            item_list: Any = GenericAlias(list, args[:1]) if args else list
            as_list = list_structure_factory(item_list, conv)
            kind = set if origin(tp) in (set, MutableSet) else frozenset
            inner = lambda value, _: kind(as_list(value, list))  # noqa: E731
        else:
            inner = list_structure_factory(tp, conv)
        return shaped(list, "a JSON array", inner)

    def objects(tp: Any) -> Callable[[Any, Any], Any]:
        if isinstance(tp, type) and (attrs.has(tp) or is_dataclass(tp)):
            cls: Any = tp
            return shaped(Mapping, "a JSON object", conv.gen_structure_attrs_fromdict(cls))
        return shaped(Mapping, "a JSON object", conv.gen_structure_mapping(tp))

    conv.register_structure_hook_factory(lambda t: origin(t) in sequences or origin(t) in sets, arrays)
    conv.register_structure_hook_factory(
        lambda t: origin(t) in mappings or (isinstance(t, type) and (attrs.has(t) or is_dataclass(t))), objects
    )


def _expect(value: Any, kind: type) -> Any:
    """Return *value* if JSON gave it as *kind* (a float may be any JSON number; a bool is no number)."""
    ok = isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
    if not ok or (kind is not bool and isinstance(value, bool)):
        names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
        raise TypeError(f"{short_repr(value)} is {type_name(value)}, not {names[kind]}")
    return value


output_converter: Final = _make_output_converter()
"""Structures user-defined types from JSON answers (kept apart from the wire converter)."""
