"""The request model: frozen, slotted, keyword-only classes, tuples for collections, frozen JSON values."""

from __future__ import annotations

import copy
import enum
import json
import pickle
import uuid
from typing import Any

import attrs
import pytest
from hypothesis import given

import chatdsl
from chatdsl import (
    UNSET,
    AssistantMessage,
    ChatCompletionRequest,
    FrozenDict,
    FrozenList,
    Function,
    FunctionCall,
    JsonSchema,
    PropertyDefinition,
    ResponseFormat,
    ResponseFormatType,
    Role,
    SystemMessage,
    TextChunk,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolMessage,
    UnsetType,
    UserMessage,
    ValidationError,
)
from tests import strategies as s

MODEL_CLASSES = [
    ChatCompletionRequest,
    SystemMessage,
    UserMessage,
    AssistantMessage,
    ToolMessage,
    TextChunk,
    chatdsl.ImageURLChunk,
    chatdsl.DocumentURLChunk,
    chatdsl.FileChunk,
    chatdsl.ReferenceChunk,
    chatdsl.AudioChunk,
    chatdsl.ToolReferenceChunk,
    chatdsl.ThinkChunk,
    FunctionCall,
    ToolCall,
    Function,
    Tool,
    ToolChoice,
    JsonSchema,
    ResponseFormat,
    chatdsl.Prediction,
    PropertyDefinition,
]


# --------------------------------------------------------------------------------- the classes


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_models_are_frozen_slotted_attrs_classes(cls: type) -> None:
    assert attrs.has(cls)
    assert "__slots__" in cls.__dict__
    assert all(a.kw_only for a in attrs.fields(cls))


@given(s.requests())
def test_a_request_refuses_assignment(request: ChatCompletionRequest) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        request.temperature = 1  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del request.model  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        request.not_a_field = 1  # type: ignore[attr-defined]


@given(s.messages)
def test_messages_refuse_assignment_and_carry_their_role_as_a_tag(message: Any) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        message.content = "changed"
    assert "role" not in attrs.fields_dict(type(message))
    assert isinstance(message.role, Role)


def test_a_request_has_every_field_of_the_go_request_and_the_chosen_extras() -> None:
    go_fields = {
        "model",
        "messages",
        "tools",
        "max_tokens",
        "temperature",
        "top_p",
        "response_format",
        "tool_choice",
        "parallel_tool_calls",
        "frequency_penalty",
        "presence_penalty",
        "n",
        "prompt_mode",
        "random_seed",
        "safe_prompt",
        "stop",
        "stream",
    }
    official_extras = {"prediction", "reasoning_effort", "metadata", "prompt_cache_key"}
    current_api = {
        "top_k",
        "min_tokens",
        "repetition_penalty",
        "logprobs",
        "top_logprobs",
        "prompt_logprobs",
        "top_prompt_logprobs",
        "guardrails",
        "service_tier",
    }
    assert set(attrs.fields_dict(ChatCompletionRequest)) == go_fields | official_extras | current_api | {"extra"}


def test_every_field_of_an_empty_request_is_unset() -> None:
    request = ChatCompletionRequest()
    for field in attrs.fields(ChatCompletionRequest):
        value = getattr(request, field.name)
        if field.name == "messages":
            assert value == ()
        elif field.name == "extra":
            assert value == {}
            assert isinstance(value, FrozenDict)
        else:
            assert value is UNSET, field.name
    assert chatdsl.chat() == request
    assert chatdsl.chat("m") == ChatCompletionRequest(model="m")


def test_unset_is_a_falsy_singleton_distinct_from_none() -> None:
    assert not UNSET
    assert UNSET is not None
    assert repr(UNSET) == "UNSET"
    assert isinstance(UNSET, UnsetType)
    assert copy.deepcopy(UNSET) is UNSET
    assert pickle.loads(pickle.dumps(UNSET)) is UNSET


def test_unset_shows_as_unset_in_text_reprs_and_errors() -> None:
    assert (str(UNSET), f"{UNSET}", f"{UNSET:>6}", str([UNSET])) == ("UNSET", "UNSET", " UNSET", "[UNSET]")
    shown = repr(chatdsl.chat().user("hi")) + str(chatdsl.chat().user("hi").messages)
    assert "model=UNSET" in shown
    with pytest.raises(chatdsl.ValidationError) as caught:
        chatdsl.chat().with_messages([UNSET])  # type: ignore[list-item]
    assert str(caught.value) == "messages[0]: UNSET is the UNSET marker, not a message"
    for text in (shown, str(caught.value)):
        assert "UnsetType" not in text


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        TextChunk("hi")  # type: ignore[misc]
    with pytest.raises(TypeError):
        ChatCompletionRequest("m")  # type: ignore[misc]


# --------------------------------------------------------------------------- collections, sharing


def test_lists_are_stored_as_tuples() -> None:
    call = ToolCall(function=FunctionCall(name="f", arguments={}))
    request = ChatCompletionRequest(
        messages=[UserMessage(content=[TextChunk(text="a")]), AssistantMessage(tool_calls=[call])],
        tools=[Tool.of("f")],
        stop=["x", "y"],
    )
    assert request.messages == (UserMessage(content=(TextChunk(text="a"),)), AssistantMessage(tool_calls=(call,)))
    assert isinstance(request.messages, tuple)
    assert isinstance(request.messages[0].content, tuple)
    assert isinstance(request.messages[1].tool_calls, tuple)
    assert isinstance(request.tools, tuple)
    assert request.stop == ("x", "y")
    assert chatdsl.ReferenceChunk(reference_ids=[1, 2]).reference_ids == (1, 2)
    assert chatdsl.ThinkChunk(thinking=[TextChunk(text="t")]).thinking == (TextChunk(text="t"),)
    assert PropertyDefinition(required=["a"], enum=[1, 2]).required == ("a",)


@given(s.requests(), s.messages)
def test_derived_requests_share_structure(request: ChatCompletionRequest, message: Any) -> None:
    derived = request.add(message).with_temperature(1)
    assert all(a is b for a, b in zip(derived.messages, request.messages, strict=False))
    assert derived.tools is request.tools
    assert derived.metadata is request.metadata
    assert derived.response_format is request.response_format
    assert request.with_model("other").messages is request.messages


# ------------------------------------------------------------------------------- memory layout
# A request is a plain frozen slotted attrs class; builder steps copy it slot by slot. These tests
# hold it to the behaviour of any frozen, slotted attrs class (the rarely set fields included).

PACKED_VALUES: dict[str, Any] = {
    "parallel_tool_calls": False,
    "prompt_mode": chatdsl.PromptMode.REASONING,
    "safe_prompt": True,
    "prediction": chatdsl.Prediction(content="p"),
    "reasoning_effort": chatdsl.ReasoningEffort.HIGH,
    "metadata": FrozenDict({"team": "search"}),
    "prompt_cache_key": "key",
    "top_k": 0,
    "min_tokens": 1,
    "repetition_penalty": 1.2,
    "logprobs": False,
    "top_logprobs": 2,
    "prompt_logprobs": True,
    "top_prompt_logprobs": 0,
    "guardrails": (chatdsl.GuardrailConfig(block_on_error=False),),
    "service_tier": chatdsl.ServiceTier.AUTO,
    "extra": FrozenDict({"x_custom": 1}),
}


@given(s.requests())
def test_a_request_is_rebuilt_from_its_fields_and_has_no_instance_dict(request: ChatCompletionRequest) -> None:
    fields = {a.name: getattr(request, a.name) for a in attrs.fields(ChatCompletionRequest)}
    assert ChatCompletionRequest(**fields) == request
    assert attrs.evolve(request) == request
    assert attrs.asdict(request, recurse=False) == fields
    assert not hasattr(request, "__dict__")


@pytest.mark.parametrize("name", list(PACKED_VALUES))
def test_each_rarely_set_field_is_stored_and_read_on_its_own(name: str) -> None:
    value = PACKED_VALUES[name]
    for request in (ChatCompletionRequest(**{name: value}), attrs.evolve(chat_with_everything(), **{name: value})):
        assert getattr(request, name) == value
    alone = ChatCompletionRequest(**{name: value})
    for other in attrs.fields(ChatCompletionRequest):
        if other.name != name:
            assert getattr(alone, other.name) == getattr(ChatCompletionRequest(), other.name), other.name
    assert ChatCompletionRequest.from_dict(alone.to_dict(), allow_extra=True) == alone


def chat_with_everything() -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", temperature=0.5, **PACKED_VALUES)


def test_all_rarely_set_fields_together_keep_their_places() -> None:
    request = chat_with_everything()
    assert {name: getattr(request, name) for name in PACKED_VALUES} == PACKED_VALUES
    assert request.without("safe_prompt").safe_prompt is UNSET
    assert request.without("safe_prompt").prompt_cache_key == "key"


@given(s.requests(), s.messages)
def test_derived_requests_share_the_unchanged_fields_and_copy_nothing_else(
    request: ChatCompletionRequest, message: Any
) -> None:
    for derived in (request.add(message), request.with_temperature(1).with_model("x"), request.without("stop")):
        for name in PACKED_VALUES:  # one reference per field, not a copy per derived request
            assert getattr(derived, name) is getattr(request, name), name


def test_every_route_to_a_request_keeps_its_fields() -> None:
    request = chatdsl.chat("m").user("hi").with_safe_prompt(True).with_extra(x_a=1)
    routes = [pickle.loads(pickle.dumps(request)), copy.deepcopy(request), copy.copy(request), attrs.evolve(request)]
    for index, derived in enumerate(routes):
        assert derived == request, index
        assert not hasattr(derived, "__dict__"), index
    tagged = Tagged(model="m", team="t")
    assert pickle.loads(pickle.dumps(tagged)) == tagged
    assert request.without("safe_prompt").without("extra") == chatdsl.chat("m").user("hi")


def test_a_rarely_set_field_is_still_validated_and_validators_can_be_disabled() -> None:
    with pytest.raises(ValidationError, match="safe_prompt") as info:
        ChatCompletionRequest(safe_prompt="yes")  # type: ignore[arg-type]
    assert "'yes'" in str(info.value)
    with pytest.raises(ValidationError, match=r"extra\.model"):
        chatdsl.chat().with_extra(model="m")
    with attrs.validators.disabled():
        assert ChatCompletionRequest(temperature=99, safe_prompt="yes").safe_prompt == "yes"  # type: ignore[arg-type]
        for value in (0, None, "", []):  # stored as given, as attrs would: not mistaken for "no extra"
            assert ChatCompletionRequest(extra=value).extra == value  # type: ignore[arg-type]
        built = chatdsl.chat().with_temperature(99).add("not a message")  # type: ignore[arg-type]
        assert (built.temperature, built.messages) == (99, ("not a message",))
    with pytest.raises(ValidationError, match="temperature"):
        ChatCompletionRequest(temperature=99)


@attrs.frozen(kw_only=True)
class Tagged(ChatCompletionRequest):
    """A user's subclass: an attrs slotted class over the request's layout."""

    team: str = "none"


@attrs.define(kw_only=True, frozen=True, slots=False)
class Annotated(ChatCompletionRequest):
    """A user's subclass without slots (instances get a ``__dict__`` for the new field)."""

    note: str = ""


def test_subclasses_setting_none_of_the_rarely_set_fields_work() -> None:
    request = chatdsl.chat("m").user("hi").with_temperature(0.5)
    upcast = Tagged(**attrs.asdict(request, recurse=False), team="t")
    assert (upcast.to_dict(), upcast.team, upcast.safe_prompt) == (request.to_dict(), "t", UNSET)
    assert "team='t'" in repr(upcast)
    with attrs.validators.disabled():
        assert Tagged(model="m").extra == FrozenDict()
    annotated = Annotated(model="m", note="n").user("hi")
    assert (annotated.note, annotated.to_dict()["messages"]) == ("n", [{"role": "user", "content": "hi"}])
    assert pickle.loads(pickle.dumps(annotated)) == annotated
    assert copy.copy(annotated) == annotated


def test_the_constructor_reads_like_the_attrs_one() -> None:
    import inspect
    import typing
    import weakref

    hints = typing.get_type_hints(ChatCompletionRequest.__init__)
    assert hints["temperature"] == float | UnsetType
    assert hints["safe_prompt"] == bool | UnsetType
    signature = inspect.signature(ChatCompletionRequest, eval_str=True)
    assert list(signature.parameters) == [a.name for a in attrs.fields(ChatCompletionRequest)]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in signature.parameters.values())
    assert ChatCompletionRequest.__init__.__module__ == "chatdsl.model.request"
    with pytest.raises(TypeError):
        weakref.ref(chatdsl.chat())


def test_a_subclass_with_its_own_field_keeps_the_layout_working() -> None:
    tagged = Tagged(model="m", safe_prompt=True, team="search").user("hi").with_prompt_cache_key("k")
    assert (tagged.team, tagged.safe_prompt, tagged.prompt_cache_key) == ("search", True, "k")
    assert type(tagged) is Tagged
    assert pickle.loads(pickle.dumps(tagged)) == tagged
    assert tagged.to_dict() == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "safe_prompt": True,
        "prompt_cache_key": "k",
    }


@given(s.requests())
def test_requests_hash_and_compare_by_value(request: ChatCompletionRequest) -> None:
    twin = ChatCompletionRequest.from_dict(request.to_dict())
    assert twin == request
    assert hash(twin) == hash(request)
    assert len({request, twin}) == 1


@given(s.requests())
def test_requests_survive_pickle_and_copy(request: ChatCompletionRequest) -> None:
    assert pickle.loads(pickle.dumps(request)) == request
    assert copy.deepcopy(request) == request
    assert copy.copy(request) == request


# ---------------------------------------------------------------------------------- JSON values


@given(s.json_objects)
def test_json_objects_are_frozen_deeply_and_equal_to_the_originals(value: dict[str, Any]) -> None:
    request = chatdsl.chat().with_metadata(value)
    assert request.metadata == value
    assert isinstance(request.metadata, FrozenDict)
    assert json.loads(json.dumps(request.metadata)) == json.loads(json.dumps(value))

    def frozen(node: Any) -> bool:
        if isinstance(node, dict):
            return isinstance(node, FrozenDict) and all(frozen(v) for v in node.values())
        if isinstance(node, list):
            return isinstance(node, FrozenList) and all(frozen(v) for v in node)
        return True

    assert frozen(request.metadata)


def test_the_callers_dict_is_copied_not_kept() -> None:
    mine = {"a": [1]}
    request = chatdsl.chat().with_metadata(mine)
    mine["a"].append(2)
    mine["b"] = 3
    assert request.metadata == {"a": [1]}


def test_frozen_values_are_shared_not_copied() -> None:
    frozen = chatdsl.chat().with_metadata({"a": [1]}).metadata
    assert chatdsl.chat().with_metadata(frozen).metadata is frozen
    assert copy.deepcopy(frozen) is frozen
    assert copy.copy(frozen) is frozen
    assert pickle.loads(pickle.dumps(frozen)) == frozen
    assert isinstance(pickle.loads(pickle.dumps(frozen)), FrozenDict)
    assert repr(FrozenList([1])) == "FrozenList([1])"
    assert repr(FrozenDict(a=1)) == "FrozenDict({'a': 1})"


def test_a_builder_step_returns_a_frozen_request_not_the_copiers_draft() -> None:
    derived = chatdsl.chat("m").with_temperature(0.5)
    assert type(derived) is ChatCompletionRequest
    assert not hasattr(derived, "__dict__")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        derived.temperature = 1  # type: ignore[misc]
    assert derived.temperature == 0.5
    assert derived.model == "m"


def test_chat_with_a_model_is_the_constructors_request_and_checks_the_model() -> None:
    from chatdsl.model.templating import is_unrendered

    assert chatdsl.chat("m") == ChatCompletionRequest(model="m")
    assert type(chatdsl.chat("m")) is ChatCompletionRequest
    assert not is_unrendered(chatdsl.chat("m"))
    with pytest.raises(ValidationError, match=r"^model: '' is empty"):
        chatdsl.chat("")
    with pytest.raises(ValidationError, match=r"^model: 3 is an int, not a string"):
        chatdsl.chat(3)  # type: ignore[arg-type]


def test_equal_schemas_share_one_frozen_copy_and_the_callers_dicts_are_not_kept() -> None:
    def schema() -> dict[str, Any]:
        return {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}}}

    mine = schema()
    first = Tool.of("a", mine)
    second = Tool.of("b", schema())
    assert second.function.parameters is first.function.parameters  # frozen once, then shared
    assert isinstance(first.function.parameters["properties"]["city"]["enum"], FrozenList)
    mine["properties"]["city"]["enum"].append("Oslo")
    mine["title"] = "changed"
    assert first.function.parameters == schema()
    assert Tool.of("c", mine).function.parameters == mine  # a changed dict is frozen anew
    assert first.function.parameters == schema()
    fed_back = first.function.parameters
    assert JsonSchema(name="n", schema=fed_back).schema is fed_back


def test_the_shared_schemas_stay_bounded() -> None:
    from chatdsl import _checks

    for number in range(_checks._SCHEMAS_MAX + 50):
        Tool.of("f", {"type": "object", "description": f"schema {number}"})
    assert 0 < len(_checks._SCHEMAS) <= _checks._SCHEMAS_MAX
    big = {"description": "x" * (_checks._SCHEMA_KEY_MAX + 1)}
    assert Tool.of("f", big).function.parameters is not Tool.of("f", big).function.parameters  # too big to keep


class _Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("shared", "lookalike", "error"),
    [
        ({"x": None}, {"x": float("nan")}, "not a finite number"),
        ({"x": "red"}, {"x": _Colour.RED}, "not a JSON value"),
        ({"x": "00000000-0000-0000-0000-000000000000"}, {"x": uuid.UUID(int=0)}, "not a JSON value"),
    ],
)
def test_a_value_whose_json_looks_like_a_shared_schema_is_still_checked(
    shared: dict[str, Any], lookalike: dict[str, Any], error: str
) -> None:
    Tool.of("a", shared)
    with pytest.raises(ValidationError, match=error):
        Tool.of("b", lookalike)


def test_a_tuple_lookalike_is_frozen_to_an_equal_list() -> None:
    Tool.of("a", {"required": ["a", "b"]})
    parameters = Tool.of("b", {"required": ("a", "b")}).function.parameters
    assert isinstance(parameters["required"], FrozenList)
    assert parameters == {"required": ["a", "b"]}


@given(s.json_objects)
def test_a_schema_built_twice_is_the_same_frozen_value(value: dict[str, Any]) -> None:
    first = Tool.of("a", copy.deepcopy(value)).function.parameters
    second = Tool.of("b", copy.deepcopy(value)).function.parameters
    assert first == second == value
    assert isinstance(second, FrozenDict)
    with pytest.raises(TypeError, match="immutable"):
        second["new"] = 1


# ------------------------------------------------------------------------- tools, choices, formats


def test_tool_choice_has_exactly_one_of_mode_and_function() -> None:
    assert ToolChoice(mode="auto") == ToolChoice.AUTO
    assert ToolChoice.AUTO.mode is ToolChoiceMode.AUTO
    assert ToolChoice.named("f").function == "f"
    with pytest.raises(ValidationError, match="needs exactly one of a mode or a function name"):
        ToolChoice()
    with pytest.raises(ValidationError, match="needs exactly one of a mode or a function name"):
        ToolChoice(mode="auto", function="f")
    assert [c.forces_call for c in (ToolChoice.AUTO, ToolChoice.NONE, ToolChoice.ANY, ToolChoice.REQUIRED)] == [
        False,
        False,
        True,
        True,
    ]
    assert ToolChoice.named("f").forces_call


@pytest.mark.parametrize("mode", list(ToolChoiceMode))
def test_tool_choice_coerces_modes_from_strings_and_members(mode: ToolChoiceMode) -> None:
    assert ToolChoice.coerce(mode.value) == ToolChoice(mode=mode)
    assert ToolChoice.coerce(mode) == ToolChoice(mode=mode)
    choice = ToolChoice.named("x")
    assert ToolChoice.coerce(choice) is choice


def test_response_format_needs_a_schema_exactly_for_json_schema() -> None:
    schema = JsonSchema(name="n", schema={})
    assert ResponseFormat(type="json_schema", json_schema=schema).json_schema is schema
    assert ResponseFormat().type is ResponseFormatType.TEXT
    with pytest.raises(ValidationError) as info:
        ResponseFormat(type="json_schema")
    assert str(info.value) == "json_schema: is required when type is 'json_schema'"
    with pytest.raises(ValidationError) as info:
        ResponseFormat(type="json_object", json_schema=schema)
    assert str(info.value) == "json_schema: is only allowed when type is 'json_schema', not 'json_object'"


def test_tool_of_builds_a_function_tool() -> None:
    tool = Tool.of("f", {"type": "object"}, description="d", strict=True)
    assert tool == Tool(function=Function(name="f", parameters={"type": "object"}, description="d", strict=True))
    assert tool.name == "f"
    assert Tool.of("g").function.parameters == {}


def test_property_definition_mirrors_the_go_type() -> None:
    definition = PropertyDefinition.object(
        {
            "city": PropertyDefinition(type="string", description="City"),
            "unit": PropertyDefinition(type="string", enum=["c", "f"], default="c"),
            "days": PropertyDefinition(type="array", items=PropertyDefinition(type="integer")),
            "extra": PropertyDefinition(
                type="object", additional_properties=PropertyDefinition(type=["string", "null"])
            ),
        },
        required=["city"],
        additional_properties=False,
    )
    assert definition.to_schema() == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City"},
            "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
            "days": {"type": "array", "items": {"type": "integer"}},
            "extra": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert PropertyDefinition.object({"a": PropertyDefinition(type="string")}).required == ("a",)
    assert Function(name="f", parameters=definition).parameters == definition.to_schema()
    assert JsonSchema(name="n", schema=definition).schema == definition.to_schema()


_WIRE_NAMES = {"additional_properties": "additionalProperties"}


@given(s.property_definitions)
def test_to_schema_sends_exactly_the_set_keys_as_frozen_json(definition: PropertyDefinition) -> None:
    schema = definition.to_schema()
    assert isinstance(schema, FrozenDict)
    set_fields = {
        _WIRE_NAMES.get(a.name, a.name)
        for a in attrs.fields(PropertyDefinition)
        if getattr(definition, a.name) is not UNSET
    }
    assert set(schema) == set_fields
    assert json.loads(json.dumps(schema)) == schema
    for name, child in (definition.properties or {}).items():
        assert schema["properties"][name] == child.to_schema()


def test_assistant_text_joins_text_parts() -> None:
    assert AssistantMessage().text() == ""
    assert AssistantMessage(content="hi").text() == "hi"
    parts = [TextChunk(text="a"), chatdsl.ImageURLChunk(url="https://x"), TextChunk(text="b")]
    assert AssistantMessage(content=parts).text() == "ab"
    call = ToolCall(function=FunctionCall(name="f", arguments="{}"))
    assert call.name == "f"


def test_equal_requests_hash_equal_whatever_the_key_order() -> None:
    first = chatdsl.chat("m").with_metadata({"a": 1, "b": {"c": 2, "d": 3}})
    second = chatdsl.chat("m").with_metadata({"b": {"d": 3, "c": 2}, "a": 1})
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1
