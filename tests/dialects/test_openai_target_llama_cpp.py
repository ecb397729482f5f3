"""Integration tier: the OpenAI dialect against a real llama.cpp server, offline. Not in the default run.

Set ``CHATDSL_LLAMA_CPP_PYTHON`` to an interpreter that has ``llama-cpp-python[server]``, ``gguf`` and
``numpy`` (``pip install "llama-cpp-python[server]" gguf`` builds llama.cpp from PyPI: several minutes
on 2 cores). The tier writes a tiny random-weight model (``tests/_tiny_gguf.py``), starts
``python -m llama_cpp.server`` on 127.0.0.1 and talks to it with ``Client(dialect="openai")``: the
answers are gibberish, the wire format is llama.cpp's own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import chatdsl
from chatdsl import APIError, Client, FinishReason, NotFoundError

PYTHON = os.environ.get("CHATDSL_LLAMA_CPP_PYTHON")

pytestmark = pytest.mark.skipif(not PYTHON, reason="set CHATDSL_LLAMA_CPP_PYTHON to run the llama.cpp tier")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert PYTHON is not None
    folder = tmp_path_factory.mktemp("llama")
    model = folder / "tiny.gguf"
    subprocess.run([PYTHON, str(Path(__file__).parents[1] / "_tiny_gguf.py"), str(model)], check=True, timeout=120)
    port = _free_port()
    log = (folder / "server.log").open("wb")
    command = [PYTHON, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen([*command, "--n_ctx", "512", "--n_threads", "2"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("llama_cpp.server did not start:\n" + (folder / "server.log").read_text(errors="replace"))
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _request() -> chatdsl.ChatCompletionRequest:
    return (
        chatdsl.chat("tiny")
        .system("Answer briefly.")
        .user("What is the capital of France?")
        .with_max_tokens(8)
        .with_temperature(0)
        .with_random_seed(1)
    )


def test_a_plain_answer_from_llama_cpp(llama_url: str) -> None:
    with Client(base_url=llama_url, dialect="openai", max_retries=0) as client:
        response = client.chat_completion(_request())
    [choice] = response.choices
    assert choice.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
    assert isinstance(choice.message.text(), str)
    assert 0 < response.usage.completion_tokens <= 8
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert response.id
    assert response.created is not None
    assert response.request_id  # llama-cpp-python sends x-request-id


def test_a_stream_from_llama_cpp_merges_into_the_plain_answer(llama_url: str) -> None:
    with Client(base_url=llama_url, dialect="openai", max_retries=0) as client:
        plain = client.chat_completion(_request())
        with client.chat_completion_stream(_request()) as stream:
            chunks = list(stream)
        final = stream.final_response()
    assert stream.completed
    assert all(chunk.error is None for chunk in chunks)
    assert chunks[-1].is_last_chunk
    assert [chunk.is_last_chunk for chunk in chunks].index(True) >= len(chunks) - 2  # at most an end marker after it
    assert final.text() == "".join(chunk.text() for chunk in chunks)
    assert final.text() == plain.text()  # temperature 0, same seed
    assert final.choices[0].finish_reason == plain.choices[0].finish_reason
    with_usage = [chunk for chunk in chunks if chunk.usage is not None]
    assert with_usage in ([], [chunks[-1]])  # usage, if the server sends it, is on the last chunk only


def test_an_unknown_path_is_a_not_found_error(llama_url: str) -> None:
    client = Client(base_url=llama_url + "/nowhere", dialect="openai", max_retries=0)
    with client, pytest.raises(NotFoundError) as info:
        client.chat_completion(_request())
    assert info.value.status_code == 404


def test_a_refused_body_is_an_api_error_with_the_servers_words(llama_url: str) -> None:
    client = Client(base_url=llama_url, dialect="openai", max_retries=0)
    with client, pytest.raises(APIError) as info:
        client.chat_completion(_request().with_extra(top_logprobs="many"))
    error = info.value
    assert error.status_code in (400, 422, 500)  # llama-cpp-python 0.3 answers its validation errors with 500
    assert isinstance(error.body, dict)
    assert "error" in error.body
    assert error.message.rstrip("…") in " ".join(str(error.body["error"]["message"]).split())  # the server's words
    assert error.request_id == error.headers["x-request-id"]
