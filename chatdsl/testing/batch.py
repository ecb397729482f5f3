"""The Files and Batch APIs of :class:`~chatdsl.testing.LocalServer` (``/v1/files``, ``/v1/batch/jobs``).

:class:`BatchStore` (``server.batch``) keeps uploaded files and batch jobs in memory and runs each
job in a background thread: ``QUEUED`` → ``RUNNING`` → ``SUCCESS`` (or ``CANCELLED`` once a
cancellation was asked, ``FAILED`` when the input cannot be read), with the job's counts updated
after every line. Each line's body goes through the server's normal path — parsed and validated
as a request (the job's ``model`` filled in when the body names none), recorded as a
:class:`~chatdsl.testing.RecordedRequest`, answered from the script (queued replies, the handler)
or by default — so ``server.enqueue(Reply.error(500, "boom"))`` fails one line, which then goes
to the job's error file. Limits: an upload is bounded by ``server.max_body_size``, everything stored
by :attr:`BatchStore.max_stored_bytes` (413 past it; a job whose results would not fit ends ``FAILED``).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs

import attrs

from chatdsl._errors import ValidationError
from chatdsl.model.response import ChatCompletionResponse
from chatdsl.testing.fake import default_response, unmet_notes
from chatdsl.testing.replies import Headers, Reply

__all__ = ["BatchStore"]

FILES: Final = "/v1/files"
JOBS: Final = "/v1/batch/jobs"
_FILE_PATH: Final = re.compile(r"/v1/files/([^/]+)(/content)?")
_JOB_PATH: Final = re.compile(r"/v1/batch/jobs/([^/]+)(/cancel)?")
_ENDPOINTS: Final = frozenset({"/v1/chat/completions"})
_BOUNDARY: Final = re.compile(r'boundary="?([^";]+)"?')
_DISPOSITION: Final = re.compile(r'(\w+)="([^"]*)"')

Answer = tuple[int, Any, str]
"""What the server sends: the status, a JSON value or bytes, the content type."""


@attrs.define
class _File:
    id: str
    filename: str
    purpose: str
    sample_type: str
    source: str
    content: bytes
    created_at: int

    def info(self, *, deleted: bool | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "sample_type": self.sample_type,
            "source": self.source,
            "num_lines": sum(1 for line in self.content.splitlines() if line.strip()),
            "mimetype": "application/jsonl",
            "signature": None,
            "expires_at": None,
            "visibility": "workspace",
        }
        if deleted is not None:
            out["deleted"] = deleted
        return out


@attrs.define
class _Job:
    id: str
    input_files: list[str]
    endpoint: str
    model: str | None
    metadata: dict[str, Any] | None
    created_at: int
    status: str = "QUEUED"
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = attrs.field(factory=list)
    output_file: str | None = None
    error_file: str | None = None
    started_at: int | None = None
    completed_at: int | None = None
    cancelled: threading.Event = attrs.field(factory=threading.Event)

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "input_files": list(self.input_files),
            "metadata": self.metadata,
            "endpoint": self.endpoint,
            "model": self.model,
            "agent_id": None,
            "output_file": self.output_file,
            "error_file": self.error_file,
            "errors": list(self.errors),
            "outputs": None,
            "status": self.status,
            "created_at": self.created_at,
            "total_requests": self.total,
            "completed_requests": self.succeeded + self.failed,
            "succeeded_requests": self.succeeded,
            "failed_requests": self.failed,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }


class _TooMuch(Exception):
    """Storing more would pass ``max_stored_bytes``."""


class BatchStore:
    """The files and batch jobs of one :class:`~chatdsl.testing.LocalServer` (its ``batch`` attribute).

    ``start_delay`` (seconds a job stays ``QUEUED``) and ``line_delay`` (seconds per line while
    ``RUNNING``) let a test watch a job move (both 0 by default: a job of a few lines ends in
    milliseconds). :attr:`files` and :attr:`jobs` show what is stored; :meth:`fail_next` scripts
    errors of the Files and Batch API calls themselves (a job's lines take the server's script).
    """

    def __init__(self, server: Any, *, max_stored_bytes: int = 256 << 20) -> None:
        # server: the LocalServer (not imported: the server imports this module)
        self._server = server
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}
        self._jobs: dict[str, _Job] = {}
        self._stored = 0
        self.max_stored_bytes = max_stored_bytes
        """The most bytes of files kept at once (uploads and job results)."""
        self.start_delay = 0.0
        """Seconds a new job stays ``QUEUED`` before it runs."""
        self.line_delay = 0.0
        """Seconds each line of a running job takes."""
        self._failures: list[tuple[int, str]] = []

    def fail_next(self, status: int, message: str, *, times: int = 1) -> None:
        """Answer the next *times* Files or Batch API calls with the error *status* and *message* (then as usual)."""
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValidationError("status", f"{status!r} is not an error status (400 to 599)")
        with self._lock:
            self._failures += [(status, message)] * times

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """The stored files' descriptions (``RetrieveFileOut`` bodies) by id."""
        with self._lock:
            return {file_id: stored.info(deleted=False) for file_id, stored in self._files.items()}

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        """The jobs' descriptions (``BatchJobOut`` bodies) by id."""
        with self._lock:
            return {job_id: job.body() for job_id, job in self._jobs.items()}

    def content(self, file_id: str) -> bytes:
        """Return a stored file's content (``KeyError`` if there is none)."""
        with self._lock:
            return self._files[file_id].content

    @staticmethod
    def handles(path: str) -> bool:
        """Whether *path* belongs to the Files or Batch API."""
        return path in (FILES, JOBS) or path.startswith((FILES + "/", JOBS + "/"))

    # ------------------------------------------------------------------ routing

    def answer(self, method: str, target: str, headers: Headers, body: bytes) -> Answer:
        """Return the answer to *method* on *target* (path and query) with *body*."""
        path, _, query = target.partition("?")
        params = parse_qs(query)
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return self._error(*failure)
        try:
            if path == FILES:
                if method == "POST":
                    return self._upload(headers, body)
                if method == "GET":
                    return self._list_files(params)
                return self._not_allowed(method, path, "GET, POST")
            if path == JOBS:
                if method == "POST":
                    return self._create(body)
                if method == "GET":
                    return self._list_jobs(params)
                return self._not_allowed(method, path, "GET, POST")
            if match := _FILE_PATH.fullmatch(path):
                file_id, content = match.groups()
                if content:
                    return self._download(file_id) if method == "GET" else self._not_allowed(method, path, "GET")
                if method == "GET":
                    return self._get_file(file_id)
                if method == "DELETE":
                    return self._delete_file(file_id)
                return self._not_allowed(method, path, "GET, DELETE")
            if match := _JOB_PATH.fullmatch(path):
                job_id, cancel = match.groups()
                if cancel:
                    return self._cancel(job_id) if method == "POST" else self._not_allowed(method, path, "POST")
                return self._get_job(job_id) if method == "GET" else self._not_allowed(method, path, "GET")
        except _TooMuch:
            return self._error(413, f"storing this would pass the server's limit of {self.max_stored_bytes} bytes")
        wire = self._server._wire
        return 404, wire.not_found_body(method, path), "application/json"

    def _error(self, status: int, message: str) -> Answer:
        wire = self._server._wire
        return status, wire.error_body(message, *wire.error_names(status, None, None)), "application/json"

    def _not_allowed(self, method: str, path: str, allowed: str) -> Answer:
        return 405, self._server._wire.method_not_allowed_body(method, path), "application/json"

    # ------------------------------------------------------------------ files

    def _store(self, stored: _File) -> None:
        with self._lock:
            if self._stored + len(stored.content) > self.max_stored_bytes:
                raise _TooMuch
            self._stored += len(stored.content)
            self._files[stored.id] = stored

    def _upload(self, headers: Headers, body: bytes) -> Answer:
        try:
            fields, filename, content = _multipart(headers.get("content-type", ""), body)
        except ValueError as exc:
            return self._error(400, f"the body is not a multipart upload with a 'file' part: {exc}")
        purpose = fields.get("purpose") or "fine-tune"
        if purpose not in ("batch", "fine-tune", "ocr", "audio"):
            return self._error(422, f"purpose {purpose!r} is not one of batch, fine-tune, ocr, audio")
        sample_type = "batch_request" if purpose == "batch" else "instruct"
        stored = _File(str(uuid.uuid4()), filename, purpose, sample_type, "upload", content, int(time.time()))
        self._store(stored)
        return 200, stored.info(), "application/json"

    def _find_file(self, file_id: str) -> _File | None:
        with self._lock:
            return self._files.get(file_id)

    def _get_file(self, file_id: str) -> Answer:
        stored = self._find_file(file_id)
        if stored is None:
            return self._error(404, f"File {file_id} not found")
        return 200, stored.info(deleted=False), "application/json"

    def _download(self, file_id: str) -> Answer:
        stored = self._find_file(file_id)
        if stored is None:
            return self._error(404, f"File {file_id} not found")
        return 200, stored.content, "application/octet-stream"

    def _delete_file(self, file_id: str) -> Answer:
        with self._lock:
            stored = self._files.pop(file_id, None)
            if stored is not None:
                self._stored -= len(stored.content)
        if stored is None:
            return self._error(404, f"File {file_id} not found")
        return 200, {"id": file_id, "object": "file", "deleted": True}, "application/json"

    def _list_files(self, params: Mapping[str, list[str]]) -> Answer:
        purpose = params.get("purpose", [None])[0]
        with self._lock:
            found = [f for f in self._files.values() if purpose is None or f.purpose == purpose]
        found.reverse()  # newest first (the store keeps them in the order they came)
        page, size = _paging(params)
        data = [f.info() for f in found[page * size : (page + 1) * size]]
        return 200, {"data": data, "object": "list", "total": len(found)}, "application/json"

    # ------------------------------------------------------------------ jobs

    def _create(self, body: bytes) -> Answer:
        try:
            value = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return self._error(422, f"the body is not JSON ({exc})")
        if not isinstance(value, dict):
            return self._error(422, "the body is not a JSON object")
        files = value.get("input_files")
        endpoint = value.get("endpoint")
        model = value.get("model")
        metadata = value.get("metadata")
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            return self._error(422, "input_files: give a non-empty list of file ids")
        if endpoint not in _ENDPOINTS:
            return self._error(422, f"endpoint: {endpoint!r} is not served here (only /v1/chat/completions)")
        if model is not None and not isinstance(model, str):
            return self._error(422, f"model: {model!r} is not a string")
        if metadata is not None and not isinstance(metadata, dict):
            return self._error(422, f"metadata: {metadata!r} is not an object")
        for file_id in files:
            if self._find_file(file_id) is None:
                return self._error(404, f"File {file_id} not found")
        job = _Job(str(uuid.uuid4()), list(files), endpoint, model, metadata, int(time.time()))
        with self._lock:
            self._jobs[job.id] = job
            answer = job.body()
        threading.Thread(
            target=self._run, args=(job,), name=f"chatdsl-localserver-batch-{job.id[:8]}", daemon=True
        ).start()
        return 200, answer, "application/json"

    def _get_job(self, job_id: str) -> Answer:
        with self._lock:
            job = self._jobs.get(job_id)
            answer = job.body() if job is not None else None
        if answer is None:
            return self._error(404, f"Batch job {job_id} not found")
        return 200, answer, "application/json"

    def _cancel(self, job_id: str) -> Answer:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.status in ("QUEUED", "RUNNING"):
                job.status = "CANCELLATION_REQUESTED"
                job.cancelled.set()  # a job waiting out a delay stops waiting
            answer = job.body() if job is not None else None
        if answer is None:
            return self._error(404, f"Batch job {job_id} not found")
        return 200, answer, "application/json"

    def _list_jobs(self, params: Mapping[str, list[str]]) -> Answer:
        statuses = set(params.get("status", ()))
        model = params.get("model", [None])[0]
        with self._lock:
            found = [
                job.body()
                for job in self._jobs.values()
                if (not statuses or job.status in statuses) and (model is None or job.model == model)
            ]
        if params.get("order_by", ["-created"])[0] != "created":
            found.reverse()  # newest first (the store keeps them in the order they came)
        page, size = _paging(params)
        return (
            200,
            {"data": found[page * size : (page + 1) * size], "object": "list", "total": len(found)},
            ("application/json"),
        )

    # ------------------------------------------------------------------ running a job

    def _wait(self, seconds: float, job: _Job) -> bool:
        """Wait *seconds* (less if the job is cancelled meanwhile); return ``False`` if the server stops."""
        stopping = self._server._stopping
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not stopping.is_set():
            if job.cancelled.wait(min(left, 0.05)):
                break
        return not stopping.is_set()

    def _run(self, job: _Job) -> None:
        if not self._wait(self.start_delay, job):
            return
        lines: list[tuple[str, Any]] = []
        problems: list[str] = []
        for file_id in job.input_files:
            stored = self._find_file(file_id)
            if stored is None:
                problems.append(f"input file {file_id} was deleted before the job ran")
                continue
            for number, raw in enumerate(stored.content.splitlines(), 1):
                if not raw.strip():
                    continue
                try:
                    item = json.loads(raw)
                except (ValueError, RecursionError):
                    problems.append(f"{stored.filename} line {number} is not JSON")
                    continue
                custom_id = item.get("custom_id") if isinstance(item, dict) else None
                body = item.get("body") if isinstance(item, dict) else None
                if not isinstance(custom_id, str) or not isinstance(body, dict):
                    problems.append(f"{stored.filename} line {number} has no string custom_id and object body")
                    continue
                lines.append((custom_id, body))
        now = int(time.time())
        with self._lock:
            job.total = len(lines)
            if job.status == "CANCELLATION_REQUESTED":
                job.status, job.completed_at = "CANCELLED", now
                return
            if problems or not lines:
                job.errors = [{"message": p, "count": 1} for p in problems] or [
                    {"message": "the input files hold no request", "count": 1}
                ]
                job.status, job.started_at, job.completed_at = "FAILED", now, now
                return
            job.status, job.started_at = "RUNNING", now
        output: list[bytes] = []
        failures: list[bytes] = []
        for number, (custom_id, body) in enumerate(lines, 1):
            with self._lock:
                if job.status == "CANCELLATION_REQUESTED":
                    break
            if not self._wait(self.line_delay, job):
                return
            status, answer = self._answer_line(job, body)
            line_id = f"batch-{job.id[:8]}-{number}"
            ok = 200 <= status < 300
            record: dict[str, Any] = {
                "id": line_id,
                "custom_id": custom_id,
                "response": {"status_code": status, "body": answer},
                "error": None if ok else {"message": _message(answer, status), "code": status},
            }
            (output if ok else failures).append(json.dumps(record, ensure_ascii=False).encode() + b"\n")
            with self._lock:
                if ok:
                    job.succeeded += 1
                else:
                    job.failed += 1
        self._finish(job, output, failures)

    def _finish(self, job: _Job, output: list[bytes], failures: list[bytes]) -> None:
        made: dict[str, str] = {}
        try:
            for kind, lines in (("output", output), ("error", failures)):
                if lines:
                    stored = _File(
                        str(uuid.uuid4()),
                        f"{job.id}_{kind}.jsonl",
                        "batch",
                        f"batch_{'result' if kind == 'output' else 'error'}",
                        "mistral",
                        b"".join(lines),
                        int(time.time()),
                    )
                    self._store(stored)
                    made[kind] = stored.id
        except _TooMuch:
            with self._lock:
                job.errors.append({"message": "the results pass the server's storage limit", "count": 1})
                job.status, job.completed_at = "FAILED", int(time.time())
            return
        with self._lock:
            job.output_file, job.error_file = made.get("output"), made.get("error")
            job.status = "CANCELLED" if job.status == "CANCELLATION_REQUESTED" else "SUCCESS"
            job.completed_at = int(time.time())

    def _answer_line(self, job: _Job, body: dict[str, Any]) -> tuple[int, Any]:
        """Answer one line as the server answers ``POST /v1/chat/completions``: ``(status, body)``."""
        server = self._server
        wire = server._wire
        if job.model is not None and "model" not in body:
            body = {**body, "model": job.model}
        request = None
        error: ValidationError | None = None
        try:
            request = wire.check(wire.parse_request(body))
        except ValidationError as exc:
            error = exc
        data = json.dumps(body).encode()
        recorded = server._record(job.endpoint, Headers(), data, body, request, error)
        if error is not None or request is None:
            return wire.validation_status, wire.validation_body(error or ValidationError("", "is empty"), body)
        refusal: tuple[int, Any] | None = wire.refusal(request) if server.strict else None
        if refusal is not None:
            return refusal
        reply: Reply = server._script(recorded)
        if reply.kind == "drop":
            return 500, wire.error_body("the connection was dropped", *wire.error_names(500, None, None))
        if reply.error_fields is not None:
            message, type_, code = reply.error_fields
            return reply.status, wire.error_body(message, *wire.error_names(reply.status, type_, code))
        if reply.kind == "body" and reply.body is not None:
            answer: Any = reply.body
            if isinstance(answer, ChatCompletionResponse):
                answer = wire.response_body(answer)
            elif isinstance(answer, bytes):
                answer = answer.decode("utf-8", "replace")
            return reply.status, answer
        with unmet_notes():
            response = default_response(
                request, wire=wire, model=server.model, created=server.created, answer=reply.answer
            )
        return 200, wire.response_body(response)


def _message(answer: Any, status: int) -> str:
    if isinstance(answer, dict):
        message = answer.get("message")
        if isinstance(message, str):
            return message
        if message is not None:
            return json.dumps(message)
        error = answer.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return f"HTTP {status}"


def _paging(params: Mapping[str, list[str]]) -> tuple[int, int]:
    def number(name: str, default: int) -> int:
        text = params.get(name, [str(default)])[0]
        return int(text) if text.isdigit() else default

    return number("page", 0), max(1, min(number("page_size", 100), 1000))


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], str, bytes]:
    """Return the text fields, the file's name and the file's bytes of a ``multipart/form-data`` body."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValueError(f"the content type is {content_type!r}")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise ValueError("the content type names no boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    fields: dict[str, str] = {}
    found: tuple[str, bytes] | None = None
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part has no blank line after its headers")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disposition = ""
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition = value
        names = dict(_DISPOSITION.findall(disposition))
        if names.get("name") == "file":
            found = (names.get("filename") or "upload.jsonl", data)
        elif "name" in names:
            fields[names["name"]] = data.decode("utf-8", "replace")
    if found is None:
        raise ValueError("no part is named 'file'")
    return fields, found[0], found[1]
