"""Streaming against a real loopback server: chunks as they arrive, latencies, faults as error chunks, merging."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatdsl
from chatdsl import (
    APIConnectionError,
    APITimeoutError,
    AssistantMessage,
    ChatCompletionStream,
    Client,
    CompletionChunk,
    CompletionResponseStreamChoice,
    FinishReason,
    FunctionCall,
    InternalServerError,
    RateLimitError,
    StreamError,
    TextChunk,
    ThinkChunk,
    Timeout,
    ToolCall,
    UsageInfo,
)
from chatdsl.testing import LocalServer, Pause, Reply
from tests._clients import ClientDriver
from tests._secrets import TEST_KEY

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it
REQUEST = chatdsl.chat("mistral-small-latest").user("one two three four five")


@pytest.fixture
def client(server: LocalServer, make_client: ClientDriver) -> Iterator[Client]:
    """Either client (``make_client``): every test with a client runs for both."""
    with make_client(KEY, base_url=server.url, timeout=Timeout(connect=2, read=2), _sleep=lambda _: None) as c:
        yield c


def chunk(content: str | None = None, *, finish: str | None = None, index: int = 0, **fields: object) -> dict:
    """A chunk as the wire carries it."""
    delta: dict[str, object] = {} if content is None else {"content": content}
    delta.update(fields.pop("delta", {}))  # type: ignore[call-overload]
    body: dict[str, object] = {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    body.update(fields)
    return body


# ------------------------------------------------------------------------------ the happy path


def test_chunks_arrive_with_latencies_and_one_last_chunk(client, server):
    with client.chat_completion_stream(REQUEST) as stream:
        assert isinstance(getattr(stream, "stream", stream), (ChatCompletionStream, chatdsl.AsyncChatCompletionStream))
        chunks = list(stream)
    expected = server.default_chunks(REQUEST.with_streaming())
    assert chunks == expected  # eq ignores the stream facts (latencies, is_last_chunk, error)
    assert "".join(c.text() for c in chunks) == server.default_response(REQUEST).text()
    assert [c.is_last_chunk for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(c.error is None for c in chunks)
    assert chunks[0].chunk_latency == chunks[0].total_latency
    totals = [c.total_latency for c in chunks]
    assert totals == sorted(totals)
    assert all(timedelta(0) <= c.chunk_latency <= c.total_latency < timedelta(seconds=5) for c in chunks)
    assert chunks[-1].usage == server.default_response(REQUEST).usage
    assert chunks[-1].choices[0].finish_reason is FinishReason.STOP
    assert chunks[0].delta_message().text() == chunks[0].text()
    assert stream.completed
    assert stream.closed
    assert stream.error is None
    assert stream.status_code == 200
    assert stream.request_id
    assert stream.rate_limit is not None
    assert stream.retries_taken == 0


def test_the_body_asks_for_a_stream_whatever_the_request_says(client, server):
    list(client.chat_completion_stream(REQUEST.with_streaming(False)))
    recorded = server.last_request
    assert recorded.json["stream"] is True
    assert recorded.headers["accept"] == "text/event-stream"
    assert recorded.headers["accept-encoding"] == "identity"  # compression would hold events back
    assert recorded.headers["authorization"] == f"Bearer {KEY}"


def test_next_works_without_a_for_loop(client):
    stream = client.chat_completion_stream(REQUEST)
    first = next(stream)
    assert first.text() == ""  # as from the API: the first chunk names the role, with empty content
    rest = list(stream)
    assert rest[-1].is_last_chunk
    with pytest.raises(StopIteration):
        next(stream)


def test_latencies_follow_the_servers_pace(client, server):
    server.enqueue(Reply.stream(delay=0.1))
    with client.chat_completion_stream(REQUEST) as stream:
        chunks = list(stream)
    # the server waits 0.1 s between events; arrival times may bunch up on a busy machine, their sum may not
    assert chunks[-1].total_latency >= timedelta(seconds=0.1 * (len(chunks) - 1))
    summed = sum((c.chunk_latency for c in chunks), timedelta(0))
    assert abs(summed - chunks[-1].total_latency) <= timedelta(microseconds=len(chunks))  # rounding only
    assert max(c.chunk_latency for c in chunks[1:]) >= timedelta(seconds=0.09)


def test_an_event_sent_before_a_pause_is_delivered_during_the_pause(client, server):
    events = server.default_chunks(REQUEST.with_streaming())
    server.enqueue(Reply.stream([events[0], Pause(0.8), *events[1:]]))
    start = time.perf_counter()
    with client.chat_completion_stream(REQUEST) as stream:
        first = next(stream)
        first_at = time.perf_counter() - start
        rest = list(stream)
    assert first.text() == events[0].text()
    assert first_at < 0.5, "the first event waited for the bytes after it"
    assert rest[0].chunk_latency >= timedelta(seconds=0.5)
    assert rest[-1].is_last_chunk


@pytest.mark.parametrize("size", [1, 3, 7, 64])
def test_events_trickled_in_small_pieces_give_the_same_chunks(client, server, size):
    server.enqueue(Reply.trickle(Reply.stream(), chunk_size=size, delay=0))
    assert list(client.chat_completion_stream(REQUEST)) == server.default_chunks(REQUEST.with_streaming())


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_any_line_ending_comments_pings_and_a_bom(client, server, newline):
    def event(data: str, *extra: str) -> str:
        return "".join(line + newline for line in (*extra, f"data: {data}", ""))

    items = [
        "\ufeff: keep-alive" + newline + newline,
        event(json.dumps(chunk("a"))),
        event("{}", "event: ping"),
        event(json.dumps(chunk("b", finish="stop")), "id: 2", "retry: 10"),
        event("[DONE]"),
    ]
    server.enqueue(Reply.trickle(Reply.stream(items, done=False), chunk_size=5, delay=0))
    chunks = list(client.chat_completion_stream(REQUEST))
    assert [c.text() for c in chunks] == ["a", "b"]
    assert chunks[-1].is_last_chunk


def test_final_response_equals_the_plain_answer(client, server):
    requests = [
        REQUEST,
        REQUEST.with_n(2),
        REQUEST.with_max_tokens(2),
        REQUEST.with_json_schema({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
        REQUEST.with_tools(
            [chatdsl.Tool.of("f", {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]})]
        ).with_tool_choice("any"),
    ]
    for request in requests:
        plain = client.chat_completion(request)
        with client.chat_completion_stream(request) as stream:
            chunks = list(stream)
        merged = stream.final_response()
        assert merged == plain, request
        assert merged.latency == chunks[-1].total_latency
        assert merged.request_id == stream.request_id
        assert merged.rate_limit == plain.rate_limit


def test_is_last_chunk_on_the_chunk_finishing_every_expected_choice(client, server):
    server.enqueue(Reply.stream(default_n2 := server.default_chunks(REQUEST.with_n(2).with_streaming())))
    chunks = list(client.chat_completion_stream(REQUEST.with_n(2)))
    assert [c.is_last_chunk for c in chunks] == [False] * (len(default_n2) - 1) + [True]


def test_without_finish_reasons_done_adds_an_empty_last_chunk(client, server):
    server.enqueue(Reply.stream([chunk("a"), chunk("b"), Pause(0.05)]))
    chunks = list(client.chat_completion_stream(REQUEST))
    assert [c.text() for c in chunks] == ["a", "b", ""]
    assert [c.is_last_chunk for c in chunks] == [False, False, True]
    marker = chunks[-1]
    assert marker.choices == ()
    assert marker.error is None
    assert (marker.id, marker.model) == ("cmpl-1", "m")


def test_a_chunk_followed_by_done_in_the_same_read_is_marked_last(client, server):
    last = "data: " + json.dumps(chunk("b")) + "\n\ndata: [DONE]\n\n"
    server.enqueue(Reply.stream([chunk("a"), last], done=False))
    chunks = list(client.chat_completion_stream(REQUEST))
    assert [(c.text(), c.is_last_chunk) for c in chunks] == [("a", False), ("b", True)]


def test_chunks_after_the_finishing_one_are_marked_last_too(client, server):
    usage_only = chunk() | {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    server.enqueue(Reply.stream([chunk("a", finish="stop"), usage_only]))
    chunks = list(client.chat_completion_stream(REQUEST))
    assert [c.is_last_chunk for c in chunks] == [True, True]
    stream_usage = chunks[-1].usage
    assert stream_usage == UsageInfo(prompt_tokens=1, completion_tokens=2, total_tokens=3)


# ------------------------------------------------------------------------------ merging


def test_tool_call_deltas_are_merged_by_index(client, server):
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}
    second = {"index": 1, "id": "call_2", "function": {"name": "put", "arguments": '{"k": '}}
    server.enqueue(
        Reply.stream(
            [
                chunk(delta={"role": "assistant", "tool_calls": [first]}),
                chunk(delta={"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}),
                chunk(delta={"tool_calls": [second, {"index": 0, "function": {"arguments": "1}"}}]}),
                chunk(
                    delta={"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "x", "arguments": "2}"}}]}
                ),
                chunk(finish="tool_calls", usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
            ]
        )
    )
    with client.chat_completion_stream(REQUEST) as stream:
        list(stream)
    response = stream.final_response()
    message = response.assistant_message()
    assert message.tool_calls == (
        ToolCall(id="call_1", index=0, function=FunctionCall(name="get", arguments='{"a": 1}')),
        ToolCall(id="call_2", index=1, function=FunctionCall(name="put", arguments='{"k": 2}')),
    )
    assert message.content is chatdsl.UNSET
    assert response.choices[0].finish_reason is FinishReason.TOOL_CALLS
    assert response.usage.total_tokens == 7
    assert (response.id, response.model, response.object) == ("cmpl-1", "m", "chat.completion")


def test_content_parts_are_merged(client, server):
    def think(text: str) -> list[dict]:
        return [{"type": "thinking", "thinking": [{"type": "text", "text": text}]}]

    server.enqueue(
        Reply.stream(
            [
                chunk(delta={"content": think("hm")}),
                chunk(delta={"content": think("m.")}),
                chunk("The "),
                chunk(delta={"content": [{"type": "text", "text": "answer"}]}, finish="stop"),
            ]
        )
    )
    with client.chat_completion_stream(REQUEST) as stream:
        list(stream)
    assert stream.final_response().assistant_message().content == (
        ThinkChunk(thinking=(TextChunk(text="hmm."),)),
        TextChunk(text="The answer"),
    )


def test_choices_are_merged_separately(client, server):
    server.enqueue(
        Reply.stream([chunk("a", index=1), chunk("x", index=0), chunk("b", index=1, finish="length"), chunk("y")])
    )
    with client.chat_completion_stream(REQUEST) as stream:
        list(stream)
    choices = stream.final_response().choices
    assert [(c.index, c.message.content, c.finish_reason) for c in choices] == [
        (0, "xy", None),
        (1, "ab", FinishReason.LENGTH),
    ]


# ------------------------------------------------------------------------------ errors before and after


def test_an_error_status_raises_from_the_call(client, server):
    server.enqueue(Reply.error(429, "slow down", retry_after=3))
    with pytest.raises(RateLimitError) as info:
        client.chat_completion_stream(REQUEST, max_retries=0)
    assert info.value.retry_after == 3


def test_a_json_answer_to_a_stream_request_raises_from_the_call(client, server):
    server.enqueue(Reply.json({"object": "error", "message": "streaming disabled"}))
    with pytest.raises(chatdsl.MalformedResponseError, match="got a JSON body: 'streaming disabled'") as info:
        client.chat_completion_stream(REQUEST)
    assert info.value.status_code == 200
    assert info.value.request_id
    assert len(server.requests) == 1


def test_a_stream_is_retried_before_its_first_byte(client, server):
    server.enqueue(Reply.error(503), Reply.drop())
    with client.chat_completion_stream(REQUEST) as stream:
        chunks = list(stream)
    assert stream.retries_taken == 2
    assert stream.final_response().retries_taken == 2
    assert chunks[-1].error is None


def test_a_stream_is_never_retried_after_its_headers(client, server):
    server.enqueue(Reply.stream_cut(after=0))
    chunks = list(client.chat_completion_stream(REQUEST))
    assert len(chunks) == 1
    assert isinstance(chunks[0].error, StreamError)
    assert len(server.requests) == 1


def test_exhausted_retries_raise_from_the_call(client, server):
    server.enqueue(*[Reply.error(502)] * 3)
    with pytest.raises(InternalServerError):
        client.chat_completion_stream(REQUEST)
    assert len(server.requests) == 3


FAULTS = {
    "cut": (Reply.stream_cut(after=2), 2, "the stream was cut", APIConnectionError),
    "reset": (Reply.stream_cut(after=2, reset=True), 2, "the stream was cut", APIConnectionError),
    "cut mid-event": (Reply.stream_cut(after=2, mid_event=True), 2, "the stream was cut", APIConnectionError),
    "malformed": (Reply.stream_malformed(after=2), 2, "malformed event: its data is not JSON", None),
    "error event": (Reply.stream_error("the model is overloaded", after=2), 2, "the model is overloaded", None),
    "error type": (
        Reply.stream([chunk("a"), 'event: error\ndata: {"message": "quota"}\n\n']),
        1,
        "error event: quota",
        None,
    ),
    # the content is complete (the last chunk has its finish reason, so it is marked last) but [DONE] is missing
    "no [DONE]": (Reply.stream(done=False), 7, "ended without [DONE]", None),  # the role chunk, 6 of text
    "stall": (Reply.stream_stall(1.0, after=2), 2, "the stream stalled: no data for 0.3 s", APITimeoutError),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_every_mid_stream_fault_ends_with_an_error_chunk(make_client, server, fault):
    reply, good, message, cause = fault
    server.enqueue(reply)
    with make_client(KEY, base_url=server.url, timeout=Timeout(read=0.3)) as client:
        start = time.perf_counter()
        with client.chat_completion_stream(REQUEST) as stream:
            chunks = list(stream)  # never raises
        assert time.perf_counter() - start < 3
    *before, last = chunks
    assert len(before) == good
    assert all(c.error is None for c in before)
    assert [c.is_last_chunk for c in before] == [c.choices[0].finish_reason is not None for c in before]
    assert last.is_last_chunk
    assert last.choices == ()
    assert isinstance(last.error, StreamError)
    assert message in str(last.error)
    assert stream.error is last.error
    assert not stream.completed
    if cause is not None:
        assert isinstance(last.error.__cause__, cause)
        assert last.error.__cause__.__cause__ is not None
    assert last.id == before[0].id if before else True
    with pytest.raises(StreamError) as info:
        stream.final_response()  # a failed stream gives no silently partial answer
    assert info.value is last.error
    partial = stream.final_response(partial=True)
    assert partial.text() == "".join(c.text() for c in before)
    assert len(server.requests) == 1


def test_an_idle_stream_ends_after_the_read_timeout_not_later(make_client, server):
    server.enqueue(Reply.stream_stall(2.0, after=1))
    with make_client(KEY, base_url=server.url, timeout=Timeout(read=0.25)) as client:
        stream = client.chat_completion_stream(REQUEST)
        next(stream)
        start = time.perf_counter()
        last = next(stream)
        waited = time.perf_counter() - start
    assert 0.2 <= waited < 1.5
    assert isinstance(last.error, StreamError)


# ------------------------------------------------------------------------------ releasing the connection


def test_breaking_out_of_a_for_loop_in_a_with_block_releases_the_connection(client, server):
    server.enqueue(Reply.stream(delay=0.3))
    with client.chat_completion_stream(REQUEST) as stream:
        for c in stream:
            if c.text():  # past the role chunk
                break
        assert not stream.closed  # the loop may go on: breaking out of it does not close the stream
    assert stream.closed
    assert server.wait_idle(1.0), "the connection was not closed at once"
    [last] = list(stream)  # closed before its end: one error chunk says so
    assert last.error is stream.error
    assert "closed by the caller" in str(stream.error)
    assert stream.final_response(partial=True).text()  # what arrived is kept
    assert client.chat_completion(REQUEST).text()  # the client goes on


def test_leaving_the_with_block_releases_the_connection(client, server):
    server.enqueue(Reply.stream(delay=0.3))
    with client.chat_completion_stream(REQUEST) as stream:
        next(stream)
    assert stream.closed
    assert server.wait_idle(1.0)
    assert isinstance(next(stream).error, StreamError)  # the stream was closed before its end
    with pytest.raises(StopIteration):
        next(stream)


def test_close_is_idempotent_and_repr_is_plain(client, server):
    # the body still arriving when the stream is closed (aiohttp pools a connection whose body has all arrived)
    server.enqueue(Reply.stream(delay=0.3))
    stream = client.chat_completion_stream(REQUEST)
    assert "open" in repr(stream)
    stream.close()
    stream.close()
    assert "closed" in repr(stream)
    assert KEY not in repr(stream)
    assert server.wait_idle(1.0)


def test_a_complete_stream_gives_its_connection_back(client, server):
    for _ in range(3):
        list(client.chat_completion_stream(REQUEST))
    client.chat_completion(REQUEST)
    assert server.connections_accepted == 1


# ------------------------------------------------------------------------------ arbitrary bytes


def test_arbitrary_bytes_end_in_chunks_and_at_most_one_error_never_an_exception(make_client):
    with LocalServer(strict=False) as server, make_client(KEY, base_url=server.url, timeout=Timeout(read=2)) as client:

        @settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(
            st.lists(
                st.binary(max_size=40)
                | st.sampled_from([b"data: ", b"\n\n", b"\r\n", b"data: [DONE]\n\n", json.dumps(chunk("x")).encode()]),
                max_size=8,
            )
        )
        def check(pieces: list[bytes]) -> None:
            server.enqueue(Reply.stream(pieces, done=False))
            with client.chat_completion_stream(REQUEST) as stream:
                chunks = list(stream)
            assert chunks, "a stream always ends with a chunk"
            assert chunks[-1].is_last_chunk
            assert all(isinstance(c, CompletionChunk) for c in chunks)
            assert all(c.error is None for c in chunks[:-1])
            if stream.completed:
                assert chunks[-1].error is None
            else:
                assert isinstance(chunks[-1].error, StreamError)

        check()


def test_stream_choice_types():
    chunk_ = CompletionChunk(choices=(CompletionResponseStreamChoice(delta=AssistantMessage(content="x")),))
    assert chunk_.text() == "x"


# ------------------------------------------------------------------ fidelity to what the API sends today


def test_a_merged_tool_call_keeps_its_index_as_the_plain_answer_does(client: Client, server: LocalServer) -> None:
    call = {"id": "call_1", "type": "function", "index": 0, "function": {"name": "get", "arguments": '{"a": 1}'}}
    server.enqueue(
        Reply.stream(
            [
                chunk(
                    delta={"role": "assistant", "tool_calls": [{**call, "function": {"name": "get", "arguments": ""}}]}
                ),
                chunk(delta={"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]}),
                chunk(finish="tool_calls"),
            ]
        )
    )
    body = {"id": "cmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": "m"}
    message = {"role": "assistant", "content": "", "tool_calls": [call]}
    server.enqueue(Reply.json({**body, "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}))
    with client.chat_completion_stream(REQUEST) as stream:
        list(stream)
    merged = stream.final_response().choices[0].message.tool_calls
    plain = client.chat_completion(REQUEST).choices[0].message.tool_calls
    assert merged == plain == (ToolCall(id="call_1", index=0, function=FunctionCall(name="get", arguments='{"a": 1}')),)


def test_a_stream_without_usage_has_no_usage_not_zero(client: Client, server: LocalServer) -> None:
    server.enqueue(Reply.stream([chunk("hi"), chunk(finish="stop")]))  # as llama-cpp-python streams
    with client.chat_completion_stream(REQUEST) as stream:
        chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    assert stream.final_response().usage is None


def test_string_reference_ids_stream_and_parse(client: Client, server: LocalServer) -> None:
    parts = [{"type": "text", "text": "see "}, {"type": "reference", "reference_ids": ["widget", 3]}]
    server.enqueue(Reply.stream([chunk(delta={"content": parts}), chunk(finish="stop")]))
    with client.chat_completion_stream(REQUEST) as stream:
        list(stream)
    assert stream.error is None
    content = stream.final_response().choices[0].message.content
    assert content == (TextChunk(text="see "), chatdsl.ReferenceChunk(reference_ids=("widget", 3)))
    body = {"id": "c", "model": "m", "created": 1, "choices": [{"index": 0, "message": {"content": parts}}]}
    server.enqueue(Reply.json(body))
    assert client.chat_completion(REQUEST).choices[0].message.content == content


@pytest.mark.parametrize("ending", [b"data: [DONE]\n", b"data: [DONE]\r\n", b"data:[DONE]\r"])
def test_done_without_a_blank_line_at_the_end_of_the_body_ends_the_stream(
    client: Client, server: LocalServer, ending: bytes
) -> None:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in (chunk("hi"), chunk(finish="stop")))
    server.enqueue(Reply.raw(body + ending, content_type="text/event-stream"))
    with client.chat_completion_stream(REQUEST) as stream:
        chunks = list(stream)
    assert stream.error is None
    assert stream.completed
    assert [c.error for c in chunks] == [None, None]
    assert stream.final_response().text() == "hi"


@pytest.mark.parametrize("ending", [b"data: [DONE]", b"data: [DON", b"data: [DONE]\ndata: more\n"])
def test_an_unfinished_done_line_is_still_a_cut_stream(client: Client, server: LocalServer, ending: bytes) -> None:
    body = b"data: " + json.dumps(chunk("hi")).encode() + b"\n\n"
    server.enqueue(Reply.raw(body + ending, content_type="text/event-stream"))
    with client.chat_completion_stream(REQUEST) as stream:
        chunks = list(stream)
    assert not stream.completed  # the last one: an event whose data is "[DONE]\nmore" is no sentinel
    assert isinstance(chunks[-1].error, StreamError)
    assert "cut in the middle of an event" in str(chunks[-1].error)
