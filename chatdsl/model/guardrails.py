"""Guardrails: the moderation a request asks Mistral's API to apply (``guardrails`` in a request).

The shapes are those of the official SDK (``mistralai`` 3.7: ``GuardrailConfig``,
``ModerationLlmv1Config``, ``ModerationLlmv2Config``); unset fields are not sent, so the server's
defaults apply (``block_on_error`` false, action ``none``, the version's moderation model).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

from chatdsl import _checks as c
from chatdsl._types import UNSET, FrozenDict, UnsetType

__all__ = ["GuardrailConfig", "ModerationAction", "ModerationConfig"]


class ModerationAction(enum.StrEnum):
    """What the API does when a moderation score is above its threshold.

    Any other non-empty string is sent as it is.
    """

    NONE = "none"
    BLOCK = "block"


MODERATION_V1_CATEGORIES: Final = (
    "sexual",
    "hate_and_discrimination",
    "violence_and_threats",
    "dangerous_and_criminal_content",
    "selfharm",
    "health",
    "financial",
    "law",
    "pii",
)
"""The categories ``moderation_llm_v1`` scores (its ``custom_category_thresholds`` keys)."""

MODERATION_V2_CATEGORIES: Final = (
    "sexual",
    "hate_and_discrimination",
    "violence_and_threats",
    "dangerous",
    "criminal",
    "selfharm",
    "health",
    "financial",
    "law",
    "pii",
    "jailbreaking",
)
"""The categories ``moderation_llm_v2`` scores (its ``custom_category_thresholds`` keys)."""


def _check_thresholds(_: Any, attribute: Any, value: Any) -> None:
    if value is UNSET:
        return
    if not isinstance(value, Mapping):
        raise c.fail(attribute.name, value, f"is {c.type_name(value)}, not an object of category: number")
    for key, item in value.items():
        path = f"{attribute.name}.{key}"
        if not isinstance(key, str) or not key:
            raise c.fail(attribute.name, key, "is not a category name (a non-empty string)")
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise c.fail(path, item, f"is {c.type_name(item)}, not a number")
        if not math.isfinite(item):
            raise c.fail(path, item, "is not a finite number")


def _to_thresholds(value: Any) -> Any:
    """Converter: a mapping becomes a ``FrozenDict``; a category set to ``None`` (JSON ``null``) is left out."""
    if isinstance(value, Mapping) and (not isinstance(value, FrozenDict) or None in value.values()):
        return FrozenDict({key: item for key, item in value.items() if item is not None})
    return value


def _to_action(value: Any) -> Any:
    return c.to_enum(ModerationAction)(value)


@attrs.frozen(kw_only=True, weakref_slot=False)
class ModerationConfig:
    """One moderation model's settings: ``moderation_llm_v1`` or ``moderation_llm_v2`` of a :class:`GuardrailConfig`.

    ``custom_category_thresholds`` maps a category (see ``MODERATION_V1_CATEGORIES`` /
    ``MODERATION_V2_CATEGORIES``; other names are sent as they are) to its score threshold.
    """

    model_name: str | UnsetType = attrs.field(default=UNSET, validator=c.string(non_empty=True))
    custom_category_thresholds: FrozenDict | UnsetType = attrs.field(
        default=UNSET, converter=_to_thresholds, validator=_check_thresholds
    )
    ignore_other_categories: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())
    action: ModerationAction | str | UnsetType = attrs.field(
        default=UNSET, converter=_to_action, validator=c.open_enum(ModerationAction)
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class GuardrailConfig:
    """A guardrail of a request: moderation by ``moderation_llm_v1`` and/or ``moderation_llm_v2``.

    ``block_on_error``: the API answers 403 and blocks the request if moderation itself fails.
    """

    block_on_error: bool | UnsetType = attrs.field(default=UNSET, validator=c.boolean())
    moderation_llm_v1: ModerationConfig | UnsetType = attrs.field(
        default=UNSET, validator=c.instance_of(ModerationConfig)
    )
    moderation_llm_v2: ModerationConfig | UnsetType = attrs.field(
        default=UNSET, validator=c.instance_of(ModerationConfig)
    )
