"""``chatdsl run``: one template over every row of a JSONL or CSV file, concurrently, resumable.

::

    chatdsl run TEMPLATE --input FILE --output FILE [--var NAME=VALUE ...] [--concurrency N] [--resume]
                [--max-errors N] [--base-url URL] [--dialect D [--drop-unsupported]] [--dry-run]
                [--requests-per-second R] [--tokens-per-minute T] [--timeout SECONDS] [--api-key-env NAME]
                [--progress-every SECONDS]

Each row's fields fill the template's variables (``--var`` values fill those a row leaves out; a
row's other fields, ``id`` among them, are ignored). The output gets one JSON line per row as it
finishes (see :mod:`chatdsl.runs.rows`); ``--resume`` skips the rows that already have a
response line there, so a run killed at any moment (even ``kill -9``) and resumed ends with exactly
one response line per row. A bad row (bad JSON or CSV, a variable without a value, a request that
does not validate) gets an error line naming its line and is never sent. ``--max-errors N`` stops
the run once more than N rows failed (default: never). Progress goes to stderr: a bar on a
terminal (with the ``progress`` extra, ``tqdm``), else a line every ``--progress-every`` seconds;
then a summary. Exit status 0 when every row has a response, 1 when some failed (their error lines
are in the output: ``--resume`` tries them again).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from chatdsl._errors import RowError, TemplateError, ValidationError
from chatdsl.cli.common import (
    PROG,
    Failure,
    add_dialect,
    add_max_size,
    add_vars,
    client_options,
    env_name,
    positive_int,
    positive_seconds,
    ranged_number,
    safe,
)
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.templating import did_you_mean
from chatdsl.runs.core import RunResult
from chatdsl.runs.rows import OutputState, RecordWriter, Row, error_record, read_rows, scan_output
from chatdsl.templates.library import RequestTemplate, variable_names

if TYPE_CHECKING:
    from chatdsl.client.sync import Client

__all__ = ["add_run_command", "run_command"]

_PROGRESS_HINT: Final = f"{PROG}: for a progress bar, pip install 'chatdsl[progress]'"


def add_run_command(commands: Any) -> None:
    """Add the ``run`` subcommand to the ``chatdsl`` parser's *commands*."""
    run = commands.add_parser(
        "run",
        help="send a template once per row of a JSONL or CSV file, concurrently; append each answer to a JSONL file",
    )
    run.add_argument("template", metavar="TEMPLATE", help="a .json or .toml template file")
    run.add_argument("--input", required=True, metavar="FILE", help="JSONL (one object a line) or CSV (header row)")
    run.add_argument("--output", metavar="FILE", help="the JSONL file the answers are appended to (one line a row)")
    add_vars(run)
    run.add_argument("--concurrency", type=positive_int, default=8, metavar="N", help="requests at once (default 8)")
    run.add_argument(
        "--resume", action="store_true", help="skip the rows that already have a response line in --output"
    )
    run.add_argument(
        "--max-errors", type=_count, metavar="N", help="stop once more than N rows failed (default: never stop)"
    )
    run.add_argument("--base-url", metavar="URL", help="the API's base URL (default https://api.mistral.ai)")
    add_dialect(run)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="render and validate every row, print the number of requests and their prompt tokens; send nothing",
    )
    run.add_argument("--requests-per-second", type=_rate, metavar="R", help="send at most R requests a second")
    run.add_argument("--tokens-per-minute", type=_rate, metavar="T", help="use at most T tokens a minute")
    run.add_argument(
        "--timeout", metavar="SECONDS", type=positive_seconds, help="connect and read timeout of each request"
    )
    run.add_argument(
        "--api-key-env",
        metavar="NAME",
        type=env_name,
        help="read the key from this environment variable (default: MISTRAL_API_KEY)",
    )
    run.add_argument(
        "--progress-every",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="when stderr is not a terminal, print a progress line this often (default 10)",
    )
    add_max_size(run)


_count: Final = ranged_number(int, "whole number", low=0)
_rate: Final = ranged_number(float, "number", low=0, above=True)


# ---------------------------------------------------------------------------------------- rows


class _Rows:
    """The rows of the input, rendered: ``(key, request)`` pairs to send; bad rows handed to *on_bad*."""

    def __init__(self, args: argparse.Namespace, template: RequestTemplate, skip: frozenset[str]) -> None:
        self.path = args.input
        self.constants: dict[str, object] = dict(args.vars)
        self.render = template.renderer(allow_extra=True)
        self.skip = skip
        self.dialect = args.dialect
        self.drop = args.drop_unsupported
        self.skipped = 0

    def rows(self) -> Iterator[Row]:
        try:
            yield from read_rows(self.path)
        except OSError as exc:
            raise Failure(f"{self.path}: cannot be read ({exc.strerror or exc})") from None

    def requests(self) -> Iterator[tuple[Row, ChatCompletionRequest | RowError]]:
        """Yield every row not skipped with its request, or the :class:`RowError` that keeps it from being sent."""
        for row in self.rows():
            if row.key in self.skip:
                self.skipped += 1
                continue
            if row.error is not None:
                yield row, row.error
                continue
            try:
                request = self.render({**self.constants, **row.values})
                request.validate()
                if self.dialect != "mistral":
                    request.to_dict(dialect=self.dialect, drop_unsupported=self.drop)
            except ValidationError as exc:
                problem = "; ".join(f"{path}: {message}" if path else message for path, message in exc.errors)
                yield row, RowError(problem, file=os.fspath(self.path), line=row.line, key=row.key)
                continue
            yield row, request


def _check_vars(args: argparse.Namespace, template: RequestTemplate) -> None:
    names = variable_names(template)
    known = ", ".join(names) or "none"
    problems = [
        (args.template, name, f"is not a variable of the template{did_you_mean(name, names)} (variables: {known})")
        for name, _ in args.vars
        if name not in names
    ]
    if problems:
        raise TemplateError(problems)


# -------------------------------------------------------------------------------------- stats


class _Stats:
    """Counts, tokens and a latency histogram (1 % buckets: constant memory, percentiles within 1 %)."""

    _STEP: Final = math.log(1.01)

    def __init__(self, total: int) -> None:
        self.total = total
        self.ok = self.failed = self.bad_rows = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.started = time.monotonic()
        self._buckets: dict[int, int] = {}

    @property
    def done(self) -> int:
        return self.ok + self.failed

    def add(self, result: RunResult) -> None:
        if result.response is None:
            self.failed += 1
            return
        self.ok += 1
        usage = result.response.usage
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens
            self.completion_tokens += usage.completion_tokens
        bucket = round(math.log(max(result.latency, 1e-6)) / self._STEP)
        self._buckets[bucket] = self._buckets.get(bucket, 0) + 1

    def bad(self) -> None:
        self.failed += 1
        self.bad_rows += 1

    def percentile(self, fraction: float) -> float | None:
        count = sum(self._buckets.values())
        if not count:
            return None
        rank = fraction * count
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return math.exp(bucket * self._STEP)
        return None  # pragma: no cover (the last bucket reaches the count)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 and left > 0 else "-"
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        tokens = self.prompt_tokens + self.completion_tokens
        return (
            f"run: {self.done:,}/{self.total:,}{share}, {rate:.1f}/s, ETA {eta}, "
            f"tokens {tokens:,}, errors {self.failed:,}"
        )


def _rows(count: int, word: str = "row") -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class _Progress:
    """A ``tqdm`` bar on a terminal, else a plain line every *every* seconds (and a hint once, if tqdm is missing)."""

    def __init__(self, stats: _Stats, err: TextIO, every: float) -> None:
        self.stats, self.err, self.every = stats, err, every
        self.bar: Any = None
        self.last = time.monotonic()
        if _isatty(err):
            try:
                tqdm = importlib.import_module("tqdm")
            except ImportError:
                err.write(_PROGRESS_HINT + "\n")
            else:
                self.bar = tqdm.tqdm(total=stats.total, unit="req", file=err, dynamic_ncols=True, smoothing=0.1)

    def update(self) -> None:
        stats = self.stats
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                tokens=stats.prompt_tokens + stats.completion_tokens, errors=stats.failed, refresh=False
            )
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.err.write(stats.line() + "\n")
            self.err.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# ------------------------------------------------------------------------------------- command


def run_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run ``chatdsl run`` with its parsed *args*; return the exit status."""
    template = RequestTemplate.load(args.template, max_size=args.max_size)
    _check_vars(args, template)
    if args.dry_run:
        return _dry_run(args, template, out, err)
    if args.output is None:
        raise Failure("--output FILE is required (unless --dry-run)")
    output = Path(args.output)
    if not args.resume and output.exists() and output.stat().st_size > 0:
        raise Failure(f"{output} already exists; pass --resume to continue that run, or choose another --output")
    options = client_options(args)
    from chatdsl.client.sync import Client

    with contextlib.ExitStack() as stack:
        try:
            state = scan_output(output) if args.resume else OutputState()
            writer = stack.enter_context(RecordWriter(output))
        except OSError as exc:
            raise Failure(f"{output}: cannot be written ({exc.strerror or exc})") from None
        return _run(args, template, state, writer, stack.enter_context(Client(**options, limits=_limits(args))), err)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the with block returns)


def _limits(args: argparse.Namespace) -> Any:
    from chatdsl.client.config import Limits

    return Limits(pool_maxsize=max(20, args.concurrency))


def _run(
    args: argparse.Namespace,
    template: RequestTemplate,
    state: OutputState,
    writer: RecordWriter,
    client: Client,
    err: TextIO,
) -> int:
    output = writer.path
    rows = _Rows(args, template, state.done)
    total = sum(1 for row in rows.rows() if row.key not in state.done)
    if args.resume:
        torn = f"; a torn last line ({state.torn} bytes) was cut" if state.torn else ""
        err.write(f"{PROG}: resuming: {_rows(len(state.done))} already answered, {total:,} to go{torn}\n")
    stats = _Stats(total)
    progress = _Progress(stats, err, args.progress_every)
    stopped = False
    limit = math.inf if args.max_errors is None else args.max_errors
    try:

        def items() -> Iterator[tuple[str, ChatCompletionRequest]]:
            for row, request in rows.requests():
                if isinstance(request, RowError):
                    writer.write(error_record(row.key, request, attempts=0))
                    stats.bad()
                    progress.update()
                    if stats.failed > limit:
                        return
                    continue
                yield row.key, request

        results = client.run_many(
            items(),
            concurrency=args.concurrency,
            ordered=False,
            requests_per_second=args.requests_per_second,
            tokens_per_minute=args.tokens_per_minute,
        )
        try:
            for result in results:
                writer.write(result.record())
                stats.add(result)
                progress.update()
                if stats.failed > limit:
                    break
        finally:
            results.close()  # type: ignore[attr-defined]
        stopped = stats.failed > limit
    except KeyboardInterrupt:
        progress.close()
        _summary(stats, rows.skipped, output, err, note="interrupted")
        raise
    progress.close()
    _summary(stats, rows.skipped, output, err, note=f"stopped: more than {args.max_errors} errors" if stopped else "")
    if stats.failed:
        err.write(
            f"{PROG}: error: {_rows(stats.failed)} failed (error lines in {output}); "
            "fix what they say and run again with --resume to retry them\n"
        )
        return 1
    return 0


def _summary(stats: _Stats, skipped: int, output: Path, err: TextIO, *, note: str = "") -> None:
    wall = time.monotonic() - stats.started
    bad = f" ({_rows(stats.bad_rows, 'bad row')})" if stats.bad_rows else ""
    resumed = f", {skipped:,} skipped (already answered)" if skipped else ""
    lines = [
        f"run: {stats.ok:,} ok, {stats.failed:,} failed{bad}{resumed}; wall time {wall:.1f} s"
        f" ({stats.done / wall if wall > 0 else 0:.1f} requests/s)" + (f" — {note}" if note else ""),
        f"tokens: {stats.prompt_tokens:,} prompt, {stats.completion_tokens:,} completion",
    ]
    p50, p95 = stats.percentile(0.5), stats.percentile(0.95)
    if p50 is not None and p95 is not None:
        lines.append(f"latency: p50 {p50:.3f} s, p95 {p95:.3f} s")
    lines.append(f"output: {safe(str(output))}")
    err.write("".join(line + "\n" for line in lines))


# ------------------------------------------------------------------------------------- dry run


def _dry_run(args: argparse.Namespace, template: RequestTemplate, out: TextIO, err: TextIO) -> int:
    skip = scan_output(args.output).done if args.resume and args.output else frozenset()
    rows = _Rows(args, template, skip)
    counter = _token_counter()
    requests = bad = tokens = 0
    notes: set[str] = set()
    for _, request in rows.requests():
        if isinstance(request, RowError):
            bad += 1
            err.write(f"{PROG}: error: {safe(' '.join(str(request).split()))}\n")
            continue
        requests += 1
        if counter is not None:
            counted = counter(request)
            tokens += counted.tokens
            if counted.note:
                notes.add(counted.note)
    skipped = f", {rows.skipped:,} skipped (already answered)" if rows.skipped else ""
    out.write(f"{_rows(requests, 'request')} ({_rows(bad, 'bad row')}{skipped})\n")
    if counter is None:
        out.write("prompt tokens: not counted (the tokens extra is missing: pip install 'chatdsl[tokens]')\n")
    else:
        approximate = " (approximate)" if notes else ""
        mean = f", mean {tokens / requests:,.0f} a request" if requests else ""
        out.write(f"prompt tokens: {tokens:,}{approximate}{mean}\n")
        for note in sorted(notes):
            err.write(f"{PROG}: {safe(note)}\n")
    return 1 if bad else 0


def _token_counter() -> Any:
    """Return ``count_tokens``, or ``None`` when the tokens extra (mistral-common) is missing."""
    from chatdsl.tokens import TokenizerMissingError, count_tokens

    try:
        count_tokens(ChatCompletionRequest().with_model("mistral-small-latest").user("x"))
    except TokenizerMissingError:
        return None
    return count_tokens
