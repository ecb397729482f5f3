"""The client against an OpenAI-compatible server: ``Client(dialect="openai")`` and ``LocalServer(dialect="openai")``.

Real HTTP over 127.0.0.1: plain and streamed round trips (the trailing usage chunk folded into the
last chunk), tool calls split over deltas, refusals, errors in OpenAI's shape, the optional key,
and what a server of one dialect says to a client of the other.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import chatdsl
from chatdsl import (
    AuthenticationError,
    BadRequestError,
    ChatCompletionRequest,
    Client,
    CompletionChunk,
    Dialect,
    FinishReason,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    StreamError,
    Tool,
    UnprocessableEntityError,
    ValidationError,
)
from chatdsl.testing import LocalServer, Reply
from tests._secrets import TEST_KEY

pytestmark = [pytest.mark.chatdsl_server(dialect="openai"), pytest.mark.usefixtures("no_keys_in_the_environment")]

WEATHER = Tool.of(
    "get_weather",
    {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]},
)


@pytest.fixture
def server(chatdsl_server: LocalServer) -> LocalServer:
    assert chatdsl_server.dialect is Dialect.OPENAI
    return chatdsl_server


@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    with Client(base_url=server.url, dialect="openai", max_retries=0) as client:
        yield client


def question() -> ChatCompletionRequest:
    return chatdsl.chat("local-model").system("Be brief.").user("Where is Paris?").with_random_seed(7)


def modelled(value: Any) -> Any:
    """Return *value* without what the OpenAI wire adds beside chatdsl's model: every ``extra`` (OpenAI's
    ``system_fingerprint``, ``refusal: null``, usage details) and tool-call indexes (sent in deltas only)."""
    if isinstance(value, tuple):
        return tuple(modelled(item) for item in value)
    if not attrs.has(type(value)):
        return value
    changes = {a.name: modelled(getattr(value, a.name)) for a in attrs.fields(type(value)) if a.init}
    if "extra" in changes:
        changes["extra"] = {}
    if isinstance(value, chatdsl.ToolCall):
        changes["index"] = chatdsl.UNSET
    return attrs.evolve(value, **changes)


def events(server: LocalServer, request: ChatCompletionRequest) -> list[Any]:
    """The JSON events the server streams for *request*, as it would send them to this client."""
    body = request.streaming().to_dict(dialect="openai")
    recorded = chatdsl.testing.openai_request.request_from_openai(json.loads(json.dumps(body)))
    wire = chatdsl.testing.wire.WIRES[Dialect.OPENAI]
    chunks = server.default_chunks(recorded)
    return [wire.chunk_body(chunk, first=i == 0) for i, chunk in enumerate(chunks)]


# ------------------------------------------------------------------------------------------ settings


def test_the_key_is_optional_and_no_key_sends_no_authorization(server: LocalServer, client: Client) -> None:
    client.chat_completion(question())
    recorded = server.last_request
    assert recorded is not None
    assert recorded.authorization is None
    assert "authorization" not in recorded.headers
    assert repr(client) == (
        f"Client(base_url={server.url!r}, api_key=None, timeout={client.timeout!r}, max_retries=0, dialect='openai')"
    )


def test_a_netrc_entry_cannot_add_a_key(server: LocalServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password from-netrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with Client(base_url=server.url, dialect="openai") as client:
        client.chat_completion(question())
    assert server.last_request is not None
    assert server.last_request.authorization is None


def test_openais_own_host_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match=r"api_key: is not set; .*OPENAI_API_KEY"):
        Client(dialect="openai")
    monkeypatch.setenv("OPENAI_API_KEY", "")
    with pytest.raises(ValidationError, match=r"api_key: is empty; .*OPENAI_API_KEY"):
        Client(dialect="openai", base_url="https://api.openai.com")
    assert "api_key=None" in repr(Client("", dialect="openai"))  # an explicit "no key" is taken as it is


def test_the_key_falls_back_to_openai_api_key_for_openais_host_only(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    assert "api_key='***'" in repr(Client(dialect="openai"))  # https://api.openai.com: the variable is read
    with Client(base_url=server.url, dialect="openai") as client:  # any other host: it is not
        client.chat_completion(question())
    assert server.last_request is not None
    assert server.last_request.authorization is None
    with Client(TEST_KEY, base_url=server.url, dialect="openai") as keyed:
        keyed.chat_completion(question())
    assert server.last_request.authorization == f"Bearer {TEST_KEY}"
    with Client("", base_url=server.url, dialect="openai") as keyless:  # "" means none, the variable is not read
        keyless.chat_completion(question())
    assert server.last_request.authorization is None


@pytest.mark.chatdsl_server(dialect="openai", api_key=TEST_KEY)
def test_a_server_that_wants_a_key_says_so_in_openai_shape(server: LocalServer) -> None:
    client = Client(base_url=server.url, dialect="openai", max_retries=0)
    with client, pytest.raises(AuthenticationError) as info:
        client.chat_completion(question())
    error = info.value
    assert error.status_code == 401
    assert error.message == "Incorrect API key provided."
    assert error.body == {
        "error": {
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    with Client(TEST_KEY, base_url=server.url, dialect="openai") as client:
        assert client.chat_completion(question()).text() == "echo: Where is Paris?"


def test_base_urls_and_the_plain_http_rule() -> None:
    assert Client(TEST_KEY, dialect="openai").base_url == "https://api.openai.com"
    # no key, nothing secret travels: plain http to another machine is allowed (a vLLM box on the LAN)
    assert Client(base_url="http://10.0.0.5:8000", dialect="openai").base_url == "http://10.0.0.5:8000"
    with pytest.raises(ValidationError) as info:
        Client(TEST_KEY, base_url="http://10.0.0.5:8000", dialect="openai")
    assert "would send the API key unencrypted" in info.value.rule
    with pytest.raises(ValidationError) as info:
        Client(base_url="http://localhost:8000/v1", dialect="openai")
    assert info.value.path == "base_url"
    assert "pass 'http://localhost:8000'" in info.value.rule


def test_the_mistral_dialect_still_needs_a_key() -> None:
    with pytest.raises(ValidationError) as info:
        Client()
    assert info.value.path == "api_key"
    assert "MISTRAL_API_KEY" in info.value.rule
    with pytest.raises(ValidationError):
        Client("")
    with pytest.raises(ValidationError) as info:
        Client(TEST_KEY, dialect="gemini")
    assert info.value.path == "dialect"
    with pytest.raises(ValidationError) as info:
        Client(TEST_KEY, drop_unsupported="yes")  # type: ignore[arg-type]
    assert info.value.path == "drop_unsupported"


def test_with_options_keeps_or_changes_the_dialect(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(base_url=server.url, dialect="openai", drop_unsupported=True) as client:
        monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
        derived = client.with_options(max_retries=1)
        assert (derived.dialect, derived.drop_unsupported) == (Dialect.OPENAI, True)
        derived.chat_completion(question())
        assert server.last_request is not None
        assert server.last_request.authorization is None
        mistral = client.with_options(dialect="mistral", api_key=TEST_KEY, drop_unsupported=False)
        assert mistral.dialect is Dialect.MISTRAL
        with pytest.raises(BadRequestError) as info:  # an OpenAI server refuses Mistral's random_seed
            mistral.chat_completion(question())
        assert info.value.body["error"]["param"] == "random_seed"


# -------------------------------------------------------------------------------------- round trips


def test_a_plain_round_trip(server: LocalServer, client: Client) -> None:
    request = question().with_stop("END").with_n(2)
    response = client.chat_completion(request)
    recorded = server.last_request
    assert recorded is not None
    assert recorded.json == {
        "model": "local-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Paris?"}],
        "n": 2,
        "seed": 7,
        "stop": "END",
    }
    assert recorded.request == request
    assert modelled(response) == modelled(server.default_response(request))
    assert response.extra == {"system_fingerprint": "fp_chatdsl_local"}  # kept, not dropped
    assert [choice.message.text() for choice in response.choices] == ["echo: Where is Paris?"] * 2
    assert response.request_id == recorded.request_id  # from x-request-id: the server sends no other
    assert "mistral-correlation-id" not in (recorded.headers or {})
    assert response.rate_limit is not None
    assert response.rate_limit.remaining_requests == 119


def test_a_stream_folds_the_usage_chunk_into_its_last_chunk(server: LocalServer, client: Client) -> None:
    request = question()
    sent = events(server, request)
    assert sent[-1]["choices"] == []
    assert sent[-1]["usage"]["total_tokens"] > 0
    assert all("usage" not in event for event in sent[:-1])
    with client.chat_completion_stream(request) as stream:
        chunks = list(stream)
    assert server.last_request is not None
    assert server.last_request.json["stream_options"] == {"include_usage": True}
    assert len(chunks) == len(sent) - 1  # the usage-only chunk is not handed over
    assert all(chunk.choices for chunk in chunks)
    assert [chunk.is_last_chunk for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    assert [chunk.usage is not None for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    last = chunks[-1]
    assert last.choices[0].finish_reason is FinishReason.STOP
    assert modelled(last.usage) == server.default_response(request).usage
    assert last.total_latency is not None
    assert last.chunk_latency is not None
    assert "".join(chunk.text() for chunk in chunks) == "echo: Where is Paris?"
    final = stream.final_response()
    assert modelled(final) == modelled(client.chat_completion(request))
    assert final.latency == last.total_latency
    assert stream.completed


def test_a_stream_without_usage_ends_as_sent(server: LocalServer, client: Client) -> None:
    request = question().with_extra(stream_options={"include_usage": False})
    with client.chat_completion_stream(request) as stream:
        chunks = list(stream)
    assert chunks[-1].is_last_chunk
    assert chunks[-1].choices[0].finish_reason is FinishReason.STOP
    assert all(chunk.usage is None for chunk in chunks)
    assert stream.final_response().usage is None  # none reported: not zero


def test_n_choices_are_folded_once_all_have_finished(server: LocalServer, client: Client) -> None:
    request = question().with_n(2)
    with client.chat_completion_stream(request) as stream:
        chunks = list(stream)
    assert [c.is_last_chunk for c in chunks].count(True) == 1
    assert chunks[-1].usage is not None
    assert {c.choices[0].index for c in chunks if c.choices[0].finish_reason} == {0, 1}
    assert modelled(stream.final_response()) == modelled(client.chat_completion(request))


def test_tool_calls_split_over_deltas_are_merged(server: LocalServer, client: Client) -> None:
    request = question().with_tools([WEATHER]).with_tool_choice("any")
    sent = events(server, request)
    calls = [
        e["choices"][0]["delta"]["tool_calls"][0]
        for e in sent
        if e["choices"] and e["choices"][0]["delta"].get("tool_calls")
    ]
    call_id = calls[0]["id"]
    assert re.fullmatch(r"call_[a-zA-Z0-9]{24}", call_id)  # as OpenAI makes them
    assert calls[0] == {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert len(calls) > 2
    assert all(set(call) == {"index", "function"} and set(call["function"]) == {"arguments"} for call in calls[1:])
    with client.chat_completion_stream(request) as stream:
        chunks = list(stream)
    assert server.last_request is not None
    assert server.last_request.json["tool_choice"] == "required"
    final = stream.final_response()
    plain = client.chat_completion(request)
    assert modelled(final) == modelled(plain)
    [call] = plain.choices[0].message.tool_calls or ()
    assert (call.id, call.name, call.arguments()) == (call_id, "get_weather", {"city": "city", "days": 1})
    assert plain.choices[0].finish_reason is FinishReason.TOOL_CALLS
    assert plain.choices[0].message.content is chatdsl.UNSET  # OpenAI sends null beside tool calls
    assert chunks[-1].usage is not None


def test_the_tool_loop_runs_against_an_openai_server(server: LocalServer, client: Client) -> None:
    def get_weather(city: str, days: int = 1) -> str:
        return f"sunny in {city} for {days} day(s)"

    result = client.run_tools(question().with_tool_choice("any"), [get_weather], max_rounds=3)
    assert result.response.text() == "The tool get_weather returned: sunny in city for 1 day(s)"
    tool_message = server.requests[-1].json["messages"][-1]
    call_id = server.requests[-1].json["messages"][-2]["tool_calls"][0]["id"]
    assert tool_message == {"role": "tool", "content": "sunny in city for 1 day(s)", "tool_call_id": call_id}


# ----------------------------------------------------------------------------- OpenAI answer shapes


def openai_chunk(delta: dict[str, Any], finish: str | None = None, **top: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-x",
        "system_fingerprint": "fp_1",
        "service_tier": "default",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
        **top,
    }


def test_openai_and_llama_cpp_answers_parse_into_the_same_types(server: LocalServer, client: Client) -> None:
    body = {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-x",
        "system_fingerprint": "fp_1",
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "refusal": None, "annotations": []},
                "logprobs": {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]},
                "finish_reason": "content_filter",
            }
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 1,
            "total_tokens": 6,
            "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "timings": {"prompt_n": 5, "predicted_n": 1, "predicted_per_second": 42.0},  # llama.cpp's server
    }
    server.enqueue(Reply.json(body))
    response = client.chat_completion(question())
    assert response.text() == "Hi"
    assert response.choices[0].finish_reason == "content_filter"  # unknown reasons are kept as strings
    assert response.choices[0].refusal is None
    details = chatdsl.PromptTokensDetails(cached_tokens=2, extra={"audio_tokens": 0})
    assert response.usage is not None
    assert (response.usage.total_tokens, response.usage.prompt_tokens_details) == (6, details)
    assert response.usage.extra == {"completion_tokens_details": {"reasoning_tokens": 0}}
    written = response.to_dict()  # nothing lost: every key sent is written back
    assert all(written["choices"][0]["message"][k] == v for k, v in body["choices"][0]["message"].items())
    assert all(written[k] == v for k, v in body.items() if k not in ("usage", "choices"))
    assert (response.id, response.model) == ("chatcmpl-9", "gpt-x")


def test_a_refusal_is_kept_on_the_choice(server: LocalServer, client: Client) -> None:
    refused = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    server.enqueue(Reply.json({"id": "c", "choices": [{"index": 0, "message": refused, "finish_reason": "stop"}]}))
    response = client.chat_completion(question())
    assert response.choices[0].refusal == "I can't help with that."
    assert response.text() == ""
    assert response.to_dict()["choices"][0]["message"]["refusal"] == "I can't help with that."
    pieces = [
        openai_chunk({"role": "assistant", "content": None, "refusal": ""}),
        openai_chunk({"refusal": "I can't"}),
        openai_chunk({"refusal": " help."}),
        openai_chunk({}, "stop"),
        openai_chunk({}, choices=[], usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    ]
    server.enqueue(Reply.stream(pieces))
    with client.chat_completion_stream(question()) as stream:
        chunks = list(stream)
    assert [chunk.choices[0].refusal for chunk in chunks] == ["", "I can't", " help.", None]
    final = stream.final_response()
    assert final.choices[0].refusal == "I can't help."
    assert final.usage.total_tokens == 7
    assert chunks[-1].usage == final.usage


def test_tool_call_deltas_with_id_and_name_only_in_the_first_are_merged_by_index(
    server: LocalServer, client: Client
) -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    pieces = [
        openai_chunk(
            {
                "role": "assistant",
                "content": None,
                **call(0, id="call_a", type="function", function={"name": "f", "arguments": ""}),
            }
        ),
        openai_chunk(call(0, function={"arguments": '{"x":'})),
        openai_chunk(call(1, id="call_b", type="function", function={"name": "g", "arguments": "{}"})),
        openai_chunk(call(0, function={"arguments": " 1}"})),
        openai_chunk({}, "tool_calls"),
        openai_chunk({}, choices=[], usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
    ]
    server.enqueue(Reply.stream(pieces))
    with client.chat_completion_stream(question()) as stream:
        list(stream)
    calls = stream.final_response().choices[0].message.tool_calls or ()
    assert [(c.id, c.name, c.function.arguments) for c in calls] == [("call_a", "f", '{"x": 1}'), ("call_b", "g", "{}")]


def test_a_usage_chunk_that_does_not_follow_the_last_chunk_is_handed_over_as_it_is(
    server: LocalServer, client: Client
) -> None:
    pieces = [
        openai_chunk({"role": "assistant", "content": "a"}),
        openai_chunk({}, choices=[], usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
    ]
    server.enqueue(Reply.stream(pieces))  # no finish reason: nothing was marked last before it
    with client.chat_completion_stream(question()) as stream:
        chunks = list(stream)
    assert [(bool(c.choices), c.usage is not None) for c in chunks[:2]] == [(True, False), (False, True)]
    assert chunks[-1].is_last_chunk  # the usage chunk, or an end marker after it when [DONE] came in a later read
    assert stream.final_response().usage.total_tokens == 2


def test_a_stream_cut_after_the_last_chunk_still_hands_it_over_then_the_error(
    server: LocalServer, client: Client
) -> None:
    pieces = [openai_chunk({"role": "assistant", "content": "a"}), openai_chunk({}, "stop")]
    server.enqueue(Reply.stream(pieces, done=False))
    with client.chat_completion_stream(question()) as stream:
        chunks = list(stream)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-2].usage is None
    assert isinstance(chunks[-1].error, StreamError)
    assert "without [DONE]" in str(chunks[-1].error)


def test_an_openai_error_event_ends_the_stream(server: LocalServer, client: Client) -> None:
    error = {"error": {"message": "The server had an error", "type": "server_error", "param": None, "code": None}}
    server.enqueue(Reply.stream([openai_chunk({"content": "a"}), error]))
    with client.chat_completion_stream(question()) as stream:
        chunks = list(stream)
    assert isinstance(chunks[-1].error, StreamError)
    assert "The server had an error" in str(chunks[-1].error)


def test_reply_stream_error_is_spelled_as_an_openai_server_sends_it(server: LocalServer, client: Client) -> None:
    import requests

    server.enqueue(Reply.stream_error("The server had an error", after=1, type="server_error", code="503"))
    body = question().streaming().to_dict(dialect="openai")
    with requests.post(f"{server.url}/v1/chat/completions", json=body, timeout=10) as raw:
        events = [line[6:] for line in raw.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[1]) == {
        "error": {"message": "The server had an error", "type": "server_error", "param": None, "code": "503"}
    }
    reply = Reply.stream_error("The server had an error")
    assert reply.inject[0]["message"] == "The server had an error"  # a Mapping, as it was: Mistral's shape
    assert reply.inject[0]["object"] == "error"
    server.enqueue(Reply.stream_error("The server had an error", after=2))  # after the role chunk and one of text
    with client.chat_completion_stream(question()) as stream:
        chunks = list(stream)
    assert isinstance(chunks[-1].error, StreamError)
    assert "The server had an error" in str(chunks[-1].error)
    assert chunks[1].text() != ""


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "cls", "type_", "code"),
    [
        (400, BadRequestError, "invalid_request_error", None),
        (404, NotFoundError, "invalid_request_error", "model_not_found"),
        (429, RateLimitError, "requests", "rate_limit_exceeded"),
        (500, InternalServerError, "server_error", None),
    ],
)
def test_openai_error_bodies_map_to_the_same_exceptions(
    server: LocalServer, client: Client, status: int, cls: type[Exception], type_: str, code: str | None
) -> None:
    server.enqueue(Reply.error(status, "The model `x` does not exist", type=type_, code=code))
    with pytest.raises(cls) as info:
        client.chat_completion(question())
    error: Any = info.value
    request_id = server.last_request.request_id  # type: ignore[union-attr]
    assert str(error) == f"HTTP {status}: The model `x` does not exist (request id {request_id})"
    assert error.message == "The model `x` does not exist"
    assert error.status_code == status
    assert error.request_id == request_id
    assert error.body == {
        "error": {"message": "The model `x` does not exist", "type": type_, "param": None, "code": code}
    }


def test_an_unknown_path_is_an_openai_404(server: LocalServer) -> None:
    client = Client(base_url=server.url + "/proxy", dialect="openai", max_retries=0)
    with client, pytest.raises(NotFoundError) as info:
        client.chat_completion(question())
    assert info.value.message == "Invalid URL (POST /proxy/v1/chat/completions)"


def test_a_mistral_body_is_refused_by_an_openai_server_naming_the_field(server: LocalServer) -> None:
    with Client(TEST_KEY, base_url=server.url, max_retries=0) as mistral, pytest.raises(BadRequestError) as info:
        mistral.chat_completion(question().with_safe_prompt().assistant("Paris is", prefix=True))
    error = info.value
    assert error.status_code == 400
    assert error.body["error"]["param"] == "messages[2].prefix"  # the first problem; the message lists all
    assert "random_seed: is not a field of OpenAI's chat-completions API (OpenAI spells it seed)" in str(error)
    assert "safe_prompt: is not a field" in str(error)
    assert "messages[2].prefix: is not a field of OpenAI's assistant messages" in str(error)


def test_an_openai_body_is_refused_by_a_mistral_server() -> None:
    with LocalServer() as mistral_server:
        client = Client(base_url=mistral_server.url, dialect="openai", max_retries=0)
        with client, pytest.raises(UnprocessableEntityError) as info:
            client.chat_completion(question())
    assert "seed" in str(info.value)


def test_an_unsupported_field_is_refused_before_anything_is_sent(server: LocalServer, client: Client) -> None:
    with pytest.raises(ValidationError) as info:
        client.chat_completion(question().with_safe_prompt())
    assert info.value.errors[0][0] == "safe_prompt"
    assert "openai dialect" in info.value.errors[0][1]
    with pytest.raises(ValidationError):
        client.chat_completion_stream(question().with_prompt_mode("reasoning"))
    assert server.requests == []


def test_drop_unsupported_per_call_or_per_client(
    server: LocalServer, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    request = question().with_safe_prompt()
    with caplog.at_level(logging.INFO, logger="chatdsl"):
        assert client.chat_completion(request, drop_unsupported=True).text() == "echo: Where is Paris?"
    assert server.last_request is not None
    assert "safe_prompt" not in server.last_request.json
    assert any("left out safe_prompt" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    dropping = client.with_options(drop_unsupported=True)
    with dropping.chat_completion_stream(request) as stream:
        assert list(stream)[-1].usage is not None
    with pytest.raises(ValidationError):
        dropping.chat_completion(request, drop_unsupported=False)


def test_the_mistral_dialect_is_unchanged() -> None:
    with LocalServer() as mistral_server, Client(TEST_KEY, base_url=mistral_server.url) as client:
        request = question()
        with client.chat_completion_stream(request) as stream:
            chunks = list(stream)
        assert mistral_server.last_request is not None
        assert mistral_server.last_request.json == request.streaming().to_dict()
        assert chunks[-1].usage is not None
        assert chunks[-1].is_last_chunk
        assert stream.final_response() == client.chat_completion(request)


def test_local_server_default_chunks_join_to_its_default_response(server: LocalServer) -> None:
    recorded = chatdsl.testing.openai_request.request_from_openai(
        question().with_tools([WEATHER]).with_tool_choice("any").streaming().to_dict(dialect="openai")
    )
    chunks = server.default_chunks(recorded)
    assert isinstance(chunks[-1], CompletionChunk)
    assert chunks[-1].choices == ()
    assert chunks[-1].usage == server.default_response(recorded).usage


def test_a_dropped_prefix_leaves_a_request_an_openai_server_answers(server: LocalServer, client: Client) -> None:
    mistral_only = question().assistant("The capital is", prefix=True).with_safe_prompt()
    answer = client.chat_completion(mistral_only, drop_unsupported=True)
    assert answer.text()
    assert server.last_request is not None
    assert server.last_request.json["messages"][-1] == {"role": "assistant", "content": "The capital is"}


def test_a_base_url_ending_in_v1_is_refused_in_either_dialect() -> None:
    for dialect in ("mistral", "openai"):
        with pytest.raises(ValidationError, match="ends with /v1") as info:
            Client(TEST_KEY, base_url="http://127.0.0.1:8000/v1", dialect=dialect)
        assert info.value.path == "base_url"


# ------------------------------------------------------------------- sampling fields OpenAI lacks


def sampling() -> ChatCompletionRequest:
    return question().with_top_k(40).with_min_tokens(2).with_repetition_penalty(1.1).with_logprobs(top=2)


def test_sampling_fields_openai_lacks_reach_a_self_hosted_server(server: LocalServer, client: Client) -> None:
    client.chat_completion(sampling())
    recorded = server.last_request
    assert recorded is not None
    assert {k: recorded.json[k] for k in ("top_k", "min_tokens", "repetition_penalty", "logprobs", "top_logprobs")} == {
        "top_k": 40,
        "min_tokens": 2,
        "repetition_penalty": 1.1,
        "logprobs": True,
        "top_logprobs": 2,
    }


def test_a_client_of_openai_s_own_host_refuses_them_before_sending(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI's host is made the local server's (loopback only), so a refusal that failed would be seen."""
    monkeypatch.setitem(chatdsl.wire.dialects._BASE_URLS, Dialect.OPENAI, server.url)
    with Client(TEST_KEY, base_url=server.url, dialect="openai", max_retries=0) as client:
        with pytest.raises(ValidationError) as info:
            client.chat_completion(sampling())
        assert sorted(path for path, _ in info.value.errors) == ["min_tokens", "repetition_penalty", "top_k"]
        assert server.requests == []
        client.chat_completion(sampling(), drop_unsupported=True)
    recorded = server.last_request
    assert recorded is not None
    assert not {"top_k", "min_tokens", "repetition_penalty"} & set(recorded.json)
    assert recorded.json["top_logprobs"] == 2
