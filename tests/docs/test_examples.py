"""The examples run as a user runs them (a fresh interpreter, no API key) and print sensible output.

Every ``examples/*.py`` must exit cleanly and print something; every chat request body it prints
must read back strictly and, when complete, conform to the official schemas (the SDK's current
request schema; the OpenAPI copy too when it uses only the fields that copy lists). The quick start is
checked in detail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chatdsl import ChatCompletionRequest
from tests.spec import SDK_REQUEST, SPEC, problems, validator

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
REQUEST = validator("ChatCompletionRequest")


def run(example: Path, tmp_path: Path) -> str:
    """Run *example* in a fresh interpreter, from an empty directory, without any API key."""
    env = {k: v for k, v in os.environ.items() if "MISTRAL" not in k and "API_KEY" not in k}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{example.name} failed:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    assert done.stdout.strip(), f"{example.name} printed nothing"
    return done.stdout


def json_documents(text: str) -> list[Any]:
    """Every JSON object printed on its own, in order (each starts on a line that begins with ``{``)."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    position = end = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("{") and position >= end:  # not inside the previous document
            document, end = decoder.raw_decode(text, position)
            found.append(document)
        position += len(line)
    return found


def looks_like_a_request(document: Any) -> bool:
    return isinstance(document, dict) and "messages" in document and "model" in document


def test_the_examples_are_found() -> None:
    assert ROOT / "examples" / "quickstart.py" in EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_each_example_runs_and_its_request_bodies_are_valid(example: Path, tmp_path: Path) -> None:
    for document in json_documents(run(example, tmp_path)):
        if not looks_like_a_request(document):
            continue
        request = ChatCompletionRequest.from_dict(document, allow_extra=True)
        assert request.to_dict() == document
        if request.is_complete and not request.extra:
            assert problems(SDK_REQUEST, document) == []
            if set(document) <= set(SPEC["components"]["schemas"]["ChatCompletionRequest"]["properties"]):
                assert problems(REQUEST, document) == []


def test_the_quickstart_builds_from_the_template_and_sends_four_ways(tmp_path: Path) -> None:
    output = run(ROOT / "examples" / "quickstart.py", tmp_path)
    assert "MISTRAL_API_KEY is not set" in output  # it says it is offline
    bodies = json_documents(output)
    assert len(bodies) == 1
    request = ChatCompletionRequest.from_dict(bodies[0])
    assert request.validate() is request
    assert problems(REQUEST, bodies[0]) == []
    assert bodies[0]["temperature"] == 0  # an explicit zero reaches the wire
    sections = [line[2:] for line in output.splitlines() if line.startswith("# ")]
    assert sections == [
        "the wire body of the first request",
        "a plain call",
        "a stream, printed as it arrives",
        "a JSON-schema answer parsed into a class",
        "a tool call, run by the tool loop",
    ]
    assert "echo: What is the capital of France?" in output
    assert "' lighthouse.' (+" in output  # streamed word by word, with a latency each
    assert "Place(city=" in output
    assert "assistant calls get_weather(" in output
    assert "tool: 18 °C and clear in" in output


def test_json_documents_finds_each_printed_object() -> None:
    text = '# a\n{\n  "x": 1\n}\nnot json {here}\n{"y": [1, {"z": 2}]}\n'
    assert json_documents(text) == [{"x": 1}, {"y": [1, {"z": 2}]}]
    assert json_documents('{"x": 1}\n') == [{"x": 1}]
    assert json_documents("no documents\n") == []
