"""Quick start: one shared template, derived requests, and the four ways of sending them.

Run: python examples/quickstart.py

With ``MISTRAL_API_KEY`` set it talks to the real API. Without it, it starts
``chatdsl.testing.LocalServer`` on 127.0.0.1 (a deterministic offline server) and says so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import attrs

import chatdsl

# A base request defined once: the model, the system prompt and the sampling settings.
BASE = (
    chatdsl.chat("mistral-small-latest")
    .system("You are a concise assistant. Answer in one sentence.")
    .with_temperature(0)
    .with_max_tokens(200)
)


@attrs.frozen
class Place:
    """A city and the country it is in."""

    city: str
    country: str


@chatdsl.tool
def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name, in English.
    """
    return f"18 °C and clear in {city}"


@contextlib.contextmanager
def client() -> Iterator[chatdsl.Client]:
    """A client of the real API when ``MISTRAL_API_KEY`` is set, else of a local test server."""
    if os.environ.get("MISTRAL_API_KEY"):
        print("Using the Mistral API (MISTRAL_API_KEY is set).")
        with chatdsl.Client() as real:
            yield real
        return
    from chatdsl.testing import LocalServer

    print("MISTRAL_API_KEY is not set: answering from chatdsl.testing.LocalServer on 127.0.0.1 (offline).")
    with LocalServer() as server, chatdsl.Client(api_key="offline", base_url=server.url) as local:
        yield local


def main() -> None:
    """Derive requests from the template, print one wire body, then send them four ways."""
    plain = BASE.user("What is the capital of France?")
    story = BASE.user("Tell me a very short story about a lighthouse.")
    structured = BASE.user("Give me a city and its country.").with_json_schema(Place)
    weather = BASE.user("What's the weather in Lisbon?").with_tools([get_weather.tool]).with_tool_choice("any")
    assert len(BASE.messages) == 1  # the template never changes

    print("\n# the wire body of the first request")
    print(plain.to_json(indent=2))

    with client() as api:
        print("\n# a plain call")
        response = api.chat_completion(plain)
        tokens = response.usage.total_tokens if response.usage else None  # None: the server reported no usage
        print(f"{response.text()}  ({tokens} tokens, {response.latency})")

        print("\n# a stream, printed as it arrives")
        with api.chat_completion_stream(story) as stream:
            for chunk in stream:
                if chunk.error is not None:
                    print(f"\n[the stream failed: {chunk.error}]")
                    break
                ms = chunk.chunk_latency.total_seconds() * 1000 if chunk.chunk_latency else 0.0
                print(f"{chunk.text()!r} (+{ms:.1f} ms)", end=" ", flush=True)
        total = stream.final_response().latency
        print(f"\ncomplete in {total}")

        print("\n# a JSON-schema answer parsed into a class")
        place = api.chat_completion(structured).assistant_message()
        print(place.output(Place) if place is not None else None)

        print("\n# a tool call, run by the tool loop")
        result = api.run_tools(weather, [get_weather], max_rounds=3)
        for message in result.conversation.messages[1:]:
            if isinstance(message, chatdsl.AssistantMessage) and message.tool_calls:
                print(f"assistant calls {message.tool_calls[0].name}({message.tool_calls[0].arguments()})")
            else:
                print(f"{message.role.value}: {message.content}")


if __name__ == "__main__":
    main()
