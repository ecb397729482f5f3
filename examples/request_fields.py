"""Every field of the current request API: sampling, log probabilities, guardrails, service tier.

Runs offline: it builds requests and prints their wire bodies (Mistral's, then the OpenAI dialect's).
"""

from __future__ import annotations

import chatdsl
from chatdsl import (
    GuardrailConfig,
    ModerationAction,
    ModerationConfig,
    ReasoningEffort,
    ServiceTier,
    ValidationError,
    with_guardrails,
    with_logprobs,
    with_min_tokens,
    with_prompt_logprobs,
    with_reasoning_effort,
    with_repetition_penalty,
    with_service_tier,
    with_top_k,
    with_top_logprobs,
    with_top_prompt_logprobs,
)

# Guardrails: moderate the conversation with Mistral's moderation model, block above a threshold.
moderation = GuardrailConfig(
    block_on_error=True,
    moderation_llm_v2=ModerationConfig(
        custom_category_thresholds={"pii": 0.2, "jailbreaking": 0.5},
        ignore_other_categories=True,
        action=ModerationAction.BLOCK,
    ),
)

# The builder ...
request = (
    chatdsl.chat("mistral-small-latest")
    .user("Name three prime numbers.")
    .with_top_k(40)
    .with_min_tokens(5)
    .with_repetition_penalty(1.1)
    .with_logprobs(top=3)
    .with_reasoning_effort(ReasoningEffort.LOW)
    .with_service_tier(ServiceTier.STANDARD_ONLY)
    .with_guardrails(moderation)
)
print(request.to_json(indent=2))

# ... and the same request from Go-style options.
same = chatdsl.new_chat_completion_request(
    "mistral-small-latest",
    [chatdsl.UserMessage(content="Name three prime numbers.")],
    with_top_k(40),
    with_min_tokens(5),
    with_repetition_penalty(1.1),
    with_logprobs(),
    with_top_logprobs(3),
    with_reasoning_effort("low"),
    with_service_tier("standard_only"),
    with_guardrails(moderation),
)
print("options build the same request:", same == request)

# Log probabilities of the prompt too (Mistral only).
print(chatdsl.chat("m").apply(with_prompt_logprobs(), with_top_prompt_logprobs(2)).to_json())

# Enums stay open: a value chatdsl does not know yet is sent as it is.
print(chatdsl.chat("m").with_reasoning_effort("ultra").to_json())

# The OpenAI dialect: logprobs and reasoning_effort as they are, standard_only is OpenAI's "default";
# top_k, min_tokens and repetition_penalty go to vLLM, llama.cpp or Ollama; guardrails have no equivalent.
print("openai dialect:", request.to_json(dialect="openai", drop_unsupported=True))
try:
    request.to_dict(dialect="openai")
except ValidationError as exc:
    print("refused:", exc)
