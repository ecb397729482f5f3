"""The SSE parser (``chatdsl.wire.sse``): the WHATWG rules, any split of the bytes, arbitrary input, chunk decoding."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chatdsl import CompletionChunk, FinishReason, StreamError
from chatdsl.wire.sse import DONE, ServerSentEvent, SSEDecoder, decode_chunk, describe_error_body

# ------------------------------------------------------------------------------ a literal reference


def reference_events(stream: bytes) -> list[ServerSentEvent]:
    """The specification's algorithm, written the slow and obvious way (text, regex line split)."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # not terminated: an unfinished line
    events: list[ServerSentEvent] = []
    data: str | None = None
    event_type = ""
    last_id: str | None = None
    for line in lines:
        if line == "":
            if data is None:
                event_type = ""
                continue
            events.append(ServerSentEvent(data.removesuffix("\n"), event_type or "message", last_id))
            data, event_type = None, ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
        else:
            name, value = line, ""
        if name == "data":
            data = (data or "") + value + "\n"
        elif name == "event":
            event_type = value
        elif name == "id" and "\x00" not in value:
            last_id = value
    return events


def feed_split(stream: bytes, cuts: list[int], **kwargs: int) -> list[ServerSentEvent]:
    decoder = SSEDecoder(**kwargs)
    events: list[ServerSentEvent] = []
    start = 0
    for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
        events += decoder.feed(stream[start:cut])
        start = cut
    return events


# ------------------------------------------------------------------------------ the specification's examples


def test_multi_line_data_is_joined_with_newlines():
    events = SSEDecoder().feed(b"data: YHOO\ndata: +2\ndata: 10\n\n")
    assert events == [ServerSentEvent("YHOO\n+2\n10")]


def test_comments_ids_and_one_leading_space():
    stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
    assert SSEDecoder().feed(stream) == [
        ServerSentEvent("first event", id="1"),
        ServerSentEvent("second event", id=""),
        ServerSentEvent(" third event", id=""),
    ]


def test_empty_data_fields_and_the_unfinished_last_event():
    decoder = SSEDecoder()
    assert decoder.feed(b"data\n\ndata\ndata\n\ndata:") == [ServerSentEvent(""), ServerSentEvent("\n")]
    assert decoder.has_partial_event


def test_with_and_without_the_space():
    assert SSEDecoder().feed(b"data:test\n\ndata: test\n\n") == [ServerSentEvent("test")] * 2


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(newline):
    stream = newline.join([b"event: add", b"data: 73857293", b"", b"data: x", b"", b""])
    assert SSEDecoder().feed(stream) == [ServerSentEvent("73857293", "add"), ServerSentEvent("x")]


def test_cr_at_the_end_of_a_read_and_lf_at_the_start_of_the_next_are_one_line_ending():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == [ServerSentEvent("a")]  # no empty line in between: one event, not cut early
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [ServerSentEvent("b")]


def test_an_event_is_returned_by_the_read_that_completes_it():
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a"') == []
    assert decoder.feed(b": 1}\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent('{"a": 1}')]


def test_a_crlf_split_between_reads_does_not_end_the_event_early():
    # the requests iter_lines() bug (psf/requests#3980): the lone LF must not be read as a blank line
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [ServerSentEvent("a\nb")]


def test_a_cr_ending_event_is_not_held_back_for_a_possible_lf():
    assert SSEDecoder().feed(b"data: a\r\r") == [ServerSentEvent("a")]


def test_the_bom_is_dropped_once_even_when_split():
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef") == []
    assert decoder.feed(b"\xbb") == []
    assert decoder.feed(b"\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n") == [ServerSentEvent("a")]


def test_event_type_retry_id_rules():
    decoder = SSEDecoder()
    stream = b"event: ping\nretry: 1500\nretry: 1x\nid: 7\nid: a\x00b\ndata: 1\n\ndata: 2\n\n"
    assert decoder.feed(stream) == [ServerSentEvent("1", "ping", "7"), ServerSentEvent("2", "message", "7")]
    assert decoder.retry == 1500
    assert decoder.last_event_id == "7"


def test_an_event_type_without_data_is_forgotten():
    assert SSEDecoder().feed(b"event: x\n\ndata: 1\n\n") == [ServerSentEvent("1")]


def test_unknown_fields_and_field_names_that_only_start_like_data_are_ignored():
    assert SSEDecoder().feed(b"datax: 1\nfoo: 2\ndata: 3\n\n") == [ServerSentEvent("3")]


def test_invalid_utf8_is_replaced():
    assert SSEDecoder().feed(b"data: a\xffb\n\n") == [ServerSentEvent("a\ufffdb")]


def test_max_event_size_is_a_stream_error_for_long_lines_and_long_events():
    with pytest.raises(StreamError, match="max_event_size"):
        SSEDecoder(max_event_size=10).feed(b"data: 0123456789abc")
    with pytest.raises(StreamError, match="max_event_size"):
        SSEDecoder(max_event_size=10).feed(b"data: 01234\ndata: 56789\n")
    assert SSEDecoder(max_event_size=10).feed(b"data: 0123\n\n" * 5) == [ServerSentEvent("0123")] * 5


def test_a_long_line_in_many_small_reads():
    decoder = SSEDecoder()
    payload = b"x" * 100_000
    stream = b"data: " + payload + b"\n\n"
    events = []
    for i in range(0, len(stream), 7):
        events += decoder.feed(stream[i : i + 7])
    assert events == [ServerSentEvent(payload.decode())]


def test_an_unfinished_last_event_is_not_yielded():
    decoder = SSEDecoder()
    events = [*decoder.feed(b"data: 1\n"), *decoder.feed(b"\ndata: 2\n")]
    assert events == [ServerSentEvent("1")]
    assert decoder.has_partial_event


# ------------------------------------------------------------------------------ properties

_field_values = st.text(st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]), max_size=20)
_newlines = st.sampled_from([b"\n", b"\r\n", b"\r"])
_after_cr = st.sampled_from([b"\r\n", b"\r"])


@st.composite
def sse_streams(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent]]:
    """A well-formed stream with mixed line endings, comments and fields, and the events it holds."""
    out: list[bytes] = []
    expected: list[ServerSentEvent] = []
    last_id: str | None = None
    previous = b""

    def newline() -> bytes:
        # after a bare CR, an LF would merge with it into one CRLF line ending
        nonlocal previous
        previous = draw(_after_cr if previous == b"\r" else _newlines)
        return previous

    if draw(st.booleans()):
        out.append(b"\xef\xbb\xbf")
    for _ in range(draw(st.integers(0, 5))):
        lines = draw(st.lists(_field_values, min_size=1, max_size=3))
        event_type = draw(st.none() | st.text("abcxyz", min_size=1, max_size=5))
        new_id = draw(st.none() | st.text("0123456789", max_size=3))
        fields: list[bytes] = []
        if draw(st.booleans()):
            fields.append(b": " + draw(_field_values).encode())
        if event_type is not None:
            fields.append(b"event: " + event_type.encode())
        if new_id is not None:
            fields.append(b"id: " + new_id.encode())
            last_id = new_id
        fields += [b"data: " + line.encode() for line in lines]
        for field in fields:
            out += [field, newline()]
        out.append(newline())
        expected.append(ServerSentEvent("\n".join(lines), event_type or "message", last_id))
    return b"".join(out), expected


@given(sse_streams(), st.lists(st.integers(0, 400), max_size=12))
def test_a_stream_split_at_any_points_gives_the_same_events(stream_and_events, cuts):
    stream, expected = stream_and_events
    assert reference_events(stream) == expected
    assert feed_split(stream, cuts) == expected


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
@example(b"\r\n\r\n", [1])
@example(b"\xef\xbb\xbf\xef\xbb\xbfdata:x\n\n", [1, 2, 4])
@example(b"data:\xe2\x82\n\n", [7])
@example(b"data: a\r\ndata: b\r\n\r\n", [8])
def test_arbitrary_bytes_give_the_reference_events_for_any_split(stream, cuts):
    assert feed_split(stream, cuts) == reference_events(stream)


_sse_alphabet = st.sampled_from([b"data:", b"data: ", b"event:", b"id:", b"retry:", b":", b"\r", b"\n", b"x", b"\xff"])


@given(st.lists(_sse_alphabet, max_size=60).map(b"".join), st.lists(st.integers(0, 300), max_size=10))
def test_sse_like_noise_gives_the_reference_events_for_any_split(stream, cuts):
    assert feed_split(stream, cuts) == reference_events(stream)


@given(st.lists(_sse_alphabet, max_size=60).map(b"".join), st.lists(st.integers(0, 300), max_size=10))
def test_with_a_size_limit_the_only_failure_is_stream_error(stream, cuts):
    try:
        events = feed_split(stream, cuts, max_event_size=8)
    except StreamError:
        return
    assert events == reference_events(stream)


# ------------------------------------------------------------------------------ events to chunks


def _chunk_event(**overrides: object) -> ServerSentEvent:
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}],
    }
    body.update(overrides)
    return ServerSentEvent(json.dumps(body))


def test_decode_chunk_reads_a_chunk():
    chunk = decode_chunk(_chunk_event(choices=[{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]))
    assert isinstance(chunk, CompletionChunk)
    assert chunk.text() == "x"
    assert chunk.choices[0].finish_reason is FinishReason.STOP
    assert chunk.id == "c1"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (ServerSentEvent("{broken"), "not JSON: '{broken'"),
        (ServerSentEvent("[1, 2]"), "not a JSON object"),
        (ServerSentEvent('{"choices": 3}'), "not a completion chunk"),
        (
            ServerSentEvent('{"object": "error", "message": "overloaded", "type": "x", "code": "1"}'),
            "error event: overloaded",
        ),
        (ServerSentEvent('{"error": {"message": "bad key", "type": "auth"}}'), "error event: bad key"),
        (ServerSentEvent('{"message": "boom"}', event="error"), "error event: boom"),
        (ServerSentEvent("plain words", event="error"), "error event: plain words"),
        # the API's other error shapes, sent as events: never mistaken for an empty chunk
        (ServerSentEvent('{"message": "Service overloaded", "request_id": "r1"}'), "error event: Service overloaded"),
        (ServerSentEvent('{"detail": "Internal error"}'), "error event: Internal error"),
        (ServerSentEvent('{"object": "error", "message": "quota", "choices": []}'), "error event: quota"),
    ],
)
def test_decode_chunk_refuses_everything_else_with_stream_error(event, message):
    with pytest.raises(StreamError, match=re.escape(message)):
        decode_chunk(event)


def test_a_chunk_with_empty_choices_is_still_a_chunk():
    usage_only = '{"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 1}}'
    chunk = decode_chunk(ServerSentEvent(usage_only))
    assert chunk.choices == ()
    assert chunk.usage is not None


def _outcome(event: ServerSentEvent) -> CompletionChunk | StreamError:
    """The chunk, or the StreamError; any other exception propagates and fails the test."""
    try:
        return decode_chunk(event)
    except StreamError as exc:
        return exc


@given(st.binary(max_size=200))
def test_arbitrary_bytes_become_chunks_or_stream_error(stream):
    decoder = SSEDecoder()
    for event in [*decoder.feed(stream), *decoder.feed(b"\n\n")]:
        if event.data == DONE:
            break
        assert isinstance(_outcome(event), (CompletionChunk, StreamError))


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "id",
                        "model",
                        "choices",
                        "index",
                        "delta",
                        "content",
                        "usage",
                        "error",
                        "object",
                        "finish_reason",
                        "created",
                    ]
                ),
                c,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_arbitrary_json_becomes_a_chunk_or_stream_error(value):
    assert isinstance(_outcome(ServerSentEvent(json.dumps(value))), (CompletionChunk, StreamError))


# ------------------------------------------------------------------------------ error bodies


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"object": "error", "message": "Invalid model", "type": "invalid_model", "code": "1500"}, "Invalid model"),
        (
            {"detail": [{"loc": ["body", "messages", 0, "content"], "msg": "Field required", "type": "missing"}]},
            "body.messages.0.content: Field required",
        ),
        ({"detail": "Not Found"}, "Not Found"),
        ({"message": "Unauthorized", "request_id": "x"}, "Unauthorized"),
        ({"error": {"message": "Rate limit", "type": "requests", "code": None}}, "Rate limit"),
        ({"error": "plain"}, "plain"),
        (
            {"object": "error", "message": {"detail": [{"loc": ["body"], "msg": "bad", "type": "t"}]}, "type": "x"},
            "body: bad",
        ),
        ("<html><body><h1>502 Bad Gateway</h1></body></html>", "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        ({"other": 1}, '{"other":1}'),
        (None, ""),
    ],
)
def test_describe_error_body_handles_every_shape(body, message):
    assert describe_error_body(body) == message


def test_describe_error_body_keeps_the_first_200_characters_of_text():
    text = "x" * 1000
    assert describe_error_body(text) == "x" * 199 + "…"


@given(st.integers(0, len(b"data: [DONE]\r\n")))
def test_complete_lines_data_shows_an_event_waiting_only_for_its_blank_line(split: int) -> None:
    data = b"data: [DONE]\r\n"
    decoder = SSEDecoder()
    assert decoder.feed(data[:split]) == []
    assert decoder.complete_lines_data() == ("[DONE]" if split >= len(b"data: [DONE]\r") else None)
    assert decoder.feed(data[split:]) == []
    assert decoder.complete_lines_data() == "[DONE]"  # its line is complete; the event is still pending
    assert decoder.feed(b"\n") == [ServerSentEvent("[DONE]")]
    assert decoder.complete_lines_data() is None
