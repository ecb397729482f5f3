"""The wire spelling of files and batch jobs: lenient, lossless reading of answers; strict job requests.

Each answer class (:class:`~chatdsl.BatchJob`, :class:`~chatdsl.FileInfo`, ...) is read field by
field from a table of ``(attribute, wire key, reader)``; keys the table does not name go to the
object's ``extra`` (the table is checked against the class's fields at import, so a field added to
a model is read at once), an unknown status stays a string, and a value of the wrong type is a
:class:`~chatdsl.ValidationError` naming its path. Answers are written back whole (``null`` kept,
``extra`` last); a :class:`~chatdsl.BatchJobRequest` is written strictly (unset and ``None`` left out).
The hooks are registered on the wire converter when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import attrs

from chatdsl._checks import type_name
from chatdsl._errors import ValidationError
from chatdsl._types import UNSET, FrozenDict, freeze, short_repr
from chatdsl.model.batch import (
    BatchError,
    BatchJob,
    BatchJobList,
    BatchJobRequest,
    BatchJobStatus,
    FileDeleted,
    FileInfo,
    FileList,
)
from chatdsl.wire.converter import as_validation_error, converter, expect_object, list_of

__all__ = ["structure_batch", "unstructure_batch"]

_T = TypeVar("_T")
_NO_EXTRA: Final = FrozenDict()
_INFINITIES: Final = (float("inf"), float("-inf"))
_STATUSES: Final[dict[str, BatchJobStatus]] = {status.value: status for status in BatchJobStatus}

# ------------------------------------------------------------------------------------ readers


def _str(value: Any) -> str:
    if isinstance(value, str):
        return str(value)
    raise ValidationError("", f"{short_repr(value)} is {type_name(value)}, not a string")


def _int(value: Any) -> int:
    if value.__class__ is int:
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in _INFINITIES:
        raise ValidationError("", f"{short_repr(value)} is not a number")
    return int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValidationError("", f"{short_repr(value)} is {type_name(value)}, not true or false")


def _time(value: Any) -> datetime:
    seconds = _int(value)
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ValidationError("", f"{short_repr(value)} is not a valid timestamp") from None


def _status(value: Any) -> BatchJobStatus | str:
    text = _str(value)
    return _STATUSES.get(text, text)


def _object(value: Any) -> FrozenDict:
    data = expect_object(value, "metadata")
    try:
        return freeze(data)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise ValidationError("", f"holds a value JSON cannot carry ({exc})") from None


def _hook(read: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda value, _: read(value)


_strs = list_of(_hook(_str), "strings", if_none=())
_objects = list_of(_hook(_object), "JSON objects", if_none=None)

# ------------------------------------------------------------------------------------ writers


def _time_value(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def _plain(value: Any) -> Any:
    return value


def _status_value(value: Any) -> Any:
    return value.value if isinstance(value, BatchJobStatus) else value


def _list(value: Any) -> Any:
    return None if value is None else list(value)


# ------------------------------------------------------------------------------------ tables

_Field = tuple[str, str, Callable[[Any], Any], Callable[[Any], Any]]
"""An attribute, its wire key, its reader and its writer."""


def _list_of(cls: type, what: str) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    read = list_of(lambda value, _: _READERS[cls](value, cls), what, if_none=())

    def write(value: Any) -> Any:
        return [unstructure_batch(item) for item in value]

    return (lambda value: read(value, None)), write


_TEXT: Final = (_str, _plain)
_NUMBER: Final = (_int, _plain)
_TIME: Final = (_time, _time_value)


def _table(*rows: tuple[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]]) -> tuple[_Field, ...]:
    return tuple((name, "bytes" if name == "size_bytes" else name, read, write) for name, (read, write) in rows)


_READERS: dict[type, Callable[[Any, Any], Any]] = {}
_TABLES: Final[dict[type, tuple[_Field, ...]]] = {
    BatchError: _table(("message", _TEXT), ("count", _NUMBER)),
    BatchJob: _table(
        ("id", _TEXT),
        ("object", _TEXT),
        ("input_files", (lambda v: _strs(v, None), list)),
        ("metadata", (_object, _plain)),
        ("endpoint", _TEXT),
        ("model", _TEXT),
        ("agent_id", _TEXT),
        ("output_file", _TEXT),
        ("error_file", _TEXT),
        ("errors", _list_of(BatchError, "batch errors")),
        ("outputs", (lambda v: _objects(v, None), _list)),
        ("status", (_status, _status_value)),
        ("created_at", _TIME),
        ("total_requests", _NUMBER),
        ("completed_requests", _NUMBER),
        ("succeeded_requests", _NUMBER),
        ("failed_requests", _NUMBER),
        ("started_at", _TIME),
        ("completed_at", _TIME),
    ),
    BatchJobList: _table(("data", _list_of(BatchJob, "batch jobs")), ("object", _TEXT), ("total", _NUMBER)),
    FileInfo: _table(
        ("id", _TEXT),
        ("object", _TEXT),
        ("size_bytes", _NUMBER),
        ("created_at", _TIME),
        ("filename", _TEXT),
        ("purpose", _TEXT),
        ("sample_type", _TEXT),
        ("source", _TEXT),
        ("num_lines", _NUMBER),
        ("mimetype", _TEXT),
        ("signature", _TEXT),
        ("expires_at", _TIME),
        ("visibility", _TEXT),
        ("deleted", (_bool, _plain)),
    ),
    FileList: _table(("data", _list_of(FileInfo, "files")), ("object", _TEXT), ("total", _NUMBER)),
    FileDeleted: _table(("id", _TEXT), ("object", _TEXT), ("deleted", (_bool, _plain))),
}
_OMIT_NONE: Final[dict[type, frozenset[str]]] = {
    FileInfo: frozenset({"deleted"})
}  # an upload's answer has no "deleted"


def _reader(cls: type, table: tuple[_Field, ...]) -> Callable[[Any, Any], Any]:
    keys = frozenset(key for _, key, _, _ in table)

    def structure(value: Any, _: Any = None) -> Any:
        data = expect_object(value, cls.__name__)
        problems: list[tuple[str, str]] = []
        values: dict[str, Any] = {}
        for name, key, read, _write in table:
            item = data.get(key)
            if item is None:
                continue  # absent or null: the field's default
            try:
                values[name] = read(item)
            except ValidationError as exc:
                problems += exc.with_prefix(key).errors
        if not keys.issuperset(data):
            try:
                values["extra"] = freeze({k: v for k, v in data.items() if k not in keys})
            except (TypeError, ValueError) as exc:
                problems.append(("", f"holds a value JSON cannot carry ({exc})"))
        if problems:
            raise ValidationError("", "", errors=problems)
        return cls(**values)

    return structure


def _writer(cls: type, table: tuple[_Field, ...]) -> Callable[[Any], dict[str, Any]]:
    omit_none = _OMIT_NONE.get(cls, frozenset())

    def unstructure(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, key, _read, write in table:
            value = getattr(obj, name)
            if value is None:
                if name not in omit_none:
                    out[key] = None
                continue
            out[key] = write(value)
        if obj.extra:
            out.update(obj.extra)
        return out

    return unstructure


def _request(obj: BatchJobRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"input_files": list(obj.input_files), "endpoint": obj.endpoint}
    if obj.model is not None:
        out["model"] = obj.model
    if obj.agent_id is not None:
        out["agent_id"] = obj.agent_id
    if obj.metadata is not None:
        out["metadata"] = dict(obj.metadata)
    if obj.timeout_hours is not UNSET:
        out["timeout_hours"] = obj.timeout_hours
    return out


def _structure_request(value: Any, _: Any = None) -> BatchJobRequest:
    data = expect_object(value, "BatchJobRequest")
    known = {a.name for a in attrs.fields(BatchJobRequest)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValidationError(unknown[0], f"is not a field of BatchJobIn (known: {', '.join(sorted(known))})")
    values = {key: value for key, value in data.items() if value is not None}
    try:
        return BatchJobRequest(**values)
    except TypeError as exc:  # a required field is missing
        raise ValidationError("input_files", f"is required ({exc})") from None


def _register() -> None:
    for cls, table in _TABLES.items():
        fields = {a.name for a in attrs.fields(cls)} - {"extra"}
        assert fields == {name for name, _, _, _ in table}, (cls, fields)
        _READERS[cls] = _reader(cls, table)
        converter.register_structure_hook(cls, _READERS[cls])
        converter.register_unstructure_hook(cls, _writer(cls, table))
    converter.register_structure_hook(BatchJobRequest, _structure_request)
    converter.register_unstructure_hook(BatchJobRequest, _request)


_register()

# ------------------------------------------------------------------------------------ public API


def structure_batch(data: Any, cls: type[_T]) -> _T:
    """Return a file or batch object of type *cls* from its wire body (answers leniently, requests strictly)."""
    try:
        return converter.structure(data, cls)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError("", "is nested too deeply") from None
    except Exception as exc:
        raise as_validation_error(exc) from None


def unstructure_batch(obj: Any) -> dict[str, Any]:
    """Return the wire body of a file or batch object."""
    return converter.unstructure(obj, type(obj))  # type: ignore[no-any-return]
