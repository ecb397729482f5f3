"""Wire dialects: one request model, spelled for Mistral's API or for OpenAI-compatible servers.

The request model mirrors Mistral's API, so ``request.to_dict()`` *is* the Mistral body. For another
dialect :func:`to_wire` rewrites that body just before it is encoded; the whole mapping lives here.
Every field ends up in one of four ways:

- **the same**: sent as it is (``model``, ``messages`` text, ``temperature``, ``tools``, ``n``,
  ``logprobs``, ``top_logprobs``, ``reasoning_effort`` but ``"max"``, ...);
- **renamed or respelled, same meaning**: ``random_seed`` → ``seed``; ``tool_choice`` ``"any"`` →
  ``"required"``; ``service_tier`` ``"standard_only"`` → ``"default"`` (standard capacity only);
  an image part's URL string → ``{"url": ...}``; a file part ``{"file_id"}`` →
  ``{"file": {"file_id"}}``; tool-call arguments given as an object → a JSON string; an empty
  ``stop`` list or content-part list → left out / ``""``;
- **left out because it states the default of both sides**: ``safe_prompt: false``, an assistant
  message's ``prefix: false``, a tool call's ``index`` and a tool message's ``name`` (the call id
  already names the call);
- **no equivalent**: a :class:`~chatdsl.ValidationError` raised before anything is sent, one line
  per field, naming the field and the dialect — unless ``drop_unsupported=True``, which leaves such
  fields out and logs their paths at INFO on the ``chatdsl`` logger. Nothing changes meaning
  silently. Without an equivalent: ``prompt_mode``, ``safe_prompt: true``, ``prompt_logprobs``,
  ``top_prompt_logprobs``, ``guardrails``, ``reasoning_effort: "max"``.

Sampling fields OpenAI's own API lacks but the servers that copy it take (vLLM, llama.cpp's server,
Ollama's OpenAI endpoint: ``top_k``, ``min_tokens``, ``repetition_penalty``) are sent as they are,
except to OpenAI's own service (``openai_service=True``; a :class:`~chatdsl.Client` passes it when
its host is ``api.openai.com``), where they have no equivalent. An enum value chatdsl does not know
(a newer ``reasoning_effort`` or ``service_tier``) is sent as it is: the server decides.

The dialect checks names, types and shapes. Size limits of OpenAI's own service (at most 4 ``stop``
sequences, ``n`` up to 128, 16 ``metadata`` pairs) are left to the server: self-hosted servers set
their own. Fields added with ``with_extra`` are sent as they are in every dialect.

Reading an OpenAI body back into a request (what ``chatdsl.testing.LocalServer`` does to speak the
OpenAI dialect) lives in :mod:`chatdsl.testing.openai_request`: this module imports no model.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any, Final

from chatdsl import _json
from chatdsl._errors import ValidationError
from chatdsl._types import short_repr

__all__ = ["OPENAI_REQUEST_FIELDS", "SAMPLING_EXTENSIONS", "SERVICE_TIERS_FROM_OPENAI", "Dialect", "to_wire"]

logger: Final = logging.getLogger("chatdsl")


class Dialect(enum.StrEnum):
    """The wire dialect a :class:`~chatdsl.Client` (or ``LocalServer``) speaks; the request model is the same.

    ``MISTRAL``: Mistral's API — the request model's own wire format (``"mistral"``, the default).
    ``OPENAI``: OpenAI's chat-completions API and the servers that copy it: vLLM, llama.cpp's
    server, Ollama, LM Studio (``"openai"``). Both post to ``{base_url}/v1/chat/completions``.
    """

    MISTRAL = "mistral"
    OPENAI = "openai"

    @classmethod
    def coerce(cls, value: Dialect | str) -> Dialect:
        """Return *value* as a :class:`Dialect`; any other value is a :class:`~chatdsl.ValidationError`."""
        if isinstance(value, Dialect):
            return value
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
        known = ", ".join(repr(d.value) for d in cls)
        raise ValidationError("dialect", f"{value!r} is not a dialect ({known})")

    @property
    def default_base_url(self) -> str:
        """The base URL a client of this dialect uses when none is given."""
        return _BASE_URLS[self]

    @property
    def api_key_env(self) -> str:
        """The environment variable a client of this dialect reads when no ``api_key`` is given."""
        return _KEY_ENVS[self]


_BASE_URLS: Final = {Dialect.MISTRAL: "https://api.mistral.ai", Dialect.OPENAI: "https://api.openai.com"}
_KEY_ENVS: Final = {Dialect.MISTRAL: "MISTRAL_API_KEY", Dialect.OPENAI: "OPENAI_API_KEY"}


def to_wire(
    body: dict[str, Any], dialect: Dialect | str, *, drop_unsupported: bool = False, openai_service: bool = False
) -> dict[str, Any]:
    """Return the Mistral wire *body* (``request.to_dict()``) spelled for *dialect*.

    For ``"mistral"`` the body itself is returned. For ``"openai"`` a new body is returned (the
    given one is not changed); fields without an equivalent raise one
    :class:`~chatdsl.ValidationError` listing them all, or with *drop_unsupported* are left out
    (their paths logged at INFO on the ``chatdsl`` logger). *openai_service*: the body goes to
    OpenAI's own API, which lacks the sampling fields of self-hosted servers (:data:`SAMPLING_EXTENSIONS`).
    """
    if dialect is Dialect.MISTRAL or Dialect.coerce(dialect) is Dialect.MISTRAL:
        return body
    return _ToOpenAI(drop_unsupported, openai_service).request(body)


SAMPLING_EXTENSIONS: Final = frozenset({"top_k", "min_tokens", "repetition_penalty"})
"""Sampling fields vLLM, llama.cpp's server and Ollama take in the openai dialect; OpenAI's own API does not."""

_SERVICE_TIERS_TO_OPENAI: Final = {"standard_only": "default"}
SERVICE_TIERS_FROM_OPENAI: Final = {"default": "standard_only"}
_NO_OPENAI_FIELD: Final = {
    "prompt_mode": "use reasoning_effort for reasoning models",
    "prompt_logprobs": "OpenAI returns no log probabilities of the prompt",
    "top_prompt_logprobs": "OpenAI returns no log probabilities of the prompt",
    "guardrails": "OpenAI's chat API takes no moderation settings",
}


# ----------------------------------------------------------------------------- Mistral -> OpenAI

_ADVICE: Final = "leave it out, or pass drop_unsupported=True"

_PART_REASONS: Final = {
    "document_url": "OpenAI has no document-URL content part",
    "reference": "OpenAI has no reference content part",
    "thinking": "OpenAI takes no thinking parts in a request",
    "input_audio": (
        "OpenAI's input_audio part needs base64 data and its format (wav or mp3), which a Mistral audio part "
        "does not carry"
    ),
}
_USER_PARTS: Final = frozenset({"text", "image_url", "file"})


def _key_path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if key.isidentifier() else f"{prefix}[{key!r}]"


class _ToOpenAI:
    """One mapping of a Mistral body to OpenAI's spelling, collecting problems and dropped paths."""

    __slots__ = ("drop", "dropped", "openai_service", "problems")

    def __init__(self, drop: bool, openai_service: bool = False) -> None:
        self.drop = drop
        self.openai_service = openai_service
        self.dropped: list[str] = []
        self.problems: list[tuple[str, str]] = []

    def unsupported(self, path: str, what: str, why: str) -> None:
        if self.drop:
            self.dropped.append(path)
        else:
            self.problems.append((path, f"{what} has no equivalent in the openai dialect ({why}); {_ADVICE}"))

    def request(self, body: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key == "random_seed":
                if "seed" in body:
                    self.problems.append(
                        ("random_seed", "is set and so is the extra field 'seed'; the openai dialect sends it as seed")
                    )
                else:
                    out["seed"] = value
            elif key == "safe_prompt":
                if value is not False:
                    self.unsupported(key, short_repr(value, 60), "OpenAI's API injects no safety prompt")
            elif key in _NO_OPENAI_FIELD:
                self.unsupported(key, short_repr(value, 60), _NO_OPENAI_FIELD[key])
            elif key in SAMPLING_EXTENSIONS and self.openai_service:
                self.unsupported(
                    key, short_repr(value, 60), "api.openai.com refuses it; vLLM, llama.cpp and Ollama take it"
                )
            elif key == "reasoning_effort" and value == "max":
                self.unsupported(key, short_repr(value, 60), "OpenAI's highest reasoning effort is 'xhigh'")
            elif key == "service_tier":
                out[key] = _SERVICE_TIERS_TO_OPENAI.get(value, value) if isinstance(value, str) else value
            elif key == "tool_choice":
                out[key] = "required" if value == "any" else value
            elif key == "stop":
                if value != []:  # no stop sequences at all: OpenAI wants the field left out then
                    out[key] = value
            elif key == "metadata" and isinstance(value, Mapping):
                out[key] = self.metadata(value)
            elif key == "messages" and isinstance(value, list):
                out[key] = [self.message(message, f"messages[{i}]") for i, message in enumerate(value)]
            else:
                out[key] = value
        if out.get("stream") is True:
            options = out.get("stream_options")
            if options is None:
                out["stream_options"] = {"include_usage": True}
            elif isinstance(options, Mapping) and "include_usage" not in options:
                out["stream_options"] = {**options, "include_usage": True}
        if self.problems:
            raise ValidationError("", "", errors=self.problems)
        if self.dropped:
            logger.info("openai dialect: left out %s (no equivalent; drop_unsupported=True)", ", ".join(self.dropped))
        return out

    def metadata(self, value: Mapping[str, Any]) -> Mapping[str, Any]:
        kept = {}
        for key, item in value.items():
            if isinstance(item, str):
                kept[key] = item
            else:
                self.unsupported(
                    _key_path("metadata", key),
                    f"the value {short_repr(item, 60)}",
                    "OpenAI's metadata values are strings",
                )
        return value if len(kept) == len(value) else kept

    def message(self, message: Mapping[str, Any], path: str) -> dict[str, Any]:
        out = dict(message)
        role = out.get("role")
        if role == "assistant":
            prefix = out.pop("prefix", False)
            if prefix is not False:
                self.unsupported(f"{path}.prefix", short_repr(prefix, 60), "OpenAI cannot continue a prefix message")
            calls = out.get("tool_calls")
            if isinstance(calls, list):
                out["tool_calls"] = [self.tool_call(call, f"{path}.tool_calls[{i}]") for i, call in enumerate(calls)]
        elif role == "tool":
            out.pop("name", None)  # OpenAI's tool messages have no name: tool_call_id already names the call
        content = out.get("content")
        if isinstance(content, list):
            parts = [self.part(part, role, f"{path}.content[{j}]") for j, part in enumerate(content)]
            kept = [part for part in parts if part is not None]
            out["content"] = kept if kept else ""  # OpenAI wants at least one part; no parts is no text
        return out

    def tool_call(self, call: Mapping[str, Any], path: str) -> dict[str, Any]:
        out = {key: value for key, value in call.items() if key != "index"}  # a streaming detail
        if "id" not in out:
            self.problems.append((f"{path}.id", "is required by the openai dialect (tool results answer a call id)"))
        function = out.get("function")
        if isinstance(function, Mapping) and not isinstance(function.get("arguments"), str):
            out["function"] = {**function, "arguments": _json.dumps(function.get("arguments"))}
        return out

    def part(self, part: Mapping[str, Any], role: Any, path: str) -> Mapping[str, Any] | None:
        kind = part.get("type")
        if kind == "text":
            return part
        if role == "user" and kind in _USER_PARTS:
            if kind == "image_url":
                image = part.get("image_url")
                return {"type": "image_url", "image_url": {"url": image}} if isinstance(image, str) else part
            return {"type": "file", "file": {"file_id": part.get("file_id")}}
        reason = _PART_REASONS.get(str(kind)) if role == "user" else None
        reason = reason or f"OpenAI's {role} messages take only text parts"
        self.unsupported(path, f"a {kind!r} part", reason)
        return None


# ----------------------------------------------------------------------------- OpenAI -> request

OPENAI_REQUEST_FIELDS: Final = frozenset(
    {
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "messages",
        "metadata",
        "modalities",
        "model",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
"""The top-level fields of OpenAI's chat-completions request (its API reference, 2026)."""
