"""A pytest plugin that fails any test in which the test API key leaks (registered in ``tests/conftest.py``).

Client tests use :data:`TEST_KEY`. For every test, the autouse fixture :func:`secret_guard`

- records every log record of the ``chatdsl``, ``requests``, ``urllib3`` and ``aiohttp`` loggers at DEBUG
  (the levels are lowered for the test and restored after it);
- records every exception raised through either client — by ``Client(...)``/``AsyncClient(...)``, their
  methods (``chat_completion``, ``chat_completion_stream``, ``run_tools``, ``with_options``), a stream's
  iteration and ``final_response`` — and every ``StreamError`` an error chunk carries;

and at teardown fails the test if the key, or any 12 characters of it (a key cut short in a
message is still a leak), appears in a record's message or exception text, or in an exception's
``str``, ``repr``, arguments, attributes (``body``, ``headers``, …), notes or chained causes and
contexts — or in the locals of any frame in their tracebacks, formatted as
``traceback.TracebackException(capture_locals=True)`` does (what ``pytest -l``, loguru's ``diagnose``
and rich print). The captured stdout and stderr of each test are checked the same way. The session ends
with a one-line summary of what was checked.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

TEST_KEY = "sk-chatdsl-TESTKEY-9f2c41d7e8a3b605"
"""The API key every client test uses: distinctive, so a leak is found by a plain substring search."""

_WINDOW = 12
_LOGGERS = ("chatdsl", "requests", "urllib3", "aiohttp")


def leaked(text: str, secret: str = TEST_KEY) -> bool:
    """Return whether *text* holds *secret* or any 12 consecutive characters of it."""
    if secret in text:
        return True
    return any(secret[i : i + _WINDOW] in text for i in range(len(secret) - _WINDOW + 1))


def _mask(text: str, secret: str = TEST_KEY) -> str:
    """Return *text* with every run of characters that belongs to a leaked piece of *secret* shown as ``<KEY>``."""
    covered = [False] * len(text)
    for i in range(len(secret) - _WINDOW + 1):
        start = text.find(secret[i : i + _WINDOW])
        while start != -1:
            covered[start : start + _WINDOW] = [True] * _WINDOW
            start = text.find(secret[i : i + _WINDOW], start + 1)
    out: list[str] = []
    for char, hidden in zip(text, covered, strict=True):
        if not hidden:
            out.append(char)
        elif not out or out[-1] != "<KEY>":
            out.append("<KEY>")
    return "".join(out)


def frame_locals(exc: BaseException) -> str:
    """Return *exc* formatted with the locals of every frame of it and of every exception chained to
    it, as ``traceback.TracebackException(capture_locals=True)`` does (and ``pytest -l``, loguru's
    ``diagnose`` and rich); a local whose repr fails (a value nested too deep, an object half built) is
    shown as such."""
    try:
        return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())
    except Exception:  # Python 3.11 calls repr() on each local unguarded
        pass
    lines: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            for name, value in tb.tb_frame.f_locals.items():
                try:
                    shown = repr(value)
                except Exception:  # RecursionError included
                    shown = "<repr failed>"
                lines.append(f"{name} = {shown}")
            tb = tb.tb_next
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
        stack += list(getattr(current, "exceptions", ()))
    return "\n".join(lines)


def exception_texts(exc: BaseException) -> list[str]:
    """Return every text an exception shows or carries: the formatted chain (causes, contexts,
    notes), and for each exception in it its ``repr``, arguments and attributes."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        texts += [repr(note) for note in getattr(current, "__notes__", ())]
        texts += [f"{name}={value!r}" for name, value in vars(current).items()]
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
        stack += list(getattr(current, "exceptions", ()))
    return texts


class _Records(logging.Handler):
    def __init__(self, guard: SecretGuard) -> None:
        super().__init__(logging.DEBUG)
        self.guard = guard

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        self.guard.records.append((f"log record {record.name} {record.levelname}", text))


class SecretGuard:
    """What one test logged and raised through the client; :meth:`leaks` lists where the key appears."""

    def __init__(self, secret: str = TEST_KEY) -> None:
        self.secret = secret
        self.records: list[tuple[str, str]] = []
        self.exceptions: list[BaseException] = []
        self.frames: list[str] = []

    def exception(self, exc: BaseException) -> None:
        """Record *exc* (raised through the client, or carried by an error chunk), and its frames'
        locals as they are when the client hands it over (the test's own frames are not the client's)."""
        frames = frame_locals(exc)
        self.exceptions.append(exc)
        self.frames.append(frames)

    def texts(self) -> Iterator[tuple[str, str]]:
        """Yield ``(where, text)`` for everything recorded."""
        yield from self.records
        for exc, frames in zip(self.exceptions, self.frames, strict=True):
            for text in exception_texts(exc):
                yield f"exception {type(exc).__name__}", text
            yield f"frames' locals of {type(exc).__name__}", frames

    def leaks(self) -> list[str]:
        """Return one line per recorded text that holds the key (masked), or an empty list."""
        return [
            f"{where}: {_mask(text, self.secret)[:300]!r}" for where, text in self.texts() if leaked(text, self.secret)
        ]


class _Totals:
    tests = 0
    records = 0
    exceptions = 0
    leaks = 0


def _guarded(guard: SecretGuard, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            del args, kwargs  # this frame is in the traceback: it must not show the key it passed on
            guard.exception(exc)
            raise

    return call


def _guarded_async(guard: SecretGuard, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except Exception as exc:
            del args, kwargs  # this frame is in the traceback: it must not show the key it passed on
            guard.exception(exc)
            raise

    return call


def _guarded_anext(guard: SecretGuard, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(self: Any) -> Any:
        try:
            chunk = await method(self)
        except StopAsyncIteration:
            raise
        except Exception as exc:
            guard.exception(exc)
            raise
        if chunk.error is not None:
            guard.exception(chunk.error)
        return chunk

    return call


def _guarded_next(guard: SecretGuard, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any) -> Any:
        try:
            chunk = method(self)
        except StopIteration:
            raise
        except Exception as exc:
            guard.exception(exc)
            raise
        if chunk.error is not None:
            guard.exception(chunk.error)
        return chunk

    return call


@pytest.fixture(autouse=True)
def secret_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretGuard]:
    """Fail the test if :data:`TEST_KEY` appears in a log record or in an exception raised through the client."""
    from chatdsl import AsyncChatCompletionStream, AsyncClient, ChatCompletionStream, Client

    guard = SecretGuard()
    handler = _Records(guard)
    levels = {}
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        levels[name] = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    for name in ("__init__", "chat_completion", "chat_completion_stream", "run_tools", "with_options"):
        monkeypatch.setattr(Client, name, _guarded(guard, getattr(Client, name)))
    monkeypatch.setattr(ChatCompletionStream, "__next__", _guarded_next(guard, ChatCompletionStream.__next__))
    # ``iter(stream)`` is the stream itself: every chunk, in a for loop too, goes through ``__next__``
    monkeypatch.setattr(ChatCompletionStream, "final_response", _guarded(guard, ChatCompletionStream.final_response))
    # the async client: its coroutines (``_send`` carries every call, streams included) and its streams
    for name in ("__init__", "chat_completion_stream", "with_options"):
        monkeypatch.setattr(AsyncClient, name, _guarded(guard, getattr(AsyncClient, name)))
    for name in ("chat_completion", "run_tools", "_send"):
        monkeypatch.setattr(AsyncClient, name, _guarded_async(guard, getattr(AsyncClient, name)))
    monkeypatch.setattr(
        AsyncChatCompletionStream, "__anext__", _guarded_anext(guard, AsyncChatCompletionStream.__anext__)
    )
    monkeypatch.setattr(
        AsyncChatCompletionStream, "final_response", _guarded_async(guard, AsyncChatCompletionStream.final_response)
    )
    try:
        yield guard
    finally:
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            logger.removeHandler(handler)
            logger.setLevel(levels[name])
    leaks = guard.leaks()
    _Totals.tests += 1
    _Totals.records += len(guard.records)
    _Totals.exceptions += len(guard.exceptions)
    _Totals.leaks += len(leaks)
    if leaks:
        pytest.fail("the test API key leaked:\n" + "\n".join(leaks), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Fail a test whose captured stdout or stderr shows the key."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    shown = [
        (name, text)
        for name, text in report.sections
        if name in (f"Captured stdout {report.when}", f"Captured stderr {report.when}")
    ]
    leaks = [f"{name}: {_mask(text)[:300]!r}" for name, text in shown if leaked(text)]
    if leaks and report.outcome != "failed":
        _Totals.leaks += len(leaks)
        report.outcome = "failed"
        report.longrepr = "the test API key leaked:\n" + "\n".join(leaks)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, hand this worker's totals to the controller (see :func:`pytest_testnodedown`)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["secret_guard"] = [_Totals.tests, _Totals.records, _Totals.exceptions, _Totals.leaks]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Under pytest-xdist, add a finished worker's totals to the controller's."""
    totals = getattr(node, "workeroutput", {}).get("secret_guard")
    if totals:
        _Totals.tests += totals[0]
        _Totals.records += totals[1]
        _Totals.exceptions += totals[2]
        _Totals.leaks += totals[3]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how much the guard checked."""
    if _Totals.tests:
        terminalreporter.write_line(
            f"secret guard: {_Totals.tests} tests, {_Totals.records} log records and {_Totals.exceptions} "
            f"client exceptions checked for the test key; leaks found: {_Totals.leaks}"
        )
