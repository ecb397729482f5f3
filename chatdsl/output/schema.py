"""JSON Schema from Python types: attrs classes, dataclasses, enums, literals, containers, dates.

:func:`json_schema` walks a type and returns a plain JSON-schema dict (Draft 2020-12). Nested
classes go to ``$defs`` and are referenced with ``$ref`` (the root class is ``#``), so recursive
classes work. The schema describes exactly what ``chatdsl.output.convert.output_converter`` reads
back: field names as the converter uses them (attribute names, not ``__init__`` aliases), ISO
strings for dates, enum *values*, no unknown keys.

Also here: :func:`parse_docstring`, the small Google/NumPy docstring reader shared by schemas
(``Attributes`` sections) and tools from functions (``Args``/``Parameters`` sections).
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import enum
import inspect
import json
import math
import re
import types
import typing
from datetime import date, datetime
from typing import Any, Final

import attrs

from chatdsl._errors import ValidationError
from chatdsl._types import UNSET, UnsetType, short_repr
from chatdsl.output.pydantic_models import is_pydantic_model, pydantic_schema

__all__ = ["json_schema", "parse_docstring", "schema_for_response"]

_SUPPORTED: Final = (
    "str, int, float, bool, None, typing.Any, datetime, date, enum.Enum subclasses, Literal[...], "
    "X | None, unions, list[T], set[T], tuple[T, ...], tuple[A, B], dict[str, T], Annotated[T, ...], "
    "attrs classes, dataclasses and pydantic models"
)

_SEQUENCES: Final = (list, cabc.Sequence, cabc.MutableSequence)
_SETS: Final = (set, frozenset, cabc.Set, cabc.MutableSet)
_MAPPINGS: Final = (dict, cabc.Mapping, cabc.MutableMapping)


def json_schema(tp: Any, *, strict: bool = False) -> dict[str, Any]:
    """Return a JSON schema (Draft 2020-12) describing *tp*, as a new plain ``dict``.

    *tp* may be an attrs class, a dataclass, a pydantic model (its own ``model_json_schema()``,
    with pydantic installed) or any type form listed in docs/structured-outputs.md. A
    class's docstring (its first paragraph) becomes the object's ``description``; a field's
    description comes from ``metadata={"description": ...}``, else from an ``Attributes:``
    section of the class docstring, else from a string in ``Annotated[T, "..."]``.
    Fields without defaults are ``required``; defaults that JSON can carry are given as
    ``default``. Objects from classes always have ``additionalProperties: false`` (the parser
    refuses unknown keys).

    With ``strict=True`` every property is required and no defaults are given, as strict
    structured output demands; optional values are expressed with ``X | None``.

    An unsupported type raises :class:`~chatdsl.ValidationError` whose path names the field,
    such as ``Order.lines[].sku``.
    """
    builder = Builder(strict=strict)
    try:
        return builder.document(tp)
    except RecursionError:
        raise ValidationError("", f"the type {_type_label(tp)} is nested too deeply for a JSON schema") from None


def schema_for_response(
    tp: Any, *, name: str | None, description: str | UnsetType, strict: bool | UnsetType
) -> dict[str, Any]:
    """Return the fields of the named :class:`~chatdsl.JsonSchema` describing *tp* for a response format.

    ``name`` defaults to the class name and ``description`` to the first paragraph of its docstring.
    (The caller builds the model: this module imports none, so models may import it.)
    """
    if name is None:
        name = _schema_name(tp)
    if description is UNSET:
        summary = class_summary(tp) if isinstance(tp, type) else ""
        description = summary or UNSET
    schema = json_schema(tp, strict=strict is True)
    return {"name": name, "schema": schema, "description": description, "strict": strict}


def _schema_name(tp: Any) -> str:
    name = getattr(tp, "__name__", None)
    if isinstance(tp, type) and isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        return name
    return "response"


# ------------------------------------------------------------------------------------ the walker


class Builder:
    """One schema document: collects ``$defs`` while walking a type."""

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self.defs: dict[str, dict[str, Any]] = {}
        self.refs: dict[type, str] = {}

    def document(self, tp: Any) -> dict[str, Any]:
        """Return the schema of *tp* with the collected ``$defs`` at its root."""
        base, _ = _strip_annotated(tp)
        if is_record(base):
            self.refs[base] = "#"
            out = self.record(base, base.__qualname__)
        else:
            out = self.schema(tp, base.__qualname__ if isinstance(base, type) else _type_label(tp))
        return self.finish(out)

    def finish(self, out: dict[str, Any]) -> dict[str, Any]:
        """Return *out* with the ``$defs`` gathered so far attached."""
        if self.defs:
            out["$defs"] = self.defs
        return out

    def schema(self, tp: Any, path: str) -> dict[str, Any]:
        """Return the schema of *tp*; *path* names its place for error messages."""
        tp, description = _strip_annotated(tp)
        out = self._schema(tp, path)
        if description:
            out = {**out, "description": description}
        return out

    def _schema(self, tp: Any, path: str) -> dict[str, Any]:
        if tp is Any or tp is object:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        supertype = getattr(tp, "__supertype__", None)  # typing.NewType
        if supertype is not None:
            return self.schema(supertype, path)
        value = getattr(tp, "__value__", None)  # a `type X = ...` alias (3.12+)
        if value is not None and not isinstance(tp, type):
            return self.schema(value, path)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Union or origin is types.UnionType:
            return self.union(args, path)
        if origin is typing.Literal:
            return _literal(args, path)
        if origin is not None:
            return self.generic(tp, origin, args, path)
        if not isinstance(tp, type):
            raise _unsupported(tp, path)
        if issubclass(tp, enum.Enum):
            return _enum(tp, path)
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if tp is datetime:
            return {"type": "string", "format": "date-time"}
        if tp is date:
            return {"type": "string", "format": "date"}
        if tp in (list, tuple):
            return {"type": "array"}
        if tp in (set, frozenset):
            return {"type": "array", "uniqueItems": True}
        if tp is dict:
            return {"type": "object"}
        if is_record(tp):
            return self.reference(tp, path)
        if is_pydantic_model(tp):  # pydantic's own schema; its $defs join the document's
            schema, defs = pydantic_schema(tp)
            for name, definition in defs.items():
                self.defs.setdefault(name, definition)
            return schema
        raise _unsupported(tp, path)

    def union(self, members: tuple[Any, ...], path: str) -> dict[str, Any]:
        """``anyOf`` of the members (``X | None`` is ``anyOf: [X, null]``)."""
        return {"anyOf": [self.schema(member, path) for member in members]}

    def generic(self, tp: Any, origin: Any, args: tuple[Any, ...], path: str) -> dict[str, Any]:
        """Schemas of parametrised containers: lists, sets, tuples and string-keyed mappings."""
        if origin in _SEQUENCES:
            return {"type": "array", "items": self.schema(args[0], f"{path}[]")} if args else {"type": "array"}
        if origin in _SETS:
            out: dict[str, Any] = {"type": "array", "uniqueItems": True}
            if args:
                out["items"] = self.schema(args[0], f"{path}[]")
            return out
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.schema(args[0], f"{path}[]")}
            items = [self.schema(arg, f"{path}[{index}]") for index, arg in enumerate(args)]
            out = {"type": "array", "prefixItems": items} if items else {"type": "array"}
            return {**out, "items": False, "minItems": len(items), "maxItems": len(items)}
        if origin in _MAPPINGS:
            if not args:
                return {"type": "object"}
            key, value = args
            key_base, _ = _strip_annotated(key)
            if key_base is not str and key_base is not Any:
                raise ValidationError(
                    path, f"the key type of {_type_label(tp)} must be str: JSON object keys are strings"
                )
            value_base, _ = _strip_annotated(value)
            if value_base is Any or value_base is object:
                return {"type": "object"}
            return {"type": "object", "additionalProperties": self.schema(value, f"{path}{{}}")}
        raise _unsupported(tp, path)

    def reference(self, cls: type, path: str) -> dict[str, Any]:
        """A ``$ref`` to *cls*'s entry in ``$defs`` (made on first use; recursion refers back)."""
        ref = self.refs.get(cls)
        if ref is None:
            name = cls.__name__
            if name in self.defs:
                number = 2
                while f"{name}{number}" in self.defs:
                    number += 1
                name = f"{name}{number}"
            ref = f"#/$defs/{name}"
            self.refs[cls] = ref
            self.defs[name] = {}  # reserved now so recursive references find it
            self.defs[name] = self.record(cls, path)
        return {"$ref": ref}

    def record(self, cls: type, path: str) -> dict[str, Any]:
        """The object schema of an attrs class or dataclass."""
        summary, documented = parse_docstring(_own_doc(cls))
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in _record_fields(cls, path):
            schema = self.schema(field.type, f"{path}.{field.name}")
            if field.description:  # metadata first, then Annotated[T, "..."], then the docstring
                schema = {**schema, "description": field.description}
            elif "description" not in schema and field.name in documented:
                schema = {**schema, "description": documented[field.name]}
            if field.has_default and not self.strict:
                default = json_default(field.default)
                if default is not NO_DEFAULT:
                    schema = {**schema, "default": default}
            else:
                required.append(field.name)
            properties[field.name] = schema
        out: dict[str, Any] = {"type": "object"}
        if summary:
            out["description"] = summary
        out["properties"] = properties
        if required:
            out["required"] = required
        out["additionalProperties"] = False
        return out


# ---------------------------------------------------------------------------------- leaf schemas


def _literal(values: tuple[Any, ...], path: str) -> dict[str, Any]:
    plain = [v.value if isinstance(v, enum.Enum) else v for v in values]
    for value in plain:
        if not _is_json_scalar(value):
            raise ValidationError(path, f"Literal value {value!r} is not a JSON string, number, boolean or null")
    out: dict[str, Any] = {"const": plain[0]} if len(plain) == 1 else {"enum": plain}
    kinds = sorted({_json_type(v) for v in plain})
    return {**_type_of(kinds), **out}


def _enum(cls: type[enum.Enum], path: str) -> dict[str, Any]:
    values = [member.value for member in cls]
    for value in values:
        if not _is_json_scalar(value):
            raise ValidationError(
                path, f"{_type_label(cls)} has the value {value!r}; enum values must be JSON strings or numbers"
            )
    kinds = sorted({_json_type(v) for v in values})
    return {**_type_of(kinds), "enum": values}


def _type_of(kinds: list[str]) -> dict[str, Any]:
    if not kinds:
        return {}
    if "integer" in kinds and "number" in kinds:
        kinds = [k for k in kinds if k != "integer"]
    return {"type": kinds[0] if len(kinds) == 1 else kinds}


def _is_json_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int, bool))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _unsupported(tp: Any, path: str) -> ValidationError:
    return ValidationError(
        path, f"the type {_type_label(tp)} is not supported in JSON schemas (supported: {_SUPPORTED})"
    )


def _type_label(tp: Any) -> str:
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        module = tp.__module__
        return tp.__qualname__ if module in ("builtins", "__main__") else f"{module}.{tp.__qualname__}"
    return short_repr(tp, 200).replace("typing.", "")


def _strip_annotated(tp: Any) -> tuple[Any, str]:
    """Return the type inside ``Annotated[...]`` and the last string among its metadata."""
    description = ""
    while typing.get_origin(tp) is typing.Annotated:
        for item in tp.__metadata__:
            if isinstance(item, str):
                description = item
        tp = tp.__origin__
    return tp, description


# ---------------------------------------------------------------------------------- class fields

NO_DEFAULT: Final = object()


@attrs.frozen
class _Field:
    name: str
    type: Any
    has_default: bool
    default: Any
    description: str


def is_record(tp: Any) -> bool:
    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp))


def _record_fields(cls: type, path: str) -> list[_Field]:
    """The fields the converter reads for *cls*: name, resolved type, default and description."""
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        raise ValidationError(path, f"the annotations of {_type_label(cls)} cannot be resolved ({exc})") from None
    out: list[_Field] = []
    if attrs.has(cls):
        for a in attrs.fields(cls):
            if not a.init:
                continue
            tp = hints.get(a.name, a.type)
            if tp is None:
                raise ValidationError(f"{path}.{a.name}", "has no type annotation")
            has_default = a.default is not attrs.NOTHING
            default: Any = NO_DEFAULT
            if isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
                factory: Any = a.default
                default = NO_DEFAULT if factory.takes_self else _call(factory.factory)
            elif has_default:
                default = a.default
            out.append(_Field(a.name, tp, has_default, default, _description(a.metadata)))
        return out
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints.get(f.name, f.type)
        if f.default is not dataclasses.MISSING:
            has_default, default = True, f.default
        elif f.default_factory is not dataclasses.MISSING:
            has_default, default = True, _call(f.default_factory)
        else:
            has_default, default = False, NO_DEFAULT
        out.append(_Field(f.name, tp, has_default, default, _description(f.metadata)))
    return out


def _call(factory: Any) -> Any:
    try:
        return factory()
    except Exception:
        return NO_DEFAULT


def _description(metadata: Any) -> str:
    value = metadata.get("description") if metadata else None
    return value if isinstance(value, str) else ""


def json_default(value: Any) -> Any:
    """Return *value* in its JSON form (through the output converter), or ``NO_DEFAULT``."""
    if value is NO_DEFAULT:
        return NO_DEFAULT
    from chatdsl.output.convert import output_converter

    try:
        plain = output_converter.unstructure(value)
        return json.loads(json.dumps(plain, allow_nan=False))  # not _json: orjson writes NaN as null
    except (TypeError, ValueError):
        return NO_DEFAULT


def _own_doc(cls: type) -> str:
    """The docstring *cls* itself has (not inherited, not dataclasses' generated signature)."""
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str):
        return ""
    if dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}("):
        return ""
    return doc


def class_summary(cls: type) -> str:
    return parse_docstring(_own_doc(cls))[0]


# ------------------------------------------------------------------------------------ docstrings

_GOOGLE_SECTION: Final = re.compile(r"^(\s*)([A-Za-z][A-Za-z ]*):\s*$")
_PARAMETER_SECTIONS: Final = frozenset(
    {
        "args",
        "arguments",
        "params",
        "parameters",
        "keyword args",
        "keyword arguments",
        "other parameters",
        "attributes",
    }
)
_KNOWN_SECTIONS: Final = _PARAMETER_SECTIONS | {
    "returns",
    "return",
    "yields",
    "yield",
    "raises",
    "raise",
    "examples",
    "example",
    "note",
    "notes",
    "see also",
    "references",
    "warning",
    "warnings",
    "todo",
    "methods",
}
_GOOGLE_ENTRY: Final = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ENTRY: Final = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_, *]*?)\s*(?::.*)?$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Return the first paragraph of *doc* and the descriptions of its documented names.

    Names come from Google-style sections (``Args:``, ``Arguments:``, ``Parameters:``,
    ``Attributes:``, …: ``name (type): text`` with indented continuation lines) and from
    NumPy-style sections (``Parameters`` or ``Attributes`` underlined with dashes: ``name : type``
    followed by indented text). Descriptions are joined into single lines.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for index, line in enumerate(lines):
        if not line.strip() or _section_at(lines, index) is not None:
            break
        summary.append(line.strip())
    names: dict[str, str] = {}
    index = 0
    while index < len(lines):
        section = _section_at(lines, index)
        if section is None:
            index += 1
            continue
        style, title, indent = section
        if style == "numpy":
            index = _read_numpy(lines, index + 2, names if title in _PARAMETER_SECTIONS else {})
        else:
            index = _read_google(lines, index + 1, indent, names if title in _PARAMETER_SECTIONS else {})
    return " ".join(summary), names


def _section_at(lines: list[str], index: int) -> tuple[str, str, int] | None:
    line = lines[index]
    following = lines[index + 1].strip() if index + 1 < len(lines) else ""
    title = line.strip().lower()
    if title in _KNOWN_SECTIONS and following and set(following) == {"-"}:
        return ("numpy", title, len(line) - len(line.lstrip()))
    match = _GOOGLE_SECTION.match(line)
    if match and match.group(2).strip().lower() in _KNOWN_SECTIONS:
        return ("google", match.group(2).strip().lower(), len(match.group(1)))
    return None


def _read_google(lines: list[str], index: int, indent: int, names: dict[str, str]) -> int:
    entry_indent: int | None = None
    current: str | None = None
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        depth = len(line) - len(line.lstrip())
        if depth <= indent:
            break
        if entry_indent is None:
            entry_indent = depth
        match = _GOOGLE_ENTRY.match(line.strip()) if depth <= entry_indent else None
        if match:
            current = match.group(1)
            names[current] = match.group(2).strip()
        elif current is not None:
            names[current] = f"{names[current]} {line.strip()}".strip()
        index += 1
    return index


def _read_numpy(lines: list[str], index: int, names: dict[str, str]) -> int:
    current: list[str] = []
    while index < len(lines):
        if _section_at(lines, index) is not None:
            break
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        if line[:1].isspace():
            for name in current:
                names[name] = f"{names[name]} {line.strip()}".strip()
        else:
            match = _NUMPY_ENTRY.match(line.strip())
            current = [n.strip().lstrip("*") for n in match.group(1).split(",")] if match else []
            for name in current:
                names[name] = ""
        index += 1
    return index
