"""``run_many`` over real loopback HTTP: order, laziness, failures, retries, the shared 429 pause, pacing.

Every test runs for :meth:`Client.run_many` and :meth:`AsyncClient.run_many` (the ``make_client``
fixture: the async results are awaited one by one behind a sync facade, ``tests/_clients.py``);
what only the asyncio run has (async iterables, cancellation, the loop never blocked) is in
``test_async_run_many.py``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from chatdsl import (
    BadRequestError,
    ChatDSLError,
    Client,
    InternalServerError,
    Limits,
    RateLimitError,
    RetryPolicy,
    RunResult,
    ValidationError,
    chat,
)
from chatdsl.testing import LocalServer, RecordedRequest, Reply
from tests._clients import ClientDriver

FAST = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05, jitter=0)


@pytest.fixture
def local() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


@pytest.fixture
def client(local: LocalServer, make_client: ClientDriver) -> Iterator[Client]:
    with make_client("test-key-run", base_url=local.url, retry=FAST, timeout=5) as running:
        yield running


def _requests(count: int) -> list[tuple[str, object]]:
    return [(f"k{i}", chat("m").user(f"q{i}")) for i in range(count)]


def _number(recorded: RecordedRequest) -> int:
    assert recorded.request is not None
    return int(recorded.request.messages[-1].content[1:])  # type: ignore[index]


def test_results_come_in_input_order_with_their_keys(client: Client, local: LocalServer) -> None:
    local.handler = lambda r: Reply.delayed(0.002 * (20 - _number(r)))  # later items answer first
    results = list(client.run_many(_requests(20), concurrency=8))  # type: ignore[arg-type]
    assert [r.key for r in results] == [f"k{i}" for i in range(20)]
    assert [r.index for r in results] == list(range(20))
    assert all(isinstance(r, RunResult) and r.ok and r.error is None and r.attempts == 1 for r in results)
    assert [r.request.messages[-1].content for r in results] == [f"q{i}" for i in range(20)]
    assert all(r.latency > 0 for r in results)


def test_bare_requests_are_keyed_by_position(client: Client) -> None:
    results = list(client.run_many([chat("m").user("a"), chat("m").user("b")]))
    assert [(r.key, r.index) for r in results] == [(0, 0), (1, 1)]


def test_unordered_results_come_as_they_complete(client: Client, local: LocalServer) -> None:
    local.handler = lambda r: Reply.delayed(0.3 if _number(r) == 0 else 0.0)
    results = list(client.run_many(_requests(6), concurrency=6, ordered=False))  # type: ignore[arg-type]
    assert sorted(r.key for r in results) == [f"k{i}" for i in range(6)]
    assert results[-1].key == "k0"  # the slow one last


def test_items_are_taken_lazily(client: Client) -> None:
    taken = itertools.count()

    def endless() -> Iterator[object]:
        for i in taken:
            yield chat("m").user(f"q{i}")

    results = list(itertools.islice(client.run_many(endless(), concurrency=4), 10))  # type: ignore[arg-type]
    assert len(results) == 10
    assert next(taken) <= 10 + 2 * 4 + 1  # at most 2 x concurrency taken ahead of what was handed back


def test_one_failure_never_stops_the_run(client: Client, local: LocalServer) -> None:
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def handler(r: RecordedRequest) -> Reply | None:
        n = _number(r)
        with lock:
            seen[n] = seen.get(n, 0) + 1
            tries = seen[n]
        if n % 5 == 1:
            return Reply.error(400, "bad row")
        if n % 5 == 2 and tries == 1:
            return Reply.error(503)  # retried, then fine
        if n % 5 == 3:
            return Reply.error(500)  # retried until the policy gives up
        if n % 5 == 4 and tries == 1:
            return Reply.drop()  # a transport failure, retried
        return None

    local.handler = handler
    results = list(client.run_many(_requests(20), concurrency=5))  # type: ignore[arg-type]
    assert len(results) == 20
    for result in results:
        n = result.index
        if n % 5 == 1:
            assert isinstance(result.error, BadRequestError)
            assert result.attempts == 1
        elif n % 5 == 3:
            assert isinstance(result.error, InternalServerError)
            assert result.attempts == 3  # 1 + max_retries
        else:
            assert result.ok, result.error
            assert result.attempts == (2 if n % 5 in (2, 4) else 1)
    assert results[3].record()["error"]["status_code"] == 500
    assert results[0].record()["response"]["object"] == "chat.completion"


def test_a_429_pauses_the_whole_run(client: Client, local: LocalServer) -> None:
    """A 429 storm: during the server's Retry-After window no worker sends anything.

    Items 0-6 are held by the server; item 7 is answered at once, so item 8 goes out next, and once
    items 0-6 have all arrived it gets a 429 (Retry-After 0.6 s); anything else arriving in those
    0.6 s would get one too. Items 0-6 are then answered 0.25 s into the window: their workers, free
    again, must wait for the window to end, though they never got a 429 themselves. Which item meets
    the 429 is fixed by its number, not by the order the workers happen to send in.
    """
    lock = threading.Lock()
    arrivals: list[float] = []
    limited_at: list[float] = []
    all_held, storm = threading.Event(), threading.Event()
    held: set[int] = set()

    def handler(r: RecordedRequest) -> Reply | None:
        n = _number(r)
        with lock:
            arrivals.append(time.monotonic())
            first = n not in held and not (n == 8 and storm.is_set())
            if n < 7 and first:
                held.add(n)
                if len(held) == 7:
                    all_held.set()
        if n == 8 and first:
            assert all_held.wait(5), "items 0-6 never arrived"
            with lock:
                limited_at.append(time.monotonic())
            storm.set()
            return Reply.error(429, "slow down", retry_after=0.6)
        with lock:
            limited = bool(limited_at) and time.monotonic() < limited_at[0] + 0.6
        if limited:
            return Reply.error(429, "slow down", retry_after=0.6)
        if n < 7:
            assert storm.wait(5), "item 8 was never sent"
            return Reply.delayed(max(0.0, limited_at[0] + 0.25 - time.monotonic()))
        return None

    local.handler = handler
    results = list(client.run_many(_requests(30), concurrency=8))  # type: ignore[arg-type]
    assert all(r.ok for r in results), [r.error for r in results if r.error]
    assert [r.attempts for r in results] == [2 if r.index == 8 else 1 for r in results]  # one 429, no other
    start = limited_at[0]
    after = sorted(arrivals)[9:]  # items 0-8 arrived before the 429 went out; 22 items and item 8's retry after it
    assert len(after) == 22
    assert [round(t - start, 3) for t in after if t < start + 0.55] == []  # not even the workers freed 0.25 s in


def test_rate_limit_headers_keep_the_run_under_the_limit(local: LocalServer, make_client: ClientDriver) -> None:
    """A server allowing 6 requests per 0.4 s window: paced by its headers, the run hardly meets a 429."""
    lock = threading.Lock()
    window = {"start": 0.0, "used": 0}
    limited: list[float] = []

    def handler(r: RecordedRequest) -> Reply | None:
        now = time.monotonic()
        with lock:
            if now - window["start"] >= 0.4:
                window.update(start=now, used=0)
            window["used"] += 1
            left = 6 - window["used"]
            reset = f"{0.4 - (now - window['start']):.3f}"
        headers = {"x-ratelimit-remaining-req-minute": str(max(left, 0)), "x-ratelimit-reset-req-minute": reset}
        if left < 0:
            limited.append(now)
            return Reply.error(429, retry_after=reset, headers=headers)
        return Reply.default(headers=headers)

    local.handler = handler
    patient = RetryPolicy(max_retries=10, initial_delay=0.05, jitter=0)
    with make_client("k", base_url=local.url, retry=patient) as client:
        results = list(client.run_many(_requests(24), concurrency=6))  # type: ignore[arg-type]
        assert all(r.ok for r in results)
        paced = len(limited)
        limited.clear()
        window.update(start=0.0, used=0)
        blind = list(client.run_many(_requests(24), concurrency=6, follow_rate_limits=False))  # type: ignore[arg-type]
        assert all(r.ok for r in blind)
    assert paced <= 6  # the first burst, before any header came back
    assert paced < len(limited)


def test_requests_per_second_limits_the_pace(client: Client) -> None:
    start = time.monotonic()
    results = list(client.run_many(_requests(6), concurrency=6, requests_per_second=20))  # type: ignore[arg-type]
    assert all(r.ok for r in results)
    assert time.monotonic() - start >= 5 / 20 - 0.01


def test_closing_the_iterator_stops_sending(client: Client, local: LocalServer) -> None:
    local.handler = lambda r: Reply.delayed(0.05)
    results = client.run_many((chat("m").user(f"q{i}") for i in range(1000)), concurrency=4)
    next(results)
    results.close()
    time.sleep(0.2)
    count = len(local.requests)
    time.sleep(0.2)
    assert count == len(local.requests) <= 1 + 2 * 4
    workers = [t for t in threading.enumerate() if t.name.startswith("chatdsl-run-")]
    assert all(t.daemon for t in workers)  # a request in flight never holds the program at exit


def test_arguments_are_checked_at_once(client: Client) -> None:
    with pytest.raises(ValidationError, match="concurrency: 0 is not"):
        client.run_many([], concurrency=0)
    with pytest.raises(ValidationError, match="requests_per_second: -1 is not"):
        client.run_many([], requests_per_second=-1)
    with pytest.raises(TypeError, match="item 1 of run_many is str"):
        list(client.run_many([chat("m").user("a"), "nope"]))  # type: ignore[list-item]


def test_an_invalid_request_is_an_error_result_never_sent(client: Client, local: LocalServer) -> None:
    [result] = list(client.run_many([chat("m")]))  # no message: refused before sending
    assert isinstance(result.error, ValidationError)
    assert result.attempts == 0
    assert local.requests == []


def test_a_closed_client_gives_error_results(local: LocalServer, make_client: ClientDriver) -> None:
    client = make_client("k", base_url=local.url)
    client.close()
    [result] = list(client.run_many([chat("m").user("x")]))
    assert isinstance(result.error, ChatDSLError)


def test_429_without_retry_after_uses_the_backoff(client: Client, local: LocalServer) -> None:
    calls = itertools.count()
    local.handler = lambda r: Reply.error(429) if next(calls) == 0 else None
    [result] = list(client.run_many([chat("m").user("x")]))
    assert result.ok
    assert result.attempts == 2
    assert isinstance(RateLimitError, type)


def test_a_concurrency_above_the_connection_pool_is_warned_about(
    local: LocalServer, make_client: ClientDriver, caplog: pytest.LogCaptureFixture
) -> None:
    with make_client("k", base_url=local.url, limits=Limits(pool_maxsize=2)) as client:
        assert len(list(client.run_many(_requests(4), concurrency=4))) == 4  # type: ignore[arg-type]
    assert "run_many(concurrency=4) is above the client's pool_maxsize=2" in caplog.text
    caplog.clear()
    with make_client("k", base_url=local.url, limits=Limits(pool_maxsize=4)) as client:
        assert len(list(client.run_many(_requests(4), concurrency=4))) == 4  # type: ignore[arg-type]
    assert "pool_maxsize" not in caplog.text
