"""``chatdsl batch``: submit, status, wait, results and cancel against LocalServer (in-process and as a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatdsl.cli.main import main
from chatdsl.testing import LocalServer, Reply
from tests._secrets import TEST_KEY
from tests.cli.test_cli import serving

ROOT = Path(__file__).resolve().parents[2]
SUMMARIZE = str(ROOT / "examples" / "templates" / "summarize.toml")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    monkeypatch.setenv("MISTRAL_API_KEY", TEST_KEY)
    with LocalServer(api_key=TEST_KEY) as running:
        yield running


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.csv"
    path.write_text('id,customer,text\nT-1,Ana,"Refund, please"\nT-2,Ben,Where is my parcel?\nT-3,Chloé,Colis abîmé\n')
    return path


def batch(server: LocalServer, *args: str) -> list[str]:
    return ["batch", *args, "--base-url", server.url]


def submit(server: LocalServer, rows: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(batch(server, "submit", SUMMARIZE, "--input", str(rows), *extra)) == 0
    out, err = capsys.readouterr()
    assert "submitted batch job" in err
    return out.strip()


def test_submit_wait_results_write_runs_records(
    server: LocalServer, rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.enqueue(Reply.default(), Reply.error(400, "bad line"))
    job = submit(server, rows, capsys, "--metadata", "team=qa", "--model", "mistral-large-latest", "-v", "sentences=1")
    assert server.batch.jobs[job]["metadata"] == {"team": "qa"}
    uploaded = server.batch.content(server.batch.jobs[job]["input_files"][0])
    bodies = [json.loads(line) for line in uploaded.splitlines()]
    assert [b["custom_id"] for b in bodies] == ["T-1", "T-2", "T-3"]
    assert {b["body"]["model"] for b in bodies} == {"mistral-large-latest"}
    assert "at most 1 sentences" in bodies[0]["body"]["messages"][-1]["content"]
    assert "stream" not in bodies[0]["body"]

    assert main(batch(server, "wait", job, "--poll-interval", "0.02")) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{job} SUCCESS: 3/3 done (2 ok, 1 failed)"
    assert "SUCCESS" in err

    output = tmp_path / "results.jsonl"
    output.write_text("an old line\n")
    assert main(batch(server, "results", job, "--output", str(output))) == 1  # a file with records is kept
    assert "already holds 12 bytes (--output); pass --force to replace it" in capsys.readouterr().err
    assert output.read_text() == "an old line\n"
    assert main(batch(server, "results", job, "--output", str(output), "--force")) == 0
    records = {r["id"]: r for r in map(json.loads, output.read_text().splitlines())}
    assert set(records) == {"T-1", "T-2", "T-3"}  # the old content was replaced
    assert records["T-1"]["response"]["choices"][0]["finish_reason"] == "stop"
    assert records["T-1"]["attempts"] == 1
    assert records["T-1"]["latency_ms"] is None
    assert records["T-2"]["error"] == {"type": "BadRequestError", "message": "HTTP 400: bad line", "status_code": 400}
    assert "2 answered, 1 failed" in capsys.readouterr().err

    assert main(batch(server, "status", job, "--json")) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "SUCCESS"


def test_wait_exits_1_on_a_cancelled_job_and_results_refuse_a_running_one(
    server: LocalServer, rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.batch.start_delay = 30  # the cancellation ends it at once
    job = submit(server, rows, capsys)
    assert main(batch(server, "results", job, "--output", str(tmp_path / "r.jsonl"))) == 1
    assert "wait for it to end first" in capsys.readouterr().err
    assert main(batch(server, "cancel", job)) == 0
    assert "CANCELLATION_REQUESTED" in capsys.readouterr().out
    assert main(batch(server, "wait", job, "--poll-interval", "0.02")) == 1
    assert "CANCELLED" in capsys.readouterr().out


def test_results_never_cut_a_file_another_writer_holds(
    server: LocalServer, rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chatdsl.runs.rows import RecordWriter

    job = submit(server, rows, capsys)
    assert main(batch(server, "wait", job, "--poll-interval", "0.02")) == 0
    held = tmp_path / "held.jsonl"
    with RecordWriter(held) as writer:
        writer.write({"id": "x", "response": {}})
        size = held.stat().st_size
        for force in ((), ("--force",)):
            capsys.readouterr()
            assert main(batch(server, "results", job, "--output", str(held), *force)) == 1
            assert held.stat().st_size == size  # nothing cut: the lock is taken before the file is emptied
        assert "lock" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert main(batch(server, "results", job, "--output", str(empty))) == 0  # an empty file needs no --force
    assert len(empty.read_text().splitlines()) == 3


def test_wait_gives_up_after_its_timeout(server: LocalServer, rows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.batch.start_delay = 3
    job = submit(server, rows, capsys)
    assert main(batch(server, "wait", job, "--poll-interval", "0.02", "--timeout", "0.1")) == 1
    assert "still QUEUED after 0.1 s" in capsys.readouterr().err
    main(batch(server, "cancel", job))


def test_bad_rows_are_named_and_nothing_is_sent(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id": "b"}\nnot json\n{"id": "a", "text": "again"}\n')
    assert main(batch(server, "submit", SUMMARIZE, "--input", str(path))) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert err[0].startswith(f"chatdsl: error: {path}: line 2: text: is a variable of the request but has no value")
    assert err[1].startswith(f"chatdsl: error: {path}: line 3: is not valid JSON (")
    assert err[2].startswith(f"chatdsl: error: {path}: line 4: the key 'a' is already taken")
    assert server.requests == []


def test_an_unknown_job_is_the_servers_404(server: LocalServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(batch(server, "status", "nope")) == 1
    err = capsys.readouterr().err
    assert err.startswith("chatdsl: error: NotFoundError: HTTP 404: Batch job nope not found (request id ")


def test_a_missing_key_or_input_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    assert main(["batch", "status", "j"]) == 1
    assert capsys.readouterr().err == (
        "chatdsl: error: MISTRAL_API_KEY is not set; set it to your API key (any key works with `chatdsl serve`)\n"
    )
    assert main(["batch", "submit", SUMMARIZE, "--input", str(tmp_path / "none.csv")]) == 1
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["batch", "submit", SUMMARIZE])
    assert info.value.code == 2


def test_the_whole_path_against_chatdsl_serve_as_subprocesses(rows: Path, tmp_path: Path) -> None:
    env = {**os.environ, "MISTRAL_API_KEY": TEST_KEY}
    with serving("--port", "0") as (url, process):

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "chatdsl", "batch", *args, "--base-url", url],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        submitted = run("submit", SUMMARIZE, "--input", str(rows))
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.strip()
        assert run("wait", job, "--poll-interval", "0.05").returncode == 0
        written = run("results", job, "--output", str(tmp_path / "out.jsonl"))
        assert written.returncode == 0, written.stderr
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["T-1", "T-2", "T-3"]
    assert all("response" in r for r in records)
    assert TEST_KEY not in submitted.stderr + written.stderr
