"""The tool loop (``Client.run_tools``) against ``chatdsl.testing.LocalServer`` over 127.0.0.1."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import chatdsl
from chatdsl import (
    AssistantMessage,
    ChatCompletionRequest,
    Client,
    OutputError,
    Tool,
    ToolLoopError,
    ToolMessage,
    ToolRunResult,
    ValidationError,
)
from chatdsl.client.loop import run_tools
from chatdsl.testing import LocalServer, Reply
from tests._secrets import TEST_KEY

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@attrs.frozen
class Forecast:
    city: str
    degrees: float
    unit: Unit


CALLS: list[tuple[str, Any]] = []


@chatdsl.tool
def get_weather(city: str, unit: Unit = Unit.CELSIUS) -> Forecast:
    """Get the current weather in a city.

    Args:
        city: The city's name.
        unit: The temperature unit.
    """
    CALLS.append(("get_weather", (city, unit)))
    if city == "Atlantis":
        raise ValueError("no weather station in Atlantis")
    return Forecast(city=city, degrees=21.5, unit=unit)


@chatdsl.tool
def local_time(city: str) -> str:
    """Get the local time in a city."""
    CALLS.append(("local_time", city))
    return f"12:00 in {city}"


@chatdsl.tool
def nothing() -> None:
    """Do nothing."""
    CALLS.append(("nothing", None))


@pytest.fixture
def server() -> Iterator[LocalServer]:
    CALLS.clear()
    with LocalServer(api_key=KEY) as running:
        yield running


@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    with Client(api_key=KEY, base_url=server.url, max_retries=0) as c:
        yield c


BASE = chatdsl.chat("mistral-small-latest").user("What is the weather in Paris?")


def _id(short: str) -> str:
    """A tool-call id as Mistral's API wants them (9 characters of ``[a-zA-Z0-9]``), made from *short*."""
    return short.ljust(9, "0")


def _calls(*calls: tuple[str, str, Any], content: str = "") -> Reply:
    """A reply whose assistant message makes *calls*: ``(id, name, arguments)``, arguments a dict or text.

    Each id is padded by :func:`_id` to the API's shape.
    """
    tool_calls = [
        {
            "id": _id(call_id),
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        for call_id, name, args in calls
    ]
    return Reply.json(_completion({"role": "assistant", "content": content, "tool_calls": tool_calls}, "tool_calls"))


def _text(text: str) -> Reply:
    return Reply.json(_completion({"role": "assistant", "content": text}, "stop"))


def _completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": "mistral-small-latest",
        "created": 1700000000,
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }


def _tool_messages(request: ChatCompletionRequest) -> list[ToolMessage]:
    return [m for m in request.messages if isinstance(m, ToolMessage)]


# ------------------------------------------------------------------------------------ rounds


def test_one_round(server: LocalServer, client: Client) -> None:
    server.enqueue(_calls(("c1", "get_weather", {"city": "Paris"})), _text("It is 21.5 degrees in Paris."))
    result = client.run_tools(BASE, [get_weather, local_time])
    assert isinstance(result, ToolRunResult)
    assert result.text() == "It is 21.5 degrees in Paris."
    assert result.rounds == 2
    assert CALLS == [("get_weather", ("Paris", Unit.CELSIUS))]
    first, second = server.requests
    assert first.json is not None
    assert [t["function"]["name"] for t in first.json["tools"]] == ["get_weather", "local_time"]
    assert first.json["tools"][0]["function"] == {
        "name": "get_weather",
        "parameters": get_weather.tool.function.parameters,
        "description": "Get the current weather in a city.",
    }
    assert first.json["tool_choice"] == "auto"
    assert second.json is not None
    assert [m["role"] for m in second.json["messages"]] == ["user", "assistant", "tool"]
    assert second.json["messages"][1]["tool_calls"][0]["id"] == _id("c1")
    assert second.json["messages"][2] == {
        "role": "tool",
        "content": json.dumps({"city": "Paris", "degrees": 21.5, "unit": "celsius"}),
        "tool_call_id": _id("c1"),
        "name": "get_weather",
    }
    assert result.request == second.request  # the transcript is exactly what was sent last
    assert result.conversation.messages[-1] == AssistantMessage(content="It is 21.5 degrees in Paris.")
    assert result.conversation.messages[:-1] == result.request.messages


def test_parallel_calls_all_run_in_order(server: LocalServer, client: Client) -> None:
    server.enqueue(
        _calls(
            ("a", "get_weather", {"city": "Oslo", "unit": "fahrenheit"}),
            ("b", "local_time", '{"city": "Oslo"}'),
            ("c", "get_weather", {"city": "Rome"}),
            ("d", "nothing", ""),
        ),
        _text("Done."),
    )
    result = client.run_tools(BASE, [get_weather, local_time, nothing])
    assert CALLS == [
        ("get_weather", ("Oslo", Unit.FAHRENHEIT)),
        ("local_time", "Oslo"),
        ("get_weather", ("Rome", Unit.CELSIUS)),
        ("nothing", None),
    ]
    messages = _tool_messages(result.request)
    assert [(m.tool_call_id, m.name) for m in messages] == [
        (_id("a"), "get_weather"),
        (_id("b"), "local_time"),
        (_id("c"), "get_weather"),
        (_id("d"), "nothing"),
    ]
    assert json.loads(messages[0].content) == {"city": "Oslo", "degrees": 21.5, "unit": "fahrenheit"}  # type: ignore[arg-type]
    assert messages[1].content == "12:00 in Oslo"
    assert messages[3].content == "null"
    assert len(server.requests) == 2


def test_several_rounds_then_an_answer(server: LocalServer, client: Client) -> None:
    server.enqueue(
        _calls(("r1", "local_time", {"city": "Lima"})),
        _calls(("r2", "get_weather", {"city": "Lima"})),
        _text("Noon and mild."),
    )
    result = client.run_tools(BASE, {"local_time": local_time, "get_weather": get_weather}, max_rounds=3)
    assert result.rounds == 3
    assert [m.tool_call_id for m in _tool_messages(result.request)] == [_id("r1"), _id("r2")]
    assert result.text() == "Noon and mild."


def test_a_tool_that_raises_is_reported_to_the_model(server: LocalServer, client: Client) -> None:
    server.enqueue(_calls(("x", "get_weather", {"city": "Atlantis"}), ("y", "local_time", {"city": "Nice"})))
    result = client.run_tools(BASE, [get_weather, local_time])  # then LocalServer's default answer
    first, second = _tool_messages(result.request)
    assert json.loads(first.content) == {"error": "ValueError: no weather station in Atlantis"}  # type: ignore[arg-type]
    assert second.content == "12:00 in Nice"  # the other call still ran
    assert result.text().startswith("The tool local_time returned")


def test_a_tool_that_raises_is_raised_on_request(server: LocalServer, client: Client) -> None:
    server.enqueue(_calls(("x", "get_weather", {"city": "Atlantis"})))
    with pytest.raises(ValueError, match="no weather station") as info:
        client.run_tools(BASE, [get_weather], on_error="raise")
    assert any("get_weather" in note and f"'{_id('x')}'" in note for note in info.value.__notes__)
    assert len(server.requests) == 1


def test_max_rounds_exceeded(server: LocalServer, client: Client) -> None:
    for index in range(3):
        server.enqueue(_calls((f"k{index}", "local_time", {"city": "Kyiv"})))
    with pytest.raises(ToolLoopError, match="after 2 rounds") as info:
        client.run_tools(BASE, [local_time], max_rounds=2)
    error = info.value
    assert len(server.requests) == 2
    assert CALLS == [("local_time", "Kyiv")]  # the last round's calls were not run
    assert error.request == server.requests[-1].request  # the conversation so far, as sent
    assert [m.tool_call_id for m in _tool_messages(error.request)] == [_id("k0")]
    assert error.response.assistant_message().tool_calls[0].id == _id("k1")
    server.enqueue(_text("Finally."))  # the caller can continue from the error's request
    assert client.run_tools(error.request, [local_time]).text() == "Finally."


def test_unknown_tool_is_reported(server: LocalServer, client: Client) -> None:
    server.enqueue(_calls(("u", "get_wether", {"city": "Paris"})), _text("Sorry."))
    result = client.run_tools(BASE, [get_weather, local_time])
    (message,) = _tool_messages(result.request)
    error = json.loads(message.content)["error"]  # type: ignore[arg-type]
    assert "'get_wether'" in error
    assert "get_weather, local_time" in error
    assert CALLS == []


def test_unknown_tool_is_raised_on_request(server: LocalServer, client: Client) -> None:
    server.enqueue(_calls(("u", "get_wether", {"city": "Paris"})))
    with pytest.raises(ToolLoopError, match="no tool named 'get_wether'") as info:
        client.run_tools(BASE, [get_weather], on_error="raise")
    assert info.value.request == server.requests[0].request


def test_bad_arguments_are_reported_or_raised(server: LocalServer, client: Client) -> None:
    server.enqueue(
        _calls(("p", "get_weather", {"city": "Paris", "unit": "kelvin"}), ("q", "get_weather", "{not json")),
        _text("Retrying later."),
    )
    result = client.run_tools(BASE, [get_weather])
    first, second = (json.loads(m.content)["error"] for m in _tool_messages(result.request))  # type: ignore[arg-type]
    assert first.startswith("invalid arguments for get_weather: unit:")
    assert "kelvin" in first
    assert "not valid JSON" in second
    assert "content:" not in first  # the model's own text is not echoed back
    assert CALLS == []
    server.enqueue(_calls(("p", "get_weather", {"town": "Paris"})))
    with pytest.raises(OutputError) as info:
        client.run_tools(BASE, [get_weather], on_error="raise")
    assert info.value.path == "town"


def test_forced_tool_choice_holds_for_the_first_request_only(server: LocalServer, client: Client) -> None:
    request = BASE.with_tools([get_weather.tool]).with_tool_choice("any")
    result = client.run_tools(request, [get_weather])  # LocalServer's default replies: a call, then a summary
    first, second = server.requests
    assert first.json is not None
    assert second.json is not None
    assert first.json["tool_choice"] == "any"
    assert second.json["tool_choice"] == "auto"
    assert len(CALLS) == 1
    assert result.text().startswith("The tool get_weather returned: ")


def test_mapping_names_win_and_plain_callables_need_definitions(server: LocalServer, client: Client) -> None:
    server.enqueue(_calls(("m", "weather", {"city": "Bern"}), ("n", "add", {"a": 1, "b": 2})), _text("ok"))
    request = BASE.with_tools(
        [
            Tool.from_function(get_weather.function, name="weather"),
            Tool.of("add", {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}),
        ]
    )
    result = client.run_tools(request, {"weather": get_weather, "add": lambda a, b: a + b})
    assert [m.content for m in _tool_messages(result.request)][1] == "3"
    assert server.requests[0].json is not None
    assert [t["function"]["name"] for t in server.requests[0].json["tools"]] == ["weather", "add"]
    with pytest.raises(ValidationError, match="no definition for 'add'"):
        client.run_tools(BASE, {"add": lambda a, b: a + b})


def test_structured_final_answer(server: LocalServer, client: Client) -> None:
    answer = {"city": "Paris", "degrees": 21.5, "unit": "celsius"}
    server.enqueue(_calls(("s", "get_weather", {"city": "Paris"})), _text(json.dumps(answer)))
    request = BASE.with_json_schema(Forecast)
    result = client.run_tools(request, [get_weather])
    assert result.output(Forecast) == Forecast(city="Paris", degrees=21.5, unit=Unit.CELSIUS)
    assert result.output() == answer
    assert server.requests[1].json is not None
    assert server.requests[1].json["response_format"]["json_schema"]["name"] == "Forecast"


def test_streaming_hands_over_the_text(server: LocalServer, client: Client) -> None:
    pieces: list[str] = []
    request = BASE.with_tools([local_time.tool]).with_tool_choice("any")
    result = client.run_tools(request, [local_time], on_text=pieces.append)
    assert result.rounds == 2
    assert len(pieces) > 1
    assert "".join(pieces) == result.text()
    assert result.text().startswith("The tool local_time returned: ")
    assert all(r.json is not None and r.json["stream"] is True for r in server.requests)


def test_a_broken_stream_raises(server: LocalServer, client: Client) -> None:
    server.enqueue(Reply.stream_cut(after=1))
    with pytest.raises(chatdsl.StreamError):
        client.run_tools(BASE, [local_time], on_text=lambda _: None)


# ------------------------------------------------------------------------------ arguments checked first


def _never(request: ChatCompletionRequest) -> Any:
    raise AssertionError("nothing should be sent")


@pytest.mark.parametrize(
    ("tools", "kwargs", "words"),
    [
        ([get_weather], {"max_rounds": 0}, "max_rounds"),
        ([get_weather], {"max_rounds": True}, "max_rounds"),
        ([get_weather], {"on_error": "ignore"}, "on_error"),
        ([get_weather.tool], {}, "carries no function"),
        ([get_weather, get_weather], {}, "twice"),
        ("get_weather", {}, "not a mapping"),
        ({"x": 3}, {}, "not callable"),
        ([lambda city: city], {}, "not a valid tool name"),
    ],
)
def test_bad_loop_arguments_fail_before_sending(tools: Any, kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        run_tools(_never, BASE, tools, **kwargs)


def test_a_response_without_choices_is_an_error() -> None:
    empty = chatdsl.ChatCompletionResponse()
    with pytest.raises(ToolLoopError, match="no choices"):
        run_tools(lambda _: empty, BASE, [get_weather])
