"""Files and batch jobs of Mistral's Batch API (``/v1/files``, ``/v1/batch/jobs``).

:class:`BatchJobRequest` is what ``POST /v1/batch/jobs`` takes (``BatchJobIn``: written strictly,
checked by its validators); the others are what the server answers (``BatchJobOut``,
``BatchJobsOut``, ``UploadFileOut``/``RetrieveFileOut``/``FileSchema``, ``ListFilesOut``,
``DeleteFileOut``), read leniently and losslessly: each has an ``extra`` holding the keys chatdsl
does not model, written back by ``to_dict()``; an unknown status, purpose or source stays a plain
string. The wire spelling lives in :mod:`chatdsl.wire.batch`, reached through each class's
``from_dict``/``to_dict`` (this module's one lazy import).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Self

import attrs

from chatdsl import _checks as c
from chatdsl._errors import ValidationError
from chatdsl._types import UNSET, FrozenDict, UnsetType, short_repr

__all__ = [
    "CHAT_COMPLETIONS_ENDPOINT",
    "BatchError",
    "BatchJob",
    "BatchJobList",
    "BatchJobRequest",
    "BatchJobStatus",
    "FileDeleted",
    "FileInfo",
    "FileList",
]

_NO_EXTRA: Final = FrozenDict()

CHAT_COMPLETIONS_ENDPOINT: Final = "/v1/chat/completions"
"""The endpoint a batch of chat completions names (``BatchJobIn.endpoint``)."""


class BatchJobStatus(enum.StrEnum):
    """A batch job's status; an unknown one from the server is kept as a plain string."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    TIMEOUT_EXCEEDED = "TIMEOUT_EXCEEDED"
    CANCELLATION_REQUESTED = "CANCELLATION_REQUESTED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """Whether the job has ended (it changes no more): SUCCESS, FAILED, TIMEOUT_EXCEEDED or CANCELLED."""
        return self in _TERMINAL


_STATUSES: Final[dict[str, BatchJobStatus]] = {status.value: status for status in BatchJobStatus}
_TERMINAL: Final = frozenset(
    {BatchJobStatus.SUCCESS, BatchJobStatus.FAILED, BatchJobStatus.TIMEOUT_EXCEEDED, BatchJobStatus.CANCELLED}
)


class _Wire:
    """The ``from_dict``/``from_json``/``to_dict``/``to_json`` conveniences of the classes here."""

    __slots__ = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Return the object a wire body describes (unknown keys are kept in ``extra``)."""
        from chatdsl.wire.batch import structure_batch

        return structure_batch(data, cls)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """Return the object a JSON wire body describes."""
        from chatdsl.wire.batch import structure_batch
        from chatdsl.wire.converter import loads

        return structure_batch(loads(text), cls)

    def to_dict(self) -> dict[str, Any]:
        """Return the wire body as a dict."""
        from chatdsl.wire.batch import unstructure_batch

        return unstructure_batch(self)

    def to_json(self, *, indent: int | None = None) -> str:
        """Return the wire body as JSON text."""
        from chatdsl._json import dumps

        return dumps(self.to_dict(), indent=indent)


def _to_status(value: Any) -> Any:
    """A converter turning a known status string into its :class:`BatchJobStatus` (others stay as given)."""
    if isinstance(value, str) and not isinstance(value, BatchJobStatus):
        return _STATUSES.get(value, value)
    return value


def _frozen_objects(value: Any) -> Any:
    """A converter freezing a list of JSON objects into a tuple of them (``None`` stays)."""
    if value is None or isinstance(value, tuple):
        return value
    return tuple(c.to_frozen(item) for item in value)


@attrs.frozen(kw_only=True, weakref_slot=False)
class BatchError(_Wire):
    """A problem of a batch job as a whole (``BatchError``): its ``message`` and how many lines it hit (``count``)."""

    message: str = ""
    count: int = 1
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class BatchJob(_Wire):
    """A batch job as the server describes it (``BatchJobOut``).

    ``status`` is a :class:`BatchJobStatus` (or the server's string when chatdsl does not know it);
    the counts say how far it got. ``output_file`` and ``error_file`` are the ids of the files the
    answers and the failed lines are written to (``None`` until the server made them); ``errors``
    are the job's own problems (a file it could not read, ...), not those of single lines.
    """

    id: str = ""
    object: str = "batch"
    input_files: tuple[str, ...] = attrs.field(default=(), converter=c.to_tuple)
    metadata: FrozenDict | None = attrs.field(
        default=None, converter=c.to_frozen, validator=c.json_object(nullable=True)
    )
    endpoint: str = ""
    model: str | None = None
    agent_id: str | None = None
    output_file: str | None = None
    error_file: str | None = None
    errors: tuple[BatchError, ...] = attrs.field(default=(), converter=c.to_tuple)
    outputs: tuple[FrozenDict, ...] | None = attrs.field(default=None, converter=_frozen_objects)
    status: BatchJobStatus | str = attrs.field(default=BatchJobStatus.QUEUED, converter=_to_status)
    created_at: datetime | None = None
    total_requests: int = 0
    completed_requests: int = 0
    succeeded_requests: int = 0
    failed_requests: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )

    @property
    def done(self) -> bool:
        """Whether the job has ended: its status is terminal (an unknown status is not)."""
        return isinstance(self.status, BatchJobStatus) and self.status.terminal

    @property
    def progress(self) -> float:
        """The share of its requests done, from 0.0 to 1.0 (1.0 for a job of no requests that is done)."""
        if self.total_requests <= 0:
            return 1.0 if self.done else 0.0
        return min(1.0, self.completed_requests / self.total_requests)


@attrs.frozen(kw_only=True, weakref_slot=False)
class BatchJobList(_Wire):
    """A page of batch jobs (``BatchJobsOut``): ``data`` and the ``total`` the server counts."""

    data: tuple[BatchJob, ...] = attrs.field(default=(), converter=c.to_tuple)
    object: str = "list"
    total: int = 0
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class FileInfo(_Wire):
    """A stored file (``UploadFileOut``, ``RetrieveFileOut``, ``FileSchema``).

    ``size_bytes`` travels as ``bytes``; ``purpose`` (``"batch"``, ``"fine-tune"``, ``"ocr"``),
    ``sample_type`` (``"batch_request"``, ``"batch_result"``, ``"batch_error"``, ...) and ``source``
    (``"upload"``, ``"mistral"``, ...) are the server's strings. ``deleted`` is ``None`` when the
    server did not say (an upload's answer does not).
    """

    id: str = ""
    object: str = "file"
    size_bytes: int = 0
    created_at: datetime | None = None
    filename: str = ""
    purpose: str = ""
    sample_type: str = ""
    source: str = ""
    num_lines: int | None = None
    mimetype: str | None = None
    signature: str | None = None
    expires_at: datetime | None = None
    visibility: str | None = None
    deleted: bool | None = None
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class FileList(_Wire):
    """A page of files (``ListFilesOut``): ``data`` and the ``total`` (``None`` when the server did not count)."""

    data: tuple[FileInfo, ...] = attrs.field(default=(), converter=c.to_tuple)
    object: str = "list"
    total: int | None = None
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class FileDeleted(_Wire):
    """The answer to deleting a file (``DeleteFileOut``)."""

    id: str = ""
    object: str = "file"
    deleted: bool = False
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


# ------------------------------------------------------------------------------------ the request


def _file_ids(_: Any, attribute: Any, value: tuple[Any, ...]) -> None:
    if not isinstance(value, tuple) or not value:
        raise c.fail(attribute.name, value, "is not a non-empty list of file ids")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            path = f"{attribute.name}[{index}]"
            raise ValidationError(path, f"{short_repr(item)} is not a file id (a non-empty string)")


def _metadata(_: Any, attribute: Any, value: Any) -> None:
    """``BatchJobIn.metadata``: keys of 1 to 32 characters, string values of 1 to 512."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise c.fail(attribute.name, value, "is not a mapping of strings")
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 32:
            raise ValidationError(f"{attribute.name}.{key}", f"the key {short_repr(key)} is not 1 to 32 characters")
        if not isinstance(item, str) or not 1 <= len(item) <= 512:
            rule = "is not a string of 1 to 512 characters"
            raise ValidationError(f"{attribute.name}.{key}", f"{short_repr(item)} {rule}")


def _to_metadata(value: Any) -> Any:
    return FrozenDict(value) if isinstance(value, Mapping) and not isinstance(value, FrozenDict) else value


def _timeout_hours(_: Any, attribute: Any, value: Any) -> None:
    if value is UNSET:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise c.fail(attribute.name, value, "is not a whole number of hours of 1 or more")


def _endpoint(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.startswith("/v1/"):
        raise c.fail(attribute.name, value, "is not an API path such as '/v1/chat/completions'")


def _optional_str(_: Any, attribute: Any, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise c.fail(attribute.name, value, "is not None or a non-empty string")


@attrs.frozen(kw_only=True, weakref_slot=False)
class BatchJobRequest(_Wire):
    """What ``POST /v1/batch/jobs`` takes (``BatchJobIn``): the uploaded ``input_files`` and the ``endpoint``.

    ``model`` applies to every line whose body names none; ``metadata`` is yours (keys of 1 to 32
    characters, string values of 1 to 512); ``timeout_hours`` is left to the server's default (24)
    when not given. Written strictly: ``None`` and unset fields are left out.
    """

    input_files: tuple[str, ...] = attrs.field(converter=c.to_tuple, validator=_file_ids)
    endpoint: str = attrs.field(default=CHAT_COMPLETIONS_ENDPOINT, validator=_endpoint)
    model: str | None = attrs.field(default=None, validator=_optional_str)
    agent_id: str | None = attrs.field(default=None, validator=_optional_str)
    metadata: FrozenDict | None = attrs.field(default=None, converter=_to_metadata, validator=_metadata)
    timeout_hours: int | UnsetType = attrs.field(default=UNSET, validator=_timeout_hours)
