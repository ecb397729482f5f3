"""Secret hygiene: the guard that watches every test for the API key, and template files that are data only."""

from __future__ import annotations

import builtins
import json
import logging
import marshal
import os
import pickle
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import chatdsl
from chatdsl import (
    ChatCompletionRequest,
    RequestTemplate,
    TemplateError,
    TemplateLibrary,
    Timeout,
    ValidationError,
)
from chatdsl.templates.library import DEFAULT_MAX_SIZE
from chatdsl.testing import LocalServer, Reply
from tests._clients import ClientDriver
from tests._secrets import TEST_KEY, SecretGuard, exception_texts, frame_locals, leaked

KEY = TEST_KEY
REQUEST = chatdsl.chat("mistral-small-latest").user("Hello")
ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------ the guard itself


def test_leaked_finds_the_key_and_any_twelve_characters_of_it() -> None:
    assert leaked(f"Authorization: Bearer {KEY}")
    assert leaked("... " + KEY[5:17] + " ...")  # a key cut short in a message is still a leak
    assert leaked(KEY[-12:])
    assert not leaked(KEY[:11])
    assert not leaked("sk-test-5f1c0a9e77b24c1d")


def test_the_guard_looks_into_logs_causes_contexts_notes_attributes_and_groups() -> None:
    guard = SecretGuard()
    assert guard.leaks() == []
    guard.records.append(("log record urllib3 DEBUG", f"header Bearer {KEY}"))

    cause = ValueError(f"bad header {KEY}")
    with_cause = chatdsl.APIConnectionError("failed")
    with_cause.__cause__ = cause
    with_context = RuntimeError("outer")
    with_context.__context__ = KeyError(KEY[3:20])
    with_note = chatdsl.StreamError("cut")
    with_note.add_note(f"sent with {KEY}")
    with_body = chatdsl.BadRequestError("bad", status_code=400, body={"echo": KEY})
    group = ExceptionGroup("many", [ValueError(KEY)])
    for exc in (with_cause, with_context, with_note, with_body, group):
        guard.exception(exc)
    leaks = guard.leaks()
    assert len(leaks) >= 6
    assert all(KEY[:12] not in line and KEY[-12:] not in line for line in leaks), "leaks are shown masked"
    assert any("<KEY>" in line for line in leaks)
    assert any(KEY in text for text in exception_texts(with_body))


def _send_with_headers(headers: dict[str, str]) -> None:
    raise OSError("connection refused")  # this frame holds the headers in its locals, as urllib3's do


def _fail_holding(nested: object) -> None:
    try:
        _send_with_headers({"Authorization": f"Bearer {KEY}"})
    except OSError as exc:
        raise chatdsl.APIConnectionError("failed") from exc


def test_the_guard_looks_into_the_locals_of_chained_exceptions_frames() -> None:
    guard = SecretGuard()
    try:
        try:
            _send_with_headers({"Authorization": f"Bearer {KEY}"})
        except OSError as exc:
            raise chatdsl.APIConnectionError("failed") from exc
    except chatdsl.APIConnectionError as error:
        guard.exception(error)
        caught = error
    assert any("frames' locals" in line for line in guard.leaks())
    assert not any(leaked(text) for text in exception_texts(caught))  # only the frames show it

    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(chatdsl.APIConnectionError) as info:
        _fail_holding(deep)  # a local whose repr overflows the stack: the check still runs
    assert leaked(frame_locals(info.value))


def test_the_guard_fails_a_test_that_leaks_through_a_log_an_error_or_the_output(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makeconftest('pytest_plugins = ["tests._secrets"]\n')
    pytester.makepyfile(
        f"""
        import logging
        import pytest
        import chatdsl

        KEY = {KEY!r}

        def test_clean():
            logging.getLogger("chatdsl").debug("nothing secret here")

        def test_log():
            logging.getLogger("urllib3").debug("send: Authorization: Bearer %s", KEY)

        def test_error_through_the_client():
            with pytest.raises(chatdsl.ValidationError):  # the message shows the (silly) URL, key and all
                chatdsl.Client(KEY, base_url="ftp://" + KEY)

        def test_output():
            print("the key is", KEY[:20])
        """
    )
    # --show-capture=no: the inner report must not print the captured key into this test's own output
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-q", "--show-capture=no"
    )
    result.assert_outcomes(passed=3, failed=1, errors=2)  # the call passed, the guard failed the teardown
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_log*",
            "*log record urllib3 DEBUG: 'send: Authorization: Bearer <KEY>'*",
            "*ERROR at teardown of test_error_through_the_client*",
            "*exception ValidationError*ftp://<KEY>*",
            "*Captured stdout call: 'the key is <KEY>*",
            "*leaks found: [1-9]*",
        ]
    )
    assert not leaked(result.stdout.str())


# ------------------------------------------------------------------------------ the client, through every fault


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(api_key=KEY) as srv:
        yield srv


def test_no_fault_shows_the_key_anywhere(
    server: LocalServer, secret_guard: SecretGuard, make_client: ClientDriver
) -> None:
    """Every kind of failure, plain and streamed, for both clients; the guard checks all logs and errors at the end."""
    plain_faults = [
        Reply.error(400, "Invalid model"),
        Reply.error(401, "Unauthorized"),
        Reply.error(422, body={"detail": [{"loc": ["body", "model"], "msg": "Field required", "type": "missing"}]}),
        Reply.error(429, retry_after=0.01),
        Reply.html(502),
        Reply.drop(reset=True),
        Reply.drop(),
        Reply.truncated(),
        Reply.stall(1.0),
        Reply.raw("not json", content_type="application/json"),
        Reply.json({"object": "error", "message": "overloaded"}),
    ]
    stream_faults = [
        Reply.stream_cut(1),
        Reply.stream_cut(1, mid_event=True, reset=True),
        Reply.stream_malformed(1),
        Reply.stream_error("boom"),
        Reply.stream_stall(1.0),
        Reply.stream(done=False),
        Reply.json(),
    ]
    with make_client(KEY, base_url=server.url, timeout=Timeout(connect=1, read=0.2), max_retries=0) as client:
        for fault in plain_faults:
            server.enqueue(fault)
            with pytest.raises(chatdsl.ChatDSLError):
                client.chat_completion(REQUEST)
        for fault in stream_faults:
            server.enqueue(fault)
            try:
                with client.chat_completion_stream(REQUEST) as stream:
                    chunks = list(stream)
                assert chunks[-1].error is not None
            except chatdsl.MalformedResponseError:
                pass
        assert KEY not in repr(client)
        assert KEY not in repr(stream)
        assert KEY not in repr(server.last_request)
        assert KEY not in repr(client.chat_completion(REQUEST))
    with pytest.raises(ValidationError) as refused:  # credentials in the URL are refused, and not echoed
        make_client(KEY, base_url="http://user:secret-pw@127.0.0.1:1", max_retries=0)
    assert "secret-pw" not in str(refused.value)
    with (
        make_client(KEY, base_url="http://127.0.0.1:1", max_retries=0) as closed_port,
        pytest.raises(chatdsl.APIConnectionError),
    ):
        closed_port.chat_completion(REQUEST)
    assert len(secret_guard.exceptions) >= len(plain_faults) + len(stream_faults) - 1
    names = {where.split()[2] for where, _ in secret_guard.records}
    transport = {"urllib3.connectionpool"} if make_client.kind == "sync" else set()
    assert {"chatdsl", "chatdsl.testing"} | transport <= names


def test_a_bad_key_is_never_echoed(server: LocalServer, make_client: ClientDriver) -> None:
    for bad in (KEY + " ", KEY + "\n", "é" + KEY):
        with pytest.raises(ValidationError) as info:
            make_client(bad, base_url=server.url)
        assert not leaked(str(info.value))


# ------------------------------------------------------------------------------ templates are data only

HOSTILE = [
    "__import__('os').system('touch {sentinel}')",
    "{{{{ ''.__class__.__mro__[1].__subclasses__() }}}}",
    "!!python/object/apply:os.system ['touch {sentinel}']",
    "$(touch {sentinel}) `touch {sentinel}`",
    "cos\\nsystem\\n(S'touch {sentinel}'\\ntR.",
    "<%= File.write('{sentinel}', 1) %>",
]


@pytest.fixture
def hostile_templates(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    sentinel = tmp_path / "PWNED"
    texts = [text.format(sentinel=sentinel) for text in HOSTILE]
    folder = tmp_path / "templates"
    folder.mkdir()
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": text.replace("$", "$$")} for text in texts],
        "metadata": {"code": texts[0], "nested": {"yaml": texts[2]}},
        "template": {"description": texts[1], "variables": {"x": {"default": texts[0]}}},
    }
    (folder / "hostile.json").write_text(json.dumps(body), encoding="utf-8")
    toml = ['model = "m"', "[metadata]"] + [f"k{i} = {json.dumps(text)}" for i, text in enumerate(texts)]
    toml += [
        "[[messages]]",
        'role = "user"',
        'content = "$x and ${x}"',
        "[template.variables.x]",
        f"default = {json.dumps(texts[0])}",
    ]
    (folder / "hostile_toml.toml").write_text("\n".join(toml) + "\n", encoding="utf-8")
    return folder, sentinel, texts


def test_loading_and_rendering_hostile_templates_runs_no_code(
    hostile_templates: tuple[Path, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, sentinel, texts = hostile_templates
    TemplateLibrary(folder)  # once first, so any code chatdsl's converter generates lazily exists already

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"code was run while loading a template: {args!r:.200}")

    for owner, name in [
        (builtins, "eval"),
        (builtins, "exec"),
        (builtins, "compile"),
        (pickle, "loads"),
        (marshal, "loads"),
        (os, "system"),
        (os, "popen"),
        (subprocess, "Popen"),
    ]:
        monkeypatch.setattr(owner, name, forbidden)
    library = TemplateLibrary(folder)
    json_request = library["hostile"].render(x="1")
    toml_request = library["hostile_toml"].render()
    monkeypatch.undo()

    assert [m.content for m in json_request.messages] == texts
    assert json_request.metadata == {"code": texts[0], "nested": {"yaml": texts[2]}}
    assert toml_request.messages[0].content == f"{texts[0]} and {texts[0]}"  # a value is inserted, never run
    assert dict(toml_request.metadata) == {f"k{i}": text for i, text in enumerate(texts)}
    assert not sentinel.exists()


@pytest.mark.parametrize("placeholder", ["${x.__class__}", "${x[0]}", "${x!r}", "$x.__class__.__mro__"])
def test_placeholders_are_names_not_expressions(tmp_path: Path, placeholder: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"model": "m", "messages": [{"role": "user", "content": placeholder}]}))
    if placeholder.startswith("$x."):
        request = RequestTemplate.load(path).render(x="X")
        assert request.messages[0].content == "X" + placeholder[2:]  # $x, then literal text
        return
    with pytest.raises(TemplateError, match="placeholder"):
        RequestTemplate.load(path)


# ------------------------------------------------------------------------------ oversized template files


def test_a_file_of_exactly_the_limit_loads_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    head = json.dumps({"model": "m"})
    path = tmp_path / "edge.json"
    path.write_text(head + " " * (DEFAULT_MAX_SIZE - len(head)))
    assert path.stat().st_size == DEFAULT_MAX_SIZE
    assert ChatCompletionRequest.load(path).model == "m"
    path.write_text(head + " " * (DEFAULT_MAX_SIZE - len(head) + 1))
    with pytest.raises(TemplateError, match=f"larger than the limit of {DEFAULT_MAX_SIZE} bytes"):
        ChatCompletionRequest.load(path)


def test_a_huge_or_endless_file_is_refused_after_reading_the_limit_only(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.toml"
    with sparse.open("wb") as handle:
        handle.truncate(8 << 30)  # 8 GiB that take no disk
    endless = tmp_path / "zero.json"
    endless.symlink_to("/dev/zero")
    # A device is not read at all (only regular files are templates); a huge regular file only up to the limit.
    for path, refusal in ((sparse, "larger than the limit"), (endless, "is not a regular file")):
        start = time.perf_counter()
        with pytest.raises(TemplateError, match=refusal):
            RequestTemplate.load(path)
        assert time.perf_counter() - start < 5  # reading the first 1 MiB + 1 byte only


def test_an_oversized_file_in_a_library_or_an_extends_chain_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_text(json.dumps({"model": "m", "metadata": {"pad": "x" * 2000}}))
    (tmp_path / "child.json").write_text(json.dumps({"template": {"extends": "big.json"}, "temperature": 0}))
    with pytest.raises(TemplateError) as info:
        TemplateLibrary(tmp_path, max_size=1000)
    assert {Path(problem[0]).name for problem in info.value.problems} == {"big.json"}
    assert all("larger than the limit of 1000 bytes" in problem[2] for problem in info.value.problems)


def test_logging_during_a_load_is_quiet_about_file_contents(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"model": "m", "messages": [{"role": "user", "content": f"my key is {KEY}"}]}))
    RequestTemplate.load(path)
    assert not leaked(caplog.text)
