"""Request templates: variables, rendering, composition and template files (see issue 5)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._request import ChatCompletionRequest


def save(request: ChatCompletionRequest, path: str | Path) -> None:
    """Write *request* as a template file."""
    raise NotImplementedError("template files are not implemented yet")


def load(path: str | Path) -> ChatCompletionRequest:
    """Read a template file."""
    raise NotImplementedError("template files are not implemented yet")
