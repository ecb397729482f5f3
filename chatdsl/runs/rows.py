"""The files of a run: input rows (JSONL or CSV) in, one JSONL record per row out. No network here.

Input rows
    :func:`read_rows` reads a JSONL file (one JSON object per line) or a CSV file (a header row,
    then one row per record), lazily, and yields a :class:`Row` per record. A row's key is its
    ``id`` field (a non-empty string, or an integer, written as text), else the 1-based number of
    the line it starts on (as a string; in a CSV file the header is line 1). A UTF-8 byte-order
    mark is skipped, blank lines are skipped (they still count as lines), CSV quoting follows
    RFC 4180 (a quoted field may hold commas, quotes doubled, newlines). A record that cannot be
    used — malformed JSON or CSV, not an object, invalid UTF-8, a field count unlike the
    header's, a bad or repeated ``id`` — is still yielded, with ``error`` set to a
    :class:`~chatdsl.RowError` naming the file and line, so the caller decides how many bad rows
    to tolerate. Only a file that cannot be read at all (no header, a repeated column) raises.

Output records
    One JSON object per line, ``id`` first::

        {"id": "7", "response": {...the response's to_dict()...}, "latency_ms": 412.3, "attempts": 1}
        {"id": "8", "error": {"type": "RateLimitError", "message": "...", "status_code": 429},
         "latency_ms": 9.8, "attempts": 3}

    :func:`response_record` and :func:`error_record` build them; a :class:`RecordWriter` appends them.

Whole lines only
    A record is committed when its newline is in the file. :class:`RecordWriter` encodes the whole
    line first and hands it to the kernel in one ``write`` on an ``O_APPEND`` descriptor (looping
    only on a short write), with no buffer in the process: a record the writer returned from is in
    the page cache and survives ``kill -9`` of the process. A kill during that ``write`` (possible
    for a line longer than a page) or a power loss can still leave a torn last line: when it opens
    a file, the writer cuts everything after the last newline, and :func:`scan_output` never
    counts it. ``fsync`` runs at most once per ``fsync_interval`` seconds (default 1 s) and at
    close: after a power loss at most that much work is redone on resume, while a run of hundreds
    of requests a second does not wait on the disk for each one (``fsync_interval=0`` syncs every
    record). The writer takes an exclusive ``flock`` on the file, so two runs cannot append to one
    output at once.

Resume
    :func:`scan_output` reads an output file and returns the keys that already have a response
    line (:class:`OutputState`); a resumed run skips those rows, so killed at any moment and
    resumed, it ends with exactly one response line per row. Error lines do not count: those rows
    are tried again.
"""

from __future__ import annotations

import contextlib
import csv
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import attrs

from chatdsl import _json
from chatdsl._errors import APIError, ChatDSLError, RowError

__all__ = [
    "KEY_FIELD",
    "OutputState",
    "RecordWriter",
    "Row",
    "error_record",
    "read_rows",
    "response_record",
    "row_format",
    "scan_output",
]

KEY_FIELD: Final = "id"
"""The input field that holds a row's key (and the output field that repeats it)."""

RowFormat = Literal["jsonl", "csv"]

_BOM: Final = b"\xef\xbb\xbf"
_JSONL_SUFFIXES: Final = (".jsonl", ".ndjson", ".json")


# ------------------------------------------------------------------------------------------- rows


@attrs.frozen(kw_only=True)
class Row:
    """One input record: its ``key``, the ``line`` it starts on, its field ``values`` and any ``error``.

    ``values`` holds every field of the record (``id`` included) as read: JSON values from a JSONL
    file, strings from a CSV file. ``error`` is ``None`` for a usable row; for a bad one it is the
    :class:`~chatdsl.RowError` saying why (``values`` is then empty, or what could be read).
    """

    key: str
    line: int
    values: Mapping[str, Any] = attrs.field(factory=dict)
    error: RowError | None = None


def row_format(path: str | os.PathLike[str]) -> RowFormat:
    """Return ``"csv"`` or ``"jsonl"`` for the file at *path*: by its suffix (``.csv``; ``.jsonl``,
    ``.ndjson``, ``.json``), else by its first non-blank byte (``{`` is JSONL)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    with open(path, "rb") as fh:
        head = fh.read(4096).removeprefix(_BOM).lstrip()
    return "jsonl" if head.startswith(b"{") else "csv"


def read_rows(path: str | os.PathLike[str], *, format: RowFormat | None = None) -> Iterator[Row]:
    """Yield the rows of the JSONL or CSV file at *path*, one at a time (see the module docs).

    *format* (``"jsonl"`` or ``"csv"``) overrides the guess of :func:`row_format`. Bad records are
    yielded with ``error`` set; a CSV file without a usable header raises :class:`~chatdsl.RowError`
    (on the first ``next()``), a file that cannot be opened ``OSError``.
    """
    kind = row_format(path) if format is None else format
    if kind not in ("jsonl", "csv"):
        raise ValueError(f"format: {kind!r} is not 'jsonl' or 'csv'")
    return _unique(_read_jsonl(path) if kind == "jsonl" else _read_csv(path), os.fspath(path))


def _unique(rows: Iterator[Row], name: str) -> Iterator[Row]:
    """Turn a row whose key an earlier row already had into a bad row (a key names one row only).

    The ``id`` values seen are kept in a set; the rows keyed by their line number only as one bit
    a line, so a file without ids is checked in near-constant memory.
    """
    ids: set[str] = set()
    by_line = bytearray()  # bit n: line n is the key of an earlier row without id

    def line_taken(number: int) -> bool:
        return number >> 3 < len(by_line) and bool(by_line[number >> 3] & (1 << (number & 7)))

    for row in rows:
        if row.error is None:
            if KEY_FIELD in row.values:
                number = int(row.key) if row.key.isascii() and row.key.isdigit() and row.key == str(int(row.key)) else 0
                taken = row.key in ids or line_taken(number)
                if not taken:
                    ids.add(row.key)
            else:
                taken = row.key in ids
                if not taken:
                    if row.line >> 3 >= len(by_line):
                        by_line.extend(bytes((row.line >> 3) + 1 - len(by_line) + len(by_line) // 2))
                    by_line[row.line >> 3] |= 1 << (row.line & 7)
            if taken:
                error = RowError(
                    f"the key {row.key!r} is already taken by an earlier row (an id, or a line number); "
                    "every row needs its own key",
                    file=name,
                    line=row.line,
                    key=row.key,
                )
                row = attrs.evolve(row, error=error)
        yield row


def _key(values: Mapping[str, Any], line: int) -> str:
    """Return the row's key, or raise ``ValueError`` saying why its ``id`` is unusable."""
    if KEY_FIELD not in values:
        return str(line)
    value = values[KEY_FIELD]
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    shown = "an empty string" if value == "" else _json.dumps(value) if _jsonable(value) else repr(value)
    raise ValueError(f"the {KEY_FIELD} field is {shown}; an id is a non-empty string or an integer")


def _jsonable(value: Any) -> bool:
    try:
        _json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _read_jsonl(path: str | os.PathLike[str]) -> Iterator[Row]:
    name = os.fspath(path)
    with open(path, "rb") as fh:
        for line, raw in enumerate(fh, 1):
            if line == 1:
                raw = raw.removeprefix(_BOM)
            if not raw.strip():
                continue
            try:
                data = _json.loads(raw)
            except UnicodeDecodeError:
                yield _bad(name, line, "is not valid UTF-8")
                continue
            except (ValueError, RecursionError) as exc:
                yield _bad(name, line, f"is not valid JSON ({_short(exc)})")
                continue
            if not isinstance(data, dict):
                kind = "an array" if isinstance(data, list) else f"a {type(data).__name__}"
                yield _bad(name, line, f"is {kind}, not a JSON object")
                continue
            try:
                key = _key(data, line)
            except ValueError as exc:
                yield _bad(name, line, str(exc), values=data)
                continue
            yield Row(key=key, line=line, values=data)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


def _bad(name: str, line: int, message: str, *, values: Mapping[str, Any] | None = None) -> Row:
    key = str(line)
    if values is not None:
        with contextlib.suppress(ValueError):
            key = _key(values, line)
    return Row(key=key, line=line, values=dict(values or {}), error=RowError(message, file=name, line=line, key=key))


class _Lines:
    """The lines of a binary file as text for :mod:`csv`: UTF-8 (BOM skipped), noting the lines that are not."""

    def __init__(self, fh: Iterable[bytes]) -> None:
        self._lines = iter(fh)
        self.count = 0
        self.invalid: list[int] = []  # line numbers that are not UTF-8 (kept small: cleared per record)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> str:
        raw = next(self._lines)
        self.count += 1
        if self.count == 1:
            raw = raw.removeprefix(_BOM)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid.append(self.count)
            return raw.decode("utf-8", "surrogateescape")


def _read_csv(path: str | os.PathLike[str]) -> Iterator[Row]:
    name = os.fspath(path)
    with open(path, "rb") as fh:
        lines = _Lines(fh)
        reader = csv.reader(lines, strict=True)
        header: list[str] | None = None
        start = 1
        while True:
            start = reader.line_num + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                lines.invalid.clear()
                if header is None:
                    raise RowError(f"the header is not valid CSV ({_short(exc)})", file=name, line=start) from None
                yield _bad(name, start, f"is not valid CSV ({_short(exc)})")
                continue
            if lines.invalid:
                lines.invalid.clear()
                if header is None:
                    raise RowError("the header is not valid UTF-8", file=name, line=start)
                yield _bad(name, start, "is not valid UTF-8")
                continue
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            if header is None:
                header = _check_header(record, name, start)
                continue
            if len(record) != len(header):
                yield _bad(name, start, f"has {len(record)} fields, the header has {len(header)}")
                continue
            values = dict(zip(header, record, strict=True))
            try:
                key = _key(values, start)
            except ValueError as exc:
                yield _bad(name, start, str(exc), values=values)
                continue
            yield Row(key=key, line=start, values=values)
        if header is None:
            raise RowError("has no header row (a CSV input starts with the names of its columns)", file=name, line=1)


def _check_header(record: list[str], name: str, line: int) -> list[str]:
    seen: set[str] = set()
    for index, column in enumerate(record, 1):
        if not column.strip():
            raise RowError(f"column {index} of the header has no name", file=name, line=line)
        if column in seen:
            raise RowError(f"the header names the column {column!r} twice", file=name, line=line)
        seen.add(column)
    return record


# ---------------------------------------------------------------------------------------- records


def response_record(key: str, response: Any, *, latency_ms: float | None = None, attempts: int = 1) -> dict[str, Any]:
    """Return the output record of a row answered by *response* (a response, or its wire dict).

    *latency_ms* is the row's time from its first attempt to its answer; *attempts* how many
    requests it took.
    """
    body = response if isinstance(response, Mapping) else response.to_dict()
    return {KEY_FIELD: key, "response": body, "latency_ms": _ms(latency_ms), "attempts": attempts}


def error_record(
    key: str, error: BaseException | Mapping[str, Any], *, latency_ms: float | None = None, attempts: int = 1
) -> dict[str, Any]:
    """Return the output record of a row that failed with *error* (an exception, or the error dict itself).

    From an exception the error holds ``type`` (its class name), ``message`` and ``status_code``
    (``None`` when no HTTP status came), plus ``request_id`` when the server sent one.
    *attempts* is 0 for a row that was never sent (a bad row).
    """
    info = dict(error) if isinstance(error, Mapping) else _error_info(error)
    return {KEY_FIELD: key, "error": info, "latency_ms": _ms(latency_ms), "attempts": attempts}


def _error_info(exc: BaseException) -> dict[str, Any]:
    info: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "status_code": exc.status_code if isinstance(exc, APIError) else None,
    }
    if isinstance(exc, APIError) and exc.request_id:
        info["request_id"] = exc.request_id
    return info


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


class RecordWriter:
    """Append records to a JSONL file, each as one whole line (see the module docs).

    Opening creates the file if needed, takes an exclusive lock on it (another writer is a
    :class:`~chatdsl.ChatDSLError`) and cuts a torn last line left by a killed run. :meth:`write`
    returns once the line is in the kernel's hands; the file is synced at most every
    *fsync_interval* seconds (``0``: every record; ``None``: only at :meth:`close`) and at close.
    Threads may share a writer. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync_interval: float | None = 1.0) -> None:
        if fsync_interval is not None and not fsync_interval >= 0:
            raise ValueError(f"fsync_interval: {fsync_interval!r} is not None or a number of seconds >= 0")
        self.path: Final = Path(path)
        """The file written."""
        self._interval = fsync_interval
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            _lock_file(self._fd, self.path)
            self.repaired: Final = _cut_torn_tail(self._fd)
            """How many bytes of a torn last line were cut when the file was opened (0: none)."""
        except BaseException:
            os.close(self._fd)
            raise
        self._synced = time.monotonic()
        self._dirty = False
        self._closed = False
        self.written = 0
        """How many records this writer wrote."""

    def write(self, record: Mapping[str, Any]) -> None:
        """Append *record* as one JSON line (written whole, with no buffer in this process)."""
        data = _json.dumps_bytes(record) + b"\n"
        with self._lock:
            if self._closed:
                raise ValueError(f"the RecordWriter of {str(self.path)!r} is closed")
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            self.written += 1
            self._dirty = True
            if self._interval is not None and time.monotonic() - self._synced >= self._interval:
                self._sync()

    def flush(self) -> None:
        """Sync what was written to the disk now (``fsync``)."""
        with self._lock:
            if not self._closed:
                self._sync()

    def _sync(self) -> None:
        if self._dirty:
            getattr(os, "fdatasync", os.fsync)(self._fd)
            self._dirty = False
        self._synced = time.monotonic()

    def close(self) -> None:
        """Sync and close the file (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._sync()
            finally:
                os.close(self._fd)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"written={self.written}"
        return f"<RecordWriter {str(self.path)!r} {state}>"


def _lock_file(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ChatDSLError(f"{path}: another run is writing to this file (it is locked)") from None


def _read_at(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # no pread (Windows): writes still append (O_APPEND)
    return os.read(fd, size)


def _cut_torn_tail(fd: int) -> int:
    """Cut the bytes after the last newline of the file (a line a killed writer left torn); return how many."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = _read_at(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    if keep < size:
        os.ftruncate(fd, keep)
    return size - keep


# ----------------------------------------------------------------------------------------- resume


@attrs.frozen(kw_only=True)
class OutputState:
    """What an output file already holds: the keys ``done`` (with a response line) and line counts.

    ``responses`` and ``errors`` count the response and error lines; ``bad_lines`` lists the
    numbers of the complete lines that are not records (corruption, never written by chatdsl);
    ``torn`` is the size in bytes of a torn last line (no newline), which :class:`RecordWriter`
    cuts when it opens the file.
    """

    done: frozenset[str] = frozenset()
    responses: int = 0
    errors: int = 0
    bad_lines: tuple[int, ...] = ()
    torn: int = 0


def scan_output(path: str | os.PathLike[str]) -> OutputState:
    """Read the output file at *path* (a missing file is an empty one) and return what it holds."""
    done: set[str] = set()
    responses = errors = 0
    bad: list[int] = []
    torn = 0
    try:
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.endswith(b"\n"):
                    torn = len(raw)  # only the last line can lack its newline
                    break
                try:
                    record = _json.loads(raw)
                except (ValueError, RecursionError):
                    bad.append(number)
                    continue
                key = record.get(KEY_FIELD) if isinstance(record, dict) else None
                if not isinstance(key, str):
                    bad.append(number)
                elif isinstance(record.get("response"), dict):
                    responses += 1
                    done.add(key)
                elif isinstance(record.get("error"), dict):
                    errors += 1
                else:
                    bad.append(number)
    except FileNotFoundError:
        return OutputState()
    return OutputState(done=frozenset(done), responses=responses, errors=errors, bad_lines=tuple(bad), torn=torn)
