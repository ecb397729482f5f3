"""The official chat-completion schemas (``tests/data/mistral-chat-openapi.json``) as jsonschema validators.

:data:`SDK_REQUEST` checks requests against the newer request schema of the official SDK
(``tests/data/mistral-sdk-chat-request.schema.json``, which lists the fields the OpenAPI copy lacks).

The OpenAPI 3.1 document is registered in a ``referencing.Registry`` under :data:`SPEC_URI`; its
internal references (``#/components/schemas/X``) resolve against that URI. Build a validator once per
module with :func:`validator` and check bodies with :func:`problems`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).parent / "data" / "mistral-chat-openapi.json"
SPEC_URI = "https://chatdsl.invalid/mistral-chat-openapi.json"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))


def _registry(document: dict[str, Any]) -> Registry:
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


def _without_bogus_data(document: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the document whose ``ChatCompletionResponse`` does not require ``data``.

    The official schema lists ``data`` among the required keys of a chat completion, but no such
    key exists: it is not among the schema's properties and the server never sends it (a leftover
    of the embeddings response). Everything else is validated unchanged.
    """
    patched = copy.deepcopy(document)
    for part in patched["components"]["schemas"]["ChatCompletionResponse"]["allOf"]:
        if "data" in part.get("required", ()):
            part["required"] = [key for key in part["required"] if key != "data"]
    return patched


def _as_today(document: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the document updated to what the API sends today (the ``mistralai`` 3.7 SDK).

    This copy of the spec predates: string reference ids (``"reference_ids": ["widget"]``), a
    thinking part's ``signature``, ``usage.service_tier`` (and usage being open to new keys), and a
    choice's ``logprobs`` and ``prompt_logprobs``.
    """
    patched = copy.deepcopy(document)
    schemas = patched["components"]["schemas"]
    schemas["ReferenceChunk"]["properties"]["reference_ids"]["items"] = {
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    }
    schemas["ThinkChunk"]["properties"]["signature"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    usage = schemas["UsageInfo"]
    usage["properties"]["service_tier"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    usage.pop("additionalProperties", None)
    logprobs = {"anyOf": [{"type": "object"}, {"type": "null"}]}
    for name in ("ChatCompletionChoice", "CompletionResponseStreamChoice"):
        schemas[name]["properties"].update(logprobs=logprobs, prompt_logprobs=logprobs)
    return patched


_REGISTRY = _registry(_as_today(SPEC))
_PATCHED_REGISTRY = _registry(_without_bogus_data(_as_today(SPEC)))


def validator(schema_name: str, *, patched: bool = False) -> Draft202012Validator:
    """Return a Draft 2020-12 validator for ``components.schemas.<schema_name>``.

    ``patched=True`` uses the document with the bogus required ``data`` of ``ChatCompletionResponse``
    removed (see :func:`_without_bogus_data`).
    """
    registry = _PATCHED_REGISTRY if patched else _REGISTRY
    return Draft202012Validator({"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}, registry=registry)


SDK_REQUEST_PATH = Path(__file__).parent / "data" / "mistral-sdk-chat-request.schema.json"
SDK_REQUEST_SCHEMA: dict[str, Any] = json.loads(SDK_REQUEST_PATH.read_text(encoding="utf-8"))
SDK_REQUEST = Draft202012Validator(SDK_REQUEST_SCHEMA)
"""A validator for request bodies: the ``ChatCompletionRequest`` of the ``mistralai`` SDK (3.7)."""


def problems(checker: Draft202012Validator, body: Any) -> list[str]:
    """Return every violation of *body* as ``path: message`` lines (empty when it conforms)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in sorted(checker.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ]


BATCH_SPEC_PATH = Path(__file__).parent / "data" / "mistral-batch-openapi.json"
BATCH_SPEC_URI = "https://chatdsl.invalid/mistral-batch-openapi.json"
BATCH_SPEC: dict[str, Any] = json.loads(BATCH_SPEC_PATH.read_text(encoding="utf-8"))
_BATCH_REGISTRY = Registry().with_resource(
    BATCH_SPEC_URI, Resource.from_contents(BATCH_SPEC, default_specification=DRAFT202012)
)


def batch_validator(schema_name: str) -> Draft202012Validator:
    """Return a Draft 2020-12 validator for a Files or Batch API schema (``BatchJobOut``, ``UploadFileOut``, ...)."""
    return Draft202012Validator(
        {"$ref": f"{BATCH_SPEC_URI}#/components/schemas/{schema_name}"}, registry=_BATCH_REGISTRY
    )
