"""Read a process's environment once, at start, into a frozen msgspec Struct."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

__all__ = ["ConfigError", "load_config"]

T = TypeVar("T", bound=msgspec.Struct)


class ConfigError(Exception):
    """A variable in the environment is missing or has a bad value."""


def load_config(cls: type[T], *, prefix: str = "CPC_", environ: Mapping[str, str] | None = None) -> T:
    """Build `cls` from variables named PREFIX + FIELD (upper case); a bad value names its variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        name = field.encode_name
        key = prefix + name.upper()
        if key in env:
            values[name] = env[key]
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec says "... - at `$.field`": turn the path into the variable's name.
        message = str(exc)
        marker = "at `$."
        if marker in message:
            field_name = message.split(marker, 1)[1].split("`", 1)[0].split(".", 1)[0].split("[", 1)[0]
            raise ConfigError(f"{prefix}{field_name.upper()}: {message.split(' - at ', 1)[0]}") from None
        missing = message.split("missing required field `", 1)
        if len(missing) == 2:
            raise ConfigError(f"{prefix}{missing[1].rstrip('`').upper()}: required but not set") from None
        raise ConfigError(message) from None
