"""identity: users, sessions and signing keys. Owned by services/identity."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

from proto.base import Entity, Event, Lookup, Rpc, StreamSpec

STREAM = StreamSpec(
    name="IDENTITY",
    subjects=("identity.*.*",),
    max_age_seconds=365 * 24 * 3600,
    description="identity events: users registered",
)


class RegisterRequest(msgspec.Struct, frozen=True, kw_only=True):
    username: str
    password: str
    email: str


class LoginRequest(msgspec.Struct, frozen=True, kw_only=True):
    username: str
    password: str
    client_addr: str = ""


class RefreshRequest(msgspec.Struct, frozen=True, kw_only=True):
    refresh_token: str
    client_addr: str = ""


class LogoutRequest(msgspec.Struct, frozen=True, kw_only=True):
    refresh_token: str


class WhoamiRequest(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str


class KeysRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Ask for the public keys that verify access tokens."""


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    username: str


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    username: str
    email: str
    created_at: datetime


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int


class Done(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool = True


class PublicKey(msgspec.Struct, frozen=True, kw_only=True):
    kid: str
    alg: str
    public_key_pem: str


class Keys(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a verifier needs: keys by id, the pinned algorithm, issuer and audience."""

    keys: list[PublicKey]
    issuer: str
    audience: str


REGISTER = Rpc("identity.register", RegisterRequest, User)
LOGIN = Rpc("identity.login", LoginRequest, TokenPair)
REFRESH = Rpc("identity.refresh", RefreshRequest, TokenPair)
LOGOUT = Rpc("identity.logout", LogoutRequest, Done)
WHOAMI = Rpc("identity.whoami", WhoamiRequest, Profile)
KEYS = Rpc("identity.keys", KeysRequest, Keys)


class UserRegistered(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "identity.user.registered"

    user_id: str
    username: str
    version: int = 1


# What other services may keep of a user (libs.replica): kept from the events above, asked on a miss.


class UserCopy(msgspec.Struct, frozen=True, kw_only=True):
    """A user as other services keep it; `version` grows with every change of these fields."""

    user_id: str
    username: str
    version: int = 1


LOOKUP_USER = Rpc("identity.lookup_user", Lookup, UserCopy)

USER = Entity(
    name="user",
    struct=UserCopy,
    key="user_id",
    lookups=("user_id", "username"),
    stream=STREAM,
    events=(UserRegistered,),
    lookup=LOOKUP_USER,
)
