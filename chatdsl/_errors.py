"""The exception tree of chatdsl.

::

    ChatDSLError                      every error chatdsl raises on purpose
    ├── ValidationError(ValueError)   a request, template or value breaks a rule (no I/O happened)
    │   ├── TemplateError             a template file is unreadable or breaks a rule (names the file)
    │   └── RowError                  an input row of a run is unusable (names the file and line)
    ├── OutputError(ValueError)       an answer's content does not parse into the asked type
    ├── APIError                      the server answered with an error status
    │   ├── BadRequestError               400
    │   ├── AuthenticationError           401
    │   ├── PermissionDeniedError         403
    │   ├── NotFoundError                 404
    │   ├── UnprocessableEntityError      422 (``details`` holds the server's list)
    │   ├── RateLimitError                429 (``retry_after`` in seconds, if the server said)
    │   ├── InternalServerError           5xx
    │   └── MalformedResponseError        a success status whose body is not the expected answer
    ├── APIConnectionError            no (complete) answer: DNS, refused, reset, TLS, a body cut short
    │   └── APITimeoutError           connect, read or total deadline passed
    ├── ClientClosedError(RuntimeError)  the client (or the client owning its session) was closed
    ├── StreamError                   a stream broke after it began (cut, malformed event, error event)
    ├── ToolLoopError                 a tool loop hit max_rounds, or (with on_error="raise") an unknown tool
    └── BatchTimeoutError(TimeoutError)  a batch job was still running when a wait for it ran out

Transport failures (``APIConnectionError``) are kept apart from bad status codes (``APIError``).
No exception text ever contains the API key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchTimeoutError",
    "ChatDSLError",
    "ClientClosedError",
    "InternalServerError",
    "MalformedResponseError",
    "NotFoundError",
    "OutputError",
    "PermissionDeniedError",
    "RateLimitError",
    "RowError",
    "StreamError",
    "TemplateError",
    "ToolLoopError",
    "UnprocessableEntityError",
    "ValidationError",
]


class ChatDSLError(Exception):
    """The root of every error chatdsl raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors cannot be re-run from ``args``: rebuild from the state instead,
        # so every error survives pickling (multiprocessing, pytest-xdist) and ``copy``.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[ChatDSLError], args: tuple[Any, ...], state: dict[str, Any]) -> ChatDSLError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ValidationError(ChatDSLError, ValueError):
    """A value breaks a rule of the request model, a template or a dialect.

    ``errors`` lists every problem as ``(path, message)`` pairs; ``str()`` joins them, one per line,
    each as ``path: message`` (for example ``temperature: 2.0 is above the maximum 1.5``).
    """

    errors: tuple[tuple[str, str], ...]

    def __init__(self, path: str, message: str, *, errors: Sequence[tuple[str, str]] = ()) -> None:
        self.errors = tuple(errors) if errors else ((path, message),)
        super().__init__("\n".join(_join(p, m) for p, m in self.errors))

    @property
    def path(self) -> str:
        """The field path of the first problem, such as ``messages[1].content``."""
        return self.errors[0][0]

    @property
    def rule(self) -> str:
        """The message of the first problem, without its path."""
        return self.errors[0][1]

    def with_prefix(self, prefix: str) -> ValidationError:
        """Return a copy whose paths are nested under *prefix* (``messages[0]`` + ``content``)."""
        return ValidationError("", "", errors=[(nest(prefix, p), m) for p, m in self.errors])


def nest(prefix: str, path: str) -> str:
    """Return *path* inside *prefix*: ``a.b``, ``a[0]`` (an empty side gives the other)."""
    if not prefix:
        return path
    if not path:
        return prefix
    if path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"


def _join(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message


class TemplateError(ValidationError):
    """A template file cannot be read or breaks a rule.

    ``problems`` lists every problem as ``(file, path, message)`` triples, across files when
    several were read (a library, an ``extends`` chain); ``errors`` holds the same ``(path,
    message)`` pairs without the files. ``str()`` shows one problem per line as
    ``file: path: message``.
    """

    problems: tuple[tuple[str, str, str], ...]

    def __init__(self, problems: Sequence[tuple[str, str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("", "", errors=[(path, message) for _, path, message in self.problems])
        self.args = ("\n".join(f"{file}: {_join(path, message)}" for file, path, message in self.problems),)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))

    @property
    def file(self) -> str:
        """The file of the first problem."""
        return self.problems[0][0]

    def lines(self) -> list[str]:
        """Return one line per problem, ``file: path: message`` (newlines in messages shown as spaces)."""
        return [f"{file}: {_join(path, message)}".replace("\n", " ") for file, path, message in self.problems]

    def with_prefix(self, prefix: str) -> TemplateError:
        """Return a copy whose key paths are nested under *prefix*."""
        return TemplateError([(file, nest(prefix, path), message) for file, path, message in self.problems])


class RowError(ValidationError):
    """An input row of a run cannot be used: bad JSON or CSV, a bad ``id``, a variable without a value.

    ``file`` and ``line`` (1-based, where the row starts) say where; ``key`` is the row's key when
    it could be read (else ``None``). ``str()`` reads ``file:line: problem``.
    """

    def __init__(self, message: str, *, file: str, line: int, key: str | None = None) -> None:
        self.file = file
        self.line = line
        self.key = key
        super().__init__(f"{file}:{line}", message)


class OutputError(ChatDSLError, ValueError):
    """The assistant's content could not be parsed into the requested type.

    ``content`` is the raw text that was parsed and ``path`` the place that did not fit.
    """

    def __init__(self, message: str, *, content: str, path: str = "") -> None:
        self.content = content
        self.path = path
        shown = content if len(content) <= 500 else content[:500] + "…"
        super().__init__(f"{_join(path, message)}\ncontent: {shown!r}")


class APIError(ChatDSLError):
    """The server answered with an error status.

    ``status_code``, ``message`` (the server's own words), ``body`` (the parsed JSON body or the
    raw text) and ``request_id`` (for support tickets) are always set, ``request_id`` to ``None``
    when the server sent none.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.headers = dict(headers or {})
        rid = f" (request id {request_id})" if request_id else ""
        super().__init__(f"HTTP {status_code}: {message}{rid}")


class BadRequestError(APIError):
    """HTTP 400: the server rejected the request."""


class AuthenticationError(APIError):
    """HTTP 401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIError):
    """HTTP 403: the key may not use this model or endpoint."""


class NotFoundError(APIError):
    """HTTP 404: unknown endpoint or model."""


class UnprocessableEntityError(APIError):
    """HTTP 422: the body failed the server's validation; ``details`` lists the server's findings."""

    @property
    def details(self) -> list[Any]:
        """The server's validation details (its ``detail`` list), or an empty list.

        Read from ``{"detail": [...]}``, from Mistral's ``{"object": "error", "message": {"detail": [...]}}``
        and from ``{"object": "Error", "message": [...], "code": 3001}`` (a list of findings as the message).
        """
        body = self.body
        if isinstance(body, dict):
            for holder in (body, body.get("message")):
                if isinstance(holder, dict) and isinstance(holder.get("detail"), list):
                    return list(holder["detail"])
            if isinstance(body.get("message"), list):
                return list(body["message"])
        return []


class RateLimitError(APIError):
    """HTTP 429: too many requests; ``retry_after`` is the server's wait in seconds, if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class InternalServerError(APIError):
    """HTTP 5xx: the server failed."""


class MalformedResponseError(APIError):
    """A success status, but the body is not a chat completion (not JSON, or not the expected shape).

    ``status_code`` is the (successful) status, ``body`` the raw text, ``request_id`` the server's.
    It is not retried: the same request would most likely get the same answer.
    """


class APIConnectionError(ChatDSLError):
    """The request got no complete answer: the connection failed, was refused or was reset.

    ``response_started`` is ``True`` when a success status had already arrived and the body then
    broke off (cut, stalled, past the total deadline): the server accepted the request — and may
    have generated and billed the answer — so chatdsl did not send it again.
    """

    def __init__(self, message: str = "", *, response_started: bool = False) -> None:
        self.response_started = response_started
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """A connect, read or total timeout passed before the answer was complete."""


class ClientClosedError(ChatDSLError, RuntimeError):
    """The client was closed (or the client that owns its session was): it sends nothing more."""


class _OtherLoopError(ChatDSLError, RuntimeError):
    """An ``AsyncClient`` was called from an event loop other than the one of its first call."""


def other_loop_error(*, closed: bool) -> ChatDSLError:
    """The error for a call on an ``AsyncClient`` from a second event loop; *closed*: the first loop is."""
    state = " (that loop is closed: this client's session can no longer be used or closed)" if closed else ""
    return _OtherLoopError(
        f"AsyncClient called from an event loop other than the one of its first call{state}; an AsyncClient "
        "belongs to the event loop of its first call: make one client per loop, or close it with aclose() in that loop"
    )


class StreamError(ChatDSLError):
    """A stream broke after it began: cut connection, malformed event, error event, no ``[DONE]``."""


class ToolLoopError(ChatDSLError):
    """A tool loop stopped without a final answer.

    ``request`` is the conversation so far (the last request sent, every tool result in it) and
    ``response`` the last response (its tool calls were not run), or ``None``.
    """

    def __init__(self, message: str, *, request: Any, response: Any = None) -> None:
        self.request = request
        self.response = response
        super().__init__(message)


class BatchTimeoutError(ChatDSLError, TimeoutError):
    """A wait for a batch job ran out before the job ended; ``job`` is its last known state (a ``BatchJob``)."""

    def __init__(self, message: str, *, job: Any = None) -> None:
        self.job = job
        super().__init__(message)
