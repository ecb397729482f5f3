"""The client side of the Batch API (chatdsl.client.batch): the batch file, uploads, result lines, waits,
and every ``Client`` method end to end against ``LocalServer`` over loopback."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from chatdsl import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchJob,
    BatchJobStatus,
    BatchResult,
    BatchTimeoutError,
    ChatCompletionRequest,
    Client,
    InternalServerError,
    MalformedResponseError,
    NotFoundError,
    RequestTemplate,
    Timeout,
    UnprocessableEntityError,
    ValidationError,
    chat,
)
from chatdsl.client.batch import (
    batch_line,
    multipart_frame,
    parse_result_line,
    read_results,
    wait_step,
    write_batch_file,
)
from chatdsl.testing import LocalServer, Reply
from tests._servers import raw_server
from tests.strategies import complete_requests

MODEL = "mistral-small-latest"


def ask(text: str) -> ChatCompletionRequest:
    return chat(MODEL).user(text)


def items(n: int) -> list[tuple[str, ChatCompletionRequest]]:
    return [(f"row-{i}", ask(f"question {i}")) for i in range(n)]


# ------------------------------------------------------------------------------------ the batch file


@given(request=complete_requests())
def test_a_batch_line_holds_the_request_body_as_the_converter_writes_it_without_stream(
    request: ChatCompletionRequest,
) -> None:
    line = batch_line("7", request.with_streaming())
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    data = json.loads(line)
    expected = request.to_dict()
    expected.pop("stream", None)
    assert data == {"custom_id": "7", "body": expected}


def test_a_bad_request_is_named_by_its_custom_id() -> None:
    with pytest.raises(ValidationError) as info:
        batch_line("r1", ChatCompletionRequest(model=MODEL))
    assert info.value.errors[0][0].startswith("[r1]")
    with pytest.raises(ValidationError, match="custom_id"):
        batch_line("", ask("x"))


def test_a_repeated_custom_id_is_refused_with_its_line() -> None:
    out = io.BytesIO()
    with pytest.raises(ValidationError, match=r"line 3 repeats the custom_id of line 1") as info:
        write_batch_file([("a", ask("1")), ("b", ask("2")), ("a", ask("3"))], out)
    assert info.value.errors[0][0] == "[a]"


def test_a_batch_file_is_written_as_the_rows_come() -> None:
    out = io.BytesIO()
    seen: list[int] = []

    def rows() -> Any:
        for i in range(3):
            seen.append(out.tell())  # the lines before this row are written already
            yield str(i), ask(str(i))

    assert write_batch_file(rows(), out) == 3
    assert seen[1] > 0
    assert seen[2] > seen[1]


def test_writing_a_batch_file_keeps_the_ids_only_in_memory() -> None:
    template = RequestTemplate(request=chat(MODEL).user("Ticket $id: $text"))

    class Sink:
        size = 0

        def write(self, data: bytes) -> None:
            self.size += len(data)

    def peak(count: int, padding: int = 0) -> int:
        rows = ((str(i), {"id": str(i), "text": f"my parcel number {i} is late" + "!" * padding}) for i in range(count))
        tracemalloc.start()
        try:
            write_batch_file(template.render_many(rows), Sink())  # type: ignore[arg-type]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large, long = peak(500), peak(5000), peak(5000, padding=2000)
    assert long < large + 64 * 1024  # 10 MB more of requests, no more memory: no line is kept
    assert large < small + 4500 * 160  # what grows is the set of ids seen (to refuse a repeated one)


def test_the_multipart_frame_puts_the_fields_then_the_file() -> None:
    head, tail, content_type = multipart_frame([("purpose", "batch")], "in.jsonl", boundary="B")
    assert content_type == "multipart/form-data; boundary=B"
    assert head == (
        b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
        b"Content-Type: application/jsonl\r\n\r\n"
    )
    assert tail == b"\r\n--B--\r\n"
    with pytest.raises(ValidationError, match="filename"):
        multipart_frame([], 'a"b.jsonl')


# ------------------------------------------------------------------------------------ result lines


def answer_body(text: str = "hi") -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "model": MODEL,
        "created": 1,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


def line(custom_id: str, status: int | None, body: Any, error: Any = None) -> bytes:
    response = None if status is None and body is None else {"status_code": status, "body": body}
    return json.dumps({"id": "b", "custom_id": custom_id, "response": response, "error": error}).encode()


def test_a_success_line_is_a_response() -> None:
    result = parse_result_line(line("a", 200, answer_body("yes")))
    assert result.ok
    assert result.response is not None
    assert result.response.text() == "yes"
    assert result.status_code == 200
    assert result.error is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequestError), (404, NotFoundError), (422, UnprocessableEntityError), (503, InternalServerError)],
)
def test_an_error_line_is_the_api_error_of_its_status_with_the_servers_message(status: int, cls: type) -> None:
    body = {"object": "error", "message": "nope", "type": "x", "code": None}
    result = parse_result_line(line("a", status, body, {"message": "nope", "code": status}))
    assert not result.ok
    assert type(result.error) is cls
    assert result.error is not None
    assert result.error.message == "nope"
    assert result.error.status_code == status


def test_an_error_line_without_a_response_and_a_bad_answer() -> None:
    result = parse_result_line(line("a", None, None, {"message": "timed out"}))
    assert result.error is not None
    assert result.error.message == "timed out"
    assert result.status_code is None
    bad = parse_result_line(line("b", 200, {"choices": "no"}))
    assert isinstance(bad.error, MalformedResponseError)


@pytest.mark.parametrize("text", [b"not json", b"[1]", b'{"response": {}}', b'{"custom_id": 3}'])
def test_a_line_that_is_not_a_result_names_where_it_is(text: bytes) -> None:
    with pytest.raises(ValidationError, match="output file line 4"):
        parse_result_line(text, where="output file line 4")


def test_results_join_the_output_and_error_files_by_custom_id() -> None:
    output = [line("a", 200, answer_body()), b"\n", line("b", 200, answer_body())]
    errors = [line("b", 500, {"message": "x"}, {"message": "x"}), line("c", 500, {"message": "boom"})]
    results = list(read_results(output, errors))
    assert [(r.custom_id, r.ok) for r in results] == [("a", True), ("b", True), ("c", False)]
    assert list(read_results(None, None)) == []


def test_results_give_one_row_per_id_and_an_answer_wins_over_a_failure() -> None:
    output = [
        line("a", 500, {"message": "first try"}),
        line("a", 200, answer_body("second")),
        line("c", 200, answer_body()),
    ]
    errors = [
        line("b", 500, {"message": "once"}),
        line("b", 502, {"message": "twice"}),
        line("c", 500, {"message": "x"}),
    ]
    results = list(read_results(output, errors))
    assert [(r.custom_id, r.ok) for r in results] == [("a", True), ("c", True), ("b", False)]
    assert results[0].response is not None
    assert results[0].response.choices[0].message.content == "second"
    assert results[2].error is not None
    assert results[2].error.message == "once"  # the first failure of b


# ------------------------------------------------------------------------------------ waiting


def test_a_wait_stops_on_a_terminal_status_and_times_out_with_the_last_state() -> None:
    running = BatchJob(id="j", status=BatchJobStatus.RUNNING, total_requests=4, completed_requests=1)
    assert wait_step(running, started=0, now=1, timeout=None, poll_interval=2) == 2
    assert wait_step(running, started=0, now=9, timeout=10, poll_interval=5) == 1  # not past the timeout
    assert wait_step(BatchJob(status="FAILED"), started=0, now=99, timeout=1, poll_interval=2) == 0.0
    with pytest.raises(BatchTimeoutError, match="still RUNNING after 10 s") as info:
        wait_step(running, started=0, now=10, timeout=10, poll_interval=5)
    assert info.value.job is running
    assert isinstance(info.value, TimeoutError)


# ------------------------------------------------------------------------------------ end to end


@pytest.fixture
def batch_server() -> Any:
    with LocalServer() as server:
        yield server


@pytest.fixture
def batch_client(batch_server: LocalServer) -> Any:
    with Client("k" * 32, base_url=batch_server.url, _sleep=lambda _: None) as client:
        yield client


def test_submit_wait_results_with_a_scripted_failure(batch_server: LocalServer, batch_client: Client) -> None:
    batch_server.enqueue(Reply.default(), Reply.error(500, "boom"))
    job = batch_client.submit_batch(items(4), metadata={"team": "qa"})
    assert job.status is BatchJobStatus.QUEUED
    assert job.metadata == {"team": "qa"}
    seen: list[BatchJob] = []
    done = batch_client.wait_batch_job(job.id, poll_interval=0.01, on_progress=seen.append)
    assert done.status is BatchJobStatus.SUCCESS
    assert seen[-1] == done
    assert (done.total_requests, done.succeeded_requests, done.failed_requests) == (4, 3, 1)
    results = {r.custom_id: r for r in batch_client.batch_results(done)}
    assert sorted(results) == ["row-0", "row-1", "row-2", "row-3"]
    assert results["row-0"].response is not None
    assert results["row-0"].response.text() == "echo: question 0"
    failed = results["row-1"]
    assert isinstance(failed.error, InternalServerError)
    assert failed.error.message == "boom"
    # the lines went through the server's normal path: recorded as chat completions
    lines = [r for r in batch_server.requests if r.path == "/v1/chat/completions"]
    assert {r.json["messages"][0]["content"] for r in lines} == {f"question {i}" for i in range(4)}


def test_the_jobs_model_fills_the_lines_that_name_none(batch_server: LocalServer, batch_client: Client) -> None:
    body = b'{"custom_id": "1", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'
    uploaded = batch_client.upload_file(body, filename="in.jsonl")
    job = batch_client.create_batch_job(uploaded, model="mistral-large-latest")
    done = batch_client.wait_batch_job(job, poll_interval=0.01)
    [result] = batch_client.batch_results(done)
    assert result.response is not None
    assert result.response.model == "mistral-large-latest"


def test_a_line_the_api_would_refuse_goes_to_the_error_file(batch_client: Client) -> None:
    body = b'{"custom_id": "x", "body": {"model": "m", "messages": [], "temperature": 9}}\n'
    job = batch_client.create_batch_job(batch_client.upload_file(body))
    done = batch_client.wait_batch_job(job, poll_interval=0.01)
    assert done.status is BatchJobStatus.SUCCESS
    assert done.failed_requests == 1
    assert done.output_file is None
    [result] = batch_client.batch_results(done.id)
    assert isinstance(result.error, UnprocessableEntityError)
    assert result.status_code == 422


def test_a_job_whose_input_is_not_jsonl_fails(batch_client: Client) -> None:
    job = batch_client.create_batch_job(batch_client.upload_file(b"hello\n", filename="bad.jsonl"))
    done = batch_client.wait_batch_job(job, poll_interval=0.01)
    assert done.status is BatchJobStatus.FAILED
    assert done.done
    assert [e.message for e in done.errors] == ["bad.jsonl line 1 is not JSON"]
    assert list(batch_client.batch_results(done)) == []


def test_a_cancelled_job_keeps_what_it_did(batch_server: LocalServer, batch_client: Client) -> None:
    batch_server.batch.line_delay = 0.05
    job = batch_client.submit_batch(items(200))
    while batch_client.get_batch_job(job).completed_requests < 2:
        time.sleep(0.01)
    cancelling = batch_client.cancel_batch_job(job)
    assert cancelling.status in (BatchJobStatus.CANCELLATION_REQUESTED, BatchJobStatus.CANCELLED)
    done = batch_client.wait_batch_job(job, poll_interval=0.01)
    assert done.status is BatchJobStatus.CANCELLED
    assert 2 <= done.completed_requests < 200
    assert len(list(batch_client.batch_results(done))) == done.completed_requests


def test_a_wait_times_out(batch_server: LocalServer) -> None:
    batch_server.batch.start_delay = 5
    with Client("k" * 32, base_url=batch_server.url) as client:
        job = client.submit_batch(items(1))
        started = time.monotonic()
        with pytest.raises(BatchTimeoutError) as info:
            client.wait_batch_job(job, poll_interval=0.02, timeout=0.2)
        assert time.monotonic() - started < 2
        assert info.value.job is not None
        assert info.value.job.status is BatchJobStatus.QUEUED
        client.cancel_batch_job(job)


def test_an_unknown_job_or_file_is_a_404_with_the_servers_message(batch_client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        batch_client.get_batch_job("nope")
    assert info.value.status_code == 404
    assert info.value.message == "Batch job nope not found"
    assert info.value.request_id
    for call in (batch_client.get_file, batch_client.delete_file, batch_client.download_file):
        with pytest.raises(NotFoundError, match="File f0 not found"):
            call("f0")
    with pytest.raises(NotFoundError, match="File f1 not found"):
        batch_client.create_batch_job("f1")
    with pytest.raises(ValidationError, match="job_id"):
        batch_client.get_batch_job("")


def test_files_upload_get_list_download_delete(batch_client: Client, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"a": 1}\n{"b": 2}\n')
    by_path = batch_client.upload_file(source)
    by_object = batch_client.upload_file(io.BytesIO(b"x\n"), filename="x.jsonl", purpose="fine-tune")
    assert (by_path.filename, by_path.size_bytes, by_path.num_lines, by_path.purpose) == ("in.jsonl", 18, 2, "batch")
    assert by_path.deleted is None
    assert batch_client.get_file(by_path).deleted is False
    assert [f.id for f in batch_client.list_files().data] == [by_object.id, by_path.id]
    assert [f.id for f in batch_client.list_files(purpose="fine-tune").data] == [by_object.id]
    assert len(batch_client.list_files(page=0, page_size=1).data) == 1
    assert batch_client.download_file(by_path) == source.read_bytes()
    target = tmp_path / "copy.jsonl"
    assert batch_client.download_file(by_path.id, target) == 18
    assert target.read_bytes() == source.read_bytes()
    assert batch_client.delete_file(by_path).deleted is True
    assert batch_client.list_files().total == 1


def test_jobs_are_listed_newest_first_and_by_status(batch_client: Client) -> None:
    first = batch_client.submit_batch(items(1))
    batch_client.wait_batch_job(first, poll_interval=0.01)
    second = batch_client.create_batch_job(batch_client.upload_file(b"oops\n"))
    batch_client.wait_batch_job(second, poll_interval=0.01)
    listed = batch_client.list_batch_jobs()
    assert listed.total == 2
    assert [j.id for j in listed.data] == [second.id, first.id]  # newest first, even within one second
    assert [j.id for j in batch_client.list_batch_jobs(status="FAILED").data] == [second.id]
    assert [j.id for j in batch_client.list_batch_jobs(status=[BatchJobStatus.SUCCESS]).data] == [first.id]


def test_an_upload_is_sent_again_whole_after_a_retryable_status(
    batch_server: LocalServer, batch_client: Client
) -> None:
    data = b"".join(b'{"custom_id": "%d", "body": {}}\n' % i for i in range(2000))
    batch_server.batch.fail_next(503, "busy", times=2)
    uploaded = batch_client.upload_file(data)
    assert batch_server.batch.content(uploaded.id) == data  # the body was rewound for each attempt
    posts = [r for r in batch_server.requests if r.path == "/v1/files"]
    assert len(posts) == 3
    assert len({r.body for r in posts}) == 1


def test_log_lines_name_the_method_of_each_call(
    batch_server: LocalServer, batch_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    batch_server.batch.fail_next(503, "busy")
    with caplog.at_level(logging.DEBUG, logger="chatdsl"):
        batch_client.list_batch_jobs()
        batch_client.delete_file(batch_client.upload_file(b"{}\n"))
    messages = [record.getMessage() for record in caplog.records]
    jobs = f"{batch_server.url}/v1/batch/jobs"
    assert f"GET {jobs} -> 503" in "\n".join(messages)
    assert any(m.startswith(f"GET {jobs} failed (HTTP 503); retry 1 of") for m in messages)
    assert any(m.startswith(f"POST {batch_server.url}/v1/files (attempt 1") for m in messages)
    assert any(m.startswith(f"DELETE {batch_server.url}/v1/files/") for m in messages)


def test_a_transport_error_names_the_method_and_path() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with Client("k" * 32, base_url=url, max_retries=0) as client:
        with pytest.raises(APIConnectionError, match="refused") as info:
            client.get_file("file-1")
        assert str(info.value).startswith(f"GET {url}/v1/files/file-1 failed")
        with pytest.raises(APIConnectionError) as info:
            client.cancel_batch_job("job-1")
        assert str(info.value).startswith(f"POST {url}/v1/batch/jobs/job-1/cancel failed")


def test_a_download_cut_short_is_an_error_that_names_the_get() -> None:
    def handle(conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n"
        conn.sendall(head + b"x" * 10)

    with raw_server(handle) as url, Client("k" * 32, base_url=url, max_retries=0) as client:
        with pytest.raises(APIConnectionError) as info:
            client.download_file("file-1")
        sink = io.BytesIO()
        with pytest.raises(APIConnectionError):
            client.download_file("file-1", sink)
    assert str(info.value).startswith(f"GET {url}/v1/files/file-1/content")
    assert info.value.response_started
    assert "the request was not sent again" in str(info.value)


def test_a_download_whose_destination_fails_raises_the_destinations_error(batch_client: Client) -> None:
    uploaded = batch_client.upload_file(b"{}\n" * 100)

    class Full(io.RawIOBase):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left") as info:
        batch_client.download_file(uploaded, Full())
    assert not isinstance(info.value, APIConnectionError)
    assert batch_client.download_file(uploaded) == b"{}\n" * 100  # the connection was released


def test_a_json_answer_that_is_not_json_is_a_malformed_response() -> None:
    def handle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello")

    with (
        raw_server(handle) as url,
        Client("k" * 32, base_url=url, max_retries=0) as client,
        pytest.raises(MalformedResponseError, match="not JSON") as info,
    ):
        client.get_batch_job("job-1")
    assert info.value.body == "hello"


def test_the_key_goes_with_every_call_and_a_wrong_one_is_refused() -> None:
    with LocalServer(api_key="k" * 32) as server:
        with Client("k" * 32, base_url=server.url) as client:
            job = client.submit_batch(items(1))
            assert client.wait_batch_job(job, poll_interval=0.01).status is BatchJobStatus.SUCCESS
        with Client("w" * 32, base_url=server.url, max_retries=0) as wrong, pytest.raises(AuthenticationError):
            wrong.list_files()


def test_a_submission_with_a_bad_row_sends_nothing(batch_server: LocalServer, batch_client: Client) -> None:
    rows = [*items(2), ("bad", ChatCompletionRequest(model=MODEL))]
    with pytest.raises(ValidationError, match=r"\[bad\]"):
        batch_client.submit_batch(rows)
    with pytest.raises(ValidationError, match="empty"):
        batch_client.submit_batch([])
    assert batch_server.requests == []


def test_threads_may_wait_on_jobs_at_once(batch_client: Client) -> None:
    jobs = [batch_client.submit_batch(items(3)) for _ in range(4)]
    done: list[BatchJob] = []
    threads = [
        threading.Thread(target=lambda j=j: done.append(batch_client.wait_batch_job(j, poll_interval=0.01)))
        for j in jobs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(j.id for j in done) == sorted(j.id for j in jobs)
    assert all(j.status is BatchJobStatus.SUCCESS for j in done)


def test_a_result_is_a_frozen_record() -> None:
    result = BatchResult(custom_id="a")
    assert not result.ok
    with pytest.raises(AttributeError):
        result.custom_id = "b"  # type: ignore[misc]


def test_a_repeated_custom_id_sends_nothing(batch_server: LocalServer, batch_client: Client) -> None:
    with pytest.raises(ValidationError, match=r"\[r\]: line 2 repeats"):
        batch_client.submit_batch([("r", ask("1")), ("r", ask("2"))])
    assert batch_server.requests == []


def test_results_of_a_job_not_ended_are_an_error_and_a_stale_job_is_fetched_again(
    batch_server: LocalServer, batch_client: Client
) -> None:
    batch_server.batch.start_delay = 30
    running = batch_client.submit_batch(items(2))
    with pytest.raises(ValidationError, match=r"job: batch job '.+' is still QUEUED: .*wait_batch_job"):
        list(batch_client.batch_results(running))
    with pytest.raises(ValidationError, match="still QUEUED"):
        list(batch_client.batch_results(running.id))
    batch_client.cancel_batch_job(running)
    batch_server.batch.start_delay = 0
    queued = batch_client.submit_batch(items(3))
    batch_client.wait_batch_job(queued, poll_interval=0.01)
    assert queued.status is BatchJobStatus.QUEUED  # the state submit_batch returned: stale now
    assert sorted(r.custom_id for r in batch_client.batch_results(queued)) == ["row-0", "row-1", "row-2"]


@pytest.mark.parametrize("status", [5, [BatchJobStatus.SUCCESS, None], ""])
def test_a_status_filter_that_is_not_a_status_is_named(batch_client: Client, status: Any) -> None:
    with pytest.raises(ValidationError, match=r"^status: .* is not a BatchJobStatus or a status name"):
        batch_client.list_batch_jobs(status=status)


# ------------------------------------------------------------------------------------ no job twice


def _counting_server(answer: Any) -> tuple[Any, list[bytes]]:
    seen: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        seen.append(b"")
        answer(conn)

    return raw_server(handle), seen


def test_a_job_creation_whose_answer_is_late_is_not_sent_again() -> None:
    server, seen = _counting_server(lambda conn: time.sleep(0.6))
    limits = Timeout(connect=1, read=0.2)
    with server as url, Client("k" * 32, base_url=url, timeout=limits, _sleep=lambda _: None) as client:
        with pytest.raises(APITimeoutError) as info:
            client.create_batch_job("file-1", model=MODEL)
        assert len(seen) == 1
        message = str(info.value)
        assert message.startswith(f"POST {url}/v1/batch/jobs: no data for 0.2 s")
        assert "the batch job may have been created: look for it with list_batch_jobs()" in message
        assert isinstance(info.value.__cause__, APITimeoutError)
        with pytest.raises(APITimeoutError):
            client.get_batch_job("job-1")  # a GET is sent again
        assert len(seen) == 4


def test_an_upload_cut_after_it_was_sent_is_not_sent_again() -> None:
    server, seen = _counting_server(lambda conn: conn.close())
    with server as url, Client("k" * 32, base_url=url, _sleep=lambda _: None) as client:
        for call in (lambda: client.upload_file(b"{}\n"), lambda: client.submit_batch(items(1))):
            seen.clear()
            with pytest.raises(APIConnectionError, match=r"the file may have been uploaded: .*list_files\(\)"):
                call()
            assert len(seen) == 1


def test_a_job_creation_that_reached_no_server_is_sent_again(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with (
        Client("k" * 32, base_url=url, _sleep=lambda _: None) as client,
        caplog.at_level(logging.INFO, "chatdsl"),
        pytest.raises(APIConnectionError, match="refused") as info,
    ):
        client.create_batch_job("file-1", model=MODEL)
    assert "may have been created" not in str(info.value)  # it surely was not
    assert "retry 2 of 2" in caplog.text


@pytest.mark.parametrize(
    ("status", "posts", "acted"), [(500, 1, True), (502, 1, True), (503, 2, False), (429, 2, False)]
)
def test_a_job_creation_is_sent_again_only_after_a_status_that_says_nothing_was_done(
    batch_server: LocalServer, batch_client: Client, status: int, posts: int, acted: bool
) -> None:
    uploaded = batch_client.upload_file(b"{}\n")
    batch_server.batch.fail_next(status, "trouble")
    if acted:
        with pytest.raises(
            InternalServerError, match=r"^HTTP \d+: trouble; the batch job may have been created"
        ) as info:
            batch_client.create_batch_job(uploaded, model=MODEL)
        assert info.value.status_code == status
        assert info.value.message.startswith("trouble; ")
    else:
        batch_client.create_batch_job(uploaded, model=MODEL)
    assert len([r for r in batch_server.requests if r.path == "/v1/batch/jobs"]) == posts
