"""The one converter: wire names, omission of unset fields, tagged unions, strict and lenient reading.

Built once at import. Per-class hooks are registered first, unions last. Requests are read
strictly (an unknown key or a wrong type is a :class:`~chatdsl.ValidationError` naming its path);
responses and chunks leniently and losslessly (unknown keys kept in each object's ``extra`` and
written back, unknown part types kept as :class:`~chatdsl.UnknownChunk`, unknown enum values kept
as strings). The keys each response object reads are derived from its fields (:func:`_wire_keys`).
"""

from __future__ import annotations

import logging
import types
import typing
from collections.abc import Callable, Mapping
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
from chatdsl._types import UNSET, UnsetType, short_repr
from chatdsl.model.guardrails import GuardrailConfig, ModerationConfig
from chatdsl.model.messages import (
    MESSAGE_TYPES,
    AssistantMessage,
    AudioChunk,
    ContentChunk,
    DocumentURLChunk,
    FileChunk,
    FunctionCall,
    ImageURLChunk,
    Message,
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
from chatdsl.model.tools import Function, JsonSchema, Prediction, ResponseFormat, Tool, ToolChoice
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


def expect_object(value: Any, what: str) -> Mapping[str, Any]:
    if value.__class__ is dict:
        return value
    if not isinstance(value, Mapping):
        raise ValidationError("", f"{short_repr(value)} is {type_name(value)}, not a JSON object ({what})")
    return value


# ------------------------------------------------------------------------------------ unstructure


def passthrough(value: Any, _: Any = None) -> Any:
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


CHUNK_UNSTRUCTURE: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _unstructure_chunk(part: Any) -> dict[str, Any]:
    return CHUNK_UNSTRUCTURE[part.__class__](part)


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
    """Return the writer of *cls*: scalar fields (derived from the field types) written as they are."""
    fn: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(
        cls, converter, _cattrs_omit_if_default=True, **{**scalar_fields(cls), **overrides}
    )
    return fn


_SCALARS: Final = frozenset({str, int, float, bool, type(None), UnsetType})


def scalar_fields(cls: type) -> dict[str, Any]:
    """Return identity overrides for the fields of *cls* whose type is a JSON scalar (or unset).

    Derived from the field types, so a scalar field added to a model is written without a
    hook lookup too; fields of any other type go through the converter.
    """
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for a in attrs.fields(cls):
        hint = hints.get(a.name)
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if args and all(arg in _SCALARS for arg in args):
            out[a.name] = override(unstruct_hook=identity)
    return out


def _raw(*names: str) -> dict[str, Any]:
    """Identity overrides for fields that are not scalars but are written as they are (frozen JSON values)."""
    return {name: override(unstruct_hook=identity) for name in names}


_NO_EXTRA_OUT: Final = {"extra": override(omit=True)}
"""Request bodies never carry the ``extra`` keys read from a response (strict requests)."""


def _enums(*names: str) -> dict[str, Any]:
    return {name: override(unstruct_hook=_open_enum_value) for name in names}


def _register_unstructure() -> None:
    simple_tagged: list[tuple[type, dict[str, Any]]] = [
        (TextChunk, {}),
        (DocumentURLChunk, {}),
        (FileChunk, {}),
        (ReferenceChunk, {"reference_ids": override(unstruct_hook=list)}),
        (AudioChunk, {}),
        (ToolReferenceChunk, {}),
    ]
    for cls, overrides in simple_tagged:
        base = _make_unstructure(cls, **overrides, **_NO_EXTRA_OUT)
        fn = _with_tag("type", base, lambda obj: obj.type)
        CHUNK_UNSTRUCTURE[cls] = fn
        converter.register_unstructure_hook(cls, fn)
    CHUNK_UNSTRUCTURE[ImageURLChunk] = _unstructure_image
    converter.register_unstructure_hook(ImageURLChunk, _unstructure_image)
    CHUNK_UNSTRUCTURE[UnknownChunk] = _unstructure_unknown
    converter.register_unstructure_hook(UnknownChunk, _unstructure_unknown)

    think_base = _make_unstructure(
        ThinkChunk,
        thinking=override(unstruct_hook=lambda parts: [_unstructure_chunk(p) for p in parts]),
        **_NO_EXTRA_OUT,
    )
    CHUNK_UNSTRUCTURE[ThinkChunk] = _with_tag("type", think_base, lambda obj: obj.type)
    converter.register_unstructure_hook(ThinkChunk, CHUNK_UNSTRUCTURE[ThinkChunk])

    function_call = _make_unstructure(FunctionCall, **_raw("arguments"), **_NO_EXTRA_OUT)
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
                **_NO_EXTRA_OUT,
            },
        ),
        (ToolMessage, {"content": content}),
    ]
    for cls, overrides in messages:
        base = _make_unstructure(cls, **overrides)
        role = cls.role.value  # type: ignore[attr-defined]
        converter.register_unstructure_hook(cls, _with_tag("role", base, _constant(role)))
        _MESSAGE_UNSTRUCTURE[cls] = converter.get_unstructure_hook(cls)

    function = _make_unstructure(
        Function,
        parameters=override(unstruct_hook=identity, omit_if_default=False),
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

    json_schema = _make_unstructure(JsonSchema, **_raw("schema"))
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
        data = expect_object(value, what)
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
    data = expect_object(image, "image_url")
    extra = set(data) - {"url", "detail"}
    if extra:
        raise ValidationError(f"image_url.{sorted(extra)[0]}", "is not a known field (known: url, detail)")
    if "url" not in data:
        raise ValidationError("image_url.url", "is required")
    try:
        return ImageURLChunk(url=data["url"], detail=passthrough(data.get("detail")))
    except ValidationError as exc:
        raise exc.with_prefix("image_url") from None


def structure_tagged_class(cls: type, body: Mapping[str, Any]) -> Any:
    if cls is ImageURLChunk:
        return _structure_image(cls, body)
    return converter.structure(body, cls)


CHUNK_TAGS: Final[dict[str, type]] = {cls.type: cls for cls in typing.get_args(ContentChunk) if cls is not UnknownChunk}
"""The request's content parts by their ``type`` tag (derived from :data:`~chatdsl.ContentChunk`)."""
_structure_chunk = _tagged("type", CHUNK_TAGS, "content part", structure=structure_tagged_class)
_structure_think_part = _tagged(
    "type",
    {"text": TextChunk, "reference": ReferenceChunk, "tool_reference": ToolReferenceChunk},
    "thinking part",
)
_MESSAGE_TAGS: Final[dict[str, type]] = {cls.role.value: cls for cls in MESSAGE_TYPES}  # type: ignore[attr-defined]
"""The messages by their ``role`` tag (derived from the classes' ``role``)."""
_structure_message = _tagged("role", _MESSAGE_TAGS, "message")


def structure_message(data: Any, path: str = "") -> Message:
    """Return the message a wire dict describes (strict, as ``from_dict``); errors are nested under *path*."""
    try:
        return _structure_message(data, None)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise exc.with_prefix(path) from None
    except RecursionError:
        raise ValidationError(path, "is nested too deeply") from None
    except Exception as exc:
        raise as_validation_error(exc, path) from None


_REJECT: Final = object()
"""``if_none`` of :func:`list_of` for lists that may not be ``null``."""


def list_of(item: Callable[[Any, Any], Any], what: str, *, if_none: Any = UNSET) -> Callable[[Any, Any], Any]:
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
    fields = {a.name: override(struct_hook=passthrough if a.default is UNSET else _keep) for a in attrs.fields(cls)}
    if "extra" in fields:  # never read from a request body (``ChatCompletionRequest`` reads its own)
        fields["extra"] = override(omit=True)
    fields.update(overrides)
    fn = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **fields)

    def hook(value: Any, _: Any = None) -> Any:
        return fn(expect_object(value, cls.__name__), cls)

    return hook


def _structure_tool_choice(value: Any, _: Any = None) -> ToolChoice:
    if value is None:
        return UNSET  # type: ignore[return-value]
    if isinstance(value, str):
        try:
            return ToolChoice.coerce(value)
        except ValidationError as exc:
            raise ValidationError("", exc.rule) from None
    data = expect_object(value, "tool choice")
    if data.get("type", "function") != "function":
        raise ValidationError("type", f"{short_repr(data.get('type'))} is not 'function'")
    extra = set(data) - {"type", "function"}
    if extra:
        raise ValidationError(sorted(extra)[0], "is not a known field (known: type, function)")
    function = expect_object(data.get("function"), "tool choice function")
    if set(function) != {"name"}:
        raise ValidationError("function", "must be an object with exactly the key 'name'")
    return ToolChoice(function=function["name"])


def _single(tag_key: str, tag: str, cls: type, what: str) -> Callable[[Any, Any], Any]:
    inner = _tagged(tag_key, {tag: cls}, what)

    def hook(value: Any, _: Any = None) -> Any:
        if value is None:
            return UNSET
        data = expect_object(value, what)
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
            ThinkChunk, thinking=override(struct_hook=list_of(_structure_think_part, "parts", if_none=_REJECT))
        ),
    )
    converter.register_structure_hook(FunctionCall, _make_structure(FunctionCall))
    function_call = override(struct_hook=lambda v, _: converter.structure(v, FunctionCall))
    tool_call_base = _make_structure(ToolCall, function=function_call)

    def tool_call(value: Any, _: Any = None) -> ToolCall:
        data = expect_object(value, "tool call")
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
            AssistantMessage, content=content, tool_calls=override(struct_hook=list_of(tool_call, "tool calls"))
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
        messages=override(struct_hook=list_of(_structure_message, "messages", if_none=_REJECT)),
        tools=override(struct_hook=list_of(_single("type", "function", Tool, "tool"), "tools")),
        response_format=override(
            struct_hook=lambda v, _: UNSET if v is None else converter.structure(v, ResponseFormat)
        ),
        tool_choice=override(struct_hook=_structure_tool_choice),
        prediction=override(struct_hook=_single("type", "content", Prediction, "prediction")),
        guardrails=override(struct_hook=list_of(guardrail, "guardrails")),
    )


def _json_schema_hook(value: Any) -> Any:
    if value is None:
        return UNSET
    return converter.structure(value, JsonSchema)


_register_unstructure()
_STRUCTURE_REQUEST: Final = _register_structure()

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
