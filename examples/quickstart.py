"""Quick start: one shared template, several derived requests, their wire JSON.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import chatdsl

# A base request defined once: the model, the system prompt and the sampling settings.
BASE = (
    chatdsl.chat("mistral-small-latest")
    .system("You are a concise assistant. Answer in one sentence.")
    .with_temperature(0)
    .with_max_tokens(200)
)


def main() -> None:
    """Derive three requests from the template and print each wire body."""
    plain = BASE.user("What is the capital of France?")
    seeded = BASE.with_random_seed(0).user("Name a prime number.")
    structured = BASE.user("Give me a city and its country.").with_json_schema(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city", "country"],
            "additionalProperties": False,
        },
        name="place",
    )
    for name, request in [("plain", plain), ("seeded", seeded), ("structured", structured)]:
        request.validate()
        print(f"# {name}")
        print(request.to_json(indent=2))
    # The template itself never changed: it still has only its system message.
    assert len(BASE.messages) == 1


if __name__ == "__main__":
    main()
