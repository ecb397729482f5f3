"""One template, two kinds of server: Mistral's API and an OpenAI-compatible one.

Run: python examples/other_servers.py

It sends the same request to two ``chatdsl.testing.LocalServer`` instances on 127.0.0.1, one
speaking each dialect, so it runs offline. Against real servers only the clients change::

    chatdsl.Client()                                         # Mistral, MISTRAL_API_KEY
    chatdsl.Client(dialect="openai")                         # OpenAI, OPENAI_API_KEY
    chatdsl.Client(base_url="http://localhost:8000", dialect="openai")   # vLLM (llama.cpp: 8080,
                                                             # Ollama: 11434, LM Studio: 1234), no key
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import chatdsl
from chatdsl.testing import LocalServer

template = (
    chatdsl.chat("small-model")
    .system("Answer in one short sentence.")
    .user("$question")
    .with_temperature(0)
    .with_random_seed(42)
    .with_max_tokens(32)
)
request = template.render(question="What is the capital of France?")


def show(title: str, body: Any) -> None:
    print(f"# {title}")
    print(json.dumps(body, indent=2, ensure_ascii=False))


for dialect in chatdsl.Dialect:
    show(f"the {dialect} wire body", request.to_dict(dialect=dialect))

with LocalServer() as mistral_server, LocalServer(dialect="openai") as openai_server:
    mistral = chatdsl.Client("local-key", base_url=mistral_server.url)  # Mistral's API needs a key
    openai = chatdsl.Client(base_url=openai_server.url, dialect="openai")  # a local server needs none
    with mistral, openai:
        print("# the same request, answered by each")
        for client in (mistral, openai):
            answer = client.chat_completion(request)
            tokens = answer.usage.total_tokens if answer.usage else None  # None: the server reported no usage
            print(f"{client.dialect:>7}: {answer.text()!r}, {tokens} tokens")
        print("# streamed: the usage arrives on the last chunk in both dialects")
        for client in (mistral, openai):
            with client.chat_completion_stream(request) as stream:
                chunks = list(stream)
            last = chunks[-1]
            usage = last.usage.total_tokens if last.usage else None
            print(
                f"{client.dialect:>7}: {len(chunks)} chunks, last one is_last_chunk={last.is_last_chunk}, usage={usage}"
            )
        authorization = openai_server.last_request.authorization if openai_server.last_request else None
        print(f"Authorization header sent to the key-less server: {authorization}")

print("# what has no equivalent on an OpenAI-compatible server is refused before sending")
mistral_only = request.with_safe_prompt().with_prompt_mode("reasoning")
try:
    mistral_only.to_dict(dialect="openai")
except chatdsl.ValidationError as exc:
    print(exc)

print("# ...or left out and logged, when you say so")
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
logging.getLogger("chatdsl").addHandler(handler)
logging.getLogger("chatdsl").setLevel(logging.INFO)
show("the openai wire body with drop_unsupported=True", mistral_only.to_dict(dialect="openai", drop_unsupported=True))
