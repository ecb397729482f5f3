"""Validation: every rule with its exact message, through every route; strict ``from_dict``; ``validate()``."""

from __future__ import annotations

import json
import math
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
    FunctionCall,
    ImageURLChunk,
    JsonSchema,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
    ToolMessage,
    UserMessage,
    ValidationError,
)
from tests import strategies as s

KNOWN = (
    "(known: model, messages, tools, max_tokens, temperature, top_p, response_format, tool_choice, "
    "parallel_tool_calls, frequency_penalty, presence_penalty, n, prompt_mode, random_seed, safe_prompt, stop, "
    "stream, prediction, reasoning_effort, metadata, prompt_cache_key, top_k, min_tokens, repetition_penalty, "
    "logprobs, top_logprobs, prompt_logprobs, top_prompt_logprobs, guardrails, service_tier)"
)
ALL_PARTS = (
    "TextChunk, ImageURLChunk, DocumentURLChunk, ReferenceChunk, FileChunk, ThinkChunk, AudioChunk, UnknownChunk"
)
ALL_TAGS = "'text', 'image_url', 'document_url', 'reference', 'file', 'thinking', 'input_audio'"

# ------------------------------------------------------------------------------- the error type


def test_validation_error_is_a_value_error_with_path_and_rule() -> None:
    with pytest.raises(ValidationError) as info:
        chatdsl.chat().with_temperature(2.0)
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, chatdsl.ChatDSLError)
    assert str(error) == "temperature: 2.0 is above the maximum 1.5"
    assert error.path == "temperature"
    assert error.rule == "2.0 is above the maximum 1.5"
    assert error.errors == (("temperature", "2.0 is above the maximum 1.5"),)


# ------------------------------------------------------------------- field rules, every route

# (field, builder method or None, bad value, exact message)
FIELD_RULES: list[tuple[str, str | None, Any, str]] = [
    ("temperature", "with_temperature", 2.0, "temperature: 2.0 is above the maximum 1.5"),
    ("temperature", "with_temperature", 1.6, "temperature: 1.6 is above the maximum 1.5"),
    ("temperature", "with_temperature", -0.1, "temperature: -0.1 is below the minimum 0"),
    ("temperature", "with_temperature", math.nan, "temperature: nan is not a finite number"),
    ("temperature", "with_temperature", math.inf, "temperature: inf is not a finite number"),
    ("temperature", "with_temperature", True, "temperature: True is a bool, not a number"),
    ("temperature", "with_temperature", "0.5", "temperature: '0.5' is a str, not a number"),
    ("top_p", "with_top_p", 1.01, "top_p: 1.01 is above the maximum 1"),
    ("top_p", "with_top_p", -1, "top_p: -1 is below the minimum 0"),
    ("top_p", "with_top_p", -math.inf, "top_p: -inf is not a finite number"),
    ("frequency_penalty", "with_frequency_penalty", 2.5, "frequency_penalty: 2.5 is above the maximum 2"),
    ("frequency_penalty", "with_frequency_penalty", -3, "frequency_penalty: -3 is below the minimum -2"),
    ("presence_penalty", "with_presence_penalty", 2.01, "presence_penalty: 2.01 is above the maximum 2"),
    ("presence_penalty", "with_presence_penalty", -2.5, "presence_penalty: -2.5 is below the minimum -2"),
    ("presence_penalty", "with_presence_penalty", False, "presence_penalty: False is a bool, not a number"),
    ("max_tokens", "with_max_tokens", -1, "max_tokens: -1 is below the minimum 0"),
    ("max_tokens", "with_max_tokens", 1.5, "max_tokens: 1.5 is a float, not an integer"),
    ("max_tokens", "with_max_tokens", True, "max_tokens: True is a bool, not an integer"),
    ("n", "with_n", 0, "n: 0 is below the minimum 1"),
    ("n", "with_n", 1.0, "n: 1.0 is a float, not an integer"),
    ("n", "with_n", True, "n: True is a bool, not an integer"),
    ("random_seed", "with_random_seed", -1, "random_seed: -1 is below the minimum 0"),
    ("random_seed", "with_random_seed", False, "random_seed: False is a bool, not an integer"),
    ("parallel_tool_calls", "with_parallel_tool_calls", 1, "parallel_tool_calls: 1 is an int, not a boolean"),
    ("safe_prompt", "with_safe_prompt", "yes", "safe_prompt: 'yes' is a str, not a boolean"),
    ("stream", "with_streaming", 0, "stream: 0 is an int, not a boolean"),
    (
        "prompt_mode",
        "with_prompt_mode",
        "",
        "prompt_mode: '' is empty; a non-empty string is required (known values: 'reasoning')",
    ),
    (
        "prompt_mode",
        "with_prompt_mode",
        1,
        "prompt_mode: 1 is an int, not a string (known values: 'reasoning')",
    ),
    (
        "reasoning_effort",
        "with_reasoning_effort",
        "",
        "reasoning_effort: '' is empty; a non-empty string is required "
        "(known values: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max')",
    ),
    (
        "reasoning_effort",
        "with_reasoning_effort",
        5,
        "reasoning_effort: 5 is an int, not a string "
        "(known values: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max')",
    ),
    (
        "service_tier",
        "with_service_tier",
        "",
        "service_tier: '' is empty; a non-empty string is required (known values: 'auto', 'standard_only')",
    ),
    ("top_k", "with_top_k", -1, "top_k: -1 is below the minimum 0"),
    ("top_k", "with_top_k", 1.5, "top_k: 1.5 is a float, not an integer"),
    ("top_k", "with_top_k", True, "top_k: True is a bool, not an integer"),
    ("min_tokens", "with_min_tokens", -1, "min_tokens: -1 is below the minimum 0"),
    ("min_tokens", "with_min_tokens", "3", "min_tokens: '3' is a str, not an integer"),
    ("repetition_penalty", "with_repetition_penalty", -0.5, "repetition_penalty: -0.5 is below the minimum 0"),
    ("repetition_penalty", "with_repetition_penalty", math.nan, "repetition_penalty: nan is not a finite number"),
    ("repetition_penalty", "with_repetition_penalty", True, "repetition_penalty: True is a bool, not a number"),
    ("logprobs", "with_logprobs", 1, "logprobs: 1 is an int, not a boolean"),
    ("top_logprobs", "with_top_logprobs", -1, "top_logprobs: -1 is below the minimum 0"),
    ("top_logprobs", "with_top_logprobs", 2.0, "top_logprobs: 2.0 is a float, not an integer"),
    ("prompt_logprobs", "with_prompt_logprobs", "yes", "prompt_logprobs: 'yes' is a str, not a boolean"),
    ("top_prompt_logprobs", "with_top_prompt_logprobs", -3, "top_prompt_logprobs: -3 is below the minimum 0"),
    (
        "guardrails",
        None,
        [{"block_on_error": True}],
        "guardrails[0]: {'block_on_error': True} is a dict, not a GuardrailConfig",
    ),
    (
        "tool_choice",
        "with_tool_choice",
        "sometimes",
        "tool_choice: 'sometimes' is not one of 'auto', 'none', 'any', 'required'; "
        "use ToolChoice.named(name) to force one function",
    ),
    ("stop", "with_stop", 5, "stop: 5 is not a string or a list of strings"),
    ("stop", None, ["a", 1], "stop[1]: 1 is an int, not a string"),
    ("model", "with_model", "", "model: '' is empty; a non-empty string is required"),
    ("model", "with_model", 5, "model: 5 is an int, not a string"),
    ("prompt_cache_key", "with_prompt_cache_key", 5, "prompt_cache_key: 5 is an int, not a string"),
    (
        "metadata",
        "with_metadata",
        {"a": math.nan},
        "metadata: {'a': nan} is not a JSON object (nan is not a finite number; JSON cannot carry it)",
    ),
    ("messages", None, ["hi"], "messages[0]: 'hi' is a str, not a message"),
    ("messages", None, None, "messages: None is a NoneType, not a list of message"),
    (
        "tools",
        None,
        [Tool.of("a"), Tool.of("a")],
        "tools[1].function.name: 'a' names a tool twice; tool names must be unique",
    ),
    ("tools", None, 5, "tools: 5 is an int, not a list of Tool"),
]


def _ids(rule: tuple[str, str | None, Any, str]) -> str:
    return f"{rule[0]}={rule[2]!r}"


@pytest.mark.parametrize(("field", "method", "value", "message"), FIELD_RULES, ids=map(_ids, FIELD_RULES))
def test_each_rule_through_the_constructor_and_evolve(field: str, method: str | None, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest(**{field: value})
    assert str(info.value) == message
    with pytest.raises(ValidationError) as info:
        attrs.evolve(chatdsl.chat("m").user("hi"), **{field: value})
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("field", "method", "value", "message"),
    [r for r in FIELD_RULES if r[1]],
    ids=map(_ids, [r for r in FIELD_RULES if r[1]]),
)
def test_each_rule_through_the_builder_and_its_option(field: str, method: str, value: Any, message: str) -> None:
    args = (value,)
    with pytest.raises(ValidationError) as info:
        getattr(chatdsl.chat("m"), method)(*args)
    assert str(info.value) == message
    with pytest.raises(ValidationError) as info:
        chatdsl.chat("m").apply(getattr(chatdsl, method)(*args))
    assert str(info.value) == message


_JSON_RULES = [r for r in FIELD_RULES if r[0] not in {"tools", "messages", "guardrails"}]


@pytest.mark.parametrize(("field", "method", "value", "message"), _JSON_RULES, ids=map(_ids, _JSON_RULES))
def test_each_rule_through_from_dict(field: str, method: str | None, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.from_dict({"model": "m", field: value})
    assert str(info.value) == message


def test_nan_and_infinity_in_json_text_are_refused() -> None:
    for text, message in [
        ('{"temperature": NaN}', "temperature: nan is not a finite number"),
        ('{"top_p": Infinity}', "top_p: inf is not a finite number"),
        (
            '{"metadata": {"x": -Infinity}}',
            "metadata: {'x': -inf} is not a JSON object (-inf is not a finite number; JSON cannot carry it)",
        ),
    ]:
        with pytest.raises(ValidationError) as info:
            ChatCompletionRequest.from_json(text)
        assert str(info.value) == message


def test_boundaries_are_inclusive() -> None:
    request = ChatCompletionRequest(
        temperature=1.5, top_p=1, frequency_penalty=-2, presence_penalty=2, max_tokens=0, n=1, random_seed=0
    )
    assert ChatCompletionRequest.from_dict(request.to_dict()) == request
    assert ChatCompletionRequest(temperature=0, top_p=0.0, frequency_penalty=2.0, presence_penalty=-2.0).top_p == 0


# ------------------------------------------------------------------------- nested rules and enums

# (build, exact message) for the parts' own constructors
PART_RULES: list[tuple[Any, str]] = [
    (lambda: ImageURLChunk(url="https://x", detail="huge"), "detail: 'huge' is not one of 'low', 'auto', 'high'"),
    (lambda: ImageURLChunk(url="", detail="low"), "url: '' is empty; a non-empty string is required"),
    (lambda: ToolChoice(mode="sometimes"), "mode: 'sometimes' is not one of 'auto', 'none', 'any', 'required'"),
    (lambda: ResponseFormat(type="xml"), "type: 'xml' is not one of 'text', 'json_object', 'json_schema'"),
    (lambda: ResponseFormat(type="json_schema"), "json_schema: is required when type is 'json_schema'"),
    (lambda: JsonSchema(name="", schema={}), "name: '' is empty; a non-empty string is required"),
    (lambda: JsonSchema(name="n", schema=[]), "schema: FrozenList([]) is a FrozenList, not a JSON object"),
    (lambda: chatdsl.ReferenceChunk(reference_ids=[True]), "reference_ids[0]: True is a bool, not an int or str"),
    (
        lambda: ToolCall(function=FunctionCall(name="f", arguments="{}"), index=True),
        "index: True is a bool, not an integer",
    ),
    (lambda: ToolCall(function=FunctionCall(name="f", arguments="{}"), index=-1), "index: -1 is below the minimum 0"),
    (lambda: FunctionCall(name="f", arguments=5), "arguments: 5 is an int, not a JSON string or JSON object"),
    (lambda: UserMessage(content=5), "content: 5 is an int, not a string or content parts"),
    (
        lambda: UserMessage(content=["x"]),
        f"content[0]: 'x' is a str, not one of {ALL_PARTS}",
    ),
    (
        lambda: chatdsl.SystemMessage(content=[ImageURLChunk(url="https://x")]),
        "content[0]: ImageURLChunk(url='https://x', detail=UNSET, extra={}) is an ImageURLChunk, "
        "not one of TextChunk, ThinkChunk",
    ),
    (lambda: AssistantMessage(prefix="yes"), "prefix: 'yes' is a str, not a boolean"),
    (lambda: chatdsl.Function(name="", parameters={}), "name: '' is empty; a non-empty string is required"),
    (
        lambda: chatdsl.PropertyDefinition(type="text"),
        "type: 'text' is not a JSON-schema type (array, boolean, integer, null, number, object, string)",
    ),
    (
        lambda: chatdsl.PropertyDefinition(default={1}),
        "default: {1} is not a JSON value (set is not a JSON value: {1})",
    ),
    (lambda: chatdsl.PropertyDefinition(required="abc"), "required: 'abc' is a str, not a list of str"),
]


@pytest.mark.parametrize(
    ("build", "message"), PART_RULES, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(PART_RULES)]
)
def test_each_part_rule_with_its_message(build: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        build()
    assert str(info.value) == message


# (body, exact message) for the same rules and the strict reader, with the path into the body
BODY_RULES: list[tuple[dict[str, Any], str]] = [
    (
        {"tempreature": 0.5},
        f"tempreature: is not a known field {KNOWN}",
    ),
    (
        {"extra": {}},
        f"extra: is not a known field {KNOWN}",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "txt": "hi"}]}]},
        "messages[0].content[0].text: is required\nmessages[0].content[0].txt: is not a known field (known: text)",
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}, "foo": 1}}]},
        "tools[0].function.foo: is not a known field (known: name, parameters, description, strict)",
    ),
    (
        {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}, "idx": 0}]}]},
        "messages[0].tool_calls[0].idx: is not a known field (known: function, id, index)",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u", "size": 1}}]}]},
        "messages[0].content[0].image_url.size: is not a known field (known: url, detail)",
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}, "nme": 1}}},
        "response_format.json_schema.nme: is not a known field (known: name, schema, description, strict)",
    ),
    (
        {"prediction": {"type": "content", "content": "x", "size": 1}},
        "prediction.size: is not a known field (known: content)",
    ),
    (
        {"messages": [{"role": "bot", "content": "hi"}]},
        "messages[0].role: 'bot' is not one of 'system', 'user', 'assistant', 'tool'",
    ),
    (
        {"messages": [{"content": "hi"}]},
        "messages[0].role: is missing; a message needs one of 'system', 'user', 'assistant', 'tool'",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "video", "url": "u"}]}]},
        f"messages[0].content[0].type: 'video' is not one of {ALL_TAGS}",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u", "detail": "huge"}}]}
            ]
        },
        "messages[0].content[0].image_url.detail: 'huge' is not one of 'low', 'auto', 'high'",
    ),
    (
        {"messages": [{"role": "user", "content": 5}]},
        "messages[0].content: 5 is an int, not a string or a list of content parts",
    ),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content: is required"),
    ({"messages": [{"role": "user"}]}, "messages[0].content: is required"),
    (
        {"messages": [{"role": "tool", "content": "x", "tool_call_id": 5}]},
        "messages[0].tool_call_id: 5 is an int, not a string",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
        "messages[0].content[0].text: None is a NoneType, not a string",
    ),
    ({"messages": None}, "messages: None is a NoneType, not a list of messages"),
    ({"messages": {"role": "user"}}, "messages: {'role': 'user'} is a dict, not a list of messages"),
    ({"tools": [{"function": {"name": 5, "parameters": {}}}]}, "tools[0].function.name: 5 is an int, not a string"),
    (
        {"tools": [{"function": {"name": "f", "parameters": None}}]},
        "tools[0].function.parameters: None is a NoneType, not a JSON object",
    ),
    (
        {"tools": [{"type": "retrieval", "function": {"name": "f"}}]},
        "tools[0].type: 'retrieval' is not one of 'function'",
    ),
    (
        {"response_format": {"type": "xml"}},
        "response_format.type: 'xml' is not one of 'text', 'json_object', 'json_schema'",
    ),
    (
        {"response_format": {"type": None}},
        "response_format.type: None is not one of 'text', 'json_object', 'json_schema'",
    ),
    (
        {"response_format": {"type": "json_schema"}},
        "response_format.json_schema: is required when type is 'json_schema'",
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format.json_schema.name: is required",
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "n"}}},
        "response_format.json_schema.schema: is required",
    ),
    (
        {"tool_choice": {"type": "function", "function": {"name": "f", "x": 1}}},
        "tool_choice.function: must be an object with exactly the key 'name'",
    ),
    (
        {"tool_choice": {"type": "function", "function": {"name": ""}}},
        "tool_choice.function: '' is empty; a non-empty string is required",
    ),
    (
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"type": "retrieval", "function": {"name": "f", "arguments": "{}"}}],
                }
            ]
        },
        "messages[0].tool_calls[0].type: 'retrieval' is not 'function'",
    ),
    (
        {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": [1]}}]}]},
        "messages[0].tool_calls[0].function.arguments: FrozenList([1]) is a FrozenList, "
        "not a JSON string or JSON object",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "thinking", "thinking": None}]}]},
        "messages[0].content[0].thinking: None is a NoneType, not a list of parts",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "reference", "reference_ids": [True]}]}]},
        "messages[0].content[0].reference_ids[0]: True is a bool, not an int or str",
    ),
]


@pytest.mark.parametrize(("body", "message"), BODY_RULES, ids=[m.split(":")[0] for _, m in BODY_RULES])
def test_strict_from_dict_names_the_path(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.from_dict(body)
    assert str(info.value) == message
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.from_json(json.dumps(body))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "[] is a list, not a JSON object (ChatCompletionRequest)"),
        (None, "None is a NoneType, not a JSON object (ChatCompletionRequest)"),
        ("{}", "'{}' is a str, not a JSON object (ChatCompletionRequest)"),
    ],
)
def test_from_dict_wants_an_object(data: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.from_dict(data)
    assert str(info.value) == message


def test_from_json_refuses_malformed_text() -> None:
    for text in ["{", "", b"\xff", '{"a": }']:
        with pytest.raises(ValidationError, match="is not valid JSON"):
            ChatCompletionRequest.from_json(text)


# --------------------------------------------------------------------------- validate(): completeness


def _problems_of(request: ChatCompletionRequest) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        request.validate()
    assert not request.is_complete
    return list(info.value.errors)


LAST = "the last message must be a user or tool message (or an assistant message with prefix=True)"


def test_an_empty_template_reports_every_problem_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        chatdsl.chat().validate()
    assert str(info.value) == (
        "model: is not set; a request needs a model to be sent\n"
        "messages: is empty; a request needs at least one message"
    )
    assert len(info.value.errors) == 2


@pytest.mark.parametrize(
    ("request_", "problems"),
    [
        (chatdsl.chat().user("hi"), [("model", "is not set; a request needs a model to be sent")]),
        (chatdsl.chat("m"), [("messages", "is empty; a request needs at least one message")]),
        (chatdsl.chat("m").system("s"), [("messages[0]", f"is a system message; {LAST}")]),
        (chatdsl.chat("m").user("q").assistant("a"), [("messages[1]", f"is an assistant message; {LAST}")]),
        (
            chatdsl.chat("m").user("q").assistant("a", prefix=True).user("again"),
            [("messages[1].prefix", "True is only allowed on the last message")],
        ),
        (
            chatdsl.chat("m").add(ToolMessage(content="42")),
            [("messages[0].tool_call_id", "is not set; a tool message answers a tool call id")],
        ),
        (
            chatdsl.chat("m").user("q").tool("42", tool_call_id="c9"),
            [("messages[1].tool_call_id", "'c9' answers no tool call of an earlier assistant message")],
        ),
        (
            chatdsl.chat("m").user("q").with_tool_choice(ToolChoice.named("f")),
            [("tool_choice", "'f' names no tool in tools (tools: none)")],
        ),
        (
            chatdsl.chat("m")
            .user("q")
            .with_tools([Tool.of("b"), Tool.of("a")])
            .with_tool_choice(ToolChoice.named("f")),
            [("tool_choice", "'f' names no tool in tools (tools: a, b)")],
        ),
        (
            chatdsl.chat("m").user("q").with_tool_choice("any"),
            [("tool_choice", "'any' forces a tool call but no tools are set")],
        ),
        (
            chatdsl.chat("m").user("q").with_tools([]).with_tool_choice("required"),
            [("tool_choice", "'required' forces a tool call but no tools are set")],
        ),
        (
            chatdsl.chat()
            .system("s")
            .tool("x", tool_call_id="c")
            .assistant("a", prefix=True)
            .assistant("b")
            .with_tool_choice("any"),
            [
                ("model", "is not set; a request needs a model to be sent"),
                ("messages[3]", f"is an assistant message; {LAST}"),
                ("messages[1].tool_call_id", "'c' answers no tool call of an earlier assistant message"),
                ("messages[2].prefix", "True is only allowed on the last message"),
                ("tool_choice", "'any' forces a tool call but no tools are set"),
            ],
        ),
    ],
)
def test_each_completeness_rule_with_its_message(
    request_: ChatCompletionRequest, problems: list[tuple[str, str]]
) -> None:
    assert _problems_of(request_) == problems


def test_a_tool_message_answers_an_earlier_call_only() -> None:
    call = ToolCall(id="c1", function=FunctionCall(name="f", arguments="{}"))
    answered = chatdsl.chat("m").user("q").assistant(tool_calls=[call]).tool("42", tool_call_id="c1")
    assert answered.validate() is answered
    too_early = chatdsl.chat("m").user("q").tool("42", tool_call_id="c1").assistant(tool_calls=[call]).user("x")
    assert _problems_of(too_early) == [
        ("messages[1].tool_call_id", "'c1' answers no tool call of an earlier assistant message")
    ]


def test_a_prefix_assistant_message_may_end_a_request() -> None:
    request = chatdsl.chat("m").user("Write a haiku").assistant("Autumn", prefix=True)
    assert request.validate() is request


@given(s.complete_requests())
def test_complete_requests_validate(request: ChatCompletionRequest) -> None:
    assert request.validate() is request
    assert request.is_complete


@given(s.complete_requests())
def test_removing_a_required_part_is_reported(request: ChatCompletionRequest) -> None:
    assert _problems_of(request.without("model")) == [("model", "is not set; a request needs a model to be sent")]
    assert _problems_of(request.without("messages"))[0] == (
        "messages",
        "is empty; a request needs at least one message",
    )
    assert ("messages[0]", f"is a system message; {LAST}") in _problems_of(
        request.with_messages([chatdsl.SystemMessage(content="s")])
    )


# --------------------------------------------------------------------------------------- fuzzing

_KEYS = st.sampled_from(
    [a.name for a in attrs.fields(ChatCompletionRequest)]
    + ["role", "content", "type", "text", "image_url", "url", "detail", "function", "name", "arguments"]
    + ["tool_calls", "id", "index", "parameters", "json_schema", "schema", "thinking", "reference_ids", "prefix"]
)
_TAGS = st.sampled_from(
    ["user", "system", "assistant", "tool", "text", "image_url", "function", "json_schema", "thinking", "content"]
)
_FUZZ_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(),
    st.floats(),
    st.text(max_size=4),
    _TAGS,
)
fuzz_json = st.recursive(
    _FUZZ_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_KEYS | st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=12,
)
"""JSON-like values whose keys and tags are often the model's own, so the fuzzing gets deep."""


@st.composite
def mutated_bodies(draw: st.DrawFn) -> Any:
    """A valid wire body with one node replaced by fuzz, or given an extra key."""
    body = json.loads(draw(s.requests()).to_json())
    path = draw(st.sampled_from(s.json_paths(body)))
    if draw(st.booleans()):
        return s.replace_at(body, path, draw(fuzz_json))
    node: Any = body
    for step in path:
        node = node[step]
    if isinstance(node, dict):
        return s.replace_at(body, path, {**node, draw(_KEYS | st.text(max_size=3)): draw(fuzz_json)})
    return s.replace_at(body, path, draw(fuzz_json))


def _check_reading(data: Any) -> None:
    """Reading *data* either gives a request that round-trips, or raises ValidationError — never anything else."""
    try:
        request = ChatCompletionRequest.from_dict(data)
    except ValidationError as exc:
        error = exc
    else:
        assert ChatCompletionRequest.from_json(request.to_json()) == request
        return
    assert str(error)
    assert all(isinstance(path, str) and isinstance(rule, str) and rule for path, rule in error.errors)


@settings(max_examples=150)
@given(st.dictionaries(_KEYS, fuzz_json, max_size=4) | fuzz_json)
def test_arbitrary_json_gives_a_request_or_a_validation_error(data: Any) -> None:
    _check_reading(data)


@settings(max_examples=150)
@given(mutated_bodies())
def test_damaged_bodies_give_a_request_or_a_validation_error(data: Any) -> None:
    _check_reading(data)


@given(st.text(max_size=20) | fuzz_json.map(json.dumps))
def test_arbitrary_text_gives_a_request_or_a_validation_error(text: str) -> None:
    try:
        request = ChatCompletionRequest.from_json(text)
    except ValidationError:
        return
    assert ChatCompletionRequest.from_json(request.to_json()) == request


_FIELDS = [a.name for a in attrs.fields(ChatCompletionRequest)]


@given(st.sampled_from(_FIELDS), fuzz_json)
def test_any_json_value_for_any_field_is_taken_or_refused_cleanly(field: str, value: Any) -> None:
    """The constructor, too, never fails with anything but a ValidationError (and never stores junk)."""
    try:
        request = ChatCompletionRequest(**{field: value})
    except ValidationError:
        return
    assert ChatCompletionRequest.from_json(request.to_json(), allow_extra=True) == request


@given(s.responses(), fuzz_json)
def test_responses_read_leniently_but_fail_only_with_validation_errors(response: Any, noise: Any) -> None:
    body = json.loads(response.to_json())
    path = s.json_paths(body)[len(str(noise)) % len(s.json_paths(body))]
    damaged = s.replace_at(body, path, noise)
    try:
        read = chatdsl.ChatCompletionResponse.from_dict(damaged)
    except ValidationError:
        return
    assert chatdsl.ChatCompletionResponse.from_json(read.to_json()) == read


def test_unset_is_never_stored_by_the_reader() -> None:
    request = ChatCompletionRequest.from_dict(
        {"messages": [{"role": "assistant", "content": None, "tool_calls": None}]}
    )
    assert request.messages == (AssistantMessage(),)
    assert request.messages[0].content is UNSET


def test_a_message_the_builder_refuses_is_named_by_its_place_in_the_conversation():
    image = chatdsl.ImageURLChunk(url="https://example.com/a.png")
    with pytest.raises(chatdsl.ValidationError) as info:
        chatdsl.chat().user("a").system([image])
    assert info.value.path == "messages[1].content[0]"
    with pytest.raises(chatdsl.ValidationError) as info:
        chatdsl.chat().assistant(tool_calls=["not a call"])  # type: ignore[list-item]
    assert info.value.path.startswith("messages[0].tool_calls[0]")


# ------------------------------------------------------------------------------------- guardrails


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: chatdsl.GuardrailConfig(block_on_error="yes"), "block_on_error: 'yes' is a str, not a boolean"),
        (
            lambda: chatdsl.GuardrailConfig(moderation_llm_v1={"action": "block"}),
            "moderation_llm_v1: {'action': 'block'} is a dict, not a ModerationConfig",
        ),
        (lambda: chatdsl.ModerationConfig(model_name=""), "model_name: '' is empty; a non-empty string is required"),
        (
            lambda: chatdsl.ModerationConfig(action=""),
            "action: '' is empty; a non-empty string is required (known values: 'none', 'block')",
        ),
        (
            lambda: chatdsl.ModerationConfig(ignore_other_categories=0),
            "ignore_other_categories: 0 is an int, not a boolean",
        ),
        (
            lambda: chatdsl.ModerationConfig(custom_category_thresholds={"pii": True}),
            "custom_category_thresholds.pii: True is a bool, not a number",
        ),
        (
            lambda: chatdsl.ModerationConfig(custom_category_thresholds={"pii": math.inf}),
            "custom_category_thresholds.pii: inf is not a finite number",
        ),
        (
            lambda: chatdsl.ModerationConfig(custom_category_thresholds={"": 0.5}),
            "custom_category_thresholds: '' is not a category name (a non-empty string)",
        ),
        (
            lambda: chatdsl.ModerationConfig(custom_category_thresholds=[0.5]),
            "custom_category_thresholds: [0.5] is a list, not an object of category: number",
        ),
    ],
)
def test_guardrail_rules_name_field_value_and_rule(build: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        build()
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("guardrails", "message"),
    [
        ({"block_on_error": True}, "guardrails: {'block_on_error': True} is a dict, not a list of guardrails"),
        ([{"moderation_llm_v3": {}}], "guardrails[0].moderation_llm_v3: is not a known field"),
        ([{"block_on_error": 1}], "guardrails[0].block_on_error: 1 is an int, not a boolean"),
        (
            [{}, {"moderation_llm_v2": {"custom_category_thresholds": {"law": "x"}}}],
            "guardrails[1].moderation_llm_v2.custom_category_thresholds.law: 'x' is a str, not a number",
        ),
        (
            [{"moderation_llm_v1": {"action": 3}}],
            "guardrails[0].moderation_llm_v1.action: 3 is an int, not a string (known values: 'none', 'block')",
        ),
    ],
)
def test_guardrails_in_a_body_are_checked_with_their_path(guardrails: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.from_dict({"model": "m", "guardrails": guardrails})
    assert str(info.value).startswith(message)


def test_null_in_guardrails_means_unset() -> None:
    thresholds = {"custom_category_thresholds": {"pii": None}}
    body = {"guardrails": [{"moderation_llm_v1": None, "moderation_llm_v2": thresholds}]}
    request = ChatCompletionRequest.from_dict(body)
    assert request.guardrails == (
        chatdsl.GuardrailConfig(moderation_llm_v2=chatdsl.ModerationConfig(custom_category_thresholds={})),
    )
    assert ChatCompletionRequest.from_dict({"guardrails": None}).guardrails is chatdsl.UNSET


@given(s.guardrail_configs)
def test_guardrails_round_trip_through_the_wire(guardrail: Any) -> None:
    request = chatdsl.chat("m").with_guardrails(guardrail)
    assert ChatCompletionRequest.from_dict(request.to_dict()) == request
