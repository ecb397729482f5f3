"""The response model: ``response.message`` (the first choice's answer, never ``None``) and its types."""

from __future__ import annotations

import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from chatdsl import AssistantMessage, ChatCompletionChoice, ChatCompletionResponse, CompletionChunk, OutputError

ROOT = Path(__file__).resolve().parents[2]


def test_message_is_the_first_choice_message() -> None:
    first, second = AssistantMessage(content='{"a": 1}'), AssistantMessage(content="other")
    response = ChatCompletionResponse(
        choices=(ChatCompletionChoice(index=0, message=first), ChatCompletionChoice(index=1, message=second))
    )
    assert response.message is first
    assert response.message.output() == {"a": 1}


def test_message_without_a_choice_is_an_output_error_naming_the_response() -> None:
    response = ChatCompletionResponse(id="cmpl-7", model="mistral-small-latest")
    with pytest.raises(OutputError) as caught:
        response.message  # noqa: B018 - the property raises
    assert caught.value.path == "choices"
    assert "'cmpl-7'" in str(caught.value)
    assert "'mistral-small-latest'" in str(caught.value)
    assert "no choice" in str(caught.value)
    assert response.assistant_message() is None  # the optional spelling stays


def test_mypy_types_message_output_and_chunks_without_optional(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = pytest.importorskip("mypy.api")
    monkeypatch.setenv("MYPYPATH", str(ROOT))  # this checkout's chatdsl, wherever pytest runs from
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from datetime import timedelta
            from typing import Any, assert_type

            import attrs

            from chatdsl import AssistantMessage, ChatCompletionResponse, Client, StreamError, ToolCall, chat


            @attrs.frozen
            class City:
                name: str


            def check(client: Client, response: ChatCompletionResponse, call: ToolCall) -> None:
                assert_type(client.chat_completion(chat("m").user("Paris?")).message.output(City), City)
                assert_type(response.message, AssistantMessage)
                assert_type(response.message.output(int), int)
                assert_type(response.message.output(str), str)
                assert_type(response.message.output(list[City]), list[City])
                assert_type(response.message.output(), dict[str, Any])
                assert_type(call.parse_arguments(int), int)
                assert_type(call.parse_arguments(City), City)


            def stream(client: Client) -> float:
                total = 0.0
                with client.chat_completion_stream(chat("m").user("Hi")) as chunks:
                    for chunk in chunks:
                        assert_type(chunk.error, StreamError | None)
                        if chunk.error is not None:
                            raise chunk.error
                        assert_type(chunk.total_latency, timedelta)
                        total += chunk.chunk_latency.total_seconds()  # no assert, no Optional
                return total
            """
        )
    )
    limit = sys.getrecursionlimit()
    try:
        out, err, status = api.run(
            ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(snippet)]
        )
    finally:
        sys.setrecursionlimit(limit)  # mypy raises it for the whole process; later tests rely on the default
    assert status == 0, out + err


def test_a_chunk_no_stream_timed_says_so_when_its_latency_is_read() -> None:
    chunk = CompletionChunk.from_dict({"id": "chunk-3", "choices": []})
    for name in ("chunk_latency", "total_latency"):
        with pytest.raises(AttributeError, match=rf"'chunk-3' has no {name}: only the chunks a client's stream"):
            getattr(chunk, name)
        assert getattr(chunk, name, None) is None
    timed = CompletionChunk(id="c", chunk_latency=timedelta(milliseconds=3), total_latency=timedelta(seconds=1))
    assert (timed.chunk_latency, timed.total_latency) == (timedelta(milliseconds=3), timedelta(seconds=1))
    assert timed == chunk.__class__(id="c")  # the timing is a fact of the exchange, not compared
