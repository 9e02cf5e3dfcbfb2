"""/api/v1/channels: relayed to the channel service, which checks every rule (ownership included)."""

from __future__ import annotations

from typing import Any

from litestar import Response, delete, get, patch, post, put

from proto import channel as pc
from services.gateway.auth import AuthUser
from services.gateway.backend import Backend
from services.gateway.bodies import Body
from services.gateway.routes import channel_images

__all__ = ["ROUTES"]


class NewChannel(Body, frozen=True, request=pc.CreateChannel, without=("owner_id", "owner_username")):
    """POST /api/v1/channels body."""


class ChannelChanges(Body, frozen=True, request=pc.UpdateChannel, without=("actor_id", "name")):
    """PATCH /api/v1/channels/{name} body: only the fields sent change (the name never does)."""


@post("/api/v1/channels", tags=["channels"])
async def create_channel(backend: Backend, data: NewChannel, user: AuthUser) -> Response[pc.Channel]:
    """Create the signed-in user's channel (one per user)."""
    create = data.to(pc.CreateChannel, owner_id=user.id, owner_username=user.username)
    channel = await backend.call(pc.CREATE, create)
    return Response(channel, status_code=201, headers={"Location": f"/api/v1/channels/{channel.name}"})


@get("/api/v1/channels", tags=["channels"])
async def list_channels(
    backend: Backend,
    q: str = "",
    category: str = "",
    tag: str = "",
    live: bool | None = None,
    limit: int = 20,
    cursor: str = "",
) -> pc.ChannelPage:
    """Search channels: live ones first, then newest; `next_cursor` fetches the next page."""
    query = pc.ListChannels(q=q, category=category, tag=tag, live=live, limit=limit, cursor=cursor)
    return await backend.call(pc.LIST, query)


@get("/api/v1/channels/{name:str}", tags=["channels"])
async def get_channel(backend: Backend, name: str, viewer: AuthUser | None) -> pc.Channel:
    """One channel; its owner also sees the stream key's prefix."""
    return await backend.call(pc.GET, pc.GetChannel(name=name, actor_id=viewer.id if viewer else ""))


@patch("/api/v1/channels/{name:str}", tags=["channels"])
async def update_channel(backend: Backend, name: str, data: ChannelChanges, user: AuthUser) -> pc.Channel:
    """Change some of a channel's fields (owner only)."""
    return await backend.call(pc.UPDATE, data.to(pc.UpdateChannel, actor_id=user.id, name=name))


@post("/api/v1/channels/{name:str}/stream-key", tags=["channels"])
async def rotate_stream_key(backend: Backend, name: str, user: AuthUser) -> Response[pc.StreamKey]:
    """A new stream key, shown only in this answer; the previous key stops working (owner only)."""
    key = await backend.call(pc.ROTATE_KEY, pc.RotateKey(actor_id=user.id, name=name))
    return Response(key, status_code=201, headers={"Cache-Control": "no-store"})


def _role_routes(segment: str, role: pc.RoleName) -> list[Any]:
    """GET the list, PUT and DELETE one user, for one role (moderators, vips)."""
    base = f"/api/v1/channels/{{name:str}}/{segment}"

    @get(base, tags=["channels"], name=f"list_{segment}", operation_id=f"list_{segment}")
    async def list_role(backend: Backend, name: str) -> pc.RoleList:
        """The channel's holders of this role."""
        return await backend.call(pc.LIST_ROLES, pc.ListRoles(name=name, role=role))

    async def set_role(
        backend: Backend, name: str, username: str, user: AuthUser, granted: bool
    ) -> pc.RoleChange:
        return await backend.call(
            pc.SET_ROLE,
            pc.SetRole(actor_id=user.id, name=name, username=username, role=role, granted=granted),
        )

    @put(f"{base}/{{username:str}}", tags=["channels"], operation_id=f"add_{segment}")
    async def grant(backend: Backend, name: str, username: str, user: AuthUser) -> pc.RoleChange:
        """Give a user this role on the channel (owner only)."""
        return await set_role(backend, name, username, user, True)

    @delete(f"{base}/{{username:str}}", tags=["channels"], operation_id=f"remove_{segment}")
    async def revoke(backend: Backend, name: str, username: str, user: AuthUser) -> None:
        """Take this role away from a user (owner only)."""
        await set_role(backend, name, username, user, False)

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
