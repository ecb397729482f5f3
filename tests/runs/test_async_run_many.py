"""What only :meth:`AsyncClient.run_many` has: async iterables, cancellation, a gate that never blocks the loop.

The rules both runs share (order, keys, failures, retries, the 429 pause, pacing) are tested for
both clients in ``test_run_many.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from chatdsl import AsyncClient, RetryPolicy, RunResult, ValidationError, chat
from chatdsl.testing import LocalServer, RecordedRequest, Reply

FAST = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05, jitter=0)


@pytest.fixture
def local() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


@pytest.fixture
async def client(local: LocalServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient("test-key-run", base_url=local.url, retry=FAST, timeout=5) as running:
        yield running


def _number(recorded: RecordedRequest) -> int:
    assert recorded.request is not None
    return int(recorded.request.messages[-1].content[1:])  # type: ignore[index]


def _other_tasks() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_an_async_iterable_is_read_lazily(client: AsyncClient) -> None:
    taken = itertools.count()

    async def endless() -> AsyncIterator[tuple[str, object]]:
        for i in taken:
            await asyncio.sleep(0)
            yield f"k{i}", chat("m").user(f"q{i}")

    results: list[RunResult] = []
    async with contextlib.aclosing(client.run_many(endless(), concurrency=4)) as run:  # type: ignore[arg-type]
        async for result in run:
            results.append(result)
            if len(results) == 10:
                break
    assert [r.key for r in results] == [f"k{i}" for i in range(10)]
    assert all(r.ok and r.attempts == 1 for r in results)
    assert next(taken) <= 10 + 2 * 4 + 1  # at most 2 x concurrency taken ahead of what was handed back
    assert _other_tasks() == set()


async def test_results_are_the_sync_runs_results(client: AsyncClient, local: LocalServer) -> None:
    local.handler = lambda r: Reply.error(400, "bad row") if _number(r) == 1 else None
    items = [(f"k{i}", chat("m").user(f"q{i}")) for i in range(3)]
    results = [result async for result in client.run_many(items, ordered=False)]  # type: ignore[arg-type]
    assert sorted(r.key for r in results) == ["k0", "k1", "k2"]
    [failed] = [r for r in results if not r.ok]
    assert failed.key == "k1"
    assert failed.attempts == 1
    assert failed.record()["error"]["status_code"] == 400
    assert all(isinstance(r, RunResult) for r in results)


async def test_arguments_are_checked_at_the_call(client: AsyncClient) -> None:
    with pytest.raises(ValidationError, match="concurrency: 0 is not"):
        client.run_many([], concurrency=0)
    with pytest.raises(ValidationError, match="tokens_per_minute: 0 is not"):
        client.run_many([], tokens_per_minute=0)


async def test_waiting_for_the_gate_never_blocks_the_event_loop(client: AsyncClient) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    start = time.monotonic()
    items = [chat("m").user(f"q{i}") for i in range(6)]
    results = [r async for r in client.run_many(items, concurrency=6, requests_per_second=10)]
    elapsed = time.monotonic() - start
    ticker.cancel()
    assert all(r.ok for r in results)
    assert elapsed >= 5 / 10 - 0.01  # paced: 6 starts 0.1 s apart
    assert ticks >= elapsed / 0.01 / 3  # the loop kept running other tasks all along


# ------------------------------------------------------------------------------ cancellation

SLOW = 3.0  # items 1+ are answered this late: cancelled long before


async def _run_four(client: AsyncClient, local: LocalServer) -> tuple[list[RunResult], AsyncIterator[RunResult]]:
    """Start a run of 100 items at concurrency 4 (item 0 answered at once) and take its first result."""
    local.handler = lambda r: None if _number(r) == 0 else Reply.delayed(SLOW)
    run = client.run_many((chat("m").user(f"q{i}") for i in range(100)), concurrency=4)
    first = [await anext(run)]
    await asyncio.sleep(0.2)  # items 1-4 are in flight
    assert len(local.requests) == 5
    return first, run


async def _nothing_left(local: LocalServer, start: float) -> None:
    """No task of the run is left, no request of it is open, nothing more is sent."""
    for _ in range(50):  # a cancelled call is done within a few turns of the loop
        if not _other_tasks():
            break
        await asyncio.sleep(0.01)
    assert _other_tasks() == set()
    # every call in flight closed its connection (item 0's, back in the pool, may stay open: idle, reusable)
    for _ in range(100):
        if local.open_connections <= 1:
            break
        await asyncio.sleep(0.01)
    assert local.open_connections <= 1
    sent = len(local.requests)
    await asyncio.sleep(0.2)
    assert len(local.requests) == sent == 5
    assert time.monotonic() - start < SLOW  # not waited out


async def test_aclose_cancels_the_calls_in_flight(client: AsyncClient, local: LocalServer) -> None:
    start = time.monotonic()
    first, run = await _run_four(client, local)
    assert first[0].ok
    await run.aclose()  # type: ignore[attr-defined]
    await _nothing_left(local, start)
    await client.aclose()
    assert await asyncio.to_thread(local.wait_idle, 2.0)


async def test_breaking_out_cancels_the_calls_in_flight(client: AsyncClient, local: LocalServer) -> None:
    """A bare ``break``: the run is closed when the event loop finalizes the iterator (no ``aclosing``)."""
    local.handler = lambda r: None if _number(r) == 0 else Reply.delayed(SLOW)
    start = time.monotonic()
    async for result in client.run_many((chat("m").user(f"q{i}") for i in range(100)), concurrency=4):
        assert result.ok
        await asyncio.sleep(0.2)  # items 1-4 are in flight
        break
    await _nothing_left(local, start)


async def test_cancelling_the_consumer_leaves_no_open_socket(client: AsyncClient, local: LocalServer) -> None:
    local.handler = lambda r: Reply.delayed(SLOW)  # every call in flight when the consumer is cancelled
    got: list[RunResult] = []

    async def consume() -> None:
        async for result in client.run_many((chat("m").user(f"q{i}") for i in range(100)), concurrency=4):
            got.append(result)

    start = time.monotonic()
    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    assert local.open_connections == 4
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert got == []
    assert _other_tasks() == set()  # the run awaited its cancelled calls before the consumer ended
    assert await asyncio.to_thread(local.wait_idle, 1.0), "a cancelled call left its connection open"
    assert not client.closed  # the client goes on
    assert len(local.requests) == 4
    assert time.monotonic() - start < SLOW
    local.handler = None
    assert [r.ok async for r in client.run_many([chat("m").user("q0")])] == [True]
