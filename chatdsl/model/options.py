"""Go-style functional options and the ``new_*`` constructors.

Every option is a callable from a request to a new request, and for every option
``req.apply(with_x(a)) == req.with_x(a)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chatdsl._types import UNSET, JSONValue, UnsetType
from chatdsl.model.guardrails import GuardrailConfig
from chatdsl.model.messages import Message
from chatdsl.model.request import ChatCompletionRequest, Option, SchemaLike
from chatdsl.model.tools import PromptMode, ReasoningEffort, ServiceTier, Tool, ToolChoice, ToolChoiceMode

__all__ = [
    "new_chat_completion_request",
    "new_chat_completion_stream_request",
    "with_extra",
    "with_frequency_penalty",
    "with_guardrails",
    "with_logprobs",
    "with_max_tokens",
    "with_metadata",
    "with_min_tokens",
    "with_model",
    "with_n",
    "with_parallel_tool_calls",
    "with_prediction",
    "with_presence_penalty",
    "with_prompt_cache_key",
    "with_prompt_logprobs",
    "with_prompt_mode",
    "with_random_seed",
    "with_reasoning_effort",
    "with_repetition_penalty",
    "with_response_json_object_format",
    "with_response_json_schema",
    "with_response_text_format",
    "with_safe_prompt",
    "with_service_tier",
    "with_stop",
    "with_streaming",
    "with_temperature",
    "with_tool_choice",
    "with_tools",
    "with_top_k",
    "with_top_logprobs",
    "with_top_p",
    "with_top_prompt_logprobs",
]


def _option(method: str, /, *args: Any, **kwargs: Any) -> Option:
    """Return an option calling the request method *method* with these arguments."""

    def option(request: ChatCompletionRequest) -> ChatCompletionRequest:
        return getattr(request, method)(*args, **kwargs)  # type: ignore[no-any-return]

    option.__name__ = option.__qualname__ = method
    return option


def with_response_text_format() -> Option:
    """Option: the answer is plain text (Go ``WithResponseTextFormat``)."""
    return _option("with_response_text_format")


def with_response_json_object_format() -> Option:
    """Option: the answer is a JSON object (Go ``WithResponseJsonObjectFormat``)."""
    return _option("with_response_json_object_format")


def with_response_json_schema(
    schema: SchemaLike,
    *,
    name: str | UnsetType | None = None,
    description: str | UnsetType | None = UNSET,
    strict: bool | UnsetType = True,
) -> Option:
    """Option: the answer follows *schema* (Go ``WithResponseJsonSchema``)."""
    return _option("with_response_json_schema", schema, name=name, description=description, strict=strict)


def with_tools(tools: Iterable[Tool]) -> Option:
    """Option: offer *tools*; sets tool choice ``auto`` unless one is set (Go ``WithTools``)."""
    return _option("with_tools", tuple(tools))


def with_tool_choice(choice: ToolChoice | ToolChoiceMode | str) -> Option:
    """Option: set the tool choice (Go ``WithToolChoice``)."""
    return _option("with_tool_choice", choice)


def with_streaming(flag: bool = True) -> Option:
    """Option: stream the answer (Go ``WithStreaming``)."""
    return _option("with_streaming", flag)


def with_model(model: str) -> Option:
    """Option: set ``model``."""
    return _option("with_model", model)


def with_max_tokens(max_tokens: int) -> Option:
    """Option: set ``max_tokens``."""
    return _option("with_max_tokens", max_tokens)


def with_temperature(temperature: float) -> Option:
    """Option: set ``temperature``."""
    return _option("with_temperature", temperature)


def with_top_p(top_p: float) -> Option:
    """Option: set ``top_p``."""
    return _option("with_top_p", top_p)


def with_frequency_penalty(penalty: float) -> Option:
    """Option: set ``frequency_penalty``."""
    return _option("with_frequency_penalty", penalty)


def with_presence_penalty(penalty: float) -> Option:
    """Option: set ``presence_penalty``."""
    return _option("with_presence_penalty", penalty)


def with_n(n: int) -> Option:
    """Option: set ``n``."""
    return _option("with_n", n)


def with_prompt_mode(mode: PromptMode | str) -> Option:
    """Option: set ``prompt_mode``."""
    return _option("with_prompt_mode", mode)


def with_random_seed(seed: int) -> Option:
    """Option: set ``random_seed``."""
    return _option("with_random_seed", seed)


def with_safe_prompt(flag: bool = True) -> Option:
    """Option: set ``safe_prompt``."""
    return _option("with_safe_prompt", flag)


def with_stop(*sequences: str) -> Option:
    """Option: set ``stop``."""
    return _option("with_stop", *sequences)


def with_parallel_tool_calls(flag: bool) -> Option:
    """Option: set ``parallel_tool_calls``."""
    return _option("with_parallel_tool_calls", flag)


def with_prediction(content: str) -> Option:
    """Option: set a predicted output."""
    return _option("with_prediction", content)


def with_reasoning_effort(effort: ReasoningEffort | str) -> Option:
    """Option: set ``reasoning_effort``."""
    return _option("with_reasoning_effort", effort)


def with_top_k(top_k: int) -> Option:
    """Option: set ``top_k``."""
    return _option("with_top_k", top_k)


def with_min_tokens(min_tokens: int) -> Option:
    """Option: set ``min_tokens``."""
    return _option("with_min_tokens", min_tokens)


def with_repetition_penalty(penalty: float) -> Option:
    """Option: set ``repetition_penalty``."""
    return _option("with_repetition_penalty", penalty)


def with_logprobs(flag: bool = True, *, top: int | UnsetType | None = UNSET) -> Option:
    """Option: set ``logprobs`` (and ``top_logprobs`` if *top* is given)."""
    return _option("with_logprobs", flag, top=top)


def with_top_logprobs(top: int) -> Option:
    """Option: set ``top_logprobs``."""
    return _option("with_top_logprobs", top)


def with_prompt_logprobs(flag: bool = True, *, top: int | UnsetType | None = UNSET) -> Option:
    """Option: set ``prompt_logprobs`` (and ``top_prompt_logprobs`` if *top* is given)."""
    return _option("with_prompt_logprobs", flag, top=top)


def with_top_prompt_logprobs(top: int) -> Option:
    """Option: set ``top_prompt_logprobs``."""
    return _option("with_top_prompt_logprobs", top)


def with_guardrails(*guardrails: GuardrailConfig) -> Option:
    """Option: set ``guardrails``."""
    return _option("with_guardrails", *guardrails)


def with_service_tier(tier: ServiceTier | str) -> Option:
    """Option: set ``service_tier``."""
    return _option("with_service_tier", tier)


def with_metadata(metadata: Mapping[str, JSONValue]) -> Option:
    """Option: set ``metadata``."""
    return _option("with_metadata", metadata)


def with_prompt_cache_key(key: str) -> Option:
    """Option: set ``prompt_cache_key``."""
    return _option("with_prompt_cache_key", key)


def with_extra(**fields: JSONValue) -> Option:
    """Option: send extra, unmodelled fields."""
    return _option("with_extra", **fields)


def new_chat_completion_request(model: str, messages: Sequence[Message], *options: Option) -> ChatCompletionRequest:
    """Return a request for *model* and *messages* with *options* applied (Go ``NewChatCompletionRequest``)."""
    return ChatCompletionRequest(model=model, messages=tuple(messages)).apply(*options)


def new_chat_completion_stream_request(
    model: str, messages: Sequence[Message], *options: Option
) -> ChatCompletionRequest:
    """Return a streaming request (Go ``NewChatCompletionStreamRequest``): ``stream`` set, then *options*."""
    return ChatCompletionRequest(model=model, messages=tuple(messages), stream=True).apply(*options)
