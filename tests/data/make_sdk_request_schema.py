"""Write ``mistral-sdk-chat-request.schema.json``: the request schema of the official ``mistralai`` SDK.

Run from the repository root with the ``bench`` extra installed (it brings ``mistralai``)::

    python tests/data/make_sdk_request_schema.py

The schema is pydantic's ``ChatCompletionRequest.model_json_schema(mode="validation")`` of
``mistralai.client.models``, with two edits that make it describe the wire body rather than the
Python object: the SDK's ``Unset`` sentinel (an alternative of every optional field, an empty object
type that would let any object through) and its ``"~?~unset~?~sentinel~?~"`` defaults are removed,
and the body refuses unknown top-level keys (``additionalProperties: false``, as
``ChatCompletionRequest`` does in the official OpenAPI document).
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

PATH = Path(__file__).with_name("mistral-sdk-chat-request.schema.json")
_UNSET_REF = {"$ref": "#/$defs/Unset"}


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "default" and isinstance(value, str) and "unset" in value and "sentinel" in value:
                continue
            if key == "anyOf" and isinstance(value, list):
                value = [item for item in value if item != _UNSET_REF]
            out[key] = _clean(value)
        return out
    if isinstance(node, list):
        return [_clean(item) for item in node]
    return node


def schema() -> dict[str, Any]:
    """Return the cleaned request schema of the installed SDK."""
    from mistralai.client.models import ChatCompletionRequest

    raw = ChatCompletionRequest.model_json_schema(mode="validation")
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"mistralai {version('mistralai')} ChatCompletionRequest.model_json_schema(); "
        "see tests/data/make_sdk_request_schema.py",
        **_clean(raw),
        "additionalProperties": False,
    }
    out["$defs"].pop("Unset", None)
    return out


def text() -> str:
    """Return the file's text for the installed SDK."""
    return json.dumps(schema(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    PATH.write_text(text(), encoding="utf-8")
