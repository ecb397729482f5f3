"""What :class:`~chatdsl.Client` and :class:`~chatdsl.AsyncClient` share: settings, checks and request preparation.

:class:`BaseClient` reads and checks the constructor's arguments (the key and its environment
variables, the base URL and its loopback rules, timeouts, retries, limits, headers, the dialect),
derives clients (``with_options``), refuses pickling, turns a request into the bytes and headers
of one POST, and begins a call of any method and path (its headers and its retry loop,
:class:`~chatdsl.client.retry.Attempts`). A subclass adds only its transport: how a session is made
and closed, and how bytes move. Nothing here imports ``requests``, ``urllib3`` or ``aiohttp``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Generic, Self, TypeVar
from urllib.parse import urlsplit

import attrs

from chatdsl._errors import ClientClosedError, ValidationError
from chatdsl._json import dumps_bytes
from chatdsl._types import UNSET, UnsetType
from chatdsl.client.config import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUT,
    Limits,
    RetryPolicy,
    Timeout,
    base_url_or_env,
    check_base_url,
    check_flag,
    check_headers,
    check_key,
    env_key_allowed,
    is_loopback,
    is_openai_service,
    redact_url,
)
from chatdsl.client.retry import Attempts
from chatdsl.model.request import ChatCompletionRequest
from chatdsl.wire.dialects import Dialect, to_wire

__all__ = ["BaseClient", "SessionState", "checked"]

PATH: Final = "/v1/chat/completions"

_S = TypeVar("_S")


class SessionState:
    """Shared by a client and every client derived from it (they share one session)."""

    __slots__ = ("closed", "session")

    def __init__(self, session: object = None) -> None:
        self.closed = False
        """Whether the client that owns the session closed it."""
        self.session = session
        """The session, if the client made it (and closes it)."""


def checked(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """Return *request* validated (a ``TypeError`` for anything that is not a request)."""
    if not isinstance(request, ChatCompletionRequest):
        raise TypeError(f"expected a ChatCompletionRequest, got {type(request).__name__}")
    return request.validate()


class BaseClient(Generic[_S]):
    """The settings of a chat-completions client; *_S* is the transport's session type.

    A subclass sets :attr:`_default_sleep` and implements :meth:`_open` (called once, from
    ``__init__``: make a session when none is given, and whatever else the transport needs).
    """

    __slots__ = (
        "_allow_insecure_http",
        "_api_key",
        "_base_url",
        "_closed",
        "_dialect",
        "_drop_unsupported",
        "_headers",
        "_key_given",
        "_limits",
        "_log_url",
        "_loopback",
        "_owns_session",
        "_retry",
        "_session",
        "_shared",
        "_sleep",
        "_timeout",
        "_url",
        "_user_agent",
    )

    _default_sleep: ClassVar[Callable[[float], Any]]

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        session: _S | None = None,
        headers: Mapping[str, str] | None = None,
        allow_insecure_http: bool = False,
        dialect: Dialect | str = Dialect.MISTRAL,
        drop_unsupported: bool = False,
        limits: Limits | None = None,
        _sleep: Callable[[float], Any] | None = None,
    ) -> None:
        try:
            from chatdsl._version import __version__

            self._dialect = Dialect.coerce(dialect)
            self._drop_unsupported = check_flag("drop_unsupported", drop_unsupported)
            env = self._dialect.api_key_env
            target, target_env = base_url_or_env(self._dialect, base_url)
            self._key_given = api_key is not None
            if api_key is None and env_key_allowed(self._dialect, target):
                api_key = os.environ.get(env)
                if not api_key:  # Mistral's API, or OpenAI's own: both need a key
                    state = "is not set" if api_key is None else "is empty"
                    raise ValidationError("api_key", f"{state}; pass api_key=... or set the {env} environment variable")
            # an OpenAI-compatible server may need no key (a local vLLM, llama.cpp or Ollama): None or "" is none
            self._api_key = None if self._dialect is Dialect.OPENAI and not api_key else check_key(api_key, env)
            self._allow_insecure_http = bool(allow_insecure_http)
            self._base_url = check_base_url(
                target,
                # without a key nothing secret travels: plain http anywhere is the caller's business
                allow_insecure_http=self._allow_insecure_http or self._api_key is None,
                env=target_env,
            )
            self._loopback = is_loopback(urlsplit(self._base_url).hostname or "")
            self._url = self._base_url + PATH
            self._log_url = redact_url(self._url)
            self._timeout = Timeout.coerce(timeout)
            policy = RetryPolicy() if retry is None else retry
            if not isinstance(policy, RetryPolicy):
                raise ValidationError("retry", f"{policy!r} is not a RetryPolicy")
            self._retry = policy if max_retries is None else attrs.evolve(policy, max_retries=max_retries)
            self._headers = check_headers(headers)
            self._limits = DEFAULT_LIMITS if limits is None else limits
            if not isinstance(self._limits, Limits):
                raise ValidationError("limits", f"{self._limits!r} is not a Limits")
            self._owns_session = session is None
            self._session: _S = self._open(session)
            self._sleep: Callable[[float], Any] = type(self)._default_sleep if _sleep is None else _sleep
            self._user_agent = f"chatdsl/{__version__}"
            self._closed = False
            self._shared = SessionState(self._session if session is None else None)  # the parent's in with_options
        except Exception as exc:
            # this frame stays in the traceback: keep the key (and header values) out of its locals, and
            # drop the inner frames (whose arguments hold them too) — the message says what was wrong
            api_key = headers = session = None
            raise exc.with_traceback(None)  # noqa: B904 (the same exception, without its frames)

    def _open(self, session: _S | None) -> _S:
        """Return *session*, or a new one the client owns (the settings are set by then)."""
        raise NotImplementedError

    def _session_to_share(self) -> Any:
        """What :meth:`with_options` passes as ``session`` to the clients it derives."""
        return self._session

    # ------------------------------------------------------------------ settings

    @property
    def base_url(self) -> str:
        """The API's base URL (without a trailing slash)."""
        return self._base_url

    @property
    def dialect(self) -> Dialect:
        """The wire :class:`~chatdsl.Dialect` this client speaks."""
        return self._dialect

    @property
    def drop_unsupported(self) -> bool:
        """Whether request fields the dialect has no equivalent for are left out (logged) instead of refused."""
        return self._drop_unsupported

    @property
    def timeout(self) -> Timeout:
        """The default :class:`Timeout` of every call."""
        return self._timeout

    @property
    def retry(self) -> RetryPolicy:
        """The :class:`RetryPolicy` of every call."""
        return self._retry

    @property
    def max_retries(self) -> int:
        """How many times a failed call is sent again (``retry.max_retries``)."""
        return self._retry.max_retries

    @property
    def limits(self) -> Limits:
        """The :class:`Limits` of every call."""
        return self._limits

    @property
    def session(self) -> _S:
        """The transport's session every call goes through."""
        return self._session

    @property
    def headers(self) -> dict[str, str]:
        """A copy of the extra headers sent with every request."""
        return dict(self._headers)

    @property
    def closed(self) -> bool:
        """Whether this client was closed, or the client that owns its session."""
        return self._closed or self._shared.closed

    def with_options(
        self,
        *,
        api_key: str | UnsetType = UNSET,
        base_url: str | UnsetType = UNSET,
        timeout: Timeout | float | UnsetType = UNSET,
        max_retries: int | UnsetType = UNSET,
        retry: RetryPolicy | UnsetType = UNSET,
        headers: Mapping[str, str | None] | UnsetType = UNSET,
        allow_insecure_http: bool | UnsetType = UNSET,
        dialect: Dialect | str | UnsetType = UNSET,
        drop_unsupported: bool | UnsetType = UNSET,
        limits: Limits | UnsetType = UNSET,
    ) -> Self:
        """Return a new client with these settings changed, sharing this client's session.

        ``headers`` are merged into the current ones (a ``None`` value removes a header). The new
        client does not own the session: closing it closes only itself; closing the client that
        created the session closes the session and every client derived from it (they raise
        :class:`~chatdsl.ClientClosedError`). A new ``dialect`` keeps the key and base URL unless
        they are given too — except a key read from the environment, which is kept only where the
        new client could have read it itself (``OPENAI_API_KEY`` only for OpenAI's host).
        """
        merged = dict(self._headers)
        if not isinstance(headers, UnsetType):
            for name, value in headers.items():
                for existing in [k for k in merged if k.lower() == name.lower()]:
                    del merged[existing]
                if value is not None:
                    merged[name] = value
        policy = self._retry if isinstance(retry, UnsetType) else retry
        new_dialect = Dialect.coerce(self._dialect if isinstance(dialect, UnsetType) else dialect)
        new_base_url = self._base_url if isinstance(base_url, UnsetType) else base_url
        if not isinstance(api_key, UnsetType):
            key: str | None = api_key
        elif self._key_given or env_key_allowed(new_dialect, new_base_url):
            key = self._api_key or ""  # "": still no key
        else:
            key = ""  # a key from the environment does not travel to a host that would not have read it
        try:
            client = type(self)(
                key,
                base_url=new_base_url,
                timeout=self._timeout if isinstance(timeout, UnsetType) else timeout,
                max_retries=None if isinstance(max_retries, UnsetType) else max_retries,
                retry=policy,
                session=self._session_to_share(),
                headers=merged,
                allow_insecure_http=(
                    self._allow_insecure_http if isinstance(allow_insecure_http, UnsetType) else allow_insecure_http
                ),
                dialect=new_dialect,
                drop_unsupported=(
                    self._drop_unsupported if isinstance(drop_unsupported, UnsetType) else drop_unsupported
                ),
                limits=self._limits if isinstance(limits, UnsetType) else limits,
                _sleep=self._sleep,
            )
        except Exception as exc:
            key = None
            api_key = UNSET  # neither may stay in this frame's locals (see __init__)
            raise exc.with_traceback(None)  # noqa: B904
        client._key_given = self._key_given if isinstance(api_key, UnsetType) else True
        client._shared = self._shared  # closing the session's owner closes every client sharing it
        return client

    def __repr__(self) -> str:
        name = type(self).__name__
        if not hasattr(self, "_closed"):  # __init__ failed (a traceback's locals show it)
            return f"<{name}, not initialized>"
        key = "None" if self._api_key is None else "'***'"
        dialect = "" if self._dialect is Dialect.MISTRAL else f", dialect={self._dialect.value!r}"
        return (
            f"{name}(base_url={self._base_url!r}, api_key={key}, timeout={self._timeout!r}, "
            f"max_retries={self._retry.max_retries}{dialect})"
        )

    def __reduce_ex__(self, protocol: Any) -> Any:
        name = type(self).__name__
        raise TypeError(
            f"a chatdsl {name} cannot be pickled or copied: it holds the API key, which must not travel in bytes "
            f"you did not ask for; make a {name} where it is needed (or derive one with with_options())"
        )

    # ------------------------------------------------------------------ a call

    def _check_open(self) -> None:
        if self._closed or self._shared.closed:
            owner = "" if self._closed else " (the client that owns its session was closed)"
            raise ClientClosedError(f"this {type(self).__name__} is closed{owner}; it sends nothing more")

    def _mark_closed(self) -> bool:
        """Mark this client closed; return whether it must close its session now (it owns it, first close)."""
        if self._closed:
            return False
        self._closed = True
        if self._owns_session:
            self._shared.closed = True
            return True
        return False

    def _prepare(
        self,
        request: ChatCompletionRequest,
        *,
        stream: bool,
        headers: Mapping[str, str] | None,
        drop_unsupported: bool | None,
    ) -> tuple[bytes, dict[str, str]]:
        """Return the body and headers (without ``Authorization``) of the POST of *request*."""
        data = request.to_dict()
        if self._dialect is not Dialect.MISTRAL:
            drop = (
                self._drop_unsupported if drop_unsupported is None else check_flag("drop_unsupported", drop_unsupported)
            )
            openai_service = is_openai_service(self._base_url)
            data = to_wire(data, self._dialect, drop_unsupported=drop, openai_service=openai_service)
        body = dumps_bytes(data)
        accept = "text/event-stream" if stream else "application/json"
        return body, self._call_headers(content_type="application/json", accept=accept, stream=stream, headers=headers)

    def _call_headers(
        self, *, content_type: str | None, accept: str, stream: bool, headers: Mapping[str, str] | None
    ) -> dict[str, str]:
        """Return the headers (without ``Authorization``) of a call: the client's, then the call's *headers*."""
        send_headers = {"User-Agent": self._user_agent}
        if content_type is not None:
            send_headers["Content-Type"] = content_type
        send_headers["Accept"] = accept
        if stream:
            send_headers["Accept-Encoding"] = "identity"  # compression would hold events back
        send_headers.update(self._headers)
        if headers:
            send_headers.update(check_headers(headers))
        return send_headers

    def _endpoint(self, path: str) -> tuple[str, str]:
        """Return the URL of *path* (``/v1/...``) and its redacted form for messages and logs."""
        if path == PATH:
            return self._url, self._log_url
        url = self._base_url + path
        return url, redact_url(url)

    def _attempts(
        self,
        method: str,
        log_url: str,
        *,
        stream: bool,
        timeout: Timeout | float | None,
        max_retries: int | None,
        idempotent: bool = True,
        unsure: str = "",
    ) -> Attempts:
        """Begin a call (a closed client raises): the :class:`~chatdsl.client.retry.Attempts` of its retry
        loop, per-call overrides applied, its messages naming *method* and *log_url*."""
        self._check_open()
        limits = self._timeout if timeout is None else Timeout.coerce(timeout)
        policy = self._retry if max_retries is None else attrs.evolve(self._retry, max_retries=max_retries)
        return Attempts(
            policy,
            limits,
            log_url,
            stream=stream,
            client=type(self).__name__,
            method=method,
            idempotent=idempotent,
            unsure=unsure,
        )

    def _start_call(
        self,
        method: str,
        path: str,
        *,
        content_type: str | None,
        accept: str,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        unsure: str = "",
    ) -> tuple[str, dict[str, str], Attempts]:
        """Begin a call of *method* on *path* other than a chat completion (the Files and Batch APIs): its
        URL, headers (without ``Authorization``) and :class:`~chatdsl.client.retry.Attempts`.

        A call that is not *idempotent* (it creates something) is sent again only when it surely did not
        reach the server; any other failure says *unsure* (what may have been created, how to check)."""
        url, log_url = self._endpoint(path)
        attempts = self._attempts(
            method,
            log_url,
            stream=False,
            timeout=timeout,
            max_retries=max_retries,
            idempotent=idempotent,
            unsure=unsure,
        )
        send_headers = self._call_headers(content_type=content_type, accept=accept, stream=False, headers=headers)
        return url, send_headers, attempts

    def _start(
        self,
        request: ChatCompletionRequest,
        *,
        stream: bool,
        timeout: Timeout | float | None,
        max_retries: int | None,
        headers: Mapping[str, str] | None,
        drop_unsupported: bool | None,
    ) -> tuple[bytes, dict[str, str], Attempts]:
        """Begin a call (a closed client raises): the body, the headers (without ``Authorization``) and
        the :class:`~chatdsl.client.retry.Attempts` of its retry loop (per-call overrides applied)."""
        attempts = self._attempts("POST", self._log_url, stream=stream, timeout=timeout, max_retries=max_retries)
        body, send_headers = self._prepare(request, stream=stream, headers=headers, drop_unsupported=drop_unsupported)
        return body, send_headers, attempts

    def _stream_request(self, request: ChatCompletionRequest) -> tuple[ChatCompletionRequest, int, bool]:
        """Return *request* checked and set to stream, the number of choices to expect, and whether to fold usage."""
        request = checked(request).with_streaming()
        n = request.n if isinstance(request.n, int) else 1
        return request, max(1, n), self._dialect is Dialect.OPENAI

    @staticmethod
    def _plain_request(request: ChatCompletionRequest) -> ChatCompletionRequest:
        """Return *request* checked, and set not to stream."""
        request = checked(request)
        return request.with_streaming(False) if request.stream is True else request
