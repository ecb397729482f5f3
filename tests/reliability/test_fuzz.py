"""Fuzzing every parser chatdsl exposes, down to the client's own reading of a socket.

Each property holds for arbitrary input: the parser gives a value (which round-trips) or raises its
documented error — ``ValidationError`` (``TemplateError`` for files), ``OutputError`` for
``output()``, ``MalformedResponseError``/``APIError`` from a plain call, an error chunk from a
stream — never anything else, never ``RecursionError``, never a hang.

Complements ``test_validation.py`` (request dicts), ``test_sse.py`` (the decoder, split anywhere)
and ``test_streaming.py``: here are template files, response and chunk text, ``output()``, the full
client path (bytes served by ``LocalServer`` equal the offline parse of the same bytes) and
deeply nested or huge inputs.

The ``ci`` profile runs 60 examples per property; ``HYPOTHESIS_PROFILE=long pytest tests/reliability/test_fuzz.py``
runs 5000.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import chatdsl
from chatdsl import (
    APIError,
    AssistantMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Client,
    CompletionChunk,
    InternalServerError,
    Limits,
    MalformedResponseError,
    OutputError,
    RequestTemplate,
    StreamError,
    TemplateError,
    Timeout,
    ValidationError,
)
from chatdsl.templates.toml import dumps_toml
from chatdsl.testing import LocalServer, Reply
from chatdsl.wire.sse import DONE, SSEDecoder, decode_chunk
from tests import strategies as s
from tests._secrets import TEST_KEY

KEY = TEST_KEY
REQUEST = chatdsl.chat("mistral-small-latest").user("fuzz")

# ------------------------------------------------------------------------------ strategies

_KEYS = st.sampled_from(
    [a.name for a in attrs.fields(ChatCompletionRequest)]
    + ["role", "content", "type", "text", "function", "name", "arguments", "tool_calls", "id", "index"]
    + ["choices", "message", "delta", "finish_reason", "usage", "created", "object", "error", "detail"]
    + ["template", "extends", "variables", "description", "default", "extra"]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["user", "assistant", "tool", "text", "function", "stop", "$x", "${y}", "$", "chat.completion"]),
)
fuzz_json = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_KEYS | st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=14,
)
"""JSON values whose keys are often chatdsl's own, so the fuzzing gets past the first check."""


@st.composite
def damaged(draw: st.DrawFn, bodies: st.SearchStrategy[Any]) -> Any:
    """A valid body (a dict) with one node replaced by fuzz."""
    body = draw(bodies)
    return s.replace_at(body, draw(st.sampled_from(s.json_paths(body))), draw(fuzz_json))


request_bodies = s.requests(with_extra=True).map(lambda r: r.to_dict())
response_bodies = s.responses().map(lambda r: json.loads(r.to_json()))
chunk_bodies = s.chunks().map(lambda c: json.loads(c.to_json()))

texts = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
    fuzz_json.map(json.dumps),
)
"""Arbitrary text, much of it JSON."""


@st.composite
def template_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """``(suffix, content)`` of a template file: raw bytes, arbitrary text, or a damaged valid file."""
    suffix = draw(st.sampled_from([".json", ".toml"]))
    kind = draw(st.sampled_from(["bytes", "text", "body", "header"]))
    if kind == "bytes":
        return suffix, draw(st.binary(max_size=120))
    if kind == "text":
        return suffix, draw(texts).encode("utf-8", "surrogatepass")
    body = draw(damaged(request_bodies))
    if kind == "header" or not isinstance(body, dict):
        body = {"template": draw(fuzz_json), **(body if isinstance(body, dict) else {"messages": body})}
    if suffix == ".json":
        return suffix, json.dumps(body).encode()
    try:
        return suffix, dumps_toml(body).encode()
    except (TemplateError, TypeError, ValueError):  # TOML cannot hold it (a null): write JSON instead
        return suffix, json.dumps(body).encode()


# ------------------------------------------------------------------------------ template files


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-templates")


@given(template_files())
@example((".toml", b"model = 'm'\n[[messages]]\nrole = 'user'\ncontent = '$'\n"))
@example((".json", b'{"model": "m", "a": 1, "a": 2}'))
@example((".toml", b"\xff\xfe"))
@example((".json", b"NaN"))
def test_any_template_file_loads_or_raises_template_error(folder: Path, file: tuple[str, bytes]) -> None:
    suffix, content = file
    path = folder / f"t{suffix}"
    path.write_bytes(content)
    for load in (ChatCompletionRequest.load, RequestTemplate.load):
        try:
            loaded = load(path)
        except TemplateError as exc:
            error = exc
        else:
            request = loaded if isinstance(loaded, ChatCompletionRequest) else loaded.request
            assert ChatCompletionRequest.from_json(request.to_json(), allow_extra=True) == request
            continue
        assert isinstance(error, ValidationError)
        assert error.file == str(path)
        assert str(error).startswith(str(path))


# ------------------------------------------------------------------------------ responses, chunks, output()


@given(texts)
@example('{"choices": [{"message": {"content": [[[]]]}}]}')
@example('{"choices": null, "created": "yesterday"}')
def test_response_and_chunk_text_parse_or_raise_validation_error(text: str) -> None:
    for cls in (ChatCompletionResponse, CompletionChunk):
        try:
            value = cls.from_json(text)
        except ValidationError as exc:
            error = exc
        else:
            assert cls.from_json(value.to_json()) == value
            continue
        assert str(error)


@given(st.one_of(fuzz_json, damaged(response_bodies), damaged(chunk_bodies)))
def test_response_and_chunk_dicts_parse_or_raise_validation_error(data: Any) -> None:
    for cls in (ChatCompletionResponse, CompletionChunk):
        try:
            value = cls.from_dict(data)
        except ValidationError as exc:
            error = exc
        else:
            assert cls.from_dict(value.to_dict()) == value
            continue
        assert error.errors


@attrs.frozen
class City:
    name: str
    population: int
    tags: list[str] = attrs.Factory(list)


@given(
    st.one_of(
        texts,
        fuzz_json.map(json.dumps),
        st.builds(dict, name=st.text(max_size=5), population=fuzz_json).map(json.dumps),
    )
)
def test_output_parses_or_raises_output_error(text: str) -> None:
    message = AssistantMessage(content=text)
    for tp in (dict, list[int], City, Any):
        try:
            message.output(tp)
        except OutputError as exc:
            error = exc
        else:
            continue
        assert error.content == text


# ------------------------------------------------------------------------------ the client path


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: LocalServer) -> Iterator[Client]:
    with Client(KEY, base_url=server.url, timeout=Timeout(connect=2, read=2), max_retries=0) as c:
        yield c


plain_bodies = st.one_of(
    st.binary(max_size=80),
    texts.map(str.encode),
    damaged(response_bodies).map(lambda body: json.dumps(body).encode()),
)


@given(plain_bodies)
@example(b'{"choices": []}')
@example(b"[" * 5000 + b"]" * 5000)
def test_any_success_body_is_the_offline_parse_or_malformed_response_error(
    server: LocalServer, client: Client, body: bytes
) -> None:
    server.enqueue(Reply.raw(body, content_type="application/json"))
    try:
        response = client.chat_completion(REQUEST)
    except MalformedResponseError as exc:
        error = exc
    else:
        assert response == ChatCompletionResponse.from_json(body)
        return
    assert error.status_code == 200
    try:
        offline = json.loads(body)
    except (ValueError, RecursionError):
        return
    if isinstance(offline, dict) and "choices" in offline:  # else: not a completion, though it may parse
        with pytest.raises(ValidationError):
            ChatCompletionResponse.from_json(body)


@given(st.integers(400, 599), plain_bodies)
def test_any_error_body_is_an_api_error_with_its_status(
    server: LocalServer, client: Client, status: int, body: bytes
) -> None:
    server.enqueue(Reply.raw(body, status=status, content_type="application/json"))
    with pytest.raises(APIError) as info:
        client.chat_completion(REQUEST)
    error = info.value
    assert error.status_code == status
    assert not isinstance(error, MalformedResponseError)
    assert isinstance(error.message, str)
    assert len(error.message) <= 200
    if status >= 500:
        assert isinstance(error, InternalServerError)


_FRAGMENTS = st.one_of(
    st.binary(max_size=24),
    st.sampled_from(
        [
            b"data: ",
            b"data:",
            b"\n",
            b"\r",
            b"\r\n",
            b"\n\n",
            b"event: error\n",
            b"event: ping\n",
            b": keep-alive\n\n",
            b"data: [DONE]\n\n",
            b"id: 7\n",
            b"retry: 10\n",
            b"\xef\xbb\xbf",
            b'data: {"object": "error"}\n\n',
            b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n',
            b"data: {broken\n\n",
            b"data: 1\n\n",
        ]
    ),
    s.chunks().map(lambda c: b"data: " + c.to_json().encode() + b"\n\n"),
)


def reference(data: bytes) -> tuple[list[CompletionChunk], str]:
    """The chunks and ending (``"done"`` or ``"error"``) the client must give for a stream body *data*."""
    decoder = SSEDecoder(max_event_size=Limits().max_event_size)
    chunks: list[CompletionChunk] = []
    for event in decoder.feed(data):
        if event.data == DONE:
            return chunks, "done"
        if event.event not in ("message", "error"):
            continue
        try:
            chunks.append(decode_chunk(event))
        except StreamError:
            return chunks, "error"
    return chunks, "error"  # the body ended without [DONE]


@given(st.lists(_FRAGMENTS, max_size=10), st.lists(st.integers(0, 400), max_size=6))
@example([b"data: [DONE]\n\n"], [])
@example([b'data: {"choices": []}\r', b"\n\r\n"], [])
def test_stream_bytes_split_anywhere_give_the_offline_parse(
    server: LocalServer, client: Client, fragments: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(fragments)
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    server.enqueue(Reply.stream(pieces, done=False))
    with client.chat_completion_stream(REQUEST) as stream:
        got = list(stream)  # never raises
    expected, ending = reference(data)
    assert got
    assert got[-1].is_last_chunk
    errors = [c for c in got if c.error is not None]
    if ending == "done":
        assert stream.completed
        assert errors == []
    else:
        assert not stream.completed
        assert errors == [got[-1]]
        assert isinstance(got[-1].error, StreamError)
    real = [c for c in got if c.error is None]
    assert [c.to_dict() for c in real[: len(expected)]] == [c.to_dict() for c in expected]
    extra = real[len(expected) :]
    assert len(extra) <= 1, "at most one end marker is added"
    if extra:
        assert stream.completed
        assert extra[0].choices == ()


# ------------------------------------------------------------------------------ deep and huge inputs

DEPTH = 100_000
NO_HANG = 5.0  # seconds: each of these takes well under 0.5 s; a hang or a quadratic parse takes minutes
DEEP_LIST = "[" * DEPTH + "]" * DEPTH
DEEP_OBJECT = '{"a":' * DEPTH + "1" + "}" * DEPTH
HUGE_NUMBER = "1" * 100_000


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": [value]}
    return value


def _body_with(value: str) -> str:
    return '{"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": {"k": ' + value + "}}"


def _response_with(value: str) -> str:
    return '{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": ' + value + "}}]}"


TEXT_PARSERS: dict[str, Callable[[str], object]] = {
    "ChatCompletionRequest.from_json": ChatCompletionRequest.from_json,
    "ChatCompletionRequest.from_json (metadata)": lambda text: ChatCompletionRequest.from_json(_body_with(text)),
    "ChatCompletionResponse.from_json": ChatCompletionResponse.from_json,
    "ChatCompletionResponse.from_json (content)": lambda text: ChatCompletionResponse.from_json(_response_with(text)),
    "CompletionChunk.from_json": CompletionChunk.from_json,
}


@pytest.mark.parametrize(
    "value", [DEEP_LIST, DEEP_OBJECT, HUGE_NUMBER], ids=["deep list", "deep object", "huge number"]
)
@pytest.mark.parametrize("parse", list(TEXT_PARSERS.values()), ids=list(TEXT_PARSERS))
def test_deep_or_huge_json_text_is_a_validation_error(parse: Callable[[str], object], value: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ValidationError, match="is not valid JSON"):
        parse(value)
    assert time.perf_counter() - start < NO_HANG


@pytest.mark.parametrize(
    "value", [DEEP_LIST, DEEP_OBJECT, HUGE_NUMBER], ids=["deep list", "deep object", "huge number"]
)
def test_deep_or_huge_output_is_an_output_error(value: str) -> None:
    for tp in (dict, list[Any], City):
        with pytest.raises(OutputError, match="is not valid JSON"):
            AssistantMessage(content=value).output(tp)


DICT_READERS: dict[str, Callable[[Any], object]] = {
    "request metadata": lambda v: ChatCompletionRequest.from_dict(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": {"k": v}}
    ),
    "tool parameters": lambda v: ChatCompletionRequest.from_dict(
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"k": v}}}]}
    ),
    "extra field": lambda v: ChatCompletionRequest.from_dict({"x_custom": v}, allow_extra=True),
    "message content": lambda v: ChatCompletionRequest.from_dict({"messages": [{"role": "user", "content": [v]}]}),
    "response tool arguments": lambda v: ChatCompletionResponse.from_dict(
        {"choices": [{"message": {"tool_calls": [{"function": {"name": "f", "arguments": v}}]}}]}
    ),
    "chunk tool arguments": lambda v: CompletionChunk.from_dict(
        {"choices": [{"delta": {"tool_calls": [{"function": {"name": "f", "arguments": v}}]}}]}
    ),
    "with_metadata": lambda v: chatdsl.chat("m").with_metadata({"k": v}),
    "with_json_schema": lambda v: chatdsl.chat("m").with_json_schema({"type": "object", "properties": v}, name="s"),
    "with_extra": lambda v: chatdsl.chat("m").with_extra(x_custom=v),
    "json_schema (not a type)": chatdsl.json_schema,
}


@pytest.mark.parametrize("read", list(DICT_READERS.values()), ids=list(DICT_READERS))
def test_deeply_nested_python_values_are_a_validation_error(read: Callable[[Any], object]) -> None:
    value = _nested(DEPTH)
    start = time.perf_counter()
    with pytest.raises(ValidationError) as info:
        read(value)
    assert info.value.errors
    assert len(str(info.value)) < 2000
    assert time.perf_counter() - start < NO_HANG


def test_a_deeply_nested_type_is_a_validation_error_or_an_output_error() -> None:
    tp: Any = int
    for _ in range(5000):
        tp = list[tp]
    with pytest.raises(ValidationError, match="nested too deeply for a JSON schema"):
        chatdsl.json_schema(tp)
    with pytest.raises(OutputError, match="nested too deeply"):
        AssistantMessage(content="[[1]]").output(tp)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("deep.json", _body_with(DEEP_LIST), "nested too deeply"),
        ("deep.json", _body_with(DEEP_OBJECT), "nested too deeply"),
        ("deep.toml", 'model = "m"\nx = ' + "[" * DEPTH + "]" * DEPTH + "\n", "nested too deeply"),
        ("deep.toml", 'model = "m"\nx = ' + "{a=" * DEPTH + "1" + "}" * DEPTH + "\n", "nested too deeply"),
        ("deep.toml", 'model = "m"\n' + ".".join(["a"] * 400_000) + " = 1\n", "a dotted key of more than 256 parts"),
        ("deep.toml", 'model = "m"\n[' + ".".join(["a"] * 400_000) + "]\n", "a dotted key of more than 256 parts"),
        ("deep.toml", 'x = {"' + '"."'.join(["a"] * 100_000) + '" = 1}\n', "a dotted key of more than 256 parts"),
        ("huge.json", '{"model": "m", "max_tokens": ' + HUGE_NUMBER + "}", "is not valid JSON"),
        ("huge.toml", "max_tokens = " + HUGE_NUMBER + "\n", "is not valid TOML"),
    ],
    ids=[
        "json deep list",
        "json deep object",
        "toml deep array",
        "toml deep inline table",
        "toml long dotted key",
        "toml long table header",
        "toml long quoted key",
        "json huge number",
        "toml huge number",
    ],
)
def test_deep_or_huge_template_files_are_a_template_error_at_once(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    start = time.perf_counter()
    with pytest.raises(TemplateError, match=message):
        RequestTemplate.load(path)
    assert time.perf_counter() - start < NO_HANG  # tomllib alone would spend about an hour on the long key


def test_a_dotted_key_of_256_parts_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text('model = "m"\n' + "metadata." + ".".join(["a"] * 150) + " = 1\n")
    assert RequestTemplate.load(path).request.metadata is not chatdsl.UNSET


@pytest.mark.parametrize("depth", [900, 1000, 1020, 5000, DEPTH])
def test_deep_json_from_the_server_never_breaks_the_client(server: LocalServer, client: Client, depth: int) -> None:
    """Near the parsers' own limits (orjson: 1024 levels) the error text itself must not recurse."""
    deep = ("[" * depth + "]" * depth).encode()
    server.enqueue(Reply.raw(deep, content_type="application/json"))
    with pytest.raises(MalformedResponseError):
        client.chat_completion(REQUEST)
    server.enqueue(Reply.raw(deep, status=500, content_type="application/json"))
    with pytest.raises(InternalServerError):
        client.chat_completion(REQUEST)
    for event in (b"event: error\ndata: " + deep, b'data: {"error": ' + deep + b"}", b"data: " + deep):
        server.enqueue(Reply.stream([event + b"\n\n"]))
        with client.chat_completion_stream(REQUEST) as stream:
            chunks = list(stream)
        assert isinstance(chunks[-1].error, StreamError)
        assert len(str(chunks[-1].error)) < 500
