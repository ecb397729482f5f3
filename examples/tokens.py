"""Count a request's prompt tokens offline, as the model sees them (needs ``pip install 'chatdsl[tokens]'``)."""

from __future__ import annotations

import chatdsl
from chatdsl import Function, TokenCount, Tool

weather = Tool(
    function=Function(
        name="weather",
        description="The weather of a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
)
request = (
    chatdsl.chat("mistral-large-2411")
    .with_tools([weather])
    .system("You answer in one sentence.")
    .user("What is the weather in Paris?")
)

try:
    exact: TokenCount = chatdsl.count_tokens(request)
except chatdsl.TokenizerMissingError as exc:  # the optional extra is not installed
    print(exc)
else:
    print(f"{exact.tokens} prompt tokens ({exact.tokenizer}, exact={exact.exact})")
    # An alias whose tokenizer does not ship with mistral-common: the nearest one, and a note.
    approximate = chatdsl.count_tokens(request.with_model("mistral-large-latest"))
    print(f"{approximate.tokens} prompt tokens, exact={approximate.exact}: {approximate.note}")
