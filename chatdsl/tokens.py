"""Count a request's prompt tokens as the model sees them, with the official ``mistral-common`` tokenizers.

Needs the optional extra ``pip install 'chatdsl[tokens]'``; nothing is downloaded: only the tokenizer
files shipped inside the ``mistral-common`` wheel, or a file you name, are read.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, Final

import attrs

from chatdsl._errors import ChatDSLError

if TYPE_CHECKING:
    from chatdsl.model.request import ChatCompletionRequest

__all__ = ["TokenCount", "TokenizerMissingError", "count_tokens"]

_EXTRA: Final = "pip install 'chatdsl[tokens]'"

# Nearest shipped tokenizer for a model family mistral-common's table does not list (first prefix wins).
_NEAREST: Final = (
    ("pixtral", "pixtral-large-2411"),
    ("mistral-large", "mistral-large-2411"),
    ("codestral", "codestral-2405"),
    ("mistral-tiny", "mistral-tiny-2407"),
    ("open-mixtral", "open-mixtral-8x22b-2404"),
    ("", "mistral-small-2409"),  # recent models use tekken: the shipped tekken file is the nearest
)


class TokenizerMissingError(ChatDSLError, ImportError):
    """The optional ``mistral-common`` package is not installed (``pip install 'chatdsl[tokens]'``)."""


@attrs.frozen(kw_only=True)
class TokenCount:
    """A prompt's token count: ``tokens``, the ``tokenizer`` used, and whether the count is ``exact``.

    ``exact`` is False when the model's own tokenizer does not ship with mistral-common and the nearest
    one was used; ``note`` then says which (pass ``tokenizer=`` a tokenizer file for an exact count).
    """

    tokens: int
    tokenizer: str
    exact: bool
    note: str | None = None

    def __int__(self) -> int:
        return self.tokens


def _mistral_common() -> Any:
    try:
        from mistral_common.tokens.tokenizers import mistral
    except ImportError as exc:
        raise TokenizerMissingError(f"counting tokens needs the optional mistral-common package: {_EXTRA}") from exc
    return mistral


@functools.lru_cache(maxsize=8)
def _shipped(model: str) -> Any:
    """The tokenizer mistral-common's table gives *model*, loaded once (a tekken file takes ~1 s to load)."""
    return _mistral_common().MODEL_NAME_TO_TOKENIZER_CLS[model]()


def _tokenizer_for(model: str, tokenizer: Any) -> tuple[Any, str, bool, str | None]:
    mistral = _mistral_common()
    if tokenizer is not None:
        if isinstance(tokenizer, mistral.MistralTokenizer):
            return tokenizer, "the given tokenizer", True, None
        path = os.fspath(tokenizer)
        if not os.path.isfile(path):
            raise ValueError(f"tokenizer: {path!r} is not a tokenizer file")
        return mistral.MistralTokenizer.from_file(path), os.path.basename(path), True, None
    table = mistral.MODEL_NAME_TO_TOKENIZER_CLS
    if model in table:
        return _shipped(model), model, True, None
    nearest = next(known for prefix, known in _NEAREST if model.startswith(prefix))
    note = (
        f"approximate: the tokenizer of model {model!r} does not ship with mistral-common; "
        f"counted with the one of {nearest!r} (pass tokenizer= a tokenizer file for an exact count)"
    )
    return _shipped(nearest), nearest, False, note


_PARTS: Final = frozenset({"text", "image_url"})


def _messages(wire: dict[str, Any]) -> list[dict[str, Any]]:
    messages = []
    for i, message in enumerate(wire.get("messages", [])):
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if part.get("type") not in _PARTS:
                    raise ValueError(
                        f"messages[{i}].content[{j}]: mistral-common cannot count a {part.get('type')!r} part "
                        f"(it counts {', '.join(sorted(_PARTS))})"
                    )
        messages.append(message)
    return messages


def count_tokens(request: ChatCompletionRequest, *, tokenizer: Any = None) -> TokenCount:
    """Return the prompt tokens of *request* (chat template, system prompt and tools included).

    The tokenizer is the one mistral-common ships for ``request.model`` (``exact=True``), else the nearest
    shipped one (``exact=False`` and a ``note``); *tokenizer* may be a tokenizer file path or a
    ``MistralTokenizer``. Raises :class:`TokenizerMissingError` without the ``tokens`` extra.
    """
    model = request.model if isinstance(request.model, str) else ""
    found, name, exact, note = _tokenizer_for(model, tokenizer)
    wire = request.to_dict()
    from mistral_common.protocol.instruct.request import ChatCompletionRequest as MistralRequest

    try:
        mistral_request = MistralRequest.from_openai(_messages(wire), tools=wire.get("tools"))
        tokens = found.encode_chat_completion(mistral_request).tokens
    except ValueError:
        raise
    except Exception as exc:  # mistral-common's own validation errors
        raise ValueError(f"mistral-common cannot encode this request: {exc}") from exc
    return TokenCount(tokens=len(tokens), tokenizer=name, exact=exact, note=note)
