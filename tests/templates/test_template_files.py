"""Template files: save/load round trips, the TOML writer, the header, ``extends``, strictness, the library."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatdsl
from chatdsl import ChatCompletionRequest, RequestTemplate, TemplateError, TemplateLibrary, Variable, chat
from chatdsl.templates.library import DEFAULT_MAX_SIZE
from chatdsl.templates.toml import dumps_toml
from tests.strategies import requests

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "templates"
tmp_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(has_null(v) for v in value)
    return False


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ round trips


@tmp_settings
@given(request=requests(with_extra=True))
def test_json_files_round_trip_every_request(tmp_path, request):
    path = tmp_path / "r.json"
    request.save(path)
    assert ChatCompletionRequest.load(path) == request
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data.pop("extra", {}) == request.extra
    assert data == chatdsl.chat().merge(request).without("extra").to_dict()


@tmp_settings
@given(request=requests(with_extra=True))
def test_toml_files_round_trip_every_request_without_nulls(tmp_path, request):
    path = tmp_path / "r.toml"
    if has_null(request.to_dict()):
        with pytest.raises(TemplateError, match=r"is null, which TOML cannot hold; save this template as \.json"):
            request.save(path)
        return
    request.save(path)
    assert ChatCompletionRequest.load(path) == request


_keys = st.text(max_size=4) | st.sampled_from(["a.b", "x y", "template", '"', "\\", "é", "[a]", "1"])
_strings = st.text(max_size=10) | st.sampled_from(['"""', 'a"', '""', "\\", "\n", 'x\n"', "\r\n", "\x00\x7f", "'''"])
_scalars = (
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | _strings
)
toml_data = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=3),
    max_leaves=12,
)


@given(st.dictionaries(_keys, toml_data, max_size=4))
def test_the_toml_writer_is_read_back_equal_by_tomllib(data):
    assert tomllib.loads(dumps_toml(data)) == data


def test_toml_files_are_readable(tmp_path):
    request = chat("m").system('Line one\nLine "two" costs $$5\n').user("$q").with_temperature(0.2)
    RequestTemplate(request=request, description="A test.", variables=[Variable(name="q", default=1)]).save(
        tmp_path / "t.toml"
    )
    text = (tmp_path / "t.toml").read_text(encoding="utf-8")
    assert text.startswith('model = "m"\ntemperature = 0.2\n\n[template]\ndescription = "A test."\n')
    assert "[template.variables.q]\ndefault = 1\n" in text
    assert 'content = """\nLine one\nLine "two" costs $$5\n"""' in text
    assert "[[messages]]" in text
    assert RequestTemplate.load(tmp_path / "t.toml").render().messages[1].content == "1"


def test_template_header_round_trips_in_both_formats(tmp_path):
    template = RequestTemplate(
        request=chat("m").user("$a $b").with_extra(x_custom=[1, {"k": "v"}]),
        description="Two variables.",
        variables=[Variable(name="a", description="first", default="A"), Variable(name="b", default=2.5)],
    )
    for name in ("t.json", "t.toml"):
        template.save(tmp_path / name)
        loaded = RequestTemplate.load(tmp_path / name)
        assert loaded == template
        assert loaded.path == tmp_path / name
        assert loaded.render().messages[0].content == "A 2.5"


def test_request_files_keep_text_as_it_is_while_templates_check_placeholders(tmp_path):
    request = chat("m").user("It costs $5 (a lone $)")
    for name in ("r.json", "r.toml"):
        request.save(tmp_path / name)
        assert ChatCompletionRequest.load(tmp_path / name) == request
        with pytest.raises(TemplateError, match=r"messages\[0\]\.content: has an invalid placeholder '\$5'"):
            RequestTemplate.load(tmp_path / name)


def test_saving_refuses_other_suffixes_and_null_in_toml(tmp_path):
    with pytest.raises(TemplateError, match=r"r\.yaml: has the suffix '\.yaml'"):
        chat().save(tmp_path / "r.yaml")
    with pytest.raises(TemplateError) as info:
        chat().with_metadata({"a": [1, None]}).save(tmp_path / "r.toml")
    assert info.value.problems == (
        (str(tmp_path / "r.toml"), "metadata.a[1]", "is null, which TOML cannot hold; save this template as .json"),
    )
    assert not (tmp_path / "r.toml").exists()


# ------------------------------------------------------------------------------------------ extends


def test_extends_chains_merge_bodies_and_variables(tmp_path):
    write(
        tmp_path / "base" / "base.toml",
        'model = "m"\ntemperature = 0\n\n[template]\ndescription = "base"\n\n'
        '[template.variables.lang]\ndescription = "language"\ndefault = "English"\n\n'
        '[[messages]]\nrole = "system"\ncontent = "Answer in $lang."\n',
    )
    write(
        tmp_path / "mid.json",
        json.dumps(
            {
                "template": {"extends": "base/base.toml", "variables": {"lang": {"default": "French"}}},
                "temperature": 0.5,
                "messages": [{"role": "user", "content": "$q"}],
            }
        ),
    )
    write(tmp_path / "sub" / "leaf.toml", 'max_tokens = 9\n\n[template]\nextends = "../mid.json"\n')
    leaf = RequestTemplate.load(tmp_path / "sub" / "leaf.toml")
    assert leaf.request.model == "m"
    assert leaf.request.temperature == 0.5
    assert leaf.request.max_tokens == 9
    assert leaf.description == ""  # a description belongs to its own file
    assert leaf.variables == (Variable(name="lang", description="language", default="French"),)
    rendered = leaf.render(q="Bonjour?")
    assert [m.content for m in rendered.messages] == ["Answer in French.", "Bonjour?"]
    assert ChatCompletionRequest.load(tmp_path / "sub" / "leaf.toml") == leaf.request


def test_extends_cycles_are_refused_listing_the_chain(tmp_path):
    a = write(tmp_path / "a.toml", '[template]\nextends = "b.json"\n')
    write(tmp_path / "b.json", '{"template": {"extends": "c.toml"}}')
    write(tmp_path / "c.toml", '[template]\nextends = "a.toml"\n')
    with pytest.raises(TemplateError) as info:
        RequestTemplate.load(a)
    chain = " -> ".join(str(tmp_path / n) for n in ("a.toml", "b.json", "c.toml", "a.toml"))
    assert info.value.problems == ((str(tmp_path / "c.toml"), "template.extends", f"forms a cycle: {chain}"),)
    me = write(tmp_path / "me.toml", '[template]\nextends = "me.toml"\n')
    with pytest.raises(TemplateError, match="forms a cycle"):
        RequestTemplate.load(me)


def test_a_chain_longer_than_the_recursion_limit_is_followed(tmp_path):
    count = 1500  # above Python's default recursion limit (1,000), which the recursive version hit
    for index in range(count):
        body: dict[str, Any] = {"messages": [{"role": "user", "content": f"m{index}"}]}
        body.update({"template": {"extends": f"t{index - 1}.json"}} if index else {"model": "m"})
        (tmp_path / f"t{index}.json").write_text(json.dumps(body))
    leaf = RequestTemplate.load(tmp_path / f"t{count - 1}.json")
    assert [m.content for m in leaf.request.messages] == [f"m{index}" for index in range(count)]
    assert leaf.request.model == "m"
    (tmp_path / "t0.json").write_text(json.dumps({"template": {"extends": f"t{count - 1}.json"}}))
    with pytest.raises(TemplateError, match="forms a cycle") as info:
        RequestTemplate.load(tmp_path / f"t{count - 1}.json")
    assert info.value.problems[0][0] == str(tmp_path / "t0.json")


def test_extends_a_missing_or_broken_parent_names_the_right_file(tmp_path):
    child = write(tmp_path / "child.toml", '[template]\nextends = "nope.toml"\n')
    with pytest.raises(TemplateError) as info:
        RequestTemplate.load(child)
    assert info.value.file == str(child)
    assert info.value.path == "template.extends"
    assert "'nope.toml' names no file" in str(info.value)
    write(tmp_path / "nope.toml", "temperature = 9\n")
    with pytest.raises(TemplateError) as info:
        RequestTemplate.load(child)
    assert info.value.problems[0][:2] == (str(tmp_path / "nope.toml"), "temperature")


# --------------------------------------------------------------------------------------- strictness


def test_unknown_keys_are_errors_naming_file_and_path_all_at_once(tmp_path):
    path = write(
        tmp_path / "typos.toml",
        'temprature = 0.2\n\n[template]\ndescripton = "x"\n\n[template.variables.a]\ndefualt = "1"\n\n'
        '[[messages]]\nrole = "user"\ncontnt = "hi"\n',
    )
    with pytest.raises(TemplateError) as info:
        ChatCompletionRequest.load(path)
    paths = [p for _, p, _ in info.value.problems]
    assert "template.descripton" in paths
    assert "template.variables.a.defualt" in paths
    assert any(p in ("temprature", "messages[0].contnt") for p in paths)
    assert all(f == str(path) for f, _, _ in info.value.problems)
    assert str(info.value).startswith(f"{path}: ")
    assert isinstance(info.value, chatdsl.ValidationError)


@pytest.mark.parametrize(
    ("name", "text", "path", "message"),
    [
        ("a.json", '{"model": "m", "model": "n"}', "", "the key 'model' appears twice"),
        ("a.json", '{"temperature": NaN}', "", "NaN is not a JSON number"),
        ("a.json", "[1, 2]", "", "not an object"),
        ("a.json", '{"model": ', "", "is not valid JSON"),
        ("a.toml", "model = ", "", "is not valid TOML"),
        ("a.toml", "template = 3\n", "template", "is an int, not a table"),
        ("a.toml", "extra = 3\n", "extra", "not a table of extra body fields"),
        ("a.toml", "[extra]\nmodel = 'm'\n", "extra.model", "shadows the modelled field"),
        ("a.toml", "[template]\nextends = 3\n", "template.extends", "is not a non-empty string"),
        ("a.toml", "[template.variables]\nx = 'default?'\n", "template.variables.x", "is a str, not a table"),
        ("a.toml", "[template.variables.1x]\n", "template.variables.1x", "is not a variable name"),
        ("a.toml", "[template.variables.x]\ndefault = true\n", "template.variables.x.default", "string or a number"),
        ("a.toml", "temperature = 2024-01-01\n", "temperature", "not a number"),
        ("a.toml", "[[messages]]\nrole = 'user'\ncontent = 'costs $5'\n", "messages[0].content", "invalid placeholder"),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path, name, text, path, message):
    file = write(tmp_path / name, text)
    with pytest.raises(TemplateError) as info:
        RequestTemplate.load(file)
    assert info.value.file == str(file)
    assert info.value.path == path
    assert message in info.value.rule


def test_unreadable_files(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        ChatCompletionRequest.load(tmp_path / "missing.toml")
    with pytest.raises(TemplateError, match=r"a template file is \.json or \.toml"):
        ChatCompletionRequest.load(write(tmp_path / "code.py", "import os\n"))
    (tmp_path / "latin1.toml").write_bytes(b'model = "caf\xe9"\n')
    with pytest.raises(TemplateError, match="is not UTF-8 text"):
        ChatCompletionRequest.load(tmp_path / "latin1.toml")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(TemplateError, match="is a folder, not a template file"):
        ChatCompletionRequest.load(tmp_path / "dir.json")
    with pytest.raises(TemplateError, match="does not exist"):  # not "has the suffix ''"
        ChatCompletionRequest.load(tmp_path / "no-such-folder")


def test_files_over_the_size_limit_are_refused(tmp_path):
    assert DEFAULT_MAX_SIZE == 1024 * 1024
    small = write(tmp_path / "small.toml", 'model = "m"\n')
    assert RequestTemplate.load(small, max_size=12).request.model == "m"
    with pytest.raises(TemplateError, match="larger than the limit of 11 bytes"):
        RequestTemplate.load(small, max_size=11)
    big = write(tmp_path / "big.json", json.dumps({"model": "m", "metadata": {"pad": "x" * DEFAULT_MAX_SIZE}}))
    with pytest.raises(TemplateError, match=f"larger than the limit of {DEFAULT_MAX_SIZE} bytes"):
        ChatCompletionRequest.load(big)
    assert RequestTemplate.load(big, max_size=2 * DEFAULT_MAX_SIZE).request.model == "m"


# ------------------------------------------------------------------------------------------ library


def test_the_example_library_loads_and_describes_itself():
    library = TemplateLibrary(EXAMPLES)
    assert library.names() == ("base", "extract", "summarize", "support", "support_fr")
    assert list(library) == list(library.names())
    assert len(library) == 5
    assert "extract" in library
    assert "nope" not in library
    assert library.directory == EXAMPLES
    info = {i.name: i for i in library.describe()}
    assert info["summarize"].description == "Summarize a customer message in a few sentences."
    assert [(v.name, v.default) for v in info["summarize"].variables] == [
        ("language", "English"),
        ("sentences", 2),
        ("text", chatdsl.UNSET),
    ]
    assert info["support_fr"].path == EXAMPLES / "support_fr.json"
    request = library["support_fr"].render(question="Where is A-1?")
    request.validate()
    assert request.tools[0].name == "get_order_status"
    with pytest.raises(KeyError, match=r"no template 'nope'.*templates: base, extract"):
        library["nope"]


def test_the_library_reports_every_bad_file_at_once(tmp_path):
    write(tmp_path / "good.toml", 'model = "m"\n')
    write(tmp_path / "bad1.toml", "temperature = 5\n")
    write(tmp_path / "bad2.json", '{"modle": "m"}')
    write(tmp_path / "dup.json", "{}")
    write(tmp_path / "dup.toml", "")
    write(tmp_path / "notes.md", "not a template")
    write(tmp_path / "child.toml", '[template]\nextends = "bad1.toml"\n')  # bad1's problem is shown once
    with pytest.raises(TemplateError) as info:
        TemplateLibrary(tmp_path)
    files = [Path(f).name for f, _, _ in info.value.problems]
    assert files == ["bad1.toml", "bad2.json", "dup.toml"]
    assert len(info.value.lines()) == 3
    with pytest.raises(TemplateError, match="is not a directory"):
        TemplateLibrary(tmp_path / "good.toml")


def test_template_errors_survive_pickling():
    import pickle

    error = TemplateError([("a.toml", "temperature", "is above the maximum"), ("b.json", "", "does not exist")])
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == error.problems
    assert str(copy) == str(error) == "a.toml: temperature: is above the maximum\nb.json: does not exist"
    assert copy.errors == (("temperature", "is above the maximum"), ("", "does not exist"))


def test_every_problem_of_a_file_is_reported_in_one_run(tmp_path):
    path = write(
        tmp_path / "bad.toml",
        'model = "m"\ntemperature = 9\ntop_p = 5\nnonsense = 1\n'
        '[[messages]]\nrole = "user"\ncontent = "$5 x"\n'
        '[[messages]]\nrole = "wizard"\ncontent = "hi"\n'
        '[[messages]]\nrole = "user"\ncontent = "fine ${ok}"\n'
        '[[tools]]\ntype = "function"\n[tools.function]\nname = "a"\n'
        '[[tools]]\ntype = "function"\n[tools.function]\nname = ""\n',
    )
    with pytest.raises(TemplateError) as info:
        RequestTemplate.load(path)
    found = {(key, message.split(" ")[0]) for _, key, message in info.value.problems}
    assert {key for key, _ in found} == {
        "temperature",
        "top_p",
        "nonsense",
        "messages[1].role",
        "messages[0].content",
        "tools[1].function.name",
    }
    assert all(file == str(path) for file, _, _ in info.value.problems)


def test_a_tool_name_used_twice_is_found_when_each_tool_is_fine(tmp_path):
    tool = '[[tools]]\ntype = "function"\n[tools.function]\nname = "a"\n'
    path = write(tmp_path / "twice.toml", 'model = "m"\ntemperature = 9\n' + tool + tool)
    with pytest.raises(TemplateError) as info:
        RequestTemplate.load(path)
    assert [key for _, key, _ in info.value.problems] == ["temperature", "tools[1].function.name"]


# ------------------------------------------------------------------------ the current request fields

CURRENT_TOML = """\
model = "mistral-small-latest"
top_k = 40
min_tokens = 0
repetition_penalty = 1.1
logprobs = true
top_logprobs = 3
prompt_logprobs = false
top_prompt_logprobs = 0
service_tier = "standard_only"
reasoning_effort = "minimal"

[[guardrails]]
block_on_error = true

[guardrails.moderation_llm_v2]
ignore_other_categories = true
action = "block"

[guardrails.moderation_llm_v2.custom_category_thresholds]
pii = 0.2
jailbreaking = 1

[[messages]]
role = "user"
content = "hi"
"""

CURRENT_REQUEST = (
    chat("mistral-small-latest")
    .user("hi")
    .with_top_k(40)
    .with_min_tokens(0)
    .with_repetition_penalty(1.1)
    .with_logprobs(top=3)
    .with_prompt_logprobs(False, top=0)
    .with_service_tier("standard_only")
    .with_reasoning_effort("minimal")
    .with_guardrails(
        chatdsl.GuardrailConfig(
            block_on_error=True,
            moderation_llm_v2=chatdsl.ModerationConfig(
                ignore_other_categories=True, action="block", custom_category_thresholds={"pii": 0.2, "jailbreaking": 1}
            ),
        )
    )
)


def test_a_toml_file_holds_every_current_request_field(tmp_path):
    path = write(tmp_path / "current.toml", CURRENT_TOML)
    assert ChatCompletionRequest.load(path) == CURRENT_REQUEST
    CURRENT_REQUEST.save(tmp_path / "again.toml")
    assert tomllib.loads((tmp_path / "again.toml").read_text(encoding="utf-8")) == tomllib.loads(CURRENT_TOML)


def test_a_json_file_holds_every_current_request_field(tmp_path):
    path = write(tmp_path / "current.json", json.dumps(tomllib.loads(CURRENT_TOML)))
    assert ChatCompletionRequest.load(path) == CURRENT_REQUEST
    CURRENT_REQUEST.save(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == tomllib.loads(CURRENT_TOML)


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("top_k = -1\n", "top_k", "-1 is below the minimum 0"),
        ("service_tier = ''\n", "service_tier", "'' is empty"),
        ("[[guardrails]]\nblock_on_eror = true\n", "guardrails[0].block_on_eror", "is not a known field"),
        (
            "[[guardrails]]\n[guardrails.moderation_llm_v1.custom_category_thresholds]\npii = 'high'\n",
            "guardrails[0].moderation_llm_v1.custom_category_thresholds.pii",
            "'high' is a str, not a number",
        ),
    ],
)
def test_bad_current_fields_in_a_file_name_file_path_and_rule(tmp_path, text, path, message):
    file = write(tmp_path / "bad.toml", text)
    with pytest.raises(TemplateError) as info:
        ChatCompletionRequest.load(file)
    assert info.value.file == str(file)
    assert info.value.path == path
    assert message in info.value.rule


# --------------------------------------------------------------------------- many problems, long chains


def test_a_file_with_many_problems_reports_a_few_and_counts_the_rest_in_linear_time(tmp_path):
    import time

    from chatdsl.templates.library import MAX_PROBLEMS

    count = 30_000  # de-duplicating problems with a list's `in` took ~13 s here; now well under a second
    body = {"model": "m", **{f"k{i}": 1 for i in range(count)}}
    path = write(tmp_path / "many.json", json.dumps(body))
    started = time.perf_counter()
    with pytest.raises(TemplateError) as info:
        RequestTemplate.load(path)
    assert time.perf_counter() - started < 6
    problems = info.value.problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert [key for _, key, _ in problems[:MAX_PROBLEMS]] == [f"k{i}" for i in range(MAX_PROBLEMS)]
    assert problems[-1] == (str(path), "", f"… and {count - MAX_PROBLEMS:,} more problems")
    assert problems[-1][2] == "… and 29,990 more problems"


def test_a_library_reads_each_file_of_an_extends_chain_once(tmp_path, monkeypatch):
    from chatdsl.templates import files as _templates

    count = 60
    for index in range(count):
        body: dict[str, Any] = {"messages": [{"role": "user", "content": f"m{index}"}]}
        if index:
            body["template"] = {"extends": f"t{index - 1:02d}.json"}
        (tmp_path / f"t{index:02d}.json").write_text(json.dumps(body))
    reads: list[Path] = []
    real_read = _templates._read

    def counting_read(path: Path, max_size: int) -> dict[str, Any]:
        reads.append(path)
        return real_read(path, max_size)

    monkeypatch.setattr(_templates, "_read", counting_read)
    library = TemplateLibrary(tmp_path)
    assert len(reads) == count  # each file once, not once per template that extends it (1,830)
    assert sorted(p.name for p in reads) == [f"t{i:02d}.json" for i in range(count)]
    assert [m.content for m in library[f"t{count - 1}"].request.messages] == [f"m{i}" for i in range(count)]
    assert [m.content for m in library["t05"].request.messages] == [f"m{i}" for i in range(6)]


def test_a_library_reports_a_broken_root_of_a_chain_once_and_reads_it_once(tmp_path, monkeypatch):
    from chatdsl.templates import files as _templates

    write(tmp_path / "a.json", '{"temperature": 9}')
    for index, name in enumerate(("b", "c", "d")):
        write(tmp_path / f"{name}.json", json.dumps({"template": {"extends": "abc"[index] + ".json"}}))
    reads: list[str] = []
    real_read = _templates._read
    monkeypatch.setattr(_templates, "_read", lambda path, size: reads.append(path.name) or real_read(path, size))
    with pytest.raises(TemplateError) as info:
        TemplateLibrary(tmp_path)
    assert [(Path(f).name, p) for f, p, _ in info.value.problems] == [("a.json", "temperature")]
    assert sorted(reads) == ["a.json", "b.json", "c.json", "d.json"]


# ------------------------------------------------------------------------- what files may be read


def test_a_too_long_file_name_is_a_template_error_naming_it(tmp_path):
    long_name = "x" * 300 + ".json"
    with pytest.raises(TemplateError, match="cannot be read") as info:
        RequestTemplate.load(tmp_path / long_name)
    assert info.value.file == str(tmp_path / long_name)
    child = write(tmp_path / "child.json", json.dumps({"template": {"extends": long_name}}))
    with pytest.raises(TemplateError) as info:
        RequestTemplate.load(child)
    assert info.value.problems[0][:2] == (str(child), "template.extends")
    assert "cannot be read" in info.value.problems[0][2]
    with pytest.raises(TemplateError, match=r"cannot be listed \(File name too long\)"):
        TemplateLibrary(tmp_path / ("d" * 300))


def _load_in_a_thread(path: Path) -> BaseException | None:
    """Load *path* in a thread; if it blocks (opening a FIFO), unblock it by opening the FIFO for writing."""
    import os
    import threading

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            RequestTemplate.load(path)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    blocked = thread.is_alive()
    if blocked:  # the reader waits for a writer: give it one, so the test ends
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)
    assert not blocked, f"loading {path.name} blocked"
    return outcome[0]


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_only_regular_files_are_read_a_fifo_named_json_does_not_block(tmp_path):
    import os

    fifo = tmp_path / "x.json"
    os.mkfifo(fifo)
    error = _load_in_a_thread(fifo)
    assert isinstance(error, TemplateError)
    assert error.problems == ((str(fifo), "", "is not a regular file (only regular files are read as templates)"),)
    child = write(tmp_path / "child.json", '{"template": {"extends": "x.json"}}')
    error = _load_in_a_thread(child)
    assert isinstance(error, TemplateError)
    assert error.problems[0][:2] == (str(child), "template.extends")
    write(tmp_path / "fine.json", '{"model": "m"}')
    (tmp_path / "child.json").unlink()
    assert TemplateLibrary(tmp_path).names() == ("fine",)  # the FIFO is not a template file


def test_extends_refuses_absolute_paths(tmp_path):
    secret = write(tmp_path / "elsewhere" / "secret.json", '{"private_key_name": 1}')
    child = write(tmp_path / "lib" / "child.json", json.dumps({"template": {"extends": str(secret)}}))
    with pytest.raises(TemplateError) as info:
        RequestTemplate.load(child)
    rule = "is an absolute path; extends names a file relative to this one"
    assert info.value.problems == ((str(child), "template.extends", f"{str(secret)!r} {rule}"),)
    assert "private_key_name" not in str(info.value)


def test_a_lone_file_may_extend_a_parent_folder_but_a_library_keeps_to_its_own(tmp_path):
    write(tmp_path / "shared" / "base.json", '{"model": "m"}')
    child = write(tmp_path / "lib" / "child.json", '{"template": {"extends": "../shared/base.json"}}')
    assert RequestTemplate.load(child).request.model == "m"  # relative paths may go up, outside a library
    with pytest.raises(TemplateError) as info:
        TemplateLibrary(tmp_path / "lib")
    assert info.value.problems[0][:2] == (str(child), "template.extends")
    assert "leads outside the library's folder" in info.value.problems[0][2]
    assert TemplateLibrary(tmp_path).names() == ()  # from the parent folder (no files of its own): fine
    inside = write(tmp_path / "lib2" / "sub" / "base.json", '{"model": "n"}')
    write(tmp_path / "lib2" / "leaf.json", '{"template": {"extends": "sub/../sub/base.json"}}')
    assert TemplateLibrary(inside.parent.parent)["leaf"].request.model == "n"


def test_a_library_refuses_a_link_that_leads_outside_its_folder(tmp_path):
    secret = write(tmp_path / "elsewhere" / "secret.json", '{"model": "m"}')
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "linked.json").symlink_to(secret)
    write(tmp_path / "lib" / "up.json", '{"template": {"extends": "sub.json"}}')
    (tmp_path / "lib" / "sub.json").symlink_to(secret)
    with pytest.raises(TemplateError) as info:
        TemplateLibrary(tmp_path / "lib")
    names = {Path(f).name: m for f, _, m in info.value.problems}
    assert set(names) == {"linked.json", "sub.json", "up.json"}
    assert all("outside the library's folder" in m for m in names.values())
    assert RequestTemplate.load(tmp_path / "lib" / "linked.json").request.model == "m"


def test_a_nul_character_in_a_name_is_a_template_error(tmp_path):
    child = write(tmp_path / "child.json", json.dumps({"template": {"extends": "a\u0000.json"}}))
    with pytest.raises(TemplateError) as info:
        RequestTemplate.load(child)
    assert info.value.problems[0][:2] == (str(child), "template.extends")
    assert "NUL character" in info.value.problems[0][2]
    with pytest.raises(TemplateError, match="NUL character"):
        RequestTemplate.load(str(tmp_path / "a\0.json"))


def test_abstract_header_is_read_in_both_formats_not_inherited_and_round_trips(tmp_path):
    (tmp_path / "base.toml").write_text(
        '[template]\nabstract = true\ndescription = "Shared."\n[[messages]]\nrole = "system"\ncontent = "Be $tone."\n'
    )
    (tmp_path / "child.json").write_text(
        json.dumps({"template": {"extends": "base.toml"}, "messages": [{"role": "user", "content": "hi"}]})
    )
    (tmp_path / "also.json").write_text(json.dumps({"template": {"abstract": True}, "model": "m"}))
    base = RequestTemplate.load(tmp_path / "base.toml")
    assert base.abstract
    assert base.describe().abstract
    assert RequestTemplate.load(tmp_path / "also.json").abstract
    assert not RequestTemplate.load(tmp_path / "child.json").abstract  # like a description, it is the file's own
    library = TemplateLibrary(tmp_path)
    assert {info.name: info.abstract for info in library.describe()} == {"also": True, "base": True, "child": False}
    for name in ("saved.json", "saved.toml"):
        base.save(tmp_path / name)
        assert RequestTemplate.load(tmp_path / name) == base
    assert not RequestTemplate(request=chat("m")).abstract


@pytest.mark.parametrize("value", ['"yes"', "1", "[]"])
def test_abstract_must_be_a_boolean(tmp_path, value):
    path = tmp_path / "t.toml"
    path.write_text(f"[template]\nabstract = {value}\n")
    with pytest.raises(TemplateError, match=r"template\.abstract: .* not true or false"):
        RequestTemplate.load(path)
