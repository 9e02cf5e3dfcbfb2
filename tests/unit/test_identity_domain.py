"""identity's rules, without servers: usernames, passwords, emails, throttling, refresh verdicts, keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from libs.bus import BadRequest, ServiceError
from services.identity import domain
from services.identity.passwords import load_common_passwords
from services.identity.signing import SigningKey, SigningKeyError

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
COMMON = load_common_passwords()


def detail_of(exc: pytest.ExceptionInfo[ServiceError]) -> str:
    return exc.value.detail


@pytest.mark.parametrize("name", ["abc", "Alice_1", "a" * 25, "___", "007"])
def test_valid_usernames_are_stored_lower_cased(name: str) -> None:
    assert domain.check_username(name) == name.lower()


@pytest.mark.parametrize("name", ["ab", "a" * 26, "al ice", "alice!", "alice-1", "ålice", "", "bob\n"])
def test_invalid_usernames_are_refused_naming_them(name: str) -> None:
    with pytest.raises(BadRequest) as exc:
        domain.check_username(name)
    assert f'username "{name}"' in detail_of(exc)
    assert exc.value.code == "invalid_username"


def test_unicode_that_lower_cases_to_ascii_is_refused() -> None:
    """The Kelvin sign lower-cases to "k"; it must not slip in as a look-alike of an ASCII name."""
    with pytest.raises(BadRequest):
        domain.check_username("\u212aate")


def test_a_huge_username_is_not_echoed_whole() -> None:
    with pytest.raises(BadRequest) as exc:
        domain.check_username("x" * 10_000)
    assert len(detail_of(exc)) < 200


def test_sign_in_names_are_lower_cased_and_bounded() -> None:
    assert domain.login_name("Alice_1") == "alice_1"
    assert len(domain.login_name("x" * 10_000)) == 64


def test_password_of_good_length_is_accepted_and_normalized() -> None:
    assert domain.check_password("correct horse battery", username="bob", common=COMMON) == (
        "correct horse battery"
    )
    # NFKC: a full-width letter and its ASCII twin hash alike.
    assert domain.check_password("\uff43orrect horse", username="bob", common=COMMON) == "correct horse"


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("abc12", ["too short", "5 characters", "at least 8"]),
        ("x" * 129, ["too long", "129 characters", "at most 128"]),
        ("password123", ["common"]),
        ("PassWord123", ["common"]),
        ("qwertyuiop", ["common"]),
        ("bobby_tables", ["username"]),
    ],
)
def test_weak_passwords_are_refused_saying_why(password: str, words: list[str]) -> None:
    with pytest.raises(BadRequest) as exc:
        domain.check_password(password, username="bobby_tables", common=COMMON)
    for word in words:
        assert word in detail_of(exc)
    assert password not in detail_of(exc)


def test_length_limits_are_inclusive() -> None:
    assert domain.check_password("k" * 8 + "9", username="bob", common=COMMON)
    assert domain.check_password("a1b2c3d4e5", username="bob", common=COMMON)
    assert domain.check_password("z" * domain.PASSWORD_MAX, username="bob", common=COMMON)


def test_common_password_list_is_shipped_and_lower_cased() -> None:
    assert len(COMMON) >= 300
    assert {"password", "12345678", "iloveyou", "qwerty123", "password1"} <= COMMON
    assert all(p == p.lower() and p.strip() == p and p for p in COMMON)


def test_parse_common_passwords_skips_comments_and_blanks() -> None:
    assert domain.parse_common_passwords("# list\n\nHunter2\n  letmein \n") == {"hunter2", "letmein"}


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("a@example.org", "a@example.org"),
        (" Jo.Doe+tag@Mail.Example.COM ", "Jo.Doe+tag@mail.example.com"),
        ("u@xn--p1ai.xn--p1ai", "u@xn--p1ai.xn--p1ai"),
    ],
)
def test_sane_emails_are_accepted(raw: str, stored: str) -> None:
    assert domain.check_email(raw) == stored


@pytest.mark.parametrize(
    "raw",
    ["", "plain", "@example.org", "a@", "a@localhost", "a b@example.org", "a@exa mple.org", "a@@b.org",
     "a@-bad.org", "a@b..org", "x" * 65 + "@example.org", "a@" + "b" * 250 + ".org", "a\x00@b.org"],
)  # fmt: skip
def test_insane_emails_are_refused_naming_them(raw: str) -> None:
    with pytest.raises(BadRequest) as exc:
        domain.check_email(raw)
    assert "email" in detail_of(exc)
    assert exc.value.code == "invalid_email"


def test_user_ids_must_be_uuids() -> None:
    user_id = "0a83df21-3365-4d29-b635-e1a8777251f6"
    assert domain.check_user_id(user_id.upper()) == user_id
    with pytest.raises(BadRequest) as exc:
        domain.check_user_id("1; drop table users")
    assert "1; drop table users" in detail_of(exc)


@pytest.mark.parametrize(
    ("addr", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::7", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.4", "198.51.100.4"),
        ("", ""),
        ("testclient", "testclient"),
    ],
)
def test_failures_from_one_ipv6_subscriber_share_a_key(addr: str, key: str) -> None:
    assert domain.address_key(addr) == key


def minutes_ago(*minutes: float) -> list[datetime]:
    return [NOW - timedelta(minutes=m) for m in minutes]


def test_retry_after_is_none_below_the_limit() -> None:
    window = timedelta(minutes=15)
    assert domain.retry_after(minutes_ago(1, 2, 3, 4), limit=5, window=window, now=NOW) is None
    # Failures older than the window do not count.
    assert domain.retry_after(minutes_ago(1, 2, 3, 4, 16, 20), limit=5, window=window, now=NOW) is None


def test_retry_after_waits_until_the_limit_th_newest_failure_leaves_the_window() -> None:
    window = timedelta(minutes=15)
    # The 5th newest in the window is 10 minutes old: it leaves the window in 5 minutes.
    failures = minutes_ago(10, 1, 2, 3, 9, 20)
    assert domain.retry_after(failures, limit=5, window=window, now=NOW) == 300
    # Never less than a second, even at the edge.
    edge = [NOW - window + timedelta(microseconds=10)] * 5
    assert domain.retry_after(edge, limit=5, window=window, now=NOW) == 1


def throttle(account: list[datetime], by_address: list[datetime], address: str = "203.0.113.9") -> Any:
    return domain.login_throttle(
        username="alice",
        address=address,
        account_failures=account,
        address_failures=by_address,
        policy=domain.ThrottlePolicy(account_failures=5, address_failures=20),
        now=NOW,
    )


def test_login_throttle_names_the_account_first_then_the_address() -> None:
    many = minutes_ago(*(i / 2 for i in range(20)))  # 0 to 9.5 minutes old
    refusal = throttle(many[:5], many)
    assert refusal.status == 429
    assert '"alice"' in refusal.detail
    assert refusal.retry_after == 13 * 60
    refusal = throttle(many[:4], many)
    assert "203.0.113.9" in refusal.detail
    assert refusal.retry_after == 330
    assert "330 seconds" in refusal.detail


def test_login_throttle_lets_attempts_through_below_both_limits_or_without_an_address() -> None:
    many = minutes_ago(*range(15))
    assert throttle([], many + many, address="") is None
    assert throttle(many[:4], many[:19]) is None


def state(*, used: bool = False, revoked: bool = False, expires_in: float = 60.0) -> domain.RefreshState:
    return domain.RefreshState(used=used, revoked=revoked, expires_at=NOW + timedelta(seconds=expires_in))


@pytest.mark.parametrize(
    ("token", "verdict"),
    [
        (state(), domain.RefreshVerdict.ROTATE),
        (None, domain.RefreshVerdict.UNKNOWN),
        (state(used=True), domain.RefreshVerdict.REUSED),
        (state(used=True, revoked=True, expires_in=-1), domain.RefreshVerdict.REUSED),
        (state(revoked=True), domain.RefreshVerdict.REVOKED),
        (state(expires_in=0), domain.RefreshVerdict.EXPIRED),
    ],
)
def test_refresh_verdicts(token: domain.RefreshState | None, verdict: domain.RefreshVerdict) -> None:
    assert domain.judge_refresh(token, now=NOW) is verdict


def test_a_reused_refresh_token_is_refused_with_its_own_code() -> None:
    error = domain.refresh_error(domain.RefreshVerdict.REUSED)
    assert (error.status, error.code) == (401, "refresh_token_reused")
    assert error.detail == "refresh token was already used; sign in again"


def test_refresh_tokens_are_stored_as_sha256() -> None:
    digest = domain.token_digest("abc")
    assert digest.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_access_claims() -> None:
    claims = domain.access_claims(
        user_id="u1", username="bob", issuer="iss", audience="aud", now=NOW, ttl_seconds=900, jti="j1"
    )
    assert claims == {
        "sub": "u1",
        "name": "bob",
        "iss": "iss",
        "aud": "aud",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 900,
        "jti": "j1",
    }


def test_signing_key_round_trips_through_pem_and_signs_eddsa_with_its_kid() -> None:
    key = SigningKey.generate()
    again = SigningKey.from_pem(key.private_key_pem().replace("\n", "\\n"))
    assert (again.kid, again.public_key_pem) == (key.kid, key.public_key_pem)
    token = key.sign({"sub": "u1"})
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}
    assert jwt.decode(token, key.private.public_key(), algorithms=["EdDSA"]) == {"sub": "u1"}


def test_kid_is_the_rfc7638_thumbprint() -> None:
    """RFC 8037 appendix A.3: the thumbprint of the key of appendix A.1."""
    d = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    key = SigningKey(Ed25519PrivateKey.from_private_bytes(d))
    assert key.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_signing_key_must_be_ed25519() -> None:
    ec = generate_private_key(SECP256R1()).private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(SigningKeyError, match="Ed25519"):
        SigningKey.from_pem(ec.decode())
    with pytest.raises(SigningKeyError, match="PEM"):
        SigningKey.from_pem("not a key")


@pytest.mark.parametrize(
    ("raw", "field"), [("user_id", "user_id"), ("USERNAME", "username"), (" username", "username")]
)
def test_a_user_is_looked_up_by_id_or_name_in_any_case(raw: str, field: str) -> None:
    assert domain.lookup_field(raw) == field


def test_a_lookup_by_another_field_is_refused_naming_it() -> None:
    with pytest.raises(BadRequest, match='not "email"') as caught:
        domain.lookup_field("email")
    assert caught.value.code == "bad_lookup"


def test_only_a_uuid_can_name_a_user_by_id() -> None:
    assert domain.is_uuid("0b9f5c2e-6c36-4a7e-9a53-4d1b1f1e2a3c")
    assert not domain.is_uuid("alice")


def test_a_stored_token_is_judged_by_its_state() -> None:
    token = domain.StoredToken(
        family_id="f", user_id="u", username="alice", expires_at=NOW, used=True, revoked=False
    )
    assert domain.judge_refresh(token.state(), now=NOW) is domain.RefreshVerdict.REUSED
