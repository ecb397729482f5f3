"""Hypothesis strategies for the whole chatdsl model (shared by every test module).

Sizes are kept small on purpose: the suite runs on two cores. Three families:

- parts of a request (content parts, messages, tool calls, tools, tool choices, response formats,
  ``PropertyDefinition`` trees, predictions) and :func:`requests`: any request that can be built,
  complete or not, with every field either unset or set (explicit ``0``/``False``/``""`` included);
- :func:`complete_requests`: requests that pass ``.validate()``;
- :func:`responses` and :func:`chunks` for round trips of what the server sends;
- ``METHOD_ARGS``: for every chained builder method, a strategy of ``(args, kwargs)`` to call it with.

Other helpers may add strategies in a clearly separated section at the end.
"""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, datetime
from typing import Any

import attrs
from hypothesis import strategies as st

from chatdsl import (
    UNSET,
    AssistantMessage,
    AudioChunk,
    ChatCompletionChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionResponseStreamChoice,
    DocumentURLChunk,
    FileChunk,
    FinishReason,
    Function,
    FunctionCall,
    GuardrailConfig,
    ImageDetail,
    ImageURLChunk,
    JsonSchema,
    ModerationAction,
    ModerationConfig,
    Prediction,
    PromptMode,
    PromptTokensDetails,
    PropertyDefinition,
    ReasoningEffort,
    ReferenceChunk,
    ResponseFormat,
    ResponseFormatType,
    ServiceTier,
    SystemMessage,
    TextChunk,
    ThinkChunk,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolMessage,
    ToolReferenceChunk,
    UnknownChunk,
    UsageInfo,
    UserMessage,
)

S = st.SearchStrategy


def maybe(strategy: S[Any]) -> S[Any]:
    """Either :data:`~chatdsl.UNSET` or a value of *strategy*."""
    return st.one_of(st.just(UNSET), strategy)


# ----------------------------------------------------------------------------------------- scalars

texts = st.text(max_size=12)
"""Any short text, empty included (unicode, no surrogates)."""
non_empty_texts = st.text(min_size=1, max_size=12)
identifiers = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=10)
"""Function names, tool call ids, model names: short and non-empty."""
models = st.sampled_from(["mistral-small-latest", "mistral-large-latest", "open-mistral-nemo"]) | identifiers

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
_json_inner = json_scalars | st.lists(json_scalars, max_size=2) | st.dictionaries(texts, json_scalars, max_size=2)
json_values = json_scalars | st.lists(_json_inner, max_size=3) | st.dictionaries(texts, _json_inner, max_size=3)
"""Any JSON value (finite numbers only), nested up to three levels (bounded: cheaper than ``st.recursive``)."""
json_objects = st.dictionaries(texts, json_values, max_size=3)
"""Any JSON object."""

# ----------------------------------------------------------------------------------- content parts

text_chunks = st.builds(TextChunk, text=texts)
_urls = st.sampled_from(["https://example.com/cat.png", "https://cdn.example.org/a/b.jpeg?x=1", "http://h/i"])
_data_urls = st.binary(max_size=12).map(lambda b: "data:image/png;base64," + base64.b64encode(b).decode())
image_url_chunks = st.builds(
    ImageURLChunk,
    url=_urls | _data_urls,
    detail=maybe(st.sampled_from(ImageDetail) | st.sampled_from([d.value for d in ImageDetail])),
)
document_url_chunks = st.builds(
    DocumentURLChunk, document_url=_urls.map(lambda u: u.replace(".png", ".pdf")), document_name=maybe(texts)
)
file_chunks = st.builds(FileChunk, file_id=st.uuids().map(str))
reference_chunks = st.builds(
    ReferenceChunk, reference_ids=st.lists(st.integers(0, 10**6) | st.sampled_from(["widget", "doc-1"]), max_size=3)
)
audio_chunks = st.builds(
    AudioChunk, input_audio=st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode()) | _urls
)
_connectors = st.sampled_from(["web_search", "web_search_premium", "code_interpreter", "image_generation"])
tool_reference_chunks = st.builds(
    ToolReferenceChunk,
    tool=_connectors | texts,
    title=texts,
    url=maybe(_urls),
    favicon=maybe(_urls),
    description=maybe(texts),
)
think_chunks = st.builds(
    ThinkChunk,
    thinking=st.lists(text_chunks | reference_chunks | tool_reference_chunks, max_size=2),
    closed=maybe(st.booleans()),
    signature=maybe(texts),
)
content_chunks = st.one_of(
    text_chunks,
    image_url_chunks,
    document_url_chunks,
    file_chunks,
    reference_chunks,
    audio_chunks,
    think_chunks,
)
"""Every kind of content part."""
contents = texts | st.lists(content_chunks, max_size=3).map(tuple)
"""Message content: a string, or a tuple of any content parts."""
system_contents = texts | st.lists(text_chunks | think_chunks, max_size=2).map(tuple)
"""System content: a string, or text and thinking parts (all a system message allows)."""

# --------------------------------------------------------------------------------------- tool calls

function_calls = st.builds(
    FunctionCall,
    name=identifiers,
    arguments=json_objects.map(json.dumps) | json_objects | texts,
)
"""Function calls whose arguments are a JSON string, a JSON object, or any string."""
tool_calls = st.builds(ToolCall, function=function_calls, id=maybe(identifiers), index=maybe(st.integers(0, 100)))

# ----------------------------------------------------------------------------------------- messages

system_messages = st.builds(SystemMessage, content=system_contents)
user_messages = st.builds(UserMessage, content=contents)
assistant_messages = st.builds(
    AssistantMessage,
    content=maybe(contents),
    tool_calls=maybe(st.lists(tool_calls, max_size=2).map(tuple)),
    prefix=maybe(st.booleans()),
)
tool_messages = st.builds(ToolMessage, content=contents, tool_call_id=maybe(identifiers), name=maybe(identifiers))
messages = st.one_of(system_messages, user_messages, assistant_messages, tool_messages)
"""Any message of any role (a conversation of these need not be coherent)."""

# --------------------------------------------------------------------------- schemas, tools, formats

_SCALAR_VALUES: dict[str, S[Any]] = {
    "string": texts,
    "number": st.floats(-1e6, 1e6),
    "integer": st.integers(-100, 100),
    "boolean": st.booleans(),
    "null": st.none(),
}
_KINDS = [*_SCALAR_VALUES, "object", "array"]


@st.composite
def _definitions(draw: st.DrawFn, depth: int) -> PropertyDefinition:
    kind = draw(st.sampled_from(_KINDS if depth else list(_SCALAR_VALUES)))
    description = draw(maybe(texts))
    if kind == "object":
        properties = draw(st.dictionaries(identifiers, _definitions(depth - 1), max_size=2))
        names = sorted(properties)
        required = draw(maybe(st.lists(st.sampled_from(names), unique=True).map(tuple))) if names else UNSET
        return PropertyDefinition(
            type="object",
            description=description,
            properties=properties,
            required=required,
            additional_properties=draw(maybe(st.booleans() | _definitions(depth - 1))),
        )
    if kind == "array":
        return PropertyDefinition(type="array", items=draw(_definitions(depth - 1)), description=description)
    values = _SCALAR_VALUES[kind]
    return PropertyDefinition(
        type=kind if kind == "null" or draw(st.booleans()) else (kind, "null"),
        description=description,
        enum=draw(maybe(st.lists(values, min_size=1, max_size=2).map(tuple))),
        default=draw(maybe(values)),
    )


property_definitions = _definitions(depth=2)
"""``PropertyDefinition`` trees (two levels deep at most): scalars with enum/default, nullable type
lists, objects (properties, required, additionalProperties as a bool or a definition) and arrays."""

schema_dicts = property_definitions.map(PropertyDefinition.to_schema) | json_objects
"""JSON-schema dicts: from a ``PropertyDefinition`` or any JSON object (the API takes any object)."""

functions = st.builds(
    Function,
    name=identifiers,
    parameters=schema_dicts | property_definitions,
    description=maybe(texts),
    strict=maybe(st.booleans()),
)
tools = st.builds(Tool, function=functions)
tool_lists = st.lists(tools, max_size=2, unique_by=lambda t: t.name).map(tuple)
"""Tuples of tools with distinct names (as a request requires)."""

tool_choice_modes = st.sampled_from(ToolChoiceMode).map(lambda mode: ToolChoice(mode=mode))
named_tool_choices = identifiers.map(ToolChoice.named)
tool_choices = tool_choice_modes | named_tool_choices
"""Every tool choice: the four modes and a named function."""

json_schemas = st.builds(
    JsonSchema,
    name=identifiers,
    schema=schema_dicts | property_definitions,
    description=maybe(texts),
    strict=maybe(st.booleans()),
)
response_formats = st.one_of(
    st.just(ResponseFormat.TEXT),
    st.just(ResponseFormat.JSON_OBJECT),
    st.builds(ResponseFormat, type=st.just(ResponseFormatType.JSON_SCHEMA), json_schema=json_schemas),
)
"""Every response format: text, json_object and json_schema."""
predictions = st.builds(Prediction, content=texts)

# ----------------------------------------------------------------------------------------- requests

temperatures = st.just(0) | st.just(1.5) | st.floats(0, 1.5) | st.integers(0, 1)
top_ps = st.just(0) | st.floats(0, 1) | st.integers(0, 1)
penalties = st.just(0) | st.floats(-2, 2) | st.integers(-2, 2)
stops = texts | st.lists(texts, max_size=3).map(tuple)
"""A stop string or a tuple of them (empty included)."""
metadatas = json_objects
extra_keys = st.sampled_from(["x_custom", "user", "seed_v2", "safety_identifier"])
extras = st.dictionaries(extra_keys, json_values, max_size=2)
"""Extra body fields that shadow no modelled field."""


def open_enum_values(enum_cls: Any) -> S[Any]:
    """A member of a forward-compatible enum, its value as a plain string, or a string it does not know."""
    unknown = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
        lambda v: v not in {m.value for m in enum_cls}
    )
    return st.sampled_from(enum_cls) | st.sampled_from([m.value for m in enum_cls]) | unknown


def known_enum_values(enum_cls: Any) -> S[Any]:
    """A member of an enum or its value as a plain string (what the published schemas list)."""
    return st.sampled_from(enum_cls) | st.sampled_from([m.value for m in enum_cls])


thresholds = st.dictionaries(
    st.sampled_from(["sexual", "pii", "law", "jailbreaking", "dangerous_and_criminal_content", "x_new"]),
    st.floats(0, 1) | st.integers(0, 1),
    max_size=3,
)
moderation_configs = st.builds(
    ModerationConfig,
    model_name=maybe(st.just("mistral-moderation-2603") | identifiers),
    custom_category_thresholds=maybe(thresholds),
    ignore_other_categories=maybe(st.booleans()),
    action=maybe(known_enum_values(ModerationAction)),
)
guardrail_configs = st.builds(
    GuardrailConfig,
    block_on_error=maybe(st.booleans()),
    moderation_llm_v1=maybe(moderation_configs),
    moderation_llm_v2=maybe(moderation_configs),
)
guardrail_lists = st.lists(guardrail_configs, max_size=2).map(tuple)


def _scalar_fields(*, known_enums: bool = False) -> dict[str, S[Any]]:
    """Strategies for every field of a request except messages, tools and tool choice."""
    enum_values = known_enum_values if known_enums else open_enum_values
    return {
        "model": maybe(models),
        "max_tokens": maybe(st.just(0) | st.integers(0, 10**6)),
        "temperature": maybe(temperatures),
        "top_p": maybe(top_ps),
        "response_format": maybe(response_formats),
        "parallel_tool_calls": maybe(st.booleans()),
        "frequency_penalty": maybe(penalties),
        "presence_penalty": maybe(penalties),
        "n": maybe(st.just(1) | st.integers(1, 8)),
        "prompt_mode": maybe(enum_values(PromptMode)),
        "random_seed": maybe(st.just(0) | st.integers(0, 2**32)),
        "safe_prompt": maybe(st.booleans()),
        "stop": maybe(stops),
        "stream": maybe(st.booleans()),
        "prediction": maybe(predictions),
        "reasoning_effort": maybe(enum_values(ReasoningEffort)),
        "metadata": maybe(metadatas),
        "prompt_cache_key": maybe(texts),
        "top_k": maybe(st.just(0) | st.integers(0, 1000)),
        "min_tokens": maybe(st.just(0) | st.integers(0, 10**6)),
        "repetition_penalty": maybe(st.just(0) | st.just(1) | st.floats(0, 10)),
        "logprobs": maybe(st.booleans()),
        "top_logprobs": maybe(st.just(0) | st.integers(0, 20)),
        "prompt_logprobs": maybe(st.booleans()),
        "top_prompt_logprobs": maybe(st.just(0) | st.integers(0, 20)),
        "guardrails": maybe(guardrail_lists),
        "service_tier": maybe(enum_values(ServiceTier)),
    }


@st.composite
def requests(draw: st.DrawFn, *, with_extra: bool = False, known_enums: bool = False) -> ChatCompletionRequest:
    """Any request that can be built, complete or not: every field unset or set (``0``/``False`` too).

    With ``with_extra=True`` some requests also carry :meth:`~ChatCompletionRequest.with_extra` fields.
    Open enum fields (``reasoning_effort``, ``service_tier``, ``prompt_mode``) also take strings
    chatdsl does not know, unless *known_enums* (what a published schema lists).
    """
    fields = {name: draw(strategy) for name, strategy in _scalar_fields(known_enums=known_enums).items()}
    fields["messages"] = draw(st.lists(messages, max_size=3).map(tuple))
    fields["tools"] = draw(maybe(tool_lists))
    fields["tool_choice"] = draw(maybe(tool_choices))
    if with_extra:
        fields["extra"] = draw(extras)
    return ChatCompletionRequest(**{k: v for k, v in fields.items() if v is not UNSET})


@st.composite
def conversations(draw: st.DrawFn) -> tuple[Any, ...]:
    """A coherent conversation: an optional system message, then turns, ending with a user or tool message.

    Assistant turns may call tools; tool messages answer the ids of earlier calls. No ``prefix=True``.
    """
    out: list[Any] = []
    if draw(st.booleans()):
        out.append(draw(system_messages))
    call_ids: list[str] = []
    for _ in range(draw(st.integers(0, 2))):
        out.append(draw(user_messages))
        calls = draw(st.lists(tool_calls, max_size=2))
        calls = [
            ToolCall(function=c.function, id=f"call{len(call_ids) + i:05d}", index=c.index) for i, c in enumerate(calls)
        ]
        call_ids += [c.id for c in calls]
        out.append(
            AssistantMessage(
                content=draw(maybe(contents)),
                tool_calls=tuple(calls) if calls else draw(st.sampled_from([UNSET, ()])),
                prefix=draw(st.sampled_from([UNSET, False])),
            )
        )
        for call in calls:
            if draw(st.booleans()):
                out.append(
                    ToolMessage(content=draw(contents), tool_call_id=call.id, name=draw(maybe(st.just(call.name))))
                )
    last = draw(st.sampled_from(["user", "tool"]) if call_ids else st.just("user"))
    if last == "user":
        out.append(draw(user_messages))
    else:
        out.append(ToolMessage(content=draw(contents), tool_call_id=draw(st.sampled_from(call_ids))))
    return tuple(out)


@st.composite
def complete_requests(draw: st.DrawFn, *, known_enums: bool = False) -> ChatCompletionRequest:
    """Requests that pass ``.validate()``: a model, a coherent conversation, a tool choice that fits the tools.

    *known_enums* as for :func:`requests`.
    """
    fields = {name: draw(strategy) for name, strategy in _scalar_fields(known_enums=known_enums).items()}
    fields["model"] = draw(models)
    fields["messages"] = draw(conversations())
    offered = draw(maybe(tool_lists))
    fields["tools"] = offered
    names = [t.name for t in offered or ()]
    choices = [st.just(UNSET), st.just(ToolChoice.AUTO), st.just(ToolChoice.NONE)]
    if names:
        choices += [
            st.sampled_from([ToolChoice.ANY, ToolChoice.REQUIRED]),
            st.sampled_from(names).map(ToolChoice.named),
        ]
    fields["tool_choice"] = draw(st.one_of(choices))
    return ChatCompletionRequest(**{k: v for k, v in fields.items() if v is not UNSET})


# ---------------------------------------------------------------------------------------- responses

_timestamps = st.integers(0, 4_000_000_000).map(lambda s: datetime.fromtimestamp(s, tz=UTC))
usage_infos = st.builds(
    UsageInfo,
    prompt_tokens=st.integers(0, 10**6),
    completion_tokens=st.integers(0, 10**6),
    total_tokens=st.integers(0, 2 * 10**6),
    prompt_audio_seconds=st.none() | st.integers(0, 1000),
    num_cached_tokens=st.none() | st.integers(0, 10**6),
    prompt_tokens_details=st.none() | st.builds(PromptTokensDetails, cached_tokens=st.integers(0, 10**6)),
    service_tier=st.none() | st.sampled_from(["standard", "priority"]),
)
unknown_chunks = st.builds(
    UnknownChunk,
    type=st.sampled_from(["resource", "resource_link", "x_new_part"]),
    extra=st.dictionaries(st.sampled_from(["uri", "metadata", "x_data"]), json_values, max_size=2),
)
"""Content parts of types chatdsl does not model (kept whole when read from a response)."""
_answer_contents = texts | st.lists(content_chunks | unknown_chunks, max_size=3).map(tuple)
_token_logprobs = st.fixed_dictionaries(
    {"token": texts, "logprob": st.floats(-20, 0), "bytes": st.lists(st.integers(0, 255), max_size=3)},
    optional={"token_id": st.integers(0, 10**5)},
)
logprobs = st.fixed_dictionaries({"content": st.lists(_token_logprobs, max_size=2)})
"""A choice's log probabilities, as the API sends them."""
answer_messages = st.builds(
    AssistantMessage,
    content=maybe(_answer_contents),
    tool_calls=maybe(st.lists(tool_calls, max_size=2).map(tuple)),
    prefix=maybe(st.booleans()),
)
"""Assistant messages as the server sends them (in a choice or a delta), parts of unknown types included."""
known_answer_messages = st.builds(
    AssistantMessage,
    content=maybe(contents),
    tool_calls=maybe(st.lists(tool_calls, max_size=2).map(tuple)),
    prefix=maybe(st.booleans()),
)
"""Assistant messages with only the parts chatdsl models (what the official schema describes)."""
finish_reasons = st.none() | st.sampled_from(FinishReason) | st.sampled_from(["content_filter", "new_reason"])
"""Finish reasons: none, every known one, and unknown ones (kept as strings)."""


def responses(
    *,
    finish_reason: S[Any] = finish_reasons,
    created: S[Any] = st.none() | _timestamps,
    usage: S[Any] = st.none() | usage_infos,
    unknown_parts: bool = True,
) -> S[Any]:
    """Chat-completion responses; narrow the arguments to the shapes a check needs."""
    choices = st.builds(
        ChatCompletionChoice,
        index=st.integers(0, 8),
        message=answer_messages if unknown_parts else known_answer_messages,
        finish_reason=finish_reason,
        logprobs=st.none() | logprobs,
        prompt_logprobs=st.none() | logprobs,
    )
    return st.builds(
        ChatCompletionResponse,
        id=texts,
        object=st.just("chat.completion") | texts,
        model=texts,
        created=created,
        usage=usage,
        choices=st.lists(choices, max_size=2).map(tuple),
    )


def chunks(
    *,
    finish_reason: S[Any] = finish_reasons,
    created: S[Any] = st.none() | _timestamps,
    usage: S[Any] = st.none() | usage_infos,
    unknown_parts: bool = True,
) -> S[Any]:
    """Streamed completion chunks; narrow the arguments to the shapes a check needs."""
    choices = st.builds(
        CompletionResponseStreamChoice,
        index=st.integers(0, 8),
        delta=answer_messages if unknown_parts else known_answer_messages,
        finish_reason=finish_reason,
        logprobs=st.none() | logprobs,
    )
    return st.builds(
        CompletionChunk,
        id=texts,
        object=st.just("chat.completion.chunk") | texts,
        model=texts,
        created=created,
        choices=st.lists(choices, max_size=2).map(tuple),
        usage=usage,
    )


timestamps = _timestamps
"""UTC datetimes with whole seconds (what an integer ``created`` can carry)."""

# ------------------------------------------------------------------------------ builder method args


def _call(*args: S[Any], **kwargs: S[Any]) -> S[tuple[tuple[Any, ...], dict[str, Any]]]:
    return st.tuples(st.tuples(*args), st.fixed_dictionaries(kwargs))


_schema_args = schema_dicts | property_definitions | json_schemas
_json_schema_call = _call(
    _schema_args, name=st.none() | identifiers, description=maybe(texts), strict=maybe(st.booleans())
)
_field_names = st.sampled_from([a.name for a in attrs.fields(ChatCompletionRequest)])

METHOD_ARGS: dict[str, S[tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "add": st.lists(messages, max_size=2).map(lambda ms: (tuple(ms), {})),
    "with_messages": _call(st.lists(messages, max_size=3)),
    "system": _call(system_contents),
    "user": _call(contents),
    "assistant": _call(
        st.none() | contents,
        tool_calls=st.none() | st.lists(tool_calls, max_size=2),
        prefix=maybe(st.booleans()),
    ),
    "tool": _call(contents, tool_call_id=identifiers, name=maybe(identifiers)),
    "with_model": _call(models),
    "with_max_tokens": _call(st.integers(0, 10**6)),
    "with_temperature": _call(temperatures),
    "with_top_p": _call(top_ps),
    "with_frequency_penalty": _call(penalties),
    "with_presence_penalty": _call(penalties),
    "with_n": _call(st.integers(1, 8)),
    "with_prompt_mode": _call(open_enum_values(PromptMode)),
    "with_random_seed": _call(st.integers(0, 2**32)),
    "with_safe_prompt": _call() | _call(st.booleans()),
    "with_stop": st.lists(texts, min_size=1, max_size=3).map(lambda s: (tuple(s), {})),
    "with_parallel_tool_calls": _call(st.booleans()),
    "with_prediction": _call(texts),
    "with_reasoning_effort": _call(open_enum_values(ReasoningEffort)),
    "with_top_k": _call(st.integers(0, 1000)),
    "with_min_tokens": _call(st.integers(0, 10**6)),
    "with_repetition_penalty": _call(st.floats(0, 10) | st.integers(0, 3)),
    "with_logprobs": _call() | _call(st.booleans()) | _call(st.booleans(), top=st.none() | st.integers(0, 20)),
    "with_top_logprobs": _call(st.integers(0, 20)),
    "with_prompt_logprobs": _call() | _call(st.booleans(), top=st.none() | st.integers(0, 20)),
    "with_top_prompt_logprobs": _call(st.integers(0, 20)),
    "with_guardrails": st.lists(guardrail_configs, max_size=2).map(lambda g: (tuple(g), {})),
    "with_service_tier": _call(open_enum_values(ServiceTier)),
    "with_metadata": _call(metadatas),
    "with_prompt_cache_key": _call(texts),
    "with_extra": extras.map(lambda e: ((), e)),
    "without": st.lists(_field_names, max_size=3).map(lambda n: (tuple(n), {})),
    "with_response_text_format": _call(),
    "with_response_json_object_format": _call(),
    "with_response_json_schema": _json_schema_call,
    "with_json_schema": _json_schema_call,
    "with_json_object": _call(),
    "with_tools": _call(tool_lists | st.lists(tools, max_size=2, unique_by=lambda t: t.name)),
    "with_tool_choice": _call(
        tool_choices | st.sampled_from(ToolChoiceMode) | st.sampled_from([m.value for m in ToolChoiceMode])
    ),
    "with_streaming": _call() | _call(st.booleans()),
    "streaming": _call() | _call(st.booleans()),
    "render": _call(st.dictionaries(identifiers, texts | st.integers(), max_size=2), allow_extra=st.just(True)),
    "merge": _call(requests()),
    "as_template": _call(),
}
"""For every chained builder method: a strategy of ``(args, kwargs)`` that calls it validly."""


# ------------------------------------------------------------------------------ damaging bodies


def json_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (keys and indexes), the root's ``()`` first."""
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += json_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += json_paths(item, (*path, index))
    return out


def replace_at(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """Return a copy of the JSON *value* with the node at *path* replaced by *new*."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replace_at(value[head], rest, new)}
    copy = list(value)
    copy[head] = replace_at(copy[head], rest, new)
    return copy


# ----------------------------------------------------------------------------- lossless response bodies

_unknown_keys = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8).map(lambda k: "x_" + k)


@st.composite
def with_unknown_keys(draw: st.DrawFn, body: Any) -> Any:
    """Return *body* (a wire body) with unknown keys added to its objects at every level, at random.

    Every JSON object in it may get keys chatdsl does not model: the response or chunk, its usage and
    usage details, choices, messages and deltas, content parts (and thinking items), tool calls and
    their functions, and the JSON values inside (arguments, log probabilities), which are kept whole.
    """
    if isinstance(body, dict):
        out = {key: draw(with_unknown_keys(value)) for key, value in body.items()}
        extra = draw(st.dictionaries(_unknown_keys, json_values, max_size=2))
        return {**out, **extra}
    if isinstance(body, list):
        return [draw(with_unknown_keys(item)) for item in body]
    return body


def lossless_bodies(kind: S[Any]) -> S[dict[str, Any]]:
    """Wire bodies of *kind* (:func:`responses` or :func:`chunks`) with unknown keys at every level."""
    return kind.map(lambda obj: obj.to_dict()).flatmap(with_unknown_keys)


@st.composite
def with_nulls(draw: st.DrawFn, body: Any) -> Any:
    """Return *body* with some of its values (never a part's ``type``) replaced by ``null``, at random."""
    if isinstance(body, dict):
        out = {}
        for key, value in body.items():
            null = key != "type" and draw(st.integers(0, 5)) == 0
            out[key] = None if null else draw(with_nulls(value))
        return out
    if isinstance(body, list):
        return [draw(with_nulls(item)) for item in body]
    return body


# ------------------------------------------------------------------------------- files and batch jobs
# (the Batch API: chatdsl.model.batch; wire schemas in tests/data/mistral-batch-openapi.json)

from chatdsl import (  # noqa: E402 (this section's own imports, kept with it)
    BatchError,
    BatchJob,
    BatchJobList,
    BatchJobRequest,
    BatchJobStatus,
    FileDeleted,
    FileInfo,
    FileList,
)

file_ids = st.uuids().map(str)
timestamps = st.integers(0, 2**33).map(lambda seconds: datetime.fromtimestamp(seconds, UTC))
counts = st.integers(0, 10**6)
batch_errors = st.builds(BatchError, message=non_empty_texts, count=st.integers(1, 1000))
batch_jobs = st.builds(
    BatchJob,
    id=file_ids,
    input_files=st.lists(file_ids, max_size=2).map(tuple),
    metadata=st.none() | st.dictionaries(identifiers, json_values, max_size=2),
    endpoint=st.just("/v1/chat/completions"),
    model=st.none() | models,
    agent_id=st.none() | identifiers,
    output_file=st.none() | file_ids,
    error_file=st.none() | file_ids,
    errors=st.lists(batch_errors, max_size=2).map(tuple),
    outputs=st.none() | st.lists(json_objects, max_size=2).map(tuple),
    status=st.sampled_from(list(BatchJobStatus)),
    created_at=timestamps,
    total_requests=counts,
    completed_requests=counts,
    succeeded_requests=counts,
    failed_requests=counts,
    started_at=st.none() | timestamps,
    completed_at=st.none() | timestamps,
)
batch_job_lists = st.builds(BatchJobList, data=st.lists(batch_jobs, max_size=2).map(tuple), total=counts)


def files(*, deleted: S[Any] = st.none()) -> S[FileInfo]:
    """Stored files as the server describes them (``deleted``: ``None`` for an upload's answer)."""
    return st.builds(
        FileInfo,
        id=file_ids,
        size_bytes=counts,
        created_at=timestamps,
        filename=non_empty_texts,
        purpose=st.sampled_from(["fine-tune", "batch", "ocr"]),
        sample_type=st.sampled_from(["pretrain", "instruct", "batch_request", "batch_result", "batch_error"]),
        source=st.sampled_from(["upload", "repository", "mistral"]),
        num_lines=st.none() | counts,
        mimetype=st.none() | st.just("application/jsonl"),
        signature=st.none() | identifiers,
        expires_at=st.none() | timestamps,
        visibility=st.none() | st.sampled_from(["workspace", "user"]),
        deleted=deleted,
    )


file_lists = st.builds(FileList, data=st.lists(files(), max_size=2).map(tuple), total=st.none() | counts)
deleted_files = st.builds(FileDeleted, id=file_ids, deleted=st.booleans())
_metadata_keys = st.text(string.ascii_letters + string.digits + "_-. ", min_size=1, max_size=32)
batch_job_requests = st.builds(
    BatchJobRequest,
    input_files=st.lists(file_ids, min_size=1, max_size=3).map(tuple),
    model=st.none() | models,
    agent_id=st.none() | identifiers,
    metadata=st.none() | st.dictionaries(_metadata_keys, st.text(min_size=1, max_size=20), max_size=3),
    timeout_hours=st.just(UNSET) | st.integers(1, 168),
)
