"""The wire shapes of files and batch jobs (chatdsl.model.batch, chatdsl.wire.batch) against the official schemas.

Answers conform to ``BatchJobOut``/``UploadFileOut``/... when written back, read back equal, keep
unknown keys and unknown statuses, and agree with the ``mistralai`` SDK's own models; a job request
conforms to ``BatchJobIn`` and its validators refuse what the API refuses.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatdsl import (
    UNSET,
    BatchError,
    BatchJob,
    BatchJobList,
    BatchJobRequest,
    BatchJobStatus,
    FileDeleted,
    FileInfo,
    FileList,
    ValidationError,
)
from tests.spec import batch_validator, problems
from tests.strategies import (
    batch_job_lists,
    batch_job_requests,
    batch_jobs,
    deleted_files,
    file_lists,
    files,
    json_values,
    with_unknown_keys,
)

JOB_OUT = batch_validator("BatchJobOut")
JOBS_OUT = batch_validator("BatchJobsOut")
JOB_IN = batch_validator("BatchJobIn")
UPLOAD_OUT = batch_validator("UploadFileOut")
RETRIEVE_OUT = batch_validator("RetrieveFileOut")
LIST_OUT = batch_validator("ListFilesOut")
DELETE_OUT = batch_validator("DeleteFileOut")


@pytest.mark.parametrize(
    ("strategy", "checker"),
    [
        (batch_jobs, JOB_OUT),
        (batch_job_lists, JOBS_OUT),
        (files(), UPLOAD_OUT),
        (files(deleted=st.booleans()), RETRIEVE_OUT),
        (file_lists, LIST_OUT),
        (deleted_files, DELETE_OUT),
        (batch_job_requests, JOB_IN),
    ],
    ids=lambda value: getattr(value, "schema", {}).get("$ref", "").rsplit("/", 1)[-1] or None,
)
@given(data=st.data())
def test_bodies_conform_to_the_official_schema_and_read_back_equal(
    data: st.DataObject, strategy: Any, checker: Any
) -> None:
    obj = data.draw(strategy)
    body = obj.to_dict()
    assert problems(checker, body) == []
    assert type(obj).from_dict(body) == obj
    assert type(obj).from_json(obj.to_json()) == obj


@given(body=batch_jobs.map(lambda job: job.to_dict()).flatmap(with_unknown_keys))
def test_a_job_keeps_the_keys_chatdsl_does_not_model(body: dict[str, Any]) -> None:
    assert BatchJob.from_dict(body).to_dict() == body


@given(body=files().map(lambda f: f.to_dict()).flatmap(with_unknown_keys))
def test_a_file_keeps_the_keys_chatdsl_does_not_model(body: dict[str, Any]) -> None:
    assert FileInfo.from_dict(body).to_dict() == body


@given(status=st.text(min_size=1, max_size=12).filter(lambda s: s not in set(BatchJobStatus)))
def test_an_unknown_status_stays_a_string_and_the_job_is_not_done(status: str) -> None:
    job = BatchJob.from_dict({"id": "j", "status": status, "total_requests": 2})
    assert job.status == status
    assert not isinstance(job.status, BatchJobStatus)
    assert not job.done
    assert job.progress == 0.0
    assert job.to_dict()["status"] == status


def test_terminal_statuses_and_progress() -> None:
    terminal = {s for s in BatchJobStatus if s.terminal}
    assert terminal == {"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"}
    assert BatchJob(status="CANCELLATION_REQUESTED").done is False
    assert BatchJob(status=BatchJobStatus.SUCCESS).progress == 1.0  # a done job of no requests
    assert BatchJob(total_requests=4, completed_requests=1).progress == 0.25


def test_wrong_types_are_named_by_their_path() -> None:
    with pytest.raises(ValidationError) as info:
        BatchJob.from_dict({"id": 3, "errors": [{"message": "m", "count": "x"}], "created_at": "soon"})
    assert [path for path, _ in info.value.errors] == ["id", "errors[0].count", "created_at"]
    with pytest.raises(ValidationError, match="deleted"):
        FileDeleted.from_dict({"id": "f", "deleted": "yes"})


def test_null_and_missing_fields_take_the_defaults() -> None:
    job = BatchJob.from_dict({"id": "j", "status": None, "errors": None, "metadata": None})
    assert job.status is BatchJobStatus.QUEUED
    assert job.errors == ()
    assert job.metadata is None
    assert FileList.from_dict({"data": [{"id": "f", "bytes": 3}]}).data[0].size_bytes == 3
    assert BatchError.from_dict({"message": "m"}).count == 1


def test_a_job_request_is_written_strictly() -> None:
    request = BatchJobRequest(input_files=["a"])
    assert request.to_dict() == {"input_files": ["a"], "endpoint": "/v1/chat/completions"}
    full = BatchJobRequest(input_files=("a", "b"), model="m", metadata={"k": "v"}, timeout_hours=2)
    assert full.to_dict() == {
        "input_files": ["a", "b"],
        "endpoint": "/v1/chat/completions",
        "model": "m",
        "metadata": {"k": "v"},
        "timeout_hours": 2,
    }
    assert BatchJobRequest.from_dict(full.to_dict()) == full
    assert full.timeout_hours == 2
    assert request.timeout_hours is UNSET


@pytest.mark.parametrize(
    ("kwargs", "path", "words"),
    [
        ({"input_files": []}, "input_files", "non-empty list"),
        ({"input_files": ["a", ""]}, "input_files[1]", "not a file id"),
        ({"input_files": ["a"], "metadata": {"k" * 33: "v"}}, "metadata", "1 to 32 characters"),
        ({"input_files": ["a"], "metadata": {"k": ""}}, "metadata.k", "1 to 512 characters"),
        ({"input_files": ["a"], "metadata": {"k": 1}}, "metadata.k", "1 to 512 characters"),
        ({"input_files": ["a"], "timeout_hours": 0}, "timeout_hours", "1 or more"),
        ({"input_files": ["a"], "endpoint": "chat"}, "endpoint", "API path"),
        ({"input_files": ["a"], "model": ""}, "model", "non-empty string"),
    ],
)
def test_a_job_request_refuses_what_the_api_refuses(kwargs: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        BatchJobRequest(**kwargs)
    [(found, message)] = info.value.errors
    assert found.startswith(path)
    assert words in message


def test_reading_a_job_request_refuses_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="requests"):
        BatchJobRequest.from_dict({"input_files": ["a"], "endpoint": "/v1/chat/completions", "requests": []})
    with pytest.raises(ValidationError, match="input_files"):
        BatchJobRequest.from_dict({"endpoint": "/v1/chat/completions"})


@given(value=json_values)
def test_anything_not_an_object_is_a_validation_error(value: Any) -> None:
    if isinstance(value, dict):
        return
    for cls in (BatchJob, BatchJobList, FileInfo, FileList, FileDeleted):
        with pytest.raises(ValidationError):
            cls.from_dict(value)


# ------------------------------------------------------------------------------ the mistralai SDK


sdk = pytest.importorskip("mistralai.client.models")


@given(job=batch_jobs)
def test_the_sdk_reads_what_chatdsl_writes_and_back(job: BatchJob) -> None:
    parsed = sdk.BatchJob.model_validate(job.to_dict())
    assert parsed.id == job.id
    assert parsed.status == job.status
    assert parsed.total_requests == job.total_requests
    assert BatchJob.from_dict(parsed.model_dump(mode="json", by_alias=True)) == job


@given(info=files(deleted=st.booleans()))
def test_the_sdk_reads_a_file_as_chatdsl_writes_it(info: FileInfo) -> None:
    parsed = sdk.GetFileResponse.model_validate(info.to_dict())
    assert parsed.size_bytes == info.size_bytes
    assert parsed.deleted == info.deleted
    assert FileInfo.from_dict(parsed.model_dump(mode="json", by_alias=True)) == info


def test_the_sdks_job_request_is_a_job_request() -> None:
    body = sdk.CreateBatchJobRequest(
        input_files=["a"], endpoint="/v1/chat/completions", model="m", metadata={"k": "v"}
    ).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert BatchJobRequest.from_dict(body) == BatchJobRequest(
        input_files=["a"], model="m", metadata={"k": "v"}, timeout_hours=24
    )
