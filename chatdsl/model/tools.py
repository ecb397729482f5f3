"""Tools, tool choice, response formats, JSON schemas and the Go-style ``PropertyDefinition``."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final

import attrs

from chatdsl import _checks as c
from chatdsl._errors import ValidationError
from chatdsl._types import UNSET, FrozenDict, JSONValue, UnsetType, freeze, unset_if_none

__all__ = [
    "Function",
    "JsonSchema",
    "Prediction",
    "PromptMode",
    "PropertyDefinition",
    "ReasoningEffort",
    "ResponseFormat",
    "ResponseFormatType",
    "ServiceTier",
    "Tool",
    "ToolChoice",
    "ToolChoiceMode",
]


class ToolChoiceMode(enum.StrEnum):
    """How the model may use tools: ``auto``, ``none``, ``any`` or ``required`` (``any``'s synonym)."""

    AUTO = "auto"
    NONE = "none"
    ANY = "any"
    REQUIRED = "required"


class ResponseFormatType(enum.StrEnum):
    """The kinds of response format: plain text, any JSON object, or JSON following a schema."""

    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


class PromptMode(enum.StrEnum):
    """Mistral's prompt modes (``reasoning`` toggles the reasoning system prompt)."""

    REASONING = "reasoning"


class ReasoningEffort(enum.StrEnum):
    """How much reasoning a reasoning model should do (the values the API knows in 2026).

    A request also takes any other non-empty string, sent as it is: a value the server learns
    later needs no new chatdsl release.
    """

    NONE = "none"
    MINIMAL = "minimal"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    XHIGH = "xhigh"
    MAX = "max"


class ServiceTier(enum.StrEnum):
    """Whether a request is served from priority or standard capacity: ``auto`` or ``standard_only``.

    A request also takes any other non-empty string, sent as it is.
    """

    AUTO = "auto"
    STANDARD_ONLY = "standard_only"


def _schema_dict(value: Any) -> Any:
    """Converter: a ``PropertyDefinition`` becomes its JSON-schema dict; mappings are frozen."""
    if isinstance(value, PropertyDefinition):
        return value.to_schema()
    return c.to_frozen_schema(value)


def _to_response_format_type(value: Any) -> Any:
    return c.to_enum(ResponseFormatType)(value)


@attrs.frozen(kw_only=True, weakref_slot=False)
class Function:
    """A function the model may call: its name, description and JSON-schema parameters."""

    name: str = attrs.field(validator=c.string(non_empty=True))
    parameters: FrozenDict = attrs.field(factory=FrozenDict, converter=_schema_dict, validator=c.json_object())
    description: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    strict: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())


@attrs.frozen(kw_only=True, weakref_slot=False)
class Tool:
    """A tool the model may call (the API knows function tools)."""

    type: ClassVar[str] = "function"
    function: Function = attrs.field(validator=c.instance_of(Function))

    @property
    def name(self) -> str:
        """The function's name."""
        return self.function.name

    @classmethod
    def of(
        cls,
        name: str,
        parameters: Mapping[str, JSONValue] | PropertyDefinition | UnsetType | None = None,
        *,
        description: str | UnsetType | None = UNSET,
        strict: bool | UnsetType | None = UNSET,
    ) -> Tool:
        """Return a function tool from its name, parameters schema and description.

        ``None`` and ``UNSET`` both mean "not given": no parameters, no description, ``strict`` not sent.
        """
        return cls(
            function=Function(
                name=name,
                parameters=FrozenDict() if parameters is None or parameters is UNSET else parameters,
                description=unset_if_none(description),
                strict=unset_if_none(strict),
            )
        )

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | UnsetType | None = None,
        description: str | UnsetType | None = None,
        strict: bool | UnsetType | None = UNSET,
    ) -> Tool:
        """Return the tool describing *function*: its name, docstring, annotations and defaults.

        See :func:`chatdsl.tool`, which also keeps the function to call (a ``FunctionTool``).
        """
        from chatdsl.output.functions import function_tool

        return function_tool(function, name=name, description=description, strict=strict).tool

    @classmethod
    def from_type(
        cls,
        tp: Any,
        *,
        name: str | UnsetType | None = None,
        description: str | UnsetType | None = None,
        strict: bool | UnsetType | None = UNSET,
    ) -> Tool:
        """Return the tool whose arguments are an instance of *tp* (an attrs class, dataclass or pydantic model).

        The name defaults to the class name, the description to its docstring's first paragraph;
        read a call's arguments back with ``tool_call.parse_arguments(tp)``.
        """
        from chatdsl.output.functions import type_tool

        return type_tool(tp, name=name, description=description, strict=strict)


def _to_mode(value: Any) -> Any:
    return c.to_enum(ToolChoiceMode)(value)


@attrs.frozen(kw_only=True, weakref_slot=False)
class ToolChoice:
    """Which tool the model may call: a mode (``auto``/``none``/``any``/``required``) or one function.

    Exactly one of ``mode`` and ``function`` is set. The constants ``ToolChoice.AUTO``, ``NONE``,
    ``ANY`` and ``REQUIRED`` and :meth:`ToolChoice.named` build them.
    """

    AUTO: ClassVar[ToolChoice]
    NONE: ClassVar[ToolChoice]
    ANY: ClassVar[ToolChoice]
    REQUIRED: ClassVar[ToolChoice]

    mode: ToolChoiceMode | UnsetType = attrs.field(
        default=UNSET, converter=_to_mode, validator=c.member_of(ToolChoiceMode)
    )
    function: str | UnsetType = attrs.field(default=UNSET, validator=c.string(non_empty=True))

    def __attrs_post_init__(self) -> None:
        if (self.mode is UNSET) == (self.function is UNSET):
            raise ValidationError(
                "mode", f"needs exactly one of a mode or a function name, got {self.mode!r} and {self.function!r}"
            )

    @classmethod
    def named(cls, function: str) -> ToolChoice:
        """Return the choice that forces a call of the function *function*."""
        return cls(function=function)

    @classmethod
    def coerce(cls, value: ToolChoice | ToolChoiceMode | str) -> ToolChoice:
        """Return *value* as a ``ToolChoice``: a mode string (``"auto"``…) or an existing choice."""
        if isinstance(value, ToolChoice):
            return value
        if isinstance(value, str):
            mode = c.to_enum(ToolChoiceMode)(value)
            if isinstance(mode, ToolChoiceMode):
                return _MODES[mode]
        allowed = ", ".join(repr(m.value) for m in ToolChoiceMode)
        raise ValidationError(
            "tool_choice",
            f"{value!r} is not one of {allowed}; use ToolChoice.named(name) to force one function",
        )

    @property
    def forces_call(self) -> bool:
        """Whether the model must call a tool (``any``, ``required`` or a named function)."""
        return self.function is not UNSET or self.mode in (ToolChoiceMode.ANY, ToolChoiceMode.REQUIRED)


_MODES = {mode: ToolChoice(mode=mode) for mode in ToolChoiceMode}
ToolChoice.AUTO = _MODES[ToolChoiceMode.AUTO]
ToolChoice.NONE = _MODES[ToolChoiceMode.NONE]
ToolChoice.ANY = _MODES[ToolChoiceMode.ANY]
ToolChoice.REQUIRED = _MODES[ToolChoiceMode.REQUIRED]


@attrs.frozen(kw_only=True, weakref_slot=False)
class JsonSchema:
    """A named JSON schema for structured output; ``strict`` asks the model to follow it exactly."""

    name: str = attrs.field(validator=c.string(non_empty=True))
    schema: FrozenDict = attrs.field(converter=_schema_dict, validator=c.json_object())
    description: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    strict: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())


@attrs.frozen(kw_only=True, weakref_slot=False)
class ResponseFormat:
    """The format of the answer: text, a JSON object, or JSON following ``json_schema``."""

    TEXT: ClassVar[ResponseFormat]
    JSON_OBJECT: ClassVar[ResponseFormat]

    type: ResponseFormatType = attrs.field(
        default=ResponseFormatType.TEXT,
        converter=_to_response_format_type,
        validator=c.member_of(ResponseFormatType),
    )
    json_schema: JsonSchema | UnsetType = attrs.field(default=UNSET, validator=c.instance_of(JsonSchema))

    def __attrs_post_init__(self) -> None:
        has_schema = self.json_schema is not UNSET
        if self.type is ResponseFormatType.JSON_SCHEMA and not has_schema:
            raise ValidationError("json_schema", "is required when type is 'json_schema'")
        if self.type is not ResponseFormatType.JSON_SCHEMA and has_schema:
            raise ValidationError("json_schema", f"is only allowed when type is 'json_schema', not {str(self.type)!r}")


ResponseFormat.TEXT = ResponseFormat(type=ResponseFormatType.TEXT)
ResponseFormat.JSON_OBJECT = ResponseFormat(type=ResponseFormatType.JSON_OBJECT)


@attrs.frozen(kw_only=True, weakref_slot=False)
class Prediction:
    """Expected output content, which lets the model answer faster when it matches."""

    type: ClassVar[str] = "content"
    content: str = attrs.field(default="", validator=c.string())


_JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def _check_type(_: Any, attribute: Any, value: Any) -> None:
    if value is UNSET:
        return
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, tuple) or not names:
        raise c.fail(attribute.name, value, "is not a JSON-schema type name or a tuple of them")
    for name in names:
        if name not in _JSON_TYPES:
            raise c.fail(attribute.name, name, f"is not a JSON-schema type ({', '.join(sorted(_JSON_TYPES))})")


def _to_definitions(value: Any) -> Any:
    if value is UNSET or isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict(value)
    return value


def _check_definitions(_: Any, attribute: Any, value: Any) -> None:
    if value is UNSET:
        return
    if not isinstance(value, Mapping):
        raise c.fail(attribute.name, value, "is not a mapping of names to PropertyDefinition")
    for key, item in value.items():
        if not isinstance(item, PropertyDefinition):
            raise c.fail(f"{attribute.name}.{key}", item, "is not a PropertyDefinition")


def _check_additional(_: Any, attribute: Any, value: Any) -> None:
    if value is UNSET or isinstance(value, (bool, PropertyDefinition)):
        return
    raise c.fail(attribute.name, value, "is not a bool or a PropertyDefinition")


@attrs.frozen(kw_only=True, weakref_slot=False)
class PropertyDefinition:
    """A JSON-schema node, as the Go client's ``PropertyDefinition``; :meth:`to_schema` gives the dict.

    ``type`` is a JSON type name (or a tuple of them), ``properties`` maps names to nested
    definitions, ``items`` describes array items, ``additional_properties`` is a bool or a definition.
    """

    type: str | tuple[str, ...] | UnsetType = attrs.field(default=UNSET, converter=c.to_tuple, validator=_check_type)
    description: str | UnsetType = attrs.field(default=UNSET, validator=c.string())
    properties: FrozenDict | UnsetType = attrs.field(
        default=UNSET, converter=_to_definitions, validator=_check_definitions
    )
    items: PropertyDefinition | UnsetType = attrs.field(default=UNSET)
    enum: tuple[JSONValue, ...] | UnsetType = attrs.field(
        default=UNSET,
        converter=c.to_tuple,
        validator=attrs.validators.and_(c.items_of(object, what="JSON value"), c.json_value()),
    )
    required: tuple[str, ...] | UnsetType = attrs.field(default=UNSET, converter=c.to_tuple, validator=c.items_of(str))
    default: JSONValue | UnsetType = attrs.field(default=UNSET, converter=c.to_frozen, validator=c.json_value())
    additional_properties: bool | PropertyDefinition | UnsetType = attrs.field(
        default=UNSET, validator=_check_additional
    )

    @items.validator
    def _check_items(self, attribute: Any, value: Any) -> None:
        if value is not UNSET and not isinstance(value, PropertyDefinition):
            raise c.fail(attribute.name, value, "is not a PropertyDefinition")

    def to_schema(self) -> FrozenDict:
        """Return this definition as a (frozen) JSON-schema dict."""
        out: dict[str, Any] = {}
        if self.type is not UNSET:
            out["type"] = self.type if isinstance(self.type, str) else list(self.type)
        if self.description is not UNSET:
            out["description"] = self.description
        if self.properties is not UNSET:
            out["properties"] = {k: v.to_schema() for k, v in self.properties.items()}
        if self.items is not UNSET:
            out["items"] = self.items.to_schema()
        if self.enum is not UNSET:
            out["enum"] = list(self.enum)
        if self.required is not UNSET:
            out["required"] = list(self.required)
        if self.default is not UNSET:
            out["default"] = self.default
        if self.additional_properties is not UNSET:
            ap = self.additional_properties
            out["additionalProperties"] = ap.to_schema() if isinstance(ap, PropertyDefinition) else ap
        return freeze(out)  # type: ignore[no-any-return]

    @classmethod
    def object(
        cls,
        properties: Mapping[str, PropertyDefinition],
        *,
        required: Sequence[str] | UnsetType | None = None,
        description: str | UnsetType | None = UNSET,
        additional_properties: bool | UnsetType | None = UNSET,
    ) -> PropertyDefinition:
        """Return an ``object`` definition; ``required`` defaults to every property.

        ``None`` and ``UNSET`` both mean "not given".
        """
        return cls(
            type="object",
            properties=properties,
            required=tuple(properties) if required is None or required is UNSET else tuple(required),
            description=unset_if_none(description),
            additional_properties=unset_if_none(additional_properties),
        )


IMPLIED_AUTO: Final[ToolChoice] = ToolChoice(mode=ToolChoiceMode.AUTO)
"""The ``auto`` that :meth:`~chatdsl.ChatCompletionRequest.with_tools` implies: equal to ``ToolChoice.AUTO``
but its own object, so :func:`~chatdsl.model.templating.merge` can tell it from a choice someone made
(an overlay's implied ``auto`` yields to the base's choice, as ``with_tools`` itself would)."""
