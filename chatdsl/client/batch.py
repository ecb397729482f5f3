"""Files and batch jobs on the client: the transport-free parts, and the methods :class:`~chatdsl.Client` inherits.

Transport-free (no ``requests`` import, so an asyncio client shares them): the multipart framing of
an upload (:func:`multipart_frame`), the batch file's lines (:func:`batch_line`,
:func:`write_batch_file`: one ``{"custom_id": id, "body": {...}}`` per request, written as each
request comes, so memory stays flat in the number of rows), the reading of result lines
(:func:`parse_result_line`, :func:`read_results`: output and error files joined by ``custom_id``)
and the decision of a wait (:func:`wait_step`).

:class:`BatchMethods` holds the ``Client`` methods (``upload_file``, ``create_batch_job``,
``wait_batch_job``, ``batch_results``, ...): they build paths and bodies and parse answers here,
and move bytes through two primitives the transport implements, ``_api_json`` and ``_api_download``
(which reuse the client's retries, timeouts, error mapping and redaction). Reads, deletes and
cancellations are retried as a chat completion is; an upload or a job creation (which would create a
second file or job) is sent again under the client's :class:`~chatdsl.RetryPolicy` only when it
surely reached no server (a connection refused, a connect timeout) or the server turned it away
(408, 429, 503). After any other failure — a read timeout, a connection cut once the request was
sent, a 500, 502 or 504 — the error says the file or job may have been created and how to look
for it (``list_files()``, ``list_batch_jobs()``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, TypeVar, overload
from urllib.parse import quote

import attrs

from chatdsl import _json
from chatdsl._errors import APIError, BatchTimeoutError, MalformedResponseError, ValidationError
from chatdsl._types import UNSET, UnsetType
from chatdsl.client.status import error_class
from chatdsl.model.batch import (
    CHAT_COMPLETIONS_ENDPOINT,
    BatchJob,
    BatchJobList,
    BatchJobRequest,
    BatchJobStatus,
    FileDeleted,
    FileInfo,
    FileList,
)
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import ChatCompletionResponse
from chatdsl.wire.batch import structure_batch
from chatdsl.wire.sse import describe_error_body

__all__ = [
    "BatchMethods",
    "BatchResult",
    "batch_line",
    "multipart_frame",
    "parse_result_line",
    "read_results",
    "wait_step",
    "write_batch_file",
]

FILES_PATH: Final = "/v1/files"
_T = TypeVar("_T")
JOBS_PATH: Final = "/v1/batch/jobs"
JSONL_TYPE: Final = "application/jsonl"
_SPOOL: Final = 8 << 20  # a batch file is kept in memory up to this size, then on disk
_COPY: Final = 1 << 16
_UPLOAD_UNSURE: Final = "the file may have been uploaded: look for it with list_files() before uploading it again"
_JOB_UNSURE: Final = "the batch job may have been created: look for it with list_batch_jobs() before creating it again"

# ------------------------------------------------------------------------------------ the batch file


def batch_line(custom_id: str, request: ChatCompletionRequest) -> bytes:
    """Return one line of a batch file: ``{"custom_id": ..., "body": ...}`` and a newline.

    The body is the request as the converter writes it, validated, without ``stream`` (a batch
    answers whole). Raises :class:`~chatdsl.ValidationError` naming the ``custom_id``.
    """
    if not isinstance(custom_id, str) or not custom_id:
        raise ValidationError("custom_id", f"{custom_id!r} is not a non-empty string")
    if not isinstance(request, ChatCompletionRequest):
        raise ValidationError(f"[{custom_id}]", f"is {type(request).__name__}, not a ChatCompletionRequest")
    try:
        body = request.validate().to_dict()
    except ValidationError as exc:
        raise exc.with_prefix(f"[{custom_id}]") from None
    body.pop("stream", None)
    return _json.dumps_bytes({"custom_id": custom_id, "body": body}) + b"\n"


def write_batch_file(items: Iterable[tuple[str, ChatCompletionRequest]], out: IO[bytes]) -> int:
    """Write a batch file of ``(custom_id, request)`` pairs to *out* as they come; return how many lines.

    Each pair needs its own ``custom_id`` (results are joined by it): a repeated one is a
    :class:`~chatdsl.ValidationError` naming it and its line. Memory stays flat in the number of pairs
    but for the ids seen.
    """
    seen: dict[str, int] = {}
    count = 0
    for custom_id, request in items:
        line = batch_line(custom_id, request)
        count += 1
        first = seen.setdefault(custom_id, count)
        if first != count:
            raise ValidationError(
                f"[{custom_id}]", f"line {count} repeats the custom_id of line {first}: each request needs its own"
            )
        out.write(line)
    return count


# ------------------------------------------------------------------------------------ uploads


def multipart_frame(
    fields: Sequence[tuple[str, str]], filename: str, *, content_type: str = JSONL_TYPE, boundary: str | None = None
) -> tuple[bytes, bytes, str]:
    """Return the ``(head, tail, content type)`` of a ``multipart/form-data`` body around one file.

    The body is ``head + <the file's bytes> + tail``: *fields* come first, then the part ``file``
    named *filename*. Names and values may not hold quotes or line breaks (a
    :class:`~chatdsl.ValidationError` names the one that does).
    """
    boundary = boundary or f"chatdsl-{secrets.token_hex(16)}"
    for name, value in [*fields, ("filename", filename)]:
        if any(ch in value for ch in '"\r\n\\') or any(ch in name for ch in '"\r\n\\'):
            raise ValidationError(name, f"{value!r} holds a quote, backslash or line break")
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"


def _spooled() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=_SPOOL, mode="w+b")


# ------------------------------------------------------------------------------------ results


@attrs.frozen(kw_only=True)
class BatchResult:
    """The outcome of one line of a batch job: its ``custom_id`` and a ``response`` or an ``error``.

    ``error`` is the :class:`~chatdsl.APIError` subclass of the line's status (``BadRequestError``
    for 400, ``InternalServerError`` for 5xx, ...) with the server's message and body; a success
    status whose body is not a completion is a :class:`~chatdsl.MalformedResponseError`.
    ``status_code`` is the line's HTTP status (``None`` when the server gave none).
    """

    custom_id: str
    response: ChatCompletionResponse | None = None
    error: APIError | None = None
    status_code: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the line was answered."""
        return self.response is not None


def parse_result_line(line: bytes | str, *, where: str = "") -> BatchResult:
    """Return the :class:`BatchResult` one line of an output or error file describes.

    A line is ``{"custom_id": ..., "response": {"status_code": ..., "body": {...}}, "error": ...}``;
    a line that is not such an object is a :class:`~chatdsl.ValidationError` naming *where*.
    """
    try:
        data = _json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(where, f"is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValidationError(where, "is not a JSON object")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise ValidationError(f"{where}.custom_id" if where else "custom_id", f"{custom_id!r} is not a string")
    response = data.get("response")
    error = data.get("error")
    status: int | None = None
    body: Any = None
    if isinstance(response, dict):
        code = response.get("status_code")
        status = code if isinstance(code, int) and not isinstance(code, bool) else None
        body = response.get("body")
    if error is None and isinstance(body, dict) and (status is None or 200 <= status < 300):
        try:
            return BatchResult(custom_id=custom_id, response=ChatCompletionResponse.from_dict(body), status_code=status)
        except ValidationError as exc:
            problem = MalformedResponseError(
                f"the answer is not a chat completion ({exc})", status_code=status or 200, body=body
            )
            return BatchResult(custom_id=custom_id, error=problem, status_code=status)
    message = _error_message(error, body) or (f"HTTP {status}" if status else "the line failed")
    cls = error_class(status) if status is not None and status >= 400 else APIError
    failure = cls(message, status_code=status or 0, body=body if body is not None else error)
    return BatchResult(custom_id=custom_id, error=failure, status_code=status)


def _error_message(error: Any, body: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return message
        return describe_error_body(error)
    if isinstance(error, str) and error:
        return error
    return describe_error_body(body) if body is not None else ""


def read_results(output: Iterable[bytes] | None, errors: Iterable[bytes] | None) -> Iterator[BatchResult]:
    """Yield one result per ``custom_id`` of a job's output and error files: the answers first, then the failures.

    Each id gets one result: an answer wins over any failure of the same id (an id the server failed
    and then answered counts as answered), and of several lines of one kind the first counts. The
    answers are yielded as they are read; the failures (memory: one per failed id) once both files
    are read. Blank lines are skipped.
    """
    answered: set[str] = set()
    failures: dict[str, BatchResult] = {}
    for name, lines in (("output file", output), ("error file", errors)):
        if lines is None:
            continue
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            result = parse_result_line(line, where=f"{name} line {number}")
            if result.custom_id in answered:
                continue
            if result.ok:
                answered.add(result.custom_id)
                failures.pop(result.custom_id, None)
                yield result
            else:
                failures.setdefault(result.custom_id, result)
    yield from failures.values()


# ------------------------------------------------------------------------------------ waiting


def wait_step(job: BatchJob, *, started: float, now: float, timeout: float | None, poll_interval: float) -> float:
    """Return how long to sleep before polling *job* again, ``0.0`` when it is done.

    Raises :class:`~chatdsl.BatchTimeoutError` when *timeout* seconds have passed since *started*.
    """
    if job.done:
        return 0.0
    if timeout is not None and now - started >= timeout:
        raise BatchTimeoutError(
            f"batch job {job.id!r} is still {_status_name(job.status)} after {timeout:g} s "
            f"({job.completed_requests} of {job.total_requests} requests done)",
            job=job,
        )
    wait = poll_interval
    if timeout is not None:
        wait = min(wait, max(0.0, started + timeout - now))
    return max(wait, 0.001)


def _status_name(status: BatchJobStatus | str) -> str:
    return status.value if isinstance(status, BatchJobStatus) else status


def _positive(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ValidationError(name, f"{value!r} is not a number of seconds above 0")


def _id(name: str, value: Any) -> str:
    if isinstance(value, (BatchJob, FileInfo)):
        value = value.id
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(name, f"{value!r} is not an id (a non-empty string)")
    return quote(value, safe="")


def _page(params: dict[str, str], page: int | None, page_size: int | None) -> None:
    for name, value in (("page", page), ("page_size", page_size)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(name, f"{value!r} is not a whole number of 0 or more")
        params[name] = str(value)


# ------------------------------------------------------------------------------------ the methods


class BatchMethods:
    """The files and batch-job methods of :class:`~chatdsl.Client` (Mistral's Files and Batch APIs)."""

    __slots__ = ()

    # The transport's two primitives (the client's retries, timeouts and error mapping apply).

    def _api_json(
        self,
        method: str,
        path: str,
        *,
        body: bytes | IO[bytes] | None = None,
        content_type: str | None = None,
        params: Mapping[str, Any] | None = None,
        unsure: str | None = None,
    ) -> tuple[Any, str | None]:
        raise NotImplementedError

    def _api_download(self, path: str, write: Callable[[bytes], object]) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------ files

    def upload_file(
        self, file: str | os.PathLike[str] | bytes | IO[bytes], *, filename: str | None = None, purpose: str = "batch"
    ) -> FileInfo:
        """Upload *file* (a path, bytes, or a binary file object) with ``POST /v1/files``; return its ``FileInfo``.

        *filename* defaults to the path's name (``upload.jsonl`` for bytes and file objects);
        *purpose* is ``"batch"`` unless said otherwise. The body is streamed from a spooled
        temporary file (in memory up to 8 MiB, then on disk), so it can be sent again on a retry.
        """
        if isinstance(file, (str, os.PathLike)):
            name = filename or Path(file).name
            with open(file, "rb") as source:
                return self._upload(lambda out: shutil.copyfileobj(source, out, _COPY), name, purpose)
        if isinstance(file, (bytes, bytearray, memoryview)):
            data = bytes(file)
            return self._upload(lambda out: out.write(data), filename or "upload.jsonl", purpose)
        if not hasattr(file, "read"):
            raise ValidationError("file", f"{type(file).__name__} is not a path, bytes or a binary file object")
        return self._upload(lambda out: shutil.copyfileobj(file, out, _COPY), filename or "upload.jsonl", purpose)

    def _upload(self, fill: Callable[[IO[bytes]], object], filename: str, purpose: str) -> FileInfo:
        if not isinstance(purpose, str) or not purpose:
            raise ValidationError("purpose", f"{purpose!r} is not a non-empty string")
        head, tail, content_type = multipart_frame([("purpose", purpose)], filename)
        with _spooled() as body:
            body.write(head)
            fill(body)
            body.write(tail)
            body.seek(0)
            return self._read(
                FileInfo,
                self._api_json("POST", FILES_PATH, body=body, content_type=content_type, unsure=_UPLOAD_UNSURE),
            )

    def get_file(self, file_id: str | FileInfo) -> FileInfo:
        """Return the :class:`~chatdsl.FileInfo` of a stored file (``GET /v1/files/{file_id}``)."""
        return self._read(FileInfo, self._api_json("GET", f"{FILES_PATH}/{_id('file_id', file_id)}"))

    def list_files(
        self, *, page: int | None = None, page_size: int | None = None, purpose: str | None = None
    ) -> FileList:
        """Return a page of the stored files (``GET /v1/files``), optionally those of one *purpose*."""
        params: dict[str, str] = {}
        _page(params, page, page_size)
        if purpose is not None:
            params["purpose"] = purpose
        return self._read(FileList, self._api_json("GET", FILES_PATH, params=params))

    def delete_file(self, file_id: str | FileInfo) -> FileDeleted:
        """Delete a stored file (``DELETE /v1/files/{file_id}``)."""
        return self._read(FileDeleted, self._api_json("DELETE", f"{FILES_PATH}/{_id('file_id', file_id)}"))

    @overload
    def download_file(self, file_id: str | FileInfo, destination: None = None) -> bytes: ...
    @overload
    def download_file(self, file_id: str | FileInfo, destination: str | os.PathLike[str] | IO[bytes]) -> int: ...
    def download_file(
        self, file_id: str | FileInfo, destination: str | os.PathLike[str] | IO[bytes] | None = None
    ) -> bytes | int:
        """Download a file's content (``GET /v1/files/{file_id}/content``).

        Without *destination* the content is returned as bytes; with a path or a binary file object
        it is written there as it arrives (memory stays flat) and the byte count is returned.
        """
        path = f"{FILES_PATH}/{_id('file_id', file_id)}/content"
        if destination is None:
            pieces = bytearray()
            self._api_download(path, pieces.extend)
            return bytes(pieces)
        if isinstance(destination, (str, os.PathLike)):
            with open(destination, "wb") as out:
                return self._api_download(path, out.write)
        return self._api_download(path, destination.write)

    # ------------------------------------------------------------------ jobs

    def create_batch_job(
        self,
        input_files: str | FileInfo | Sequence[str | FileInfo] | BatchJobRequest,
        *,
        model: str | None = None,
        endpoint: str = CHAT_COMPLETIONS_ENDPOINT,
        metadata: Mapping[str, str] | None = None,
        timeout_hours: int | UnsetType = UNSET,
    ) -> BatchJob:
        """Create a batch job over uploaded files (``POST /v1/batch/jobs``) and return it (status ``QUEUED``).

        *input_files* are file ids (or :class:`~chatdsl.FileInfo`), or a whole
        :class:`~chatdsl.BatchJobRequest` (then the other arguments must be left out). *model*
        applies to the lines whose body names none; *metadata* is yours (string values).
        """
        if isinstance(input_files, BatchJobRequest):
            if model is not None or metadata is not None or timeout_hours is not UNSET:
                raise ValidationError("input_files", "is a BatchJobRequest: give model, metadata etc. inside it")
            request = input_files
        else:
            files = [input_files] if isinstance(input_files, (str, FileInfo)) else list(input_files)
            request = BatchJobRequest(
                input_files=tuple(f.id if isinstance(f, FileInfo) else f for f in files),
                endpoint=endpoint,
                model=model,
                metadata=metadata,
                timeout_hours=timeout_hours,
            )
        body = _json.dumps_bytes(request.to_dict())
        answer = self._api_json("POST", JOBS_PATH, body=body, content_type="application/json", unsure=_JOB_UNSURE)
        return self._read(BatchJob, answer)

    def get_batch_job(self, job_id: str | BatchJob) -> BatchJob:
        """Return a batch job's current state (``GET /v1/batch/jobs/{job_id}``)."""
        return self._read(BatchJob, self._api_json("GET", f"{JOBS_PATH}/{_id('job_id', job_id)}"))

    def list_batch_jobs(
        self,
        *,
        page: int | None = None,
        page_size: int | None = None,
        model: str | None = None,
        status: BatchJobStatus | str | Sequence[BatchJobStatus | str] | None = None,
    ) -> BatchJobList:
        """Return a page of batch jobs (``GET /v1/batch/jobs``), newest first, optionally of one *model* or *status*."""
        params: dict[str, Any] = {}
        _page(params, page, page_size)
        if model is not None:
            params["model"] = model
        if status is not None:
            given: Any = status  # checked here: a number or None is a ValidationError, not a TypeError
            statuses: list[Any] = list(given) if isinstance(given, Iterable) and not isinstance(given, str) else [given]
            for value in statuses:
                if not isinstance(value, str) or not value:
                    raise ValidationError(
                        "status", f"{value!r} is not a BatchJobStatus or a status name (a non-empty string)"
                    )
            params["status"] = [str(s) for s in statuses]
        return self._read(BatchJobList, self._api_json("GET", JOBS_PATH, params=params))

    def cancel_batch_job(self, job_id: str | BatchJob) -> BatchJob:
        """Ask for a batch job's cancellation (``POST /v1/batch/jobs/{job_id}/cancel``); return its new state."""
        return self._read(BatchJob, self._api_json("POST", f"{JOBS_PATH}/{_id('job_id', job_id)}/cancel"))

    def wait_batch_job(
        self,
        job_id: str | BatchJob,
        *,
        poll_interval: float = 5.0,
        timeout: float | None = None,
        on_progress: Callable[[BatchJob], object] | None = None,
    ) -> BatchJob:
        """Poll a batch job every *poll_interval* seconds until its status is terminal; return it.

        *on_progress* is called with each state polled (its counts say how far the job got);
        after *timeout* seconds :class:`~chatdsl.BatchTimeoutError` carries the last state. A job
        that ends ``FAILED`` or ``CANCELLED`` is returned, not raised: look at ``job.status``.
        """
        _positive("poll_interval", poll_interval, allow_none=False)
        _positive("timeout", timeout)
        started = time.monotonic()
        while True:
            job = self.get_batch_job(job_id)
            if on_progress is not None:
                on_progress(job)
            wait = wait_step(job, started=started, now=time.monotonic(), timeout=timeout, poll_interval=poll_interval)
            if not wait:
                return job
            time.sleep(wait)

    def batch_results(self, job: str | BatchJob) -> Iterator[BatchResult]:
        """Yield one :class:`BatchResult` per line of a job's output and error files, joined by ``custom_id``.

        The files are downloaded to spooled temporary files first (memory stays flat), then read
        line by line. A job that ended without files yields nothing; a job not ended yet raises
        :class:`~chatdsl.ValidationError` (a :class:`~chatdsl.BatchJob` passed without an output or
        error file is fetched again first: it may be stale — wait for it with :meth:`wait_batch_job`).
        """
        if not isinstance(job, BatchJob) or not (job.output_file or job.error_file):
            job = self.get_batch_job(job)
        if not job.done:
            raise ValidationError(
                "job",
                f"batch job {job.id!r} is still {_status_name(job.status)}: its results come once it has ended "
                "(wait for it with wait_batch_job())",
            )
        with _spooled() as output, _spooled() as errors:
            for file_id, out in ((job.output_file, output), (job.error_file, errors)):
                if file_id:
                    self._api_download(f"{FILES_PATH}/{_id('file_id', file_id)}/content", out.write)
                out.seek(0)
            yield from read_results(output, errors)

    def submit_batch(
        self,
        items: Iterable[tuple[str, ChatCompletionRequest]],
        *,
        model: str | None = None,
        metadata: Mapping[str, str] | None = None,
        filename: str = "batch.jsonl",
    ) -> BatchJob:
        """Write ``(custom_id, request)`` pairs as a batch file, upload it and create the job; return the job.

        The file is written as the pairs come (into a spooled temporary file: memory stays flat in
        the number of rows); every request is validated first, and a bad one stops the submission
        before anything is sent (a :class:`~chatdsl.ValidationError` naming its ``custom_id``).
        """
        head, tail, content_type = multipart_frame([("purpose", "batch")], filename)
        with _spooled() as body:
            body.write(head)
            count = write_batch_file(items, body)
            if not count:
                raise ValidationError("items", "is empty: a batch needs at least one request")
            body.write(tail)
            body.seek(0)
            uploaded = self._read(
                FileInfo,
                self._api_json("POST", FILES_PATH, body=body, content_type=content_type, unsure=_UPLOAD_UNSURE),
            )
        return self.create_batch_job(uploaded.id, model=model, metadata=metadata)

    @staticmethod
    def _read(cls: type[_T], value: tuple[Any, str | None]) -> _T:
        data, request_id = value
        try:
            return structure_batch(data, cls)
        except ValidationError as exc:
            raise MalformedResponseError(
                f"the body is not a {cls.__name__} ({exc})", status_code=200, body=data, request_id=request_id
            ) from exc
