"""Messages, content parts and tool calls.

A message's role is the tag of the :data:`Message` union (a class attribute, not a field); a content
part's ``type`` likewise tags :data:`ContentChunk`. Wire names and tags live in
:mod:`chatdsl.wire.converter`; typed answers and arguments are structured by
:mod:`chatdsl.output.convert` (which imports no model).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, ClassVar, TypeAlias, TypeVar, overload

import attrs

from chatdsl import _checks as c
from chatdsl._errors import OutputError, ValidationError
from chatdsl._types import UNSET, FrozenDict, UnsetType, thaw

__all__ = [
    "AssistantMessage",
    "AudioChunk",
    "Content",
    "ContentChunk",
    "DocumentURLChunk",
    "FileChunk",
    "FunctionCall",
    "ImageDetail",
    "ImageURLChunk",
    "Message",
    "ReferenceChunk",
    "Role",
    "SystemMessage",
    "TextChunk",
    "ThinkChunk",
    "ToolCall",
    "ToolMessage",
    "ToolReferenceChunk",
    "UnknownChunk",
    "UserMessage",
]

_T = TypeVar("_T")


class Role(enum.StrEnum):
    """The role of a message in the conversation (the wire tag of :data:`Message`)."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ImageDetail(enum.StrEnum):
    """How closely the model should look at an image."""

    LOW = "low"
    AUTO = "auto"
    HIGH = "high"


def _to_image_detail(value: Any) -> Any:
    return c.to_enum(ImageDetail)(value)


_NO_EXTRA: FrozenDict = FrozenDict()
"""The default ``extra`` of content parts, tool calls and assistant messages: the keys a response carried
that chatdsl does not model, kept so that ``to_dict()`` writes back what was read. A request never sends
them (like a choice's ``refusal``, they are facts of the answer)."""


@attrs.frozen(kw_only=True, weakref_slot=False)
class TextChunk:
    """A text content part."""

    type: ClassVar[str] = "text"
    text: str = attrs.field(validator=c.string())
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class ImageURLChunk:
    """An image content part: an ``https:`` URL or a ``data:`` URL, with an optional detail level."""

    type: ClassVar[str] = "image_url"
    url: str = attrs.field(validator=c.string(non_empty=True))
    detail: ImageDetail | UnsetType = attrs.field(
        default=UNSET, converter=_to_image_detail, validator=c.member_of(ImageDetail)
    )
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class DocumentURLChunk:
    """A document content part given by URL."""

    type: ClassVar[str] = "document_url"
    document_url: str = attrs.field(validator=c.string(non_empty=True))
    document_name: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class FileChunk:
    """A content part referring to an uploaded file by id."""

    type: ClassVar[str] = "file"
    file_id: str = attrs.field(validator=c.string(non_empty=True))
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class ReferenceChunk:
    """A content part citing references by id (integers, or strings such as ``"widget"``)."""

    type: ClassVar[str] = "reference"
    reference_ids: tuple[int | str, ...] = attrs.field(converter=c.to_tuple, validator=c.items_of(int, str))
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class AudioChunk:
    """An audio content part (base64 data or a URL, as the API accepts)."""

    type: ClassVar[str] = "input_audio"
    input_audio: str = attrs.field(validator=c.string())
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class ToolReferenceChunk:
    """A reference to a built-in tool's result, found inside thinking parts."""

    type: ClassVar[str] = "tool_reference"
    tool: str = attrs.field(validator=c.string())
    title: str = attrs.field(validator=c.string())
    url: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    favicon: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    description: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class UnknownChunk:
    """A content part of a ``type`` chatdsl does not model, kept whole: its other keys are in ``extra``.

    Read from responses so that nothing the server sent is lost; written back (also in a request) as
    ``{"type": type, **extra}``.
    """

    type: str = attrs.field(validator=c.string(non_empty=True))
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )

    @extra.validator
    def _check_type_key(self, attribute: Any, value: FrozenDict) -> None:
        if "type" in value:
            raise c.fail("extra.type", value["type"], "shadows the part's own 'type'")


ThinkPart: TypeAlias = TextChunk | ReferenceChunk | ToolReferenceChunk | UnknownChunk


@attrs.frozen(kw_only=True, weakref_slot=False)
class ThinkChunk:
    """A reasoning content part, as reasoning models return it."""

    type: ClassVar[str] = "thinking"
    thinking: tuple[ThinkPart, ...] = attrs.field(
        converter=c.to_tuple,
        validator=c.items_of(TextChunk, ReferenceChunk, ToolReferenceChunk, UnknownChunk, what="thinking part"),
    )
    closed: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())
    signature: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


ContentChunk: TypeAlias = (
    TextChunk | ImageURLChunk | DocumentURLChunk | ReferenceChunk | FileChunk | ThinkChunk | AudioChunk | UnknownChunk
)
"""A content part; the ``type`` key tags it on the wire."""

CONTENT_CHUNK_TYPES: tuple[type, ...] = (
    TextChunk,
    ImageURLChunk,
    DocumentURLChunk,
    ReferenceChunk,
    FileChunk,
    ThinkChunk,
    AudioChunk,
    UnknownChunk,
)

Content: TypeAlias = str | tuple[ContentChunk, ...]
"""Message content: a string, or a sequence of content parts."""


def _to_content(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _content(*, required: bool, parts: tuple[type, ...] = CONTENT_CHUNK_TYPES) -> c.Validator:
    names = ", ".join(p.__name__ for p in parts)

    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is UNSET:
            if required:
                raise ValidationError(attribute.name, "is required")
            return
        if isinstance(value, str):
            return
        if not isinstance(value, tuple):
            raise c.fail(attribute.name, value, f"is {c.type_name(value)}, not a string or content parts")
        for index, part in enumerate(value):
            if not isinstance(part, parts):
                raise c.fail(f"{attribute.name}[{index}]", part, f"is {c.type_name(part)}, not one of {names}")

    return check


@attrs.frozen(kw_only=True, weakref_slot=False)
class FunctionCall:
    """The function a tool call invokes; ``arguments`` is a JSON string or a JSON object."""

    name: str = attrs.field(validator=c.string())
    arguments: str | FrozenDict = attrs.field(
        converter=c.to_frozen, validator=c.instance_of(str, FrozenDict, what="JSON string or JSON object")
    )
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class ToolCall:
    """A call of a tool by the model: an ``id`` to answer with a tool message, and the function call."""

    function: FunctionCall = attrs.field(validator=c.instance_of(FunctionCall))
    id: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    index: int | UnsetType = attrs.field(default=UNSET, validator=c.integer(minimum=0))
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )

    @property
    def name(self) -> str:
        """The name of the called function."""
        return self.function.name

    def arguments(self) -> dict[str, Any]:
        """Return the call's arguments as a new plain dict, whether the wire carried a JSON object or text.

        Empty text counts as no arguments (``{}``). Text that is not JSON, or JSON that is not an
        object, raises :class:`~chatdsl.OutputError` carrying the raw text.
        """
        return call_arguments(self)

    @overload
    def parse_arguments(self) -> dict[str, Any]: ...
    @overload
    def parse_arguments(self, tp: type[_T]) -> _T: ...
    @overload
    def parse_arguments(self, tp: Any) -> Any: ...
    def parse_arguments(self, tp: Any = dict) -> Any:
        """Return the arguments structured into *tp* (an attrs class, a dataclass, ...).

        Raises :class:`~chatdsl.OutputError` with the raw arguments and the path that did not fit.
        """
        from chatdsl.output.convert import structure_output

        return structure_output(self.arguments(), tp, content=raw_arguments(self))


def raw_arguments(call: ToolCall) -> str:
    """Return the arguments of *call* as the JSON text the model sent (an object is encoded)."""
    arguments = call.function.arguments
    if isinstance(arguments, str):
        return arguments
    import json  # the text quoted in errors keeps the standard library's spacing

    return json.dumps(arguments, ensure_ascii=False)


def call_arguments(call: ToolCall) -> dict[str, Any]:
    """Return the arguments of *call* as a new plain dict (see :meth:`ToolCall.arguments`)."""
    arguments = call.function.arguments
    if not isinstance(arguments, str):
        return thaw(arguments)  # type: ignore[no-any-return]
    if not arguments.strip():
        return {}
    from chatdsl import _json

    try:
        data = _json.loads(arguments)
    except (ValueError, RecursionError) as exc:
        raise OutputError(f"the arguments of {call.name!r} are not valid JSON ({exc})", content=arguments) from None
    if not isinstance(data, dict):
        raise OutputError(
            f"the arguments of {call.name!r} are {c.type_name(data)}, not a JSON object", content=arguments
        )
    return data


@attrs.frozen(kw_only=True, weakref_slot=False)
class SystemMessage:
    """A system message: instructions for the model."""

    role: ClassVar[Role] = Role.SYSTEM
    content: Content = attrs.field(
        converter=_to_content, validator=_content(required=True, parts=(TextChunk, ThinkChunk))
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class UserMessage:
    """A user message: text, or content parts such as text and images."""

    role: ClassVar[Role] = Role.USER
    content: Content = attrs.field(converter=_to_content, validator=_content(required=True))


@attrs.frozen(kw_only=True, weakref_slot=False)
class AssistantMessage:
    """An assistant message: content, tool calls, or both; ``prefix`` asks the model to continue it."""

    role: ClassVar[Role] = Role.ASSISTANT
    content: Content | UnsetType = attrs.field(default=UNSET, converter=_to_content, validator=_content(required=False))
    tool_calls: tuple[ToolCall, ...] | UnsetType = attrs.field(
        default=UNSET, converter=c.to_tuple, validator=c.items_of(ToolCall)
    )
    prefix: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())
    extra: FrozenDict = attrs.field(
        default=_NO_EXTRA, converter=c.to_frozen, validator=c.json_object(), repr=c.plain_repr
    )

    def text(self) -> str:
        """Return the content as text: the string, or the text parts joined (``""`` when unset)."""
        return content_text(self.content)

    @overload
    def output(self) -> dict[str, Any]: ...
    @overload
    def output(self, tp: type[_T]) -> _T: ...
    @overload
    def output(self, tp: Any) -> Any: ...
    def output(self, tp: Any = dict) -> Any:
        """Return the content parsed as JSON and structured into *tp* (default: a plain ``dict``).

        *tp* may be anything :func:`chatdsl.json_schema` describes: attrs classes, dataclasses,
        pydantic models, enums, datetimes, ``list[...]``, ... Raises :class:`~chatdsl.OutputError` carrying the raw
        content and the path that did not fit.
        """
        from chatdsl.output.convert import parse_output

        return parse_output(self.text(), tp)


@attrs.frozen(kw_only=True, weakref_slot=False)
class ToolMessage:
    """The result of a tool call, answering the call's ``tool_call_id``."""

    role: ClassVar[Role] = Role.TOOL
    content: Content = attrs.field(converter=_to_content, validator=_content(required=True))
    tool_call_id: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    name: str | UnsetType = attrs.field(default=UNSET, validator=c.string())


Message: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolMessage
"""Any chat message; the ``role`` key tags it on the wire."""

MESSAGE_TYPES: tuple[type, ...] = (SystemMessage, UserMessage, AssistantMessage, ToolMessage)


def content_text(content: Content | UnsetType | None) -> str:
    """Return the text of message content: the string itself, or its text parts joined."""
    if content is UNSET or content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, TextChunk))


def as_content(content: str | Sequence[ContentChunk]) -> Content:
    """Return *content* in its stored form (a string, or a tuple of parts)."""
    if isinstance(content, str):
        return content
    return tuple(content)
