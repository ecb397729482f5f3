"""Transport-free client settings and input checks: :class:`Timeout`, :class:`RetryPolicy`, :class:`Limits`.

Also the checks of an API key, a base URL (with its loopback rules; read from the environment
when none is given), extra headers, and which environment key a client may read. Nothing here
imports ``requests`` or ``urllib3``, so an asyncio client can share it.
"""

from __future__ import annotations

import ipaddress
import math
import os
import random
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import attrs

from chatdsl._errors import ValidationError
from chatdsl.wire.dialects import Dialect

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENVS",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "Limits",
    "RetryPolicy",
    "Timeout",
    "base_url_or_env",
    "env_key_allowed",
]

API_KEY_ENV: Final = "MISTRAL_API_KEY"
"""The environment variable :class:`Client` reads when no ``api_key`` is given."""

BASE_URL_ENVS: Final[Mapping[Dialect, str]] = {Dialect.MISTRAL: "MISTRAL_BASE_URL", Dialect.OPENAI: "OPENAI_BASE_URL"}
"""The environment variable a client of each dialect reads when no ``base_url`` is given (as the OpenAI SDK does)."""

# ------------------------------------------------------------------------------------ settings


def _seconds(name: str) -> Callable[[Any, Any, Any], None]:
    def check(_: Any, attribute: Any, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValidationError(f"{name}.{attribute.name}", f"{value!r} is not a positive number of seconds or None")

    return check


@attrs.frozen(kw_only=True)
class Timeout:
    """How long a call may take, in seconds (``None``: no limit).

    ``connect``: to open the connection. ``read``: the longest silence between two received bytes
    (for a non-streamed call this includes the whole generation before the first byte; a stalled
    stream ends with an error chunk after it). ``total``: a deadline for the whole call — connecting,
    sending, the response headers and the body, retries and backoff included; a stream still open at
    the deadline ends with an error chunk. One scheduler thread serves every deadline: at the deadline
    it shuts the call's socket down, so a server trickling bytes (header lines included) cannot hold
    a call past it. (With a ``session`` you pass, whose pools chatdsl does not make, connecting,
    sending and the headers are bounded by ``connect`` and ``read`` capped at the time left; the
    body is cut at the deadline all the same.) It is ``None``
    by default, because one deadline for every call would cut long streams and slow plain answers
    alike; set it when a call must end by a given time (a server trickling bytes faster than
    ``read`` is stopped by nothing else).
    """

    connect: float | None = attrs.field(default=5.0, validator=_seconds("timeout"))
    read: float | None = attrs.field(default=120.0, validator=_seconds("timeout"))
    total: float | None = attrs.field(default=None, validator=_seconds("timeout"))

    @classmethod
    def coerce(cls, value: Timeout | float) -> Timeout:
        """Return *value* as a :class:`Timeout`; a number sets ``connect`` and ``read`` (like ``requests``)."""
        if isinstance(value, Timeout):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("timeout", f"{value!r} is not a Timeout or a number of seconds")
        return cls(connect=value, read=value)


def _non_negative(_: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValidationError(f"retry.{attribute.name}", f"{value!r} is not a non-negative number")


def _retries(_: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(attribute.name, f"{value!r} is not a non-negative integer")


def _fraction(_: Any, attribute: Any, value: Any) -> None:
    _non_negative(_, attribute, value)
    if value > 1:
        raise ValidationError(f"retry.{attribute.name}", f"{value!r} is above 1")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how long to wait before sending a call again.

    Retried: connection errors, timeouts before any response byte, HTTP 408, 409, 429 and 5xx, up
    to ``max_retries`` times. Never: other 4xx, or anything after a success status arrived — a
    malformed, cut or stalled body, a stream — since the server has accepted (and may have billed)
    the request. A read timeout before the first byte is retried, so an answer slower to start than
    ``Timeout.read`` may be generated more than once.
    The n-th retry (n = 0, 1, …) waits ``min(max_delay, initial_delay * multiplier ** n)`` reduced
    by a random fraction of up to ``jitter`` — unless the server sent ``Retry-After`` (seconds or
    an HTTP date) or ``retry-after-ms``: then exactly that. A wait longer than ``max_retry_after``
    is not done: the error is raised at once (a :class:`~chatdsl.RateLimitError` keeps
    ``retry_after``). No retry starts if its wait would pass the call's total deadline.
    """

    max_retries: int = attrs.field(default=2, validator=_retries)
    initial_delay: float = attrs.field(default=0.5, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.25, validator=_fraction)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)

    def should_retry_status(self, status: int) -> bool:
        """Return whether an answer with HTTP *status* is worth sending again."""
        return status in (408, 409, 429) or 500 <= status <= 599

    def backoff(self, retry: int, retry_after: float | None = None, *, rand: float | None = None) -> float | None:
        """Return the seconds to wait before retry number *retry* (from 0), or ``None`` to give up.

        *retry_after* is the server's wait, if it gave one; *rand* (in [0, 1)) replaces the random
        draw of the jitter, for tests.
        """
        if retry_after is not None:
            return None if retry_after > self.max_retry_after else max(0.0, retry_after)
        base = min(self.max_delay, self.initial_delay * self.multiplier**retry)
        draw = random.random() if rand is None else rand
        return base * (1.0 - self.jitter * draw)


DEFAULT_TIMEOUT: Final = Timeout()


def _size(_: Any, attribute: Any, value: Any) -> None:
    if value is None and attribute.name != "pool_maxsize":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive integer" if attribute.name == "pool_maxsize" else "a positive number of bytes or None"
        raise ValidationError(f"limits.{attribute.name}", f"{value!r} is not {allowed}")


@attrs.frozen(kw_only=True)
class Limits:
    """Resource bounds of a :class:`Client` (``None``: no limit).

    ``max_response_size``: the most bytes of one plain response body (counted after
    decompression); a body past it is a :class:`~chatdsl.MalformedResponseError` (not retried).
    ``max_stream_size``: the most bytes of one streamed body (default ``None``: unbounded — a long
    reasoning stream is legitimate; a stream keeps one event at a time, plus the merged answer for
    ``final_response()``); a stream past it ends with an error chunk. ``max_event_size``: the most
    bytes of one server-sent event; a stream with a larger event ends with an error chunk.
    ``pool_maxsize``: how
    many connections per host are kept open for reuse (for the session the client makes; a
    ``session`` you pass keeps its own adapters) — keep it at least the number of threads sharing
    the client, or connections beyond it are closed after each call and opened again.
    """

    max_response_size: int | None = attrs.field(default=32 << 20, validator=_size)
    max_stream_size: int | None = attrs.field(default=None, validator=_size)
    max_event_size: int | None = attrs.field(default=4 << 20, validator=_size)
    pool_maxsize: int = attrs.field(default=20, validator=_size)


DEFAULT_LIMITS: Final = Limits()


def check_key(api_key: Any, env: str = API_KEY_ENV) -> str:
    if not isinstance(api_key, str):
        raise ValidationError("api_key", f"is {type(api_key).__name__}, not a string")
    if not api_key:
        raise ValidationError("api_key", f"is empty; pass api_key=... or set the {env} environment variable")
    if not api_key.isascii() or not api_key.isprintable() or any(ch.isspace() for ch in api_key):
        raise ValidationError("api_key", "holds whitespace, control or non-ASCII characters; a key is one token")
    return api_key


def is_loopback(host: str) -> bool:
    """Whether *host* is this machine: ``localhost``, a loopback address, or a ``*.localhost`` name
    that resolves to loopback addresses only (such names are not loopback by themselves everywhere)."""
    host = host.lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not host.endswith(".localhost"):
        return False
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in found}
    return bool(addresses) and all(_loopback_address(address) for address in addresses)


def _loopback_address(address: object) -> bool:
    try:
        return ipaddress.ip_address(str(address).partition("%")[0]).is_loopback
    except ValueError:
        return False


def base_url_or_env(
    dialect: Dialect, base_url: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """Return the base URL a client of *dialect* uses, and the environment variable it came from.

    An explicit *base_url* wins; without one, the dialect's variable (``MISTRAL_BASE_URL``, or
    ``OPENAI_BASE_URL`` for ``"openai"``) when it is set and not blank; else the dialect's default.
    The variable's name is ``None`` unless the URL came from it (so its checks can name it).
    """
    if base_url is not None:
        return base_url, None
    name = BASE_URL_ENVS[dialect]
    value = (os.environ if environ is None else environ).get(name, "")
    if value.strip():
        return value, name
    return dialect.default_base_url, None


def check_base_url(base_url: Any, *, allow_insecure_http: bool, env: str | None = None) -> str:
    """Return *base_url* checked and normalised (no trailing ``/``); *env*: the variable it was read from.

    A refused URL is a :class:`~chatdsl.ValidationError` on ``base_url`` that names *env* when the
    value came from the environment, so a stale variable is found at once. A variable's value may end
    with one ``/v1`` (the OpenAI SDK's convention for ``OPENAI_BASE_URL``), which is dropped since
    chatdsl adds ``/v1/chat/completions`` itself; an argument ending with ``/v1`` is refused.
    """
    try:
        return _checked_base_url(base_url, allow_insecure_http=allow_insecure_http, drop_v1=env is not None)
    except ValidationError as exc:
        if env is None:
            raise
        raise ValidationError("base_url", f"{exc.errors[0][1]} (read from the {env} environment variable)") from None


def _checked_base_url(base_url: Any, *, allow_insecure_http: bool, drop_v1: bool = False) -> str:
    if not isinstance(base_url, str):
        raise ValidationError("base_url", f"{base_url!r} is not a string")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("base_url", f"{base_url!r} is not an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValidationError("base_url", f"{redact_url(base_url)!r} has a query or fragment; give the base only")
    if "@" in parts.netloc:
        raise ValidationError(
            "base_url",
            f"{redact_url(base_url)!r} holds user:password@ credentials, which chatdsl would not send (the "
            "Authorization header carries the API key); pass a proxy's credentials with headers=... or a session=...",
        )
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise ValidationError(
            "base_url",
            f"{redact_url(base_url)!r} is plain http to a remote host, which would send the API key "
            "unencrypted; use https, or pass allow_insecure_http=True if you mean it",
        )
    checked = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    if checked.endswith("/v1") and drop_v1:
        checked = checked[:-3]  # one: a second is refused below
    if checked.endswith("/v1"):
        raise ValidationError(
            "base_url",
            f"{redact_url(checked)!r} ends with /v1, and chatdsl adds /v1/chat/completions itself; "
            f"pass {redact_url(checked[:-3])!r}",
        )
    return checked


def redact_url(url: str) -> str:
    """Return *url* without a ``user:password@`` part (for logs and messages)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, "***@" + parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))


def env_key_allowed(dialect: Dialect, base_url: str) -> bool:
    """Whether a client of *dialect* sending to *base_url* may read its key from the environment.

    ``MISTRAL_API_KEY`` is read for any host (proxies in front of Mistral's API are common);
    ``OPENAI_API_KEY`` only for OpenAI's own host, so a key for OpenAI never travels to a local or
    third-party server by accident.
    """
    if dialect is not Dialect.OPENAI:
        return True
    host = urlsplit(base_url.strip()).hostname if isinstance(base_url, str) else None
    return host == urlsplit(dialect.default_base_url).hostname


def is_openai_service(base_url: str) -> bool:
    """Whether *base_url* is OpenAI's own API (which refuses the sampling fields self-hosted servers take)."""
    return urlsplit(base_url).hostname == urlsplit(Dialect.OPENAI.default_base_url).hostname


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(name, f"{value!r} is not True or False")
    return value


_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE: Final = re.compile(r"(?:[\x21-\x7e\x80-\xff](?:[\x20-\x7e\x80-\xff\t]*[\x21-\x7e\x80-\xff])?)?")


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Return *headers* as a dict, each name a token and each value one line of visible characters.

    A refused value is never shown (it may be a token read from a file, with its trailing newline).
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ValidationError("headers", f"is {type(headers).__name__}, not a mapping of names to values")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            shown = repr(name) if isinstance(name, str) and len(name) <= 40 else f"a {type(name).__name__}"
            raise ValidationError("headers", f"{shown} is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)")
        if not isinstance(value, str):
            raise ValidationError(f"headers[{name!r}]", f"is {type(value).__name__}, not a string")
        if not _HEADER_VALUE.fullmatch(value):
            raise ValidationError(
                f"headers[{name!r}]",
                "is not one line of visible characters (a newline, control character, leading or trailing "
                "whitespace, or a character beyond Latin-1); the value is not shown, as it may be a secret",
            )
        out[name] = value
    return out
