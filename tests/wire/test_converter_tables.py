"""The wire converter's tables come from the models: tags from ``type``/``role``, scalar writers from field types."""

from __future__ import annotations

import typing

import attrs

from chatdsl import UNSET, ContentChunk, TextChunk, UnknownChunk, UnsetType
from chatdsl.model.messages import MESSAGE_TYPES
from chatdsl.wire import converter as wire


@attrs.frozen(kw_only=True)
class _ExtendedText(TextChunk):
    """A model with two fields added: one scalar, one not."""

    lang: str | UnsetType = UNSET
    notes: tuple[str, ...] = ()


def test_every_content_part_and_message_is_tagged_by_its_own_class_attribute() -> None:
    parts = [cls for cls in typing.get_args(ContentChunk) if cls is not UnknownChunk]
    assert {cls.type: cls for cls in parts} == wire.CHUNK_TAGS
    assert len(wire.CHUNK_TAGS) == len(parts)  # no two parts share a tag
    roles = {cls.role.value: cls for cls in MESSAGE_TYPES}  # type: ignore[attr-defined]
    assert roles == wire._MESSAGE_TAGS
    assert set(roles) == {"system", "user", "assistant", "tool"}


def test_a_field_added_to_a_model_is_written_and_scalar_fields_are_found_from_their_types() -> None:
    assert set(wire.scalar_fields(_ExtendedText)) == {"text", "lang"}
    write = wire._make_unstructure(_ExtendedText)
    assert write(_ExtendedText(text="t", lang="fr", notes=("a",))) == {"text": "t", "lang": "fr", "notes": ["a"]}
    assert write(_ExtendedText(text="t")) == {"text": "t"}  # unset and default fields are left out
