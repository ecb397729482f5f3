"""Pydantic models as output types, response schemas and tools (pydantic is an optional extra)."""

from __future__ import annotations

import json
import subprocess
import sys

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatdsl import AssistantMessage, FunctionCall, OutputError, Tool, ToolCall, chat, json_schema

pydantic = pytest.importorskip("pydantic")


class City(pydantic.BaseModel):  # type: ignore[misc,name-defined]
    """A city."""

    name: str
    population: int


class Trip(pydantic.BaseModel):  # type: ignore[misc,name-defined]
    cities: list[City]


@attrs.frozen
class Booking:
    trip: Trip
    nights: int


def test_json_schema_is_pydantics_own() -> None:
    assert json_schema(City) == City.model_json_schema()
    assert json_schema(Trip) == Trip.model_json_schema()  # nested models stay in $defs


def test_a_pydantic_model_inside_an_attrs_class_keeps_its_defs_at_the_root() -> None:
    schema = json_schema(Booking)
    trip = Trip.model_json_schema()
    assert schema["properties"]["trip"] == {k: v for k, v in trip.items() if k != "$defs"}
    assert schema["$defs"]["City"] == trip["$defs"]["City"]


def test_with_json_schema_and_tool_from_type_take_a_model() -> None:
    wire = chat("m").with_json_schema(City).to_dict()["response_format"]["json_schema"]
    assert wire["name"] == "City"
    assert wire["schema"] == City.model_json_schema()
    tool = Tool.from_type(City)
    assert (tool.function.name, tool.function.description) == ("City", "A city.")
    assert tool.function.parameters == City.model_json_schema()


@given(st.text(max_size=10), st.integers(-(2**40), 2**40))
def test_output_and_parse_arguments_read_a_model(name: str, population: int) -> None:
    text = json.dumps({"name": name, "population": population})
    assert AssistantMessage(content=text).output(City) == City(name=name, population=population)
    call = ToolCall(id="c", function=FunctionCall(name="City", arguments=text))
    assert call.parse_arguments(City) == City(name=name, population=population)


def test_nested_models_read_inside_attrs_classes_and_lists() -> None:
    content = '{"trip": {"cities": [{"name": "Paris", "population": 2}]}, "nights": 3}'
    booking = AssistantMessage(content=content).output(Booking)
    assert booking == Booking(trip=Trip(cities=[City(name="Paris", population=2)]), nights=3)
    assert AssistantMessage(content='[{"name": "a", "population": 1}]').output(list[City]) == [
        City(name="a", population=1)
    ]


@pytest.mark.parametrize(
    ("tp", "content", "path", "rule"),
    [
        (City, '{"name": 1, "population": 2}', "name", "name: Input should be a valid string"),
        (Trip, '{"cities": [{"name": "x"}]}', "cities[0].population", "cities[0].population: Field required"),
        (Booking, '{"trip": {"cities": 3}, "nights": 1}', "trip.cities", "trip.cities: Input should be a valid list"),
        (list[City], '[{"name": "a", "population": 1}, 3]', "[1]", "[1]: Input should be a valid dictionary"),
    ],
)
def test_pydantic_errors_become_output_errors_with_a_path(tp: object, content: str, path: str, rule: str) -> None:
    with pytest.raises(OutputError) as caught:
        AssistantMessage(content=content).output(tp)
    assert caught.value.path == path
    assert rule in str(caught.value)
    assert caught.value.content == content
    assert "cattrs" not in str(caught.value)
    assert "pydantic_core" not in str(caught.value)


def test_import_chatdsl_and_reading_answers_never_import_pydantic() -> None:
    code = (
        "import sys, attrs, chatdsl\n"
        "@attrs.frozen\nclass P:\n    x: int\n"
        "chatdsl.AssistantMessage(content='{\"x\": 1}').output(P); chatdsl.json_schema(P); chatdsl.Tool.from_type(P)\n"
        "assert 'pydantic' not in sys.modules, sorted(m for m in sys.modules if 'pydantic' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
