"""The identity service signs with CPC_IDENTITY_SIGNING_KEY when it is set, and refuses to start on a bad
one; without it, the key made at first start survives a restart."""

from __future__ import annotations

import asyncio

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from libs.bus import connect, request
from libs.devstack.processes import ServiceProcess
from proto.identity import KEYS, LOGIN, REGISTER, Keys, KeysRequest, LoginRequest, RegisterRequest
from services.identity.signing import SigningKey
from tests.conftest import Isolated


async def keys_of(nats_url: str, proc: ServiceProcess) -> Keys:
    """identity.keys from `proc`, once it answers."""
    nc = await connect(nats_url, name="test-keys")
    try:
        for _ in range(200):
            assert proc.running, "identity exited during start"
            try:
                return await request(nc, KEYS, KeysRequest(), timeout=0.5)
            except Exception:
                await asyncio.sleep(0.05)
        raise TimeoutError("identity never answered identity.keys")
    finally:
        await nc.drain()


async def test_a_configured_key_signs_the_access_tokens(isolated: Isolated) -> None:
    nats_url, start = isolated.nats_url, lambda env: isolated.start("identity", env)
    key = SigningKey.generate()
    pem = key.private_key_pem().replace("\n", "\\n")  # as one line, the way env files carry it
    proc = start({"CPC_IDENTITY_SIGNING_KEY": pem})
    keys = await keys_of(nats_url, proc)
    assert [(k.kid, k.alg, k.public_key_pem) for k in keys.keys] == [(key.kid, "EdDSA", key.public_key_pem)]
    nc = await connect(nats_url, name="test-keys-login")
    try:
        await request(
            nc, REGISTER, RegisterRequest(username="keyed", password="a long passphrase", email="k@x.io")
        )
        pair = await request(nc, LOGIN, LoginRequest(username="keyed", password="a long passphrase"))
    finally:
        await nc.drain()
    public = load_pem_public_key(keys.keys[0].public_key_pem.encode())
    assert isinstance(public, Ed25519PublicKey)
    claims = jwt.decode(pair.access_token, public, algorithms=["EdDSA"], audience=keys.audience)
    assert claims["name"] == "keyed"
    assert jwt.get_unverified_header(pair.access_token)["kid"] == key.kid


async def test_the_generated_key_is_kept_across_restarts(isolated: Isolated) -> None:
    nats_url, start = isolated.nats_url, lambda env: isolated.start("identity", env)
    first = start({})
    before = await keys_of(nats_url, first)
    first.stop()
    after = await keys_of(nats_url, start({}))
    assert before.keys == after.keys


def test_a_bad_configured_key_stops_the_start_naming_the_variable(isolated: Isolated) -> None:
    start = lambda env: isolated.start("identity", env)  # noqa: E731
    proc = start({"CPC_IDENTITY_SIGNING_KEY": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"})
    assert proc.wait(timeout=30) != 0
    assert proc.log_path is not None
    assert "CPC_IDENTITY_SIGNING_KEY" in proc.log_path.read_text()
