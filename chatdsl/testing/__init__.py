"""A real chat-completions server on 127.0.0.1 for tests and offline use.

:class:`LocalServer` speaks the wire protocol of ``POST /v1/chat/completions`` over real sockets:
it parses each body into a :class:`~chatdsl.ChatCompletionRequest` (answering 422 with the API's
error object ``{"object": "error", "message": {"detail": [...]}, ...}`` when the real API would
refuse it, and 400 to a tool-call id that breaks the API's rule), records every request (but those
refused for their key), and answers
from a script — a queue of :class:`Reply` objects or a handler function — or, by default, with a
deterministic reply derived from the request::

    from chatdsl.testing import LocalServer, Reply

    with LocalServer() as server:
        server.enqueue(Reply.error(429, "slow down", retry_after=1))  # then the default reply
        ...  # point a client at server.url
        assert server.last_request.request.model == "mistral-small-latest"

The default reply echoes the last user message (``"echo: <text>"``); ``max_tokens`` truncates it
to that many whitespace-separated words with finish reason ``length``; a JSON response format gives
a JSON answer (for ``json_schema`` an instance generated from the schema, within a budget of values);
a tool choice that forces a call gives a tool call (its id made as the API makes them); after a tool
message the answer summarises the tool's result. With ``"stream": true`` the same answer arrives as
server-sent events: first the role with empty content, then one word per event. ``GET /v1/models``
lists models, as clients that probe it expect. ``/v1/files`` and ``/v1/batch/jobs`` serve Mistral's
Files and Batch APIs (``server.batch``, :mod:`chatdsl.testing.batch`): jobs run in the background,
each line answered as a chat completion is (scripted replies included).

Limits: a request body is read only up to :attr:`LocalServer.max_body_size` whatever its framing
(``Content-Length`` or chunked; a malformed length or chunk size is a 400, a larger body a 413,
answered before the body is read); a request refused for its key (401) is neither kept nor recorded;
at most *max_connections* connections are served at once, and further ones wait to be accepted.

Wire details: HTTP/1.1 with keep-alive. Plain bodies carry ``Content-Length``; streams are
``text/event-stream`` with ``Transfer-Encoding: chunked``, one HTTP chunk per event, each written to
the socket at once (``TCP_NODELAY``), so a client can observe every event as it is sent.

``LocalServer(dialect="openai")`` speaks OpenAI's wire format instead (as vLLM, llama.cpp's server,
Ollama and LM Studio do), so a client of either dialect can be tested offline.

The pytest fixture ``chatdsl_server`` (installed with chatdsl through a ``pytest11`` entry point)
yields a started server per test; ``@pytest.mark.chatdsl_server(dialect="openai")`` picks the dialect.
"""

from __future__ import annotations

from chatdsl.testing.replies import Cut, Headers, Pause, Reply, StreamItem
from chatdsl.testing.replies import ReplyKind as ReplyKind  # the type of Reply.kind, reachable here as before
from chatdsl.testing.server import DEFAULT_MAX_CONNECTIONS as DEFAULT_MAX_CONNECTIONS
from chatdsl.testing.server import Handler as Handler  # the type of LocalServer.handler, reachable here as before
from chatdsl.testing.server import LocalServer, RecordedRequest

__all__ = ["Cut", "Headers", "LocalServer", "Pause", "RecordedRequest", "Reply", "StreamItem"]
