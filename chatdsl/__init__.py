"""chatdsl: compose Mistral chat-completion requests with an immutable fluent builder, and send them.

>>> import chatdsl
>>> base = chatdsl.chat("mistral-small-latest").system("Answer in one word.")
>>> base.user("Capital of France?").with_temperature(0).to_dict()["temperature"]
0
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._dialects import Dialect
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ChatDSLError,
    ClientClosedError,
    InternalServerError,
    MalformedResponseError,
    NotFoundError,
    OutputError,
    PermissionDeniedError,
    RateLimitError,
    StreamError,
    TemplateError,
    ToolLoopError,
    UnprocessableEntityError,
    ValidationError,
)
from ._guardrails import GuardrailConfig, ModerationAction, ModerationConfig
from ._messages import (
    AssistantMessage,
    AudioChunk,
    Content,
    ContentChunk,
    DocumentURLChunk,
    FileChunk,
    FunctionCall,
    ImageDetail,
    ImageURLChunk,
    Message,
    ReferenceChunk,
    Role,
    SystemMessage,
    TextChunk,
    ThinkChunk,
    ToolCall,
    ToolMessage,
    ToolReferenceChunk,
    UnknownChunk,
    UserMessage,
)
from ._options import (
    new_chat_completion_request,
    new_chat_completion_stream_request,
    with_extra,
    with_frequency_penalty,
    with_guardrails,
    with_logprobs,
    with_max_tokens,
    with_metadata,
    with_min_tokens,
    with_model,
    with_n,
    with_parallel_tool_calls,
    with_prediction,
    with_presence_penalty,
    with_prompt_cache_key,
    with_prompt_logprobs,
    with_prompt_mode,
    with_random_seed,
    with_reasoning_effort,
    with_repetition_penalty,
    with_response_json_object_format,
    with_response_json_schema,
    with_response_text_format,
    with_safe_prompt,
    with_service_tier,
    with_stop,
    with_streaming,
    with_temperature,
    with_tool_choice,
    with_tools,
    with_top_k,
    with_top_logprobs,
    with_top_p,
    with_top_prompt_logprobs,
)
from ._request import ChatCompletionRequest, Option, chat
from ._response import (
    ChatCompletionChoice,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionResponseStreamChoice,
    FinishReason,
    PromptTokensDetails,
    RateLimitInfo,
    UsageInfo,
)
from ._tools import (
    Function,
    JsonSchema,
    Prediction,
    PromptMode,
    PropertyDefinition,
    ReasoningEffort,
    ResponseFormat,
    ResponseFormatType,
    ServiceTier,
    Tool,
    ToolChoice,
    ToolChoiceMode,
)
from ._types import UNSET, FrozenDict, FrozenList, JSONValue, UnsetType

if TYPE_CHECKING:  # imported on first use (see __getattr__): `import chatdsl` stays cheap
    from ._client import ChatCompletionStream, Client, Limits, RetryPolicy, Timeout
    from ._functions import FunctionTool, tool
    from ._loop import ToolRunResult
    from ._schema import json_schema
    from ._templates import RequestTemplate, TemplateInfo, TemplateLibrary, Variable

_LAZY: dict[str, str] = {
    "ChatCompletionStream": "._client",
    "Client": "._client",
    "Limits": "._client",
    "RetryPolicy": "._client",
    "Timeout": "._client",
    "FunctionTool": "._functions",
    "tool": "._functions",
    "ToolRunResult": "._loop",
    "json_schema": "._schema",
    "RequestTemplate": "._templates",
    "TemplateInfo": "._templates",
    "TemplateLibrary": "._templates",
    "Variable": "._templates",
}


def __getattr__(name: str) -> Any:
    """Import the client, templates, schemas and tool helpers on first use (PEP 562)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'chatdsl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "UNSET",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AssistantMessage",
    "AudioChunk",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletionChoice",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatCompletionStream",
    "ChatDSLError",
    "Client",
    "ClientClosedError",
    "CompletionChunk",
    "CompletionResponseStreamChoice",
    "Content",
    "ContentChunk",
    "Dialect",
    "DocumentURLChunk",
    "FileChunk",
    "FinishReason",
    "FrozenDict",
    "FrozenList",
    "Function",
    "FunctionCall",
    "FunctionTool",
    "GuardrailConfig",
    "ImageDetail",
    "ImageURLChunk",
    "InternalServerError",
    "JSONValue",
    "JsonSchema",
    "Limits",
    "MalformedResponseError",
    "Message",
    "ModerationAction",
    "ModerationConfig",
    "NotFoundError",
    "Option",
    "OutputError",
    "PermissionDeniedError",
    "Prediction",
    "PromptMode",
    "PromptTokensDetails",
    "PropertyDefinition",
    "RateLimitError",
    "RateLimitInfo",
    "ReasoningEffort",
    "ReferenceChunk",
    "RequestTemplate",
    "ResponseFormat",
    "ResponseFormatType",
    "RetryPolicy",
    "Role",
    "ServiceTier",
    "StreamError",
    "SystemMessage",
    "TemplateError",
    "TemplateInfo",
    "TemplateLibrary",
    "TextChunk",
    "ThinkChunk",
    "Timeout",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "ToolChoiceMode",
    "ToolLoopError",
    "ToolMessage",
    "ToolReferenceChunk",
    "ToolRunResult",
    "UnknownChunk",
    "UnprocessableEntityError",
    "UnsetType",
    "UsageInfo",
    "UserMessage",
    "ValidationError",
    "Variable",
    "__version__",
    "chat",
    "json_schema",
    "new_chat_completion_request",
    "new_chat_completion_stream_request",
    "tool",
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
