"""Notification rules without servers: grace periods, cursors, callback checks, webhook signatures."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from libs.bus import BadRequest, Forbidden
from services.notification import domain
from services.notification.webhooks import message_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_first_session_notifies() -> None:
    assert not domain.is_reconnect(None, None, T0, 600)


def test_start_while_previous_open_is_a_reconnect() -> None:
    assert domain.is_reconnect(T0, None, T0 + timedelta(hours=3), 600)


@pytest.mark.parametrize(
    ("gap", "reconnect"), [(0, True), (599, True), (600, True), (601, False), (7200, False)]
)
def test_grace_period_boundary(gap: int, reconnect: bool) -> None:
    end = T0 + timedelta(hours=1)
    assert domain.is_reconnect(T0, end, end + timedelta(seconds=gap), 600) is reconnect


def test_cursor_and_limit_are_checked() -> None:
    assert domain.decode_cursor("") is None
    assert domain.decode_cursor("42") == 42
    with pytest.raises(BadRequest, match="cursor"):
        domain.decode_cursor("-1")
    with pytest.raises(BadRequest, match="limit 0"):
        domain.check_limit(0)


@pytest.mark.parametrize(
    "url",
    ["http://example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/", "https://localhost/", "ftp://a"],
)
def test_callbacks_must_be_public_https(url: str) -> None:
    with pytest.raises(BadRequest):
        domain.check_callback_url(url, allow_private=False)


def test_private_callbacks_when_allowed() -> None:
    assert domain.check_callback_url("http://127.0.0.1:8000/h", allow_private=True)
    assert domain.check_callback_url("https://hooks.example.com/h", allow_private=False)


def test_signature_is_hmac_over_id_timestamp_body() -> None:
    expected = hmac.new(b"secret-123", b"id-1" + b"2026-01-01T00:00:00Z" + b"{}", hashlib.sha256).hexdigest()
    assert domain.sign("secret-123", "id-1", "2026-01-01T00:00:00Z", b"{}") == "sha256=" + expected


def test_owner_and_secret_and_type_checks() -> None:
    with pytest.raises(Forbidden):
        domain.check_owner("a", "b", "chan")
    with pytest.raises(BadRequest, match="secret"):
        domain.check_secret("short")
    with pytest.raises(BadRequest, match=r"stream\.party"):
        domain.check_webhook_type("stream.party")


def test_backoff_doubles_and_message_ids_are_stable() -> None:
    assert [domain.retry_delay(n, 2.0) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert message_id("e", "w") == message_id("e", "w") != message_id("e", "w2")
