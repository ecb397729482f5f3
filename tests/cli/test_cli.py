"""The ``chatdsl`` command: every subcommand once as a real subprocess, the error paths in-process."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import chatdsl
from chatdsl import RequestTemplate
from chatdsl.cli.main import main
from chatdsl.testing import LocalServer, Reply
from tests._secrets import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "templates"
SUPPORT = str(EXAMPLES / "support_fr.json")
KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatdsl", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("chatdsl: error: ")
    assert "Traceback" not in stderr
    return lines[0]


# ------------------------------------------------------------------------------ subprocesses


def test_render_prints_the_wire_json_through_the_console_script():
    script = Path(sys.executable).parent / "chatdsl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "chatdsl"]
    result = subprocess.run(
        [*command, "render", "examples/templates/summarize.toml", "--var", "text=It costs $5 {x}", "-v", "sentences=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    expected = RequestTemplate.load(EXAMPLES / "summarize.toml").render(text="It costs $5 {x}", sentences="1")
    assert json.loads(result.stdout) == expected.to_dict()
    assert result.stdout.startswith("{\n  ")  # indented by default


def test_render_with_a_missing_value_is_one_line_and_status_1():
    result = run("render", "examples/templates/summarize.toml")
    assert result.returncode == 1
    assert result.stdout == ""
    line = one_error_line(result.stderr)
    assert line == (
        "chatdsl: error: examples/templates/summarize.toml: text: has no value and no default; "
        "give one with --var text=VALUE"
    )


def test_validate_reports_one_line_per_problem(tmp_path):
    (tmp_path / "good.toml").write_text('model = "m"\n[[messages]]\nrole = "user"\ncontent = "$q"\n')
    (tmp_path / "typo.toml").write_text('temprature = 0.2\n[template]\ndescripton = "x"\n')
    (tmp_path / "price.json").write_text('{"messages": [{"role": "user", "content": "costs $5"}]}')
    result = run("validate", str(tmp_path), "examples/templates")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines == [
        f"{tmp_path / 'price.json'}: messages[0].content: has an invalid placeholder '$5' at character 6; "
        "write $name or ${name} for a variable and $$ for a literal dollar",
        f"{tmp_path / 'typo.toml'}: template.descripton: is not a known field "
        "(known: description, extends, variables, abstract)",
        f"{tmp_path / 'typo.toml'}: temprature: is not a known field (known: {', '.join(_request_fields())})",
    ]
    assert result.stderr == "chatdsl: 3 problems in 8 template file(s)\n"
    assert run("validate", "examples/templates").returncode == 0


def _request_fields() -> list[str]:
    return [a.name for a in attrs.fields(chatdsl.ChatCompletionRequest) if a.name != "extra"]


def test_list_shows_names_descriptions_and_variables():
    result = run("list", "examples/templates")
    assert result.returncode == 0, result.stderr
    assert "summarize\tSummarize a customer message in a few sentences.\n" in result.stdout
    assert "    $sentences (default 2)  How many sentences the summary may have.\n" in result.stdout
    assert "    $text (required)  The customer message to summarize.\n" in result.stdout
    assert result.stdout.count("\n    $language") == 5


def test_send_prints_the_answer_then_usage_and_latency(server):
    result = run(
        "send", SUPPORT, "--var", "question=Where is A-1?", "--base-url", server.url, env={"MISTRAL_API_KEY": KEY}
    )
    assert result.returncode == 0, result.stderr
    sent = server.last_request
    assert sent is not None
    assert sent.json == RequestTemplate.load(SUPPORT).render(question="Where is A-1?").to_dict()
    assert "Where is A-1?" in result.stdout  # the local server echoes the last user message
    assert result.stderr.startswith("usage: ")
    assert " tokens; latency " in result.stderr
    assert result.stderr.endswith(" s\n")


def test_send_without_base_url_sends_where_mistral_base_url_says(monkeypatch, capsys, server):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    monkeypatch.setenv("MISTRAL_BASE_URL", server.url)
    assert main(["send", SUPPORT, "--var", "question=Where is A-1?"]) == 0
    assert server.last_request is not None
    assert "Where is A-1?" in capsys.readouterr().out


def test_send_with_openai_base_url_needs_no_openai_key(monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with LocalServer(dialect="openai") as local:
        monkeypatch.setenv("OPENAI_BASE_URL", local.url)
        assert main(["send", SUPPORT, "--var", "question=q", "--dialect", "openai"]) == 0
        assert local.last_request is not None
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert main(["send", SUPPORT, "--var", "question=q", "--dialect", "openai"]) == 1
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err


def test_send_stream_prints_the_text_as_it_arrives(server):
    result = run(
        "send",
        SUPPORT,
        "-v",
        "question=Hello there",
        "--stream",
        "--base-url",
        server.url,
        env={"MISTRAL_API_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    assert server.last_request is not None
    assert server.last_request.json["stream"] is True
    assert "Hello there" in result.stdout
    assert result.stdout.endswith("\n")
    assert "first text after" in result.stderr
    assert result.stderr.startswith("usage: ")


@contextlib.contextmanager
def serving(*options: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run ``chatdsl serve *options`` as a subprocess; yield its URL and the process (killed if still running)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "chatdsl", "serve", *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_until_sigterm_or_ctrl_c(signum):
    with serving("--port", "0") as (url, process):
        with chatdsl.Client(api_key="anything", base_url=url, timeout=10) as client:
            answer = client.chat_completion(chatdsl.chat("m").user("ping"))
        assert "ping" in answer.text()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert "serving chat completions on" in stderr
        assert stderr.endswith("chatdsl: stopped\n")
        assert "Traceback" not in stderr


def test_serve_delay_paces_each_streamed_chunk():
    """`serve --delay 0.05`: every event of a streamed default answer comes 0.05 s after the previous one."""
    with serving("--delay", "0.05") as (url, process):
        with chatdsl.Client(api_key="anything", base_url=url, timeout=10) as client:
            request = chatdsl.chat("m").user("one two")
            times = []
            start = time.monotonic()
            with client.chat_completion_stream(request) as stream:
                for _ in stream:
                    times.append(time.monotonic() - start)
                answer = stream.final_response()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert answer.text() == "echo: one two"
    assert len(times) == 4  # role, "echo:", " one", " two"
    assert times[-1] >= 3 * 0.05
    assert all(later - earlier >= 0.04 for earlier, later in itertools.pairwise(times))


@pytest.mark.parametrize("bad", ["-1", "abc", "inf", "nan"])
def test_serve_delay_must_be_seconds_of_zero_or_more(bad, capsys):
    with pytest.raises(SystemExit) as info:
        main(["serve", "--delay", bad])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--delay" in err
    assert repr(bad) in err


# ------------------------------------------------------------------------------------ in-process


def test_send_needs_the_api_key(monkeypatch, capsys):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    assert main(["send", SUPPORT, "--var", "question=q"]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        "chatdsl: error: MISTRAL_API_KEY is not set; set it to your API key (any key works with `chatdsl serve`)"
    )


def test_send_api_errors_are_one_line(monkeypatch, capsys, server):
    monkeypatch.setenv("MISTRAL_API_KEY", "wrong-key")
    assert main(["send", SUPPORT, "--var", "question=q", "--base-url", server.url]) == 1
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert line.startswith("chatdsl: error: AuthenticationError: HTTP 401")
    assert "wrong-key" not in captured.err + captured.out


def test_send_json_prints_the_response(monkeypatch, capsys, server):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    assert main(["send", SUPPORT, "--var", "question=q", "--base-url", server.url, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"


def test_send_stream_json_prints_one_chunk_per_line(monkeypatch, capsys, server):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    assert main(["send", SUPPORT, "--var", "question=a b c", "--stream", "--json", "--base-url", server.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 2
    assert all(json.loads(line)["object"] == "chat.completion.chunk" for line in lines)


def test_a_broken_stream_ends_the_line_and_fails(monkeypatch, capsys, server):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    server.enqueue(Reply.stream_cut(after=2))  # the role chunk, then "echo:"
    assert main(["send", SUPPORT, "--var", "question=one two three", "--stream", "--base-url", server.url]) == 1
    captured = capsys.readouterr()
    assert captured.out.endswith("\n")
    assert captured.out.strip() != ""
    assert one_error_line(captured.err).startswith("chatdsl: error: StreamError: ")


def test_tool_calls_are_shown(monkeypatch, capsys, server):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    answer = {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "created": 0,
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": "c1", "function": {"name": "get_order_status", "arguments": '{"order": "A-1"}'}}
                    ],
                },
            }
        ],
    }
    server.enqueue(Reply.json(answer))
    assert main(["send", SUPPORT, "--var", "question=q", "--base-url", server.url]) == 0
    captured = capsys.readouterr()
    assert captured.out == '[tool call get_order_status({"order": "A-1"})]\n'  # no empty line above it
    assert captured.err.startswith("usage: 1 prompt + 2 completion = 3 tokens; latency ")


def test_validate_complete_renders_with_defaults_and_vars(capsys):
    assert main(["validate", "--complete", str(EXAMPLES / "summarize.toml")]) == 1
    out = capsys.readouterr().out
    assert "summarize.toml: text: is a variable of the request but has no value" in out
    assert main(["validate", "--complete", str(EXAMPLES / "summarize.toml"), "--var", "text=t", "-v", "x=y"]) == 0
    assert main(["validate", "--complete", str(EXAMPLES / "base.toml")]) == 1
    assert "the last message must be a user or tool message" in capsys.readouterr().out


def test_render_names_unknown_and_missing_values_together(tmp_path, capsys):
    template = tmp_path / "t.toml"
    template.write_text(
        '[template.variables.tone]\ndefault = "calm"\n[template.variables.spare]\n'
        '[[messages]]\nrole = "user"\ncontent = "$a $b $tone"\n'
    )
    assert main(["render", str(template), "--var", "zz=1", "--var", "b=2", "--var", "spare=3", "--var", "c=4"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"chatdsl: error: {template}: zz: is not a variable of the template (variables: a, b, spare, tone)",
        f"chatdsl: error: {template}: c: is not a variable of the template (variables: a, b, spare, tone)",
        f"chatdsl: error: {template}: a: has no value and no default; give one with --var a=VALUE",
    ]
    assert main(["render", str(template), "--compact", "--var", "a=1", "--var", "b=2", "--var", "spare=3"]) == 0
    assert json.loads(capsys.readouterr().out)["messages"] == [{"role": "user", "content": "1 2 calm"}]


def test_template_problems_and_size_limits(tmp_path, capsys):
    assert main(["render", str(tmp_path / "missing.toml")]) == 1
    assert one_error_line(capsys.readouterr().err).endswith("missing.toml: does not exist")
    assert main(["render", str(EXAMPLES / "base.toml"), "--max-size", "10"]) == 1
    assert "is larger than the limit of 10 bytes" in capsys.readouterr().err
    assert main(["list", str(tmp_path / "nope")]) == 1
    assert one_error_line(capsys.readouterr().err).endswith("nope: is not a directory")
    assert main(["validate", str(tmp_path)]) == 1
    assert capsys.readouterr().out == f"{tmp_path}: holds no .json or .toml file\n"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["render"],
        ["render", "t.toml", "--var", "novalue"],
        ["send", "t.toml", "--timeout", "-1"],
        ["serve", "--port", "70000"],
        ["frobnicate"],
    ],
)
def test_command_line_mistakes_exit_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------ --dialect


def test_render_in_the_openai_dialect_prints_the_openai_body(capsys):
    assert main(["render", SUPPORT, "-v", "question=Where is A-1?", "--dialect", "openai"]) == 0
    expected = RequestTemplate.load(SUPPORT).render(question="Where is A-1?").to_dict(dialect="openai")
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(expected))


def mistral_only(tmp_path: Path) -> str:
    path = tmp_path / "safe.json"
    path.write_text(json.dumps({"model": "m", "safe_prompt": True, "messages": [{"role": "user", "content": "hi"}]}))
    return str(path)


def test_a_field_the_dialect_lacks_is_one_error_line_unless_dropped(tmp_path, capsys):
    template = mistral_only(tmp_path)
    assert main(["render", template, "--dialect", "openai"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("chatdsl: error: safe_prompt: True has no equivalent in the openai dialect")
    assert line.endswith("leave it out, or pass --drop-unsupported")
    assert main(["render", template, "--dialect", "openai", "--drop-unsupported", "--compact"]) == 0
    assert json.loads(capsys.readouterr().out) == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert main(["render", template, "--compact"]) == 0  # the Mistral dialect sends it
    assert json.loads(capsys.readouterr().out)["safe_prompt"] is True


def test_validate_checks_every_template_maps_to_the_dialect(tmp_path, capsys):
    template = mistral_only(tmp_path)
    assert main(["validate", template, str(EXAMPLES), "--dialect", "openai"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"{template}: safe_prompt: True has no equivalent in the openai dialect (OpenAI's API injects no safety "
        "prompt); leave it out, or render or send it with --drop-unsupported"
    ]
    assert captured.err == "chatdsl: 1 problem in 6 template file(s)\n"
    assert main(["validate", str(EXAMPLES), "--dialect", "openai"]) == 0
    assert main(["validate", template]) == 0


@pytest.fixture
def openai_server():
    from chatdsl.testing import LocalServer

    with LocalServer(dialect="openai") as running:
        yield running


def test_send_to_an_openai_compatible_server_needs_no_key(monkeypatch, capsys, openai_server):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # OpenAI's key goes to OpenAI's host only
    argv = ["send", SUPPORT, "-v", "question=Where is A-1?", "--dialect", "openai", "--base-url", openai_server.url]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Where is A-1?" in captured.out
    sent = openai_server.last_request
    assert sent is not None
    assert sent.authorization is None
    assert sent.json == json.loads(
        json.dumps(RequestTemplate.load(SUPPORT).render(question="Where is A-1?").to_dict(dialect="openai"))
    )
    assert main([*argv, "--stream"]) == 0
    assert "Where is A-1?" in capsys.readouterr().out
    assert openai_server.last_request is not None
    assert openai_server.last_request.json["stream"] is True


def test_send_reads_the_key_from_the_variable_named_by_api_key_env(monkeypatch, capsys, openai_server, tmp_path):
    argv = ["send", SUPPORT, "-v", "question=q", "--dialect", "openai", "--base-url", openai_server.url]
    monkeypatch.setenv("VLLM_KEY", KEY)
    assert main([*argv, "--api-key-env", "VLLM_KEY"]) == 0
    assert openai_server.last_request is not None
    assert openai_server.last_request.authorization == f"Bearer {KEY}"
    capsys.readouterr()
    monkeypatch.delenv("VLLM_KEY")
    assert main([*argv, "--api-key-env", "VLLM_KEY"]) == 1
    assert one_error_line(capsys.readouterr().err) == "chatdsl: error: VLLM_KEY (named by --api-key-env) is not set"
    monkeypatch.setenv("VLLM_KEY", "")
    assert main([*argv, "--api-key-env", "VLLM_KEY"]) == 1
    assert one_error_line(capsys.readouterr().err) == "chatdsl: error: VLLM_KEY (named by --api-key-env) is empty"
    with pytest.raises(SystemExit) as info:  # an empty name (say, an unset "$NAME") is a usage mistake
        main([*argv, "--api-key-env", ""])
    assert info.value.code == 2
    assert "is not an environment variable name" in capsys.readouterr().err
    assert main(["send", mistral_only(tmp_path), "--dialect", "openai", "--base-url", openai_server.url]) == 1
    assert "pass --drop-unsupported" in one_error_line(capsys.readouterr().err)


def test_send_to_openai_itself_without_its_key_fails_before_sending(monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["send", SUPPORT, "-v", "question=q", "--dialect", "openai"]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        "chatdsl: error: OPENAI_API_KEY is not set; OpenAI's API needs a key "
        "(for an OpenAI-compatible server, give its --base-url)"
    )


def test_serve_speaks_the_openai_dialect():
    with serving("--dialect", "openai") as (url, process):
        with chatdsl.Client(base_url=url, dialect="openai", timeout=10) as client:
            assert "ping" in client.chat_completion(chatdsl.chat("m").user("ping")).text()
            with pytest.raises(chatdsl.BadRequestError, match="safe_prompt"):  # an OpenAI server refuses it
                client.with_options(dialect="mistral", api_key="k").chat_completion(
                    chatdsl.chat("m").user("ping").with_safe_prompt()
                )
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr


def test_cli_messages_name_what_the_command_line_can_do(monkeypatch, capsys):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    assert main(["send", SUPPORT, "-v", "question=q", "--base-url", "http://example.com"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.endswith("use https (the command sends a key over plain http only to this machine)")
    assert "allow_insecure_http" not in line
    assert main(["validate", "/nonexistent/folder"]) == 1
    assert capsys.readouterr().out == "/nonexistent/folder: does not exist\n"
    assert main(["render", str(EXAMPLES)]) == 1
    assert one_error_line(capsys.readouterr().err).endswith("is a folder, not a template file")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "130 interrupted" in capsys.readouterr().out


# --------------------------------------------------------------------------- server text, serve's key


ESCAPES = "\x1b[2J\x1b]0;owned\x07\x9b31m\r"  # clear screen, set title, C1 CSI, carriage return


def test_send_prints_control_characters_from_the_server_escaped(monkeypatch, capsys, server):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    argv = ["send", SUPPORT, "--var", f"question=hi{ESCAPES}there", "--base-url", server.url]
    assert main(argv) == 0  # the local server echoes the question back
    out = capsys.readouterr().out
    assert "\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\x0d" in out
    assert not any(c in out for c in "\x1b\x07\x9b\r")
    assert main([*argv, "--stream"]) == 0
    out = capsys.readouterr().out
    assert "\\x1b[2J" in out
    assert not any(c in out for c in "\x1b\x07\x9b\r")
    for extra in (["--json"], ["--json", "--stream"]):
        assert main([*argv, *extra]) == 0
        out = capsys.readouterr().out
        assert not any(c in out for c in "\x1b\x07\x9b\r")
        first = json.loads(out.splitlines()[0] if "--stream" in extra else out)
        assert first["object"].startswith("chat.completion")
    assert main([*argv, "--json"]) == 0
    assert ESCAPES in json.loads(capsys.readouterr().out)["choices"][0]["message"]["content"]  # same value


def test_error_messages_from_the_server_are_printed_escaped(monkeypatch, capsys, server):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    server.enqueue(Reply.error(400, f"bad{ESCAPES}request"))
    assert main(["send", SUPPORT, "--var", "question=q", "--base-url", server.url]) == 1
    err = capsys.readouterr().err
    line = one_error_line(err)
    assert "bad\\x1b[2J" in line
    assert not any(c in err for c in "\x1b\x07\x9b\r")


def test_serve_reads_its_key_from_an_environment_variable():
    from tests._secrets import TEST_KEY

    env = {**os.environ, "SERVE_KEY": TEST_KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "chatdsl", "serve", "--api-key-env", "SERVE_KEY"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        with (
            chatdsl.Client(api_key="wrong", base_url=url, timeout=10, max_retries=0) as client,
            pytest.raises(chatdsl.AuthenticationError),
        ):
            client.chat_completion(chatdsl.chat("m").user("ping"))
        with chatdsl.Client(api_key=TEST_KEY, base_url=url, timeout=10) as client:
            assert "ping" in client.chat_completion(chatdsl.chat("m").user("ping")).text()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "warning" not in stderr
    assert TEST_KEY not in stderr


def test_serve_api_key_on_the_command_line_still_works_with_a_deprecation_warning(monkeypatch, capsys):
    from chatdsl import testing

    made: list[dict[str, object]] = []

    class Refusing(testing.LocalServer):
        def __init__(self, **kwargs: object) -> None:
            made.append(kwargs)
            super().__init__(**kwargs)  # type: ignore[arg-type]

        def start(self) -> testing.LocalServer:
            raise OSError(99, "Cannot assign requested address")  # stop before listening anywhere

    monkeypatch.setattr(testing, "LocalServer", Refusing)
    assert main(["serve", "--api-key", "k-on-the-command-line"]) == 1
    err = capsys.readouterr().err
    assert "chatdsl: warning: --api-key is deprecated" in err
    assert "--api-key-env NAME" in err
    assert made[-1]["api_key"] == "k-on-the-command-line"
    assert made[-1]["max_recorded"] == 0  # serve keeps no request
    monkeypatch.setenv("SERVE_KEY", "k")
    assert main(["serve", "--api-key", "x", "--api-key-env", "SERVE_KEY"]) == 1
    assert "give the key once" in capsys.readouterr().err
    monkeypatch.delenv("SERVE_KEY")
    assert main(["serve", "--api-key-env", "SERVE_KEY"]) == 1
    assert one_error_line(capsys.readouterr().err) == "chatdsl: error: SERVE_KEY (named by --api-key-env) is not set"


@pytest.mark.parametrize(
    ("host", "key", "warned"),
    [("0.0.0.0", False, True), ("192.0.2.7", False, True), ("example.test", False, True), ("::", False, True),
     ("0.0.0.0", True, False), ("127.0.0.1", False, False), ("127.0.0.2", False, False), ("localhost", False, False),
     ("::1", False, False)],
)  # fmt: skip
def test_serve_warns_when_listening_beyond_this_machine_without_a_key(monkeypatch, capsys, host, key, warned):
    from chatdsl import testing

    class Refusing(testing.LocalServer):
        def start(self) -> testing.LocalServer:
            raise OSError(99, "Cannot assign requested address")  # nothing listens: the warning comes first

    monkeypatch.setattr(testing, "LocalServer", Refusing)
    monkeypatch.setenv("SERVE_KEY", "k")
    assert main(["serve", "--host", host, *(["--api-key-env", "SERVE_KEY"] if key else [])]) == 1
    err = capsys.readouterr().err
    assert (f"chatdsl: warning: serving on {host} without a key" in err) is warned
    assert err.rstrip().endswith("(Cannot assign requested address)")


def test_a_too_long_file_name_is_one_error_line_not_a_traceback(tmp_path, capsys):
    long_name = str(tmp_path / ("x" * 300 + ".json"))
    assert main(["render", long_name]) == 1
    assert one_error_line(capsys.readouterr().err).endswith("cannot be read (File name too long)")
    assert main(["validate", long_name]) == 1
    out = capsys.readouterr().out
    assert out == f"{long_name}: cannot be read (File name too long)\n"
    assert main(["list", str(tmp_path / ("d" * 300))]) == 1
    assert one_error_line(capsys.readouterr().err).endswith("cannot be listed (File name too long)")
    (tmp_path / "child.json").write_text(json.dumps({"template": {"extends": "y" * 300 + ".json"}}))
    assert main(["render", str(tmp_path / "child.json")]) == 1
    assert "template.extends: " in one_error_line(capsys.readouterr().err)


def test_validate_complete_skips_abstract_templates_and_list_marks_them(tmp_path, capsys):
    def write_base(abstract: bool) -> None:
        (tmp_path / "base.toml").write_text(
            f'model = "m"\n[template]\nabstract = {str(abstract).lower()}\ndescription = "Shared."\n'
            'variables.tone.default = "calm"\n[[messages]]\nrole = "system"\ncontent = "Be $tone."\n'
        )

    write_base(abstract=True)
    (tmp_path / "ask.toml").write_text(
        '[template]\nextends = "base.toml"\n[[messages]]\nrole = "user"\ncontent = "$question"\n'
    )
    assert main(["validate", "--complete", str(tmp_path), "--var", "question=q"]) == 0
    summary = "chatdsl: 2 template file(s) OK (1 abstract, not rendered: meant to be extended)\n"
    assert capsys.readouterr().err == summary
    assert main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().err == "chatdsl: 2 template file(s) OK\n"
    assert main(["list", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == ["ask", "    $question (required)", "    $tone (default 'calm')"]
    assert main(["list", str(tmp_path)]) == 0
    assert "base\t[abstract] Shared.\n" in capsys.readouterr().out
    write_base(abstract=False)
    assert main(["validate", "--complete", str(tmp_path), "--var", "question=q"]) == 1  # the base alone ends on system
    captured = capsys.readouterr()
    assert "base.toml: messages[0]: is a system message" in captured.out
    assert "abstract" not in captured.err


def test_render_suggests_the_near_name(tmp_path, capsys):
    template = tmp_path / "t.toml"
    template.write_text('[[messages]]\nrole = "user"\ncontent = "$language"\n')
    assert main(["render", str(template), "--var", "langauge=fr"]) == 1
    assert "langauge: is not a variable of the template; did you mean 'language'?" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--port", "70000"], "argument --port: '70000' is not a port number (0 to 65535)"),
        (["serve", "--port", "x"], "argument --port: 'x' is not a port number"),
        (["serve", "--delay", "-1"], "argument --delay: '-1' is not a finite number of seconds (0 or more)"),
        (["serve", "--delay", "inf"], "argument --delay: 'inf' is not a finite number of seconds (0 or more)"),
        (["send", "t.toml", "--timeout", "0"], "argument --timeout: '0' is not a finite number of seconds (above 0)"),
        (["send", "t.toml", "--timeout", "x"], "argument --timeout: 'x' is not a number of seconds"),
        (["run", "t.toml", "--concurrency", "0"], "argument --concurrency: '0' is not a whole number (1 or more)"),
        (["run", "t.toml", "--max-errors", "-1"], "argument --max-errors: '-1' is not a whole number (0 or more)"),
        (["run", "t.toml", "--max-errors", "1.5"], "argument --max-errors: '1.5' is not a whole number"),
        (["serve", "--port", "9" * 400], f"argument --port: '{'9' * 400}' is not a port number (0 to 65535)"),
        (
            ["run", "t.toml", "--requests-per-second", "nan"],
            "argument --requests-per-second: 'nan' is not a finite number (above 0)",
        ),
    ],
)
def test_a_number_option_out_of_range_names_the_option_the_value_and_the_range(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.rstrip("\n").endswith(f"error: {message}")
