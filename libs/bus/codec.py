"""One msgspec encoder and one decoder per type, created once and reused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import uuid4

import msgspec

__all__ = ["Event", "decode", "decoder_for", "encode", "new_id", "utcnow"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def new_id() -> str:
    """A new random identifier (UUID4, text)."""
    return str(uuid4())


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event: `subject` names where it is published; the id doubles as `Nats-Msg-Id`."""

    subject: ClassVar[str] = ""

    event_id: str = msgspec.field(default_factory=new_id)
    occurred_at: datetime = msgspec.field(default_factory=utcnow)


_decoders: dict[Any, Any] = {}


def decoder_for(cls: type[T]) -> msgspec.json.Decoder[T]:
    """The cached JSON decoder for `cls`."""
    dec = _decoders.get(cls)
    if dec is None:
        dec = _decoders[cls] = msgspec.json.Decoder(cls)
    return dec


def encode(value: Any) -> bytes:
    """Encode a Struct (or any msgspec-supported value) to JSON."""
    return _encoder.encode(value)


def decode(data: bytes, cls: type[T]) -> T:
    """Decode JSON into `cls`, raising msgspec.ValidationError or DecodeError."""
    result: T = decoder_for(cls).decode(data)
    return result
