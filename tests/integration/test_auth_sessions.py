"""Sessions through the gateway: sign-in throttling, refresh-token rotation and reuse, logout, and /me
with good and bad access tokens."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from libs.bus import BadRequest, NotFound, connect, request
from libs.devstack.stack import Stack
from proto.identity import WHOAMI, WhoamiRequest
from tests.conftest import Member, assert_problem, unique_name
from tests.integration.test_auth import from_addr, login


def refresh(api: httpx.Client, token: str) -> httpx.Response:
    return api.post("/api/v1/auth/refresh", json={"refresh_token": token})


def me(api: httpx.Client, authorization: str | None) -> httpx.Response:
    return api.get("/api/v1/me", headers={"Authorization": authorization} if authorization else {})


# --- throttling -------------------------------------------------------------------------------------


def test_after_five_failures_even_the_right_password_gets_429_with_retry_after(
    api: httpx.Client, make_member: Callable[..., Member]
) -> None:
    m = make_member()
    for _ in range(5):  # each from another address: the account limit alone must hold
        assert_problem(login(api, m.username, "wrong password", **from_addr()), 401)
    r = login(api, m.username, m.password, **from_addr())
    body = assert_problem(r, 429, "too many failed sign-ins", f'"{m.username}"', "seconds")
    assert body["code"] == "login_throttled"
    assert 0 < int(r.headers["Retry-After"]) <= 900
    assert body["retry_after"] == int(r.headers["Retry-After"])
    # The account is throttled whatever the case of the name.
    assert_problem(login(api, m.username.upper(), m.password, **from_addr()), 429)


def test_a_successful_sign_in_clears_the_accounts_failures(
    api: httpx.Client, make_member: Callable[..., Member]
) -> None:
    m = make_member()
    for _ in range(2):
        for _ in range(4):
            assert_problem(login(api, m.username, "wrong password", **from_addr()), 401)
        assert login(api, m.username, m.password, **from_addr()).status_code == 200


def test_after_twenty_failures_from_one_address_it_is_refused_for_every_account(
    api: httpx.Client, make_member: Callable[..., Member]
) -> None:
    m = make_member()
    attacker = from_addr()
    for _ in range(20):  # twenty accounts, one guess each: no account limit is reached
        assert_problem(login(api, unique_name("victim"), "wrong password", **attacker), 401)
    r = login(api, m.username, m.password, **attacker)
    assert_problem(r, 429, "too many failed sign-ins from", attacker["X-Forwarded-For"])
    assert int(r.headers["Retry-After"]) > 0
    assert login(api, m.username, m.password, **from_addr()).status_code == 200


def test_parallel_guesses_cannot_overshoot_the_account_limit(
    stack: Stack, make_member: Callable[..., Member]
) -> None:
    m = make_member()

    def guess(_: int) -> int:
        body = {"username": m.username, "password": "wrong password"}
        return httpx.post(
            stack.url + "/api/v1/auth/login", json=body, headers=from_addr(), timeout=15
        ).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(guess, range(12)))
    assert set(codes) <= {401, 429}
    # At most five passwords were ever checked. (Under heavy load every guess of the burst can see the
    # others in flight and be refused, leaving fewer than five failures behind: still no overshoot.)
    assert codes.count(401) <= 5, codes
    further = [guess(i) for i in range(6 - codes.count(401))]
    assert further[-1] == 429, further
    correct = {"username": m.username, "password": m.password}
    assert httpx.post(stack.url + "/api/v1/auth/login", json=correct).status_code == 429


# --- refresh and logout -----------------------------------------------------------------------------


def test_refresh_rotates_the_pair(api: httpx.Client, make_member: Callable[..., Member]) -> None:
    m = make_member()
    r = refresh(api, m.tokens["refresh_token"])
    assert r.status_code == 200, r.text
    pair = r.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["refresh_token"] != m.tokens["refresh_token"]
    assert me(api, f"Bearer {pair['access_token']}").json()["id"] == m.id
    assert refresh(api, pair["refresh_token"]).status_code == 200


def test_a_reused_refresh_token_revokes_its_whole_family(
    api: httpx.Client, make_member: Callable[..., Member]
) -> None:
    m = make_member()
    other_session = login(api, m.username).json()
    first = m.tokens["refresh_token"]
    second = refresh(api, first).json()["refresh_token"]
    body = assert_problem(refresh(api, first), 401)
    assert body["detail"] == "refresh token was already used; sign in again"
    assert body["code"] == "refresh_token_reused"
    # The thief's (or the victim's) newer token dies with the family...
    assert_problem(refresh(api, second), 401, "revoked", "sign in again")
    # ...but another sign-in of the same user is another family.
    assert refresh(api, other_session["refresh_token"]).status_code == 200


def test_an_unknown_refresh_token_is_401(api: httpx.Client) -> None:
    body = assert_problem(refresh(api, secrets.token_urlsafe(32)), 401, "refresh token", "not recognised")
    assert body["code"] == "invalid_refresh_token"


async def test_an_expired_refresh_token_is_401(
    api: httpx.Client, make_member: Callable[..., Member], database_url: str
) -> None:
    m = make_member()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE identity.refresh_tokens SET expires_at = now() - interval '1 second'"
            " WHERE user_id = $1::uuid",
            m.id,
        )
    finally:
        await conn.close()
    body = assert_problem(refresh(api, m.tokens["refresh_token"]), 401, "expired", "sign in again")
    assert body["code"] == "refresh_token_expired"


def test_logout_ends_the_session_and_may_be_repeated(
    api: httpx.Client, make_member: Callable[..., Member]
) -> None:
    m = make_member()
    other_session = login(api, m.username).json()
    token = m.tokens["refresh_token"]
    r = api.post("/api/v1/auth/logout", json={"refresh_token": token})
    assert r.status_code == 204
    assert r.content == b""
    assert_problem(refresh(api, token), 401, "revoked")
    assert api.post("/api/v1/auth/logout", json={"refresh_token": token}).status_code == 204
    assert refresh(api, other_session["refresh_token"]).status_code == 200


def test_logout_with_an_unknown_token_is_401(api: httpx.Client) -> None:
    r = api.post("/api/v1/auth/logout", json={"refresh_token": secrets.token_urlsafe(32)})
    assert_problem(r, 401, "not recognised")


# --- /me and access tokens --------------------------------------------------------------------------


def test_me_returns_the_profile(api: httpx.Client, make_member: Callable[..., Member]) -> None:
    m = make_member()
    r = me(api, m.headers["Authorization"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == m.id
    assert body["username"] == m.username
    assert body["email"] == f"{m.username}@example.test"
    assert body["created_at"].endswith("Z")


def test_me_without_a_token_is_401(api: httpx.Client) -> None:
    body = assert_problem(me(api, None), 401, "no access token")
    assert body["code"] == "missing_token"


async def signing_key(database_url: str) -> tuple[str, Ed25519PrivateKey]:
    """The identity service's own signing key, read from its schema, to craft tokens only it could sign."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT kid, private_key_pem FROM identity.signing_keys ORDER BY created_at DESC LIMIT 1"
        )
    finally:
        await conn.close()
    key = load_pem_private_key(row["private_key_pem"].encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return row["kid"], key


def claims_for(m: Member, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    real = jwt.decode(m.tokens["access_token"], options={"verify_signature": False})
    return {**real, "iat": now, "exp": now + 600, **changes}


def tampered(token: str, part: int) -> str:
    parts = token.split(".")
    middle = len(parts[part]) // 2
    parts[part] = (
        parts[part][:middle] + ("A" if parts[part][middle] != "A" else "B") + parts[part][middle + 1 :]
    )
    return ".".join(parts)


async def test_bad_access_tokens_are_401_saying_what_is_wrong(
    api: httpx.Client, make_member: Callable[..., Member], database_url: str
) -> None:
    m = make_member()
    kid, real_key = await signing_key(database_url)
    other_key = Ed25519PrivateKey.generate()
    token = m.tokens["access_token"]
    now = int(time.time())
    cases: list[tuple[str, str, list[str]]] = [
        ("Bearer not.a.jwt", "invalid_token", ["malformed"]),
        (f"Basic {token}", "invalid_token", ["Bearer"]),
        (f"Bearer {tampered(token, 2)}", "invalid_token", ["invalid", "signature"]),
        (f"Bearer {tampered(token, 1)}", "invalid_token", ["invalid"]),
        ("Bearer " + jwt.encode(claims_for(m), "", algorithm="none", headers={"kid": kid}), "invalid_token",
         ['algorithm "none"', "not accepted"]),
        ("Bearer " + jwt.encode(claims_for(m), "s" * 32, algorithm="HS256", headers={"kid": kid}),
         "invalid_token", ['algorithm "HS256"', "not accepted"]),
        ("Bearer " + jwt.encode(claims_for(m), other_key, algorithm="EdDSA", headers={"kid": kid}),
         "invalid_token", ["invalid", "signature"]),
        ("Bearer " + jwt.encode(claims_for(m, iat=now - 3600, exp=now - 60), other_key, algorithm="EdDSA",
                                headers={"kid": "some-other-key"}), "invalid_token", ["unknown key"]),
        ("Bearer " + jwt.encode(claims_for(m, iat=now - 3600, exp=now - 60), real_key, algorithm="EdDSA",
                                headers={"kid": kid}), "token_expired", ["expired"]),
        ("Bearer " + jwt.encode(claims_for(m, aud="someone-else"), real_key, algorithm="EdDSA",
                                headers={"kid": kid}), "invalid_token", ["invalid", "audience"]),
        ("Bearer " + jwt.encode(claims_for(m, iss="evil"), real_key, algorithm="EdDSA", headers={"kid": kid}),
         "invalid_token", ["invalid", "issuer"]),
    ]  # fmt: skip
    for authorization, code, words in cases:
        body = assert_problem(me(api, authorization), 401, *words)
        assert body["code"] == code, (authorization, body)
    # The real key with good claims is accepted: the refusals above are about what was changed.
    good = jwt.encode(claims_for(m), real_key, algorithm="EdDSA", headers={"kid": kid})
    assert me(api, f"Bearer {good}").status_code == 200


# --- identity's own endpoints -----------------------------------------------------------------------


async def test_whoami_of_an_unknown_or_malformed_id(nats_url: str, stack: Stack) -> None:
    nc = await connect(nats_url, name="test-whoami")
    try:
        missing = "00000000-0000-4000-8000-000000000000"
        with pytest.raises(NotFound, match=missing):
            await request(nc, WHOAMI, WhoamiRequest(user_id=missing))
        with pytest.raises(BadRequest, match='user id "nope" is not a UUID'):
            await request(nc, WHOAMI, WhoamiRequest(user_id="nope"))
    finally:
        await nc.drain()
