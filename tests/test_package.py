"""The package ``chatdsl`` itself: what ``dir()`` and autocompletion show."""

from __future__ import annotations

import types

import chatdsl


def test_dir_shows_the_public_api_only() -> None:
    shown = dir(chatdsl)
    assert shown == sorted(chatdsl.__all__)
    for name in ("Any", "TYPE_CHECKING", "importlib", "model", "wire", "output", "_LAZY", "annotations"):
        assert name not in shown
    assert not [name for name in shown if isinstance(getattr(chatdsl, name), types.ModuleType)]
    assert {"Client", "chat", "json_schema", "__version__"} <= set(shown)  # lazy names are listed too
