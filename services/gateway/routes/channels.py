"""/api/v1/channels: relayed to the channel service, which checks every rule (ownership included)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post, put
from litestar.di import Provide

from proto import channel as pc
from services.gateway.auth import AuthUser, current_user, optional_user
from services.gateway.backend import Backend
from services.gateway.routes import channel_images

__all__ = ["ROUTES"]

SIGNED_IN = {"user": Provide(current_user)}
MAYBE_SIGNED_IN = {"user": Provide(optional_user)}


class NewChannel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /api/v1/channels body."""

    name: str
    title: str
    category: str
    tags: list[str] = []
    description: str = ""
    language: str = "en"


class ChannelChanges(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """PATCH /api/v1/channels/{name} body: only the fields sent change (the name never does)."""

    title: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    category: str | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    language: str | msgspec.UnsetType = msgspec.UNSET


def _backend(request: Request[Any, Any, Any]) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


@post("/api/v1/channels", dependencies=SIGNED_IN, tags=["channels"])
async def create_channel(
    request: Request[Any, Any, Any], data: NewChannel, user: AuthUser
) -> Response[pc.Channel]:
    """Create the signed-in user's channel (one per user)."""
    channel = await _backend(request).call(
        pc.CREATE,
        pc.CreateChannel(owner_id=user.id, owner_username=user.username, **msgspec.structs.asdict(data)),
    )
    return Response(channel, status_code=201, headers={"Location": f"/api/v1/channels/{channel.name}"})


@get("/api/v1/channels", tags=["channels"])
async def list_channels(
    request: Request[Any, Any, Any],
    q: str = "",
    category: str = "",
    tag: str = "",
    live: bool | None = None,
    limit: int = 20,
    cursor: str = "",
) -> pc.ChannelPage:
    """Search channels: live ones first, then newest; `next_cursor` fetches the next page."""
    query = pc.ListChannels(q=q, category=category, tag=tag, live=live, limit=limit, cursor=cursor)
    return await _backend(request).call(pc.LIST, query)


@get("/api/v1/channels/{name:str}", dependencies=MAYBE_SIGNED_IN, tags=["channels"])
async def get_channel(request: Request[Any, Any, Any], name: str, user: AuthUser | None) -> pc.Channel:
    """One channel; its owner also sees the stream key's prefix."""
    return await _backend(request).call(pc.GET, pc.GetChannel(name=name, actor_id=user.id if user else ""))


@patch("/api/v1/channels/{name:str}", dependencies=SIGNED_IN, tags=["channels"])
async def update_channel(
    request: Request[Any, Any, Any], name: str, data: ChannelChanges, user: AuthUser
) -> pc.Channel:
    """Change some of a channel's fields (owner only)."""
    changes = {f: getattr(data, f) for f in data.__struct_fields__}
    return await _backend(request).call(pc.UPDATE, pc.UpdateChannel(actor_id=user.id, name=name, **changes))


@post("/api/v1/channels/{name:str}/stream-key", dependencies=SIGNED_IN, tags=["channels"])
async def rotate_stream_key(
    request: Request[Any, Any, Any], name: str, user: AuthUser
) -> Response[pc.StreamKey]:
    """A new stream key, shown only in this answer; the previous key stops working (owner only)."""
    key = await _backend(request).call(pc.ROTATE_KEY, pc.RotateKey(actor_id=user.id, name=name))
    return Response(key, status_code=201, headers={"Cache-Control": "no-store"})


def _role_routes(segment: str, role: pc.RoleName) -> list[Any]:
    """GET the list, PUT and DELETE one user, for one role (moderators, vips)."""
    base = f"/api/v1/channels/{{name:str}}/{segment}"

    @get(base, tags=["channels"], name=f"list_{segment}", operation_id=f"list_{segment}")
    async def list_role(request: Request[Any, Any, Any], name: str) -> pc.RoleList:
        """The channel's holders of this role."""
        return await _backend(request).call(pc.LIST_ROLES, pc.ListRoles(name=name, role=role))

    async def set_role(
        request: Request[Any, Any, Any], name: str, username: str, user: AuthUser, granted: bool
    ) -> pc.RoleChange:
        return await _backend(request).call(
            pc.SET_ROLE,
            pc.SetRole(actor_id=user.id, name=name, username=username, role=role, granted=granted),
        )

    @put(f"{base}/{{username:str}}", dependencies=SIGNED_IN, tags=["channels"], operation_id=f"add_{segment}")
    async def grant(
        request: Request[Any, Any, Any], name: str, username: str, user: AuthUser
    ) -> pc.RoleChange:
        """Give a user this role on the channel (owner only)."""
        return await set_role(request, name, username, user, True)

    @delete(
        f"{base}/{{username:str}}",
        dependencies=SIGNED_IN,
        tags=["channels"],
        operation_id=f"remove_{segment}",
    )
    async def revoke(request: Request[Any, Any, Any], name: str, username: str, user: AuthUser) -> None:
        """Take this role away from a user (owner only)."""
        await set_role(request, name, username, user, False)

    return [list_role, grant, revoke]


ROUTES: list[Any] = [
    create_channel,
    list_channels,
    get_channel,
    update_channel,
    rotate_stream_key,
    *_role_routes("moderators", "moderator"),
    *_role_routes("vips", "vip"),
    *channel_images.ROUTES,
]
