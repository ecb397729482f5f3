"""Many requests through one :class:`~chatdsl.AsyncClient`, as asyncio tasks: :meth:`AsyncClient.run_many`.

The twin of :mod:`chatdsl.runs.pool` on the same core (:mod:`chatdsl.runs.core`): the same
argument checks, the same shared :class:`~chatdsl.runs.core.RateGate` (asked without blocking: a
task sleeps with ``asyncio.sleep`` what the gate says), the same retry decisions and results
(:class:`~chatdsl.runs.core.ItemRun`). Items (a sync or an async iterable) are taken lazily, at most
``2 * concurrency`` ahead of what was handed back; each gets a task, and at most *concurrency* of
them send or wait to retry at once. Closing the iterator (``aclose()``, ``async with
contextlib.aclosing(...)``, a cancelled consumer, or garbage collection after a ``break``) cancels
every task: the calls in flight close their connections, nothing more is sent, no task outlives it.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import ChatCompletionResponse
from chatdsl.runs.core import AHEAD, ItemRun, RateGate, RunItem, RunResult, start_run, unpack

if TYPE_CHECKING:
    from chatdsl.client.aio import AsyncClient
    from chatdsl.client.config import RetryPolicy

__all__ = ["run_many"]


def run_many(
    client: AsyncClient,
    items: Iterable[RunItem] | AsyncIterable[RunItem],
    *,
    concurrency: int = 8,
    ordered: bool = True,
    max_retries: int | None = None,
    requests_per_second: float | None = None,
    tokens_per_minute: float | None = None,
    follow_rate_limits: bool = True,
) -> AsyncGenerator[RunResult, None]:
    """Send every item's request through *client*, *concurrency* at a time; yield a :class:`RunResult` each.

    See :meth:`AsyncClient.run_many <chatdsl.AsyncClient.run_many>`. Arguments are checked here, at
    the call; the items are read as the results are consumed.
    """
    policy, gate = start_run(
        client,
        concurrency=concurrency,
        max_retries=max_retries,
        requests_per_second=requests_per_second,
        tokens_per_minute=tokens_per_minute,
        follow_rate_limits=follow_rate_limits,
        beyond_the_pool="the requests beyond it wait for a free connection",
    )
    once = client.with_options(max_retries=0)
    run = _Run(once.chat_completion, policy, gate, concurrency)
    return run.results(items, ordered=bool(ordered))


class _Run:
    """One run's gate, policy and slots (how many items are being worked on at once)."""

    def __init__(
        self,
        send: Callable[[ChatCompletionRequest], Awaitable[ChatCompletionResponse]],
        policy: RetryPolicy,
        gate: RateGate,
        concurrency: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send = send
        self.policy = policy
        self.gate = gate
        self.concurrency = concurrency
        self.clock = clock

    async def results(
        self, items: Iterable[RunItem] | AsyncIterable[RunItem], *, ordered: bool
    ) -> AsyncGenerator[RunResult, None]:
        slots = asyncio.Semaphore(self.concurrency)  # made here: inside the loop that runs the tasks
        take = _taker(items)
        ahead = AHEAD * self.concurrency
        tasks: collections.deque[asyncio.Task[RunResult]] = collections.deque()  # in input order
        index = 0
        exhausted = False
        try:
            while True:
                while not exhausted and len(tasks) < ahead:
                    found, item = await take()
                    if not found:
                        exhausted = True
                        break
                    tasks.append(asyncio.create_task(self.one(slots, *unpack(index, item))))
                    index += 1
                if not tasks:
                    return
                if ordered:
                    head = tasks[0]
                    await asyncio.wait((head,))  # not ``await head``: it stays in ``tasks`` until done
                    tasks.popleft()
                    yield head.result()
                    continue
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                done = [task for task in tasks if task.done()]
                for task in done:
                    tasks.remove(task)
                for task in done:  # done tasks, in input order
                    yield task.result()
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                # the cancelled calls close their connections; wait for them, even if this one is cancelled again
                await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))

    async def one(self, slots: asyncio.Semaphore, index: int, key: Any, request: ChatCompletionRequest) -> RunResult:
        """Send one item, retrying as the policy says; never raises but ``CancelledError`` (an error becomes
        the result's)."""
        clock = self.clock
        async with slots:
            item = ItemRun(index, key, request, self.policy, self.gate)
            while True:
                while (wait := item.wait(clock())) > 0:
                    await asyncio.sleep(wait)
                item.sending(clock())
                try:
                    response = await self.send(request)
                except Exception as exc:
                    delay = item.failed(exc, clock())
                    if delay is None:
                        return item.result()
                    await asyncio.sleep(delay)
                    continue
                return item.succeeded(response, clock())


def _taker(items: Iterable[RunItem] | AsyncIterable[RunItem]) -> Callable[[], Awaitable[tuple[bool, Any]]]:
    """Return a coroutine function giving ``(True, item)`` for the next item, ``(False, None)`` at the end."""
    if isinstance(items, AsyncIterable):
        source = aiter(items)

        async def take_async() -> tuple[bool, Any]:
            try:
                return True, await anext(source)
            except StopAsyncIteration:
                return False, None

        return take_async
    iterator = iter(items)

    async def take() -> tuple[bool, Any]:
        try:
            return True, next(iterator)
        except StopIteration:
            return False, None

    return take
