"""The ``chatdsl batch`` commands: a template over a dataset through Mistral's Batch API.

::

    chatdsl batch submit TEMPLATE --input FILE [--model M] [--metadata KEY=VALUE ...] [--var NAME=VALUE ...]
    chatdsl batch status JOB [--json]
    chatdsl batch wait JOB [--poll-interval SECONDS] [--timeout SECONDS]
    chatdsl batch results JOB --output FILE
    chatdsl batch cancel JOB

Each also takes ``--base-url URL``, ``--api-key-env NAME`` (default ``MISTRAL_API_KEY``) and
``--http-timeout SECONDS``. ``submit`` renders the template once per input row (JSONL or CSV, as
``chatdsl run`` reads them: a row's fields are the template's variables, ``--var`` values fill the
others; its key is its ``id`` field, else its line number), writes the batch file as the rows come,
uploads it and creates the job, and prints the job id. A bad row stops the submission before
anything is sent, every bad row named by its line. ``wait`` prints the job's counts as they change
and exits 1 unless the job ends ``SUCCESS``. ``results`` writes one JSONL record per result of the
job (into a new or empty file, unless ``--force``), in the shape ``chatdsl run`` writes (failed lines are records too:
it exits 0 when the job ended ``SUCCESS``, 1 when it ended otherwise).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from chatdsl._errors import TemplateError, ValidationError
from chatdsl.cli.common import (
    PROG,
    Failure,
    add_max_size,
    add_vars,
    env_name,
    key_from_env,
    positive_seconds,
    safe,
    variable_pair,
)

if TYPE_CHECKING:
    from chatdsl.client.sync import Client
    from chatdsl.model.batch import BatchJob
    from chatdsl.model.request import ChatCompletionRequest

__all__ = ["add_batch_command", "run_batch"]

_SHOWN_PROBLEMS: Final = 20


def add_batch_command(commands: Any) -> None:
    """Add ``batch`` and its subcommands to the ``chatdsl`` parser's *commands*."""
    batch = commands.add_parser(
        "batch", help="run a template over a dataset with Mistral's Batch API (submit, status, wait, results, cancel)"
    )
    steps = batch.add_subparsers(dest="batch_command", metavar="STEP", required=True)

    submit = steps.add_parser("submit", help="render the batch file, upload it, create the job, print its id")
    submit.add_argument("template", metavar="TEMPLATE", help="a .json or .toml template file")
    submit.add_argument("--input", required=True, metavar="FILE", help="the rows: JSONL (one object a line) or CSV")
    submit.add_argument("--model", metavar="M", help="the model of every request (default: the template's)")
    submit.add_argument(
        "--metadata",
        metavar="KEY=VALUE",
        type=variable_pair,
        action="append",
        default=[],
        help="metadata kept with the job (repeat for several)",
    )
    add_vars(submit)
    add_max_size(submit)

    status = steps.add_parser("status", help="print a job's status and counts")
    status.add_argument("job", metavar="JOB", help="the job id")
    status.add_argument("--json", action="store_true", help="print the job as JSON")

    wait = steps.add_parser("wait", help="wait until a job ends, printing its progress (exit 1 unless SUCCESS)")
    wait.add_argument("job", metavar="JOB", help="the job id")
    wait.add_argument(
        "--poll-interval",
        metavar="SECONDS",
        type=positive_seconds,
        default=5.0,
        help="seconds between polls (default 5)",
    )
    wait.add_argument("--timeout", metavar="SECONDS", type=positive_seconds, help="give up after this long (exit 1)")

    results = steps.add_parser("results", help="write a finished job's answers and errors as JSONL records")
    results.add_argument("job", metavar="JOB", help="the job id")
    results.add_argument(
        "--output", required=True, metavar="FILE", help="the JSONL file to write (new or empty, unless --force)"
    )
    results.add_argument("--force", action="store_true", help="replace --output FILE even if it holds records")

    cancel = steps.add_parser("cancel", help="ask for a job's cancellation and print its status")
    cancel.add_argument("job", metavar="JOB", help="the job id")

    for step in (submit, status, wait, results, cancel):
        step.add_argument("--base-url", metavar="URL", help="the API's base URL (default https://api.mistral.ai)")
        step.add_argument(
            "--api-key-env",
            metavar="NAME",
            type=env_name,
            help="read the key from this environment variable (default: MISTRAL_API_KEY)",
        )
        step.add_argument("--http-timeout", metavar="SECONDS", type=positive_seconds, help="connect and read timeout")


def run_batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the ``chatdsl batch`` step *args* names; return the exit status."""
    step = args.batch_command
    if step == "submit":
        items = _rows(args)  # the template and the input are checked before any key or connection
        with _client(args) as client:
            job = client.submit_batch(items, model=args.model, metadata=dict(args.metadata) or None)
        out.write(f"{job.id}\n")
        err.write(f"{PROG}: submitted batch job {job.id} ({safe(str(job.status))})\n")
        return 0
    with _client(args) as client:
        if step == "status":
            job = client.get_batch_job(args.job)
            out.write((safe(job.to_json(indent=2)) if args.json else _summary(job)) + "\n")
            return 0
        if step == "cancel":
            job = client.cancel_batch_job(args.job)
            out.write(_summary(job) + "\n")
            return 0
        if step == "wait":
            return _wait(client, args, out, err)
        return _results(client, args, err)


def _client(args: argparse.Namespace) -> Client:
    from chatdsl.client.config import API_KEY_ENV
    from chatdsl.client.sync import Client

    options: dict[str, Any] = {}
    if args.api_key_env is not None:
        options["api_key"] = key_from_env(args.api_key_env)
    elif not os.environ.get(API_KEY_ENV):
        raise Failure(f"{API_KEY_ENV} is not set; set it to your API key (any key works with `{PROG} serve`)")
    if args.base_url:
        options["base_url"] = args.base_url
    if args.http_timeout:
        options["timeout"] = args.http_timeout
    return Client(**options)


def _rows(args: argparse.Namespace) -> Iterator[tuple[str, ChatCompletionRequest]]:
    """Check the template and the input now; return the ``(key, request)`` pairs, rendered as they are read.

    Bad rows are collected while the batch file is written; at the end of the input they raise one
    :class:`~chatdsl.TemplateError` naming each (so nothing is uploaded).
    """
    from chatdsl.runs.rows import KEY_FIELD, read_rows
    from chatdsl.templates.library import RequestTemplate

    template = RequestTemplate.load(args.template, max_size=args.max_size)
    render = template.renderer(allow_extra=True)
    given = dict(args.vars)
    model = args.model
    name = str(args.input)
    if not Path(name).is_file():
        raise Failure(f"{name}: no such file (--input)")
    rows = read_rows(name)

    def generate() -> Iterator[tuple[str, ChatCompletionRequest]]:
        problems: list[tuple[str, str, str]] = []
        bad = 0
        for row in rows:
            where = f"line {row.line}"
            if row.error is not None:
                bad += 1
                if len(problems) < _SHOWN_PROBLEMS:
                    problems += [(name, where, message) for _, message in row.error.errors]
                continue
            values = {k: v for k, v in row.values.items() if k != KEY_FIELD or KEY_FIELD in template.request.variables}
            try:
                request = render({**given, **values})
                if model:
                    request = request.with_model(model)
                request = request.validate()
            except ValidationError as exc:
                bad += 1
                if len(problems) < _SHOWN_PROBLEMS:
                    problems += [(name, f"{where}: {path}" if path else where, message) for path, message in exc.errors]
                continue
            if not problems:
                yield row.key, request
        if problems:
            if bad > _SHOWN_PROBLEMS:
                problems.append((name, "", f"... {bad} bad rows in all; nothing was sent"))
            raise TemplateError(problems)

    return generate()


def _summary(job: BatchJob) -> str:
    status = job.status.value if hasattr(job.status, "value") else str(job.status)
    line = (
        f"{job.id} {status}: {job.completed_requests}/{job.total_requests} done "
        f"({job.succeeded_requests} ok, {job.failed_requests} failed)"
    )
    for problem in job.errors:
        line += f"\n  error: {problem.message}" + (f" (x{problem.count})" if problem.count != 1 else "")
    return safe(line)


def _wait(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from chatdsl._errors import BatchTimeoutError
    from chatdsl.model.batch import BatchJobStatus

    started = time.monotonic()
    last: list[str] = []

    def progress(job: BatchJob) -> None:
        line = _summary(job).split("\n", 1)[0]
        if not last or last[0] != line:
            elapsed = time.monotonic() - started
            err.write(f"{PROG}: [{elapsed:6.1f} s] {line}\n")
            err.flush()
            last[:] = [line]

    try:
        job = client.wait_batch_job(
            args.job, poll_interval=args.poll_interval, timeout=args.timeout, on_progress=progress
        )
    except BatchTimeoutError as exc:
        raise Failure(str(exc)) from None
    out.write(_summary(job) + "\n")
    return 0 if job.status is BatchJobStatus.SUCCESS else 1


def _refuse_nonempty(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size:
        raise Failure(
            f"{safe(str(path))} already holds {size} bytes (--output); pass --force to replace it, or name a new file"
        )


def _results(client: Client, args: argparse.Namespace, err: TextIO) -> int:
    from chatdsl.runs.rows import RecordWriter, error_record, response_record

    job = client.get_batch_job(args.job)
    if not job.done:
        raise Failure(f"batch job {job.id} is {job.status}: wait for it to end first (`{PROG} batch wait {job.id}`)")
    path = Path(args.output)
    if not args.force:
        _refuse_nonempty(path)  # before opening: the writer would cut a torn last line
    ok = failed = 0
    with RecordWriter(path) as writer:  # locked: another writer of the file is an error, and nothing is cut
        if not args.force:
            _refuse_nonempty(path)
        os.truncate(path, 0)  # the records of this job only
        for result in client.batch_results(job):
            if result.response is not None:
                writer.write(response_record(result.custom_id, result.response))
                ok += 1
            else:
                assert result.error is not None
                writer.write(error_record(result.custom_id, result.error))
                failed += 1
    err.write(f"{PROG}: {ok} answered, {failed} failed; written to {safe(str(path))}\n")
    if job.errors:
        err.write(_summary(job) + "\n")
    return 0 if str(job.status) == "SUCCESS" else 1
