"""chatdsl benchmark suite: chatdsl beside the hand-written floor and (when installed) ``mistralai``.

Run from the repository root (not part of the default test run)::

    python tests/benchmarks/bench.py            # full run, prints a Markdown table
    python tests/benchmarks/bench.py --quick    # fewer rounds, for a smoke check
    python tests/benchmarks/bench.py --async-only   # AsyncClient beside Client (needs chatdsl[async])

Every figure is a median over interleaved rounds (floor, chatdsl, mistralai, floor, ...) in one
process, so the machine's drift affects all columns alike; ratios are to the floor of the same row.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import chatdsl
from chatdsl import FunctionCall, Tool, ToolCall

# --------------------------------------------------------------------------------------- data

MODEL = "mistral-large-latest"
SYSTEM = (
    "You are a helpful weather assistant. Use the tools to look things up, then answer with the JSON "
    "schema given. Be precise and brief; never invent data."
)
ARGUMENTS = '{"city": "Paris", "unit": "celsius", "options": {"days": 3}}'
TOOL_RESULT = '{"temp": 21.5, "wind": 12, "rain": 0.1, "uv": 5}'


def _parameters() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
            "options": {
                "type": "object",
                "properties": {
                    "days": {"type": "integer", "minimum": 1, "maximum": 14},
                    "hourly": {"type": "boolean"},
                    "fields": {"type": "array", "items": {"type": "string", "enum": ["temp", "wind", "rain", "uv"]}},
                },
                "required": ["days"],
                "additionalProperties": False,
            },
        },
        "required": ["city", "unit", "options"],
        "additionalProperties": False,
    }


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"weather_{i}",
            "description": "Look up the current weather and forecast for a city, with options.",
            "parameters": _parameters(),
            "strict": True,
        },
    }
    for i in range(3)
]
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "temperature": {"type": "number"},
        "advice": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["summary", "temperature", "advice"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True}}
PARAMS = {
    "temperature": 0.3,
    "top_p": 0.9,
    "max_tokens": 512,
    "random_seed": 42,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.2,
}
QUESTION = "What is the weather in Paris for the next three days, and should I take an umbrella?"


def floor_build(question: str) -> str:
    """The floor: a literal dict sharing the template's parts, and ``json.dumps``."""
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather_0", "arguments": ARGUMENTS}}
                ],
            },
            {"role": "tool", "content": TOOL_RESULT, "tool_call_id": "call_1", "name": "weather_0"},
        ],
        "tools": TOOLS,
        "response_format": RESPONSE_FORMAT,
        "tool_choice": "auto",
        **PARAMS,
    }
    return json.dumps(body)


TEMPLATE = (
    chatdsl.chat(MODEL)
    .system(SYSTEM)
    .with_tools(
        [
            Tool.of(
                t["function"]["name"],
                t["function"]["parameters"],
                description=t["function"]["description"],
                strict=True,
            )
            for t in TOOLS
        ]
    )
    .with_json_schema(ANSWER_SCHEMA, name="answer", strict=True)
    .with_temperature(0.3)
    .with_top_p(0.9)
    .with_max_tokens(512)
    .with_random_seed(42)
    .with_presence_penalty(0.1)
    .with_frequency_penalty(0.2)
)


def chatdsl_build(question: str) -> str:
    """chatdsl: derive from the shared template with the builder, then serialize."""
    return (
        TEMPLATE.user(question)
        .assistant(tool_calls=[ToolCall(id="call_1", function=FunctionCall(name="weather_0", arguments=ARGUMENTS))])
        .tool(TOOL_RESULT, tool_call_id="call_1", name="weather_0")
        .to_json()
    )


def _answer_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "temperature": {"type": "number"},
            "advice": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["summary", "temperature", "advice"],
        "additionalProperties": False,
    }


def floor_cold_build(
    question: str,
    schemas: Callable[[], dict[str, Any]] = _parameters,
    answer: Callable[[], dict[str, Any]] = _answer_schema,
) -> str:
    """The cold floor: every dict built in the call (tools with their schemas, the format), then ``json.dumps``."""
    body = {
        "model": MODEL,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": f"weather_{i}",
                    "description": "Look up the current weather and forecast for a city, with options.",
                    "parameters": schemas(),
                    "strict": True,
                },
            }
            for i in range(3)
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": answer(), "strict": True},
        },
        "tool_choice": "auto",
        **PARAMS,
    }
    return json.dumps(body)


def chatdsl_cold_build(
    question: str,
    schemas: Callable[[], dict[str, Any]] = _parameters,
    answer: Callable[[], dict[str, Any]] = _answer_schema,
) -> str:
    """chatdsl, nothing shared: three tools with their schemas, a response format, 11 builder steps, ``to_json``."""
    tools = [
        Tool.of(
            f"weather_{i}",
            schemas(),
            description="Look up the current weather and forecast for a city, with options.",
            strict=True,
        )
        for i in range(3)
    ]
    return (
        chatdsl.chat(MODEL)
        .system(SYSTEM)
        .with_tools(tools)
        .with_json_schema(answer(), name="answer", strict=True)
        .with_temperature(0.3)
        .with_top_p(0.9)
        .with_max_tokens(512)
        .with_random_seed(42)
        .with_presence_penalty(0.1)
        .with_frequency_penalty(0.2)
        .user(question)
        .to_json()
    )


_CALLS = itertools.count()


def _new_parameters() -> dict[str, Any]:
    """The tools' schema with a description never seen before (chatdsl shares one frozen copy of equal schemas)."""
    return {**_parameters(), "description": f"call {next(_CALLS)}"}


def _new_answer_schema() -> dict[str, Any]:
    return {**_answer_schema(), "description": f"call {next(_CALLS)}"}


def _mistralai_build() -> Callable[[str], Any] | None:
    try:
        from mistralai.client import models, utils
    except ImportError:
        return None

    def build(question: str) -> Any:
        # The SDK's own request path (chat.complete): pydantic models from the same dicts, then its serializer.
        request = models.ChatCompletionRequest(
            model=MODEL,
            messages=utils.get_pydantic_model(
                [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "weather_0", "arguments": ARGUMENTS},
                            }
                        ],
                    },
                    {"role": "tool", "content": TOOL_RESULT, "tool_call_id": "call_1", "name": "weather_0"},
                ],
                list[models.ChatCompletionRequestMessage],
            ),
            tools=utils.get_pydantic_model(TOOLS, list[models.ChatCompletionRequestTool]),
            response_format=utils.get_pydantic_model(RESPONSE_FORMAT, models.ResponseFormat),
            tool_choice=utils.get_pydantic_model("auto", models.ChatCompletionRequestToolChoice),
            **PARAMS,
        )
        return utils.serialize_request_body(request, False, False, "json", models.ChatCompletionRequest).content

    return build


RESPONSE_TEXT = json.dumps(
    {
        "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
        "object": "chat.completion",
        "model": "mistral-large-latest",
        "created": 1702256327,
        "usage": {"prompt_tokens": 412, "completion_tokens": 96, "total_tokens": 508},
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Let me look that up for you: Paris, three days, with hourly detail and rain.",
                    "tool_calls": [
                        {
                            "id": f"call_{i}",
                            "type": "function",
                            "index": i,
                            "function": {"name": f"weather_{i}", "arguments": ARGUMENTS},
                        }
                        for i in range(3)
                    ],
                },
            },
            {
                "index": 1,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": '{"summary": "Mild and mostly dry", "temperature": 21.5, "advice": '
                    '["Take a light jacket", "No umbrella needed", "Sunscreen at noon"]}',
                },
            },
        ],
    }
)


def _mistralai_parse() -> Callable[[str], Any] | None:
    try:
        from mistralai.client import models, utils
    except ImportError:
        return None
    return lambda text: utils.unmarshal_json(text, models.ChatCompletionResponse)


def _stream_bytes(events: int) -> bytes:
    words = ("The", " weather", " in", " Paris", " is", " mild", ",", " with", " light", " wind", ".")
    parts = []
    for i in range(events):
        delta: dict[str, Any] = {"content": words[i % len(words)]}
        if i == 0:
            delta["role"] = "assistant"
        chunk: dict[str, Any] = {
            "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
            "object": "chat.completion.chunk",
            "created": 1702256327,
            "model": "mistral-large-latest",
            "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if i == events - 1 else None}],
        }
        if i == events - 1:
            chunk["usage"] = {"prompt_tokens": 12, "completion_tokens": events, "total_tokens": 12 + events}
        parts.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


STREAM_EVENTS = 2000
STREAM = _stream_bytes(STREAM_EVENTS)
READ_SIZE = 8192  # what a socket read hands over at a time


def _reads(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), READ_SIZE):
        yield data[start : start + READ_SIZE]


def floor_stream(data: bytes) -> int:
    """The floor: split the whole body on blank lines and ``json.loads`` each ``data:`` payload."""
    count = 0
    for block in data.split(b"\n\n"):
        if block.startswith(b"data: ") and block != b"data: [DONE]":
            json.loads(block[6:])
            count += 1
    return count


def _memory_session(data: bytes, content_type: str = "text/event-stream") -> Any:
    """A ``requests`` session whose adapter answers every call with *data* (no socket, socket-sized reads)."""
    import io

    import requests
    import urllib3
    from requests.adapters import BaseAdapter

    class Answer(BaseAdapter):
        def send(self, request: Any, **kwargs: Any) -> requests.Response:
            raw = urllib3.HTTPResponse(
                body=_ChunkedReader(data),
                headers={"Content-Type": content_type, "Content-Length": str(len(data))},
                status=200,
                preload_content=False,
                decode_content=False,
            )
            response = requests.Response()
            response.status_code = 200
            response.headers["Content-Type"] = content_type
            response.headers["Content-Length"] = str(len(data))
            response.headers["mistral-correlation-id"] = "bench"
            response.raw = raw
            response.request = request
            response.url = request.url
            return response

        def close(self) -> None:
            pass

    class _ChunkedReader(io.RawIOBase):
        """Hands the body over in socket-sized reads, as a real connection would."""

        def __init__(self, body: bytes) -> None:
            self._body = memoryview(body)
            self._pos = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            size = min(len(buffer), READ_SIZE, len(self._body) - self._pos)
            buffer[:size] = self._body[self._pos : self._pos + size]
            self._pos += size
            return size

        def read1(self, size: int = -1) -> bytes:
            size = READ_SIZE if size < 0 else min(size, READ_SIZE)
            chunk = bytes(self._body[self._pos : self._pos + size])
            self._pos += len(chunk)
            return chunk

    session = requests.Session()
    session.mount("https://", Answer())
    return session


_STREAM_CLIENT: Any = None


def chatdsl_stream(data: bytes) -> int:
    """chatdsl: the client's real streaming path (SSE decoder, chunks, latencies, merging) over in-memory reads."""
    global _STREAM_CLIENT
    if _STREAM_CLIENT is None:
        _STREAM_CLIENT = chatdsl.Client(api_key="bench-key", session=_memory_session(data), max_retries=0)
    count = 0
    with _STREAM_CLIENT.chat_completion_stream(TEMPLATE.user(QUESTION)) as stream:
        for chunk in stream:
            if chunk.error is not None:
                raise chunk.error
            if chunk.choices:
                count += 1
    return count


def _mistralai_stream() -> Callable[[bytes], int] | None:
    try:
        import httpx2 as httpx
        from mistralai.client import models
        from mistralai.client.utils import eventstreaming
        from mistralai.client.utils.unmarshal_json_response import unmarshal_json_response
    except ImportError:
        return None

    def parse(data: bytes) -> int:
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_reads(data))
        stream = eventstreaming.EventStream(
            response,
            lambda raw: unmarshal_json_response(models.CompletionEvent, response, raw),
            sentinel="[DONE]",
        )
        return sum(1 for _ in stream)

    return parse


# ---------------------------------------------------------------------------------- harness


def interleaved(candidates: dict[str, Callable[[], Any]], *, rounds: int, target: float = 0.02) -> dict[str, float]:
    """Return the median seconds per call of each candidate, timed in interleaved rounds."""
    numbers = {}
    for name, fn in candidates.items():
        fn()  # warm up
        start = time.perf_counter()
        calls = 0
        while time.perf_counter() - start < target / 4:
            fn()
            calls += 1
        numbers[name] = max(1, int(calls * 4 * target / max(time.perf_counter() - start, 1e-9) / 4))
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            n = numbers[name]
            gc.disable()
            start = time.perf_counter()
            for _ in range(n):
                fn()
            elapsed = time.perf_counter() - start
            gc.enable()
            samples[name].append(elapsed / n)
    return {name: statistics.median(values) for name, values in samples.items()}


def _import_time(statement: str, runs: int) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def _compile_chatdsl() -> None:
    """Write chatdsl's bytecode, as installing a wheel does (``requests``, ``attrs``, ``cattrs`` have theirs).

    With ``PYTHONDONTWRITEBYTECODE`` set, or a source checkout, chatdsl would otherwise be compiled
    from source on every import while the packages it is compared with are not.
    """
    import compileall

    compileall.compile_dir(os.path.dirname(chatdsl.__file__), quiet=1)


def import_times(runs: int, chatdsl_statement: str = "import chatdsl") -> dict[str, float]:
    """Median import time of each statement, measured in fresh interpreters, interleaved."""
    _compile_chatdsl()
    statements = {"floor": "import requests, attrs, cattrs", "chatdsl": chatdsl_statement}
    try:
        import importlib.util

        if importlib.util.find_spec("mistralai") is not None:
            statements["mistralai"] = "import mistralai.client"
    except ImportError:
        pass
    samples: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(runs):
        for name, statement in statements.items():
            samples[name].append(_import_time(statement, runs))
    return {name: statistics.median(values) for name, values in samples.items()}


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys, tracemalloc, json
    sys.path.insert(0, {path!r})
    kind = sys.argv[1]
    texts = [f"question number {{i}}" for i in range(10_000)]
    import bench
    if kind == "floor":
        base = json.loads(bench.floor_build("x"))
        base["messages"] = base["messages"][:1]
        make = lambda t: {{**base, "messages": [*base["messages"], {{"role": "user", "content": t}}]}}
    elif kind == "chatdsl":
        base = bench.TEMPLATE
        make = lambda t: base.user(t)
    else:
        from mistralai.client import models
        base = models.ChatCompletionRequest(model=bench.MODEL, messages=[{{"role": "system", "content": bench.SYSTEM}}],
                                            tools=bench.TOOLS, response_format=bench.RESPONSE_FORMAT, **bench.PARAMS)
        make = lambda t: base.model_copy(update={{"messages": [*base.messages, models.UserMessage(content=t)]}})
    make("warm up")
    kept = [None] * len(texts)  # the list that holds them is not part of what is measured
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, t in enumerate(texts):
        kept[i] = make(t)
    after = tracemalloc.get_traced_memory()[0]
    print((after - before) / len(kept))
    """
)


def memory_per_request(kind: str) -> float:
    """Bytes per derived request (10,000 requests from one template, +1 user message each)."""
    script = _MEMORY_SCRIPT.format(path=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", script, kind], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def client_round_trip() -> dict[str, Callable[[], Any]]:
    """A full call through ``requests`` with an in-memory adapter answering (no socket), both sides alike."""
    session = _memory_session(RESPONSE_TEXT.encode(), "application/json")
    url = "https://api.mistral.ai/v1/chat/completions"
    headers = {"Authorization": "Bearer bench-key", "Content-Type": "application/json", "Accept": "application/json"}
    derived = TEMPLATE.user(QUESTION)
    body = derived.to_dict()

    def floor() -> Any:
        return session.post(url, data=json.dumps(body), headers=headers, timeout=(5, 60)).json()

    client = chatdsl.Client(api_key="bench-key", session=session, max_retries=0)

    def dsl() -> Any:
        return client.chat_completion(derived)

    return {"floor": floor, "chatdsl": dsl}


def streaming_latency(events: int = 50, pause: float = 0.01) -> list[float]:
    """Seconds from an event's bytes being written to the loopback socket to the caller receiving it.

    A minimal server thread (same process, same clock) writes each event with ``sendall`` and
    stamps it with ``time.perf_counter()`` just before; it pauses between events, so every event
    is measured on its own, not behind the next one.
    """
    import socket

    stamps: list[float] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            while len(body) < length:
                body += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            for i in range(events):
                chunk = {
                    "id": "s",
                    "object": "chat.completion.chunk",
                    "created": 1702256327,
                    "model": "m",
                    "choices": [{"index": 0, "delta": {"content": str(i)}, "finish_reason": None}],
                }
                payload = b"data: " + json.dumps(chunk).encode() + b"\n\n"
                time.sleep(pause)
                stamps.append(time.perf_counter())
                conn.sendall(payload)
            conn.sendall(b"data: [DONE]\n\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    latencies: list[float] = []
    client = chatdsl.Client(api_key="bench", base_url=f"http://127.0.0.1:{port}", max_retries=0)
    with client.chat_completion_stream(chatdsl.chat("m").user("x")) as stream:
        for chunk in stream:
            now = time.perf_counter()
            if chunk.error is not None:
                raise chunk.error
            if chunk.choices:
                latencies.append(now - stamps[int(chunk.text())])
    thread.join(timeout=5)
    listener.close()
    return latencies


# ------------------------------------------------------------------------------------ the async client


def _stream_server(data: bytes) -> tuple[str, Callable[[], None]]:
    """A loopback server answering every request on a kept-alive connection with *data* as an event stream.

    The whole answer goes out in one ``sendall`` (the kernel hands it over in socket-sized reads), so
    the server costs next to nothing and what is timed is the client reading and parsing.
    """
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nmistral-correlation-id: bench\r\n"
        b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n"
    )

    def connection(conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    buffered += piece
                request_head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in request_head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(buffered) < length:
                    buffered += conn.recv(65536)
                buffered = buffered[length:]
                conn.sendall(head + data)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=connection, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", listener.close


def _count_chunks(chunks: Any) -> int:
    count = 0
    for chunk in chunks:
        if chunk.error is not None:
            raise chunk.error
        if chunk.choices:
            count += 1
    return count


def async_stream_parse(rounds: int) -> dict[str, float]:
    """Seconds per event for each client reading the same 2,000-event stream over loopback (one connection reused)."""
    import asyncio

    url, stop = _stream_server(STREAM)
    request = TEMPLATE.user(QUESTION)
    sync_client = chatdsl.Client(api_key="bench-key", base_url=url, max_retries=0)
    runner = asyncio.Runner()
    async_client = chatdsl.AsyncClient(api_key="bench-key", base_url=url, max_retries=0)

    def sync_stream() -> int:
        with sync_client.chat_completion_stream(request) as stream:
            return _count_chunks(stream)

    async def read() -> int:
        count = 0
        async with async_client.chat_completion_stream(request) as stream:
            async for chunk in stream:
                if chunk.error is not None:
                    raise chunk.error
                if chunk.choices:
                    count += 1
        return count

    def async_stream() -> int:
        return runner.run(read())

    try:
        assert sync_stream() == async_stream() == STREAM_EVENTS
        times = interleaved({"Client": sync_stream, "AsyncClient": async_stream}, rounds=rounds)
    finally:
        sync_client.close()
        runner.run(async_client.aclose())
        runner.close()
        stop()
    return {name: seconds / STREAM_EVENTS for name, seconds in times.items()}


_LOCAL_SERVER_SCRIPT = (
    "import sys, time\n"
    "from chatdsl.testing import LocalServer\n"
    "server = LocalServer(max_connections=256, max_recorded=0).start()\n"
    "print(server.url, flush=True)\n"
    "sys.stdin.read()\n"
)


def requests_per_second(total: int = 2000, in_flight: int = 64) -> dict[str, float]:
    """Plain calls per second to a LocalServer (in its own process) with *in_flight* calls at once:
    the sync Client from that many threads, the AsyncClient from that many tasks on one event loop."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    server = subprocess.Popen(
        [sys.executable, "-c", _LOCAL_SERVER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    assert server.stdin is not None
    url = server.stdout.readline().strip()
    request = chatdsl.chat("m").user("How fast?")
    limits = chatdsl.Limits(pool_maxsize=in_flight)
    results: dict[str, float] = {}
    try:
        with chatdsl.Client(api_key="bench-key", base_url=url, limits=limits, max_retries=0) as client:
            with ThreadPoolExecutor(in_flight) as pool:
                list(pool.map(lambda _: client.chat_completion(request), range(in_flight)))  # connect
                start = time.perf_counter()
                answers = list(pool.map(lambda _: client.chat_completion(request), range(total)))
                results["Client"] = total / (time.perf_counter() - start)
            assert all(answer.text() == "echo: How fast?" for answer in answers)

        async def run() -> float:
            async with chatdsl.AsyncClient(api_key="bench-key", base_url=url, limits=limits, max_retries=0) as client:
                await asyncio.gather(*(client.chat_completion(request) for _ in range(in_flight)))  # connect
                left = iter(range(total))
                answers: list[chatdsl.ChatCompletionResponse] = []

                async def worker() -> None:
                    for _ in left:
                        answers.append(await client.chat_completion(request))

                start = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(in_flight)))
                elapsed = time.perf_counter() - start
            assert len(answers) == total
            assert all(answer.text() == "echo: How fast?" for answer in answers)
            return total / elapsed

        results["AsyncClient"] = asyncio.run(run())
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    return results


def async_report(rounds: int, import_runs: int) -> None:
    """Print the async client's figures beside the sync client's."""
    parse = async_stream_parse(max(5, rounds // 3))
    rates = requests_per_second()
    imports = import_times(import_runs)
    with_async = import_times(import_runs, "import chatdsl; chatdsl.AsyncClient")
    print()
    print("| async client | AsyncClient / Client | Client | AsyncClient |")
    print("|---|---|---|---|")
    print(
        f"| parse a {STREAM_EVENTS:,}-event SSE stream over loopback (per event) | "
        f"{parse['AsyncClient'] / parse['Client']:.2f}× | {_fmt_time(parse['Client'])} | "
        f"{_fmt_time(parse['AsyncClient'])} |"
    )
    print(
        f"| plain calls per second, 64 in flight, LocalServer | {rates['AsyncClient'] / rates['Client']:.2f}× | "
        f"{rates['Client']:.0f}/s | {rates['AsyncClient']:.0f}/s |"
    )
    print(
        f"| `import chatdsl` (aiohttp not imported) / then `chatdsl.AsyncClient` | – | "
        f"{_fmt_time(imports['chatdsl'])} | {_fmt_time(with_async['chatdsl'])} |"
    )


# ------------------------------------------------------------------------------------ runs

BATCH_USER = "Ticket $id from $customer (plan $plan): $text"


def _batch_rows(count: int) -> Iterator[dict[str, str]]:
    for i in range(count):
        yield {"id": f"r{i}", "customer": f"customer {i}", "plan": "pro", "text": f"My order {i} never arrived."}


def floor_batch_file(count: int, sink: Callable[[bytes], Any]) -> None:
    """The floor: ``string.Template`` + a dict sharing the template's parts + ``json.dumps``, one line per row."""
    import string

    user = string.Template(BATCH_USER)
    base = json.loads(TEMPLATE.to_json())
    for row in _batch_rows(count):
        body = {**base, "messages": [*base["messages"], {"role": "user", "content": user.substitute(row)}]}
        sink((json.dumps({"custom_id": row["id"], "body": body}) + "\n").encode())


BATCH_TEMPLATE = chatdsl.RequestTemplate(request=TEMPLATE.user(BATCH_USER))


def chatdsl_batch_file(count: int, sink: Callable[[bytes], Any]) -> None:
    """chatdsl: ``RequestTemplate.render_many`` (compiled once), ``to_dict()`` and the JSON writer, one line per row."""
    from chatdsl._json import dumps_bytes

    keyed = ((row["id"], row) for row in _batch_rows(count))
    for key, request in BATCH_TEMPLATE.render_many(keyed):
        sink(dumps_bytes({"custom_id": key, "body": request.to_dict()}) + b"\n")


def batch_file_times(count: int, rounds: int) -> dict[str, float]:
    """Median seconds per row of writing a *count*-row batch file (to a sink that drops it), interleaved rounds."""
    assert [json.loads(x) for x in _lines(floor_batch_file, 3)] == [
        json.loads(x) for x in _lines(chatdsl_batch_file, 3)
    ]
    samples: dict[str, list[float]] = {"floor": [], "chatdsl": []}
    for _ in range(rounds):
        for name, fn in (("floor", floor_batch_file), ("chatdsl", chatdsl_batch_file)):
            gc.collect()
            start = time.perf_counter()
            fn(count, len)
            samples[name].append((time.perf_counter() - start) / count)
    return {name: statistics.median(values) for name, values in samples.items()}


def _lines(fn: Callable[[int, Callable[[bytes], Any]], None], count: int) -> list[bytes]:
    out: list[bytes] = []
    fn(count, out.append)
    return out


_PEAK_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    sys.path.insert(0, {path!r})
    import bench
    kind, count = sys.argv[1], int(sys.argv[2])
    if kind == "batch":
        bench.chatdsl_batch_file(count, len)
    else:
        from chatdsl.cli.main import main
        status = main(["run", sys.argv[3], "--input", sys.argv[4], "--output", sys.argv[5], "--base-url", sys.argv[6],
                       "--concurrency", "32", "--progress-every", "3600"])
        assert status == 0, status
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    """
)


def peak_rss(kind: str, count: int, *args: str) -> float:
    """Peak resident memory (bytes) of a fresh interpreter doing *kind* (``batch`` or ``run``) over *count* rows."""
    script = _PEAK_SCRIPT.format(path=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", script, kind, str(count), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "MISTRAL_API_KEY": "bench-key"},
    )
    return float(out.stdout.strip().splitlines()[-1]) * 1024


class _Serve:
    """``chatdsl serve`` in its own process (its own GIL, as a real server would be); ``url`` once started."""

    def __enter__(self) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatdsl", "serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class _LocalServe:
    """A LocalServer in its own process serving 256 connections at once (each contender keeps its own pool of
    *concurrency* connections open: ``chatdsl serve`` accepts 64 at once); ``url`` once started."""

    def __enter__(self) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _LOCAL_SERVER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def run_throughput(url: str, count: int, rounds: int, concurrency: int = 32) -> dict[str, float]:
    """Requests/s of ``Client.run_many`` and ``AsyncClient.run_many`` (rendering each row too) and of a bare
    ``requests`` thread pool posting the same bodies, against the same server, interleaved; returned as seconds
    per request (lower is better): ``floor``, ``chatdsl`` (sync), ``async``."""
    import asyncio
    import concurrent.futures

    import requests

    bodies = [
        json.dumps(request.to_dict()).encode()
        for _, request in BATCH_TEMPLATE.render_many((row["id"], row) for row in _batch_rows(count))
    ]
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=concurrency)
    session.mount("http://", adapter)
    headers = {"Authorization": "Bearer bench-key", "Content-Type": "application/json"}
    endpoint = url + "/v1/chat/completions"

    def post(body: bytes) -> Any:
        response = session.post(endpoint, data=body, headers=headers, timeout=60)
        response.raise_for_status()
        return response.json()

    def floor() -> None:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            for _ in pool.map(post, bodies):
                pass

    client = chatdsl.Client(
        api_key="bench-key", base_url=url, limits=chatdsl.Limits(pool_maxsize=concurrency), max_retries=0
    )

    def dsl() -> None:
        keyed = ((row["id"], row) for row in _batch_rows(count))
        for result in client.run_many(BATCH_TEMPLATE.render_many(keyed), concurrency=concurrency):
            if result.error is not None:
                raise result.error

    runner = asyncio.Runner()  # one loop for every round: the async client belongs to the loop of its first call
    aclient = chatdsl.AsyncClient(
        api_key="bench-key", base_url=url, limits=chatdsl.Limits(pool_maxsize=concurrency), max_retries=0
    )

    async def adsl() -> None:
        keyed = ((row["id"], row) for row in _batch_rows(count))
        async for result in aclient.run_many(BATCH_TEMPLATE.render_many(keyed), concurrency=concurrency):
            if result.error is not None:
                raise result.error

    samples: dict[str, list[float]] = {"floor": [], "chatdsl": [], "async": []}
    steps: tuple[tuple[str, Callable[[], object]], ...] = (
        ("floor", floor),
        ("chatdsl", dsl),
        ("async", lambda: runner.run(adsl())),
    )
    for _, fn in steps:  # warm up (connections, the server's threads)
        fn()
    for _ in range(rounds):
        for name, fn in steps:
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) / count)
    client.close()
    runner.run(aclient.aclose())
    runner.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def run_memory(url: str, counts: tuple[int, int]) -> dict[str, float]:
    """Peak RSS of ``chatdsl run`` over each of *counts* rows (a fresh process each)."""
    import tempfile

    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        template = os.path.join(folder, "t.json")
        BATCH_TEMPLATE.save(template)
        for count in counts:
            rows = os.path.join(folder, f"rows{count}.jsonl")
            with open(rows, "w", encoding="utf-8") as fh:
                for row in _batch_rows(count):
                    fh.write(json.dumps(row) + "\n")
            out = os.path.join(folder, f"out{count}.jsonl")
            peaks[f"{count:,}"] = peak_rss("run", count, template, rows, out, url)
    return peaks


def runs_report(quick: bool) -> list[str]:
    """The issue 16 benchmarks: batch-file rendering vs its floor, ``run_many`` vs a thread pool, memory."""
    lines = []
    count = 20_000 if quick else 100_000
    times = batch_file_times(count, rounds=3 if quick else 5)
    lines.append(
        f"| render a {count:,}-row batch file (per row) | {times['chatdsl'] / times['floor']:.2f}× | "
        f"{_fmt_time(times['floor'])} | {_fmt_time(times['chatdsl'])} |"
    )
    small, large = (2_000, 20_000) if quick else (10_000, 100_000)
    batch_small, batch_large = peak_rss("batch", small), peak_rss("batch", large)
    with _LocalServe() as url:
        throughput = run_throughput(url, 500 if quick else 2_000, rounds=3 if quick else 5)
    lines.append(
        f"| run_many at concurrency 32 vs a requests thread pool (requests/s) | "
        f"{throughput['floor'] / throughput['chatdsl']:.0%} of the pool | "
        f"{1 / throughput['floor']:,.0f}/s | {1 / throughput['chatdsl']:,.0f}/s |"
    )
    lines.append(
        f"| AsyncClient.run_many at concurrency 32 vs a requests thread pool (requests/s) | "
        f"{throughput['floor'] / throughput['async']:.0%} of the pool "
        f"({throughput['chatdsl'] / throughput['async']:.0%} of Client.run_many) | "
        f"{1 / throughput['floor']:,.0f}/s | {1 / throughput['async']:,.0f}/s |"
    )
    with _Serve() as url:
        memory = run_memory(url, (small, large))
    lines.append(
        f"| peak RSS, batch file of {small:,} / {large:,} rows | {batch_large / batch_small:.2f}× | "
        f"{batch_small / 2**20:.1f} MiB | {batch_large / 2**20:.1f} MiB |"
    )
    values = list(memory.values())
    lines.append(
        f"| peak RSS, `chatdsl run` over {small:,} / {large:,} rows | {values[1] / values[0]:.2f}× | "
        f"{values[0] / 2**20:.1f} MiB | {values[1] / 2**20:.1f} MiB |"
    )
    return lines


# ------------------------------------------------------------------------------------ report


def _fmt_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def main(argv: list[str] | None = None) -> None:
    """Run every benchmark and print a Markdown table, ratios first."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke check, noisier)")
    parser.add_argument("--async-only", action="store_true", help="only the async client's figures")
    parser.add_argument("--runs", action="store_true", help="only the runs benchmarks (issue 16)")
    parser.add_argument("--no-runs", action="store_true", help="leave out the runs benchmarks (they take minutes)")
    args = parser.parse_args(argv)
    if args.runs:
        print("| runs (issue 16) | ratio | floor / small | chatdsl / large |")
        print("|---|---|---|---|")
        for line in runs_report(args.quick):
            print(line, flush=True)
        return
    rounds = 7 if args.quick else 31
    import_runs = 5 if args.quick else 21
    if args.async_only:
        async_report(rounds, import_runs)
        return

    # Same logical request everywhere.
    assert json.loads(floor_build(QUESTION)) == json.loads(chatdsl_build(QUESTION))

    rows: list[tuple[str, dict[str, float], str]] = []
    build = {"floor": lambda: floor_build(QUESTION), "chatdsl": lambda: chatdsl_build(QUESTION)}
    if (mistral := _mistralai_build()) is not None:
        build["mistralai"] = lambda: mistral(QUESTION)
    rows.append(("build + serialize a 3 KB request from a template", interleaved(build, rounds=rounds), "time"))

    assert json.loads(floor_cold_build(QUESTION)) == json.loads(chatdsl_cold_build(QUESTION))
    cold = {"floor": lambda: floor_cold_build(QUESTION), "chatdsl": lambda: chatdsl_cold_build(QUESTION)}
    rows.append(("cold build (tools, schemas, format, 11 steps) + serialize", interleaved(cold, rounds=rounds), "time"))
    fresh = {
        "floor": lambda: floor_cold_build(QUESTION, _new_parameters, _new_answer_schema),
        "chatdsl": lambda: chatdsl_cold_build(QUESTION, _new_parameters, _new_answer_schema),
    }
    rows.append(("cold build, every schema new (nothing shared)", interleaved(fresh, rounds=rounds), "time"))

    parse = {
        "floor": lambda: json.loads(RESPONSE_TEXT),
        "chatdsl": lambda: chatdsl.ChatCompletionResponse.from_json(RESPONSE_TEXT),
    }
    if (mistral_parse := _mistralai_parse()) is not None:
        parse["mistralai"] = lambda: mistral_parse(RESPONSE_TEXT)
    rows.append((f"parse a {len(RESPONSE_TEXT) / 1024:.1f} KB response", interleaved(parse, rounds=rounds), "time"))

    stream = {"floor": lambda: floor_stream(STREAM), "chatdsl": lambda: chatdsl_stream(STREAM)}
    if (mistral_stream := _mistralai_stream()) is not None:
        stream["mistralai"] = lambda: mistral_stream(STREAM)
    assert chatdsl_stream(STREAM) == floor_stream(STREAM) == STREAM_EVENTS
    per_event = {k: v / STREAM_EVENTS for k, v in interleaved(stream, rounds=max(5, rounds // 3)).items()}
    rows.append((f"parse a {STREAM_EVENTS:,}-event SSE stream (per event)", per_event, "time"))

    rows.append(("client round trip (in-memory adapter)", interleaved(client_round_trip(), rounds=rounds), "time"))
    rows.append(("import", import_times(import_runs), "time"))
    rows.append(
        (
            "import, then first use of the client and the converter",
            import_times(import_runs, "import chatdsl; chatdsl.Client; chatdsl.chat('m').user('x').to_json()"),
            "time",
        )
    )

    kinds = ["floor", "chatdsl"]
    if _mistralai_build() is not None:
        kinds.append("mistralai")
    rows.append(("memory per derived request (10,000)", {k: memory_per_request(k) for k in kinds}, "bytes"))

    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    try:
        from importlib.metadata import version

        print(
            f"chatdsl {chatdsl.__version__}, mistralai {version('mistralai')}, orjson "
            f"{version('orjson') if _has('orjson') else 'absent'}"
        )
    except Exception:
        print(f"chatdsl {chatdsl.__version__} (mistralai not installed)")
    print()
    print("| benchmark | chatdsl / floor | mistralai / floor | mistralai / chatdsl | floor | chatdsl | mistralai |")
    print("|---|---|---|---|---|---|---|")
    for title, values, unit in rows:
        fmt = _fmt_time if unit == "time" else (lambda b: f"{b:.0f} B")
        floor = values["floor"]
        dsl = values["chatdsl"]
        mis = values.get("mistralai")
        print(
            f"| {title} | {dsl / floor:.2f}× | {f'{mis / floor:.1f}×' if mis else '–'} | "
            f"{f'{mis / dsl:.1f}×' if mis else '–'} | {fmt(floor)} | {fmt(dsl)} | {fmt(mis) if mis else '–'} |"
        )
    latencies = streaming_latency()
    print()
    print(
        f"Streaming: server write → caller, over loopback, {len(latencies)} events: median "
        f"{statistics.median(latencies) * 1e3:.2f} ms, max {max(latencies) * 1e3:.2f} ms"
    )
    if _has("aiohttp"):
        async_report(rounds, import_runs)
    if not args.no_runs:
        print()
        print("| runs (issue 16) | ratio | floor / small | chatdsl / large |")
        print("|---|---|---|---|")
        for line in runs_report(args.quick):
            print(line)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
