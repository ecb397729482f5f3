"""JSON Schema from Python types (attrs classes, dataclasses, enums, …) — see issue 4."""

from __future__ import annotations

from typing import Any

from ._tools import JsonSchema
from ._types import UnsetType


def schema_for_response(
    tp: type[Any], *, name: str | None, description: str | UnsetType, strict: bool | UnsetType
) -> JsonSchema:
    """Return the named JSON schema describing *tp* for a ``json_schema`` response format."""
    raise NotImplementedError("schemas from Python types are not implemented yet")
