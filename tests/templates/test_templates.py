"""Variables and rendering: ``request.variables``, ``request.render()``, ``RequestTemplate``, the example."""

from __future__ import annotations

import runpy
import string
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import chatdsl
from chatdsl import (
    AssistantMessage,
    ImageURLChunk,
    RequestTemplate,
    TextChunk,
    ThinkChunk,
    ValidationError,
    Variable,
    chat,
)
from tests.strategies import requests

ROOT = Path(__file__).resolve().parents[2]

names = st.text(string.ascii_letters + "_", min_size=1, max_size=3) | st.sampled_from(["text", "lang", "_x", "a1"])
literals = st.text(max_size=8).filter(lambda t: "$" not in t)
values = st.text(max_size=8) | st.sampled_from(["$x", "${y}", "$$", "{z}", "{{json}}", "$", "price: $5"])

# A template text as segments: ("lit", text), ("var", name, braced) or ("esc",).
segments = st.lists(
    st.one_of(
        literals.map(lambda t: ("lit", t)),
        st.tuples(st.just("var"), names, st.booleans()),
        st.just(("esc",)),
    ),
    max_size=6,
)


def build(parts: list[tuple[object, ...]], values: dict[str, str]) -> tuple[str, str]:
    """Return the template text for *parts* and the text rendering it with *values* must give."""
    template, expected = [], []
    for index, part in enumerate(parts):
        if part[0] == "lit":
            template.append(str(part[1]))
            expected.append(str(part[1]))
        elif part[0] == "esc":
            template.append("$$")
            expected.append("$")
        else:
            name, braced = str(part[1]), bool(part[2])
            # The first part after this one that writes anything: an empty literal adds no text, so
            # "$a" + "" + "bc" reads as "$abc" just as "$a" + "bc" does.
            following = next((p for p in parts[index + 1 :] if p != ("lit", "")), None)
            if following is not None and following[0] == "lit" and str(following[1])[:1].isalnum():
                braced = True  # "$a" + "bc" would read as "$abc"
            if following is not None and following[0] == "lit" and str(following[1])[:1] == "_":
                braced = True
            template.append("${" + name + "}" if braced else "$" + name)
            expected.append(values[name])
    return "".join(template), "".join(expected)


@given(parts=segments, data=st.data())
def test_render_inserts_values_literally_once(parts, data):
    used = sorted({str(p[1]) for p in parts if p[0] == "var"})
    given_values = {name: data.draw(values) for name in used}
    template, expected = build(parts, given_values)
    request = chat("m").system(template).user([TextChunk(text=template), ImageURLChunk(url="https://x/$a.png")])
    assert request.variables == tuple(used)
    rendered = request.render(given_values)
    assert rendered.messages[0].content == expected
    assert rendered.messages[1].content[0].text == expected
    assert rendered.messages[1].content[1] == request.messages[1].content[1]  # not a text part: untouched
    assert request.messages[0].content == template  # the receiver never changes


def test_build_braces_a_name_followed_by_a_name_character_after_empty_literals():
    # The case hypothesis found: "$A" + "" + "0" is the variable "A0"; the generator must write "${A}0".
    template, expected = build([("var", "A", False), ("lit", ""), ("lit", "0")], {"A": "x"})
    assert (template, expected) == ("${A}0", "x0")
    assert chat().user(template).variables == ("A",)
    assert chat().user("$A0").variables == ("A0",)  # the library reads names as string.Template does
    assert chat().user(template).render(A="x").messages[0].content == "x0"


@given(requests(with_extra=True))
def test_render_without_variables_is_the_identity(request):
    assume("$" not in request.to_json())
    assert request.variables == ()
    assert request.render() is request
    assert request.render({}) == request


@given(st.text(max_size=10).filter(lambda t: "$" not in t))
def test_escaped_dollars_render_to_single_dollars(text):
    request = chat().user(f"$${text}$$").render()
    assert request.messages[0].content == f"${text}$"


def test_variables_are_found_in_every_role_and_in_text_parts_only():
    request = (
        chat()
        .system("You speak $lang.")
        .user([TextChunk(text="${text}"), ImageURLChunk(url="https://x/$notavar.png")])
        .assistant("Example for $who")
        .add(AssistantMessage(content=(ThinkChunk(thinking=(TextChunk(text="$not_either"),)),)))
        .tool("result $n", tool_call_id="c1")
    )
    assert request.variables == ("lang", "n", "text", "who")
    rendered = request.render(lang="French", text="hi", who="me", n=3)
    assert [chatdsl.ChatCompletionRequest.to_dict(rendered)["messages"][i]["content"] for i in (0, 2, 4)] == [
        "You speak French.",
        "Example for me",
        "result 3",
    ]
    assert rendered.messages[3] is request.messages[3]  # a message without variables is shared


def test_missing_and_unknown_values_are_named_together():
    request = chat().user("$a and ${b}")
    with pytest.raises(ValidationError) as info:
        request.render(a="1", c="3")
    assert [path for path, _ in info.value.errors] == ["b", "c"]
    assert "has no value" in str(info.value)
    assert "is not a variable" in str(info.value)
    assert "allow_extra=True" in str(info.value)
    assert request.render(a="1", b="2", c="3", allow_extra=True).messages[0].content == "1 and 2"


def test_keyword_values_win_over_the_mapping():
    assert chat().user("$a").render({"a": "map"}, a="kw").messages[0].content == "kw"
    # names that clash with the method's own parameters go through the mapping
    assert chat().user("$values $allow_extra").render({"values": 1, "allow_extra": 2}).messages[0].content == "1 2"


@pytest.mark.parametrize(("value", "shown"), [(3, "3"), (0.5, "0.5"), (-2, "-2"), ("", "")])
def test_numbers_are_inserted_as_text(value, shown):
    assert chat().user("n=$n").render(n=value).messages[0].content == f"n={shown}"


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}, float("nan"), b"x"])
def test_other_values_are_refused(value):
    with pytest.raises(ValidationError) as info:
        chat().user("$n").render(n=value)
    assert info.value.path == "n"


@pytest.mark.parametrize(
    ("text", "snippet"),
    [
        ("costs $5", "'$5'"),
        ("a $ b", "'$'"),
        ("end $", "'$'"),
        ("${not closed", "'${not'"),
        ("${1x}", "'${1x}'"),
    ],
)
def test_invalid_placeholders_name_the_message_path(text, snippet):
    request = chat().system("fine").user([TextChunk(text="ok"), TextChunk(text=text)])
    with pytest.raises(ValidationError) as info:
        _ = request.variables
    assert info.value.path == "messages[1].content[1].text"
    assert snippet in str(info.value)
    assert "$$" in str(info.value)
    with pytest.raises(ValidationError):
        request.render()


def test_every_invalid_placeholder_is_reported():
    with pytest.raises(ValidationError) as info:
        chat().system("$1").user("$ and $ok").user("fine $$").variables  # noqa: B018
    assert [path for path, _ in info.value.errors] == ["messages[0].content", "messages[1].content"]


# ---------------------------------------------------------------------------------- RequestTemplate

BASE = chat("m").system("Answer in $language.").user("$text")


def test_template_defaults_fill_and_values_override():
    template = RequestTemplate(
        request=BASE,
        description="d",
        variables=[Variable(name="language", default="English", description="the language")],
    )
    assert template.defaults == {"language": "English"}
    assert template.render(text="hi").messages[0].content == "Answer in English."
    assert template.render({"language": "French"}, text="hi").messages[0].content == "Answer in French."
    with pytest.raises(ValidationError) as info:
        template.render()
    assert info.value.path == "text"


def test_template_declared_but_unused_variables_accept_values():
    template = RequestTemplate(request=chat().user("hi"), variables=[Variable(name="later", default="x")])
    assert template.render(later="y").messages[0].content == "hi"
    with pytest.raises(ValidationError, match="unknown: is not a variable of the template"):
        template.render(unknown="z")
    assert template.render(unknown="z", allow_extra=True).messages[0].content == "hi"


def test_template_describe_lists_used_and_declared_variables():
    template = RequestTemplate(
        request=BASE, description="Translate.", variables=[Variable(name="zeta", description="unused")]
    )
    info = template.describe("translate")
    assert info.name == "translate"
    assert info.description == "Translate."
    assert [v.name for v in info.variables] == ["language", "text", "zeta"]
    assert all(v.required for v in info.variables)
    assert info.variables[2].description == "unused"


def test_template_refuses_invalid_placeholders_and_bad_variables():
    with pytest.raises(ValidationError, match="invalid placeholder"):
        RequestTemplate(request=chat().user("$5"))
    with pytest.raises(ValidationError, match="declared twice"):
        RequestTemplate(variables=[Variable(name="a"), Variable(name="a")])
    with pytest.raises(ValidationError, match="not a variable name"):
        Variable(name="not-an-identifier")
    with pytest.raises(ValidationError, match="a value is a string or a number"):
        Variable(name="a", default=True)
    with pytest.raises(ValidationError):
        attrs.evolve(RequestTemplate(), request=chat().user("$"))


def test_example_runs_and_prints_rendered_requests(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["templates.py"])
    runpy.run_path(str(ROOT / "examples" / "templates.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "# The library" in out
    assert "support_fr: The support agent for the French shop" in out
    assert "Always answer in French." in out
    assert "a $35 kettle) has not arrived. Can you check? {urgent}" in out
    assert "Write a haiku about parcels." in out


def test_values_that_cannot_be_written_as_text_are_validation_errors():
    template = chat("m").user("n=$n")
    assert template.render(n=10**20).messages[0].content == "n=100000000000000000000"
    with pytest.raises(ValidationError, match=r"n: is an integer too long to write as text"):
        template.render(n=10**5000)
    with pytest.raises(ValidationError, match=r"n: inf is not a finite number"):
        template.render(n=float("inf"))
