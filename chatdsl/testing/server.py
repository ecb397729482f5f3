"""The HTTP server of :class:`~chatdsl.testing.LocalServer`: sockets, threads, the script, the recordings.

One thread accepts connections (at most *max_connections* served at once); each connection gets a
thread that reads a request (:mod:`chatdsl.testing.framing`), records it as a :class:`RecordedRequest`,
takes the scripted :class:`~chatdsl.testing.Reply` (or the default answer, :mod:`chatdsl.testing.fake`)
and writes it in the server's dialect (:mod:`chatdsl.testing.wire`), with the reply's faults.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import hmac
import http.server
import json
import logging
import math
import selectors
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias

import attrs

from chatdsl._errors import ValidationError
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.model.response import ChatCompletionResponse, CompletionChunk
from chatdsl.testing.batch import BatchStore
from chatdsl.testing.fake import default_chunks, default_response, unmet_header, unmet_notes
from chatdsl.testing.framing import BodyRefused, json_problem, read_request_body
from chatdsl.testing.replies import Cut, Headers, Partial, Pause, Reply, StreamItem, phrase, stream_events
from chatdsl.testing.wire import (
    EVENT_STREAM,
    MODELS_PATH,
    OPENAI_RATE_LIMIT_HEADERS,
    WIRES,
    encode_event,
    json_text,
)
from chatdsl.wire.dialects import Dialect

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_MODELS", "Handler", "LocalServer", "RecordedRequest"]

logger: Final = logging.getLogger("chatdsl.testing")

DEFAULT_MODELS: Final = ("mistral-small-latest", "mistral-medium-latest", "mistral-large-latest")

DEFAULT_MAX_CONNECTIONS: Final = 64
"""How many connections :class:`LocalServer` serves at once by default."""


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One request as the server received it.

    ``json`` is the parsed body (``None`` if it was empty or not JSON), ``request`` the parsed
    request (``None`` if the body did not parse or validate; ``error`` then says why).
    ``connection_id`` numbers TCP connections from 1: equal ids mean a reused connection.
    ``index`` numbers recorded requests from 0 (it keeps counting when *max_recorded* drops old ones).
    """

    index: int
    method: str
    path: str
    headers: Headers
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    json: Any = None
    request: ChatCompletionRequest | None = None
    error: ValidationError | None = None
    connection_id: int = 0
    request_id: str = ""

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header's value, or ``None``."""
        return self.headers.get("authorization")  # type: ignore[no-any-return]


class _Abort(Exception):
    """Raised inside a handler to end the connection at once (a cut, a drop or the server stopping)."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("connection aborted")
        self.reset = reset


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 overflows when many clients connect at once: the kernel then
    # drops connection attempts (a 1 s SYN retry) or resets them (ECONNRESET on the client's first send)
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: LocalServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread per connection, at most max_connections at once: past that, this (accepting) thread waits
        # for a connection to end, so further clients wait in the listen backlog instead of costing a thread each.
        if not self.owner._take_slot():  # the server is stopping
            self.shutdown_request(request)
            return
        try:
            self.owner._accepted(request)
            thread = threading.Thread(
                target=self.process_request_thread,
                args=(request, client_address),
                name=f"chatdsl-localserver-conn-{self.owner._conn_ids.get(request, 0)}",
                daemon=True,
            )
            self.owner._track(thread)
            thread.start()
        except BaseException:  # pragma: no cover - no thread could be started
            self.owner._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except ConnectionError as exc:  # the client reset the connection (it closed it with data unread)
            logger.debug("LocalServer: the client reset the connection (%s)", exc)
        except Exception:  # pragma: no cover - defensive: a handler bug must not kill the server
            logger.exception("LocalServer: connection handler failed")
        finally:
            self.shutdown_request(request)
            self.owner._closed(request)
            self.owner._slots.release()

    def shutdown_request(self, request: Any) -> None:
        if request in self.owner._reset:
            request.close()  # linger 0 + close without FIN = a TCP reset
            return
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:  # pragma: no cover - see above
        logger.exception("LocalServer: error on a connection")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 60.0  # idle keep-alive connections are closed after a minute

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("LocalServer: " + format, *args)

    def _dispatch(self) -> None:
        self.server.owner._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch


@attrs.define
class _Exchange:
    """The state of one request being answered."""

    handler: _Handler
    request_id: str
    recorded: RecordedRequest | None = None


Handler: TypeAlias = Callable[[RecordedRequest], "Reply | None"]


class LocalServer:
    """A chat-completions server on 127.0.0.1 for tests: real HTTP/1.1 on an ephemeral port, in a background thread.

    *api_key*: when set, a request without ``Authorization: Bearer <api_key>`` is answered 401.
    *strict*: parse and validate each body as the API would (422 otherwise); with ``False`` the
    script also answers bodies that do not parse (``recorded.request`` is then ``None``).
    *model*: the model named in default replies (default: the request's model).
    *rate_limit_headers*: the ``x-ratelimit-*`` headers sent with every response.
    *created*: the ``created`` time (Unix seconds) of default replies (default: when the server was made).
    *host* and *port*: where to listen (default: 127.0.0.1 and a free port chosen by the system).
    *max_recorded*: keep only the latest this many :attr:`requests` (default ``None``: all of them;
    ``0``: none, as ``chatdsl serve`` does).
    *max_connections*: serve at most this many connections at once (default 64); further clients
    wait to be accepted until one of them closes.
    *chunk_delay*: seconds to wait before each event of a stream the server shapes itself (the
    default answer, :meth:`Reply.text`, :meth:`Reply.tool_calls`), so streaming can be watched
    (default 0; ``chatdsl serve --delay``). Scripted streams keep their own delays.
    *dialect*: ``"mistral"`` (default) or ``"openai"`` — the wire format spoken, as a real server of
    that kind would: with ``"openai"`` bodies are read as OpenAI's API reads them (a Mistral-only
    field such as ``random_seed``, ``safe_prompt`` or an assistant ``prefix`` is a 400), errors
    are ``{"error": {...}}`` with status 400 for a refused body, answers carry
    ``system_fingerprint``, ids are ``chatcmpl-…`` and ``call_…``, streamed tool calls come split over
    several deltas, a stream's finish reason comes in a chunk with an empty delta, a stream asked for
    ``stream_options.include_usage`` ends with a usage-only chunk (no other chunk has ``usage``),
    ``max_completion_tokens`` limits the answer, and the request id is sent as ``x-request-id`` only.
    The Mistral dialect refuses, as the API does, a tool-call id that is not 9 characters of
    ``[a-zA-Z0-9]`` (400).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Script replies with
    :meth:`enqueue` (first in, first out) or set :attr:`handler` to a function of the
    :class:`RecordedRequest` returning a :class:`Reply` (or ``None`` for the default).
    """

    DEFAULT_RATE_LIMIT_HEADERS: Final[Mapping[str, str]] = {
        "x-ratelimit-limit-req-minute": "120",
        "x-ratelimit-remaining-req-minute": "119",
        "x-ratelimit-limit-tokens-minute": "500000",
        "x-ratelimit-remaining-tokens-minute": "499000",
    }

    def __init__(
        self,
        *,
        api_key: str | None = None,
        strict: bool = True,
        model: str | None = None,
        rate_limit_headers: Mapping[str, str] | None = None,
        created: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        dialect: Dialect | str = Dialect.MISTRAL,
        max_recorded: int | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        chunk_delay: float = 0.0,
    ) -> None:
        if max_recorded is not None and (
            isinstance(max_recorded, bool) or not isinstance(max_recorded, int) or max_recorded < 0
        ):
            raise ValidationError("max_recorded", f"{max_recorded!r} is not None or a whole number of 0 or more")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValidationError("max_connections", f"{max_connections!r} is not a whole number of 1 or more")
        if (
            isinstance(chunk_delay, bool)
            or not isinstance(chunk_delay, (int, float))
            or not 0 <= chunk_delay < math.inf
        ):
            raise ValidationError("chunk_delay", f"{chunk_delay!r} is not a finite number of seconds >= 0")
        self.chunk_delay: Final = float(chunk_delay)
        """Seconds waited before each event of a stream the server shapes (default and ``Reply.text`` answers)."""
        self.dialect: Final[Dialect] = Dialect.coerce(dialect)
        """The wire dialect this server speaks."""
        self._wire = WIRES[self.dialect]
        self._api_key = api_key
        self.strict = strict
        """Whether bodies are parsed and validated strictly (422 otherwise)."""
        self.model = model
        """The model named in default replies (``None``: the request's model)."""
        defaults = self.DEFAULT_RATE_LIMIT_HEADERS if self.dialect is Dialect.MISTRAL else OPENAI_RATE_LIMIT_HEADERS
        self.rate_limit_headers: dict[str, str] = dict(defaults if rate_limit_headers is None else rate_limit_headers)
        """The ``x-ratelimit-*`` headers sent with every response (change it at will)."""
        self.created = int(time.time()) if created is None else created
        """The ``created`` time of default replies, in Unix seconds."""
        self.handler: Handler | None = None
        """A function answering requests when the queue is empty: ``fn(recorded) -> Reply | None``."""
        self.max_body_size = 16 * 1024 * 1024
        """Request bodies above this many bytes are answered 413."""
        self._host, self._port = host, port
        self._lock = threading.Condition()
        self._queue: collections.deque[Reply] = collections.deque()
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=max_recorded)
        self._received = 0  # requests recorded so far, the ones no longer kept included
        self._refused = 0
        self.max_connections: Final = max_connections
        """The most connections served at once; further clients wait to be accepted."""
        self._slots = threading.BoundedSemaphore(max_connections)
        self._errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._sockets: dict[int, socket.socket] = {}
        self._conn_ids: dict[Any, int] = {}
        self._reset: set[Any] = set()
        self._accepted_count = 0
        self.batch: Final = BatchStore(self)
        """The files and batch jobs of ``/v1/files`` and ``/v1/batch/jobs`` (a ``BatchStore``)."""

    def __repr__(self) -> str:
        state = f"url={self.url!r}" if self._httpd is not None else "stopped"
        auth = ", api_key=<set>" if self._api_key is not None else ""
        return f"<LocalServer {state}{auth}, requests={len(self._requests)}, open_connections={self.open_connections}>"

    # ------------------------------------------------------------------ life cycle

    def start(self) -> LocalServer:
        """Bind to an ephemeral port on 127.0.0.1 and serve in a daemon thread; return this server."""
        if self._httpd is not None:
            raise RuntimeError("LocalServer is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="chatdsl-localserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: close the listening socket and every open connection, and join the threads.

        Pauses and stalls in progress end at once. Calling it twice is harmless.
        """
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            sockets = list(self._sockets.values())
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for worker in [*threads, *([thread] if thread else [])]:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._httpd = self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give a client: ``http://127.0.0.1:PORT`` (raises if the server is not running)."""
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the server listens on."""
        if self._httpd is None:
            raise RuntimeError("LocalServer is not running; call start() or use it in a with block")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def chat_completions_url(self) -> str:
        """The full URL of the chat-completions endpoint."""
        return self.url + self._wire.path

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._httpd is not None

    # ------------------------------------------------------------------ script

    def enqueue(self, *replies: Reply) -> None:
        """Queue *replies*: each request takes the first one left; when none is left, the default applies."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"enqueue: {type(reply).__name__} is not a Reply; build one with Reply.json(...) etc.")
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """How many queued replies are still unused."""
        with self._lock:
            return len(self._queue)

    # ------------------------------------------------------------------ recordings

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, in arrival order (a copy; only the latest *max_recorded* when set).

        A request refused for its key (401) is not recorded.
        """
        with self._lock:
            return list(self._requests)

    @property
    def refused(self) -> int:
        """How many requests were answered 401 for their key (they are counted here, not recorded)."""
        with self._lock:
            return self._refused

    @property
    def last_request(self) -> RecordedRequest | None:
        """The latest request received, or ``None``."""
        with self._lock:
            return self._requests[-1] if self._requests else None

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by :attr:`handler` (each was answered with a 500)."""
        with self._lock:
            return list(self._errors)

    def clear(self) -> None:
        """Forget the recorded requests and handler errors (queued replies stay)."""
        with self._lock:
            self._requests.clear()
            self._errors.clear()

    # ------------------------------------------------------------------ connections

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections the server has accepted since it was made."""
        with self._lock:
            return self._accepted_count

    @property
    def open_connections(self) -> int:
        """How many accepted connections are still open (a client that leaks connections keeps this up)."""
        with self._lock:
            return len(self._sockets)

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Wait until no connection is open (a client's close is seen a moment later); return whether it happened."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._sockets, timeout)

    def _accepted(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._accepted_count += 1
            self._conn_ids[sock] = self._accepted_count
            self._sockets[self._accepted_count] = sock

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            conn_id = self._conn_ids.pop(sock, None)
            self._sockets.pop(conn_id or 0, None)
            self._reset.discard(sock)
            self._threads.discard(threading.current_thread())
            self._lock.notify_all()

    def _take_slot(self) -> bool:
        """Wait until fewer than *max_connections* connections are served; return ``False`` if the server stops."""
        while not self._slots.acquire(timeout=0.05):
            if self._stopping.is_set():
                return False
        return True

    def _model_names(self) -> list[str]:
        """The models ``GET /v1/models`` lists: the server's *model* (or a few of Mistral's), then those asked for."""
        names = [self.model] if self.model else list(DEFAULT_MODELS)
        with self._lock:
            asked = [r.request.model for r in self._requests if r.request is not None]
        return list(dict.fromkeys([*names, *(name for name in asked if isinstance(name, str))]))

    def _track(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads.add(thread)

    # ------------------------------------------------------------------ default answers

    def default_response(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        """Return the answer the server gives *request* when nothing is scripted (not streamed)."""
        return default_response(request, wire=self._wire, model=self.model, created=self.created)

    def default_chunks(self, request: ChatCompletionRequest) -> list[CompletionChunk]:
        """Return the chunks the server streams for *request* when nothing is scripted.

        As the APIs stream: first a chunk per choice with the role and empty content, then one chunk
        per word (a tool call comes whole in one chunk); the last chunk of each choice has its finish
        reason, and the very last one the usage. Joined, they give :meth:`default_response`. In the
        ``"openai"`` dialect each tool call is split over several chunks, the finish reason comes in a
        chunk of its own with an empty delta, and the usage comes in a last chunk of its own only
        when the request's ``stream_options`` ask for it.
        """
        return default_chunks(request, wire=self._wire, model=self.model, created=self.created)

    # ------------------------------------------------------------------ serving

    def _serve(self, handler: _Handler) -> None:
        exchange = _Exchange(handler=handler, request_id=uuid.uuid4().hex)
        try:
            self._answer_request(exchange)
        except _Abort as abort:
            handler.close_connection = True
            if abort.reset:
                with contextlib.suppress(OSError):  # linger on, 0 seconds: close() sends a reset
                    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with self._lock:
                    self._reset.add(handler.connection)
        except OSError:  # the client went away mid-reply
            handler.close_connection = True

    def _answer_request(self, ex: _Exchange) -> None:
        h = ex.handler
        if self._api_key is not None and not self._authorized(h.headers.get("Authorization")):
            # Refused before anything else: its body is read (to answer cleanly) but neither kept nor recorded.
            with self._lock:
                self._refused += 1
            if self._read_request_body(ex, keep=False) is not None:
                self._send_json(ex, 401, self._wire.unauthorized_body(ex.request_id))
            return
        body = self._read_request_body(ex)
        if body is None:
            return
        path = h.path.split("?", 1)[0]
        value: Any = None
        request: ChatCompletionRequest | None = None
        error: ValidationError | None = None
        json_error: json.JSONDecodeError | None = None
        if body:
            try:
                value = json.loads(body)
            except json.JSONDecodeError as exc:
                json_error = exc
            except (ValueError, RecursionError) as exc:  # bad UTF-8, nesting too deep, an integer too long
                json_error = json.JSONDecodeError(json_problem(exc), "", 0)
        if json_error is None and path == self._wire.path:
            try:
                request = self._wire.check(self._wire.parse_request(value))
            except ValidationError as exc:
                error = exc
        elif json_error is not None:
            error = ValidationError("", f"is not valid JSON ({json_error.msg})")
        headers = Headers((k.lower(), v) for k, v in h.headers.items())
        recorded = self._record(
            h.path,
            headers,
            body,
            value,
            request,
            error,
            method=h.command,
            connection_id=self._conn_ids.get(h.connection, 0),
            request_id=ex.request_id,
        )
        ex.recorded = recorded

        if self.batch.handles(path):
            status, answer, content_type = self.batch.answer(h.command, h.path, headers, body)
            if isinstance(answer, bytes):
                head = self._head(ex, status, content_type, ("Content-Length", str(len(answer))))
                self._write(ex, head + answer)
            else:
                self._send_json(ex, status, answer)
            return
        if path == MODELS_PATH and h.command == "GET":
            self._send_json(ex, 200, self._wire.models_body(self._model_names(), self.created))
            return
        if path != self._wire.path:
            self._send_json(ex, 404, self._wire.not_found_body(h.command, path))
            return
        if h.command != "POST":
            self._send_json(ex, 405, self._wire.method_not_allowed_body(h.command, path), extra=[("Allow", "POST")])
            return
        if self.strict and json_error is not None:
            self._send_json(ex, self._wire.validation_status, self._wire.json_invalid_body(json_error))
            return
        if self.strict and error is not None:
            self._send_json(ex, self._wire.validation_status, self._wire.validation_body(error, value))
            return
        refusal = self._wire.refusal(request) if self.strict and request is not None else None
        if refusal is not None:
            self._send_json(ex, *refusal)
            return
        self._send_reply(ex, self._script(recorded))

    def _record(
        self,
        path: str,
        headers: Headers,
        body: bytes,
        value: Any,
        request: ChatCompletionRequest | None,
        error: ValidationError | None,
        *,
        method: str = "POST",
        connection_id: int = 0,
        request_id: str = "",
    ) -> RecordedRequest:
        """Record a request (a batch job's line too: no connection, the job's endpoint as its path)."""
        with self._lock:
            recorded = RecordedRequest(
                index=self._received,
                method=method,
                path=path,
                headers=headers,
                body=body,
                json=value,
                request=request,
                error=error,
                connection_id=connection_id,
                request_id=request_id or uuid.uuid4().hex,
            )
            self._requests.append(recorded)
            self._received += 1
        return recorded

    def _authorized(self, value: str | None) -> bool:
        expected = f"Bearer {self._api_key}".encode()
        return value is not None and hmac.compare_digest(value.encode(), expected)

    def _script(self, recorded: RecordedRequest) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        handler = self.handler
        if handler is None:
            return Reply.default()
        try:
            reply = handler(recorded)
        except Exception as exc:
            with self._lock:
                self._errors.append(exc)
            logger.warning("LocalServer: the handler raised %s: %s", type(exc).__name__, exc)
            return Reply.error(500, f"LocalServer handler raised {type(exc).__name__}: {exc}")
        if reply is None:
            return Reply.default()
        if not isinstance(reply, Reply):  # untyped user code may return anything
            message = f"LocalServer handler returned {type(reply).__name__}, not a Reply or None"  # type: ignore[unreachable]
            exc = TypeError(message)
            with self._lock:
                self._errors.append(exc)
            return Reply.error(500, str(exc))
        return reply

    def _refuse(self, ex: _Exchange, status: int, message: str) -> None:
        """Answer *status* with *message* and close the connection (what is left of the body is never read)."""
        ex.handler.close_connection = True  # first, so the answer says "Connection: close"
        self._send_json(ex, status, self._wire.error_body(message, "invalid_request_error", None))

    def _read_request_body(self, ex: _Exchange, *, keep: bool = True) -> bytes | None:
        """Return the request body (see :func:`read_request_body`), or answer 400/413 and return ``None``."""
        h = ex.handler
        try:
            return read_request_body(h.headers, h.rfile, self.max_body_size, keep=keep)
        except BodyRefused as refused:
            self._refuse(ex, refused.status, refused.message)
            return None

    # ------------------------------------------------------------------ writing

    def _sleep(self, ex: _Exchange, seconds: float) -> None:
        """Wait *seconds*, but end the exchange at once if the server stops or the client hangs up."""
        if seconds <= 0:
            return
        deadline = time.monotonic() + seconds
        sock = ex.handler.connection
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                readable = selector.select(min(left, 0.25))
                if self._stopping.is_set():
                    raise _Abort()
                if readable:
                    try:
                        gone = not sock.recv(1, socket.MSG_PEEK)
                    except OSError:
                        gone = True
                    if gone:
                        raise _Abort()
                    break  # the client sent more (a pipelined request): wait without watching it
        if (left := deadline - time.monotonic()) > 0 and self._stopping.wait(left):
            raise _Abort()

    def _head(
        self,
        ex: _Exchange,
        status: int,
        content_type: str,
        framing: tuple[str, str],
        extra: Iterable[tuple[str, str | None]] = (),
    ) -> bytes:
        headers: dict[str, tuple[str, str]] = {}

        def put(name: str, value: str | None) -> None:
            if value is None:
                headers.pop(name.lower(), None)
            else:
                headers[name.lower()] = (name, value)

        put("Date", email.utils.formatdate(usegmt=True))
        put("Server", "chatdsl-localserver")
        put("Content-Type", content_type)
        put(*framing)
        for name in self._wire.request_id_headers:
            put(name, ex.request_id)
        for name, limit in self.rate_limit_headers.items():
            put(name, limit)
        for name, value in extra:
            put(name, value)
        if ex.handler.close_connection:
            put("Connection", "close")
        lines = [f"HTTP/1.1 {status} {phrase(status)}"]
        lines += [f"{name}: {value}" for name, value in headers.values()]
        logger.debug("LocalServer: %s %s -> %s", ex.handler.command, ex.handler.path, status)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write(self, ex: _Exchange, data: bytes, reply: Reply | None = None) -> None:
        if self._stopping.is_set():
            raise _Abort()
        wfile = ex.handler.wfile
        if reply is None or not reply.write_size:
            wfile.write(data)
            return
        for start in range(0, len(data), reply.write_size):
            if start:
                self._sleep(ex, reply.write_delay)
            wfile.write(data[start : start + reply.write_size])

    def _send_json(self, ex: _Exchange, status: int, body: Any, extra: Iterable[tuple[str, str | None]] = ()) -> None:
        data = json_text(body).encode()
        head = self._head(ex, status, "application/json", ("Content-Length", str(len(data))), extra)
        self._write(ex, head + data)

    def _send_reply(self, ex: _Exchange, reply: Reply) -> None:
        recorded = ex.recorded
        request = recorded.request if recorded is not None else None
        kind = reply.kind
        if kind == "default":
            kind = "stream" if request is not None and request.stream is True else "body"
        self._sleep(ex, reply.head_delay)
        if kind == "drop":
            raise _Abort(reset=reply.reset)
        needs_default = reply.chunks is None if kind == "stream" else reply.body is None and reply.error_fields is None
        if needs_default and request is None:  # strict=False and a body that is no request: nothing to echo
            error = recorded.error if recorded is not None and recorded.error else ValidationError("", "is empty")
            self._send_json(ex, self._wire.validation_status, self._wire.validation_body(error))
            return
        if kind == "stream":
            self._send_stream(ex, reply, request)
        else:
            self._send_body(ex, reply, request)

    def _send_body(self, ex: _Exchange, reply: Reply, request: ChatCompletionRequest | None) -> None:
        content_type = reply.content_type
        notes: list[str] = []
        if reply.error_fields is not None:
            message, type_, code = reply.error_fields
            body: Any = self._wire.error_body(message, *self._wire.error_names(reply.status, type_, code))
        elif reply.body is None:
            assert request is not None
            with unmet_notes() as notes:
                response = default_response(
                    request, wire=self._wire, model=self.model, created=self.created, answer=reply.answer
                )
                body = self._wire.response_body(response)
        elif isinstance(reply.body, ChatCompletionResponse):
            body = self._wire.response_body(reply.body)
        else:
            body = reply.body
        data = body if isinstance(body, bytes) else json_text(body).encode()
        if reply.truncate_at is not None:
            ex.handler.close_connection = True
        extra = [*unmet_header(notes), *reply.headers]
        head = self._head(ex, reply.status, content_type, ("Content-Length", str(len(data))), extra)
        self._write(ex, head)
        self._sleep(ex, reply.stall_seconds)
        if reply.truncate_at is not None:
            cut = len(data) // 2 if reply.truncate_at < 0 else min(reply.truncate_at, len(data))
            self._write(ex, data[:cut], reply)
            raise _Abort()
        self._write(ex, data, reply)

    def _send_stream(self, ex: _Exchange, reply: Reply, request: ChatCompletionRequest | None) -> None:
        items: Sequence[StreamItem]
        notes: list[str] = []
        if reply.chunks is not None:
            items = reply.chunks
        else:
            assert request is not None
            with unmet_notes() as notes:
                items = default_chunks(
                    request, wire=self._wire, model=self.model, created=self.created, answer=reply.answer
                )
        extra = [*unmet_header(notes), *reply.headers]
        head = self._head(ex, reply.status, EVENT_STREAM, ("Transfer-Encoding", "chunked"), extra)
        self._write(ex, head)
        self._sleep(ex, reply.stall_seconds)
        delay, first_delay = reply.delay, reply.first_delay
        if reply.kind == "default" and not delay and first_delay is None:  # an unscripted stream: chunk_delay
            delay = self.chunk_delay
        first = True
        for item in stream_events(reply, items):
            if isinstance(item, Pause):
                self._sleep(ex, item.seconds)
                continue
            if isinstance(item, Cut):
                raise _Abort(reset=item.reset)
            if isinstance(item, Partial):
                whole = encode_event(self._wire, item.item, first=first)
                data = whole[: max(1, len(whole) // 2)]
            else:
                data = encode_event(self._wire, item, first=first)
            self._sleep(ex, first_delay if first and first_delay is not None else delay)
            if data:
                self._write(ex, b"%x\r\n%s\r\n" % (len(data), data), reply)
            first = False
        self._write(ex, b"0\r\n\r\n")
