"""The wire format: exact shapes, round trips, "unset means not sent", and conformance to the official schema."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chatdsl
from chatdsl import (
    UNSET,
    AssistantMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChunk,
    FinishReason,
    FunctionCall,
    ImageURLChunk,
    PropertyDefinition,
    TextChunk,
    Tool,
    ToolCall,
    ToolChoice,
    UserMessage,
    ValidationError,
)
from chatdsl.wire.sse import ServerSentEvent, decode_chunk
from tests import strategies as s
from tests.spec import SDK_REQUEST, SDK_REQUEST_PATH, SDK_REQUEST_SCHEMA, SPEC, problems, validator

REQUEST = validator("ChatCompletionRequest")
RESPONSE = validator("ChatCompletionResponse", patched=True)
RESPONSE_AS_PUBLISHED = validator("ChatCompletionResponse")
CHUNK = validator("CompletionChunk")
CHOICE = validator("ChatCompletionChoice")
USAGE = validator("UsageInfo")

FIELDS = tuple(a.name for a in attrs.fields(ChatCompletionRequest))


def wire(request: ChatCompletionRequest) -> Any:
    """The body as the server receives it: through JSON text."""
    return json.loads(request.to_json())


def expected_keys(request: ChatCompletionRequest) -> set[str]:
    """The top-level keys a request must send: exactly its set fields, then its extras."""
    keys = {name for name in FIELDS if name != "extra" and getattr(request, name) is not UNSET}
    if not request.messages:
        keys.discard("messages")
    return keys | set(request.extra)


# ---------------------------------------------------------------------------------- round trips


@given(s.requests())
def test_from_dict_inverts_to_dict(request: ChatCompletionRequest) -> None:
    assert ChatCompletionRequest.from_dict(request.to_dict()) == request


@given(s.requests())
def test_from_json_inverts_to_json(request: ChatCompletionRequest) -> None:
    text = request.to_json()
    back = ChatCompletionRequest.from_json(text)
    assert back == request
    assert hash(back) == hash(request)
    assert ChatCompletionRequest.from_json(text.encode()) == request
    assert ChatCompletionRequest.from_json(request.to_json(indent=2)) == request


@given(s.requests())
def test_to_dict_is_stable_through_a_round_trip(request: ChatCompletionRequest) -> None:
    body = request.to_dict()
    assert ChatCompletionRequest.from_dict(body).to_dict() == body
    assert json.loads(request.to_json()) == body


@given(s.requests(with_extra=True))
def test_extras_round_trip_with_allow_extra(request: ChatCompletionRequest) -> None:
    body = request.to_dict()
    assert ChatCompletionRequest.from_dict(body, allow_extra=True) == request
    assert ChatCompletionRequest.from_json(request.to_json(), allow_extra=True) == request
    assert chatdsl.wire.converter.structure_request(body, allow_extra=True) == request


@given(s.requests(), st.dictionaries(s.extra_keys, s.json_values, min_size=1, max_size=2))
def test_strict_from_dict_refuses_extras_by_name(request: ChatCompletionRequest, extra: dict[str, Any]) -> None:
    body = request.with_extra(**extra).to_dict()
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.from_dict(body)
    assert {path for path, _ in info.value.errors} == set(extra)


@given(s.responses())
def test_responses_round_trip(response: ChatCompletionResponse) -> None:
    assert ChatCompletionResponse.from_dict(response.to_dict()) == response
    assert ChatCompletionResponse.from_json(response.to_json()) == response
    assert ChatCompletionResponse.from_dict(response.to_dict()).to_dict() == response.to_dict()


@given(s.chunks())
def test_chunks_round_trip(chunk: CompletionChunk) -> None:
    assert CompletionChunk.from_dict(chunk.to_dict()) == chunk
    assert CompletionChunk.from_json(chunk.to_json()) == chunk
    assert CompletionChunk.from_dict(chunk.to_dict()).to_dict() == chunk.to_dict()


@given(s.lossless_bodies(s.responses()))
def test_responses_keep_unknown_keys_at_every_level(body: dict[str, Any]) -> None:
    response = ChatCompletionResponse.from_dict(body)
    assert response.to_dict() == body
    assert ChatCompletionResponse.from_json(json.dumps(body)).to_dict() == body


@given(s.lossless_bodies(s.chunks()))
def test_chunks_keep_unknown_keys_at_every_level(body: dict[str, Any]) -> None:
    assert CompletionChunk.from_dict(body).to_dict() == body
    assert decode_chunk(ServerSentEvent(json.dumps(body))).to_dict() == body  # the streaming hot path


@given(s.responses(), s.json_objects)
def test_responses_keep_unknown_top_level_keys_in_extra(
    response: ChatCompletionResponse, noise: dict[str, Any]
) -> None:
    unknown = {f"x_{key}": value for key, value in noise.items()}
    read = ChatCompletionResponse.from_dict({**response.to_dict(), **unknown})
    assert read.extra == unknown
    assert attrs.evolve(read, extra={}) == response


# ------------------------------------------------------------------------- unset means not sent


@given(s.requests(with_extra=True))
def test_only_set_fields_are_sent(request: ChatCompletionRequest) -> None:
    body = wire(request)
    assert set(body) == expected_keys(request)
    assert all(body[key] is not None for key in body if key not in request.extra)


@given(s.messages)
def test_messages_send_their_role_and_only_their_set_fields(message: Any) -> None:
    body = wire(chatdsl.chat().add(message))["messages"][0]
    fields = {
        a.name for a in attrs.fields(type(message)) if a.name != "extra" and getattr(message, a.name) is not UNSET
    }
    assert body["role"] == message.role.value
    assert set(body) == fields | {"role"}
    assert None not in body.values()


def test_an_empty_template_sends_nothing() -> None:
    assert chatdsl.chat().to_dict() == {}
    assert chatdsl.chat().to_json() == "{}"
    assert ChatCompletionRequest().to_dict() == {}


def test_explicit_zero_false_and_empty_values_are_sent() -> None:
    request = (
        chatdsl.chat("m")
        .with_temperature(0)
        .with_random_seed(0)
        .with_parallel_tool_calls(False)
        .with_safe_prompt(False)
        .with_max_tokens(0)
        .with_top_p(0)
        .with_frequency_penalty(0)
        .with_presence_penalty(0)
        .with_streaming(False)
        .with_prompt_cache_key("")
        .with_metadata({})
        .with_tools([])
    )
    assert wire(request) == {
        "model": "m",
        "temperature": 0,
        "random_seed": 0,
        "parallel_tool_calls": False,
        "safe_prompt": False,
        "max_tokens": 0,
        "top_p": 0,
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "stream": False,
        "prompt_cache_key": "",
        "metadata": {},
        "tools": [],
        "tool_choice": "auto",
    }


def test_explicit_zero_survives_from_dict() -> None:
    body = {"temperature": 0, "random_seed": 0, "parallel_tool_calls": False, "safe_prompt": False}
    assert ChatCompletionRequest.from_dict(body).to_dict() == body


def test_null_in_a_body_means_unset() -> None:
    request = ChatCompletionRequest.from_dict({"model": "m", "temperature": None, "tools": None, "stop": None})
    assert request == chatdsl.chat("m")
    assert request.to_dict() == {"model": "m"}


# ---------------------------------------------------------------------------------- exact shapes


def test_content_parts_are_tagged_by_type() -> None:
    request = chatdsl.chat("m").user(
        [
            TextChunk(text="What is in this image?"),
            ImageURLChunk(url="https://example.com/cat.png"),
            ImageURLChunk(url="data:image/png;base64,iVBORw0=", detail="high"),
            chatdsl.DocumentURLChunk(document_url="https://example.com/a.pdf", document_name="a.pdf"),
            chatdsl.FileChunk(file_id="0b6f4f2a-7a8e-4a53-9d38-46e1b8d4b1a7"),
            chatdsl.ReferenceChunk(reference_ids=[1, 2]),
            chatdsl.AudioChunk(input_audio="UklGRg=="),
            chatdsl.ThinkChunk(
                thinking=[
                    TextChunk(text="hmm"),
                    chatdsl.ToolReferenceChunk(tool="web_search", title="Cats", url="https://cats.example"),
                ],
                closed=True,
            ),
        ]
    )
    assert wire(request)["messages"][0]["content"] == [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": "https://example.com/cat.png"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0=", "detail": "high"}},
        {"type": "document_url", "document_url": "https://example.com/a.pdf", "document_name": "a.pdf"},
        {"type": "file", "file_id": "0b6f4f2a-7a8e-4a53-9d38-46e1b8d4b1a7"},
        {"type": "reference", "reference_ids": [1, 2]},
        {"type": "input_audio", "input_audio": "UklGRg=="},
        {
            "type": "thinking",
            "thinking": [
                {"type": "text", "text": "hmm"},
                {"type": "tool_reference", "tool": "web_search", "title": "Cats", "url": "https://cats.example"},
            ],
            "closed": True,
        },
    ]


def test_a_tool_conversation_has_the_official_shape() -> None:
    weather = Tool.of(
        "get_weather",
        PropertyDefinition.object({"city": PropertyDefinition(type="string", description="City name")}),
        description="Current weather",
    )
    request = (
        chatdsl.chat("mistral-small-latest")
        .system("Be brief.")
        .user("Weather in Paris?")
        .assistant(
            tool_calls=[
                ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments={"city": "Paris"})),
                ToolCall(id="call_2", function=FunctionCall(name="get_weather", arguments='{"city": "Lyon"}')),
            ]
        )
        .tool("18 C", tool_call_id="call_1", name="get_weather")
        .with_tools([weather])
        .with_tool_choice(ToolChoice.named("get_weather"))
        .with_parallel_tool_calls(False)
    )
    assert wire(request) == {
        "model": "mistral-small-latest",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                    },
                ],
            },
            {"role": "tool", "content": "18 C", "tool_call_id": "call_1", "name": "get_weather"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string", "description": "City name"}},
                        "required": ["city"],
                    },
                    "description": "Current weather",
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    }


@pytest.mark.parametrize("mode", ["auto", "none", "any", "required"])
def test_tool_choice_modes_are_sent_as_strings(mode: str) -> None:
    assert wire(chatdsl.chat().with_tool_choice(mode))["tool_choice"] == mode


def test_response_formats_have_the_official_shape() -> None:
    assert wire(chatdsl.chat().with_response_text_format())["response_format"] == {"type": "text"}
    assert wire(chatdsl.chat().with_json_object())["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "title": "Book"}
    assert wire(chatdsl.chat().with_json_schema(schema, description="A book"))["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Book", "schema": schema, "description": "A book", "strict": True},
    }


def test_scalars_stop_prediction_and_enums_have_the_official_shape() -> None:
    request = (
        chatdsl.chat("m")
        .with_stop("END")
        .with_prediction("draft")
        .with_prompt_mode("reasoning")
        .with_reasoning_effort("high")
        .with_metadata({"user": {"id": 7, "tags": ["a"]}})
        .with_n(2)
    )
    assert wire(request) == {
        "model": "m",
        "stop": "END",
        "prediction": {"type": "content", "content": "draft"},
        "prompt_mode": "reasoning",
        "reasoning_effort": "high",
        "metadata": {"user": {"id": 7, "tags": ["a"]}},
        "n": 2,
    }
    assert wire(request.with_stop("a", "b"))["stop"] == ["a", "b"]


def test_extras_are_merged_into_the_body() -> None:
    request = chatdsl.chat("m").with_extra(x_custom=[{"block": True}]).with_extra(user="u1")
    assert wire(request) == {"model": "m", "x_custom": [{"block": True}], "user": "u1"}


def test_from_dict_accepts_the_official_alternative_shapes() -> None:
    """The wire allows a few spellings the builder never writes; they read as the same model."""
    request = ChatCompletionRequest.from_dict(
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
                {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
            ],
            "tools": [{"function": {"name": "f", "parameters": {}}}],
            "tool_choice": {"function": {"name": "f"}},
            "prediction": {"content": "x"},
        }
    )
    assert request.messages == (
        UserMessage(content=(ImageURLChunk(url="https://x/y.png"),)),
        AssistantMessage(tool_calls=(ToolCall(function=FunctionCall(name="f", arguments="{}")),)),
    )
    assert request.tools == (Tool.of("f"),)
    assert request.tool_choice == ToolChoice.named("f")
    assert request.prediction == chatdsl.Prediction(content="x")


def test_a_response_reads_from_the_official_example() -> None:
    body = {
        "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
        "object": "chat.completion",
        "model": "mistral-small-latest",
        "usage": {"prompt_tokens": 16, "completion_tokens": 34, "total_tokens": 50},
        "created": 1702256327,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris.", "tool_calls": None, "prefix": False},
                "finish_reason": "stop",
            }
        ],
    }
    response = ChatCompletionResponse.from_dict(body)
    assert response.text() == "Paris."
    assert response.choices[0].finish_reason is FinishReason.STOP
    assert response.created is not None
    assert int(response.created.timestamp()) == 1702256327
    assert response.usage.total_tokens == 50
    assert problems(RESPONSE, body) == []


# ----------------------------------------------------------------------------------- conformance


def test_the_schema_checker_is_live() -> None:
    """The validators reject what the official schema rejects (so the conformance tests can fail)."""
    good = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert problems(REQUEST, good) == []
    assert problems(REQUEST, {**good, "tempreature": 1})
    assert problems(REQUEST, {**good, "temperature": 2})
    assert problems(REQUEST, {"messages": good["messages"]})
    assert problems(REQUEST, {**good, "messages": [{"role": "user", "content": [{"type": "text", "txt": "x"}]}]})
    assert problems(REQUEST, {**good, "tool_choice": "sometimes"})


_YAML_REQUEST = SPEC["components"]["schemas"]["ChatCompletionRequest"]
NEWER_THAN_THE_YAML = tuple(
    name for name in attrs.fields_dict(ChatCompletionRequest) if name not in {*_YAML_REQUEST["properties"], "extra"}
)
"""Request fields the OpenAPI copy (July 2026) does not list yet; the SDK's schema does."""


def _as_of_the_yaml(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """Return *request* without what the OpenAPI copy cannot describe: newer fields and reasoning efforts."""
    request = request.without(*NEWER_THAN_THE_YAML)
    if request.reasoning_effort not in _YAML_REQUEST["properties"]["reasoning_effort"]["enum"]:
        request = request.without("reasoning_effort")
    return request


def test_the_fields_newer_than_the_yaml_are_the_current_request_fields() -> None:
    assert set(NEWER_THAN_THE_YAML) == {
        "top_k",
        "min_tokens",
        "repetition_penalty",
        "logprobs",
        "top_logprobs",
        "prompt_logprobs",
        "top_prompt_logprobs",
        "service_tier",
    }
    assert set(NEWER_THAN_THE_YAML) | set(_YAML_REQUEST["properties"]) == set(SDK_REQUEST_SCHEMA["properties"])


@given(s.complete_requests(known_enums=True))
def test_complete_requests_conform_to_the_official_schema(request: ChatCompletionRequest) -> None:
    assert problems(REQUEST, wire(_as_of_the_yaml(request))) == []


@given(s.requests(known_enums=True))
def test_every_request_conforms_once_model_and_messages_are_given(request: ChatCompletionRequest) -> None:
    """Conformance does not depend on completeness: only the two required keys are missing from a template."""
    body = wire(_as_of_the_yaml(request))
    body.setdefault("model", "m")
    body.setdefault("messages", [])
    assert problems(REQUEST, body) == []


def test_the_sdk_schema_checker_is_live() -> None:
    """The SDK's request schema refuses what it should (so the conformance tests below can fail)."""
    good = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert problems(SDK_REQUEST, good) == []
    assert problems(SDK_REQUEST, {**good, "top_k": 1, "service_tier": "standard_only", "reasoning_effort": "max"}) == []
    assert problems(SDK_REQUEST, {**good, "tempreature": 1})
    assert problems(SDK_REQUEST, {**good, "top_k": 1.5})
    assert problems(SDK_REQUEST, {**good, "top_k": {}})  # the SDK's Unset sentinel is not on the wire
    assert problems(SDK_REQUEST, {**good, "logprobs": "yes"})
    assert problems(SDK_REQUEST, {**good, "service_tier": "fast"})
    assert problems(SDK_REQUEST, {**good, "guardrails": [{"moderation_llm_v1": {"ignore_other_categories": 1}}]})
    assert problems(SDK_REQUEST, {"messages": good["messages"]})


@given(s.complete_requests(known_enums=True))
def test_complete_requests_conform_to_the_sdk_request_schema(request: ChatCompletionRequest) -> None:
    """Every field, the current ones included (guardrails, log probabilities, service tier, ...)."""
    assert problems(SDK_REQUEST, wire(request)) == []


@given(s.requests(known_enums=True))
def test_every_request_conforms_to_the_sdk_schema_once_model_and_messages_are_given(
    request: ChatCompletionRequest,
) -> None:
    body = wire(request)
    body.setdefault("model", "m")
    body.setdefault("messages", [])
    assert problems(SDK_REQUEST, body) == []


def test_the_sdk_schema_file_is_what_the_installed_sdk_generates() -> None:
    """``tests/data/mistral-sdk-chat-request.schema.json`` is regenerated, not edited (see tests/data/README.md)."""
    pytest.importorskip("mistralai")
    from tests.data.make_sdk_request_schema import text

    assert SDK_REQUEST_PATH.read_text(encoding="utf-8") == text()


def test_the_published_response_schema_requires_a_bogus_data_key() -> None:
    """Why responses are checked against a patched schema (see ``tests/spec.py``).

    The official ``ChatCompletionResponse`` requires ``data``, which is neither one of its properties
    nor ever sent by the server. If a newer copy of the spec drops it, this test tells us to drop the patch.
    """
    body = ChatCompletionResponse.from_dict({"id": "x", "model": "m", "created": 0, "usage": {}}).to_dict()
    assert problems(RESPONSE, body) == []
    assert problems(RESPONSE_AS_PUBLISHED, body) == ["<root>: 'data' is a required property"]
    required = SPEC["components"]["schemas"]["ChatCompletionResponse"]["allOf"][1]["required"]
    assert "data" in required
    assert "data" not in SPEC["components"]["schemas"]["ChatCompletionResponse"]["allOf"][1]["properties"]


_SPEC_CHOICE_REASONS = st.sampled_from(FinishReason)
_SPEC_STREAM_REASONS = st.none() | st.sampled_from([r for r in FinishReason if r is not FinishReason.MODEL_LENGTH])


@given(s.responses(finish_reason=_SPEC_CHOICE_REASONS, created=s.timestamps, usage=s.usage_infos, unknown_parts=False))
def test_responses_conform_to_the_official_schema(response: ChatCompletionResponse) -> None:
    """Responses the spec can describe: a ``created`` time and a known finish reason.

    ``to_dict`` keeps nulls (``created: null``, ``finish_reason: null``) for what the server left out;
    the spec has no null for those, so they are generated set here.
    """
    body = json.loads(response.to_json())
    assert problems(RESPONSE, body) == []
    assert problems(USAGE, body["usage"]) == []
    for choice in body["choices"]:
        assert problems(CHOICE, choice) == []


@given(s.chunks(finish_reason=_SPEC_STREAM_REASONS, created=s.timestamps, usage=s.usage_infos, unknown_parts=False))
def test_chunks_conform_to_the_official_schema(chunk: CompletionChunk) -> None:
    """Chunks the spec can describe: a ``created`` time, usage present, a stream finish reason or null."""
    assert problems(CHUNK, json.loads(chunk.to_json())) == []


def test_known_keys_sent_as_null_are_written_back() -> None:
    parts = [
        {"type": "document_url", "document_url": "https://x/d.pdf", "document_name": None},
        {"type": "image_url", "image_url": {"url": "https://x/i.png", "detail": None}},
        {
            "type": "thinking",
            "thinking": [{"type": "tool_reference", "tool": "web_search", "title": "t", "url": None}],
            "closed": None,
            "signature": None,
        },
    ]
    call = {"id": None, "type": "function", "index": None, "function": {"name": "f", "arguments": "{}"}}
    message = {"role": "assistant", "content": parts, "tool_calls": [call], "prefix": None, "refusal": None}
    body = {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "created": 1,
        "usage": None,
        "choices": [{"index": 0, "message": message, "finish_reason": None, "logprobs": None, "prompt_logprobs": None}],
    }
    assert ChatCompletionResponse.from_dict(body).to_dict() == body


def test_a_request_never_sends_the_extra_keys_read_from_a_response() -> None:
    body = {
        "id": "c",
        "model": "m",
        "created": 1,
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "hi", "annotations": []}],
                    "tool_calls": [
                        {"id": "a", "index": 0, "function": {"name": "f", "arguments": "{}", "x": 1}, "y": 2}
                    ],
                    "reasoning_content": "...",
                },
            }
        ],
    }
    message = ChatCompletionResponse.from_dict(body).assistant_message()
    assert message is not None
    assert message.extra == {"reasoning_content": "..."}
    sent = chatdsl.chat("m").user("q").add(message).to_dict()["messages"][-1]
    assert sent == {
        "role": "assistant",
        "content": [{"type": "text", "text": "hi"}],
        "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}, "index": 0}],
    }
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.from_dict({"messages": [{"role": "assistant", "content": "x", "extra": {"k": 1}}]})
    assert info.value.path == "messages[0].extra"


def _keys_kept(sent: Any, written: Any, path: str = "") -> list[str]:
    """The paths of keys *sent* has and *written* lacks, at every level."""
    if isinstance(sent, dict) and isinstance(written, dict):
        lost = [f"{path}.{key}" for key in sent if key not in written]
        return lost + [
            p for key in sent if key in written for p in _keys_kept(sent[key], written[key], f"{path}.{key}")
        ]
    if isinstance(sent, list) and isinstance(written, list) and len(sent) == len(written):
        return [p for i, (a, b) in enumerate(zip(sent, written, strict=True)) for p in _keys_kept(a, b, f"{path}[{i}]")]
    return []


@given(s.lossless_bodies(s.responses()).flatmap(s.with_nulls))
def test_no_key_sent_is_lost_even_as_null(body: dict[str, Any]) -> None:
    try:
        response = ChatCompletionResponse.from_dict(body)
    except ValidationError:
        return  # a null where a value is required: refused, not silently dropped
    assert _keys_kept(body, response.to_dict()) == []


def test_a_delta_without_tool_calls_has_no_key_where_a_message_has_null() -> None:
    chunk = CompletionChunk.from_dict({"id": "x", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
    assert "tool_calls" not in chunk.to_dict()["choices"][0]["delta"]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}, "index": 0}
    with_call = CompletionChunk.from_dict({"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    assert with_call.to_dict()["choices"][0]["delta"]["tool_calls"] == [call]
    response = ChatCompletionResponse.from_dict(
        {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
    )
    assert response.to_dict()["choices"][0]["message"]["tool_calls"] is None
