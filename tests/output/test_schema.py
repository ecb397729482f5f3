"""JSON Schema from Python types, structured answers (``output()``) and tool-call arguments."""

from __future__ import annotations

import dataclasses
import enum
import json
import keyword
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, NewType, Optional

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import chatdsl
from chatdsl import AssistantMessage, FunctionCall, OutputError, ToolCall, ValidationError, json_schema
from chatdsl.output.convert import output_converter

# --------------------------------------------------------------------------- generated attrs classes
#
# A "spec" is (type, strategy of values of that type). Classes are made with attrs.make_class from
# generated field specs, nested up to a small depth; names repeat on purpose (``$defs`` collisions).


class Colour(enum.Enum):
    """A colour."""

    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


_field_names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6).filter(
    lambda n: not keyword.iskeyword(n) and not n.startswith("_")
)
_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
_literal_values = st.lists(st.sampled_from(["a", "b", "c", 1, 2, True]), min_size=1, max_size=3, unique=True)


@st.composite
def _literal_spec(draw: st.DrawFn) -> tuple[Any, Any]:
    values = draw(_literal_values)
    return Literal[tuple(values)], st.sampled_from(values)


@st.composite
def _enum_spec(draw: st.DrawFn) -> tuple[Any, Any]:
    values = draw(st.lists(st.text("xyz", min_size=1, max_size=3) | st.integers(0, 9), min_size=1, max_size=3))
    unique = list(dict.fromkeys(values))
    cls = enum.Enum("GenEnum", {f"M{index}": value for index, value in enumerate(unique)})
    return cls, st.sampled_from(list(cls))


_leaf_specs = (
    st.sampled_from(
        [
            (str, st.text(max_size=8)),
            (int, st.integers(-(2**53), 2**53)),
            (float, _floats),
            (bool, st.booleans()),
            (datetime, st.datetimes(timezones=st.just(UTC))),
            (date, st.dates()),
            (Colour, st.sampled_from(Colour)),
            (Level, st.sampled_from(Level)),
            (Any, st.integers() | st.text(max_size=4)),
        ]
    )
    | _literal_spec()
    | _enum_spec()
)


def _wrap(inner: st.SearchStrategy[tuple[Any, Any]]) -> st.SearchStrategy[tuple[Any, Any]]:
    def lists(spec: tuple[Any, Any]) -> tuple[Any, Any]:
        return list[spec[0]], st.lists(spec[1], max_size=3)

    def optionals(spec: tuple[Any, Any]) -> tuple[Any, Any]:
        return Optional[spec[0]], st.none() | spec[1]  # noqa: UP045 - the typing form is tested too

    def unions_with_none(spec: tuple[Any, Any]) -> tuple[Any, Any]:
        return spec[0] | None, st.none() | spec[1]

    def var_tuples(spec: tuple[Any, Any]) -> tuple[Any, Any]:
        return tuple[spec[0], ...], st.lists(spec[1], max_size=3).map(tuple)

    def maps(spec: tuple[Any, Any]) -> tuple[Any, Any]:
        return dict[str, spec[0]], st.dictionaries(st.text(max_size=4), spec[1], max_size=3)

    return st.one_of(
        inner.map(lists), inner.map(optionals), inner.map(unions_with_none), inner.map(var_tuples), inner.map(maps)
    )


@st.composite
def _fixed_tuple_spec(draw: st.DrawFn, inner: st.SearchStrategy[tuple[Any, Any]]) -> tuple[Any, Any]:
    specs = draw(st.lists(inner, min_size=1, max_size=3))
    return tuple[tuple(s[0] for s in specs)], st.tuples(*(s[1] for s in specs))


@st.composite
def _class_spec(draw: st.DrawFn, inner: st.SearchStrategy[tuple[Any, Any]]) -> tuple[Any, Any]:
    names = draw(st.lists(_field_names, min_size=0, max_size=4, unique=True))
    fields: dict[str, Any] = {}
    values: dict[str, Any] = {}
    seen_default = False
    for name in names:
        tp, values_of = draw(inner)
        kwargs: dict[str, Any] = {"type": tp}
        if draw(st.booleans()):
            kwargs["metadata"] = {"description": f"the {name}"}
        if seen_default or draw(st.booleans()):  # fields after a defaulted one need defaults too
            kwargs["default"] = draw(values_of)
            seen_default = True
        fields[name] = attrs.field(**kwargs)
        values[name] = values_of
    class_name = draw(st.sampled_from(["Item", "Record", "Item"]))
    cls = attrs.make_class(class_name, fields, frozen=True)
    if draw(st.booleans()):
        cls.__doc__ = f"A generated {class_name}."
    return cls, st.fixed_dictionaries(values).map(lambda kw: cls(**kw))


def _type_specs(depth: int) -> st.SearchStrategy[tuple[Any, Any]]:
    if depth == 0:
        return _leaf_specs
    inner = _type_specs(depth - 1)
    return st.one_of(_leaf_specs, _wrap(inner), _fixed_tuple_spec(inner), _class_spec(inner))


generated_classes = _class_spec(_type_specs(2))


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@given(spec=generated_classes, strict=st.booleans(), data=st.data())
def test_generated_classes_schema_instance_and_round_trip(spec: tuple[Any, Any], strict: bool, data: Any) -> None:
    cls, instances = spec
    schema = json_schema(cls, strict=strict)
    Draft202012Validator.check_schema(schema)
    json.dumps(schema)  # plain JSON all the way down
    instance = data.draw(instances)
    content = json.dumps(output_converter.unstructure(instance))
    _validator(schema).validate(json.loads(content))
    assert AssistantMessage(content=content).output(cls) == instance
    if strict:
        _assert_strict(schema)


def _assert_strict(node: Any) -> None:
    """Every object from a class lists all its properties as required and gives no defaults."""
    if isinstance(node, dict):
        if "properties" in node:
            assert node["additionalProperties"] is False
            assert sorted(node.get("required", [])) == sorted(node["properties"])
        assert "default" not in node
        for value in node.values():
            _assert_strict(value)
    elif isinstance(node, list):
        for value in node:
            _assert_strict(value)


@given(spec=generated_classes, data=st.data())
def test_a_wrong_field_is_reported_with_its_path(spec: tuple[Any, Any], data: Any) -> None:
    cls, instances = spec
    fields = attrs.fields(cls)
    if not fields:
        return
    instance = data.draw(instances)
    plain = output_converter.unstructure(instance)
    name = data.draw(st.sampled_from([f.name for f in fields]))
    plain[name] = {"unexpected": [1, 2]}  # no generated type accepts this object
    tp = attrs.fields_dict(cls)[name].type
    if tp is Any or Any in getattr(tp, "__args__", ()) or _accepts_objects(tp):
        return
    content = json.dumps(plain)
    with pytest.raises(OutputError) as info:
        AssistantMessage(content=content).output(cls)
    assert info.value.content == content
    assert info.value.path.split(".")[0].split("[")[0] == name


def _accepts_objects(tp: Any) -> bool:
    """Whether a value of *tp* could be that object (a map of lists, or anything)."""
    text = repr(tp)
    return "dict[" in text or "Any" in text


# ------------------------------------------------------------------------------ hand-written types


@attrs.frozen
class Line:
    """A line of an order.

    More detail that is not part of the description.
    """

    sku: str = attrs.field(metadata={"description": "Stock keeping unit."})
    quantity: int = 1


@dataclasses.dataclass
class Address:
    street: str
    zip_code: Annotated[str, "Postal code."] = ""


@attrs.define
class Order:
    """An order.

    Attributes:
        placed: When it was placed,
            in UTC.
        colour: Gift-wrap colour.
    """

    placed: datetime
    day: date
    colour: Colour
    lines: list[Line]
    address: Address | None = None
    tags: dict[str, int] = attrs.field(factory=dict)
    size: tuple[int, int] = (1, 2)
    kind: Literal["retail", "wholesale"] = "retail"


def test_a_class_schema_in_full() -> None:
    schema = json_schema(Order)
    assert schema == {
        "type": "object",
        "description": "An order.",
        "properties": {
            "placed": {"type": "string", "format": "date-time", "description": "When it was placed, in UTC."},
            "day": {"type": "string", "format": "date"},
            "colour": {"type": "string", "enum": ["red", "green"], "description": "Gift-wrap colour."},
            "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
            "address": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": None},
            "tags": {"type": "object", "additionalProperties": {"type": "integer"}, "default": {}},
            "size": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "integer"}],
                "items": False,
                "minItems": 2,
                "maxItems": 2,
                "default": [1, 2],
            },
            "kind": {"type": "string", "enum": ["retail", "wholesale"], "default": "retail"},
        },
        "required": ["placed", "day", "colour", "lines"],
        "additionalProperties": False,
        "$defs": {
            "Line": {
                "type": "object",
                "description": "A line of an order.",
                "properties": {
                    "sku": {"type": "string", "description": "Stock keeping unit."},
                    "quantity": {"type": "integer", "default": 1},
                },
                "required": ["sku"],
                "additionalProperties": False,
            },
            "Address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string"},
                    "zip_code": {"type": "string", "description": "Postal code.", "default": ""},
                },
                "required": ["street"],
                "additionalProperties": False,
            },
        },
    }
    Draft202012Validator.check_schema(schema)


def test_strict_requires_every_property_and_drops_defaults() -> None:
    schema = json_schema(Order, strict=True)
    assert schema["required"] == list(schema["properties"])
    assert schema["$defs"]["Line"]["required"] == ["sku", "quantity"]
    _assert_strict(schema)
    assert schema["properties"]["address"] == {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]}


@attrs.frozen
class Node:
    value: int
    children: tuple[Node, ...] = ()
    parent: Node | None = None


@dataclasses.dataclass
class Folder:
    name: str
    files: list[File]


@dataclasses.dataclass
class File:
    name: str
    folder: Folder | None = None


def test_recursive_classes_use_refs() -> None:
    schema = json_schema(Node)
    assert schema["properties"]["children"] == {"type": "array", "items": {"$ref": "#"}, "default": []}
    assert "$defs" not in schema
    mutual = json_schema(Folder)
    assert mutual["$defs"]["File"]["properties"]["folder"]["anyOf"][0] == {"$ref": "#"}
    listed = json_schema(list[Node])
    assert listed["items"] == {"$ref": "#/$defs/Node"}
    assert listed["$defs"]["Node"]["properties"]["parent"]["anyOf"][0] == {"$ref": "#/$defs/Node"}
    for schema_ in (schema, mutual, listed):
        Draft202012Validator.check_schema(schema_)
    tree = Node(1, (Node(2), Node(3, (Node(4),))))
    content = json.dumps(output_converter.unstructure(tree))
    _validator(schema).validate(json.loads(content))
    assert AssistantMessage(content=content).output(Node) == tree


def test_classes_of_the_same_name_get_distinct_defs() -> None:
    first = attrs.make_class("Part", {"a": attrs.field(type=int)})
    second = attrs.make_class("Part", {"b": attrs.field(type=str)})
    outer = attrs.make_class("Outer", {"x": attrs.field(type=first), "y": attrs.field(type=second)})
    schema = json_schema(outer)
    assert schema["properties"]["x"] == {"$ref": "#/$defs/Part"}
    assert schema["properties"]["y"] == {"$ref": "#/$defs/Part2"}
    assert set(schema["$defs"]["Part2"]["properties"]) == {"b"}


@pytest.mark.parametrize(
    ("tp", "expected"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (type(None), {"type": "null"}),
        (Any, {}),
        (datetime, {"type": "string", "format": "date-time"}),
        (date, {"type": "string", "format": "date"}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (set[str], {"type": "array", "uniqueItems": True, "items": {"type": "string"}}),
        (frozenset[int], {"type": "array", "uniqueItems": True, "items": {"type": "integer"}}),
        (tuple[str, ...], {"type": "array", "items": {"type": "string"}}),
        (
            tuple[int, str],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": False,
                "minItems": 2,
                "maxItems": 2,
            },
        ),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (dict[str, Any], {"type": "object"}),
        (dict, {"type": "object"}),
        (list, {"type": "array"}),
        (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),  # noqa: UP045
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (int | str, {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        (Literal["x"], {"type": "string", "const": "x"}),
        (Literal["x", "y"], {"type": "string", "enum": ["x", "y"]}),
        (Literal[1, "y"], {"type": ["integer", "string"], "enum": [1, "y"]}),
        (Literal["x", None], {"type": ["null", "string"], "enum": ["x", None]}),
        (Literal[Colour.RED], {"type": "string", "const": "red"}),
        (Colour, {"type": "string", "enum": ["red", "green"]}),
        (Level, {"type": "integer", "enum": [1, 2]}),
        (Annotated[int, "How many."], {"type": "integer", "description": "How many."}),
        (NewType("UserId", int), {"type": "integer"}),
    ],
)
def test_type_forms(tp: Any, expected: dict[str, Any]) -> None:
    assert json_schema(tp) == expected
    Draft202012Validator.check_schema(json_schema(tp))


class Weird(enum.Enum):
    A = (1, 2)


@attrs.define
class HasBadField:
    name: str
    lines: list[dict[int, str]]


@attrs.define
class HasComplex:
    inner: list[HasBadField | None]


@pytest.mark.parametrize(
    ("tp", "path", "words"),
    [
        (complex, "complex", "complex is not supported"),
        (bytes, "bytes", "bytes is not supported"),
        (list[bytes], "list[bytes][]", "bytes is not supported"),
        (HasBadField, "HasBadField.lines[]", "key type"),
        (HasComplex, "HasComplex.inner[].lines[]", "key type"),
        (Weird, "Weird", "enum values must be JSON strings or numbers"),
        (Literal[b"x"], "Literal[b'x']", "is not a JSON string"),
    ],
)
def test_unsupported_types_name_the_type_and_the_path(tp: Any, path: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        json_schema(tp)
    assert info.value.path == path
    assert words in str(info.value)


def test_unresolvable_annotations_are_a_clear_error() -> None:
    @attrs.define
    class Dangling:
        other: Missing  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ValidationError, match="cannot be resolved"):
        json_schema(Dangling)


def test_dataclass_generated_docstring_is_not_a_description() -> None:
    assert "description" not in json_schema(Address)


# ------------------------------------------------------------------------------ with_json_schema


def test_with_json_schema_accepts_a_type() -> None:
    request = chatdsl.chat("m").user("An order, please.").with_json_schema(Order)
    body = request.to_dict()["response_format"]
    assert body["type"] == "json_schema"
    assert body["json_schema"]["name"] == "Order"
    assert body["json_schema"]["description"] == "An order."
    assert body["json_schema"]["strict"] is True
    assert body["json_schema"]["schema"] == json_schema(Order, strict=True)
    named = chatdsl.chat("m").user("x").with_json_schema(Line, name="line", description="One line.", strict=False)
    fmt = named.to_dict()["response_format"]["json_schema"]
    assert (fmt["name"], fmt["description"], fmt["strict"]) == ("line", "One line.", False)
    assert fmt["schema"] == json_schema(Line)


# ------------------------------------------------------------------------------ output()


def test_output_rebuilds_nested_classes_enums_and_dates() -> None:
    content = json.dumps(
        {
            "placed": "2024-05-01T12:30:00+00:00",
            "day": "2024-05-02",
            "colour": "green",
            "lines": [{"sku": "A1"}, {"sku": "B2", "quantity": 3}],
            "address": {"street": "Main St"},
            "size": [3, 4],
        }
    )
    order = AssistantMessage(content=content).output(Order)
    assert order == Order(
        placed=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        day=date(2024, 5, 2),
        colour=Colour.GREEN,
        lines=[Line("A1"), Line("B2", 3)],
        address=Address("Main St"),
        size=(3, 4),
    )


def test_output_defaults_to_a_dict_and_parses_other_forms() -> None:
    assert AssistantMessage(content='{"a": [1]}').output() == {"a": [1]}
    assert AssistantMessage(content="[1, 2]").output(list[int]) == [1, 2]
    with pytest.raises(OutputError, match="not a JSON object"):
        AssistantMessage(content="[1, 2]").output()


@pytest.mark.parametrize(
    ("content", "path", "words"),
    [
        ("not json", "", "not valid JSON"),
        ("[]", "", "not a JSON object"),
        ('{"sku": "A", "quantity": "2"}', "quantity", "not an integer"),
        ('{"sku": "A", "quantity": 2.5}', "quantity", "not an integer"),
        ('{"sku": "A", "quantity": true}', "quantity", "not an integer"),
        ('{"sku": 5}', "sku", "not a string"),
        ('{"sku": "A", "colour": "red"}', "colour", "not a known field"),
        ("{}", "sku", "required"),
    ],
)
def test_output_errors_carry_content_and_path(content: str, path: str, words: str) -> None:
    with pytest.raises(OutputError) as info:
        AssistantMessage(content=content).output(Line)
    assert info.value.content == content
    assert info.value.path == path
    assert words in str(info.value)


def test_output_error_paths_reach_into_nested_values() -> None:
    content = json.dumps(
        {"placed": "2024-05-01T00:00:00", "day": "2024-05-02", "colour": "blue", "lines": [{"sku": "A"}, {}]}
    )
    with pytest.raises(OutputError) as info:
        AssistantMessage(content=content).output(Order)
    message = str(info.value)
    assert "colour" in message
    assert "lines[1].sku" in message


def test_booleans_and_floats_are_read_as_json_gives_them() -> None:
    flags = attrs.make_class("Flags", {"on": attrs.field(type=bool), "ratio": attrs.field(type=float)})
    assert AssistantMessage(content='{"on": false, "ratio": 1}').output(flags) == flags(on=False, ratio=1.0)
    with pytest.raises(OutputError, match="not a boolean"):
        AssistantMessage(content='{"on": "false", "ratio": 1}').output(flags)
    with pytest.raises(OutputError, match="not a number"):
        AssistantMessage(content='{"on": true, "ratio": "1"}').output(flags)


# ------------------------------------------------------------------------------ tool-call arguments


def _call(arguments: Any) -> ToolCall:
    return ToolCall(id="c1", function=FunctionCall(name="add_line", arguments=arguments))


@pytest.mark.parametrize("arguments", ['{"sku": "A", "quantity": 2}', {"sku": "A", "quantity": 2}])
def test_arguments_from_text_or_object(arguments: Any) -> None:
    call = _call(arguments)
    args = call.arguments()
    assert args == {"sku": "A", "quantity": 2}
    assert type(args) is dict
    args["sku"] = "changed"  # a fresh, plain dict
    assert call.arguments()["sku"] == "A"
    assert call.parse_arguments(Line) == Line("A", 2)
    assert call.parse_arguments() == {"sku": "A", "quantity": 2}


def test_empty_arguments_are_no_arguments() -> None:
    assert _call("").arguments() == {}
    assert _call("  ").arguments() == {}


@pytest.mark.parametrize(("raw", "words"), [("{", "not valid JSON"), ("[1]", "a list, not a JSON object")])
def test_bad_arguments_are_output_errors_with_the_raw_text(raw: str, words: str) -> None:
    with pytest.raises(OutputError) as info:
        _call(raw).arguments()
    assert info.value.content == raw
    assert words in str(info.value)
    assert "add_line" in str(info.value)


def test_parse_arguments_names_the_path() -> None:
    with pytest.raises(OutputError) as info:
        _call('{"sku": "A", "quantity": "many"}').parse_arguments(Line)
    assert info.value.path == "quantity"
    assert info.value.content == '{"sku": "A", "quantity": "many"}'
