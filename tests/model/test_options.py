"""Go-style functional options: parity with the builder methods, ``apply`` and the ``new_*`` constructors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chatdsl
from chatdsl import (
    ChatCompletionRequest,
    PropertyDefinition,
    SystemMessage,
    Tool,
    ToolChoice,
    UserMessage,
    ValidationError,
)
from tests import strategies as s

OPTIONS = sorted(name for name in chatdsl.__all__ if name.startswith("with_"))
"""Every public option function (``chatdsl.with_*``)."""


def outcome(call: Any) -> Any:
    """The result of *call*, or the text of the ValidationError it raised (so refusals compare too)."""
    try:
        return call()
    except ValidationError as exc:
        return ("refused", str(exc))


def test_every_option_mirrors_a_builder_method_with_tested_arguments() -> None:
    assert len(OPTIONS) >= 20
    for name in OPTIONS:
        assert callable(getattr(chatdsl, name)), name
        assert callable(getattr(ChatCompletionRequest, name, None)), f"no method ChatCompletionRequest.{name}"
        assert name in s.METHOD_ARGS, f"add argument strategies for {name} to METHOD_ARGS in tests/strategies.py"


@given(s.requests(with_extra=True), st.data())
def test_apply_of_an_option_equals_the_method(request: ChatCompletionRequest, data: st.DataObject) -> None:
    """For every option: ``req.apply(with_x(a)) == req.with_x(a)`` (and both refuse the same arguments)."""
    for name in OPTIONS:
        args, kwargs = data.draw(s.METHOD_ARGS[name], label=name)
        option = getattr(chatdsl, name)

        def via_option(option: Any = option, args: Any = args, kwargs: Any = kwargs) -> Any:
            return request.apply(option(*args, **kwargs))

        def via_method(name: str = name, args: Any = args, kwargs: Any = kwargs) -> Any:
            return getattr(request, name)(*args, **kwargs)

        assert outcome(via_option) == outcome(via_method), name


@given(s.requests(), st.data())
def test_an_option_is_a_reusable_value(request: ChatCompletionRequest, data: st.DataObject) -> None:
    other = data.draw(s.requests())
    option = chatdsl.with_temperature(data.draw(s.temperatures))
    assert option(request) == request.apply(option)
    assert other.apply(option) == option(other)
    assert option(request) == option(request)


def test_apply_runs_options_in_order() -> None:
    request = chatdsl.chat().apply(chatdsl.with_temperature(1), chatdsl.with_model("a"), chatdsl.with_temperature(0))
    assert request == chatdsl.chat("a").with_temperature(0)
    assert chatdsl.chat("m").apply() == chatdsl.chat("m")


def test_any_callable_from_request_to_request_is_an_option() -> None:
    def formal(request: ChatCompletionRequest) -> ChatCompletionRequest:
        return request.system("Answer formally.")

    assert chatdsl.chat().apply(formal, chatdsl.with_n(2)) == chatdsl.chat().system("Answer formally.").with_n(2)


@given(
    s.models,
    st.lists(s.messages, max_size=3),
    st.lists(st.sampled_from(OPTIONS), max_size=4),
    st.data(),
)
def test_new_chat_completion_request_equals_the_builder_chain(
    model: str, messages: list[Any], names: list[str], data: st.DataObject
) -> None:
    calls = [(name, *data.draw(s.METHOD_ARGS[name], label=name)) for name in names]
    options = [getattr(chatdsl, name)(*args, **kwargs) for name, args, kwargs in calls]

    def chain(request: ChatCompletionRequest) -> ChatCompletionRequest:
        for name, args, kwargs in calls:
            request = getattr(request, name)(*args, **kwargs)
        return request

    built = outcome(lambda: chain(chatdsl.chat(model).add(*messages)))
    assert outcome(lambda: chatdsl.new_chat_completion_request(model, messages, *options)) == built
    streamed = outcome(lambda: chain(chatdsl.chat(model).with_messages(messages).with_streaming()))
    assert outcome(lambda: chatdsl.new_chat_completion_stream_request(model, messages, *options)) == streamed


def test_a_stream_request_streams_unless_an_option_says_otherwise() -> None:
    messages = [UserMessage(content="hi")]
    assert chatdsl.new_chat_completion_stream_request("m", messages).to_dict() == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    assert chatdsl.new_chat_completion_request("m", messages).stream is chatdsl.UNSET
    assert chatdsl.new_chat_completion_stream_request("m", messages, chatdsl.with_streaming(False)).stream is False


def test_the_go_readme_example() -> None:
    """Go: ``NewChatCompletionRequest(m, msgs, WithResponseJsonSchema(d), WithTools(ts), WithToolChoice(Any))``."""
    definition = PropertyDefinition.object({"answer": PropertyDefinition(type="string")})
    weather = Tool.of("get_weather", PropertyDefinition.object({"city": PropertyDefinition(type="string")}))
    request = chatdsl.new_chat_completion_request(
        "mistral-small-latest",
        [SystemMessage(content="Be brief."), UserMessage(content="Weather in Paris?")],
        chatdsl.with_response_json_schema(definition, name="answer"),
        chatdsl.with_tools([weather]),
        chatdsl.with_tool_choice("any"),
    )
    assert request.validate() is request
    assert request.to_dict() == {
        "model": "mistral-small-latest",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                },
            }
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "schema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
                "strict": True,
            },
        },
        "tool_choice": "any",
    }


@given(s.requests(), s.tool_lists)
def test_the_with_tools_option_sets_auto_only_when_no_choice_is_set(request: ChatCompletionRequest, tools: Any) -> None:
    result = request.apply(chatdsl.with_tools(tools))
    assert result.tool_choice == (ToolChoice.AUTO if request.tool_choice is chatdsl.UNSET else request.tool_choice)


def test_the_with_tools_option_copies_an_iterator_once() -> None:
    option = chatdsl.with_tools(iter([Tool.of("f")]))
    assert option(chatdsl.chat()).tools == option(chatdsl.chat()).tools == (Tool.of("f"),)


@pytest.mark.parametrize(
    ("option", "method"),
    [
        (lambda: chatdsl.with_response_text_format(), lambda r: r.with_response_text_format()),
        (lambda: chatdsl.with_response_json_object_format(), lambda r: r.with_json_object()),
        (lambda: chatdsl.with_streaming(), lambda r: r.streaming()),
        (
            lambda: chatdsl.with_response_json_schema({"type": "object"}),
            lambda r: r.with_json_schema({"type": "object"}),
        ),
    ],
)
def test_options_equal_the_short_aliases(option: Any, method: Any) -> None:
    base = chatdsl.chat("m").user("hi")
    assert base.apply(option()) == method(base)
