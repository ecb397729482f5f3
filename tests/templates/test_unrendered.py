"""The unrendered-template mark: a request from a template is refused until rendered; plain text stays literal."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chatdsl
from chatdsl import ChatCompletionRequest, Client, RequestTemplate, ValidationError, Variable, chat
from chatdsl.testing import LocalServer, Reply
from tests._secrets import TEST_KEY
from tests.strategies import requests

TEMPLATE = chat("mistral-small-latest").system("Answer in $language.").user("${text}")
LITERAL_TEXTS = [
    "Solve $x^2 + y$ and $\\frac{a}{b}$",
    "echo $HOME; ls ${PWD}/src",
    "It costs $5 or $10.99, maybe $$ more",
    "a lone $ sign",
]


def test_plain_builder_text_with_dollars_is_never_marked_and_validates() -> None:
    for text in LITERAL_TEXTS:
        request = chat("m").user(text)
        assert not request.is_template
        assert request.validate() is request


def test_as_template_marks_and_validate_names_the_variables_and_render() -> None:
    template = TEMPLATE.as_template()
    assert template.is_template
    assert not TEMPLATE.is_template
    with pytest.raises(ValidationError) as info:
        template.validate()
    text = str(info.value)
    assert "language, text" in text
    assert "render()" in text
    assert not template.is_complete
    assert template == TEMPLATE
    assert hash(template) == hash(TEMPLATE)
    assert template.to_dict() == TEMPLATE.to_dict()
    assert "unrendered" not in repr(template)


def test_a_template_without_variables_is_cleared_by_render_with_no_values() -> None:
    template = chat("m").user("hello").as_template()
    with pytest.raises(ValidationError, match=r"no variables.*render\(\) with no values"):
        template.validate()
    rendered = template.render()
    assert not rendered.is_template
    assert rendered.validate() == template


def test_derived_requests_keep_the_mark() -> None:
    template = TEMPLATE.as_template()
    derived = [
        template.with_temperature(0.3),
        template.user("more $x"),
        template.without("model").with_model("other"),
        template.with_messages(template.messages),
        template.merge(chat().with_max_tokens(3)),
        chat("m").system("s") | template,  # a merge with a marked side is marked
        pickle.loads(pickle.dumps(template)),
        copy.copy(template),
        copy.deepcopy(template),
    ]
    for request in derived:
        assert request.is_template, request


def test_a_subclass_keeps_the_mark_through_builder_steps() -> None:
    class Mine(ChatCompletionRequest):
        pass

    mine = Mine(model="m", messages=TEMPLATE.messages).as_template()
    assert mine.with_temperature(0.1).is_template
    assert not mine.render(language="fr", text="t").is_template


@given(requests(), st.booleans(), st.booleans())
def test_merge_is_marked_exactly_when_a_side_is(request: ChatCompletionRequest, left: bool, right: bool) -> None:
    base = request.as_template() if left else request
    overlay = chat("x").as_template() if right else chat("x")
    assert base.merge(overlay).is_template is (left or right)
    assert (chat() | base).is_template is left


def test_render_clears_the_mark_and_later_text_is_literal() -> None:
    rendered = TEMPLATE.as_template().render(language="French", text="costs $5")
    assert not rendered.is_template
    conversation = rendered.assistant("It is $x^2$").user("and ${HOME}? $")
    assert not conversation.is_template
    assert conversation.validate() is conversation
    assert conversation.messages[-1].content == "and ${HOME}? $"


def test_request_template_marks_its_request_and_renders_clean() -> None:
    template = RequestTemplate(request=TEMPLATE, variables=[Variable(name="language", default="English")])
    assert template.request.is_template
    with pytest.raises(ValidationError, match="text"):
        template.request.validate()
    assert not template.render(text="hi").is_template
    assert RequestTemplate(request=TEMPLATE) == RequestTemplate(request=TEMPLATE)


def test_loading_a_file_marks_it_only_when_it_has_variables(tmp_path: Path) -> None:
    with_variables = tmp_path / "t.json"
    TEMPLATE.save(with_variables)
    assert ChatCompletionRequest.load(with_variables).is_template
    assert chatdsl.templates.library.load(with_variables).is_template
    assert RequestTemplate.load(with_variables).request.is_template
    for index, text in enumerate(["no variables", "a lone $ sign"]):
        plain = tmp_path / f"plain{index}.toml"
        chat("m").user(text).save(plain)
        assert not ChatCompletionRequest.load(plain).is_template
        assert ChatCompletionRequest.load(plain).validate().messages[0].content == text


def test_a_client_refuses_an_unrendered_template_before_sending(server: LocalServer, tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    TEMPLATE.save(path)
    loaded = ChatCompletionRequest.load(path)
    with Client(TEST_KEY, base_url=server.url) as client:
        for request in (loaded, RequestTemplate.load(path).request, TEMPLATE.as_template().with_temperature(0)):
            with pytest.raises(ValidationError, match=r"language, text.*render"):
                client.chat_completion(request)
        assert server.requests == []
        rendered = loaded.render(language="French", text="x")
        server.enqueue(Reply.text("ok"), *[Reply.text("ok")] * (len(LITERAL_TEXTS) + 1))
        client.chat_completion(rendered)
        client.chat_completion(rendered.assistant("ok").user("now $x and ${y}"))
        for text in LITERAL_TEXTS:
            client.chat_completion(chat("m").user(text))
    sent = [r.json["messages"][-1]["content"] for r in server.requests if r.json is not None]
    assert sent[1] == "now $x and ${y}"
    assert sent[2:] == LITERAL_TEXTS


def test_render_reports_missing_and_unknown_names_together_with_did_you_mean() -> None:
    with pytest.raises(ValidationError) as info:
        TEMPLATE.render(langauge="fr", colour="red")
    paths = [path for path, _ in info.value.errors]
    assert sorted(paths) == ["colour", "langauge", "language", "text"]
    text = str(info.value)
    assert "did you mean 'language'?" in text
    assert "colour: is not a variable of the request (variables" in text  # no suggestion when nothing is close


def test_template_render_reports_missing_and_unknown_together_with_did_you_mean() -> None:
    template = RequestTemplate(request=TEMPLATE, variables=[Variable(name="tone", default="dry")])
    with pytest.raises(ValidationError) as info:
        template.render(txet="hi", tnoe="warm")
    errors = dict(info.value.errors)
    assert set(errors) == {"language", "text", "txet", "tnoe"}
    assert "did you mean 'text'?" in errors["txet"]
    assert "did you mean 'tone'?" in errors["tnoe"]
    assert "has no value and no default" in errors["language"]
