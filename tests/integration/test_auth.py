"""Accounts through the gateway against the real identity service: register, login, refresh, logout, /me."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from libs.bus import connect, decode, request
from proto.identity import KEYS, KeysRequest, UserRegistered
from tests.conftest import Member, assert_problem, unique_name

PASSWORD = "correct horse battery"


def from_addr() -> dict[str, str]:
    """Headers making the request come from a fresh client address (uvicorn trusts XFF from 127.0.0.1).
    Every failing sign-in in these tests uses one, so 127.0.0.1 never gets throttled for other tests."""
    return {
        "X-Forwarded-For": f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
    }


def register(api: httpx.Client, username: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
    body = {"username": username, "password": password, "email": f"{username.lower()}@example.test", **extra}
    return api.post("/api/v1/auth/register", json=body)


def login(api: httpx.Client, username: str, password: str = PASSWORD, **headers: str) -> httpx.Response:
    return api.post("/api/v1/auth/login", json={"username": username, "password": password}, headers=headers)


# --- register -------------------------------------------------------------------------------------


def test_register_answers_201_with_the_lower_cased_username(api: httpx.Client) -> None:
    name = unique_name("Reg")
    r = register(api, name)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["username"] == name.lower()
    assert set(body) == {"id", "username"}


async def test_register_publishes_user_registered_with_its_event_id_as_msg_id(
    api: httpx.Client, nats_url: str
) -> None:
    r = register(api, unique_name())
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    nc = await connect(nats_url, name="test-auth-events")
    try:
        sub = await nc.jetstream().subscribe(UserRegistered.subject, ordered_consumer=True)
        event, msg = None, None
        while event is None or event.user_id != user_id:
            msg = await sub.next_msg(timeout=10)
            event = decode(msg.data, UserRegistered)
        assert event.username == r.json()["username"]
        assert msg is not None
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"] == event.event_id
    finally:
        await nc.drain()


def test_a_username_taken_in_another_case_conflicts(api: httpx.Client) -> None:
    name = unique_name("dup")
    assert register(api, name).status_code == 201
    body = assert_problem(register(api, name.upper()), 409, f'username "{name}"', "taken")
    assert body["code"] == "username_taken"


@pytest.mark.parametrize("name", ["ab", "x" * 26, "has space", "dash-ed", "émile", "semi;colon", ""])
def test_bad_usernames_are_400_naming_them(api: httpx.Client, name: str) -> None:
    body = assert_problem(register(api, name), 400, f'username "{name}"', "3 to 25")
    assert body["code"] == "invalid_username"


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("short12", ["password", "too short", "at least 8"]),
        ("x" * 129, ["password", "too long", "at most 128"]),
        ("password123", ["password", "common"]),
        ("Iloveyou1", ["password", "common"]),
        ("qwertyuiop", ["password", "common"]),
    ],
)
def test_weak_or_common_passwords_are_400_saying_why(
    api: httpx.Client, password: str, words: list[str]
) -> None:
    assert_problem(register(api, unique_name(), password), 400, *words)


def test_the_username_is_not_a_password(api: httpx.Client) -> None:
    name = unique_name()
    assert_problem(register(api, name, name.upper()), 400, "password", "username")


@pytest.mark.parametrize("email", ["", "not-an-address", "a@b", "two@@example.test", "sp ace@example.test"])
def test_bad_emails_are_400_naming_them(api: httpx.Client, email: str) -> None:
    r = api.post(
        "/api/v1/auth/register", json={"username": unique_name(), "password": PASSWORD, "email": email}
    )
    assert_problem(r, 400, f'email "{email}"')


# --- bodies every endpoint refuses ------------------------------------------------------------------

BODIES = {
    "/api/v1/auth/register": {"username": "someone", "password": PASSWORD, "email": "s@example.test"},
    "/api/v1/auth/login": {"username": "someone", "password": PASSWORD},
    "/api/v1/auth/refresh": {"refresh_token": "x" * 43},
    "/api/v1/auth/logout": {"refresh_token": "x" * 43},
}
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("path", list(BODIES))
def test_malformed_json_is_400(api: httpx.Client, path: str) -> None:
    assert_problem(api.post(path, content=b'{"username": ', headers=JSON), 400, "json")


@pytest.mark.parametrize("path", list(BODIES))
def test_an_empty_body_is_400(api: httpx.Client, path: str) -> None:
    assert_problem(api.post(path, content=b"", headers=JSON), 400, "request body is missing")


@pytest.mark.parametrize("path", list(BODIES))
def test_a_body_that_is_not_an_object_is_400(api: httpx.Client, path: str) -> None:
    assert_problem(api.post(path, json=["a", "b"]), 400, "expected `object`", "array")


@pytest.mark.parametrize("path", list(BODIES))
def test_a_field_of_the_wrong_type_is_400_naming_it(api: httpx.Client, path: str) -> None:
    field = next(iter(BODIES[path]))
    assert_problem(api.post(path, json={**BODIES[path], field: 12345}), 400, field, "expected `str`")


@pytest.mark.parametrize("path", list(BODIES))
def test_an_unknown_field_is_400_naming_it(api: httpx.Client, path: str) -> None:
    assert_problem(api.post(path, json={**BODIES[path], "is_admin": True}), 400, "unknown field", "is_admin")


@pytest.mark.parametrize("path", list(BODIES))
def test_a_missing_field_is_400_naming_it(api: httpx.Client, path: str) -> None:
    body = dict(BODIES[path])
    field = body.popitem()[0]
    assert_problem(api.post(path, json=body), 400, "missing required field", field)


@pytest.mark.parametrize("path", list(BODIES))
def test_a_body_over_64_kib_is_413(api: httpx.Client, path: str) -> None:
    huge = {key: "a" * (65 * 1024) for key in BODIES[path]}
    assert_problem(api.post(path, json=huge), 413, "too large")


# --- login ------------------------------------------------------------------------------------------


async def test_login_returns_an_eddsa_access_token_and_an_opaque_refresh_token(
    api: httpx.Client, nats_url: str, make_member: Callable[..., Member]
) -> None:
    m = make_member()
    pair = m.tokens
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900
    assert len(pair["refresh_token"]) >= 43
    assert pair["refresh_token"].count(".") == 0  # opaque, not a JWT
    nc = await connect(nats_url, name="test-auth-keys")
    try:
        keys = await request(nc, KEYS, KeysRequest())
    finally:
        await nc.drain()
    header = jwt.get_unverified_header(pair["access_token"])
    assert header["alg"] == "EdDSA"
    [key] = [k for k in keys.keys if k.kid == header["kid"]]
    public = load_pem_public_key(key.public_key_pem.encode())
    assert isinstance(public, Ed25519PublicKey)
    claims = jwt.decode(pair["access_token"], public, algorithms=["EdDSA"], audience=keys.audience)
    assert claims["sub"] == m.id
    assert claims["name"] == m.username
    assert claims["iss"] == keys.issuer
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]


def test_login_ignores_the_case_of_the_username(
    api: httpx.Client, make_member: Callable[..., Member]
) -> None:
    m = make_member()
    assert login(api, m.username.upper()).status_code == 200


def test_wrong_password_and_unknown_user_get_the_same_answer(
    api: httpx.Client, make_member: Callable[..., Member]
) -> None:
    m = make_member()
    wrong = assert_problem(login(api, m.username, "not the password", **from_addr()), 401)
    unknown = assert_problem(login(api, unique_name("ghost"), PASSWORD, **from_addr()), 401)
    assert wrong["detail"] == unknown["detail"] == "invalid username or password"
    assert wrong["code"] == unknown["code"]


async def test_refresh_tokens_are_stored_only_as_sha256(
    make_member: Callable[..., Member], database_url: str
) -> None:
    token = make_member().tokens["refresh_token"]
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM identity.refresh_tokens WHERE token_hash = $1",
            hashlib.sha256(token.encode()).digest(),
        )
        plain = await conn.fetchval(
            "SELECT count(*) FROM identity.refresh_tokens WHERE position($1::bytea in token_hash) > 0",
            token.encode(),
        )
    finally:
        await conn.close()
    assert (stored, plain) == (1, 0)
