"""chatdsl.testing.LocalServer over real sockets on 127.0.0.1: default replies, validation, scripts, faults.

Clients here are plain ``requests`` and a tiny raw-socket HTTP/1.1 reader (:func:`raw_post`) that
records each HTTP chunk with its arrival time and how the body ended — what a fault looks like on
the wire, independent of chatdsl's own client.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatdsl import (
    AssistantMessage,
    ChatCompletionChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChunk,
    FinishReason,
    FunctionCall,
    Tool,
    ToolCall,
    ToolChoice,
    UsageInfo,
    ValidationError,
    chat,
)
from chatdsl.testing import Cut, LocalServer, Pause, RecordedRequest, Reply
from tests import strategies as S

API_KEY = "sk-test-7f3a9c"
PATH = "/v1/chat/completions"
UNMET = "x-localserver-unmet-constraints"  # the header naming what a default JSON-schema answer could not meet


# ------------------------------------------------------------------------------------------ helpers


@dataclass
class Raw:
    """What a raw HTTP/1.1 client saw: status, headers, HTTP chunks (arrival time, bytes) and how it ended."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    body: bytes = b""
    end: str = ""  # "complete", "eof" (closed before the body was complete) or "reset"
    partial: bytes = b""  # bytes of an unfinished chunk / body when the connection ended early
    sent_at: float = 0.0
    head_at: float = 0.0

    @property
    def events(self) -> list[bytes]:
        return [data for _, data in self.chunks]

    def json(self) -> Any:
        return json.loads(self.body)


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def raw_post(
    server: LocalServer,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    path: str = PATH,
    method: str = "POST",
    timeout: float = 5.0,
) -> Raw:
    """Send one request on a fresh connection and read the answer byte by byte."""
    data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
    head = {"Host": "127.0.0.1", "Content-Type": "application/json", "Content-Length": str(len(data))}
    head.update(headers or {})
    request = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    raw = Raw()
    with socket.create_connection(server.address, timeout=timeout) as sock:
        raw.sent_at = time.monotonic()
        sock.sendall(request.encode() + data)
        reader = _Reader(sock)
        try:
            status_line = reader.line()
            raw.head_at = time.monotonic()
            raw.status = int(status_line.split()[1])
            while line := reader.line():
                name, _, value = line.decode("latin-1").partition(":")
                raw.headers[name.strip().lower()] = value.strip()
            if raw.headers.get("transfer-encoding") == "chunked":
                while True:
                    size = int(reader.line(), 16)
                    if size == 0:
                        reader.line()
                        break
                    chunk = reader.read(size)
                    reader.read(2)
                    raw.chunks.append((time.monotonic(), chunk))
                raw.body = b"".join(raw.events)
            else:
                raw.body = reader.read(int(raw.headers.get("content-length", "0")))
            raw.end = "complete"
        except EOFError:
            raw.end, raw.partial = "eof", reader.buf
        except ConnectionResetError:
            raw.end, raw.partial = "reset", reader.buf
    return raw


def post(server: LocalServer, body: Any, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", 5)
    headers = kwargs.pop("headers", {})
    return requests.post(server.chat_completions_url, json=body, headers=headers, **kwargs)


def sse_data(raw: Raw) -> list[str]:
    """The ``data:`` payloads of a stream whose events each came in their own HTTP chunk."""
    out = []
    for event in raw.events:
        text = event.decode()
        assert text.endswith("\n\n"), text
        assert text.startswith("data: "), text
        out.append(text[len("data: ") : -2])
    return out


def hello(text: str = "hello there world") -> ChatCompletionRequest:
    return chat("mistral-small-latest").user(text)


WEATHER = Tool.of(
    "get_weather",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 2},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
)
TIME = Tool.of("get_time", {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]})


@pytest.fixture
def server() -> Any:
    with LocalServer() as srv:
        yield srv


# ------------------------------------------------------------------------------------ default replies


def test_default_reply_echoes_the_last_user_message(server: LocalServer) -> None:
    request = chat("mistral-small-latest").system("be brief").user("first").assistant("ok").user("hello there world")
    response = post(server, request.to_dict())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "mistral-small-latest"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hello there world", "tool_calls": None},
            "finish_reason": "stop",
            "logprobs": None,
            "prompt_logprobs": None,
        }
    ]
    # whitespace-word counts: prompt "be brief" + "first" + "ok" + "hello there world", answer 4 words
    assert body["usage"]["prompt_tokens"] == 7
    assert body["usage"]["completion_tokens"] == 4
    assert body["usage"]["total_tokens"] == 11
    assert ChatCompletionResponse.from_dict(body) == server.default_response(request)


def test_every_response_has_unique_request_ids_and_rate_limit_headers(server: LocalServer) -> None:
    server.rate_limit_headers["x-ratelimit-remaining-req-minute"] = "41"
    seen = set()
    for body in (hello().to_dict(), {"model": "m"}, None):
        response = post(server, body)
        correlation = response.headers["mistral-correlation-id"]
        assert response.headers["x-request-id"] == correlation
        assert response.headers["x-ratelimit-remaining-req-minute"] == "41"
        assert response.headers["x-ratelimit-limit-tokens-minute"] == "500000"
        seen.add(correlation)
    assert len(seen) == 3
    assert [r.request_id for r in server.requests] == list(dict.fromkeys(r.request_id for r in server.requests))


def test_max_tokens_truncates_to_words_with_finish_reason_length(server: LocalServer) -> None:
    body = post(server, hello("one  two three four").with_max_tokens(3).to_dict()).json()
    assert body["choices"][0]["message"]["content"] == "echo: one  two"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    body = post(server, hello("one two").with_max_tokens(3).to_dict()).json()
    assert body["choices"][0]["message"]["content"] == "echo: one two"
    assert body["choices"][0]["finish_reason"] == "stop"
    body = post(server, hello("one two").with_max_tokens(0).to_dict()).json()
    assert body["choices"][0]["message"]["content"] == ""
    assert body["choices"][0]["finish_reason"] == "length"


def test_stop_sequences_and_n_choices(server: LocalServer) -> None:
    body = post(server, hello("alpha STOP beta").with_stop("STOP", "beta").with_n(2).to_dict()).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert {c["message"]["content"] for c in body["choices"]} == {"echo: alpha "}
    assert body["usage"]["completion_tokens"] == 4


def test_json_object_format_answers_a_json_object(server: LocalServer) -> None:
    body = post(server, hello("tell me").with_json_object().to_dict()).json()
    assert json.loads(body["choices"][0]["message"]["content"]) == {"echo": "tell me"}


RICH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}},
    "properties": {
        "name": {"type": "string", "minLength": 3, "maxLength": 5},
        "email": {"type": "string", "format": "email"},
        "when": {"type": "string", "format": "date-time"},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "even": {"type": "integer", "multipleOf": 2, "minimum": 3},
        "ok": {"type": "boolean"},
        "nothing": {"type": "null"},
        "maybe": {"type": ["string", "null"]},
        "kind": {"enum": ["a", "b"]},
        "fixed": {"const": 42},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "where": {"$ref": "#/$defs/point"},
        "either": {"anyOf": [{"type": "null"}, {"type": "integer", "maximum": -5}]},
        "both": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}]},
        "nested": {
            "type": "object",
            "properties": {"deep": {"type": "array", "items": {"$ref": "#/$defs/point"}}},
            "required": ["deep"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "tags", "nested"],
    "additionalProperties": False,
}


def test_json_schema_format_answers_an_instance_of_the_schema(server: LocalServer) -> None:
    body = post(server, hello().with_json_schema(RICH_SCHEMA, name="rich").to_dict()).json()
    instance = json.loads(body["choices"][0]["message"]["content"])
    validator = jsonschema.Draft202012Validator(RICH_SCHEMA, format_checker=jsonschema.FormatChecker())
    validator.validate(instance)
    assert set(instance) == set(RICH_SCHEMA["properties"])  # every property, not only the required ones


_leaf_schemas = st.one_of(
    st.just({"type": "string"}),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.sampled_from(["date-time", "date", "email", "uuid", "ipv4"]).map(lambda f: {"type": "string", "format": f}),
    st.tuples(st.integers(0, 6), st.integers(0, 6)).map(
        lambda t: {"type": "string", "minLength": t[0], "maxLength": t[0] + t[1]}
    ),
    st.tuples(st.integers(-50, 50), st.integers(0, 20), st.sampled_from(["", "min", "max", "both"])).map(
        lambda t: {
            "type": "integer",
            ("exclusiveMinimum" if t[2] in ("min", "both") else "minimum"): t[0],
            ("exclusiveMaximum" if t[2] in ("max", "both") else "maximum"): t[0] + t[1] + 2,
        }
    ),
    st.tuples(st.integers(1, 5), st.integers(-20, 20)).map(
        lambda t: {"type": "integer", "multipleOf": t[0], "minimum": t[1], "maximum": t[1] + 3 * t[0]}
    ),
    st.tuples(st.floats(-100, 100), st.floats(0.5, 50)).map(
        lambda t: {"type": "number", "exclusiveMinimum": t[0], "exclusiveMaximum": t[0] + t[1]}
    ),
    st.lists(st.one_of(st.integers(), st.text(max_size=4)), min_size=1, max_size=3, unique=True).map(
        lambda v: {"enum": v}
    ),
)


def _object_schema(children: Any) -> Any:
    return st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), children, max_size=4).flatmap(
        lambda props: (
            st.lists(st.sampled_from(sorted(props)), unique=True).map(
                lambda req: {"type": "object", "properties": props, "required": req, "additionalProperties": False}
            )
            if props
            else st.just({"type": "object"})
        )
    )


_schemas = st.recursive(
    _leaf_schemas,
    lambda children: st.one_of(
        _object_schema(children),
        st.tuples(children, st.integers(0, 3)).map(lambda t: {"type": "array", "items": t[0], "minItems": t[1]}),
        st.lists(children, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches}),
        children.map(lambda c: {"allOf": [c]}),
    ),
    max_leaves=8,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(schema=_object_schema(_schemas))
def test_json_schema_instances_validate_for_generated_schemas(schema: dict[str, Any]) -> None:
    server = LocalServer()  # default_response needs no running server
    answer = server.default_response(hello().with_json_schema(schema, name="s")).text()
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(json.loads(answer))


@pytest.mark.parametrize("choice", [ToolChoice.ANY, ToolChoice.REQUIRED, ToolChoice.named("get_weather")])
def test_a_forced_tool_choice_gives_a_tool_call(server: LocalServer, choice: ToolChoice) -> None:
    tools = [TIME, WEATHER] if choice.function == "get_weather" else [WEATHER, TIME]
    request = hello("weather in Paris?").with_tools(tools).with_tool_choice(choice)
    body = post(server, request.to_dict()).json()
    (choice_body,) = body["choices"]
    assert choice_body["finish_reason"] == "tool_calls"
    (call,) = choice_body["message"]["tool_calls"]
    assert re.fullmatch(r"[a-zA-Z0-9]{9}", call["id"]), call["id"]  # the API's rule for tool-call ids
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, WEATHER.function.parameters)
    assert set(arguments) == {"city", "unit", "days"}


def test_auto_tool_choice_answers_text_and_call_ids_count_earlier_calls(server: LocalServer) -> None:
    auto = hello().with_tools([WEATHER])
    assert post(server, auto.to_dict()).json()["choices"][0]["message"]["content"] == "echo: hello there world"
    first = post(server, auto.with_tool_choice("any").to_dict()).json()["choices"][0]["message"]["tool_calls"][0]
    earlier = ToolCall(id=first["id"], function=FunctionCall(name="get_time", arguments='{"zone": "UTC"}'))
    forced = (
        auto.assistant(tool_calls=[earlier])
        .tool("12:00", tool_call_id=first["id"])
        .user("and the weather?")
        .with_tool_choice("any")
    )
    response = post(server, forced.to_dict())
    assert response.status_code == 200, response.text  # the server's own ids pass its own rule
    call = response.json()["choices"][0]["message"]["tool_calls"][0]
    assert re.fullmatch(r"[a-zA-Z0-9]{9}", call["id"])
    assert call["id"] != first["id"]


def test_after_a_tool_message_the_answer_summarises_the_result(server: LocalServer) -> None:
    call = ToolCall(id="D681PevKs", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    request = (
        hello("weather?")
        .with_tools([WEATHER])
        .with_tool_choice("any")  # the tool result is answered in text even when a call is forced
        .assistant(tool_calls=[call])
        .tool("sunny, 21 C", tool_call_id="D681PevKs")
    )
    body = post(server, request.to_dict()).json()
    assert body["choices"][0]["message"]["content"] == "The tool get_weather returned: sunny, 21 C"
    assert body["choices"][0]["finish_reason"] == "stop"


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(request=S.complete_requests())
def test_any_complete_request_is_accepted_and_answered_consistently(
    server: LocalServer, request: ChatCompletionRequest
) -> None:
    plain = attrs.evolve(request, stream=False)
    response = post(server, plain.to_dict())
    assert response.status_code == 200, response.text
    parsed = ChatCompletionResponse.from_dict(response.json())
    assert parsed == server.default_response(plain)
    chunks = server.default_chunks(request)
    assert chunks[-1].usage == parsed.usage
    for choice in parsed.choices:
        deltas = [c.choices[0] for c in chunks if c.choices[0].index == choice.index]
        assert "".join(d.delta.text() for d in deltas) == choice.message.text()
        assert deltas[-1].finish_reason == choice.finish_reason


# ------------------------------------------------------------------------------------------ streaming


def test_stream_sends_one_event_per_http_chunk_ending_with_done(server: LocalServer) -> None:
    request = hello("one two three").streaming()
    raw = raw_post(server, request.to_dict())
    assert raw.status == 200
    assert raw.end == "complete"
    assert raw.headers["content-type"] == "text/event-stream; charset=utf-8"  # as the API's FastAPI sends it
    assert raw.headers["transfer-encoding"] == "chunked"
    data = sse_data(raw)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len(chunks) == 5  # the role, then "echo:", " one", " two", " three"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # as the API starts a stream
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, None, "stop"]
    assert [c["usage"] is not None for c in chunks] == [False, False, False, False, True]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "echo: one two three"
    assert {c["id"] for c in chunks} == {server.default_response(request).id}
    parsed = [CompletionChunk.from_dict(c) for c in chunks]
    assert [p.choices for p in parsed] == [p.choices for p in server.default_chunks(request)]


def test_streamed_tool_call_comes_whole_in_one_chunk(server: LocalServer) -> None:
    raw = raw_post(server, hello().with_tools([WEATHER]).with_tool_choice("any").streaming().to_dict())
    (role, event, done) = sse_data(raw)
    assert done == "[DONE]"
    assert json.loads(role)["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    choice = json.loads(event)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["delta"]["tool_calls"][0]["index"] == 0
    assert choice["delta"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_each_event_is_delivered_before_the_pause_that_follows_it(server: LocalServer) -> None:
    first = {"id": "a", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "x"}}]}
    server.enqueue(Reply.stream([first, Pause(0.6), "data: [DONE]\n\n"], done=False))
    raw = raw_post(server, hello().streaming().to_dict())
    (t1, one), (t2, two) = raw.chunks
    assert json.loads(one.decode()[6:]) == first
    assert two == b"data: [DONE]\n\n"
    assert t2 - t1 >= 0.4  # the first event did not wait for the second


def test_stream_delays_and_first_delay(server: LocalServer) -> None:
    server.enqueue(Reply.stream(["data: 1\n\n", "data: 2\n\n"], first_delay=0.4, delay=0.0, done=False))
    raw = raw_post(server, hello().to_dict())
    assert raw.events == [b"data: 1\n\n", b"data: 2\n\n"]
    assert raw.chunks[0][0] - raw.head_at >= 0.3


def test_stream_request_through_requests_library(server: LocalServer) -> None:
    with requests.post(server.chat_completions_url, json=hello("a b").streaming().to_dict(), stream=True) as response:
        text = b"".join(response.iter_content(None)).decode()
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert len(events) == 5  # the role, "echo:", " a", " b", [DONE]


# ------------------------------------------------------------------------------------ validation, auth


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            [{"loc": ["body", "messages", 0, "content"], "type": "value_error"}],
        ),
        (
            {"model": "m", "messages": [{"role": "user"}]},
            [{"loc": ["body", "messages", 0, "content"], "type": "missing"}],
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temprature": 1},
            [{"loc": ["body", "temprature"], "type": "extra_forbidden"}],
        ),
        (
            {"messages": []},
            [{"loc": ["body", "model"], "type": "value_error"}, {"loc": ["body", "messages"], "type": "value_error"}],
        ),
        ([1, 2], [{"loc": ["body"], "type": "value_error"}]),
    ],
)
def test_invalid_bodies_get_422_with_the_api_detail_shape(
    server: LocalServer, body: Any, expected: list[dict[str, Any]]
) -> None:
    response = post(server, body)
    assert response.status_code == 422
    error = response.json()  # Mistral wraps the validation details in its error object
    assert {k: v for k, v in error.items() if k != "message"} == {
        "object": "error",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    detail = error["message"]["detail"]
    assert [{"loc": d["loc"], "type": d["type"]} for d in detail] == expected
    assert all(isinstance(d["msg"], str) and d["msg"] for d in detail)
    recorded = server.last_request
    assert recorded is not None
    assert recorded.request is None
    assert recorded.error is not None


def test_malformed_json_gets_422_json_invalid(server: LocalServer) -> None:
    response = requests.post(server.chat_completions_url, data=b'{"model": ', timeout=5)
    assert response.status_code == 422
    assert response.json()["object"] == "error"
    (detail,) = response.json()["message"]["detail"]
    assert detail["type"] == "json_invalid"
    assert detail["loc"] == ["body", 10]
    assert server.last_request is not None
    assert server.last_request.json is None


def test_strict_false_lets_the_script_answer_anything() -> None:
    with LocalServer(strict=False) as srv:
        srv.handler = lambda rec: Reply.json({"got": rec.json})
        assert post(srv, {"not": "a request"}).json() == {"got": {"not": "a request"}}
        srv.handler = None
        assert post(srv, {"not": "a request"}).status_code == 422  # no request to derive a default from


def test_api_key_is_checked_before_anything_else() -> None:
    with LocalServer(api_key=API_KEY) as srv:
        srv.enqueue(Reply.json({"scripted": True}))
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
            response = post(srv, {"bad": "body"}, headers=headers)
            assert response.status_code == 401
            assert response.json() == {"message": "Unauthorized", "request_id": response.headers["x-request-id"]}
        assert srv.pending == 1  # refused requests do not consume the script
        ok = post(srv, hello().to_dict(), headers={"Authorization": f"Bearer {API_KEY}"})
        assert ok.json() == {"scripted": True}
        assert API_KEY not in repr(srv)
        assert API_KEY not in repr(srv.requests)
        assert srv.last_request is not None
        assert srv.last_request.authorization == f"Bearer {API_KEY}"
        assert srv.last_request.headers["AUTHORIZATION"] == f"Bearer {API_KEY}"


def test_unknown_path_and_wrong_method(server: LocalServer) -> None:
    assert requests.post(server.url + "/v1/nope", json={}, timeout=5).status_code == 404
    response = requests.get(server.chat_completions_url, timeout=5)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_chunked_request_bodies_are_read(server: LocalServer) -> None:
    body = hello("streamed upload").to_json().encode()
    response = requests.post(server.chat_completions_url, data=iter([body[:10], body[10:]]), timeout=5)
    assert response.json()["choices"][0]["message"]["content"] == "echo: streamed upload"


def raw_exchange(server: LocalServer, data: bytes, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send *data* on a new connection (keeping it open), read until the server closes; return status and bytes."""
    with socket.create_connection(server.address, timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            received += piece
    return int(received.split(b" ", 2)[1]), received


def chunked_head(path: str = PATH) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".encode() + (
        b"Transfer-Encoding: chunked\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("size_line", "status"),
    [
        (b"-1", 400),  # was read(-1): the whole connection read into memory, before any check
        (b"+10", 400),
        (b"0x10", 400),
        (b"1_0", 400),
        (b" ", 400),
        (b"zz", 400),
        (b"1" * 17, 400),  # more hex digits than any size needs
        (b"7fffffffffffffff", 413),  # a huge size is refused before a byte of it is read
        (b"2000000", 413),  # 32 MiB, over the 16 MiB limit
    ],
)
def test_a_bad_or_huge_chunk_size_is_refused_without_reading_the_body(
    server: LocalServer, size_line: bytes, status: int
) -> None:
    # The connection stays open with data still to come: the answer must not wait for it.
    code, received = raw_exchange(server, chunked_head() + size_line + b"\r\n" + b"x" * 1000, timeout=3)
    assert code == status
    assert b"Connection: close" in received or b"connection: close" in received.lower()
    assert server.requests == []


def test_the_size_limit_holds_across_chunks_and_for_every_framing(server: LocalServer) -> None:
    server.max_body_size = 1000
    chunks = b"258\r\n" + b"x" * 600 + b"\r\n" + b"258\r\n"  # 600 + 600 bytes announced
    assert raw_exchange(server, chunked_head() + chunks, timeout=3)[0] == 413
    head = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    assert raw_exchange(server, head + b"Content-Length: 1001\r\n\r\n", timeout=3)[0] == 413
    for length in (b"+5", b"1_0", b"-1", b"5 5", b"0x5"):
        assert raw_exchange(server, head + b"Content-Length: " + length + b"\r\n\r\n", timeout=3)[0] == 400
    two = head + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    assert raw_exchange(server, two, timeout=3)[0] == 400
    gzip = head + b"Transfer-Encoding: gzip\r\n\r\n"
    assert raw_exchange(server, gzip, timeout=3)[0] == 400
    short = chunked_head() + b"a\r\nabc"  # 10 announced, 3 sent, then the client closes its side
    with socket.create_connection(server.address, timeout=3) as sock:
        sock.sendall(short)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")
    assert server.requests == []
    body = hello("fine").to_json().encode()
    server.max_body_size = len(body)
    ok = chunked_head() + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    with socket.create_connection(server.address, timeout=3) as sock:
        sock.sendall(ok)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(("dialect", "status"), [("mistral", 422), ("openai", 400)])
def test_an_integer_too_long_for_python_is_answered_not_dropped(dialect: str, status: int) -> None:
    body = hello().to_json()[:-1] + ', "random_seed": ' + "9" * 5000 + "}"
    with LocalServer(dialect=dialect) as srv:
        url = srv.url + ("/v1/chat/completions")
        response = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
        assert response.status_code == status
        assert "digits" in response.text
        assert srv.last_request is not None
        assert srv.last_request.request is None


def test_refused_requests_are_not_recorded_and_their_bodies_not_kept() -> None:
    with LocalServer(api_key=API_KEY) as srv:
        big = {"model": "m", "messages": [{"role": "user", "content": "x" * (1 << 20)}]}
        for _ in range(3):
            assert post(srv, big).status_code == 401
        assert requests.post(srv.url + "/v1/nope", json={}, timeout=5).status_code == 401
        assert srv.requests == []
        assert srv.refused == 4
        assert "requests=0" in repr(srv)
        ok = post(srv, hello().to_dict(), headers={"Authorization": f"Bearer {API_KEY}"})
        assert ok.status_code == 200
        assert [r.index for r in srv.requests] == [0]


def test_max_recorded_keeps_only_the_latest_requests() -> None:
    with LocalServer(max_recorded=2) as srv:
        for word in ("a", "b", "c", "d"):
            post(srv, hello(word).to_dict())
        assert [(r.index, r.json["messages"][-1]["content"]) for r in srv.requests] == [(2, "c"), (3, "d")]
    with LocalServer(max_recorded=0) as srv:
        assert post(srv, hello().to_dict()).status_code == 200
        assert srv.requests == []
        assert srv.last_request is None
    for bad in (-1, 1.5, True):
        with pytest.raises(ValidationError, match=r"^max_recorded: .* is not None or a whole number of 0 or more$"):
            LocalServer(max_recorded=bad)  # type: ignore[arg-type]


def _connection_threads() -> int:
    return sum(t.name.startswith("chatdsl-localserver-conn-") for t in threading.enumerate())


def test_connections_past_max_connections_wait_for_a_free_one() -> None:
    one_request = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ".encode()
    body = hello().to_json().encode()
    request = one_request + f"{len(body)}\r\n\r\n".encode() + body
    before = _connection_threads()
    with LocalServer(max_connections=2) as srv:
        held = [socket.create_connection(srv.address, timeout=5) for _ in range(2)]
        for sock in held:  # served, then kept open (keep-alive): each holds a slot
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        waiting = socket.create_connection(srv.address, timeout=5)
        waiting.sendall(request)
        waiting.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiting.recv(65536)  # the third connection waits: no thread for it yet
        assert _connection_threads() - before == 2
        held[0].close()
        waiting.settimeout(5)
        assert waiting.recv(65536).startswith(b"HTTP/1.1 200 ")
        for sock in (held[1], waiting):
            sock.close()
    for bad in (0, -3, 2.0):
        with pytest.raises(ValidationError, match=r"^max_connections: .* is not a whole number of 1 or more$"):
            LocalServer(max_connections=bad)  # type: ignore[arg-type]


def test_stop_ends_a_server_waiting_for_a_free_connection() -> None:
    srv = LocalServer(max_connections=1).start()
    first = socket.create_connection(srv.address, timeout=5)
    second = socket.create_connection(srv.address, timeout=5)
    time.sleep(0.2)  # the accepting thread now waits for the first connection to end
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 3
    first.close()
    second.close()


# ---------------------------------------------------------------------------------------- scripting


def test_enqueued_replies_are_used_in_order_then_the_default(server: LocalServer) -> None:
    custom = ChatCompletionResponse(
        id="x1",
        model="m",
        created=datetime(2024, 1, 1, tzinfo=UTC),
        usage=UsageInfo(prompt_tokens=1, completion_tokens=1, total_tokens=2),
        choices=(ChatCompletionChoice(message=AssistantMessage(content="scripted"), finish_reason=FinishReason.STOP),),
    )
    server.enqueue(
        Reply.json(custom),
        Reply.json({"any": ["json"]}, status=201, headers={"X-Extra": "1", "x-request-id": None}),
        Reply.error(400, "bad things", code="3001"),
    )
    assert server.pending == 3
    first = post(server, hello().to_dict())
    assert ChatCompletionResponse.from_dict(first.json()) == custom
    second = post(server, hello().to_dict())
    assert (second.status_code, second.json(), second.headers["x-extra"]) == (201, {"any": ["json"]}, "1")
    assert "x-request-id" not in second.headers
    assert "mistral-correlation-id" in second.headers
    third = post(server, hello().to_dict())
    assert third.status_code == 400
    assert third.json() == {
        "object": "error",
        "message": "bad things",
        "type": "invalid_request_error",
        "param": None,
        "code": "3001",
    }
    assert server.pending == 0
    assert post(server, hello().to_dict()).json()["choices"][0]["message"]["content"] == "echo: hello there world"


def test_retry_after_as_seconds_or_http_date(server: LocalServer) -> None:
    when = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    server.enqueue(
        Reply.error(429, retry_after=2),
        Reply.error(503, "later", retry_after=when),
        Reply.error(429, retry_after=timedelta(milliseconds=1500)),
    )
    first = post(server, hello().to_dict())
    assert (first.status_code, first.headers["retry-after"]) == (429, "2")
    assert first.json()["message"] == "Too Many Requests"
    assert first.json()["type"] == "rate_limited"
    second = post(server, hello().to_dict())
    assert second.status_code == 503
    assert email.utils.parsedate_to_datetime(second.headers["retry-after"]) == when
    assert post(server, hello().to_dict()).headers["retry-after"] == "1.5"


def test_handler_answers_when_the_queue_is_empty(server: LocalServer) -> None:
    seen: list[RecordedRequest] = []

    def handler(recorded: RecordedRequest) -> Reply | None:
        seen.append(recorded)
        assert recorded.request is not None
        if recorded.request.messages[-1].content == "fail":
            return Reply.error(500, "as asked")
        return None  # the default reply

    server.handler = handler
    server.enqueue(Reply.json({"queued": 1}))
    assert post(server, hello("fail").to_dict()).json() == {"queued": 1}  # the queue comes first
    assert post(server, hello("fail").to_dict()).status_code == 500
    assert post(server, hello("fine").to_dict()).json()["choices"][0]["message"]["content"] == "echo: fine"
    assert [r.index for r in seen] == [1, 2]


def test_a_failing_handler_gives_500_and_is_recorded(server: LocalServer) -> None:
    def handler(recorded: RecordedRequest) -> Reply:
        raise RuntimeError("boom")

    server.handler = handler
    response = post(server, hello().to_dict())
    assert response.status_code == 500
    assert "boom" in response.json()["message"]
    assert [str(e) for e in server.errors] == ["boom"]


def test_reply_arguments_are_checked() -> None:
    with pytest.raises(ValidationError, match=r"^status: 1000 is not an HTTP status code \(100 to 599\)$") as info:
        Reply.error(1000)
    assert (info.value.path, info.value.rule) == ("status", "1000 is not an HTTP status code (100 to 599)")
    with pytest.raises(TypeError, match="not bytes, a ChatCompletionResponse or JSON"):
        Reply.json({"when": datetime.now()})
    with pytest.raises(ValidationError, match=r"^delay: -1 is not a number of seconds >= 0$"):
        Reply.stream(delay=-1)
    with pytest.raises(TypeError, match="chunks\\[1\\]"):
        Reply.stream(["data: x\n\n", 3.5])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match=r"^reply: a 'stream' reply has no body to cut; use stream_cut"):
        Reply.truncated(Reply.stream())
    with pytest.raises(TypeError, match="not a Reply"):
        LocalServer().enqueue({"a": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "path", "rule"),
    [
        (lambda: Reply.json(headers={"bad name": "x"}), "headers", "'bad name' is not a valid HTTP header name"),
        (lambda: Reply.json(headers={"X-A": "a\nb"}), "headers['X-A']", "'a\\nb' is not a single-line string or None"),
        (lambda: Reply.error(429, retry_after=-1), "retry_after", "-1 is not seconds >= 0, a datetime or a string"),
        (lambda: Reply.trickle(chunk_size=0), "chunk_size", "0 is not a positive integer"),
        (lambda: Reply.stream_cut(after=-2), "after", "-2 is not a count of events or bytes >= 0"),
        (lambda: Reply.truncated(at=-1), "at", "-1 is not a count of events or bytes >= 0"),
        (lambda: Reply.stall(-0.5), "stall_seconds", "-0.5 is not a number of seconds >= 0"),
        (lambda: Pause(-1), "seconds", "-1 is not a number of seconds >= 0"),
    ],
)
def test_bad_reply_arguments_raise_a_validation_error_naming_the_field(build: Any, path: str, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        build()
    assert (info.value.path, info.value.rule) == (path, rule)
    assert str(info.value) == f"{path}: {rule}"


# ------------------------------------------------------------------------------------------ faults


def test_stream_cut_after_n_events(server: LocalServer) -> None:
    server.enqueue(Reply.stream_cut(after=2))
    raw = raw_post(server, hello("a b c d").streaming().to_dict())
    assert raw.end == "eof"
    assert raw.partial == b""
    assert len(raw.events) == 2
    assert all(e.startswith(b"data: {") for e in raw.events)


def test_stream_cut_mid_event(server: LocalServer) -> None:
    server.enqueue(Reply.stream_cut(after=1, mid_event=True))
    raw = raw_post(server, hello("a b c").streaming().to_dict())
    assert raw.end == "eof"
    assert len(raw.events) == 2
    half = raw.events[1]
    assert half.startswith(b"data: {")
    assert not half.endswith(b"\n\n")


def test_stream_cut_with_reset(server: LocalServer) -> None:
    server.enqueue(Reply.stream_cut(after=1, reset=True))
    raw = raw_post(server, hello("a b c").streaming().to_dict())
    assert raw.end == "reset"
    assert len(raw.events) <= 1  # a reset may discard data the client has not read yet


def test_stream_malformed_event_then_the_rest(server: LocalServer) -> None:
    server.enqueue(Reply.stream_malformed(after=1))
    raw = raw_post(server, hello("a b").streaming().to_dict())
    data = sse_data(raw)
    assert raw.end == "complete"
    assert data[-1] == "[DONE]"
    with pytest.raises(json.JSONDecodeError):
        json.loads(data[1])
    assert len(data) == 6  # the role, 3 chunks, the malformed event, [DONE]


def test_stream_error_event(server: LocalServer) -> None:
    server.enqueue(Reply.stream_error("model overloaded", after=0, code="3000"))
    data = sse_data(raw_post(server, hello().streaming().to_dict()))
    assert json.loads(data[0]) == {
        "object": "error",
        "message": "model overloaded",
        "type": "internal_server_error",
        "param": None,
        "code": "3000",
    }


def test_stream_without_done(server: LocalServer) -> None:
    server.enqueue(Reply.stream(done=False))
    raw = raw_post(server, hello("a").streaming().to_dict())
    assert raw.end == "complete"
    data = sse_data(raw)
    assert "[DONE]" not in data
    assert json.loads(data[-1])["choices"][0]["finish_reason"] == "stop"


def test_stream_stall_pauses_between_events(server: LocalServer) -> None:
    server.enqueue(Reply.stream_stall(0.5, after=1))
    raw = raw_post(server, hello("a b").streaming().to_dict())
    assert raw.end == "complete"
    assert raw.chunks[1][0] - raw.chunks[0][0] >= 0.35


def test_explicit_cut_item_and_raw_bytes(server: LocalServer) -> None:
    server.enqueue(Reply.stream([": comment\r\n\r\n", b"data: x\r\n\r\n", Cut()]))
    raw = raw_post(server, hello().to_dict())
    assert raw.events == [b": comment\r\n\r\n", b"data: x\r\n\r\n"]
    assert raw.end == "eof"


@pytest.mark.parametrize("reset", [False, True])
def test_drop_closes_before_any_byte(server: LocalServer, reset: bool) -> None:
    server.enqueue(Reply.drop(reset=reset))
    raw = raw_post(server, hello().to_dict())
    assert raw.status == 0
    assert raw.partial == b""
    assert raw.end == ("reset" if reset else "eof")
    assert server.last_request is not None  # it was received and recorded


def test_stall_sends_headers_then_waits(server: LocalServer) -> None:
    server.enqueue(Reply.stall(0.6))
    raw = raw_post(server, hello().to_dict())
    assert raw.end == "complete"
    assert raw.json()["choices"][0]["message"]["content"] == "echo: hello there world"
    assert raw.head_at - raw.sent_at < 0.4
    assert time.monotonic() - raw.head_at >= 0.3


def test_truncated_body_is_cut_mid_json(server: LocalServer) -> None:
    server.enqueue(Reply.truncated(at=20))
    raw = raw_post(server, hello().to_dict())
    assert raw.end == "eof"
    full = json.dumps(server.default_response(hello()).to_dict()).encode()
    assert int(raw.headers["content-length"]) == len(full)
    assert raw.partial == full[:20]


def test_trickle_writes_a_few_bytes_at_a_time(server: LocalServer) -> None:
    server.enqueue(Reply.trickle(Reply.json({"text": "x" * 80}), chunk_size=20, delay=0.1))
    raw = raw_post(server, hello().to_dict())
    assert raw.json() == {"text": "x" * 80}
    assert time.monotonic() - raw.head_at >= 0.3  # 5 writes, 4 pauses of 0.1 s


def test_html_502_like_a_proxy(server: LocalServer) -> None:
    server.enqueue(Reply.html())
    response = post(server, hello().to_dict())
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert "<h1>502 Bad Gateway</h1>" in response.text


# ------------------------------------------------------------------------------------- recordings


def test_requests_are_recorded(server: LocalServer) -> None:
    request = hello()
    post(server, request.to_dict(), headers={"Authorization": "Bearer secret-value", "X-Trace": "t1"})
    post(server, {"model": "m"})
    first, second = server.requests
    assert (first.index, first.method, first.path) == (0, "POST", PATH)
    assert first.request == request
    assert first.json == request.to_dict()
    assert first.error is None
    assert json.loads(first.body) == request.to_dict()
    assert first.headers["x-trace"] == first.headers["X-Trace"] == "t1"
    assert "X-TRACE" in first.headers
    assert "secret-value" not in repr(first)
    assert "<redacted>" in repr(first)
    assert second.request is None
    assert second.error is not None
    assert second.json == {"model": "m"}
    assert server.last_request == second
    server.clear()
    assert server.requests == []
    assert server.last_request is None


def _send_three(session: requests.Session, server: LocalServer) -> None:
    for body in (hello().to_dict(), hello().streaming().to_dict(), hello().to_dict()):
        assert session.post(server.chat_completions_url, json=body, timeout=5).status_code == 200


def test_keep_alive_connections_are_reused_and_counted(server: LocalServer) -> None:
    with requests.Session() as session:
        _send_three(session, server)  # no Response outlives this call (see below)
        assert {r.connection_id for r in server.requests} == {1}
        assert server.connections_accepted == 1
        assert server.open_connections == 1
    # urllib3 2.x closes a pool's sockets when the pool is garbage-collected, and every Response
    # keeps its pool alive: Session.close() alone closes nothing while a Response is referenced.
    assert server.wait_idle(timeout=3)
    assert server.open_connections == 0


@pytest.mark.parametrize("reply", [Reply.stall(30), Reply.stream_stall(30), Reply.trickle(delay=30)])
def test_a_client_hanging_up_during_a_wait_frees_the_connection(server: LocalServer, reply: Reply) -> None:
    server.enqueue(reply)
    with pytest.raises(TimeoutError):
        raw_post(server, hello().streaming().to_dict(), timeout=0.3)  # read timeout, then the socket closes
    assert server.wait_idle(timeout=2)  # long before the 30 s are over


def test_faults_that_cut_close_the_connection(server: LocalServer) -> None:
    server.enqueue(Reply.stream_cut(after=1), Reply.truncated(), Reply.drop())
    for _ in range(3):
        raw_post(server, hello().to_dict())
    assert server.wait_idle(timeout=3)
    assert server.connections_accepted == 3


# ------------------------------------------------------------------------------------ life cycle


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("chatdsl-localserver")]


def test_stop_is_fast_and_leaves_nothing_behind() -> None:
    before = len(_server_threads())
    srv = LocalServer().start()
    url, address = srv.url, srv.address
    srv.enqueue(Reply.stall(30))
    idle = socket.create_connection(address)  # an idle keep-alive connection
    stalled = threading.Thread(target=raw_post, args=(srv, hello().to_dict()), kwargs={"timeout": 10})
    stalled.start()
    deadline = time.monotonic() + 3
    while srv.open_connections < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.open_connections == 2
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 3  # the 30 s stall was interrupted
    stalled.join(5)
    assert not stalled.is_alive()
    assert idle.recv(1) == b""  # the server closed the idle connection
    idle.close()
    assert srv.open_connections == 0
    assert not srv.running
    assert len(_server_threads()) == before
    with pytest.raises(requests.ConnectionError):
        requests.post(url + PATH, json={}, timeout=2)
    srv.stop()  # harmless twice
    with pytest.raises(RuntimeError, match="not running"):
        _ = srv.url


def test_server_can_be_restarted_and_used_without_with() -> None:
    srv = LocalServer()
    assert "stopped" in repr(srv)
    srv.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            srv.start()
        assert post(srv, hello().to_dict()).status_code == 200
    finally:
        srv.stop()
    with srv:
        assert post(srv, hello().to_dict()).status_code == 200
    assert len(srv.requests) == 2


# ---------------------------------------------------------------------------------------- fixture


def test_the_fixture_gives_a_running_server(chatdsl_server: LocalServer) -> None:
    assert chatdsl_server.running
    assert chatdsl_server.url.startswith("http://127.0.0.1:")
    assert post(chatdsl_server, hello().to_dict()).status_code == 200


@pytest.mark.chatdsl_server(api_key=API_KEY, model="local-model")
def test_the_fixture_takes_server_arguments_from_a_marker(chatdsl_server: LocalServer) -> None:
    assert post(chatdsl_server, hello().to_dict()).status_code == 401
    response = post(chatdsl_server, hello().to_dict(), headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.json()["model"] == "local-model"


def test_the_fixture_is_installed_through_the_entry_point(tmp_path: Path) -> None:
    test_file = tmp_path / "test_uses_fixture.py"
    test_file.write_text(
        textwrap.dedent(
            """
            import requests, threading

            SEEN = []

            def test_one(chatdsl_server):
                SEEN.append(chatdsl_server)
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                r = requests.post(chatdsl_server.url + "/v1/chat/completions", json=body, timeout=5)
                assert r.json()["choices"][0]["message"]["content"] == "echo: hi"

            def test_two():
                (server,) = SEEN
                assert not server.running
                assert not [t for t in threading.enumerate() if t.name.startswith("chatdsl-localserver")]
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


# ------------------------------------------------------------------------ the current request fields

_CURRENT_FIELDS: dict[str, Any] = {
    "top_k": 40,
    "min_tokens": 2,
    "repetition_penalty": 1.1,
    "logprobs": True,
    "top_logprobs": 3,
    "prompt_logprobs": True,
    "top_prompt_logprobs": 2,
    "guardrails": [{"block_on_error": True, "moderation_llm_v2": {"action": "block"}}],
    "service_tier": "standard_only",
    "reasoning_effort": "max",
}
_OPENAI_FIELDS: dict[str, Any] = {
    "top_k": 40,
    "min_tokens": 2,
    "repetition_penalty": 1.1,
    "logprobs": True,
    "top_logprobs": 3,
    "service_tier": "default",
    "reasoning_effort": "xhigh",
}


@pytest.mark.parametrize(
    ("dialect", "key", "value"),
    [("mistral", k, v) for k, v in _CURRENT_FIELDS.items()] + [("openai", k, v) for k, v in _OPENAI_FIELDS.items()],
)
def test_every_current_request_field_is_accepted_in_its_dialect(dialect: str, key: str, value: Any) -> None:
    """What chatdsl sends in each dialect, ``LocalServer`` of that dialect accepts and records."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], key: value}
    with LocalServer(dialect=dialect) as srv:
        response = post(srv, body)
        assert response.status_code == 200, response.text
        recorded = srv.last_request
    assert recorded is not None
    assert recorded.request is not None
    expected = "standard_only" if (key, value) == ("service_tier", "default") else value
    assert recorded.request.to_dict()[key] == expected


# ------------------------------------------------------------------- what passes locally passes in production


def _tool_turn(call_id: str) -> dict[str, Any]:
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ]
    return {"model": "mistral-small-latest", "messages": messages}


@pytest.mark.parametrize("call_id", ["call_0", "abc", "abcdefghij", "abcd-fghi", "38f04d9ea185424a8dc6ed9a88da5"])
def test_an_invented_tool_call_id_gets_the_apis_400(server: LocalServer, call_id: str) -> None:
    response = post(server, _tool_turn(call_id), headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 400
    assert response.json() == {
        "object": "error",
        "message": f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9.",
        "type": "invalid_function_call",
        "param": None,
        "code": "3280",
    }


def test_tool_call_ids_of_the_apis_shape_pass_in_each_dialect() -> None:
    with LocalServer() as mistral, LocalServer(dialect="openai") as openai:
        assert post(mistral, _tool_turn("D681PevKs")).status_code == 200
        assert post(openai, _tool_turn("call_0")).status_code == 200  # OpenAI has no such rule
        forced = hello().with_tools([WEATHER]).with_tool_choice("any").to_dict()
        (call,) = post(openai, forced).json()["choices"][0]["message"]["tool_calls"]
        assert re.fullmatch(r"call_[a-zA-Z0-9]{24}", call["id"])


def test_a_422_is_mistrals_error_object_with_each_details_input(server: LocalServer) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temprature": 0.5}
    response = post(server, body, headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 422
    (detail,) = response.json()["message"]["detail"]
    assert (detail["loc"], detail["input"]) == (["body", "temprature"], 0.5)


def test_openai_error_types_are_openais() -> None:
    with LocalServer(dialect="openai") as server:
        server.enqueue(Reply.error(429), Reply.error(500), Reply.error(503, "busy"), Reply.error(429, type="tokens"))
        errors = [post(server, hello().to_dict()).json()["error"] for _ in range(4)]
    assert [(e["type"], e["code"]) for e in errors] == [
        ("requests", "rate_limit_exceeded"),
        ("server_error", None),
        ("server_error", None),
        ("tokens", None),
    ]


def test_openai_stream_framing_is_openais() -> None:
    with LocalServer(dialect="openai") as server:
        raw = raw_post(server, hello("a b").streaming().to_dict())
        chunks = [json.loads(d) for d in sse_data(raw)[:-1]]
        asked = [
            json.loads(d)
            for d in sse_data(
                raw_post(server, {**hello("a b").streaming().to_dict(), "stream_options": {"include_usage": True}})
            )[:-1]
        ]
    assert raw.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert all(c["id"].startswith("chatcmpl-") for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert all("usage" not in c for c in chunks)  # only when asked for
    assert asked[-1]["choices"] == []
    assert asked[-1]["usage"]["total_tokens"] > 0


def test_openai_dialect_honours_max_completion_tokens() -> None:
    with LocalServer(dialect="openai") as server:
        body = {**hello("one two three").to_dict(), "max_completion_tokens": 2}
        (choice,) = post(server, body).json()["choices"]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("echo: one", "length")


def test_openai_dialect_accepts_the_sampling_fields_compatible_servers_take() -> None:
    extensions = {"top_k": 40, "min_tokens": 1, "repetition_penalty": 1.1}
    with LocalServer(dialect="openai") as server:
        response = post(server, {**hello().to_dict(), **extensions})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("dialect", ["mistral", "openai"])
def test_get_models_answers_in_each_dialect(dialect: str) -> None:
    with LocalServer(dialect=dialect, model="local-model") as server:
        post(server, chat("asked-model").user("hi").to_dict())
        response = requests.get(server.url + "/v1/models", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["local-model", "asked-model"]
    assert all(m["object"] == "model" for m in body["data"])
    if dialect == "mistral":
        assert body["data"][0]["capabilities"]["completion_chat"] is True
        assert body["data"][0]["type"] == "base"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
        {"type": "string", "pattern": "^[a-f0-9]{8}(-[a-f0-9]{4}){3}-[a-f0-9]{12}$"},
        {"type": "string", "pattern": "^(foo|bar)\\.[^\\s]+@\\w+$"},
        {"type": "string", "minLength": 12, "maxLength": 14, "pattern": "^x+$"},
        {"type": "string", "format": "date", "pattern": "^2024"},
        {"type": "string", "format": "email", "maxLength": 20},
        {"type": "string", "minLength": 40},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        {"type": "integer", "minimum": 7, "multipleOf": 5},
    ],
)
def test_json_schema_answer_meets_pattern_format_length_and_bounds(schema: dict[str, Any]) -> None:
    wrapped = {"type": "object", "properties": {"v": schema}, "required": ["v"]}
    answer = LocalServer().default_response(hello().with_json_schema(wrapped, name="s")).text()
    jsonschema.Draft202012Validator(wrapped, format_checker=jsonschema.FormatChecker()).validate(json.loads(answer))


def test_json_schema_answer_says_which_constraint_it_could_not_meet(caplog: pytest.LogCaptureFixture) -> None:
    wrapped = {"type": "object", "properties": {"v": {"type": "string", "pattern": "(?<=a)b"}}, "required": ["v"]}
    with caplog.at_level("WARNING", logger="chatdsl.testing"):
        LocalServer().default_response(hello().with_json_schema(wrapped, name="s"))
    assert "json_schema 's' does not meet its schema: /v:" in caplog.text
    assert "breaks pattern '(?<=a)b'" in caplog.text
    with LocalServer() as server:  # and the reply says so, in a header
        plain = post(server, hello().with_json_schema(wrapped, name="s").to_dict())
        streamed = raw_post(server, hello().with_json_schema(wrapped, name="s").streaming().to_dict())
        fine = post(server, hello().to_dict())
    assert "breaks pattern '(?<=a)b'" in plain.headers[UNMET]
    assert "breaks pattern '(?<=a)b'" in streamed.headers[UNMET]
    assert UNMET not in fine.headers


RECURSIVE_BOMB = {
    "type": "object",
    "properties": {"a": {"type": "array", "minItems": 100, "items": {"$ref": "#"}}},
    "required": ["a"],
}


def test_a_recursive_schema_with_a_big_min_items_is_answered_at_once(caplog: pytest.LogCaptureFixture) -> None:
    body = {
        **hello().to_dict(),
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": RECURSIVE_BOMB}},
    }
    assert len(json.dumps(body)) < 400  # a small request...
    with LocalServer() as server:
        started = time.monotonic()
        response = post(server, body, timeout=10)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 2.0  # ...took minutes and ever more memory before the budget
    content = response.json()["choices"][0]["message"]["content"]
    assert len(content) < 100_000
    assert "budget of 2000 values" in caplog.text or "nest deeper" in caplog.text


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=st.text(alphabet="ab^$.|()[]{}*+?\\dw0-9,-", max_size=16), min_length=st.integers(0, 40))
def test_any_pattern_gets_a_matching_string_or_a_note_saying_it_did_not(pattern: str, min_length: int) -> None:
    schema = {"type": "object", "properties": {"v": {"type": "string", "pattern": pattern, "minLength": min_length}}}
    notes: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = notes.append  # type: ignore[method-assign]
    logging.getLogger("chatdsl.testing").addHandler(handler)
    try:
        started = time.monotonic()
        answer = json.loads(LocalServer().default_response(hello().with_json_schema(schema, name="s")).text())["v"]
        assert time.monotonic() - started < 2.0
    finally:
        logging.getLogger("chatdsl.testing").removeHandler(handler)
    try:
        met = re.search(pattern, answer) is not None and len(answer) >= min_length
    except re.error:
        met = False
    assert met or any("/v:" in record.getMessage() for record in notes), (pattern, answer)
