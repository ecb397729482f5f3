"""The one converter: wire names, omission of unset fields, tagged unions, strict and lenient reading.

Built once at import. Per-class hooks are registered first, unions last. Requests are read
strictly (an unknown key or a wrong type is a :class:`~chatdsl.ValidationError` naming its path);
responses and chunks leniently and losslessly (unknown keys kept in each object's ``extra`` and
written back, unknown part types kept as :class:`~chatdsl.UnknownChunk`, unknown enum values kept
as strings). The keys each response object reads are derived from its fields (:func:`_wire_keys`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.fns import identity
from cattrs.gen import make_dict_structure_fn as _gen_structure
from cattrs.gen import make_dict_unstructure_fn as _gen_unstructure
from cattrs.gen import override

from chatdsl import _json
from chatdsl._checks import type_name
from chatdsl._errors import ValidationError
from chatdsl._json import dumps as dumps
from chatdsl._json import dumps_bytes as dumps_bytes
from chatdsl._types import UNSET, FrozenDict, freeze, short_repr
from chatdsl.model.guardrails import GuardrailConfig, ModerationConfig
from chatdsl.model.messages import (
    AssistantMessage,
    AudioChunk,
    DocumentURLChunk,
    FileChunk,
    FunctionCall,
    ImageDetail,
    ImageURLChunk,
    ReferenceChunk,
    SystemMessage,
    TextChunk,
    ThinkChunk,
    ToolCall,
    ToolMessage,
    ToolReferenceChunk,
    UnknownChunk,
    UserMessage,
)
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import (
    ChatCompletionChoice,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionResponseStreamChoice,
    FinishReason,
    PromptTokensDetails,
    UsageInfo,
)
from chatdsl.model.tools import Function, JsonSchema, Prediction, ResponseFormat, Tool, ToolChoice
from chatdsl.output.convert import output_converter as output_converter  # re-exported for client/loop.py
from chatdsl.output.convert import problems

_T = TypeVar("_T")
logger = logging.getLogger("chatdsl")

# cattrs' generators take field overrides as **kwargs, which its stubs cannot express.
make_dict_structure_fn: Any = _gen_structure
make_dict_unstructure_fn: Any = _gen_unstructure

converter: Final = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
"""The private converter of chatdsl (never cattrs' global one)."""

_ATTRS_MODELS: Final = (
    TextChunk,
    ImageURLChunk,
    DocumentURLChunk,
    FileChunk,
    ReferenceChunk,
    AudioChunk,
    ToolReferenceChunk,
    ThinkChunk,
    FunctionCall,
    ToolCall,
    SystemMessage,
    UserMessage,
    AssistantMessage,
    ToolMessage,
    Function,
    Tool,
    ToolChoice,
    JsonSchema,
    ResponseFormat,
    Prediction,
    GuardrailConfig,
    ModerationConfig,
)

# ------------------------------------------------------------------------------------------ errors


def as_validation_error(exc: BaseException, prefix: str = "") -> ValidationError:
    """Return *exc* as one :class:`ValidationError` listing every problem with its path."""
    found = problems(exc, prefix)
    return ValidationError("", "", errors=found or [(prefix, str(exc))])


def _expect_object(value: Any, what: str) -> Mapping[str, Any]:
    if value.__class__ is dict:
        return value
    if not isinstance(value, Mapping):
        raise ValidationError("", f"{short_repr(value)} is {type_name(value)}, not a JSON object ({what})")
    return value


# ------------------------------------------------------------------------------------ unstructure


def _passthrough(value: Any, _: Any = None) -> Any:
    """Structure hook for fields the model's own converters and validators check (``null`` means unset)."""
    return UNSET if value is None else value


def _keep(value: Any, _: Any = None) -> Any:
    """Structure hook for required fields and fields with a real default: ``null`` reaches the validator."""
    return value


def _enum_value(value: Any) -> Any:
    return value.value


def _open_enum_value(value: Any) -> Any:
    """An open enum field's wire value: a member's value, or the unknown string itself."""
    return value if value.__class__ is str else value.value


def _unstructure_content(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return [_unstructure_chunk(part) for part in value]


_CHUNK_UNSTRUCTURE: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _unstructure_chunk(part: Any) -> dict[str, Any]:
    return _CHUNK_UNSTRUCTURE[part.__class__](part)


def _unstructure_image(part: ImageURLChunk) -> dict[str, Any]:
    if part.detail is UNSET:
        return {"type": "image_url", "image_url": part.url}
    return {"type": "image_url", "image_url": {"url": part.url, "detail": part.detail.value}}


def _unstructure_unknown(part: UnknownChunk) -> dict[str, Any]:
    return {"type": part.type, **part.extra}


def _with_tag(
    key: str, base: Callable[[Any], dict[str, Any]], value_of: Callable[[Any], Any]
) -> Callable[[Any], dict[str, Any]]:
    def unstructure(obj: Any) -> dict[str, Any]:
        out = {key: value_of(obj)}
        out.update(base(obj))
        return out

    return unstructure


def _constant(value: str) -> Callable[[Any], str]:
    def get(_: Any) -> str:
        return value

    return get


def _make_unstructure(cls: type, **overrides: Any) -> Callable[[Any], dict[str, Any]]:
    fn: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(
        cls, converter, _cattrs_omit_if_default=True, **overrides
    )
    return fn


def _raw(*names: str) -> dict[str, Any]:
    return {name: override(unstruct_hook=identity) for name in names}


_NO_EXTRA_OUT: Final = {"extra": override(omit=True)}
"""Request bodies never carry the ``extra`` keys read from a response (strict requests)."""


def _enums(*names: str) -> dict[str, Any]:
    return {name: override(unstruct_hook=_open_enum_value) for name in names}


def _register_unstructure() -> None:
    simple_tagged: list[tuple[type, dict[str, Any]]] = [
        (TextChunk, _raw("text")),
        (DocumentURLChunk, _raw("document_url", "document_name")),
        (FileChunk, _raw("file_id")),
        (ReferenceChunk, {"reference_ids": override(unstruct_hook=list)}),
        (AudioChunk, _raw("input_audio")),
        (ToolReferenceChunk, _raw("tool", "title", "url", "favicon", "description")),
    ]
    for cls, overrides in simple_tagged:
        base = _make_unstructure(cls, **overrides, **_NO_EXTRA_OUT)
        fn = _with_tag("type", base, lambda obj: obj.type)
        _CHUNK_UNSTRUCTURE[cls] = fn
        converter.register_unstructure_hook(cls, fn)
    _CHUNK_UNSTRUCTURE[ImageURLChunk] = _unstructure_image
    converter.register_unstructure_hook(ImageURLChunk, _unstructure_image)
    _CHUNK_UNSTRUCTURE[UnknownChunk] = _unstructure_unknown
    converter.register_unstructure_hook(UnknownChunk, _unstructure_unknown)

    think_base = _make_unstructure(
        ThinkChunk,
        thinking=override(unstruct_hook=lambda parts: [_unstructure_chunk(p) for p in parts]),
        **_raw("closed", "signature"),
        **_NO_EXTRA_OUT,
    )
    _CHUNK_UNSTRUCTURE[ThinkChunk] = _with_tag("type", think_base, lambda obj: obj.type)
    converter.register_unstructure_hook(ThinkChunk, _CHUNK_UNSTRUCTURE[ThinkChunk])

    function_call = _make_unstructure(FunctionCall, **_raw("name", "arguments"), **_NO_EXTRA_OUT)
    converter.register_unstructure_hook(FunctionCall, function_call)

    def tool_call(obj: ToolCall) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if obj.id is not UNSET:
            out["id"] = obj.id
        out["type"] = "function"
        out["function"] = function_call(obj.function)
        if obj.index is not UNSET:
            out["index"] = obj.index
        return out

    converter.register_unstructure_hook(ToolCall, tool_call)

    content = override(unstruct_hook=_unstructure_content)
    messages: list[tuple[type, dict[str, Any]]] = [
        (SystemMessage, {"content": content}),
        (UserMessage, {"content": content}),
        (
            AssistantMessage,
            {
                "content": content,
                "tool_calls": override(unstruct_hook=lambda calls: [tool_call(c) for c in calls]),
                **_raw("prefix"),
                **_NO_EXTRA_OUT,
            },
        ),
        (ToolMessage, {"content": content, **_raw("tool_call_id", "name")}),
    ]
    for cls, overrides in messages:
        base = _make_unstructure(cls, **overrides)
        role = cls.role.value  # type: ignore[attr-defined]
        converter.register_unstructure_hook(cls, _with_tag("role", base, _constant(role)))
        _MESSAGE_UNSTRUCTURE[cls] = converter.get_unstructure_hook(cls)

    function = _make_unstructure(
        Function,
        parameters=override(unstruct_hook=identity, omit_if_default=False),
        **_raw("name", "description", "strict"),
    )
    converter.register_unstructure_hook(Function, function)

    def tool(obj: Tool) -> dict[str, Any]:
        return {"type": "function", "function": function(obj.function)}

    converter.register_unstructure_hook(Tool, tool)

    def tool_choice(obj: ToolChoice) -> Any:
        if obj.mode is not UNSET:
            return obj.mode.value
        return {"type": "function", "function": {"name": obj.function}}

    converter.register_unstructure_hook(ToolChoice, tool_choice)

    json_schema = _make_unstructure(JsonSchema, **_raw("name", "schema", "description", "strict"))
    converter.register_unstructure_hook(JsonSchema, json_schema)

    def response_format(obj: ResponseFormat) -> dict[str, Any]:
        out: dict[str, Any] = {"type": obj.type.value}
        if obj.json_schema is not UNSET:
            out["json_schema"] = json_schema(obj.json_schema)
        return out

    converter.register_unstructure_hook(ResponseFormat, response_format)

    def prediction(obj: Prediction) -> dict[str, Any]:
        return {"type": "content", "content": obj.content}

    converter.register_unstructure_hook(Prediction, prediction)

    moderation = _make_unstructure(
        ModerationConfig,
        custom_category_thresholds=override(unstruct_hook=identity),
        **_raw("model_name", "ignore_other_categories"),
        **_enums("action"),
    )
    converter.register_unstructure_hook(ModerationConfig, moderation)
    guardrail = _make_unstructure(
        GuardrailConfig,
        moderation_llm_v1=override(unstruct_hook=moderation),
        moderation_llm_v2=override(unstruct_hook=moderation),
        **_raw("block_on_error"),
    )
    converter.register_unstructure_hook(GuardrailConfig, guardrail)

    request_base = _make_unstructure(
        ChatCompletionRequest,
        messages=override(unstruct_hook=lambda ms: [_MESSAGE_UNSTRUCTURE[m.__class__](m) for m in ms]),
        tools=override(unstruct_hook=lambda ts: [tool(t) for t in ts]),
        response_format=override(unstruct_hook=response_format),
        tool_choice=override(unstruct_hook=tool_choice),
        stop=override(unstruct_hook=lambda s: s if isinstance(s, str) else list(s)),
        prediction=override(unstruct_hook=prediction),
        extra=override(omit=True),
        **_raw(
            "model",
            "max_tokens",
            "temperature",
            "top_p",
            "parallel_tool_calls",
            "frequency_penalty",
            "presence_penalty",
            "n",
            "random_seed",
            "safe_prompt",
            "stream",
            "metadata",
            "prompt_cache_key",
            "top_k",
            "min_tokens",
            "repetition_penalty",
            "logprobs",
            "top_logprobs",
            "prompt_logprobs",
            "top_prompt_logprobs",
        ),
        guardrails=override(unstruct_hook=lambda gs: [guardrail(g) for g in gs]),
        **_enums("prompt_mode", "reasoning_effort", "service_tier"),
    )

    def request(obj: ChatCompletionRequest) -> dict[str, Any]:
        out = request_base(obj)
        if obj.extra:
            out.update(obj.extra)
        return out

    converter.register_unstructure_hook(ChatCompletionRequest, request)


_MESSAGE_UNSTRUCTURE: dict[type, Callable[[Any], dict[str, Any]]] = {}

# -------------------------------------------------------------------------- structure (strict)


def _tagged(
    key: str,
    classes: Mapping[str, type],
    what: str,
    *,
    structure: Callable[[type, Mapping[str, Any]], Any] | None = None,
) -> Callable[[Any, Any], Any]:
    """Return a structure hook for the union of *classes*, tagged by *key* (which is stripped)."""
    allowed = ", ".join(repr(t) for t in classes)

    def hook(value: Any, _: Any = None) -> Any:
        data = _expect_object(value, what)
        if key not in data:
            raise ValidationError(key, f"is missing; a {what} needs one of {allowed}")
        tag = data[key]
        cls = classes.get(tag) if isinstance(tag, str) else None
        if cls is None:
            raise ValidationError(key, f"{short_repr(tag)} is not one of {allowed}")
        body = {k: v for k, v in data.items() if k != key}
        if structure is not None:
            return structure(cls, body)
        return converter.structure(body, cls)

    return hook


def _structure_content(value: Any, _: Any = None) -> Any:
    if value is None:
        return UNSET
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        out = []
        for index, part in enumerate(value):
            try:
                out.append(_structure_chunk(part, None))
            except ValidationError as exc:
                raise exc.with_prefix(f"[{index}]") from None
            except Exception as exc:
                raise as_validation_error(exc, f"[{index}]") from None
        return tuple(out)
    raise ValidationError("", f"{short_repr(value)} is {type_name(value)}, not a string or a list of content parts")


def _structure_image(cls: type, body: Mapping[str, Any]) -> ImageURLChunk:
    extra = set(body) - {"image_url"}
    if extra:
        raise ValidationError(sorted(extra)[0], "is not a known field of an image_url part")
    if "image_url" not in body:
        raise ValidationError("image_url", "is required")
    image = body["image_url"]
    if isinstance(image, str):
        return ImageURLChunk(url=image)
    data = _expect_object(image, "image_url")
    extra = set(data) - {"url", "detail"}
    if extra:
        raise ValidationError(f"image_url.{sorted(extra)[0]}", "is not a known field (known: url, detail)")
    if "url" not in data:
        raise ValidationError("image_url.url", "is required")
    try:
        return ImageURLChunk(url=data["url"], detail=_passthrough(data.get("detail")))
    except ValidationError as exc:
        raise exc.with_prefix("image_url") from None


def _structure_tagged_class(cls: type, body: Mapping[str, Any]) -> Any:
    if cls is ImageURLChunk:
        return _structure_image(cls, body)
    return converter.structure(body, cls)


_CHUNK_TAGS: Final[dict[str, type]] = {
    "text": TextChunk,
    "image_url": ImageURLChunk,
    "document_url": DocumentURLChunk,
    "reference": ReferenceChunk,
    "file": FileChunk,
    "thinking": ThinkChunk,
    "input_audio": AudioChunk,
}
_structure_chunk = _tagged("type", _CHUNK_TAGS, "content part", structure=_structure_tagged_class)
_structure_think_part = _tagged(
    "type",
    {"text": TextChunk, "reference": ReferenceChunk, "tool_reference": ToolReferenceChunk},
    "thinking part",
)
_MESSAGE_TAGS: Final[dict[str, type]] = {
    "system": SystemMessage,
    "user": UserMessage,
    "assistant": AssistantMessage,
    "tool": ToolMessage,
}
_structure_message = _tagged("role", _MESSAGE_TAGS, "message")


_REJECT: Final = object()
"""``if_none`` of :func:`_list_of` for lists that may not be ``null``."""


def _list_of(item: Callable[[Any, Any], Any], what: str, *, if_none: Any = UNSET) -> Callable[[Any, Any], Any]:
    """Return a hook structuring a JSON list with *item*; ``null`` gives *if_none* (or an error for ``_REJECT``)."""

    def hook(value: Any, _: Any = None) -> Any:
        if value is None and if_none is not _REJECT:
            return if_none
        if not isinstance(value, list):
            raise ValidationError("", f"{short_repr(value)} is {type_name(value)}, not a list of {what}")
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item(element, None))
            except ValidationError as exc:
                raise exc.with_prefix(f"[{index}]") from None
            except Exception as exc:
                raise as_validation_error(exc, f"[{index}]") from None
        return tuple(out)

    return hook


def _make_structure(cls: type, **overrides: Any) -> Callable[[Any, Any], Any]:
    fields = {a.name: override(struct_hook=_passthrough if a.default is UNSET else _keep) for a in attrs.fields(cls)}
    if "extra" in fields:  # never read from a request body (``ChatCompletionRequest`` reads its own)
        fields["extra"] = override(omit=True)
    fields.update(overrides)
    fn = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **fields)

    def hook(value: Any, _: Any = None) -> Any:
        return fn(_expect_object(value, cls.__name__), cls)

    return hook


def _structure_tool_choice(value: Any, _: Any = None) -> ToolChoice:
    if value is None:
        return UNSET  # type: ignore[return-value]
    if isinstance(value, str):
        try:
            return ToolChoice.coerce(value)
        except ValidationError as exc:
            raise ValidationError("", exc.rule) from None
    data = _expect_object(value, "tool choice")
    if data.get("type", "function") != "function":
        raise ValidationError("type", f"{short_repr(data.get('type'))} is not 'function'")
    extra = set(data) - {"type", "function"}
    if extra:
        raise ValidationError(sorted(extra)[0], "is not a known field (known: type, function)")
    function = _expect_object(data.get("function"), "tool choice function")
    if set(function) != {"name"}:
        raise ValidationError("function", "must be an object with exactly the key 'name'")
    return ToolChoice(function=function["name"])


def _single(tag_key: str, tag: str, cls: type, what: str) -> Callable[[Any, Any], Any]:
    inner = _tagged(tag_key, {tag: cls}, what)

    def hook(value: Any, _: Any = None) -> Any:
        if value is None:
            return UNSET
        data = _expect_object(value, what)
        if tag_key not in data:
            data = {tag_key: tag, **data}
        return inner(data, None)

    return hook


def _register_structure() -> Callable[[Any, Any], Any]:
    """Register the request-side structure hooks; return the one for a whole request (strict)."""
    content = override(struct_hook=_structure_content)
    converter.register_structure_hook(TextChunk, _make_structure(TextChunk))
    for cls in (DocumentURLChunk, FileChunk, ReferenceChunk, AudioChunk, ToolReferenceChunk):
        converter.register_structure_hook(cls, _make_structure(cls))
    converter.register_structure_hook(
        ThinkChunk,
        _make_structure(
            ThinkChunk, thinking=override(struct_hook=_list_of(_structure_think_part, "parts", if_none=_REJECT))
        ),
    )
    converter.register_structure_hook(FunctionCall, _make_structure(FunctionCall))
    function_call = override(struct_hook=lambda v, _: converter.structure(v, FunctionCall))
    tool_call_base = _make_structure(ToolCall, function=function_call)

    def tool_call(value: Any, _: Any = None) -> ToolCall:
        data = _expect_object(value, "tool call")
        if "type" in data:
            if data["type"] != "function":
                raise ValidationError("type", f"{short_repr(data['type'])} is not 'function'")
            data = {k: v for k, v in data.items() if k != "type"}
        return tool_call_base(data, None)  # type: ignore[no-any-return]

    converter.register_structure_hook(ToolCall, tool_call)
    converter.register_structure_hook(SystemMessage, _make_structure(SystemMessage, content=content))
    converter.register_structure_hook(UserMessage, _make_structure(UserMessage, content=content))
    converter.register_structure_hook(
        AssistantMessage,
        _make_structure(
            AssistantMessage, content=content, tool_calls=override(struct_hook=_list_of(tool_call, "tool calls"))
        ),
    )
    converter.register_structure_hook(ToolMessage, _make_structure(ToolMessage, content=content))
    converter.register_structure_hook(Function, _make_structure(Function))
    function_hook = override(struct_hook=lambda v, _: converter.structure(v, Function))
    converter.register_structure_hook(Tool, _make_structure(Tool, function=function_hook))
    converter.register_structure_hook(JsonSchema, _make_structure(JsonSchema))
    converter.register_structure_hook(
        ResponseFormat,
        _make_structure(ResponseFormat, json_schema=override(struct_hook=lambda v, _: _json_schema_hook(v))),
    )
    converter.register_structure_hook(Prediction, _make_structure(Prediction))
    converter.register_structure_hook(ToolChoice, _structure_tool_choice)
    converter.register_structure_hook(ModerationConfig, _make_structure(ModerationConfig))
    moderation = override(struct_hook=lambda v, _: UNSET if v is None else converter.structure(v, ModerationConfig))
    converter.register_structure_hook(
        GuardrailConfig,
        _make_structure(GuardrailConfig, moderation_llm_v1=moderation, moderation_llm_v2=moderation),
    )
    guardrail = converter.get_structure_hook(GuardrailConfig)
    return _make_structure(
        ChatCompletionRequest,
        messages=override(struct_hook=_list_of(_structure_message, "messages", if_none=_REJECT)),
        tools=override(struct_hook=_list_of(_single("type", "function", Tool, "tool"), "tools")),
        response_format=override(
            struct_hook=lambda v, _: UNSET if v is None else converter.structure(v, ResponseFormat)
        ),
        tool_choice=override(struct_hook=_structure_tool_choice),
        prediction=override(struct_hook=_single("type", "content", Prediction, "prediction")),
        guardrails=override(struct_hook=_list_of(guardrail, "guardrails")),
    )


def _json_schema_hook(value: Any) -> Any:
    if value is None:
        return UNSET
    return converter.structure(value, JsonSchema)


# ------------------------------------------------------------------------- responses (lenient)


def _lenient_str(value: Any) -> str:
    if value.__class__ is str:
        return value
    if value is None:
        return ""
    return str(value)


_INFINITIES: Final = (float("inf"), float("-inf"))


def _lenient_int(value: Any) -> int:
    if value.__class__ is int:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in _INFINITIES:
        raise ValidationError("", f"{short_repr(value)} is not a number")
    return int(value)


def _finish_reason(value: Any, _: Any = None) -> FinishReason | str | None:
    if value is None:
        return None
    reason = _FINISH_REASONS.get(value) if value.__class__ is str else None
    if reason is not None:
        return reason
    if not isinstance(value, str):
        raise ValidationError("", f"{short_repr(value)} is not a string")
    return str(value)


_FINISH_REASONS: Final[dict[str, FinishReason]] = {reason.value: reason for reason in FinishReason}


def _created(value: Any, _: Any = None) -> datetime | None:
    global _last_created
    if value is None:
        return None
    last = _last_created
    if value.__class__ is int and last[0] == value:
        cached: datetime = last[1]
        return cached  # a stream's chunks all carry the same timestamp
    seconds = _lenient_int(value)
    try:
        result = datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ValidationError("", f"{short_repr(value)} is not a valid timestamp") from None
    _last_created = (seconds, result)  # one atomic rebinding: safe across threads
    return result


_last_created: tuple[Any, Any] = (None, None)


def _wire_keys(cls: type, *, tag: str | None = None) -> frozenset[str]:
    """The wire keys of *cls*, derived from its fields (never ``extra`` nor the facts of the exchange), plus *tag*.

    Derived, not restated: a field added to a model is read at once instead of landing in ``extra``.
    """
    names = {a.name for a in attrs.fields(cls) if a.name != "extra" and a.metadata.get("wire", True)}
    if tag is not None:
        names.add(tag)
    return frozenset(names)


_THINK_PART_TAGS: Final[dict[str, type]] = {
    "text": TextChunk,
    "reference": ReferenceChunk,
    "tool_reference": ToolReferenceChunk,
}
_PART_KEYS: Final[dict[str, frozenset[str]]] = {
    **{tag: _wire_keys(cls, tag="type") for tag, cls in {**_CHUNK_TAGS, **_THINK_PART_TAGS}.items()},
    "image_url": frozenset({"type", "image_url"}),  # url and detail travel inside the "image_url" object
}
_IMAGE_KEYS: Final = _wire_keys(ImageURLChunk)
_TYPE_KEY: Final = frozenset({"type"})
_DETAILS: Final = frozenset(detail.value for detail in ImageDetail)
_NO_EXTRA: Final = FrozenDict()


def _extras(data: Mapping[str, Any], known: frozenset[str]) -> FrozenDict:
    """Return the keys of *data* that are not in *known*, frozen (the shared empty one when there are none)."""
    if known.issuperset(data):
        return _NO_EXTRA
    try:
        extra: FrozenDict = freeze({key: value for key, value in data.items() if key not in known})
    except (TypeError, ValueError) as exc:
        raise ValidationError("", f"holds a value JSON cannot carry ({exc})") from None
    return extra


def _with_extra(part: _T, extra: Mapping[str, Any]) -> _T:
    """Return *part* with *extra* (frozen by the field's converter), or *part* itself when there is none."""
    return attrs.evolve(part, extra=extra) if extra else part  # type: ignore[misc]


def _lenient_part(value: Any, *, inside_thinking: bool = False) -> Any:
    """Read a content part of a response, losing nothing.

    Unknown keys go to the part's ``extra``; a part of a type chatdsl does not model (here) becomes an
    :class:`UnknownChunk`; a part without a string ``type`` is skipped (``None``).
    """
    data = _expect_object(value, "content part")
    tag = data.get("type")
    if tag == "text" and len(data) == 2 and data.get("text").__class__ is str:
        return _new_text(data["text"], _NO_EXTRA)
    tags = _THINK_PART_TAGS if inside_thinking else _CHUNK_TAGS
    cls = tags.get(tag) if isinstance(tag, str) else None
    if cls is None:
        if not isinstance(tag, str) or not tag:
            logger.debug("skipped a response content part without a type: %s", short_repr(value))
            return None
        return UnknownChunk(type=str(tag), extra=_extras(data, _TYPE_KEY))
    keys = _PART_KEYS[str(tag)]
    extra = dict(_extras(data, keys))
    body = {key: item for key, item in data.items() if key in keys and key != "type"}
    for key, item in body.items():
        if item is None:
            extra[key] = None  # read as unset, written back as it came
    if cls is ThinkChunk:
        return _lenient_thinking(body, extra)
    image = body.get("image_url")
    if isinstance(image, Mapping):
        kept = {key: item for key, item in image.items() if key in _IMAGE_KEYS}
        if len(kept) < len(image) or ("detail" in kept and kept["detail"] not in _DETAILS):
            extra["image_url"] = image  # written back as it came
            if kept.get("detail") not in _DETAILS:
                kept.pop("detail", None)  # an unknown detail level is not worth failing for
        body["image_url"] = kept
    return _with_extra(_structure_tagged_class(cls, body), extra)


def _lenient_thinking(body: Mapping[str, Any], extra: dict[str, Any]) -> ThinkChunk:
    thinking = body.get("thinking")
    if not isinstance(thinking, list):
        raise ValidationError("thinking", f"{short_repr(thinking)} is {type_name(thinking)}, not a list of parts")
    parts = []
    for index, item in enumerate(thinking):
        try:
            part = _lenient_part(item, inside_thinking=True)
        except ValidationError as exc:
            raise exc.with_prefix(f"thinking[{index}]") from None
        if part is not None:
            parts.append(part)
    return ThinkChunk(
        thinking=tuple(parts),
        closed=_passthrough(body.get("closed")),
        signature=_passthrough(body.get("signature")),
        extra=extra,
    )


def _lenient_content(value: Any) -> Any:
    if value.__class__ is str:
        return value
    if value is None:
        return UNSET
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        parts = []
        for index, part in enumerate(value):
            try:
                part = _lenient_part(part)
                if part is not None:
                    parts.append(part)
            except ValidationError as exc:
                raise exc.with_prefix(f"[{index}]") from None
            except Exception as exc:
                raise as_validation_error(exc, f"[{index}]") from None
        return tuple(parts)
    raise ValidationError("", f"{short_repr(value)} is not a string or a list of content parts")


def _trusted(cls: type[_T], *, fields: int | None = None) -> Callable[..., _T]:
    """Return a positional constructor of *cls* that sets its slots without running validators.

    Only for the lenient response path, whose hooks have already checked every value's type. With
    *fields*, it takes only the first *fields* fields and gives the rest their (constant) defaults.
    """
    every = list(attrs.fields(cls))  # type: ignore[arg-type]
    names = [a.name for a in every]
    taken = names if fields is None else names[:fields]
    lines = [f"def make({', '.join(taken)}):", "    o = _new(_cls)"]
    lines += [f"    _set_{name}(o, {name})" for name in taken]
    lines += [f"    _set_{name}(o, _default_{name})" for name in names[len(taken) :]]
    lines.append("    return o")
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    for attribute in every:  # the slots' own descriptors: cheaper than object.__setattr__ on a frozen class
        namespace[f"_set_{attribute.name}"] = cls.__dict__[attribute.name].__set__
        namespace[f"_default_{attribute.name}"] = attribute.default
    exec("\n".join(lines), namespace)  # generated from the class's own field names
    make: Callable[..., _T] = namespace["make"]
    make.__qualname__ = f"_trusted.<{cls.__name__}>"
    return make


_new_text = _trusted(TextChunk)
_new_function_call = _trusted(FunctionCall)
_new_tool_call = _trusted(ToolCall)
_new_assistant = _trusted(AssistantMessage)
_EMPTY_ASSISTANT: Final = AssistantMessage()
_new_usage = _trusted(UsageInfo)
_FUNCTION_KEYS: Final = _wire_keys(FunctionCall)
_TOOL_CALL_KEYS: Final = _wire_keys(ToolCall, tag="type")
_MESSAGE_KEYS: Final = _wire_keys(AssistantMessage, tag="role")
_UNSURE: Final = object()


def _lenient_arguments(value: Any) -> Any:
    if value is None:
        return ""
    if value.__class__ is str:
        return value
    if isinstance(value, Mapping):
        try:
            return freeze(value)
        except (TypeError, ValueError) as exc:
            raise ValidationError("function.arguments", f"is not a JSON object ({exc})") from None
    if isinstance(value, str):
        return str(value)
    raise ValidationError("function.arguments", f"{short_repr(value)} is not a JSON string or a JSON object")


def _lenient_tool_call(value: Any) -> ToolCall:
    data = value if value.__class__ is dict else _expect_object(value, "tool call")
    function = data.get("function")
    if function.__class__ is not dict:
        function = _expect_object(function if function is not None else {}, "function call")
    name = function.get("name")
    arguments = function.get("arguments")
    call_id = data.get("id")
    index = data.get("index")
    extra = _NO_EXTRA
    if (
        not _TOOL_CALL_KEYS.issuperset(data)
        or data.get("type", "function") != "function"
        or (call_id is None and "id" in data)
        or (index is None and "index" in data)
    ):
        known = _TOOL_CALL_KEYS - {key for key in ("id", "index") if key in data and data[key] is None}
        extra = _extras(data, known if data.get("type", "function") == "function" else known - _TYPE_KEY)
    return _new_tool_call(
        _new_function_call(
            name if name.__class__ is str else _lenient_str(name),
            arguments if arguments.__class__ is str else _lenient_arguments(arguments),
            _extras(function, _FUNCTION_KEYS),
        ),
        call_id if call_id.__class__ is str else (UNSET if call_id is None else _lenient_str(call_id)),
        index if index.__class__ is int else (UNSET if index is None else _lenient_int(index)),
        extra,
    )


def _lenient_assistant(value: Any, _: Any = None) -> AssistantMessage:
    if value.__class__ is dict:
        text = value.get("content")
        if text.__class__ is str:  # a streamed text delta, the most common message of all: no other key
            size = len(value)
            if size == 1 or (size == 2 and value.get("role") == "assistant"):
                return _new_assistant(text, UNSET, UNSET, _NO_EXTRA)
    data = _expect_object(value, "assistant message")
    problems: list[tuple[str, str]] = []
    content: Any = UNSET
    try:
        content = _lenient_content(data.get("content"))
    except ValidationError as exc:
        problems += exc.with_prefix("content").errors
    calls: Any = UNSET
    raw_calls = data.get("tool_calls")
    if raw_calls is not None:
        if not isinstance(raw_calls, list):
            problems.append(("tool_calls", f"{short_repr(raw_calls)} is not a list"))
        else:
            parsed = []
            for index, call in enumerate(raw_calls):
                try:
                    parsed.append(_lenient_tool_call(call))
                except ValidationError as exc:
                    problems += exc.with_prefix(f"tool_calls[{index}]").errors
            calls = tuple(parsed)
    prefix = data.get("prefix")
    known = _MESSAGE_KEYS  # a value chatdsl would not write back as it came stays in ``extra``
    if data.get("role", "assistant") != "assistant":
        known = known - {"role"}
    if "prefix" in data and not isinstance(prefix, bool):
        known = known - {"prefix"}
    if data.get("refusal").__class__ is str:
        known = known | {"refusal"}  # the choice's ``refusal``
    extra = _NO_EXTRA
    try:
        extra = _extras(data, known)
    except ValidationError as exc:
        problems += exc.errors
    if problems:
        raise ValidationError("", "", errors=problems)
    return _new_assistant(content, calls, prefix if isinstance(prefix, bool) else UNSET, extra)


def field(data: Mapping[str, Any], key: str, hook: Callable[..., Any], problems: list[Any], default: Any) -> Any:
    """Return ``hook(data[key])`` (*default* when absent or ``null``), collecting errors in *problems*."""
    value = data.get(key)
    if value is None:
        return default
    try:
        return hook(value)
    except ValidationError as exc:
        problems += exc.with_prefix(key).errors
        return default


def _lenient_logprobs(value: Any) -> FrozenDict:
    data = _expect_object(value, "log probabilities")
    try:
        return freeze(data)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise ValidationError("", f"holds a value JSON cannot carry ({exc})") from None


def _register_responses() -> None:
    details_keys = _wire_keys(PromptTokensDetails)
    usage_keys = _wire_keys(UsageInfo)

    def details(value: Any, _: Any = None) -> PromptTokensDetails:
        data = _expect_object(value, "PromptTokensDetails")
        cached = data.get("cached_tokens")
        return PromptTokensDetails(
            cached_tokens=0 if cached is None else _lenient_int(cached), extra=_extras(data, details_keys)
        )

    def usage_info(value: Any, _: Any = None) -> UsageInfo:
        data = _expect_object(value, "UsageInfo")
        get = data.get
        problems: list[tuple[str, str]] = []
        extra = _NO_EXTRA
        try:
            extra = _extras(data, usage_keys)
        except ValidationError as exc:
            problems += exc.errors
        tier = get("service_tier")
        out = _new_usage(
            field(data, "prompt_tokens", _lenient_int, problems, 0),
            field(data, "completion_tokens", _lenient_int, problems, 0),
            field(data, "total_tokens", _lenient_int, problems, 0),
            field(data, "prompt_audio_seconds", _lenient_int, problems, None),
            field(data, "num_cached_tokens", _lenient_int, problems, None),
            None
            if get("prompt_tokens_details") is None
            else field(data, "prompt_tokens_details", details, problems, None),
            None if tier is None else _lenient_str(tier),
            extra,
        )
        if problems:
            raise ValidationError("", "", errors=problems)
        return out

    converter.register_structure_hook(PromptTokensDetails, details)
    converter.register_structure_hook(UsageInfo, usage_info)
    structure_usage = converter.get_structure_hook(UsageInfo)

    def choice(cls: type[Any], message_key: str) -> Callable[[Any, Any], Any]:
        make = _trusted(cls)
        names = [a.name for a in attrs.fields(cls)]
        assert names == ["index", message_key, "finish_reason", "refusal", "logprobs", "prompt_logprobs", "extra"]
        keys = _wire_keys(cls) - {"refusal"}  # a refusal travels inside the message

        def hook(value: Any, _: Any = None) -> Any:
            if value.__class__ is dict:  # the usual shape, read without the error plumbing
                get = value.get
                index = get("index", 0)
                message = get(message_key)
                reason = get("finish_reason")
                if reason is not None:
                    reason = _FINISH_REASONS.get(reason, _UNSURE) if reason.__class__ is str else _UNSURE
                if (
                    index.__class__ is int
                    and message.__class__ is dict
                    and reason is not _UNSURE
                    and get("logprobs") is None
                    and get("prompt_logprobs") is None
                    and "refusal" not in message
                    and keys.issuperset(value)
                ):
                    return make(index, _lenient_assistant(message), reason, None, None, None, _NO_EXTRA)
            return slow(value)

        def slow(value: Any) -> Any:
            data = _expect_object(value, cls.__name__)
            problems: list[tuple[str, str]] = []
            index = field(data, "index", _lenient_int, problems, 0)
            message = field(data, message_key, _lenient_assistant, problems, _EMPTY_ASSISTANT)
            reason = field(data, "finish_reason", _finish_reason, problems, None)
            logprobs = field(data, "logprobs", _lenient_logprobs, problems, None)
            prompt_logprobs = field(data, "prompt_logprobs", _lenient_logprobs, problems, None)
            raw = data.get(message_key)
            refusal = raw.get("refusal") if isinstance(raw, Mapping) else None
            extra = _NO_EXTRA
            try:
                extra = _extras(data, keys)
            except ValidationError as exc:
                problems += exc.errors
            if problems:
                raise ValidationError("", "", errors=problems)
            return make(
                index,
                message,
                reason,
                refusal if refusal.__class__ is str else None,
                logprobs,
                prompt_logprobs,
                extra,
            )

        return hook

    structure_choice = choice(ChatCompletionChoice, "message")
    structure_stream_choice = choice(CompletionResponseStreamChoice, "delta")
    converter.register_structure_hook(ChatCompletionChoice, structure_choice)
    converter.register_structure_hook(CompletionResponseStreamChoice, structure_stream_choice)

    def choices(item: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        return _list_of(item, "choices", if_none=())

    def top(cls: type[Any], object_default: str, item: Callable[[Any, Any], Any]) -> Any:
        structure_choices = choices(item)
        names = [a.name for a in attrs.fields(cls)]
        assert names[:7] == ["id", "object", "model", "created", "usage", "choices", "extra"], names
        assert all(not isinstance(a.default, attrs.Factory) for a in attrs.fields(cls)[7:])  # type: ignore[arg-type]
        make = _trusted(cls, fields=7)  # the facts of the exchange after the wire fields keep their defaults
        keys = _wire_keys(cls)

        def usage(value: Any) -> Any:
            return structure_usage(value, UsageInfo)

        def hook(value: Any, _: Any = None) -> Any:
            if value.__class__ is dict:  # the usual shape, read without the error plumbing
                get = value.get
                id_, object_, model, created = get("id"), get("object", object_default), get("model"), get("created")
                usage_, choices_ = get("usage"), get("choices")
                if (
                    id_.__class__ is str
                    and object_.__class__ is str
                    and model.__class__ is str
                    and created.__class__ is int
                    and choices_.__class__ is list
                    and (usage_ is None or usage_.__class__ is dict)
                    and keys.issuperset(value)
                ):
                    try:
                        return make(
                            id_,
                            object_,
                            model,
                            _created(created),
                            None if usage_ is None else structure_usage(usage_, UsageInfo),
                            tuple([item(c, None) for c in choices_]),
                            _NO_EXTRA,
                        )
                    except ValidationError:
                        pass  # the slow path below reports it with its full path
            return slow(value)

        def slow(value: Any) -> Any:
            data = _expect_object(value, cls.__name__)
            problems: list[tuple[str, str]] = []
            extra = _NO_EXTRA
            try:
                extra = _extras(data, keys)
            except ValidationError as exc:
                problems += exc.errors
            out = make(
                field(data, "id", _lenient_str, problems, ""),
                field(data, "object", _lenient_str, problems, object_default),
                field(data, "model", _lenient_str, problems, ""),
                field(data, "created", _created, problems, None),
                field(data, "usage", usage, problems, None),
                field(data, "choices", structure_choices, problems, ()),
                extra,
            )
            if problems:
                raise ValidationError("", "", errors=problems)
            return out

        return hook

    converter.register_structure_hook(
        ChatCompletionResponse, top(ChatCompletionResponse, "chat.completion", structure_choice)
    )
    converter.register_structure_hook(
        CompletionChunk, top(CompletionChunk, "chat.completion.chunk", structure_stream_choice)
    )
    _register_response_unstructure()


def _write_extra(base: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """Return *base* followed by the object's ``extra`` keys (written last: a key kept as it came wins)."""

    def unstructure(obj: Any) -> dict[str, Any]:
        out = base(obj)
        if obj.extra:
            out.update(obj.extra)
        return out

    return unstructure


_RESPONSE_PART_UNSTRUCTURE: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _register_response_unstructure() -> None:
    """Register the writers of response bodies.

    Full shapes (``null`` kept), every object's ``extra`` written back, the facts of the exchange left out.
    """

    def created(value: datetime | None) -> int | None:
        return None if value is None else int(value.timestamp())

    def reason_value(value: Any) -> Any:
        return value.value if isinstance(value, FinishReason) else value

    def part(obj: Any) -> dict[str, Any]:
        return _RESPONSE_PART_UNSTRUCTURE[obj.__class__](obj)

    for cls, base in _CHUNK_UNSTRUCTURE.items():
        _RESPONSE_PART_UNSTRUCTURE[cls] = base if cls is UnknownChunk else _write_extra(base)

    def thinking(obj: ThinkChunk) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "thinking", "thinking": [part(p) for p in obj.thinking]}
        if obj.closed is not UNSET:
            out["closed"] = obj.closed
        if obj.signature is not UNSET:
            out["signature"] = obj.signature
        if obj.extra:
            out.update(obj.extra)
        return out

    _RESPONSE_PART_UNSTRUCTURE[ThinkChunk] = thinking
    _RESPONSE_PART_UNSTRUCTURE[ToolReferenceChunk] = _write_extra(_CHUNK_UNSTRUCTURE[ToolReferenceChunk])

    def function_call(obj: FunctionCall) -> dict[str, Any]:
        out = {"name": obj.name, "arguments": obj.arguments}
        if obj.extra:
            out.update(obj.extra)
        return out

    def tool_call(obj: ToolCall) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if obj.id is not UNSET:
            out["id"] = obj.id
        out["type"] = "function"
        out["function"] = function_call(obj.function)
        if obj.index is not UNSET:
            out["index"] = obj.index
        if obj.extra:
            out.update(obj.extra)
        return out

    def message(obj: AssistantMessage) -> dict[str, Any]:
        content = obj.content
        calls = obj.tool_calls
        out: dict[str, Any] = {
            "role": "assistant",
            "content": None
            if content is UNSET
            else content
            if isinstance(content, str)
            else [part(p) for p in content],
            "tool_calls": None if calls is UNSET else [tool_call(c) for c in calls],
        }
        if obj.prefix is not UNSET:
            out["prefix"] = obj.prefix
        if obj.extra:
            out.update(obj.extra)
        return out

    def usage(obj: UsageInfo | None) -> dict[str, Any] | None:
        if obj is None:
            return None
        details = obj.prompt_tokens_details
        out = {
            "prompt_tokens": obj.prompt_tokens,
            "completion_tokens": obj.completion_tokens,
            "total_tokens": obj.total_tokens,
            "prompt_audio_seconds": obj.prompt_audio_seconds,
            "num_cached_tokens": obj.num_cached_tokens,
            "prompt_tokens_details": None
            if details is None
            else {"cached_tokens": details.cached_tokens, **details.extra},
            "service_tier": obj.service_tier,
        }
        if obj.extra:
            out.update(obj.extra)
        return out

    def choice(key: str) -> Callable[[Any], dict[str, Any]]:
        def unstructure(obj: Any) -> dict[str, Any]:
            written = message(getattr(obj, key))
            if key == "delta" and written["tool_calls"] is None:  # a delta without calls has no key (as sent)
                del written["tool_calls"]
            if obj.refusal is not None:  # a refusal travels in the message, as OpenAI sends it
                written["refusal"] = obj.refusal
            out = {
                "index": obj.index,
                key: written,
                "finish_reason": reason_value(obj.finish_reason),
                "logprobs": obj.logprobs,
                "prompt_logprobs": obj.prompt_logprobs,
            }
            if obj.extra:
                out.update(obj.extra)
            return out

        return unstructure

    def top(choice_hook: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
        def unstructure(obj: Any) -> dict[str, Any]:
            out = {
                "id": obj.id,
                "object": obj.object,
                "model": obj.model,
                "created": created(obj.created),
                "usage": usage(obj.usage),
                "choices": [choice_hook(c) for c in obj.choices],
            }
            if obj.extra:
                out.update(obj.extra)
            return out

        return unstructure

    for cls, hook in (
        (PromptTokensDetails, lambda obj: {"cached_tokens": obj.cached_tokens, **obj.extra}),
        (UsageInfo, usage),
        (ChatCompletionChoice, choice("message")),
        (CompletionResponseStreamChoice, choice("delta")),
        (ChatCompletionResponse, top(choice("message"))),
        (CompletionChunk, top(choice("delta"))),
    ):
        converter.register_unstructure_hook(cls, hook)


_register_unstructure()
_STRUCTURE_REQUEST: Final = _register_structure()
_register_responses()
_RESPONSE_HOOKS: Final[dict[type, Callable[[Any, Any], Any]]] = {
    cls: converter.get_structure_hook(cls) for cls in (ChatCompletionResponse, CompletionChunk)
}

# ------------------------------------------------------------------------------------ public API


def loads(text: str | bytes) -> Any:
    """Return the value JSON *text* holds; malformed JSON is a :class:`ValidationError`."""
    try:
        return _json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValidationError("", f"is not valid JSON ({exc})") from None


def unstructure_request(request: ChatCompletionRequest) -> dict[str, Any]:
    """Return the wire body of *request*."""
    return converter.unstructure(request, ChatCompletionRequest)  # type: ignore[no-any-return]


def structure_request(data: Any, *, allow_extra: bool = False) -> ChatCompletionRequest:
    """Return the request the wire body *data* describes (strict)."""
    if allow_extra and isinstance(data, Mapping):
        known = {k: v for k, v in data.items() if k in _REQUEST_FIELDS}
        extra = {k: v for k, v in data.items() if k not in _REQUEST_FIELDS}
        request = structure_request(known)
        return attrs.evolve(request, extra=extra) if extra else request
    if isinstance(data, Mapping) and "extra" in data:
        raise ValidationError("extra", "is not a known field (known: " + ", ".join(_REQUEST_FIELDS) + ")")
    try:
        return _STRUCTURE_REQUEST(data, None)  # type: ignore[no-any-return]
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError("", "is nested too deeply") from None
    except Exception as exc:
        raise as_validation_error(exc) from None


_REQUEST_FIELDS: Final = tuple(a.name for a in attrs.fields(ChatCompletionRequest) if a.name != "extra")


def loads_request(text: str | bytes, *, allow_extra: bool = False) -> ChatCompletionRequest:
    """Return the request a JSON wire body describes."""
    return structure_request(loads(text), allow_extra=allow_extra)


def structure_response(data: Any, cls: type[_T]) -> _T:
    """Return a response or chunk of type *cls* from its wire body (lenient)."""
    try:
        hook = _RESPONSE_HOOKS.get(cls)
        if hook is not None:
            return hook(data, cls)  # type: ignore[no-any-return]
        return converter.structure(data, cls)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError("", "is nested too deeply") from None
    except Exception as exc:
        raise as_validation_error(exc) from None


def loads_response(text: str | bytes, cls: type[_T]) -> _T:
    """Return a response or chunk of type *cls* from JSON text."""
    return structure_response(loads(text), cls)


def unstructure_response(obj: Any) -> dict[str, Any]:
    """Return the wire body of a response or chunk."""
    return converter.unstructure(obj, type(obj))  # type: ignore[no-any-return]
