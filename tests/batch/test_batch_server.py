"""LocalServer's Files and Batch APIs (chatdsl.testing.batch): raw HTTP, the job's life, limits, and the
official ``mistralai`` SDK's ``files`` and ``batch.jobs`` calls against it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from chatdsl.testing import LocalServer, Reply

KEY = "k" * 32
LINES = b"".join(
    json.dumps({"custom_id": str(i), "body": {"messages": [{"role": "user", "content": f"q{i}"}]}}).encode() + b"\n"
    for i in range(3)
)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


def upload(server: LocalServer, content: bytes, *, purpose: str = "batch") -> dict[str, Any]:
    answer = requests.post(
        server.url + "/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": purpose}, timeout=5
    )
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def create(server: LocalServer, file_id: str, **fields: Any) -> dict[str, Any]:
    body = {"input_files": [file_id], "endpoint": "/v1/chat/completions", **fields}
    answer = requests.post(server.url + "/v1/batch/jobs", json=body, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def poll(server: LocalServer, job_id: str, until: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = requests.get(f"{server.url}/v1/batch/jobs/{job_id}", timeout=5).json()
        if job["status"] in until:
            return job  # type: ignore[no-any-return]
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached {until}")


def test_a_job_moves_from_queued_to_running_to_success_with_its_counts(server: LocalServer) -> None:
    server.batch.start_delay = 0.2
    server.batch.line_delay = 0.3
    job = create(server, upload(server, LINES)["id"], model="mistral-small-latest")
    assert job["status"] == "QUEUED"
    assert job["total_requests"] == 0
    running = poll(server, job["id"], {"RUNNING"})
    assert running["started_at"] is not None
    assert running["total_requests"] == 3
    done = poll(server, job["id"], {"SUCCESS"})
    assert (done["completed_requests"], done["succeeded_requests"], done["failed_requests"]) == (3, 3, 0)
    assert done["completed_at"] >= done["started_at"]
    output = requests.get(f"{server.url}/v1/files/{done['output_file']}/content", timeout=5)
    assert output.headers["content-type"] == "application/octet-stream"
    records = [json.loads(line) for line in output.content.splitlines()]
    assert [r["custom_id"] for r in records] == ["0", "1", "2"]
    assert records[0]["response"]["status_code"] == 200
    assert records[0]["response"]["body"]["choices"][0]["message"]["content"] == "echo: q0"
    assert records[0]["error"] is None
    assert done["error_file"] is None


def test_scripted_failures_go_to_the_error_file(server: LocalServer) -> None:
    server.enqueue(Reply.error(429, "slow down"), Reply.drop())
    done = poll(server, create(server, upload(server, LINES)["id"], model="m")["id"], {"SUCCESS"})
    assert (done["succeeded_requests"], done["failed_requests"]) == (1, 2)
    errors = [json.loads(line) for line in server.batch.content(done["error_file"]).splitlines()]
    assert [(e["custom_id"], e["response"]["status_code"], e["error"]["message"]) for e in errors] == [
        ("0", 429, "slow down"),
        ("1", 500, "the connection was dropped"),
    ]


def test_a_handler_sees_each_line_as_a_recorded_request(server: LocalServer) -> None:
    seen: list[str] = []

    def handler(recorded: Any) -> Reply | None:
        seen.append(recorded.request.messages[0].content)
        return None

    server.handler = handler
    poll(server, create(server, upload(server, LINES)["id"], model="m")["id"], {"SUCCESS"})
    assert seen == ["q0", "q1", "q2"]


def test_a_cancelled_job_ends_cancelled_and_a_cancel_of_an_ended_job_changes_nothing(server: LocalServer) -> None:
    server.batch.start_delay = 30  # a cancellation ends the wait at once
    job = create(server, upload(server, LINES)["id"], model="m")
    cancelled = requests.post(f"{server.url}/v1/batch/jobs/{job['id']}/cancel", timeout=5).json()
    assert cancelled["status"] == "CANCELLATION_REQUESTED"
    done = poll(server, job["id"], {"CANCELLED"})
    assert done["completed_requests"] == 0
    assert done["output_file"] is None
    assert done["completed_at"] is not None
    again = requests.post(f"{server.url}/v1/batch/jobs/{job['id']}/cancel", timeout=5).json()
    assert again == done
    assert server.requests[-1].path.endswith("/cancel")  # no line was sent to the script


def test_routes_methods_and_bad_bodies(server: LocalServer) -> None:
    url = server.url
    assert requests.put(url + "/v1/files", timeout=5).status_code == 405
    assert requests.get(url + "/v1/batch/jobs/x/cancel", timeout=5).status_code == 405
    assert requests.get(url + "/v1/files/a/b/c", timeout=5).status_code == 404
    refused = requests.post(url + "/v1/files", data=b"{}", headers={"content-type": "application/json"}, timeout=5)
    assert refused.status_code == 400
    assert "multipart" in refused.json()["message"]
    no_file = requests.post(url + "/v1/files", files={"other": ("a", b"x")}, timeout=5)
    assert no_file.status_code == 400
    assert (
        requests.post(url + "/v1/files", files={"file": ("a", b"x")}, data={"purpose": "x"}, timeout=5).status_code
        == 422
    )
    for body in ({"endpoint": "/v1/chat/completions"}, {"input_files": ["f"], "endpoint": "/v1/ocr"}, [1]):
        assert requests.post(url + "/v1/batch/jobs", json=body, timeout=5).status_code == 422
    assert requests.post(url + "/v1/batch/jobs", data=b"{", timeout=5).status_code == 422


def test_stored_bytes_are_bounded(server: LocalServer) -> None:
    server.batch.max_stored_bytes = 100
    upload(server, b"x" * 60)
    refused = requests.post(server.url + "/v1/files", files={"file": ("b", b"y" * 60)}, timeout=5)
    assert refused.status_code == 413
    assert "100 bytes" in refused.json()["message"]
    server.max_body_size = 10
    assert requests.post(server.url + "/v1/files", files={"file": ("c", b"z" * 60)}, timeout=5).status_code == 413


def test_results_that_would_pass_the_limit_fail_the_job(server: LocalServer) -> None:
    file_id = upload(server, LINES)["id"]
    server.batch.max_stored_bytes = len(LINES) + 10
    done = poll(server, create(server, file_id, model="m")["id"], {"FAILED", "SUCCESS"})
    assert done["status"] == "FAILED"
    assert "storage limit" in done["errors"][0]["message"]


def test_fail_next_scripts_the_api_calls_themselves(server: LocalServer) -> None:
    server.batch.fail_next(503, "busy", times=2)
    for _ in range(2):
        answer = requests.get(server.url + "/v1/files", timeout=5)
        assert answer.status_code == 503
        assert answer.json()["message"] == "busy"
    assert requests.get(server.url + "/v1/files", timeout=5).status_code == 200
    with pytest.raises(ValueError, match="status"):
        server.batch.fail_next(200, "ok")


def test_a_key_is_required_when_the_server_has_one() -> None:
    with LocalServer(api_key=KEY) as server:
        assert requests.get(server.url + "/v1/files", timeout=5).status_code == 401
        answer = requests.get(server.url + "/v1/files", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert answer.status_code == 200


def test_stopping_the_server_ends_a_running_job(server: LocalServer) -> None:
    server.batch.line_delay = 0.2
    job = create(server, upload(server, LINES * 20)["id"], model="m")
    poll(server, job["id"], {"RUNNING"})
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    assert server.batch.jobs[job["id"]]["status"] == "RUNNING"  # left as it was: nothing runs any more


# ------------------------------------------------------------------------------ the mistralai SDK


def test_the_mistralai_sdks_files_and_batch_calls(server: LocalServer) -> None:
    mistralai = pytest.importorskip("mistralai.client")
    client = mistralai.Mistral(api_key=KEY, server_url=server.url)
    uploaded = client.files.upload(file={"file_name": "in.jsonl", "content": LINES}, purpose="batch")
    assert (uploaded.filename, uploaded.size_bytes, uploaded.num_lines) == ("in.jsonl", len(LINES), 3)
    assert client.files.retrieve(file_id=uploaded.id).deleted is False
    assert [f.id for f in client.files.list().data] == [uploaded.id]
    job = client.batch.jobs.create(
        input_files=[uploaded.id], endpoint="/v1/chat/completions", model="mistral-small-latest", metadata={"k": "v"}
    )
    assert job.status == "QUEUED"
    assert job.metadata == {"k": "v"}
    done = poll(server, job.id, {"SUCCESS"})
    fetched = client.batch.jobs.get(job_id=job.id)
    assert fetched.status == "SUCCESS"
    assert fetched.succeeded_requests == done["succeeded_requests"] == 3
    assert [j.id for j in client.batch.jobs.list().data] == [job.id]
    assert [j.id for j in client.batch.jobs.list(status=["FAILED"]).data] == []
    content = client.files.download(file_id=fetched.output_file).read()
    assert [json.loads(line)["custom_id"] for line in content.splitlines()] == ["0", "1", "2"]
    assert client.batch.jobs.cancel(job_id=job.id).status == "SUCCESS"  # an ended job stays as it ended
    assert client.files.delete(file_id=uploaded.id).deleted is True
    errors = pytest.importorskip("mistralai.client.errors")
    with pytest.raises(errors.SDKError) as info:
        client.batch.jobs.get(job_id="00000000-0000-0000-0000-000000000000")
    assert info.value.status_code == 404
    assert "Batch job 00000000-0000-0000-0000-000000000000 not found" in info.value.body
