"""``chatdsl tokens`` and ``chatdsl validate --max-prompt-tokens``: counts equal mistral-common's encoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mistral_common")

from mistral_common.protocol.instruct.messages import UserMessage
from mistral_common.protocol.instruct.request import ChatCompletionRequest as MistralRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from chatdsl.cli.main import main


def _template(tmp_path: Path, model: str = "mistral-large-2411") -> Path:
    path = tmp_path / "ask.json"
    body = {
        "template": {"variables": {"topic": {"default": "the sea"}}},
        "model": model,
        "messages": [{"role": "user", "content": "Write a poem about $topic."}],
    }
    path.write_text(json.dumps(body))
    return path


def _expected(text: str) -> int:
    request = MistralRequest(messages=[UserMessage(content=text)])
    return len(MistralTokenizer.v7().encode_chat_completion(request).tokens)


def test_tokens_prints_the_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tokens", str(_template(tmp_path)), "--var", "topic=mountains in winter"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{_expected('Write a poem about mountains in winter.')}\n"
    assert captured.err == ""


def test_tokens_says_when_approximate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tokens", str(_template(tmp_path)), "--model", "mistral-large-latest"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{_expected('Write a poem about the sea.')}\n"
    assert "approximate" in captured.err
    assert "mistral-large-2411" in captured.err


def test_validate_fails_a_template_over_the_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _template(tmp_path)
    count = _expected("Write a poem about the sea.")
    assert main(["validate", str(path), "--max-prompt-tokens", str(count)]) == 0
    capsys.readouterr()
    assert main(["validate", str(path), "--max-prompt-tokens", str(count - 1)]) == 1
    out = capsys.readouterr().out
    assert out == f"{path}: {count} prompt tokens, over the budget of {count - 1}\n"


def test_validate_counts_a_required_variable_as_its_placeholder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "q.json"
    body = {
        "template": {"variables": {"q": {}}},
        "model": "mistral-large-2411",
        "messages": [{"role": "user", "content": "$q"}],
    }
    path.write_text(json.dumps(body))
    count = _expected("${q}")
    assert main(["validate", str(path), "--max-prompt-tokens", str(count - 1)]) == 1
    assert f"{count} prompt tokens" in capsys.readouterr().out
