"""``RequestTemplate.render_many`` and ``renderer``: many rows through one compiled template, as ``render`` would."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatdsl import ImageURLChunk, RequestTemplate, TextChunk, ValidationError, Variable, chat
from tests.templates.test_templates import build, segments, values


def _template() -> RequestTemplate:
    request = (
        chat("m")
        .system("You sort tickets for $company; a literal {brace} and $$5 stay.")
        .user([TextChunk(text="Ticket ${id}: $text"), ImageURLChunk(url="https://x/$a.png")])
        .with_temperature(0.2)
    )
    return RequestTemplate(request=request, variables=[Variable(name="company", default="ACME")])


@given(parts=segments, data=st.data())
def test_render_many_gives_what_render_gives(parts: list[tuple[object, ...]], data: st.DataObject) -> None:
    used = sorted({str(p[1]) for p in parts if p[0] == "var"})
    rows = [{name: data.draw(values) for name in used} for _ in range(data.draw(st.integers(0, 3)))]
    template_text, _ = build(parts, dict.fromkeys(used, ""))
    template = RequestTemplate(request=chat("m").system(template_text).user([TextChunk(text=template_text)]))
    rendered = list(template.render_many(rows))
    assert rendered == [template.render(row) for row in rows]
    for request, row in zip(rendered, rows, strict=True):
        _, expected = build(parts, row)
        assert request.messages[0].content == expected
        request.validate()  # rendered: no longer a template


def test_defaults_numbers_and_untouched_parts() -> None:
    template = _template()
    first, second = template.render_many([{"id": 7, "text": "late"}, {"id": "x", "text": "$y {z}", "company": 2.5}])
    assert first.messages[0].content == "You sort tickets for ACME; a literal {brace} and $5 stay."
    assert first.messages[1].content[0].text == "Ticket 7: late"
    assert second.messages[0].content == "You sort tickets for 2.5; a literal {brace} and $5 stay."
    assert second.messages[1].content[0].text == "Ticket x: $y {z}"
    assert first.messages[1].content[1] is template.request.messages[1].content[1]  # shared, not rebuilt
    assert first.temperature == 0.2


def test_keyed_rows_give_keyed_requests() -> None:
    out = list(_template().render_many([("a", {"id": 1, "text": "t"}), ("b", {"id": 2, "text": "u"})]))
    assert [(key, request.messages[1].content[0].text) for key, request in out] == [
        ("a", "Ticket 1: t"),
        ("b", "Ticket 2: u"),
    ]


def test_rows_are_rendered_lazily() -> None:
    rows = ({"id": i, "text": "t"} for i in itertools.count())
    taken = list(itertools.islice(_template().render_many(rows), 3))
    assert [r.messages[1].content[0].text for r in taken] == ["Ticket 0: t", "Ticket 1: t", "Ticket 2: t"]


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"id": 1}, "text: is a variable of the request but has no value and no default"),
        ({"id": 1, "text": "t", "txt": "u"}, "txt: is not a variable of the template"),
        ({"id": None, "text": "t"}, "id: None is a NoneType; a value is a string or a number"),
        ({"id": float("nan"), "text": "t"}, "id: nan is not a finite number"),
    ],
)
def test_a_bad_row_raises_what_render_raises_under_its_index(row: dict[str, Any], error: str) -> None:
    template = _template()
    with pytest.raises(ValidationError) as expected:
        template.render(row)
    rendered = template.render_many([{"id": 0, "text": "ok"}, row])
    assert next(rendered).messages[1].content[0].text == "Ticket 0: ok"
    with pytest.raises(ValidationError) as caught:
        next(rendered)
    assert [m for _, m in caught.value.errors] == [m for _, m in expected.value.errors]
    assert all(path.startswith("rows[1].") for path, _ in caught.value.errors)
    assert error in str(expected.value)
    with pytest.raises(ValidationError, match=r"rows\['k'\]\."):
        list(template.render_many([("k", row)]))


def test_allow_extra_takes_unknown_names() -> None:
    [request] = _template().render_many([{"id": 1, "text": "t", "label": "spam"}], allow_extra=True)
    assert request.messages[1].content[0].text == "Ticket 1: t"


def test_a_row_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"rows\[0\]: \['a'\] is a list, not a mapping"):
        list(_template().render_many([["a"]]))  # type: ignore[list-item]


def test_renderer_renders_one_row() -> None:
    render = _template().renderer()
    assert render({"id": 3, "text": "x"}) == _template().render(id=3, text="x")


def test_a_template_without_variables_renders_unmarked_copies() -> None:
    template = RequestTemplate(request=chat("m").user("plain"))
    rows: Iterator[dict[str, Any]] = iter([{}, {}])
    assert [r.messages[0].content for r in template.render_many(rows)] == ["plain", "plain"]
