"""Structured output: describe the answer with attrs classes and get instances back.

Run: python examples/structured_output.py

With ``MISTRAL_API_KEY`` set it asks Mistral; without it, it answers from
``chatdsl.testing.LocalServer`` on 127.0.0.1 (which makes up an answer that fits the schema) and
says so.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
from collections.abc import Iterator
from datetime import date

import attrs

import chatdsl


class Priority(enum.Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


@attrs.frozen
class Task:
    """One thing to do."""

    title: str = attrs.field(metadata={"description": "A short imperative title."})
    priority: Priority
    due: date | None = attrs.field(metadata={"description": "The due date, if the message gives one."})
    tags: list[str]


@attrs.frozen
class TaskList:
    """The tasks found in a message."""

    tasks: list[Task]


REQUEST = (
    chatdsl.chat("mistral-small-latest")
    .system("Extract every task from the user's message.")
    .user("Renew my passport before 2025-03-01 (urgent!), and buy milk sometime.")
    .with_temperature(0)
    .with_json_schema(TaskList)  # name "TaskList", strict, the schema from the classes
)


@contextlib.contextmanager
def client() -> Iterator[chatdsl.Client]:
    """A client of Mistral when ``MISTRAL_API_KEY`` is set, else of a LocalServer."""
    if os.environ.get("MISTRAL_API_KEY"):
        with chatdsl.Client() as real:
            yield real
        return
    from chatdsl.testing import LocalServer

    print("MISTRAL_API_KEY is not set: answering from chatdsl.testing.LocalServer (offline).\n")
    with LocalServer() as server, chatdsl.Client(api_key="offline", base_url=server.url) as local:
        yield local


def main() -> None:
    """Print the schema sent, then the typed answer."""
    print("# response_format sent")
    print(json.dumps(REQUEST.to_dict()["response_format"], indent=2))
    with client() as api:
        response = api.chat_completion(REQUEST)
    message = response.assistant_message()
    assert message is not None
    result = message.output(TaskList)  # OutputError (with the raw text and the path) if it does not fit
    print("\n# the answer, as TaskList")
    for task in result.tasks:
        due = task.due.isoformat() if task.due else "no due date"
        print(f"- {task.title} [{task.priority.value}, {due}] tags={task.tags}")


if __name__ == "__main__":
    main()
