"""The dialect mapping: one request, spelled for Mistral (as it is) and for OpenAI-compatible servers.

Checked both ways: every request valid for Mistral maps to a body that conforms to OpenAI's request
schema (``tests/data/openai-chat-request.schema.json``) or is refused with an error naming the field
and the dialect; with ``drop_unsupported=True`` it always maps; and reading the OpenAI body back
(what ``LocalServer(dialect="openai")`` does) gives the request again, up to the documented
normalisations.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import chatdsl
from chatdsl import (
    UNSET,
    AssistantMessage,
    AudioChunk,
    ChatCompletionRequest,
    Dialect,
    DocumentURLChunk,
    FileChunk,
    FunctionCall,
    ImageURLChunk,
    ReferenceChunk,
    SystemMessage,
    TextChunk,
    ThinkChunk,
    Tool,
    ToolCall,
    ToolChoice,
    ToolMessage,
    UserMessage,
    ValidationError,
)
from chatdsl.testing.openai_request import request_from_openai
from chatdsl.wire.dialects import OPENAI_REQUEST_FIELDS, SAMPLING_EXTENSIONS, to_wire
from tests import strategies as s

SCHEMA_PATH = Path(__file__).parents[1] / "data" / "openai-chat-request.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
OPENAI = Draft202012Validator(SCHEMA)


def problems(body: Any) -> list[str]:
    """Every way *body* breaks OpenAI's request schema, as ``path: message`` lines.

    The schema is OpenAI's own API; the sampling fields that self-hosted OpenAI-compatible servers
    add (``top_k``, ``min_tokens``, ``repetition_penalty``) are not checked against it.
    """
    if isinstance(body, dict):
        body = {key: value for key, value in body.items() if key not in SAMPLING_EXTENSIONS}
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in OPENAI.iter_errors(body)]


def base() -> ChatCompletionRequest:
    return chatdsl.chat("gpt-test").user("Hi")


def openai(request: ChatCompletionRequest, **kwargs: Any) -> dict[str, Any]:
    body = request.to_dict(dialect="openai", **kwargs)
    assert problems(body) == []
    return body


def refusal(request: ChatCompletionRequest) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        request.to_dict(dialect="openai")
    return info.value


# ------------------------------------------------------------------------------------------ Dialect


def test_dialect_is_a_string_enum_accepting_its_names() -> None:
    assert [d.value for d in Dialect] == ["mistral", "openai"]
    assert Dialect.coerce("openai") is Dialect.OPENAI
    assert Dialect.coerce(Dialect.MISTRAL) is Dialect.MISTRAL
    assert Dialect.OPENAI == "openai"
    assert Dialect.OPENAI.default_base_url == "https://api.openai.com"
    assert Dialect.MISTRAL.default_base_url == "https://api.mistral.ai"
    assert (Dialect.MISTRAL.api_key_env, Dialect.OPENAI.api_key_env) == ("MISTRAL_API_KEY", "OPENAI_API_KEY")


@pytest.mark.parametrize("value", ["OpenAI", "anthropic", "", None, 1])
def test_an_unknown_dialect_is_refused_naming_the_known_ones(value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Dialect.coerce(value)
    assert info.value.path == "dialect"
    assert "'mistral', 'openai'" in info.value.rule


@given(s.requests(with_extra=True))
def test_the_mistral_dialect_is_the_request_body_itself(request: ChatCompletionRequest) -> None:
    body = request.to_dict()
    assert to_wire(body, "mistral") is body
    assert request.to_dict(dialect=Dialect.MISTRAL) == body
    assert request.to_json(dialect="mistral") == request.to_json()


# ------------------------------------------------------------------------------- same meaning, respelled


def test_random_seed_becomes_seed_and_zero_is_sent() -> None:
    body = openai(base().with_random_seed(0))
    assert body["seed"] == 0
    assert "random_seed" not in body


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (ToolChoice.ANY, "required"),
        (ToolChoice.REQUIRED, "required"),
        (ToolChoice.AUTO, "auto"),
        (ToolChoice.NONE, "none"),
        (ToolChoice.named("f"), {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice_any_becomes_required(choice: ToolChoice, wire: Any) -> None:
    request = base().with_tools([Tool.of("f", {"type": "object"})]).with_tool_choice(choice)
    assert openai(request)["tool_choice"] == wire


def test_response_formats_have_the_same_shape() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    request = base().with_json_schema(schema, name="thing", description="A thing.")
    assert openai(request)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "description": "A thing.", "strict": True},
    }
    assert openai(base().with_json_object())["response_format"] == {"type": "json_object"}
    assert openai(base().with_response_text_format())["response_format"] == {"type": "text"}


def test_a_stream_asks_for_the_usage() -> None:
    assert openai(base().streaming())["stream_options"] == {"include_usage": True}
    assert "stream_options" not in openai(base())
    assert "stream_options" not in openai(base().streaming(False))
    mine = base().streaming().with_extra(stream_options={"include_obfuscation": False})
    assert openai(mine)["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    off = base().streaming().with_extra(stream_options={"include_usage": False})
    assert openai(off)["stream_options"] == {"include_usage": False}  # the caller's explicit choice stands


def test_user_parts_are_respelled_as_openai_spells_them() -> None:
    parts = [
        TextChunk(text="Look:"),
        ImageURLChunk(url="https://example.com/a.png"),
        ImageURLChunk(url="data:image/png;base64,AAAA", detail="low"),
        FileChunk(file_id="file-123"),
    ]
    body = openai(base().user(parts))
    assert body["messages"][-1]["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
        {"type": "file", "file": {"file_id": "file-123"}},
    ]


def test_tool_calls_get_string_arguments_and_lose_the_streaming_index() -> None:
    call = ToolCall(id="call_1", index=0, function=FunctionCall(name="f", arguments={"city": "Paris", "n": 2}))
    request = base().assistant(tool_calls=[call], prefix=False).tool('{"t": 21}', tool_call_id="call_1", name="f")
    assistant, tool = openai(request)["messages"][1:]
    assert assistant == {
        "role": "assistant",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"city":"Paris","n":2}'}}
        ],
    }
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris", "n": 2}
    assert tool == {"role": "tool", "content": '{"t": 21}', "tool_call_id": "call_1"}


def test_defaults_of_both_sides_and_empty_lists_are_left_out() -> None:
    request = base().with_safe_prompt(False).with_extra().user([])
    request = attrs.evolve(request, stop=())
    body = openai(request)
    assert "safe_prompt" not in body
    assert "stop" not in body  # OpenAI wants 1 to 4 sequences, or no field
    assert body["messages"][-1] == {"role": "user", "content": ""}  # no parts is no text


def test_fields_openai_has_too_are_sent_as_they_are() -> None:
    request = (
        base()
        .with_prediction("draft")
        .with_reasoning_effort("none")
        .with_prompt_cache_key("k1")
        .with_metadata({"run": "7"})
        .with_n(3)
        .with_parallel_tool_calls(False)
        .with_stop("END", "STOP")
        .with_max_tokens(5)
        .with_temperature(1.5)
        .with_top_p(0.5)
        .with_frequency_penalty(-2)
        .with_presence_penalty(2)
    )
    body = openai(request)
    mistral = request.to_dict()
    for key in (
        "prediction",
        "reasoning_effort",
        "prompt_cache_key",
        "metadata",
        "n",
        "parallel_tool_calls",
        "stop",
        "max_tokens",
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
    ):
        assert body[key] == mistral[key], key
    assert body["prediction"] == {"type": "content", "content": "draft"}


def test_extra_fields_are_sent_as_they_are() -> None:
    body = openai(base().with_extra(user="u-1", max_completion_tokens=9, store=True))
    assert (body["user"], body["max_completion_tokens"], body["store"]) == ("u-1", 9, True)


def test_the_mapping_changes_neither_the_request_nor_the_given_body() -> None:
    request = base().with_random_seed(3).assistant("x", prefix=False).user("y")
    body = request.to_dict()
    snapshot = json.loads(json.dumps(body))
    mapped = to_wire(body, "openai")
    assert body == snapshot
    assert mapped is not body
    assert request.to_dict() == snapshot


# ------------------------------------------------------------------------------------ no equivalent


def test_mistral_only_fields_are_refused_naming_field_and_dialect() -> None:
    error = refusal(base().with_safe_prompt().with_prompt_mode("reasoning"))
    assert [path for path, _ in error.errors] == ["prompt_mode", "safe_prompt"]
    for _, message in error.errors:
        assert "has no equivalent in the openai dialect" in message
        assert "drop_unsupported=True" in message
    assert "safe_prompt: True has no equivalent in the openai dialect (OpenAI's API injects no safety prompt)" in str(
        error
    )


def test_an_assistant_prefix_is_refused() -> None:
    error = refusal(base().assistant("Once upon", prefix=True))
    assert error.errors == (
        (
            "messages[1].prefix",
            "True has no equivalent in the openai dialect (OpenAI cannot continue a prefix message); "
            "leave it out, or pass drop_unsupported=True",
        ),
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (UserMessage(content=(DocumentURLChunk(document_url="https://e.com/a.pdf"),)), "no document-URL content part"),
        (UserMessage(content=(ReferenceChunk(reference_ids=(1,)),)), "no reference content part"),
        (UserMessage(content=(AudioChunk(input_audio="UklGRg=="),)), "needs base64 data and its format"),
        (UserMessage(content=(ThinkChunk(thinking=(TextChunk(text="hm"),)),)), "no thinking parts"),
        (SystemMessage(content=(ThinkChunk(thinking=()),)), "system messages take only text parts"),
        (ToolMessage(content=(ImageURLChunk(url="https://e.com/i.png"),), tool_call_id="c"), "tool messages take"),
        (AssistantMessage(content=(FileChunk(file_id="f"),)), "assistant messages take only text parts"),
    ],
)
def test_content_parts_openai_lacks_are_refused(message: Any, reason: str) -> None:
    conversation = [AssistantMessage(tool_calls=(ToolCall(id="c", function=FunctionCall(name="f", arguments="")),))]
    request = base().add(*conversation, message).user("go on")
    error = refusal(request)
    assert error.path == "messages[2].content[0]"
    assert reason in error.rule
    assert "openai dialect" in error.rule
    dropped = openai(request, drop_unsupported=True)
    assert dropped["messages"][2]["content"] == ""


def test_metadata_values_must_be_strings() -> None:
    error = refusal(base().with_metadata({"run": 7, "ok": "yes", "tag.s": ["a"]}))
    assert [path for path, _ in error.errors] == ["metadata.run", "metadata['tag.s']"]
    assert "OpenAI's metadata values are strings" in error.rule
    assert openai(base().with_metadata({"run": 7, "ok": "yes"}), drop_unsupported=True)["metadata"] == {"ok": "yes"}


def test_every_problem_is_reported_at_once() -> None:
    request = (
        base()
        .with_safe_prompt()
        .user([TextChunk(text="a"), DocumentURLChunk(document_url="https://e.com/d.pdf")])
        .assistant("so", prefix=True)
    )
    assert [path for path, _ in refusal(request).errors] == [
        "messages[1].content[1]",
        "messages[2].prefix",
        "safe_prompt",
    ]


def test_drop_unsupported_leaves_fields_out_and_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    request = (
        base()
        .with_safe_prompt()
        .with_prompt_mode("reasoning")
        .user([TextChunk(text="a"), DocumentURLChunk(document_url="https://e.com/d.pdf")])
        .assistant("so", prefix=True)
    )
    with caplog.at_level(logging.INFO, logger="chatdsl"):
        body = openai(request, drop_unsupported=True)
    assert "safe_prompt" not in body
    assert "prompt_mode" not in body
    assert body["messages"][1]["content"] == [{"type": "text", "text": "a"}]
    assert body["messages"][2] == {"role": "assistant", "content": "so"}
    [record] = [r for r in caplog.records if r.name == "chatdsl"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "openai dialect: left out messages[1].content[1], messages[2].prefix, prompt_mode, safe_prompt "
        "(no equivalent; drop_unsupported=True)"
    )


def test_nothing_is_logged_when_nothing_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="chatdsl"):
        openai(base().with_random_seed(1), drop_unsupported=True)
    assert [r for r in caplog.records if r.name == "chatdsl"] == []


def test_a_tool_call_without_id_cannot_be_sent_even_when_dropping() -> None:
    request = base().assistant(tool_calls=[ToolCall(function=FunctionCall(name="f", arguments="{}"))]).user("and?")
    for drop in (False, True):
        with pytest.raises(ValidationError) as info:
            request.to_dict(dialect="openai", drop_unsupported=drop)
        assert info.value.errors == (
            ("messages[1].tool_calls[0].id", "is required by the openai dialect (tool results answer a call id)"),
        )


def test_an_extra_seed_beside_random_seed_is_a_conflict() -> None:
    with pytest.raises(ValidationError) as info:
        base().with_random_seed(1).with_extra(seed=2).to_dict(dialect="openai")
    assert info.value.path == "random_seed"
    assert "extra field 'seed'" in info.value.rule


def test_openai_size_limits_are_left_to_the_server() -> None:
    """vLLM and llama.cpp take more than OpenAI's 4 stop sequences or 128 choices: the server decides."""
    request = base().with_stop("a", "b", "c", "d", "e").with_n(200)
    body = request.to_dict(dialect="openai")
    assert body["stop"] == ["a", "b", "c", "d", "e"]
    assert body["n"] == 200
    assert sorted(problems(body)) == [
        "n: 200 is greater than the maximum of 128",
        "stop: ['a', 'b', 'c', 'd', 'e'] is not valid under any of the given schemas",
    ]


# ---------------------------------------------------------------------------------------- properties

_REFUSED_AT = re.compile(
    r"^(safe_prompt|prompt_mode|prompt_logprobs|top_prompt_logprobs|guardrails|reasoning_effort|top_k|min_tokens|"
    r"repetition_penalty|metadata(\.|\[).*|messages\[(\d+)\]\.(prefix|content\[(\d+)\]|tool_calls\[\d+\]\.id))$"
)


def _justified(request: ChatCompletionRequest, path: str, message: str) -> bool:
    """Whether *path* is one of the documented refusals, and the request holds what it names."""
    found = _REFUSED_AT.match(path)
    if found is None or "openai dialect" not in message:
        return False
    if found.group(1) == "reasoning_effort":
        return request.reasoning_effort == "max"
    if found.group(1) in SAMPLING_EXTENSIONS:
        return "api.openai.com" in message
    if found.group(3) is None:
        return True
    message_ = request.messages[int(found.group(3))]
    if found.group(5) is None:
        return True
    part = message_.content[int(found.group(5))]
    allowed = (TextChunk, ImageURLChunk, FileChunk) if isinstance(message_, UserMessage) else (TextChunk,)
    return not isinstance(part, allowed)


@given(s.complete_requests(known_enums=True), st.booleans())
def test_every_mistral_request_maps_to_a_valid_openai_body_or_a_named_refusal(
    request: ChatCompletionRequest, openai_service: bool
) -> None:
    refused: tuple[tuple[str, str], ...] = ()
    try:
        body = to_wire(request.to_dict(), "openai", openai_service=openai_service)
    except ValidationError as exc:
        refused = exc.errors
    else:
        assert problems(body) == []
    for path, message in refused:
        assert _justified(request, path, message), (path, message)


@given(s.complete_requests(known_enums=True))
def test_with_drop_unsupported_every_mistral_request_maps_to_a_valid_openai_body(
    request: ChatCompletionRequest,
) -> None:
    body = request.to_dict(dialect="openai", drop_unsupported=True)
    assert problems(body) == []
    assert set(body) <= OPENAI_REQUEST_FIELDS | SAMPLING_EXTENSIONS
    to_openai_service = to_wire(request.to_dict(), "openai", drop_unsupported=True, openai_service=True)
    assert set(to_openai_service) <= OPENAI_REQUEST_FIELDS
    assert to_openai_service == {key: value for key, value in body.items() if key not in SAMPLING_EXTENSIONS}


def _expected_back(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """*request* after an OpenAI round trip: the documented normalisations applied, nothing else."""
    messages = []
    for message in request.messages:
        if message.content == ():
            message = attrs.evolve(message, content="")
        if isinstance(message, AssistantMessage):
            calls = message.tool_calls
            if not isinstance(calls, type(UNSET)):
                calls = tuple(
                    ToolCall(
                        id=c.id,
                        function=FunctionCall(
                            name=c.function.name,
                            arguments=c.function.arguments
                            if isinstance(c.function.arguments, str)
                            else chatdsl._json.dumps(c.function.arguments),
                        ),
                    )
                    for c in calls
                )
            message = attrs.evolve(
                message, tool_calls=calls, prefix=UNSET if message.prefix is False else message.prefix
            )
        elif isinstance(message, ToolMessage):
            message = attrs.evolve(message, name=UNSET)
        messages.append(message)
    return attrs.evolve(
        request,
        messages=messages,
        tool_choice=ToolChoice.REQUIRED if request.tool_choice == ToolChoice.ANY else request.tool_choice,
        safe_prompt=UNSET if request.safe_prompt is False else request.safe_prompt,
        stop=UNSET if request.stop == () else request.stop,
        extra={"stream_options": {"include_usage": True}} if request.stream is True else {},
    )


def _portable(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """*request* without what OpenAI has no equivalent for (each such part replaced by a text part)."""

    def parts(message: Any) -> Any:
        content = message.content
        if isinstance(content, tuple):
            allowed = (TextChunk, ImageURLChunk, FileChunk) if isinstance(message, UserMessage) else (TextChunk,)
            content = tuple(p if isinstance(p, allowed) else TextChunk(text="(part)") for p in content)
        message = attrs.evolve(message, content=content)
        if isinstance(message, AssistantMessage) and message.prefix is True:
            message = attrs.evolve(message, prefix=UNSET)
        return message

    metadata = request.metadata
    if not isinstance(metadata, type(UNSET)):
        metadata = {k: v for k, v in metadata.items() if isinstance(v, str)}
    return attrs.evolve(
        request,
        messages=[parts(m) for m in request.messages],
        safe_prompt=UNSET if request.safe_prompt is True else request.safe_prompt,
        prompt_mode=UNSET,
        metadata=metadata,
        prompt_logprobs=UNSET,
        top_prompt_logprobs=UNSET,
        guardrails=UNSET,
        reasoning_effort=UNSET if request.reasoning_effort == "max" else request.reasoning_effort,
    )


@given(s.complete_requests(known_enums=True).map(_portable))
def test_reading_the_openai_body_back_gives_the_request_again(request: ChatCompletionRequest) -> None:
    body = request.to_dict(dialect="openai")
    assert problems(body) == []
    assert request_from_openai(json.loads(json.dumps(body))) == _expected_back(request)


@given(s.responses(), st.none() | s.texts)
def test_a_refusal_round_trips_through_the_wire_form(response: chatdsl.ChatCompletionResponse, text: Any) -> None:
    refused = attrs.evolve(response, choices=tuple(attrs.evolve(c, refusal=text) for c in response.choices))
    data = refused.to_dict()
    for choice in data["choices"]:
        assert ("refusal" in choice["message"]) is (text is not None)
        assert "refusal" not in choice
    assert chatdsl.ChatCompletionResponse.from_dict(data) == refused


# ------------------------------------------------------------------------------- OpenAI -> request


def test_an_openai_body_reads_into_the_request_model() -> None:
    body = {
        "model": "gpt-test",
        "messages": [
            {"role": "developer", "content": "Be brief.", "name": "ops"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "https://e.com/a.png", "detail": "high"}},
                    {"type": "file", "file": {"file_id": "file-1"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ],
            },
            {"role": "assistant", "content": None, "refusal": None, "tool_calls": []},
            {"role": "user", "content": "go"},
        ],
        "seed": 5,
        "tool_choice": "required",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = request_from_openai(body)
    assert request.random_seed == 5
    assert request.tool_choice == ToolChoice.REQUIRED
    assert request.messages[0] == SystemMessage(content="Be brief.")
    assert request.messages[1].content == (
        TextChunk(text="Look"),
        ImageURLChunk(url="https://e.com/a.png", detail="high"),
        FileChunk(file_id="file-1"),
        AudioChunk(input_audio="UklGRg=="),
    )
    assert request.extra == {"user": "u-1", "stream_options": {"include_usage": True}}


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ({"random_seed": 1}, "random_seed", "OpenAI spells it seed"),
        ({"safe_prompt": True}, "safe_prompt", "not a field of OpenAI"),
        ({"prompt_mode": "reasoning"}, "prompt_mode", "reasoning_effort"),
        ({"guardrails": []}, "guardrails", "not a field of OpenAI"),
        ({"messages": [{"role": "assistant", "content": "x", "prefix": True}]}, "messages[0].prefix", "assistant"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://e"}]}]},
            "image_url",
            "",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "document_url", "document_url": "u"}]}]}, "type", ""),
        ({"messages": [{"role": "user", "content": [{"type": "file", "file_id": "f"}]}]}, "content[0].file", ""),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": "AA"}]}]},
            "input_audio",
            "",
        ),
        ({"messages": [{"role": "system", "content": [{"type": "thinking", "thinking": []}]}]}, "type", "system"),
        ({"messages": [{"role": "tool", "content": "r", "tool_call_id": "c", "name": "f"}]}, "messages[0].name", ""),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "index": 0}]}]},
            "tool_calls[0].index",
            "",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}
                ]
            },
            "function.arguments",
            "JSON string",
        ),
        ({"seed": -1}, "seed", "minimum"),
    ],
)
def test_what_an_openai_server_refuses_is_refused_with_its_path(body: dict[str, Any], path: str, words: str) -> None:
    full = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
    with pytest.raises(ValidationError) as info:
        request_from_openai(full)
    assert any(p.endswith(path) and words in f"{p}: {m}" for p, m in info.value.errors), info.value.errors


def test_the_schema_is_not_vacuous() -> None:
    good = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 1, "stream": True}
    assert problems({**good, "stream_options": {"include_usage": True}}) == []
    assert problems({**good, "random_seed": 1}) != []
    assert problems({**good, "stream": False, "stream_options": {"include_usage": True}}) != []
    assert problems({**good, "messages": [{"role": "assistant", "content": "x", "prefix": True}]}) != []
    assert problems({**good, "messages": [{"role": "user", "content": []}]}) != []
    assert problems({**good, "tool_choice": "any"}) != []
    assert problems({**good, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}]})
    assert set(SCHEMA["properties"]) == OPENAI_REQUEST_FIELDS


# ------------------------------------------------------------------------------ the current request fields


def test_logprobs_and_reasoning_effort_are_sent_as_they_are() -> None:
    request = base().with_logprobs(top=5).with_reasoning_effort("xhigh")
    body = openai(request)
    assert (body["logprobs"], body["top_logprobs"], body["reasoning_effort"]) == (True, 5, "xhigh")
    assert request_from_openai(body) == request


@pytest.mark.parametrize(("mistral", "openai_tier"), [("auto", "auto"), ("standard_only", "default")])
def test_service_tier_is_respelled_both_ways(mistral: str, openai_tier: str) -> None:
    request = base().with_service_tier(mistral)
    assert openai(request)["service_tier"] == openai_tier
    assert request_from_openai(openai(request)) == request


def test_openai_only_service_tiers_are_kept_as_they_are() -> None:
    request = request_from_openai({"model": "m", "messages": [], "service_tier": "flex"})
    assert request.service_tier == "flex"
    assert request.to_dict(dialect="openai")["service_tier"] == "flex"


def test_an_unknown_enum_value_is_sent_as_it_is_in_both_dialects() -> None:
    request = base().with_reasoning_effort("ultra").with_service_tier("priority")
    assert request.to_dict()["reasoning_effort"] == "ultra"
    body = request.to_dict(dialect="openai")
    assert (body["reasoning_effort"], body["service_tier"]) == ("ultra", "priority")


@pytest.mark.parametrize(
    ("step", "path", "words"),
    [
        (lambda r: r.with_reasoning_effort("max"), "reasoning_effort", "'xhigh'"),
        (lambda r: r.with_prompt_logprobs(), "prompt_logprobs", "prompt"),
        (lambda r: r.with_top_prompt_logprobs(2), "top_prompt_logprobs", "prompt"),
        (lambda r: r.with_guardrails(chatdsl.GuardrailConfig(block_on_error=True)), "guardrails", "moderation"),
    ],
)
def test_fields_without_an_openai_equivalent_are_refused_by_name_or_dropped(
    step: Any, path: str, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    request = step(base())
    error = refusal(request)
    assert [p for p, _ in error.errors] == [path]
    assert "has no equivalent in the openai dialect" in error.rule
    assert words in error.rule
    with caplog.at_level(logging.INFO, logger="chatdsl"):
        assert path not in openai(request, drop_unsupported=True)
    assert path in caplog.text


SAMPLING = {"top_k": 40, "min_tokens": 3, "repetition_penalty": 1.1}


def test_sampling_extensions_go_to_self_hosted_servers_and_are_refused_by_openai_itself() -> None:
    request = base().with_top_k(40).with_min_tokens(3).with_repetition_penalty(1.1)
    assert {k: openai(request)[k] for k in SAMPLING} == SAMPLING  # vLLM, llama.cpp, Ollama
    with pytest.raises(ValidationError) as info:
        to_wire(request.to_dict(), "openai", openai_service=True)
    assert sorted(p for p, _ in info.value.errors) == sorted(SAMPLING)
    assert all("api.openai.com" in m for _, m in info.value.errors)
    dropped = to_wire(request.to_dict(), "openai", openai_service=True, drop_unsupported=True)
    assert not set(dropped) & set(SAMPLING)
    assert problems(dropped) == []
    assert set(OPENAI.iter_errors({**dropped, "top_k": 1}))  # OpenAI's schema itself refuses them
    assert request_from_openai(openai(request)) == request  # a self-hosted server (LocalServer) reads them


def test_a_client_treats_only_openai_s_own_host_as_openai_s_service() -> None:
    from chatdsl.client.config import is_openai_service

    assert is_openai_service("https://api.openai.com")
    assert is_openai_service("https://api.openai.com:443/proxy")
    assert not is_openai_service("http://127.0.0.1:8000")
    assert not is_openai_service("https://api.openai.com.example")
    assert not is_openai_service("https://api.mistral.ai")


@pytest.mark.parametrize("key", ["prompt_logprobs", "top_prompt_logprobs", "guardrails"])
def test_mistral_only_fields_in_an_openai_body_are_refused_by_name(key: str) -> None:
    with pytest.raises(ValidationError) as info:
        request_from_openai({"model": "m", "messages": [], key: True})
    assert info.value.errors == ((key, "is not a field of OpenAI's chat-completions API"),)
