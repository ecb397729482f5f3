"""Tools from plain functions, and the tool loop that runs them.

Run: python examples/tools.py

With ``MISTRAL_API_KEY`` set it asks Mistral; without it, it answers from
``chatdsl.testing.LocalServer`` on 127.0.0.1 (which calls the forced tool with made-up arguments,
then sums up the tool's result) and says so.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
from collections.abc import Iterator

import attrs

import chatdsl


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@attrs.frozen
class Forecast:
    city: str
    temperature: float
    unit: Unit
    sky: str


@chatdsl.tool
def get_weather(city: str, unit: Unit = Unit.CELSIUS) -> Forecast:
    """Get the current weather in a city.

    Args:
        city: The city's name, in English.
        unit: The temperature unit.
    """
    celsius = 18.5  # a real tool would ask a weather service here
    temperature = celsius if unit is Unit.CELSIUS else celsius * 9 / 5 + 32
    return Forecast(city=city, temperature=temperature, unit=unit, sky="clear")


@chatdsl.tool
def local_time(city: str) -> str:
    """Get the local time in a city.

    Args:
        city: The city's name, in English.
    """
    return f"It is 14:05 in {city}."


REQUEST = (
    chatdsl.chat("mistral-small-latest")
    .system("Use the tools to answer; answer in one sentence.")
    .user("What's the weather like in Lisbon right now?")
    .with_tools([get_weather.tool, local_time.tool])
    .with_tool_choice("any")  # the first request must call a tool; later ones use "auto"
)


@contextlib.contextmanager
def client() -> Iterator[chatdsl.Client]:
    """A client of Mistral when ``MISTRAL_API_KEY`` is set, else of a LocalServer."""
    if os.environ.get("MISTRAL_API_KEY"):
        with chatdsl.Client() as real:
            yield real
        return
    from chatdsl.testing import LocalServer

    print("MISTRAL_API_KEY is not set: answering from chatdsl.testing.LocalServer (offline).\n")
    with LocalServer() as server, chatdsl.Client(api_key="offline", base_url=server.url) as local:
        yield local


def main() -> None:
    """Show a tool definition, run the loop, print the transcript and the answer."""
    print("# the tool made from get_weather")
    print(json.dumps(REQUEST.to_dict()["tools"][0], indent=2))
    with client() as api:
        result = api.run_tools(REQUEST, [get_weather, local_time], max_rounds=4)
        print(f"\n# transcript after {result.rounds} requests")
        for message in result.conversation.messages:
            if isinstance(message, chatdsl.AssistantMessage) and message.tool_calls:
                for call in message.tool_calls:
                    print(f"assistant -> {call.name}({call.arguments()})")
            else:
                print(f"{message.role.value}: {message.content}")
        print("\n# the same question again, streamed")
        api.run_tools(REQUEST, [get_weather, local_time], on_text=lambda text: print(text, end="", flush=True))
        print()


if __name__ == "__main__":
    main()
