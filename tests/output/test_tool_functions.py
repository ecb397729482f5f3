"""Tools from functions and types: ``@chatdsl.tool``, ``Tool.from_function``, ``Tool.from_type``."""

from __future__ import annotations

import dataclasses
import enum
import json
import string
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Optional

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import chatdsl
from chatdsl import FunctionCall, FunctionTool, OutputError, Tool, ToolCall, ValidationError
from chatdsl.client.loop import run_tools
from chatdsl.output.schema import parse_docstring


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@attrs.frozen
class Place:
    """A place on Earth."""

    city: str
    country: str = "FR"


@dataclasses.dataclass
class Window:
    start: datetime
    end: datetime | None = None


@chatdsl.tool
def get_weather(city: str, unit: Unit = Unit.CELSIUS) -> str:
    """Get the current weather in a city.

    Uses the nearest station.

    Args:
        city: The city's name,
            in English.
        unit (Unit): The temperature unit.

    Returns:
        A sentence.
    """
    return f"sunny in {city}, 20 degrees {unit.value}"


def test_the_decorator_keeps_the_function_callable() -> None:
    assert isinstance(get_weather, FunctionTool)
    assert get_weather("Paris") == "sunny in Paris, 20 degrees celsius"
    assert get_weather.__name__ == "get_weather"
    assert (get_weather.__doc__ or "").startswith("Get the current weather")
    assert get_weather.name == "get_weather"


def test_the_definition_from_name_docstring_and_signature() -> None:
    function = get_weather.tool.function
    assert function.name == "get_weather"
    assert function.description == "Get the current weather in a city."
    assert function.strict is chatdsl.UNSET
    assert function.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city's name, in English."},
            "unit": {
                "type": "string",
                "enum": ["celsius", "fahrenheit"],
                "description": "The temperature unit.",
                "default": "celsius",
            },
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    wire = chatdsl.chat("m").user("Weather?").with_tools([get_weather.tool]).to_dict()["tools"]
    assert json.loads(json.dumps(wire)) == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": function.parameters,
                "description": "Get the current weather in a city.",
            },
        }
    ]


def test_numpy_docstrings_and_decorator_options() -> None:
    @chatdsl.tool(name="find-flights", description="Search flights.", strict=True)
    def search(origin: str, when: date, passengers: int = 1) -> list[str]:
        """Find flights.

        Parameters
        ----------
        origin : str
            IATA code of the
            departure airport.
        when : date
            Day of travel.
        passengers : int, optional
            How many.
        """
        return [origin, when.isoformat(), str(passengers)]

    function = search.tool.function
    assert (function.name, function.description, function.strict) == ("find-flights", "Search flights.", True)
    properties = function.parameters["properties"]
    assert properties["origin"]["description"] == "IATA code of the departure airport."
    assert properties["when"] == {"type": "string", "format": "date", "description": "Day of travel."}
    assert properties["passengers"] == {"type": "integer", "description": "How many."}  # strict: no default
    assert function.parameters["required"] == ["origin", "when", "passengers"]
    assert search.invoke({"origin": "CDG", "when": "2024-06-01", "passengers": 2}) == ["CDG", "2024-06-01", "2"]


def everything(
    text: str,
    count: int,
    ratio: float,
    flag: bool,
    when: datetime,
    day: date,
    unit: Unit,
    mode: Literal["fast", "slow"],
    maybe: Optional[int],  # noqa: UP045 - the typing form
    other: str | None,
    names: list[str],
    point: tuple[int, int],
    values: tuple[float, ...],
    scores: dict[str, int],
    tags: set[str],
    place: Place,
    window: Window,
    places: Sequence[Place],
    note: Annotated[str, "A free note."],
    anything: Any,
    verbose: bool = False,
) -> dict[str, Any]:
    """Take one parameter of every supported kind."""
    return dict(locals())


def test_every_supported_annotation() -> None:
    ft = chatdsl.tool(everything)
    schema = ft.tool.function.parameters
    Draft202012Validator.check_schema(schema)
    assert set(schema["required"]) == set(schema["properties"]) - {"verbose"}
    assert schema["properties"]["note"] == {"type": "string", "description": "A free note."}
    assert schema["properties"]["anything"] == {}
    assert schema["properties"]["place"] == {"$ref": "#/$defs/Place"}
    assert schema["properties"]["places"] == {"type": "array", "items": {"$ref": "#/$defs/Place"}}
    assert set(schema["$defs"]) == {"Place", "Window"}
    arguments = {
        "text": "t",
        "count": 3,
        "ratio": 2,
        "flag": True,
        "when": "2024-05-01T10:00:00+00:00",
        "day": "2024-05-02",
        "unit": "fahrenheit",
        "mode": "slow",
        "maybe": None,
        "other": "o",
        "names": ["a", "b"],
        "point": [1, 2],
        "values": [0.5],
        "scores": {"x": 1},
        "tags": ["a", "b"],
        "place": {"city": "Lyon"},
        "window": {"start": "2024-05-01T10:00:00Z"},
        "places": [{"city": "Nice", "country": "FR"}],
        "note": "n",
        "anything": {"free": [1]},
    }
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    validator.validate(arguments)
    call = ToolCall(id="1", function=FunctionCall(name="everything", arguments=json.dumps(arguments)))
    got = ft.invoke(call)
    assert got == {
        "text": "t",
        "count": 3,
        "ratio": 2.0,
        "flag": True,
        "when": datetime(2024, 5, 1, 10, tzinfo=UTC),
        "day": date(2024, 5, 2),
        "unit": Unit.FAHRENHEIT,
        "mode": "slow",
        "maybe": None,
        "other": "o",
        "names": ["a", "b"],
        "point": (1, 2),
        "values": (0.5,),
        "scores": {"x": 1},
        "tags": {"a", "b"},
        "place": Place("Lyon"),
        "window": Window(datetime(2024, 5, 1, 10, tzinfo=UTC)),
        "places": [Place("Nice")],
        "note": "n",
        "anything": {"free": [1]},
        "verbose": False,
    }
    assert isinstance(got["ratio"], float)


def test_strict_tools_require_everything() -> None:
    ft = chatdsl.tool(strict=True)(everything)
    parameters = ft.tool.function.parameters
    assert parameters["required"] == list(parameters["properties"])
    assert parameters["$defs"]["Place"]["required"] == ["city", "country"]
    assert ft.tool.function.strict is True


@pytest.mark.parametrize(
    ("arguments", "path", "words"),
    [
        ({}, "city", "is required by get_weather"),
        ({"city": "Paris", "units": "celsius"}, "units", "is not a parameter of get_weather (parameters: city, unit)"),
        ({"city": 3}, "city", "not a string"),
        ({"city": "Paris", "unit": "kelvin"}, "unit", "not a valid Unit"),
    ],
)
def test_invoke_rejects_bad_arguments_without_calling(arguments: dict[str, Any], path: str, words: str) -> None:
    calls: list[Any] = []

    @chatdsl.tool
    def get_weather(city: str, unit: Unit = Unit.CELSIUS) -> None:
        calls.append((city, unit))

    with pytest.raises(OutputError) as info:
        get_weather.invoke(arguments)
    assert info.value.path == path
    assert words in str(info.value)
    assert calls == []


def test_invoke_accepts_a_tool_call_with_text_or_object_arguments() -> None:
    for arguments in ('{"city": "Rome"}', {"city": "Rome"}):
        call = ToolCall(id="x", function=FunctionCall(name="get_weather", arguments=arguments))
        assert get_weather.invoke(call) == "sunny in Rome, 20 degrees celsius"
    with pytest.raises(OutputError) as info:
        get_weather.invoke(ToolCall(function=FunctionCall(name="get_weather", arguments="{nope")))
    assert info.value.content == "{nope"


def test_positional_only_and_variadic_parameters() -> None:
    def add(a: int, b: int = 10, /, *rest: int, scale: int = 1, **options: str) -> int:
        """Add two numbers."""
        return (a + b) * scale

    ft = FunctionTool.from_function(add)
    assert list(ft.tool.function.parameters["properties"]) == ["a", "b", "scale"]
    assert ft.invoke({"a": 1}) == 11
    assert ft.invoke({"a": 1, "b": 2, "scale": 3}) == 9


def test_tool_from_function_returns_the_definition_only() -> None:
    tool = Tool.from_function(get_weather.function)
    assert isinstance(tool, Tool)
    assert tool == get_weather.tool
    assert Tool.from_function(get_weather) == get_weather.tool  # an already decorated function works too
    assert Tool.from_function(get_weather.function, name="weather").name == "weather"


def test_methods_and_bound_methods() -> None:
    class Shop:
        def price(self, sku: str) -> float:
            """Price of an item."""
            return 9.5 if sku == "A" else 1.0

    tool = Tool.from_function(Shop().price)
    assert list(tool.function.parameters["properties"]) == ["sku"]


@pytest.mark.parametrize(
    ("function", "kwargs", "path", "words"),
    [
        (lambda x: x, {}, "name", "not a valid tool name"),
        (lambda x: x, {"name": "ok"}, "ok.x", "has no type annotation"),
        (get_weather.function, {"name": "has space"}, "name", "not a valid tool name"),
        (get_weather.function, {"name": "x" * 65}, "name", "not a valid tool name"),
    ],
)
def test_undescribable_functions_are_clear_errors(function: Any, kwargs: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        Tool.from_function(function, **kwargs)
    assert info.value.path == path
    assert words in str(info.value)


def test_unsupported_parameter_types_name_the_parameter() -> None:
    def send(payload: bytes) -> None:
        """Send bytes."""

    with pytest.raises(ValidationError) as info:
        Tool.from_function(send)
    assert info.value.path == "send.payload"
    assert "bytes" in str(info.value)


def test_tool_from_type() -> None:
    tool = Tool.from_type(Place)
    assert tool.name == "Place"
    assert tool.function.description == "A place on Earth."
    assert tool.function.parameters == chatdsl.json_schema(Place)
    strict = Tool.from_type(Window, name="window", description="A time window.", strict=True)
    assert (strict.name, strict.function.description, strict.function.strict) == ("window", "A time window.", True)
    assert strict.function.parameters["required"] == ["start", "end"]
    call = ToolCall(id="1", function=FunctionCall(name="Place", arguments='{"city": "Oslo", "country": "NO"}'))
    assert call.parse_arguments(Place) == Place("Oslo", "NO")
    with pytest.raises(ValidationError, match="not an attrs class, a dataclass or a pydantic model"):
        Tool.from_type(int)


# ------------------------------------------------------------------------------ docstrings

_names = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8).filter(lambda n: n.strip("_"))
_words = st.lists(st.text(string.ascii_letters + ",.'", min_size=1, max_size=8), min_size=1, max_size=6)


@given(
    summary=_words,
    params=st.dictionaries(_names, st.lists(_words, min_size=1, max_size=2), min_size=1, max_size=4),
    numpy=st.booleans(),
    indent=st.sampled_from([2, 4]),
)
def test_docstring_sections_parse_back(
    summary: list[str], params: dict[str, list[list[str]]], numpy: bool, indent: int
) -> None:
    pad = " " * indent
    lines = [" ".join(summary), "", "Longer text that is not the summary.", ""]
    if numpy:
        lines += ["Parameters", "----------"]
        for name, chunks in params.items():
            lines.append(f"{name} : int")
            lines += [pad + " ".join(chunk) for chunk in chunks]
        lines += ["", "Returns", "-------", "int", pad + "a number"]
    else:
        lines.append("Args:")
        for name, chunks in params.items():
            lines.append(f"{pad}{name} (int): {' '.join(chunks[0])}")
            lines += [pad * 2 + " ".join(chunk) for chunk in chunks[1:]]
        lines += ["", "Returns:", f"{pad}other: not a parameter"]
    doc = "\n".join(lines)
    got_summary, got = parse_docstring(doc)
    assert got_summary == " ".join(summary)
    assert got == {name: " ".join(" ".join(chunk) for chunk in chunks) for name, chunks in params.items()}


def test_deeply_nested_tool_arguments_are_an_output_error() -> None:
    call = ToolCall(id="c", function=chatdsl.FunctionCall(name="f", arguments='{"x": ' + "[" * 5000 + "}"))
    with pytest.raises(OutputError, match="not valid JSON"):
        call.arguments()


def test_an_async_function_is_described_as_a_tool_the_sync_loop_refuses_it() -> None:
    async def fetch(url: str) -> str:
        """Fetch a page."""
        return url

    described = chatdsl.tool(fetch)  # AsyncClient.run_tools awaits it
    assert described.tool.function.name == "fetch"
    assert described.tool.function.description == "Fetch a page."
    request = chatdsl.chat("m").user("hi")
    with pytest.raises(ValidationError, match=r"is an async function; Client\.run_tools calls tools synchronously"):
        run_tools(lambda _: pytest.fail("nothing is sent"), request, [fetch])
    with pytest.raises(ValidationError, match="AsyncClient"):
        run_tools(lambda _: pytest.fail("nothing is sent"), request, {"fetch": described})
