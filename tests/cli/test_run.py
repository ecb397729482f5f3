"""``chatdsl run``: rows in, one JSONL line per row out; resume after ``kill -9``; bad rows; dry runs; progress."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from chatdsl.cli.main import main
from chatdsl.runs.rows import scan_output
from chatdsl.testing import LocalServer, RecordedRequest, Reply
from tests._secrets import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]

TEMPLATE = """\
model = "mistral-small-latest"

[template]
description = "Sort a support ticket."

[template.variables.text]
description = "The ticket."

[template.variables.tone]
default = "brief"

[[messages]]
role = "system"
content = "Sort the ticket as billing, shipping or other; be $tone."

[[messages]]
role = "user"
content = "Ticket from $customer: $text"
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "sort.toml").write_text(TEMPLATE, encoding="utf-8")
    return tmp_path


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", TEST_KEY)


def _csv(path: Path, rows: int) -> Path:
    lines = ["id,customer,text"] + [f't{i},c{i},"parcel {i}, late"' for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _run(*args: str) -> int:
    return main(["run", *args])


# ---------------------------------------------------------------------------------------- runs


def test_a_run_writes_one_line_per_row_and_a_summary(
    files: Path, server: LocalServer, keyed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _csv(files / "in.csv", 12)
    out = files / "out.jsonl"
    status = _run(str(files / "sort.toml"), "--input", str(rows), "--output", str(out), "--base-url", server.url)
    assert status == 0
    records = _records(out)
    assert sorted(r["id"] for r in records) == sorted(f"t{i}" for i in range(12))
    for record in records:
        assert record["response"]["object"] == "chat.completion"
        assert record["attempts"] == 1
        assert record["latency_ms"] > 0
    sent = {r.request.messages[1].content for r in server.requests if r.request is not None}
    assert "Ticket from c3: parcel 3, late" in sent
    assert all(r.json["messages"][0]["content"].endswith("be brief.") for r in server.requests)
    err = capsys.readouterr().err
    assert "run: 12 ok, 0 failed; wall time" in err
    assert "tokens: " in err
    assert "latency: p50 " in err
    assert f"output: {out}" in err


def test_var_values_fill_what_rows_leave_out(
    files: Path, server: LocalServer, keyed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = files / "in.jsonl"
    rows.write_text('{"customer": "a", "text": "x"}\n{"customer": "b", "text": "y", "tone": "kind"}\n')
    args = ["--input", str(rows), "--output", str(files / "o.jsonl"), "--base-url", server.url, "--var", "tone=warm"]
    assert _run(str(files / "sort.toml"), *args) == 0
    systems = [r.json["messages"][0]["content"] for r in server.requests]
    assert {s.rstrip(".").split()[-1] for s in systems} == {"kind", "warm"}  # the row's value wins over --var
    assert sorted(r["id"] for r in _records(files / "o.jsonl")) == ["1", "2"]  # line numbers


def test_bad_rows_get_error_lines_naming_their_line_and_are_never_sent(
    files: Path, server: LocalServer, keyed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = files / "in.jsonl"
    rows.write_text(
        '{"customer": "a", "text": "x"}\n{"customer": "b"\n{"text": "no customer"}\n{"customer": "c", "text": "z"}\n'
    )
    out = files / "out.jsonl"
    status = _run(str(files / "sort.toml"), "--input", str(rows), "--output", str(out), "--base-url", server.url)
    assert status == 1
    records = {r["id"]: r for r in _records(out)}
    assert set(records) == {"1", "2", "3", "4"}
    assert "response" in records["1"]
    assert "response" in records["4"]
    assert records["2"]["error"]["type"] == "RowError"
    assert records["2"]["error"]["message"].startswith(f"{rows}:2: is not valid JSON")
    assert records["3"]["error"]["message"] == (
        f"{rows}:3: customer: is a variable of the request but has no value and no default "
        "(variables: customer, text, tone)"
    )
    assert records["3"]["attempts"] == 0
    assert len(server.requests) == 2
    err = capsys.readouterr().err
    assert "2 failed (2 bad rows)" in err
    assert "chatdsl: error: 2 rows failed" in err


def test_max_errors_stops_the_run(files: Path, server: LocalServer, keyed: None) -> None:
    server.handler = lambda r: Reply.error(400, "refused")
    rows = _csv(files / "in.csv", 50)
    out = files / "out.jsonl"
    args = ["--input", str(rows), "--output", str(out), "--base-url", server.url, "--concurrency", "2"]
    assert _run(str(files / "sort.toml"), *args, "--max-errors", "3") == 1
    records = _records(out)
    assert len(records) == 4  # stopped once more than 3 rows failed
    assert all(r["error"]["status_code"] == 400 for r in records)
    assert len(server.requests) < 50


def test_an_existing_output_needs_resume(
    files: Path, server: LocalServer, keyed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = files / "out.jsonl"
    out.write_text('{"id": "t0", "response": {}}\n')
    rows = _csv(files / "in.csv", 3)
    assert _run(str(files / "sort.toml"), "--input", str(rows), "--output", str(out), "--base-url", server.url) == 1
    assert "already exists; pass --resume" in capsys.readouterr().err
    assert server.requests == []
    assert (
        _run(str(files / "sort.toml"), "--input", str(rows), "--output", str(out), "--base-url", server.url, "--resume")
        == 0
    )
    assert "resuming: 1 row already answered, 2 to go" in capsys.readouterr().err
    assert len(server.requests) == 2
    assert Counter(r["id"] for r in _records(out)) == {"t0": 1, "t1": 1, "t2": 1}


def test_resume_retries_failed_rows(files: Path, server: LocalServer, keyed: None) -> None:
    rows = _csv(files / "in.csv", 4)
    out = files / "out.jsonl"
    server.handler = lambda r: Reply.error(400) if "c2" in r.body.decode() else None
    base = [str(files / "sort.toml"), "--input", str(rows), "--output", str(out), "--base-url", server.url]
    assert _run(*base) == 1
    server.handler = None
    assert _run(*base, "--resume") == 0
    state = scan_output(out)
    assert state.done == {"t0", "t1", "t2", "t3"}
    assert (state.responses, state.errors) == (4, 1)


def test_unknown_var_and_missing_output_are_usage_errors(
    files: Path, keyed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _csv(files / "in.csv", 1)
    assert _run(str(files / "sort.toml"), "--input", str(rows), "--output", "o.jsonl", "--var", "txt=1") == 1
    assert "txt: is not a variable of the template; did you mean 'text'?" in capsys.readouterr().err
    assert _run(str(files / "sort.toml"), "--input", str(rows)) == 1
    assert "--output FILE is required (unless --dry-run)" in capsys.readouterr().err
    assert (
        _run(str(files / "sort.toml"), "--input", str(files / "missing.csv"), "--output", str(files / "o.jsonl")) == 1
    )
    assert "missing.csv: cannot be read (No such file or directory)" in capsys.readouterr().err
    assert _run(str(files / "sort.toml"), "--input", str(rows), "--output", str(files / "no" / "o.jsonl")) == 1
    assert "o.jsonl: cannot be written (No such file or directory)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- dry runs


def test_dry_run_counts_requests_and_prompt_tokens(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _csv(files / "in.csv", 5)
    with open(rows, "a", encoding="utf-8") as fh:
        fh.write("t9,c9\n")
    assert _run(str(files / "sort.toml"), "--input", str(rows), "--dry-run") == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "5 requests (1 bad row)"
    assert lines[1].startswith("prompt tokens: ")
    from chatdsl import RequestTemplate, count_tokens

    template = RequestTemplate.load(files / "sort.toml")
    expected = sum(count_tokens(template.render(customer=f"c{i}", text=f"parcel {i}, late")).tokens for i in range(5))
    assert lines[1].startswith(f"prompt tokens: {expected:,} (approximate)")
    assert f"{rows}:7: has 2 fields, the header has 3" in captured.err


def test_dry_run_without_the_tokens_extra_counts_requests_only(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m.startswith("mistral_common")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mistral_common", None)
    rows = _csv(files / "in.csv", 3)
    assert _run(str(files / "sort.toml"), "--input", str(rows), "--dry-run") == 0
    assert capsys.readouterr().out == (
        "3 requests (0 bad rows)\n"
        "prompt tokens: not counted (the tokens extra is missing: pip install 'chatdsl[tokens]')\n"
    )


# ------------------------------------------------------------------------------------- progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_with_stderr(stream: io.StringIO, *args: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "stderr", stream)
    return _run(*args)


def test_progress_lines_when_not_a_terminal(
    files: Path, server: LocalServer, keyed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.handler = lambda r: Reply.delayed(0.03)
    rows = _csv(files / "in.csv", 20)
    err = io.StringIO()
    args = [
        str(files / "sort.toml"),
        "--input",
        str(rows),
        "--output",
        str(files / "o.jsonl"),
        "--base-url",
        server.url,
    ]
    assert _run_with_stderr(err, *args, "--concurrency", "2", "--progress-every", "0.05", monkeypatch=monkeypatch) == 0
    progress = [line for line in err.getvalue().splitlines() if line.startswith("run: ") and "ETA" in line]
    assert progress, err.getvalue()
    assert "/20 (" in progress[0]
    assert "/s, ETA " in progress[0]
    assert ", errors 0" in progress[0]


def test_a_progress_bar_on_a_terminal(
    files: Path, server: LocalServer, keyed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tqdm")
    rows = _csv(files / "in.csv", 5)
    err = _Terminal()
    args = [
        str(files / "sort.toml"),
        "--input",
        str(rows),
        "--output",
        str(files / "o.jsonl"),
        "--base-url",
        server.url,
    ]
    assert _run_with_stderr(err, *args, monkeypatch=monkeypatch) == 0
    text = err.getvalue()
    assert "5/5" in text
    assert "req/s" in text
    assert "errors=0" in text


def test_without_tqdm_a_terminal_gets_lines_and_a_hint(
    files: Path, server: LocalServer, keyed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    rows = _csv(files / "in.csv", 3)
    err = _Terminal()
    args = [
        str(files / "sort.toml"),
        "--input",
        str(rows),
        "--output",
        str(files / "o.jsonl"),
        "--base-url",
        server.url,
    ]
    assert _run_with_stderr(err, *args, monkeypatch=monkeypatch) == 0
    assert err.getvalue().count("pip install 'chatdsl[progress]'") == 1


# ----------------------------------------------------------------------------- kill -9, resume


def test_resume_after_kill_9_at_random_points_gives_exactly_one_response_per_row(files: Path) -> None:
    """The command in a subprocess, killed with SIGKILL several times at random moments, then resumed to the end."""
    rng = random.Random(16)
    count = 80
    rows = _csv(files / "in.csv", count)
    out = files / "out.jsonl"

    def slow(recorded: RecordedRequest) -> Reply:
        return Reply.delayed(rng.uniform(0.02, 0.08))

    with LocalServer(api_key=TEST_KEY) as server:
        server.handler = slow
        command = [
            sys.executable, "-m", "chatdsl", "run", str(files / "sort.toml"), "--input", str(rows),
            "--output", str(out), "--base-url", server.url, "--concurrency", "4", "--resume",
        ]  # fmt: skip
        env = {**os.environ, "MISTRAL_API_KEY": TEST_KEY}
        kills = 0
        for _ in range(4):
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
            time.sleep(rng.uniform(0.4, 1.0))  # the interpreter starts in about 0.3 s
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait(timeout=30)
            process.stderr.close()  # type: ignore[union-attr]
            if scan_output(out).done == {f"t{i}" for i in range(count)}:
                break
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert final.returncode == 0, final.stderr
    assert kills >= 2
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a whole line
    ids = Counter(json.loads(line)["id"] for line in lines[:-1] if b'"response"' in line)
    assert ids == {f"t{i}": 1 for i in range(count)}
    state = scan_output(out)
    assert state.bad_lines == ()
    assert state.torn == 0


FIRST_FOUR = {f"Ticket from c{i}:" for i in range(4)}


def test_ctrl_c_stops_at_once_even_with_requests_in_flight(files: Path) -> None:
    rows = _csv(files / "in.csv", 40)
    out = files / "out.jsonl"
    with LocalServer(api_key=TEST_KEY) as server:
        server.handler = lambda r: Reply.delayed(
            30 if int(r.json["messages"][1]["content"].split()[2][1:-1]) > 3 else 0
        )
        command = [
            sys.executable, "-m", "chatdsl", "run", str(files / "sort.toml"), "--input", str(rows),
            "--output", str(out), "--base-url", server.url, "--concurrency", "4",
        ]  # fmt: skip
        env = {**os.environ, "MISTRAL_API_KEY": TEST_KEY}
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while len(scan_output(out).done) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the slow requests are in flight now
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
        assert time.monotonic() - started < 5  # not the 30 s the requests in flight would take
    assert process.returncode == 130, stderr
    assert "run: 4 ok, 0 failed" in stderr
    assert "interrupted" in stderr
    assert scan_output(out).done == {"t0", "t1", "t2", "t3"}
