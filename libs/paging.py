"""Pages of a list: the page size a request may ask for, and the opaque cursor that fetches the next page.
A store reads one row more than the page holds, so the page knows whether another one follows."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from libs.bus.errors import BadRequest

__all__ = ["LIMIT_MAX", "check_limit", "decode_cursor", "encode_cursor", "page"]

LIMIT_MAX = 100

C = TypeVar("C", bound=msgspec.Struct)
T = TypeVar("T")


def check_limit(limit: int, *, most: int = LIMIT_MAX) -> int:
    """A page size between 1 and `most`, or BadRequest naming it."""
    if not 1 <= limit <= most:
        raise BadRequest(f"limit {limit} must be between 1 and {most}", code="invalid_limit")
    return limit


def encode_cursor(cursor: msgspec.Struct) -> str:
    """An opaque, URL-safe cursor: where a page ended, as the JSON of a Struct."""
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


@functools.cache
def _decoder(type_: type[Any]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(type_)


def decode_cursor(text: str, type_: type[C]) -> C | None:
    """Read a cursor that `encode_cursor` made of a `type_` (None for '', the first page), or BadRequest."""
    if not text:
        return None
    try:
        decoded: C = _decoder(type_).decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, msgspec.MsgspecError):
        raise BadRequest(
            f'cursor "{text[:80]}" is not one this API returned', code="invalid_cursor"
        ) from None
    return decoded


def page(
    rows: Sequence[T], limit: int, cursor_of: Callable[[T], msgspec.Struct]
) -> tuple[list[T], str | None]:
    """The first `limit` of `rows` (read with a limit of `limit + 1`) and the cursor after the last of
    them, None when no row follows."""
    items = list(rows[:limit])
    return items, encode_cursor(cursor_of(items[-1])) if len(rows) > limit else None
