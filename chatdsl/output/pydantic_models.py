"""Pydantic models as output types, schemas and tools, when pydantic is installed (never imported here).

A pydantic model can only exist once ``pydantic`` was imported by its author, so detection looks in
``sys.modules`` and costs nothing otherwise. Schemas come from the model's ``model_json_schema()``,
values from its ``model_validate()``; pydantic's errors become chatdsl errors with a path.
"""

from __future__ import annotations

import sys
from typing import Any

from chatdsl._errors import ValidationError

__all__ = ["is_pydantic_model", "pydantic_schema", "validate_pydantic"]


def is_pydantic_model(tp: Any) -> bool:
    """Return whether *tp* is a pydantic ``BaseModel`` subclass (without importing pydantic)."""
    module = sys.modules.get("pydantic")
    base = getattr(module, "BaseModel", None) if module is not None else None
    return base is not None and isinstance(tp, type) and issubclass(tp, base) and tp is not base


def pydantic_schema(tp: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the JSON schema of the model *tp* without its ``$defs``, and those ``$defs``."""
    schema = dict(tp.model_json_schema())
    defs = dict(schema.pop("$defs", {}))
    return schema, defs


def validate_pydantic(value: Any, tp: Any) -> Any:
    """Return ``tp.model_validate(value)``; pydantic's validation error becomes a :class:`ValidationError`."""
    from pydantic import ValidationError as PydanticError  # pydantic is loaded: tp is one of its models

    try:
        return tp.model_validate(value)
    except PydanticError as exc:
        errors = [(_path(error.get("loc", ())), str(error.get("msg", "is not valid"))) for error in exc.errors()]
        raise ValidationError("", "", errors=errors or [("", str(exc))]) from None


def _path(loc: Any) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path
