"""The fault matrix: plain and streamed calls against every way the server can fail, over real sockets.

Each row of :data:`MATRIX` is one fault scripted on a :class:`~chatdsl.testing.LocalServer`, with the
documented outcome for a plain call and for a streamed call (``None``: the fault does not exist for
that kind of call). Every case checks the outcome (success, a typed error, or an error chunk), the
number of attempts (counted by the server, and by the client's own "attempt N" log lines), the time
taken against the timeouts, and that no connection is left open once the client is closed. Every
case runs for both clients (``make_client``: :class:`~chatdsl.Client` and :class:`~chatdsl.AsyncClient`).

The settings are small so the whole matrix runs in a few seconds: ``read=0.3`` s, ``connect=0.5`` s,
two retries waiting 0.02 s then 0.04 s (no jitter). :func:`markdown` renders the matrix for docs/reliability.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import chatdsl
from chatdsl import (
    APIConnectionError,
    APITimeoutError,
    ChatCompletionResponse,
    CompletionChunk,
    InternalServerError,
    MalformedResponseError,
    RateLimitError,
    RetryPolicy,
    StreamError,
    Timeout,
)
from chatdsl.testing import LocalServer, Reply
from tests._clients import ClientDriver
from tests._secrets import TEST_KEY, SecretGuard

KEY = TEST_KEY
REQUEST = chatdsl.chat("mistral-small-latest").user("one two three four")

READ = 0.3
TIMEOUT = Timeout(connect=0.5, read=READ)
POLICY = RetryPolicy(max_retries=2, initial_delay=0.02, multiplier=2.0, max_delay=0.05, jitter=0.0)
BACKOFF = 0.02 + 0.04  # the two waits before the retries
RETRY_AFTER = 0.1
STALL = 2.0  # a server's silence: far longer than READ, so only the read timeout can end it
MARGIN = 1.0  # added to every upper bound of the time taken


@attrs.frozen
class Outcome:
    """What a call must end with, after how many attempts and within which times (seconds)."""

    result: str
    """``"response"``, ``"stream"`` (complete), ``"error chunk"``, or the name of the exception raised."""
    attempts: int
    at_most: float
    at_least: float = 0.0
    error: type[BaseException] | None = None
    """The exception raised, or the ``__cause__`` of the error chunk's StreamError (``None``: none)."""
    message: str = ""
    """A regular expression the error's text must match."""
    check: Callable[[Any], None] | None = None
    """More checks on the error, response or chunks."""

    def describe(self) -> str:
        """The outcome as a cell of the docs' fault-matrix table."""
        tries = f"{self.attempts} attempt" + ("s" if self.attempts > 1 else "")
        if self.result == "response":
            return f"response ({tries})"
        if self.result == "stream":
            return f"complete stream ({tries})"
        if self.result == "error chunk":
            cause = f" ← `{self.error.__name__}`" if self.error is not None else ""
            return f"error chunk: `StreamError`{cause} ({tries})"
        return f"`{self.result}` raised ({tries})"


@attrs.frozen
class Fault:
    """One row: the fault, how the server plays it, and the outcome for each kind of call."""

    name: str
    script: Callable[[], tuple[tuple[Reply, ...], Reply | None]] | None
    """``() -> (replies queued first, reply to every later request or None for the default)``;
    ``None``: nothing listens (connection refused)."""
    plain: Outcome | None
    stream: Outcome | None
    plain_note: str = ""
    """How the fault is played for a plain call, when it differs from the row's name."""


def always(reply: Reply) -> Callable[[], tuple[tuple[Reply, ...], Reply | None]]:
    return lambda: ((), reply)


def first(*replies: Reply) -> Callable[[], tuple[tuple[Reply, ...], Reply | None]]:
    return lambda: (replies, None)


def _retry_after_kept(error: RateLimitError) -> None:
    assert error.retry_after == pytest.approx(RETRY_AFTER)


def _no_retry_after(error: RateLimitError) -> None:
    assert error.retry_after is None


def _whole_answer(result: ChatCompletionResponse | list[CompletionChunk]) -> None:
    text = result.text() if isinstance(result, ChatCompletionResponse) else "".join(c.text() for c in result)
    assert text == "echo: one two three four"


def _response_started(error: APIConnectionError) -> None:
    assert error.response_started
    assert "not sent again" in str(error)


def _response_not_started(error: APIConnectionError) -> None:
    assert not error.response_started


def _chunks_before_the_error(count: int) -> Callable[[list[CompletionChunk]], None]:
    def check(chunks: list[CompletionChunk]) -> None:
        assert len(chunks) == count + 1, [c.text() for c in chunks]
        assert all(c.error is None and c.choices for c in chunks[:-1])

    return check


RETRIED = 3  # 1 + max_retries

MATRIX: tuple[Fault, ...] = (
    Fault(
        "refused connection (nothing listens on the port)",
        None,
        plain=Outcome("APIConnectionError", RETRIED, MARGIN + BACKOFF, error=APIConnectionError, message="refused"),
        stream=Outcome("APIConnectionError", RETRIED, MARGIN + BACKOFF, error=APIConnectionError, message="refused"),
    ),
    Fault(
        "connection reset before the headers",
        always(Reply.drop(reset=True)),
        plain=Outcome("APIConnectionError", RETRIED, MARGIN + BACKOFF, error=APIConnectionError, message="reset"),
        stream=Outcome("APIConnectionError", RETRIED, MARGIN + BACKOFF, error=APIConnectionError, message="reset"),
    ),
    Fault(
        "429 with `Retry-After: 0.1`",
        always(Reply.error(429, "Requests rate limit exceeded", retry_after=RETRY_AFTER)),
        plain=Outcome(
            "RateLimitError",
            RETRIED,
            MARGIN + 2 * RETRY_AFTER,
            2 * RETRY_AFTER,
            RateLimitError,
            "rate limit exceeded",
            _retry_after_kept,
        ),
        stream=Outcome(
            "RateLimitError",
            RETRIED,
            MARGIN + 2 * RETRY_AFTER,
            2 * RETRY_AFTER,
            RateLimitError,
            "rate limit exceeded",
            _retry_after_kept,
        ),
    ),
    Fault(
        "429 without `Retry-After`",
        always(Reply.error(429, "Requests rate limit exceeded")),
        plain=Outcome("RateLimitError", RETRIED, MARGIN + BACKOFF, BACKOFF, RateLimitError, check=_no_retry_after),
        stream=Outcome("RateLimitError", RETRIED, MARGIN + BACKOFF, BACKOFF, RateLimitError, check=_no_retry_after),
    ),
    Fault(
        "500",
        always(Reply.error(500, "Internal server error")),
        plain=Outcome("InternalServerError", RETRIED, MARGIN + BACKOFF, BACKOFF, InternalServerError, "HTTP 500"),
        stream=Outcome("InternalServerError", RETRIED, MARGIN + BACKOFF, BACKOFF, InternalServerError, "HTTP 500"),
    ),
    Fault(
        "502 with an HTML body (a proxy's error page)",
        always(Reply.html(502)),
        plain=Outcome(
            "InternalServerError", RETRIED, MARGIN + BACKOFF, BACKOFF, InternalServerError, "502 Bad Gateway"
        ),
        stream=Outcome(
            "InternalServerError", RETRIED, MARGIN + BACKOFF, BACKOFF, InternalServerError, "502 Bad Gateway"
        ),
    ),
    Fault(
        "503, then success",
        first(Reply.error(503, "Service unavailable")),
        plain=Outcome("response", 2, MARGIN, check=_whole_answer),
        stream=Outcome("stream", 2, MARGIN, check=_whole_answer),
    ),
    Fault(
        "no response byte for 2 s (a slow start, past the read timeout)",
        always(Reply.delayed(STALL)),
        plain=Outcome(
            "APITimeoutError",
            RETRIED,
            MARGIN + RETRIED * READ + BACKOFF,
            RETRIED * READ,
            APITimeoutError,
            "no data for 0.3 s",
            _response_not_started,
        ),
        stream=Outcome(
            "APITimeoutError",
            RETRIED,
            MARGIN + RETRIED * READ + BACKOFF,
            RETRIED * READ,
            APITimeoutError,
            "no data for 0.3 s",
            _response_not_started,
        ),
    ),
    Fault(
        "headers, then the body stalls (2 s, past the read timeout)",
        always(Reply.stall(STALL)),
        plain=Outcome(
            "APITimeoutError", 1, MARGIN + READ, READ, APITimeoutError, "no data for 0.3 s", _response_started
        ),
        stream=Outcome("error chunk", 1, MARGIN + READ, READ, APITimeoutError, "stalled", _chunks_before_the_error(0)),
    ),
    Fault(
        "body cut mid-JSON (connection closed before `Content-Length` bytes)",
        always(Reply.truncated()),
        plain=Outcome(
            "APIConnectionError",
            1,
            MARGIN,
            error=APIConnectionError,
            message="before the body ended",
            check=_response_started,
        ),
        stream=None,
    ),
    Fault(
        "stream cut mid-event",
        always(Reply.stream_cut(2, mid_event=True)),
        plain=None,
        stream=Outcome(
            "error chunk", 1, MARGIN, error=APIConnectionError, message="cut", check=_chunks_before_the_error(2)
        ),
    ),
    Fault(
        "stream stalls after 2 events (2 s, past the read timeout)",
        always(Reply.stream_stall(STALL, after=2)),
        plain=None,
        stream=Outcome("error chunk", 1, MARGIN + READ, READ, APITimeoutError, "stalled", _chunks_before_the_error(2)),
    ),
    Fault(
        "malformed event (data that is not JSON)",
        always(Reply.stream_malformed(2)),
        plain=Outcome("MalformedResponseError", 1, MARGIN, error=MalformedResponseError, message="not JSON"),
        stream=Outcome("error chunk", 1, MARGIN, message="malformed event", check=_chunks_before_the_error(2)),
        plain_note="a 200 whose body is not JSON",
    ),
    Fault(
        'error event (`{"object": "error", …}`)',
        always(Reply.stream_error("Model overloaded", after=2)),
        plain=Outcome("MalformedResponseError", 1, MARGIN, error=MalformedResponseError, message="Model overloaded"),
        stream=Outcome(
            "error chunk", 1, MARGIN, message="error event: Model overloaded", check=_chunks_before_the_error(2)
        ),
        plain_note="a 200 whose body is an error object",
    ),
    Fault(
        "no `[DONE]` (the body ends after the last chunk)",
        always(Reply.stream(done=False)),
        plain=None,
        stream=Outcome("error chunk", 1, MARGIN, message="without \\[DONE\\]", check=_chunks_before_the_error(6)),
    ),
    Fault(
        "slow trickle (16 bytes every 10 ms)",
        always(Reply.trickle(chunk_size=16, delay=0.01)),
        plain=Outcome("response", 1, MARGIN + 1.0, 0.1, check=_whole_answer),
        stream=Outcome("stream", 1, MARGIN + 1.5, 0.1, check=_whole_answer),
    ),
)

_PLAIN_SCRIPTS: dict[str, Callable[[], tuple[tuple[Reply, ...], Reply | None]]] = {
    "malformed event (data that is not JSON)": always(
        Reply.raw(b'{"id": "cmpl-1", "choices": [{"index": 0, "mess', content_type="application/json")
    ),
    'error event (`{"object": "error", …}`)': always(
        Reply.json({"object": "error", "message": "Model overloaded", "type": "service_unavailable", "code": "1000"})
    ),
}
"""For rows whose fault only exists in a stream, the plain call meets its nearest plain equivalent."""

CASES = [
    pytest.param(fault, kind, id=f"{kind}: {fault.name}")
    for fault in MATRIX
    for kind in ("plain", "stream")
    if getattr(fault, kind) is not None
]


def _attempts_logged(guard: SecretGuard) -> int:
    return sum(1 for where, text in guard.records if "chatdsl" in where and re.match(r"POST \S+ \(attempt \d+", text))


@pytest.mark.parametrize(("fault", "kind"), CASES)
def test_fault_matrix(
    fault: Fault, kind: str, server: LocalServer, secret_guard: SecretGuard, make_client: ClientDriver
) -> None:
    outcome = getattr(fault, kind)
    assert outcome is not None
    if fault.script is None:
        url = server.url
        server.stop()  # the port now refuses connections
    else:
        url = server.url
        queued, rest = (_PLAIN_SCRIPTS.get(fault.name, fault.script) if kind == "plain" else fault.script)()
        server.enqueue(*queued)
        if rest is not None:
            server.handler = lambda _: rest

    client = make_client(KEY, base_url=url, timeout=TIMEOUT, retry=POLICY)
    raised: BaseException | None = None
    result: Any = None
    stream = None
    start = time.perf_counter()
    try:
        if kind == "plain":
            result = client.chat_completion(REQUEST)
        else:
            with client.chat_completion_stream(REQUEST) as stream:
                result = list(stream)
    except chatdsl.ChatDSLError as exc:
        raised = exc
    elapsed = time.perf_counter() - start
    client.close()

    # the outcome
    if outcome.result in ("response", "stream", "error chunk"):
        assert raised is None, f"raised {raised!r}"
    if outcome.result == "response":
        assert isinstance(result, ChatCompletionResponse)
        assert result.retries_taken == outcome.attempts - 1
    elif outcome.result == "stream":
        assert stream is not None
        assert stream.completed
        assert stream.error is None
        assert stream.retries_taken == outcome.attempts - 1
        assert result[-1].is_last_chunk
        assert all(c.error is None for c in result)
    elif outcome.result == "error chunk":
        assert stream is not None
        assert not stream.completed
        last = result[-1]
        assert last.is_last_chunk
        assert not last.choices
        assert isinstance(last.error, StreamError)
        assert last.error is stream.error
        assert re.search(outcome.message, str(last.error)), str(last.error)
        if outcome.error is None:
            assert last.error.__cause__ is None
        else:
            assert isinstance(last.error.__cause__, outcome.error), repr(last.error.__cause__)
    else:
        assert type(raised).__name__ == outcome.result, f"got {raised!r}"
        assert outcome.error is not None
        assert isinstance(raised, outcome.error)
        assert re.search(outcome.message, str(raised), re.IGNORECASE), str(raised)
        result = raised
    if outcome.check is not None:
        outcome.check(result)

    # the attempts: counted by the server when it listens, and by the client's log in every case
    assert _attempts_logged(secret_guard) == outcome.attempts
    if fault.script is not None:
        assert len(server.requests) == outcome.attempts

    # the time taken
    assert outcome.at_least <= elapsed <= outcome.at_most, f"{elapsed:.3f} s"

    # nothing left open
    if fault.script is not None:
        assert server.wait_idle(2.0), f"{server.open_connections} connections left open"


def test_the_matrix_covers_every_fault_of_the_issue() -> None:
    assert len(MATRIX) == 16
    assert len(CASES) == 28
    assert all(fault.plain or fault.stream for fault in MATRIX)


def markdown() -> str:
    """Return the fault matrix as a Markdown table (for docs/reliability.md, "The fault matrix")."""
    lines = [
        "| fault | plain call | streamed call |",
        "| --- | --- | --- |",
    ]
    for fault in MATRIX:
        plain = "—" if fault.plain is None else fault.plain.describe()
        if fault.plain is not None and fault.plain_note:
            plain = f"{plain}, for {fault.plain_note}"
        stream = "—" if fault.stream is None else fault.stream.describe()
        lines.append(f"| {fault.name} | {plain} | {stream} |")
    return "\n".join(lines)


if __name__ == "__main__":  # print the table: python -m tests.reliability.test_fault_matrix
    print(markdown())
