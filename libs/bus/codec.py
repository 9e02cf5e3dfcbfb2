"""One msgspec encoder and one decoder per type, created once and reused."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from proto.base import Event, new_id, utcnow

__all__ = ["Event", "decode", "decoder_for", "encode", "new_id", "utcnow"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


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
