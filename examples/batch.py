"""One template over many rows through Mistral's Batch API: submit, wait, read the results.

Run: python examples/batch.py

It runs offline, against ``chatdsl.testing.LocalServer`` on 127.0.0.1, which implements ``/v1/files``
and ``/v1/batch/jobs`` and answers each line as it answers a chat completion (one line is scripted
to fail, so you see an error record too). Against Mistral, make the client with ``chatdsl.Client()``
(the key from ``MISTRAL_API_KEY``) and leave the rest as it is. The same from the command line::

    chatdsl batch submit examples/templates/summarize.toml --input tickets.csv --metadata team=support
    chatdsl batch wait JOB
    chatdsl batch results JOB --output results.jsonl
"""

from __future__ import annotations

from pathlib import Path

import chatdsl
from chatdsl import (
    BatchError,
    BatchJob,
    BatchJobList,
    BatchJobRequest,
    BatchJobStatus,
    BatchResult,
    BatchTimeoutError,
    FileDeleted,
    FileInfo,
    FileList,
    RequestTemplate,
)
from chatdsl.testing import LocalServer, Reply

HERE = Path(__file__).resolve().parent
template = RequestTemplate.load(HERE / "templates" / "summarize.toml")
tickets = {
    "T-1001": "I was charged twice for order A-123, please refund one.",
    "T-1002": "Where is my parcel? It was due on Monday.",
    "T-1003": "Le colis est arrivé abîmé, que faire ?",
    "T-1004": "How do I change the email address on my account?",
}

with LocalServer() as server, chatdsl.Client("local-key", base_url=server.url) as client:
    server.enqueue(Reply.default(), Reply.error(503, "the model is overloaded"))  # the 2nd line fails

    # Render one request per row (lazily: memory stays flat), upload the batch file, create the job.
    rows = ((key, {"text": text, "sentences": 1}) for key, text in tickets.items())
    job: BatchJob = client.submit_batch(template.render_many(rows), metadata={"team": "support"})
    print(f"submitted job {job.id[:8]}…: {job.status}, metadata {dict(job.metadata or {})}")

    def progress(state: BatchJob) -> None:
        print(f"  {state.status}: {state.completed_requests}/{state.total_requests} done ({state.progress:.0%})")

    try:
        job = client.wait_batch_job(job, poll_interval=0.05, timeout=30, on_progress=progress)
    except BatchTimeoutError as exc:  # the job was still running after 30 s
        raise SystemExit(f"gave up: {exc}") from None
    assert job.status is BatchJobStatus.SUCCESS
    print(f"job ended {job.status}: {job.succeeded_requests} answered, {job.failed_requests} failed")

    # The output and error files, joined by custom_id: one result per row.
    for result in client.batch_results(job):
        outcome: BatchResult = result
        if outcome.response is not None:
            print(f"  {outcome.custom_id}: {outcome.response.text().splitlines()[-1][:60]}")
        else:
            print(f"  {outcome.custom_id}: failed, {type(outcome.error).__name__}: {outcome.error}")

    # The files and jobs the server keeps.
    files: FileList = client.list_files(purpose="batch")
    for info in files.data:
        stored: FileInfo = info
        print(f"  a {stored.sample_type} file: {stored.num_lines} lines, {stored.size_bytes} bytes")
    jobs: BatchJobList = client.list_batch_jobs(status=BatchJobStatus.SUCCESS)
    print(f"{jobs.total} finished job(s)")

    # A job over an uploaded file, from a BatchJobRequest; a file that is not JSONL fails the job.
    broken = client.upload_file(b"not a batch file\n", filename="broken.jsonl")
    failed = client.wait_batch_job(
        client.create_batch_job(BatchJobRequest(input_files=(broken.id,), model="mistral-small-latest")),
        poll_interval=0.05,
    )
    problems: tuple[BatchError, ...] = failed.errors
    print(f"the broken job ended {failed.status}: {problems[0].message}")
    removed: FileDeleted = client.delete_file(broken)
    print(f"deleted {removed.id[:8]}…: {removed.deleted}")
