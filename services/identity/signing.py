"""The Ed25519 key that signs access tokens (EdDSA JWTs): loaded from a PEM, or made and kept in the
identity schema at first start."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.db import Pool
from libs.obs.logging import get_logger
from services.identity import store

__all__ = ["ALGORITHM", "SigningKey", "SigningKeyError", "load_signing_key"]

log = get_logger("identity")

ALGORITHM = "EdDSA"


class SigningKeyError(Exception):
    """The configured signing key cannot be used."""


class SigningKey:
    """An Ed25519 private key with its key id (the RFC 7638 thumbprint of its public key)."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private
        public = private.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.kid = _thumbprint(raw)
        self.public_key_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: str) -> SigningKey:
        """The key in a PKCS#8 PEM (literal `\\n` allowed, as environment variables often carry them)."""
        text = pem.strip().replace("\\n", "\n")
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"signing key is not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"signing key must be Ed25519, not {type(key).__name__}")
        return cls(key)

    def private_key_pem(self) -> str:
        """The private key as an unencrypted PKCS#8 PEM."""
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS of `claims` with `alg` EdDSA and this key's `kid` in the header."""
        return jwt.encode(claims, self.private, algorithm=ALGORITHM, headers={"kid": self.kid})


def _thumbprint(raw_public: bytes) -> str:
    """RFC 7638 JWK thumbprint of an Ed25519 public key (RFC 8037 OKP members, in lexical order)."""
    x = base64.urlsafe_b64encode(raw_public).rstrip(b"=").decode()
    members = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode()


async def load_signing_key(pool: Pool, configured_pem: str) -> SigningKey:
    """The configured key if a PEM is given, else the newest stored key, made and stored if none is."""
    if configured_pem.strip():
        key = SigningKey.from_pem(configured_pem)
        log.info("signing_key_loaded", kid=key.kid, source="environment")
        return key
    async with pool.acquire() as conn, conn.transaction():
        # Replicas starting together wait here, so exactly one of them makes the first key.
        await store.lock_signing_keys(conn)
        stored = await store.newest_signing_key(conn)
        if stored is not None:
            key = SigningKey.from_pem(stored.private_key_pem)
            log.info("signing_key_loaded", kid=key.kid, source="database")
            return key
        key = SigningKey.generate()
        await store.insert_signing_key(
            conn, kid=key.kid, private_key_pem=key.private_key_pem(), public_key_pem=key.public_key_pem
        )
    log.info("signing_key_created", kid=key.kid)
    return key
