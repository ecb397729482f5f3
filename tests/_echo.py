"""The request the client and stream tests send, and the answer ``LocalServer``'s default reply gives it."""

from __future__ import annotations

import chatdsl
from tests._secrets import TEST_KEY

KEY = TEST_KEY  # the secret guard (tests/_secrets.py) fails a test that leaks it
REQUEST = chatdsl.chat("mistral-small-latest").user("one two three four five six")
ANSWER = "echo: one two three four five six"
