"""chatdsl.AsyncClient: concurrent calls, a streamed answer, async tools, a run of many requests, a timeout, and a
streaming web handler.

Run: python examples/async_client.py   (needs ``pip install 'chatdsl[async]'``)

With ``MISTRAL_API_KEY`` set it asks Mistral; without it, it answers from
``chatdsl.testing.LocalServer`` on 127.0.0.1 (which echoes the question) and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import chatdsl

BASE = chatdsl.chat("mistral-small-latest").system("Answer in one short sentence.")


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[chatdsl.AsyncClient]:
    """A client of Mistral when ``MISTRAL_API_KEY`` is set, else of a LocalServer."""
    if os.environ.get("MISTRAL_API_KEY"):
        async with chatdsl.AsyncClient() as real:
            yield real
        return
    from chatdsl.testing import LocalServer

    print("MISTRAL_API_KEY is not set: answering from chatdsl.testing.LocalServer (offline).\n")
    with LocalServer(chunk_delay=0.01) as server:
        async with chatdsl.AsyncClient(api_key="offline", base_url=server.url) as local:
            yield local


@chatdsl.tool
async def population(city: str) -> int:
    """Look up a city's population.

    Args:
        city: The city's name, in English.
    """
    await asyncio.sleep(0.05)  # a real tool would await a database or a web service here
    return {"Paris": 2_102_650, "Lisbon": 545_796}.get(city, 0)


async def relay(api: chatdsl.AsyncClient, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A streaming web handler (what a FastAPI ``StreamingResponse`` does): the question is the request's
    path, each text delta goes out as a server-sent event. If the visitor leaves, writing fails (a
    framework cancels the handler's task instead): either way leaving ``async with`` closes the call's
    connection to the API at once."""
    question = (await reader.readline()).decode().split(" ")[1].strip("/").replace("-", " ")
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
    async with api.chat_completion_stream(BASE.user(question)) as stream:
        async for chunk in stream:
            if chunk.error is not None:  # a cut stream is reported, never silently truncated
                writer.write(f"event: error\ndata: {chunk.error}\n\n".encode())
            elif chunk.text():
                writer.write(f"data: {chunk.text()}\n\n".encode())
                await writer.drain()
    writer.write(b"data: [DONE]\n\n")
    writer.close()


async def visit(port: int, path: str) -> str:
    """A visitor of :func:`relay`: GET *path*, return the text of the events."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /{path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    body = (await reader.read()).decode()
    writer.close()
    lines = [line[6:] for line in body.split("\r\n\r\n", 1)[1].splitlines() if line.startswith("data: ")]
    return "".join(line for line in lines if line != "[DONE]")


async def main() -> None:
    async with client() as api:
        print("# three questions at once")
        questions = ["Capital of France?", "Capital of Portugal?", "Capital of Japan?"]
        answers = await asyncio.gather(*(api.chat_completion(BASE.user(q)) for q in questions))
        for question, answer in zip(questions, answers, strict=True):
            print(f"{question} -> {answer.text()}  (request id {answer.request_id})")

        print("\n# a streamed answer")
        stream: chatdsl.AsyncChatCompletionStream
        async with api.chat_completion_stream(BASE.user("Describe Lisbon in five words.")) as stream:
            async for chunk in stream:
                print(chunk.text(), end="", flush=True)
            final = await stream.final_response()
        print(f"\n({final.usage.total_tokens if final.usage else '?'} tokens, {stream.request_id=})")

        print("\n# an async tool, run by the tool loop")
        ask = BASE.user("How many people live in Paris?").with_tool_choice("any")
        result = await api.run_tools(ask, [population], max_rounds=3)
        messages = result.request.messages
        calls = [c for m in messages if isinstance(m, chatdsl.AssistantMessage) for c in m.tool_calls or ()]
        print(f"called {[f'{c.name}({c.arguments()})' for c in calls]}; answer: {result.text()}")

        print("\n# many requests, 4 at a time, read lazily from an async generator: run_many")

        async def rows() -> AsyncIterator[tuple[str, chatdsl.ChatCompletionRequest]]:
            for city in ("Paris", "Lisbon", "Tokyo", "Rome", "Oslo"):
                yield city, BASE.user(f"One fact about {city}?")

        # aclosing: leaving the block early (break, an error) cancels the calls still in flight at once
        async with contextlib.aclosing(api.run_many(rows(), concurrency=4, ordered=False)) as results:
            async for done in results:  # as they complete; a failed item is a result with .error set
                text = done.response.text() if done.response is not None else f"failed: {done.error}"
                print(f"{done.key}: {text}  ({done.attempts} attempt(s), {done.latency * 1000:.0f} ms)")

        print("\n# a deadline around a call: asyncio.timeout cancels it and closes its connection")
        try:
            async with asyncio.timeout(0.001):
                await api.chat_completion(BASE.user("Too slow?"))
        except TimeoutError:
            print("timed out after 1 ms; the call's connection was closed")

        print("\n# a streaming web handler relaying the answer as server-sent events")
        server = await asyncio.start_server(lambda r, w: relay(api, r, w), "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            print(await visit(port, "What-is-the-capital-of-Italy?"))


if __name__ == "__main__":
    asyncio.run(main())
