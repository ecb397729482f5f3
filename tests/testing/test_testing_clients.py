"""chatdsl.testing.LocalServer driven by the popular clients themselves, over loopback.

Each test points a real package at the server the way the README's table shows (the ``mistralai`` SDK's
``server_url``, ``openai``'s ``base_url``, langchain-mistralai's ``endpoint`` with ``/v1``, litellm's
``api_base``) and is skipped when that package is not installed (``pip install -e '.[clients]'``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from chatdsl.testing import LocalServer

KEY = "sk-local-clients-3c1e"  # not the suite's guarded test key: these packages' own logging is not ours to police
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city", "days"],
        },
    },
}
MISTRAL_TOOL_CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")


@pytest.fixture
def mistral_server() -> Iterator[LocalServer]:
    with LocalServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def openai_server() -> Iterator[LocalServer]:
    with LocalServer(api_key=KEY, dialect="openai") as server:
        yield server


# ------------------------------------------------------------------------------------ mistralai SDK


def test_mistralai_sdk_with_server_url(mistral_server: LocalServer) -> None:
    mistralai = pytest.importorskip("mistralai.client")
    client = mistralai.Mistral(api_key=KEY, server_url=mistral_server.url)
    messages = [{"role": "user", "content": "hello there"}]
    response = client.chat.complete(model="mistral-small-latest", messages=messages)
    assert response.choices[0].message.content == "echo: hello there"
    assert response.usage.total_tokens > 0

    text = ""
    for event in client.chat.stream(model="mistral-small-latest", messages=messages):
        text += event.data.choices[0].delta.content or ""
    assert text == "echo: hello there"

    models = client.models.list()
    assert "mistral-small-latest" in [card.id for card in models.data or []]


def test_mistralai_sdk_tool_loop_with_the_servers_ids(mistral_server: LocalServer) -> None:
    mistralai = pytest.importorskip("mistralai.client")
    client = mistralai.Mistral(api_key=KEY, server_url=mistral_server.url)
    messages: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    first = client.chat.complete(model="m", messages=messages, tools=[WEATHER], tool_choice="any")
    (call,) = first.choices[0].message.tool_calls
    assert MISTRAL_TOOL_CALL_ID.fullmatch(call.id)
    messages += [first.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = client.chat.complete(model="m", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "The tool get_weather returned: sunny"


def test_mistralai_sdk_sees_the_apis_400_for_an_invented_tool_call_id(mistral_server: LocalServer) -> None:
    mistralai = pytest.importorskip("mistralai.client")
    client = mistralai.Mistral(api_key=KEY, server_url=mistral_server.url)
    call = {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
    ]
    errors = pytest.importorskip("mistralai.client.errors")
    with pytest.raises(errors.MistralError) as caught:
        client.chat.complete(model="m", messages=messages)
    assert caught.value.status_code == 400
    body = json.loads(caught.value.body)
    assert body["message"] == "Tool call id was call_0 but must be a-z, A-Z, 0-9, with a length of 9."


# ------------------------------------------------------------------------------------------- openai


def test_openai_with_base_url(openai_server: LocalServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key=KEY, base_url=openai_server.url + "/v1", max_retries=0)
    messages = [{"role": "user", "content": "hello there"}]
    response = client.chat.completions.create(model="gpt-x", messages=messages)
    assert response.id.startswith("chatcmpl-")
    assert response.choices[0].message.content == "echo: hello there"

    short = client.chat.completions.create(model="gpt-x", messages=messages, max_completion_tokens=1)
    assert (short.choices[0].message.content, short.choices[0].finish_reason) == ("echo:", "length")

    stream = client.chat.completions.create(
        model="gpt-x", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    assert [m.id for m in client.models.list()][:1] == ["mistral-small-latest"]


def test_openai_tool_call_and_error_types(openai_server: LocalServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key=KEY, base_url=openai_server.url + "/v1", max_retries=0)
    messages = [{"role": "user", "content": "weather in Paris?"}]
    response = client.chat.completions.create(model="gpt-x", messages=messages, tools=[WEATHER], tool_choice="required")
    (call,) = response.choices[0].message.tool_calls
    assert call.id.startswith("call_")
    assert json.loads(call.function.arguments)["days"] >= 1

    from chatdsl.testing import Reply

    openai_server.enqueue(Reply.error(429), Reply.error(500))
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-x", messages=messages)
    assert limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="gpt-x", messages=messages)
    assert failed.value.type == "server_error"


# --------------------------------------------------------------------------------- langchain-mistralai


def test_langchain_mistralai_with_endpoint(mistral_server: LocalServer) -> None:
    chat_models = pytest.importorskip("langchain_mistralai")
    model = chat_models.ChatMistralAI(
        model="mistral-small-latest", api_key=KEY, endpoint=mistral_server.url + "/v1", max_retries=0
    )
    assert model.invoke("hello there").content == "echo: hello there"
    assert "".join(str(chunk.content) for chunk in model.stream("hello there")) == "echo: hello there"

    with_tools = model.bind_tools([WEATHER], tool_choice="any")
    (call,) = with_tools.invoke("weather in Paris?").tool_calls
    assert call["name"] == "get_weather"
    assert MISTRAL_TOOL_CALL_ID.fullmatch(call["id"] or "")


# ------------------------------------------------------------------------------------------ litellm


@pytest.fixture
def litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of the cost map at import
    return pytest.importorskip("litellm")


def test_litellm_mistral_with_api_base(litellm: Any, mistral_server: LocalServer) -> None:
    messages = [{"role": "user", "content": "hello there"}]
    base = mistral_server.url + "/v1"
    response = litellm.completion(model="mistral/mistral-small-latest", messages=messages, api_key=KEY, api_base=base)
    assert response.choices[0].message.content == "echo: hello there"
    stream = litellm.completion(
        model="mistral/mistral-small-latest", messages=messages, api_key=KEY, api_base=base, stream=True
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "echo: hello there"
    assert mistral_server.last_request is not None
    assert mistral_server.last_request.path == "/v1/chat/completions"


def test_litellm_openai_compatible_with_api_base(litellm: Any, openai_server: LocalServer) -> None:
    messages = [{"role": "user", "content": "hello there"}]
    response = litellm.completion(
        model="openai/gpt-x", messages=messages, api_key=KEY, api_base=openai_server.url + "/v1"
    )
    assert response.choices[0].message.content == "echo: hello there"
