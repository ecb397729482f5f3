"""count_tokens equals mistral-common's own encoding of the same request; no network is used."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("mistral_common")

from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.request import ChatCompletionRequest as MistralRequest
from mistral_common.protocol.instruct.tool_calls import Function as MFunction
from mistral_common.protocol.instruct.tool_calls import FunctionCall as MFunctionCall
from mistral_common.protocol.instruct.tool_calls import Tool as MTool
from mistral_common.protocol.instruct.tool_calls import ToolCall as MToolCall
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

import chatdsl
from chatdsl.model.messages import FunctionCall, ToolCall
from chatdsl.model.tools import Function, Tool
from chatdsl.tokens import TokenCount, count_tokens


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = socket.socket.connect

    def connect(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else ""
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test refuses a non-loopback connect to {address!r}")
        return real(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    return


def _encode(tokenizer: MistralTokenizer, messages: list[object], tools: list[MTool] | None = None) -> int:
    return len(tokenizer.encode_chat_completion(MistralRequest(messages=messages, tools=tools)).tokens)


WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize(
    ("model", "factory"),
    [
        ("mistral-medium-2312", MistralTokenizer.v1),
        ("mistral-small-2402", MistralTokenizer.v2),
        ("mistral-large-2407", MistralTokenizer.v3),
        ("open-mistral-nemo-2407", lambda: MistralTokenizer.v3(is_tekken=True)),
        ("mistral-large-2411", MistralTokenizer.v7),
    ],
)
def test_system_and_user_equal_mistral_common(model: str, factory: object) -> None:
    request = chatdsl.chat(model).system("You are terse.").user("What is the capital of France?")
    expected = _encode(
        factory(),  # type: ignore[operator]
        [SystemMessage(content="You are terse."), UserMessage(content="What is the capital of France?")],
    )
    assert count_tokens(request) == TokenCount(tokens=expected, tokenizer=model, exact=True)


@pytest.mark.parametrize(
    ("model", "factory"),
    [
        ("mistral-large-2407", MistralTokenizer.v3),
        ("ministral-8b-2410", lambda: MistralTokenizer.v3(is_tekken=True)),
        ("mistral-large-2411", MistralTokenizer.v7),
    ],
)
def test_tools_tool_calls_and_results_equal_mistral_common(model: str, factory: object) -> None:
    request = (
        chatdsl.chat(model)
        .with_tools([Tool(function=Function(name="weather", description="Weather of a city", parameters=WEATHER))])
        .user("Weather in Paris?")
        .assistant(
            tool_calls=[ToolCall(id="abcdefghi", function=FunctionCall(name="weather", arguments='{"city": "Paris"}'))]
        )
        .tool("sunny", tool_call_id="abcdefghi", name="weather")
        .assistant("It is sunny.")
        .user("And tomorrow?")
    )
    expected = _encode(
        factory(),  # type: ignore[operator]
        [
            UserMessage(content="Weather in Paris?"),
            AssistantMessage(
                tool_calls=[
                    MToolCall(id="abcdefghi", function=MFunctionCall(name="weather", arguments='{"city": "Paris"}'))
                ]
            ),
            ToolMessage(content="sunny", tool_call_id="abcdefghi", name="weather"),
            AssistantMessage(content="It is sunny."),
            UserMessage(content="And tomorrow?"),
        ],
        [MTool(function=MFunction(name="weather", description="Weather of a city", parameters=WEATHER))],
    )
    assert count_tokens(request).tokens == expected


def test_unknown_model_is_approximate_with_the_nearest_tokenizer() -> None:
    request = chatdsl.chat("mistral-large-latest").user("hello there")
    result = count_tokens(request)
    assert result.exact is False
    assert result.tokenizer == "mistral-large-2411"
    assert result.note is not None
    assert "'mistral-large-latest'" in result.note
    assert "approximate" in result.note
    assert result.tokens == _encode(MistralTokenizer.v7(), [UserMessage(content="hello there")])


def test_a_tokenizer_file_gives_an_exact_count() -> None:
    path = MistralTokenizer._data_path() / "tekken_240718.json"
    request = chatdsl.chat("my-finetune").user("hello there")
    result = count_tokens(request, tokenizer=path)
    assert result.exact is True
    assert result.tokenizer == "tekken_240718.json"
    assert result.tokens == _encode(MistralTokenizer.v3(is_tekken=True), [UserMessage(content="hello there")])
    assert count_tokens(request, tokenizer=MistralTokenizer.v1()).tokens == _encode(
        MistralTokenizer.v1(), [UserMessage(content="hello there")]
    )


def test_a_missing_tokenizer_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.json"):
        count_tokens(chatdsl.chat("m").user("x"), tokenizer=tmp_path / "nope.json")


@given(st.lists(st.text(min_size=1, max_size=40).filter(str.strip), min_size=1, max_size=4))
def test_text_messages_property(texts: list[str]) -> None:
    request = chatdsl.chat("mistral-large-2411")
    messages: list[object] = []
    for i, text in enumerate(texts):
        if i % 2:
            request, message = request.assistant(text), AssistantMessage(content=text)
        else:
            request, message = request.user(text), UserMessage(content=text)
        messages.append(message)
    if len(texts) % 2 == 0:  # mistral-common wants the last message from the user
        request, messages = request.user("ok"), [*messages, UserMessage(content="ok")]
    assert count_tokens(request).tokens == _encode(MistralTokenizer.v7(), messages)


_BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "mistral_common" or name.startswith("mistral_common."):
            raise ImportError("blocked")
sys.meta_path.insert(0, Block())
import chatdsl
assert "mistral_common" not in sys.modules
from chatdsl.tokens import count_tokens
try:
    count_tokens(chatdsl.chat("m").user("x"))
except ImportError as exc:
    assert isinstance(exc, chatdsl.ChatDSLError)
    print(exc)
"""


def test_without_the_extra_the_error_names_it() -> None:
    done = subprocess.run([sys.executable, "-c", _BLOCKED], capture_output=True, text=True, check=True)
    assert "pip install 'chatdsl[tokens]'" in done.stdout


def test_import_chatdsl_does_not_import_mistral_common() -> None:
    code = "import sys, chatdsl; print('mistral_common' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_part_mistral_common_cannot_count_is_named() -> None:
    request = chatdsl.ChatCompletionRequest.from_dict(
        {
            "model": "mistral-large-2411",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "read this"},
                        {"type": "document_url", "document_url": "https://example.com/a.pdf"},
                    ],
                },
            ],
        }
    )
    with pytest.raises(ValueError, match=r"messages\[2\]\.content\[1\]: .*'document_url'"):
        count_tokens(request)
