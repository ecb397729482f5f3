"""Reply.text, Reply.tool_call and Reply.tool_calls: one-line scripted answers, shaped by the server's dialect.

Every answer is read back through ``chatdsl.Client`` over loopback, plain and streamed, in both dialects.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatdsl
from chatdsl import Client, FunctionCall, ToolCall, UsageInfo, ValidationError, chat
from chatdsl.testing import LocalServer, Reply

DIALECT_IDS = {"mistral": re.compile(r"[a-zA-Z0-9]{9}"), "openai": re.compile(r"call_[a-zA-Z0-9]{24}")}
KEY = "sk-replies-test"


@pytest.fixture(params=["mistral", "openai"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[LocalServer, Client]]:
    dialect = request.param
    with (
        LocalServer(dialect=dialect) as server,
        Client(api_key=KEY, base_url=server.url, dialect=dialect, max_retries=0, timeout=10) as client,
    ):
        yield server, client


def ask(text: str = "what is the weather?") -> chatdsl.ChatCompletionRequest:
    return chat("mistral-small-latest").user(text)


def read(client: Client, request: chatdsl.ChatCompletionRequest, streamed: bool) -> chatdsl.ChatCompletionResponse:
    if streamed:
        with client.chat_completion_stream(request) as stream:
            for _ in stream:
                pass
            return stream.final_response()
    return client.chat_completion(request)


def raw_events(server: LocalServer, reply: Reply, body: dict[str, Any]) -> list[dict[str, Any]]:
    server.enqueue(reply)
    with requests.post(server.chat_completions_url, json=body, stream=True, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith(b"data: ")]
    assert lines[-1] == b"data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


# ------------------------------------------------------------------------------------ Reply.text


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_text_is_the_answer(served: tuple[LocalServer, Client], streamed: bool) -> None:
    server, client = served
    server.enqueue(Reply.text("It is sunny in Paris."))
    response = read(client, ask(), streamed)
    assert response.text() == "It is sunny in Paris."
    assert response.choices[0].finish_reason == "stop"
    # the usage is counted as for the default answers: words of the prompt and of the answer
    assert response.usage.prompt_tokens == 4
    assert response.usage.completion_tokens == 5
    assert response.model == "mistral-small-latest"
    assert server.default_response(ask()).id == response.id  # the dialect's id, as the default answer's


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_text_options(served: tuple[LocalServer, Client], streamed: bool) -> None:
    server, client = served
    usage = UsageInfo(prompt_tokens=7, completion_tokens=2, total_tokens=9)
    server.enqueue(Reply.text("cut sh", finish_reason="length", usage=usage, model="other-model"))
    response = read(client, ask(), streamed)  # the client asks OpenAI's streams for their usage
    assert response.text() == "cut sh"
    assert response.choices[0].finish_reason == "length"
    got = response.usage
    assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (7, 2, 9)
    assert response.model == "other-model"


@pytest.mark.parametrize("dialect", ["mistral", "openai"])
def test_text_streams_with_the_default_framing(dialect: str) -> None:
    """A scripted text comes as the default answer does: role first, one word per event, finish reason last."""
    body = {"model": "m", "messages": [{"role": "user", "content": "one two three"}], "stream": True}
    with LocalServer(dialect=dialect) as server:
        default = raw_events(server, Reply.default(), body)
        scripted = raw_events(server, Reply.text("echo: one two three"), body)
    assert scripted == default
    assert len(scripted) >= 4


def test_text_is_plain_for_a_plain_request() -> None:
    with LocalServer() as server:
        server.enqueue(Reply.text("hi there"))
        response = requests.post(
            server.chat_completions_url, json={"model": "m", "messages": [{"role": "user", "content": "x"}]}, timeout=10
        )
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["choices"][0]["message"] == {"role": "assistant", "content": "hi there", "tool_calls": None}


def test_empty_text_still_finishes_its_stream() -> None:
    with LocalServer() as server, Client(api_key=KEY, base_url=server.url, max_retries=0) as client:
        server.enqueue(Reply.text(""))
        response = read(client, ask(), streamed=True)
    assert response.text() == ""
    assert response.choices[0].finish_reason == "stop"


# ------------------------------------------------------------------------------------ tool calls


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_tool_call(served: tuple[LocalServer, Client], streamed: bool) -> None:
    server, client = served
    server.enqueue(Reply.tool_call("get_weather", {"city": "Paris", "days": 2}))
    response = read(client, ask(), streamed)
    message = response.assistant_message()
    assert message is not None
    (call,) = message.tool_calls
    assert call.name == "get_weather"
    assert call.arguments() == {"city": "Paris", "days": 2}
    assert DIALECT_IDS[server.dialect.value].fullmatch(call.id), call.id
    assert response.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_several_tool_calls_at_once(served: tuple[LocalServer, Client], streamed: bool) -> None:
    server, client = served
    given = ToolCall(id="abcDEF123", function=FunctionCall(name="local_time", arguments='{"zone": "UTC"}'))
    server.enqueue(
        Reply.tool_calls(("get_weather", {"city": "Paris"}), ("get_weather", '{"city": "Oslo"}', "Oslo12345"), given)
    )
    response = read(client, ask(), streamed)
    message = response.assistant_message()
    assert message is not None
    calls = message.tool_calls
    assert [(c.name, c.arguments()) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Oslo"}),
        ("local_time", {"zone": "UTC"}),
    ]
    assert DIALECT_IDS[server.dialect.value].fullmatch(calls[0].id), calls[0].id
    assert [c.id for c in calls[1:]] == ["Oslo12345", "abcDEF123"]


def test_tool_call_ids_differ_within_an_answer_and_across_rounds() -> None:
    with LocalServer() as server, Client(api_key=KEY, base_url=server.url, max_retries=0) as client:
        server.enqueue(Reply.tool_calls(("a", {}), ("b", {})))
        first = client.chat_completion(ask())
    message = first.assistant_message()
    assert message is not None
    ids = [c.id for c in message.tool_calls]
    assert len(set(ids)) == 2


def test_tool_call_with_id_and_content() -> None:
    with LocalServer() as server, Client(api_key=KEY, base_url=server.url, max_retries=0) as client:
        server.enqueue(Reply.tool_call("f", id="xyz987ABC", content="calling f"))
        response = read(client, ask(), streamed=True)
    message = response.assistant_message()
    assert message is not None
    assert message.text() == "calling f"
    (call,) = message.tool_calls
    assert (call.id, call.name, call.arguments()) == ("xyz987ABC", "f", {})


def _weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("dialect", ["mistral", "openai"])
def test_run_tools_driven_by_one_line_replies(dialect: str) -> None:
    with (
        LocalServer(dialect=dialect) as server,
        Client(api_key=KEY, base_url=server.url, dialect=dialect, max_retries=0) as client,
    ):
        server.enqueue(Reply.tool_call("_weather", {"city": "Paris"}), Reply.text("It is sunny in Paris."))
        result = client.run_tools(ask(), [_weather])
        assert result.text() == "It is sunny in Paris."
        assert result.rounds == 2
        second = server.requests[1].request
    assert second is not None
    call_id = second.messages[1].tool_calls[0].id
    assert DIALECT_IDS[dialect].fullmatch(call_id)
    tool_message = second.messages[2]
    assert isinstance(tool_message, chatdsl.ToolMessage)
    assert tool_message.tool_call_id == call_id
    assert tool_message.content == "sunny in Paris"


def test_scripted_answers_keep_fault_wrappers() -> None:
    """A scripted answer composes with the connection faults (here: trickled a byte at a time)."""
    with LocalServer() as server, Client(api_key=KEY, base_url=server.url, max_retries=0) as client:
        server.enqueue(Reply.trickle(Reply.text("slow but whole"), chunk_size=64, delay=0.0))
        assert read(client, ask(), streamed=True).text() == "slow but whole"


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("make", "field", "words"),
    [
        (lambda: Reply.text(3), "content", "3 is not a string"),  # type: ignore[arg-type]
        (lambda: Reply.text("x", finish_reason=""), "finish_reason", "not a non-empty string"),
        (lambda: Reply.text("x", usage={"a": 1}), "usage", "not a UsageInfo"),  # type: ignore[arg-type]
        (lambda: Reply.text("x", model=""), "model", "not a non-empty string"),
        (lambda: Reply.tool_call(""), "calls[0].name", "not a non-empty string"),
        (lambda: Reply.tool_call("f", "{oops"), "calls[0].arguments", "is not JSON text"),
        (lambda: Reply.tool_call("f", "[1]"), "calls[0].arguments", "not the JSON text of an object"),
        (lambda: Reply.tool_call("f", {"x": object()}), "calls[0].arguments", "not a JSON object"),
        (lambda: Reply.tool_call("f", 5), "calls[0].arguments", "not a mapping"),  # type: ignore[arg-type]
        (lambda: Reply.tool_call("f", id=""), "calls[0].id", "not a non-empty string"),
        (lambda: Reply.tool_calls(), "calls", "at least one tool call"),
        (lambda: Reply.tool_calls(("f", {}), "g"), "calls[1]", "is not a ToolCall"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_names_field_value_and_rule(make: Any, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        make()
    ((path, message),) = info.value.errors
    assert path == field
    assert words in message


def test_chunk_delay_is_validated() -> None:
    for bad in (-0.1, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ValidationError, match="chunk_delay"):
            LocalServer(chunk_delay=bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ chunk_delay


def _event_times(server: LocalServer, body: dict[str, Any]) -> list[float]:
    start = time.monotonic()
    times = []
    with requests.post(server.chat_completions_url, json=body, stream=True, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith(b"data: "):
                times.append(time.monotonic() - start)
    return times


def test_chunk_delay_paces_default_and_text_streams_only() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "a b"}], "stream": True}
    with LocalServer(chunk_delay=0.05) as server:
        paced = _event_times(server, body)  # role, "echo:", " a", " b", [DONE]: 5 events
        server.enqueue(Reply.text("x y"))
        scripted = _event_times(server, body)
    assert len(paced) == 5
    assert paced[-1] >= 4 * 0.05
    assert all(later - earlier >= 0.04 for earlier, later in itertools.pairwise(paced))
    assert len(scripted) == 4  # role, "x", " y", [DONE]
    assert scripted[-1] >= 3 * 0.05


def test_chunk_delay_leaves_scripted_streams_alone() -> None:
    """A scripted stream keeps its own delay (0 here): with a 30 s chunk_delay it would miss the 5 s timeout."""
    body = {"model": "m", "messages": [{"role": "user", "content": "a"}], "stream": True}
    with LocalServer(chunk_delay=30) as server:
        server.enqueue(Reply.stream([{"id": "1", "choices": []}]))
        with requests.post(server.chat_completions_url, json=body, stream=True, timeout=5) as response:
            lines = [line for line in response.iter_lines() if line]
    assert lines == [b'data: {"id": "1", "choices": []}', b"data: [DONE]"]


@pytest.mark.parametrize("dialect", ["mistral", "openai"])
def test_tool_call_streams_with_the_default_framing(dialect: str) -> None:
    """A scripted tool call streams as the default forced call does (same events, same id)."""
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "go"}],
        "tools": [tool],
        "tool_choice": "any" if dialect == "mistral" else "required",
        "stream": True,
    }
    with LocalServer(dialect=dialect) as server:
        default = raw_events(server, Reply.default(), body)
        scripted = raw_events(server, Reply.tool_call("f", {}), body)
    assert scripted == default
    if dialect == "mistral":  # the role, then the call whole with its finish reason: no empty text event between
        assert len(scripted) == 2
        assert scripted[1]["choices"][0]["finish_reason"] == "tool_calls"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(blacklist_categories=["Cs"]), max_size=40))
def test_any_text_round_trips_plain_and_streamed(text: str) -> None:
    with LocalServer() as server, Client(api_key=KEY, base_url=server.url, max_retries=0) as client:
        server.enqueue(Reply.text(text), Reply.text(text))
        assert read(client, ask(), streamed=False).text() == text
        assert read(client, ask(), streamed=True).text() == text
