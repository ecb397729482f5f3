"""Run one template over a CSV of support tickets, 8 at a time, and write one JSON line per ticket.

Runs offline against ``chatdsl.testing.LocalServer`` (a fake server that sorts tickets by keyword);
point the client at Mistral's API for real answers. The same run from the command line::

    chatdsl run triage.toml --input examples/data/tickets.csv --output answers.jsonl --concurrency 8
    chatdsl run triage.toml --input examples/data/tickets.csv --output answers.jsonl --resume  # after a crash
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import chatdsl
from chatdsl import RequestTemplate, RunResult, Variable
from chatdsl.runs.rows import RecordWriter, read_rows, scan_output
from chatdsl.testing import LocalServer, RecordedRequest, Reply

TICKETS = Path(__file__).resolve().parent / "data" / "tickets.csv"

triage = RequestTemplate(
    request=chatdsl.chat("mistral-small-latest")
    .system("Sort the support ticket into billing, shipping or account. Answer with the one word.")
    .user("Ticket from $customer: $text")
    .with_temperature(0),
    description="Sort a support ticket.",
    variables=[Variable(name="customer", description="Who wrote it"), Variable(name="text", description="The ticket")],
)


def sort_by_keyword(recorded: RecordedRequest) -> Reply:
    """The fake server's answer: a word chosen from the ticket's text."""
    text = recorded.body.decode().lower()
    for word, topic in (("charg", "billing"), ("refund", "billing"), ("invoice", "billing"), ("parcel", "shipping")):
        if word in text:
            return Reply.text(topic)
    return Reply.text("shipping" if "deliver" in text or "courier" in text else "account")


# Read the rows lazily; a bad row (bad CSV, a repeated id) would come with .error set (a RowError naming its line).
rows = list(read_rows(TICKETS))
bad: list[chatdsl.RowError] = [row.error for row in rows if row.error is not None]
print(f"{len(rows)} tickets read from {TICKETS.name}, {len(bad)} bad")

with LocalServer() as server, chatdsl.Client(api_key="any-key", base_url=server.url) as client:
    server.handler = sort_by_keyword
    server.enqueue(Reply.error(429, "slow down", retry_after=0.2))  # the first request is rate limited: all wait

    # (key, values) pairs give (key, request) pairs; allow_extra: the rows' other columns (id) are not variables
    requests = triage.render_many(((row.key, row.values) for row in rows if row.error is None), allow_extra=True)
    out = Path(tempfile.mkdtemp()) / "answers.jsonl"
    topics: dict[str, int] = {}
    with RecordWriter(out) as writer:
        for result in client.run_many(requests, concurrency=8):
            assert isinstance(result, RunResult)
            writer.write(result.record())  # one whole JSON line per ticket, as `chatdsl run` writes it
            if result.ok:
                topic = result.response.text() if result.response else ""
                topics[topic] = topics.get(topic, 0) + 1
                if result.attempts > 1:
                    print(f"{result.key}: {topic} after {result.attempts} attempts (a 429 paused the run)")
            else:
                print(f"{result.key}: failed: {result.error}")

print("topics:", json.dumps(dict(sorted(topics.items()))))
first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
answer = first["response"]["choices"][0]["message"]["content"]
print("first line:", first["id"], answer, f"{first['attempts']} attempt(s)")
print(f"answered: {len(scan_output(out).done)} of {len(rows)} (what --resume would skip)")
