"""Responses and chunks, read leniently and losslessly, and written back.

Unknown keys are kept in each object's ``extra`` and written back, unknown part types kept as
:class:`~chatdsl.UnknownChunk`, unknown enum values kept as strings; the keys each response object
reads are derived from its fields (:func:`_wire_keys`). The hooks are registered on the wire
converter (:data:`chatdsl.wire.converter.converter`) when this module is imported; the response
models reach it through their ``from_dict``/``to_dict`` conveniences (their one lazy import).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import attrs

from chatdsl._checks import type_name
from chatdsl._errors import ValidationError
from chatdsl._types import UNSET, FrozenDict, freeze, short_repr
from chatdsl.model.messages import (
    AssistantMessage,
    FunctionCall,
    ImageDetail,
    ImageURLChunk,
    ReferenceChunk,
    TextChunk,
    ThinkChunk,
    ToolCall,
    ToolReferenceChunk,
    UnknownChunk,
)
from chatdsl.model.response import (
    ChatCompletionChoice,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionResponseStreamChoice,
    FinishReason,
    PromptTokensDetails,
    UsageInfo,
)
from chatdsl.wire.converter import (
    CHUNK_TAGS,
    CHUNK_UNSTRUCTURE,
    as_validation_error,
    converter,
    expect_object,
    list_of,
    loads,
    logger,
    passthrough,
    structure_tagged_class,
)

__all__ = ["loads_response", "structure_response", "unstructure_response"]

_T = TypeVar("_T")

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
    **{tag: _wire_keys(cls, tag="type") for tag, cls in {**CHUNK_TAGS, **_THINK_PART_TAGS}.items()},
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
    data = expect_object(value, "content part")
    tag = data.get("type")
    if tag == "text" and len(data) == 2 and data.get("text").__class__ is str:
        return _new_text(data["text"], _NO_EXTRA)
    tags = _THINK_PART_TAGS if inside_thinking else CHUNK_TAGS
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
    return _with_extra(structure_tagged_class(cls, body), extra)


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
        closed=passthrough(body.get("closed")),
        signature=passthrough(body.get("signature")),
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
    data = value if value.__class__ is dict else expect_object(value, "tool call")
    function = data.get("function")
    if function.__class__ is not dict:
        function = expect_object(function if function is not None else {}, "function call")
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
    data = expect_object(value, "assistant message")
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
    data = expect_object(value, "log probabilities")
    try:
        return freeze(data)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise ValidationError("", f"holds a value JSON cannot carry ({exc})") from None


def _register_responses() -> None:
    details_keys = _wire_keys(PromptTokensDetails)
    usage_keys = _wire_keys(UsageInfo)

    def details(value: Any, _: Any = None) -> PromptTokensDetails:
        data = expect_object(value, "PromptTokensDetails")
        cached = data.get("cached_tokens")
        return PromptTokensDetails(
            cached_tokens=0 if cached is None else _lenient_int(cached), extra=_extras(data, details_keys)
        )

    def usage_info(value: Any, _: Any = None) -> UsageInfo:
        data = expect_object(value, "UsageInfo")
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
            data = expect_object(value, cls.__name__)
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
        return list_of(item, "choices", if_none=())

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
            data = expect_object(value, cls.__name__)
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

    for cls, base in CHUNK_UNSTRUCTURE.items():
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
    _RESPONSE_PART_UNSTRUCTURE[ToolReferenceChunk] = _write_extra(CHUNK_UNSTRUCTURE[ToolReferenceChunk])

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

    def delta(obj: AssistantMessage) -> dict[str, Any]:
        """A streamed delta: a message whose ``tool_calls`` key is left out when it has none (as sent)."""
        out = message(obj)
        if out["tool_calls"] is None:
            del out["tool_calls"]
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

    def choice(key: str, write: Callable[[AssistantMessage], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
        """The writer of a choice holding its message under *key*, written by *write*."""

        def unstructure(obj: Any) -> dict[str, Any]:
            written = write(getattr(obj, key))
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
        (ChatCompletionChoice, choice("message", message)),
        (CompletionResponseStreamChoice, choice("delta", delta)),
        (ChatCompletionResponse, top(choice("message", message))),
        (CompletionChunk, top(choice("delta", delta))),
    ):
        converter.register_unstructure_hook(cls, hook)


_register_responses()
_RESPONSE_HOOKS: Final[dict[type, Callable[[Any, Any], Any]]] = {
    cls: converter.get_structure_hook(cls) for cls in (ChatCompletionResponse, CompletionChunk)
}

# ------------------------------------------------------------------------------------ public API


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
