"""Either client behind one small driver, so a test written for :class:`chatdsl.Client` runs for both.

``make_client`` (the fixture in ``tests/conftest.py``, parametrised ``sync``/``async``) is called like
``Client(...)``. For ``async`` it makes a :class:`chatdsl.AsyncClient` and hands back a thin facade
that runs each call on one event loop (an ``asyncio.Runner`` kept for the test): ``chat_completion``,
``run_tools`` and ``close`` await the client's coroutines; ``run_many`` returns a generator that
awaits the async iterator's ``__anext__`` for each result (and its ``aclose()`` when it is closed);
``chat_completion_stream`` opens the
stream at once (errors before the headers raise there, as with the sync client) and returns a stream
facade whose ``next()`` awaits ``__anext__``. Everything else (``closed``, ``error``, ``completed``,
``retries_taken``, ``repr`` …) is the real object's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import chatdsl


class SyncedStream:
    """An :class:`chatdsl.AsyncChatCompletionStream` driven from sync code."""

    def __init__(self, stream: chatdsl.AsyncChatCompletionStream, runner: asyncio.Runner) -> None:
        self.stream = stream
        self._runner = runner

    def __iter__(self) -> Iterator[chatdsl.CompletionChunk]:
        return self

    def __next__(self) -> chatdsl.CompletionChunk:
        try:
            return self._runner.run(self.stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def __enter__(self) -> SyncedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self.stream.aclose())

    def final_response(self, **kwargs: Any) -> chatdsl.ChatCompletionResponse:
        return self._runner.run(self.stream.final_response(**kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __repr__(self) -> str:
        return repr(self.stream)


class SyncedClient:
    """An :class:`chatdsl.AsyncClient` driven from sync code (see the module docstring)."""

    def __init__(self, client: chatdsl.AsyncClient, runner: asyncio.Runner) -> None:
        self.client = client
        self._runner = runner

    def chat_completion(self, request: chatdsl.ChatCompletionRequest, **kwargs: Any) -> chatdsl.ChatCompletionResponse:
        return self._runner.run(self.client.chat_completion(request, **kwargs))

    def chat_completion_stream(self, request: chatdsl.ChatCompletionRequest, **kwargs: Any) -> SyncedStream:
        opener = self.client.chat_completion_stream(request, **kwargs)

        async def start() -> chatdsl.AsyncChatCompletionStream:
            return await opener

        return SyncedStream(self._runner.run(start()), self._runner)

    def run_tools(self, request: chatdsl.ChatCompletionRequest, tools: Any, **kwargs: Any) -> chatdsl.ToolRunResult:
        return self._runner.run(self.client.run_tools(request, tools, **kwargs))

    def run_many(self, items: Any, **kwargs: Any) -> Iterator[chatdsl.RunResult]:
        results = self.client.run_many(items, **kwargs)  # arguments are checked here, as with the sync client

        async def step() -> chatdsl.RunResult:
            return await anext(results)

        async def close() -> None:
            await results.aclose()

        def drive() -> Iterator[chatdsl.RunResult]:
            try:
                while True:
                    try:
                        yield self._runner.run(step())
                    except StopAsyncIteration:
                        return
            finally:
                self._runner.run(close())

        return drive()

    def with_options(self, **kwargs: Any) -> SyncedClient:
        return SyncedClient(self.client.with_options(**kwargs), self._runner)

    def close(self) -> None:
        self._runner.run(self.client.aclose())

    def __enter__(self) -> SyncedClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def __repr__(self) -> str:
        return repr(self.client)


class ClientDriver:
    """Makes clients of one kind: ``driver(api_key, base_url=..., ...)`` as ``Client(...)`` is called."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._runner: asyncio.Runner | None = None
        self._made: list[chatdsl.AsyncClient] = []

    @property
    def transport_error(self) -> type[BaseException]:
        """The base class of the transport's connection errors (what an ``APIConnectionError`` is chained to)."""
        if self.kind == "sync":
            import requests

            return requests.ConnectionError
        import aiohttp

        return aiohttp.ClientConnectionError

    @property
    def runner(self) -> asyncio.Runner:
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.kind == "sync":
            return chatdsl.Client(*args, **kwargs)
        client = chatdsl.AsyncClient(*args, **kwargs)
        self._made.append(client)
        return SyncedClient(client, self.runner)

    def close(self) -> None:
        """Close every client made (a test that raised may have left one open), then the event loop."""
        if self._runner is None:
            return
        for client in self._made:
            self._runner.run(client.aclose())
        self._runner.close()
