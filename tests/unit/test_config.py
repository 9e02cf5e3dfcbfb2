"""Config is read once into a frozen Struct; a bad value names its variable."""

from __future__ import annotations

import msgspec
import pytest

from libs.config import ConfigError, load_config
from libs.runtime import ServiceConfig


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    port: int = 8080
    debug: bool = False


def test_values_are_converted_from_strings() -> None:
    cfg = load_config(Sample, environ={"CPC_URL": "nats://x", "CPC_PORT": "9000", "CPC_DEBUG": "true"})
    assert cfg == Sample(url="nats://x", port=9000, debug=True)


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CPC_PORT"):
        load_config(Sample, environ={"CPC_URL": "x", "CPC_PORT": "eighty"})


def test_missing_required_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CPC_URL: required"):
        load_config(Sample, environ={})


def test_config_is_frozen() -> None:
    cfg = load_config(ServiceConfig, environ={})
    with pytest.raises(AttributeError):
        cfg.nats_url = "other"  # type: ignore[misc]


def test_prefix_is_respected() -> None:
    cfg = load_config(Sample, prefix="APP_", environ={"APP_URL": "u", "CPC_URL": "ignored"})
    assert cfg.url == "u"
