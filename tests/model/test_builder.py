"""The fluent builder: what each method sets, and that no method ever changes its receiver."""

from __future__ import annotations

import inspect
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatdsl
from chatdsl import (
    UNSET,
    AssistantMessage,
    ChatCompletionRequest,
    FrozenDict,
    FrozenList,
    FunctionCall,
    ImageURLChunk,
    JsonSchema,
    PropertyDefinition,
    ResponseFormat,
    ResponseFormatType,
    SystemMessage,
    TextChunk,
    Tool,
    ToolCall,
    ToolChoice,
    ToolMessage,
    UserMessage,
    ValidationError,
)
from tests import strategies as s

NOT_BUILDERS = {"apply", "validate"}
"""``-> Self`` methods that build nothing: ``apply`` runs options (see test_options), ``validate`` checks."""


def builder_methods() -> list[str]:
    """Every public chained method of the request: annotated ``-> Self`` (the house style for builders)."""
    names = []
    for name, member in inspect.getmembers(ChatCompletionRequest, inspect.isfunction):
        if not name.startswith("_") and inspect.signature(member).return_annotation == "Self":
            names.append(name)
    return sorted(set(names) - NOT_BUILDERS)


def independent_copy(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """A snapshot that shares nothing with *request* (rebuilt from its JSON text)."""
    return ChatCompletionRequest.from_json(request.to_json(), allow_extra=True)


def test_every_builder_method_has_arguments_to_be_tested_with() -> None:
    missing = [name for name in builder_methods() if name not in s.METHOD_ARGS]
    assert not missing, f"add argument strategies for {missing} to METHOD_ARGS in tests/strategies.py"
    unknown = [name for name in s.METHOD_ARGS if not callable(getattr(ChatCompletionRequest, name, None))]
    assert not unknown


# ------------------------------------------------------------------------------------ immutability


@settings(max_examples=max(10, settings.default.max_examples // 2))  # each example makes ~60 calls
@given(s.requests(with_extra=True), st.data())
def test_no_builder_method_changes_its_receiver(request: ChatCompletionRequest, data: st.DataObject) -> None:
    """Every builder method and every Go-style option, applied to the same request; a refused call counts too."""
    snapshot, text = independent_copy(request), request.to_json()
    options = [name for name in chatdsl.__all__ if name.startswith("with_")]
    calls = [(name, False) for name in sorted(s.METHOD_ARGS)] + [(name, True) for name in options]
    for name, as_option in calls:
        args, kwargs = data.draw(s.METHOD_ARGS[name], label=name)
        try:
            if as_option:
                result = request.apply(getattr(chatdsl, name)(*args, **kwargs))
            else:
                result = getattr(request, name)(*args, **kwargs)
        except ValidationError:
            result = None  # a refused call must not change the receiver either
        assert request == snapshot, name
        assert request.to_json() == text, name
        assert result is None or isinstance(result, ChatCompletionRequest), name


def frozen_containers(request: ChatCompletionRequest) -> list[Any]:
    """Every JSON object or array a request holds (metadata, extra, parameters, schemas, arguments)."""
    roots: list[Any] = [request.extra]
    if request.metadata is not UNSET:
        roots.append(request.metadata)
    roots += [tool.function.parameters for tool in request.tools or ()]
    if isinstance(request.response_format, ResponseFormat) and request.response_format.json_schema is not UNSET:
        roots.append(request.response_format.json_schema.schema)
    for message in request.messages:
        if isinstance(message, AssistantMessage):
            roots += [call.function.arguments for call in message.tool_calls or ()]
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            found.append(node)
            for value in node:
                walk(value)

    for root in roots:
        walk(root)
    return found


_DICT_MUTATIONS = [
    lambda d: d.__setitem__("k", 1),
    lambda d: d.__delitem__(next(iter(d), "k")),
    lambda d: d.update(k=1),
    lambda d: d.setdefault("k", 1),
    lambda d: d.pop(next(iter(d), "k")),
    lambda d: d.popitem(),
    lambda d: d.clear(),
    lambda d: d.__ior__({"k": 1}),
]
_LIST_MUTATIONS = [
    lambda v: v.append(1),
    lambda v: v.extend([1]),
    lambda v: v.insert(0, 1),
    lambda v: v.__setitem__(0, 1),
    lambda v: v.__delitem__(0),
    lambda v: v.pop(),
    lambda v: v.remove(v[0] if v else 1),
    lambda v: v.clear(),
    lambda v: v.sort(),
    lambda v: v.reverse(),
    lambda v: v.__iadd__([1]),
    lambda v: v.__imul__(2),
]


@given(s.requests(with_extra=True))
def test_json_values_inside_a_request_refuse_mutation(request: ChatCompletionRequest) -> None:
    text = request.to_json()
    for container in frozen_containers(request):
        assert isinstance(container, (FrozenDict, FrozenList)), type(container)
        mutations = _DICT_MUTATIONS if isinstance(container, dict) else _LIST_MUTATIONS
        for mutate in mutations:
            with pytest.raises(TypeError, match="is immutable"):
                mutate(container)
    assert request.to_json() == text


def test_frozen_containers_refuse_every_mutator_even_through_a_json_schema() -> None:
    definition = PropertyDefinition.object({"tags": PropertyDefinition(type="array", enum=[["a"]])})
    request = chatdsl.chat().with_json_schema(definition).with_tools([Tool.of("f", definition)])
    schema = request.response_format.json_schema.schema  # type: ignore[union-attr]
    parameters = request.tools[0].function.parameters  # type: ignore[index]
    for mapping in (schema, schema["properties"], parameters):
        for mutate in _DICT_MUTATIONS:
            with pytest.raises(TypeError, match="FrozenDict is immutable"):
                mutate(mapping)
    for array in (schema["required"], schema["properties"]["tags"]["enum"][0]):
        for mutate in _LIST_MUTATIONS:
            with pytest.raises(TypeError, match="FrozenList is immutable"):
                mutate(array)
    assert schema == definition.to_schema()


# -------------------------------------------------------------------------------------- messages


def test_chat_is_the_entry_point_and_a_template() -> None:
    assert chatdsl.chat() == ChatCompletionRequest()
    assert chatdsl.chat("m").model == "m"
    base = chatdsl.chat("m").system("Be brief.")
    first, second = base.user("one"), base.user("two")
    assert base.messages == (SystemMessage(content="Be brief."),)
    assert first.messages[-1] == UserMessage(content="one")
    assert second.messages[-1] == UserMessage(content="two")
    assert first.messages[0] is second.messages[0] is base.messages[0]


def test_message_methods_append_one_message_each() -> None:
    call = ToolCall(id="c1", function=FunctionCall(name="f", arguments={"x": 1}))
    request = (
        chatdsl.chat()
        .system("sys")
        .user([TextChunk(text="look"), ImageURLChunk(url="https://x/y.png", detail="low")])
        .assistant(tool_calls=[call])
        .tool("42", tool_call_id="c1", name="f")
        .assistant("Paris", prefix=True)
        .assistant()
    )
    assert request.messages == (
        SystemMessage(content="sys"),
        UserMessage(content=(TextChunk(text="look"), ImageURLChunk(url="https://x/y.png", detail="low"))),
        AssistantMessage(tool_calls=(call,)),
        ToolMessage(content="42", tool_call_id="c1", name="f"),
        AssistantMessage(content="Paris", prefix=True),
        AssistantMessage(),
    )


def test_tool_needs_its_call_id_as_a_keyword() -> None:
    with pytest.raises(TypeError):
        chatdsl.chat().tool("42")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        chatdsl.chat().tool("42", "c1")  # type: ignore[misc]


@given(s.requests(), st.lists(s.messages, max_size=3), st.lists(s.messages, max_size=3))
def test_add_appends_and_with_messages_replaces(
    request: ChatCompletionRequest, more: list[Any], others: list[Any]
) -> None:
    assert request.add(*more).messages == request.messages + tuple(more)
    assert request.with_messages(others).messages == tuple(others)
    assert request.with_messages(iter(others)) == request.with_messages(others)
    assert request.add() == request


# ------------------------------------------------------------------------------------ parameters


_SETTERS = {
    "with_model": "model",
    "with_max_tokens": "max_tokens",
    "with_temperature": "temperature",
    "with_top_p": "top_p",
    "with_frequency_penalty": "frequency_penalty",
    "with_presence_penalty": "presence_penalty",
    "with_n": "n",
    "with_prompt_mode": "prompt_mode",
    "with_random_seed": "random_seed",
    "with_safe_prompt": "safe_prompt",
    "with_parallel_tool_calls": "parallel_tool_calls",
    "with_reasoning_effort": "reasoning_effort",
    "with_metadata": "metadata",
    "with_prompt_cache_key": "prompt_cache_key",
    "with_streaming": "stream",
    "with_top_k": "top_k",
    "with_min_tokens": "min_tokens",
    "with_repetition_penalty": "repetition_penalty",
    "with_top_logprobs": "top_logprobs",
    "with_top_prompt_logprobs": "top_prompt_logprobs",
    "with_service_tier": "service_tier",
}


@given(s.requests(with_extra=True), st.data())
def test_each_setter_sets_its_field_and_nothing_else(request: ChatCompletionRequest, data: st.DataObject) -> None:
    for method, field in _SETTERS.items():
        args, kwargs = data.draw(s.METHOD_ARGS[method], label=method)
        result = getattr(request, method)(*args, **kwargs)
        expected = args[0] if args else True  # with_safe_prompt() and with_streaming() default to True
        assert getattr(result, field) == expected, method
        assert attrs.evolve(result, **{field: getattr(request, field)}) == request, method


def test_flags_default_to_true() -> None:
    assert chatdsl.chat().with_safe_prompt().safe_prompt is True
    assert chatdsl.chat().with_streaming().stream is True
    assert chatdsl.chat().streaming().stream is True
    assert chatdsl.chat().with_safe_prompt(False).safe_prompt is False


def test_stop_is_a_string_for_one_sequence_and_a_tuple_for_several() -> None:
    assert chatdsl.chat().with_stop("END").stop == "END"
    assert chatdsl.chat().with_stop("a", "b").stop == ("a", "b")
    with pytest.raises(ValidationError) as info:
        chatdsl.chat().with_stop()
    assert str(info.value) == "stop: needs at least one stop sequence"


def test_prediction_is_set_from_its_content() -> None:
    assert chatdsl.chat().with_prediction("draft").prediction == chatdsl.Prediction(content="draft")


@given(s.requests(with_extra=True), st.lists(s._field_names, max_size=4))
def test_without_unsets_the_named_fields(request: ChatCompletionRequest, names: list[str]) -> None:
    result = request.without(*names)
    for field in attrs.fields(ChatCompletionRequest):
        value = getattr(result, field.name)
        if field.name not in names:
            assert value == getattr(request, field.name)
        elif field.name == "messages":
            assert value == ()
        elif field.name == "extra":
            assert value == {}
        else:
            assert value is UNSET
    assert set(result.to_dict()) <= set(request.to_dict())


def test_without_names_the_fields_it_knows() -> None:
    with pytest.raises(ValidationError) as info:
        chatdsl.chat().without("tempreature")
    assert info.value.path == "tempreature"
    assert info.value.rule.startswith("is not a field of ChatCompletionRequest (model, messages, tools, ")
    assert chatdsl.chat("m").with_temperature(0).without("temperature", "model") == chatdsl.chat()


def test_with_extra_merges_and_may_not_shadow_a_field() -> None:
    request = chatdsl.chat().with_extra(a=1, b=[1]).with_extra(b=2)
    assert request.extra == {"a": 1, "b": 2}
    with pytest.raises(ValidationError) as info:
        chatdsl.chat().with_extra(temperature=1)
    assert (
        str(info.value) == "extra.temperature: 1 shadows the modelled field 'temperature'; set it with its own method"
    )
    with pytest.raises(ValidationError) as info:
        chatdsl.chat().with_extra(x={1, 2})
    assert info.value.path == "extra"
    assert "set is not a JSON value" in info.value.rule


# ----------------------------------------------------------------------------- Go option mirrors


def test_response_format_methods() -> None:
    assert chatdsl.chat().with_response_text_format().response_format == ResponseFormat.TEXT
    assert chatdsl.chat().with_response_json_object_format().response_format == ResponseFormat.JSON_OBJECT
    fmt = chatdsl.chat().with_response_json_schema({"type": "object"}).response_format
    assert fmt == ResponseFormat(
        type=ResponseFormatType.JSON_SCHEMA,
        json_schema=JsonSchema(name="response", schema={"type": "object"}, strict=True),
    )


def test_json_schema_name_comes_from_the_argument_then_the_title() -> None:
    titled = {"title": "Book", "type": "object"}
    assert chatdsl.chat().with_json_schema(titled).response_format.json_schema.name == "Book"  # type: ignore[union-attr]
    named = chatdsl.chat().with_json_schema(titled, name="b", strict=False, description="d")
    assert named.response_format.json_schema == JsonSchema(name="b", schema=titled, strict=False, description="d")  # type: ignore[union-attr]
    definition = PropertyDefinition.object({"a": PropertyDefinition(type="string")})
    from_definition = chatdsl.chat().with_json_schema(definition, name="d").response_format
    assert from_definition.json_schema.schema == definition.to_schema()  # type: ignore[union-attr]
    ready = JsonSchema(name="ready", schema={})
    assert chatdsl.chat().with_json_schema(ready).response_format.json_schema is ready  # type: ignore[union-attr]


@given(s.requests(), s.tool_lists)
def test_with_tools_sets_auto_only_when_no_choice_is_set(request: ChatCompletionRequest, tools: Any) -> None:
    result = request.with_tools(tools)
    assert result.tools == tuple(tools)
    if request.tool_choice is UNSET:
        assert result.tool_choice == ToolChoice.AUTO
    else:
        assert result.tool_choice is request.tool_choice


def test_with_tools_keeps_an_earlier_choice() -> None:
    tools = [Tool.of("f")]
    assert chatdsl.chat().with_tool_choice("any").with_tools(tools).tool_choice == ToolChoice.ANY
    assert chatdsl.chat().with_tools(tools).with_tool_choice("none").tool_choice == ToolChoice.NONE
    assert chatdsl.chat().with_tools(tools).tool_choice == ToolChoice.AUTO


@pytest.mark.parametrize("mode", ["auto", "none", "any", "required"])
def test_with_tool_choice_takes_strings_members_and_choices(mode: str) -> None:
    expected = ToolChoice(mode=mode)
    assert chatdsl.chat().with_tool_choice(mode).tool_choice == expected
    assert chatdsl.chat().with_tool_choice(chatdsl.ToolChoiceMode(mode)).tool_choice == expected
    assert chatdsl.chat().with_tool_choice(expected).tool_choice == expected


@given(s.requests(), st.data())
def test_short_names_are_aliases(request: ChatCompletionRequest, data: st.DataObject) -> None:
    args, kwargs = data.draw(s.METHOD_ARGS["with_json_schema"])
    assert request.with_json_schema(*args, **kwargs) == request.with_response_json_schema(*args, **kwargs)
    assert request.with_json_object() == request.with_response_json_object_format()
    flag = data.draw(st.booleans())
    assert request.streaming(flag) == request.with_streaming(flag)
    assert request.streaming() == request.with_streaming()


@given(s.requests(), st.booleans(), st.none() | st.integers(0, 20))
def test_with_logprobs_sets_the_flag_and_the_top_count_only_when_given(
    request: ChatCompletionRequest, flag: bool, top: int | None
) -> None:
    for method, flag_field, top_field in (
        ("with_logprobs", "logprobs", "top_logprobs"),
        ("with_prompt_logprobs", "prompt_logprobs", "top_prompt_logprobs"),
    ):
        result = getattr(request, method)(flag, top=top)
        assert getattr(result, flag_field) is flag
        assert getattr(result, top_field) == (getattr(request, top_field) if top is None else top)
        assert getattr(getattr(request, method)(), flag_field) is True
        assert attrs.evolve(result, **{f: getattr(request, f) for f in (flag_field, top_field)}) == request


@given(s.requests(), st.lists(s.guardrail_configs, max_size=3))
def test_with_guardrails_replaces_the_list(request: ChatCompletionRequest, guardrails: list[Any]) -> None:
    result = request.with_guardrails(*guardrails)
    assert result.guardrails == tuple(guardrails)
    assert result.with_guardrails().guardrails == ()
    assert attrs.evolve(result, guardrails=request.guardrails) == request


@given(st.sampled_from(["reasoning_effort", "service_tier", "prompt_mode"]), st.data())
def test_open_enums_keep_known_values_as_members_and_unknown_ones_as_strings(field: str, data: st.DataObject) -> None:
    enum_cls = {
        "reasoning_effort": chatdsl.ReasoningEffort,
        "service_tier": chatdsl.ServiceTier,
        "prompt_mode": chatdsl.PromptMode,
    }[field]
    value = data.draw(s.open_enum_values(enum_cls))
    request = getattr(chatdsl.chat("m"), f"with_{field}")(value)
    stored = getattr(request, field)
    known = {m.value for m in enum_cls}
    if str(value) in known:
        assert stored is enum_cls(str(value))
    else:
        assert type(stored) is str
        assert stored == value
    assert request.to_dict()[field] == str(value)
    assert ChatCompletionRequest.from_dict(request.to_dict()) == request


def test_add_names_the_position_the_message_would_take() -> None:
    request = chatdsl.chat("m").user("a").user("b")
    with pytest.raises(ValidationError, match=r"^messages\[3\]: 'oops' is a str, not a message$"):
        request.add(chatdsl.UserMessage(content="c"), "oops")  # type: ignore[arg-type]


# ------------------------------------------------------------------ messages as wire dicts (SDK habit)


@settings(max_examples=50)
@given(st.lists(s.messages, max_size=4))
def test_messages_given_as_wire_dicts_read_like_from_dict(messages: list[Any]) -> None:
    wire = chatdsl.chat().with_messages(messages).to_dict().get("messages", [])
    assert chatdsl.chat().with_messages(wire).messages == tuple(messages)
    assert chatdsl.chat().add(*wire).messages == tuple(messages)
    mixed = [m if i % 2 else w for i, (m, w) in enumerate(zip(messages, wire, strict=True))]
    assert chatdsl.chat().user("first").with_messages(mixed).messages == tuple(messages)


def test_add_takes_a_dict_message_after_existing_ones() -> None:
    request = chatdsl.chat("m").system("Be brief.").add({"role": "user", "content": "Hi"}, UserMessage(content="x"))
    assert request.messages[1:] == (UserMessage(content="Hi"), UserMessage(content="x"))


@pytest.mark.parametrize(
    ("call", "path", "rule"),
    [
        (lambda r: r.add({"role": "user", "content": 5}), "messages[1].content", "5 is an int, not a string"),
        (lambda r: r.add(UserMessage(content="x"), {"role": "usr"}), "messages[2].role", "'usr' is not one of"),
        (lambda r: r.add({"content": "x"}), "messages[1].role", "is missing"),
        (lambda r: r.add({"role": "user", "content": "x", "foo": 1}), "messages[1].foo", "is not a known field"),
        (lambda r: r.with_messages([UserMessage(content="x"), {"role": "tool"}]), "messages[1].content", "required"),
        (
            lambda r: r.with_messages([{"role": "user", "content": [{"type": "text", "text": 3}]}]),
            "messages[0].content[0].text",
            "3 is an int, not a string",
        ),
    ],
)
def test_dict_messages_are_read_strictly_and_errors_name_the_path(call: Any, path: str, rule: str) -> None:
    request = chatdsl.chat("m").user("first")
    with pytest.raises(ValidationError) as caught:
        call(request)
    assert caught.value.path == path
    assert rule in caught.value.rule
    assert request.messages == (UserMessage(content="first"),)
