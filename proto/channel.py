"""channel: channels, stream keys, roles and branding images. Owned by services/channel."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

from proto.base import Entity, Event, Lookup, Rpc, StreamSpec

STREAM = StreamSpec(
    name="CHANNEL",
    subjects=("channel.*.*",),
    max_age_seconds=365 * 24 * 3600,
    description="channel events: created, updated, key rotated, roles, images",
)

# JetStream object store bucket holding the processed avatar and banner images.
IMAGE_BUCKET = "channel-images"

ImageKind = Literal["avatar", "banner"]
RoleName = Literal["moderator", "vip"]


# JetStream object store bucket holding emote images, one object per emote and size.
EMOTE_BUCKET = "channel-emotes"
EMOTE_SIZES = {"1x": 28, "2x": 56, "4x": 112}


def emote_object_name(emote_id: str, size: str) -> str:
    """Object name of one size of an emote; emote ids are never reused, so the bytes never change."""
    return f"{emote_id}/{size}"


def emote_urls(emote_id: str) -> dict[str, str]:
    """The gateway paths of each size of an emote."""
    return {size: f"/api/v1/emotes/{emote_id}/{size}" for size in EMOTE_SIZES}


def image_object_name(channel_id: str, kind: str, etag: str) -> str:
    """Object name of one stored image; content-addressed so a new upload never overwrites the served one."""
    return f"{channel_id}/{kind}/{etag}"


# Requests and replies ---------------------------------------------------------------------------------


class Image(msgspec.Struct, frozen=True, kw_only=True):
    """A stored branding image; `etag` is the SHA-256 (hex) of its bytes."""

    etag: str
    content_type: str
    width: int
    height: int
    updated_at: datetime


class Channel(msgspec.Struct, frozen=True, kw_only=True):
    """A channel as clients see it; `stream_key_prefix` is only filled in for its owner."""

    id: str
    name: str
    owner_id: str
    owner_username: str
    title: str
    description: str
    category: str
    tags: list[str]
    language: str
    live: bool
    live_since: datetime | None
    avatar: Image | None
    banner: Image | None
    created_at: datetime
    updated_at: datetime
    stream_key_prefix: str | None = None


class CreateChannel(msgspec.Struct, frozen=True, kw_only=True):
    owner_id: str
    owner_username: str = ""
    name: str
    title: str
    category: str
    tags: list[str] = []
    description: str = ""
    language: str = "en"


class ListChannels(msgspec.Struct, frozen=True, kw_only=True):
    q: str = ""
    category: str = ""
    tag: str = ""
    live: bool | None = None
    limit: int = 20
    cursor: str = ""


class ChannelPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Channel]
    next_cursor: str | None


class GetChannel(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    actor_id: str = ""


class UpdateChannel(msgspec.Struct, frozen=True, kw_only=True):
    """A partial update: fields left UNSET keep their value."""

    actor_id: str
    name: str
    title: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    category: str | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    language: str | msgspec.UnsetType = msgspec.UNSET


class RotateKey(msgspec.Struct, frozen=True, kw_only=True):
    actor_id: str
    name: str


class StreamKey(msgspec.Struct, frozen=True, kw_only=True):
    """A new stream key: shown once, stored only as a hash."""

    stream_key: str
    prefix: str
    channel_id: str


class CheckKey(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    stream_key: str


class KeyOwner(msgspec.Struct, frozen=True, kw_only=True):
    channel_id: str
    owner_id: str
    name: str


class SetImage(msgspec.Struct, frozen=True, kw_only=True):
    actor_id: str
    name: str
    kind: ImageKind
    content_type: str
    data: bytes


class SetRole(msgspec.Struct, frozen=True, kw_only=True):
    """Grant (`granted=True`) or revoke a role of `username` on channel `name`."""

    actor_id: str
    name: str
    username: str
    role: RoleName
    granted: bool


class RoleMember(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    username: str
    role: RoleName
    granted_at: datetime


class RoleChange(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of SetRole; `changed` is false when the user already was (or was not) in that role."""

    user_id: str
    username: str
    role: RoleName
    granted: bool
    changed: bool


class ListRoles(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    role: RoleName


class RoleList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[RoleMember]


class Emote(msgspec.Struct, frozen=True, kw_only=True):
    """A channel emote (or a global one: `channel_id` empty); `tier` 0 is for everyone, 1-3 gates it to
    subscribers of at least that tier."""

    id: str
    code: str
    channel_id: str
    tier: int
    animated: bool
    content_type: str
    urls: dict[str, str]
    created_at: datetime


class UploadEmote(msgspec.Struct, frozen=True, kw_only=True):
    actor_id: str
    name: str
    code: str
    tier: int = 0
    content_type: str
    data: bytes


class ListEmotes(msgspec.Struct, frozen=True, kw_only=True):
    """A channel's emotes; `name` empty lists the global set."""

    name: str = ""


class EmoteList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Emote]


class DeleteEmote(msgspec.Struct, frozen=True, kw_only=True):
    actor_id: str
    name: str
    code: str


CREATE = Rpc("channel.create", CreateChannel, Channel)
LIST = Rpc("channel.list", ListChannels, ChannelPage)
GET = Rpc("channel.get", GetChannel, Channel)
UPDATE = Rpc("channel.update", UpdateChannel, Channel)
ROTATE_KEY = Rpc("channel.rotate_key", RotateKey, StreamKey)
CHECK_KEY = Rpc("channel.check_key", CheckKey, KeyOwner)
SET_IMAGE = Rpc("channel.set_image", SetImage, Image)
SET_ROLE = Rpc("channel.set_role", SetRole, RoleChange)
LIST_ROLES = Rpc("channel.list_roles", ListRoles, RoleList)
UPLOAD_EMOTE = Rpc("channel.upload_emote", UploadEmote, Emote)
LIST_EMOTES = Rpc("channel.list_emotes", ListEmotes, EmoteList)
DELETE_EMOTE = Rpc("channel.delete_emote", DeleteEmote, Emote)


# Events -----------------------------------------------------------------------------------------------


class ChannelCreated(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "channel.channel.created"

    channel_id: str
    name: str
    owner_id: str
    title: str
    category: str
    tags: list[str]
    language: str
    created_at: datetime
    version: int = 1


class ChannelUpdated(Event, frozen=True, kw_only=True):
    """The channel's editable fields after the change; `changed` names the fields that moved."""

    subject: ClassVar[str] = "channel.channel.updated"

    channel_id: str
    name: str
    changed: list[str]
    title: str
    description: str
    category: str
    tags: list[str]
    language: str
    owner_id: str = ""
    # The channel's version after this change (ChannelCopy.version).
    version: int = 0


class KeyRotated(Event, frozen=True, kw_only=True):
    """A new stream key replaced the old one (which stops working at once); never carries the key."""

    subject: ClassVar[str] = "channel.key.rotated"

    channel_id: str
    name: str
    prefix: str


def role_aggregate(channel_id: str, user_id: str) -> str:
    """The key a user's role on a channel is versioned under (one role per user and channel)."""
    return f"role/{channel_id}/{user_id}"


def emote_aggregate(emote_id: str) -> str:
    """The key an emote is versioned under."""
    return f"emote/{emote_id}"


class RoleEvent(Event, frozen=True, kw_only=True):
    """Shared shape of the role events: who got or lost which role in which channel. `version` counts
    the changes of that user's role on that channel (a revoke included), so a consumer can ignore an
    older event delivered late; 0 in events stored before versions existed."""

    channel_id: str
    channel_name: str
    user_id: str
    username: str
    role: str
    version: int = 0

    @property
    def aggregate(self) -> str:
        """What `version` counts the changes of."""
        return role_aggregate(self.channel_id, self.user_id)


class RoleGranted(RoleEvent, frozen=True, kw_only=True):
    subject: ClassVar[str] = "channel.role.granted"


class RoleRevoked(RoleEvent, frozen=True, kw_only=True):
    subject: ClassVar[str] = "channel.role.revoked"


class ImageUpdated(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "channel.image.updated"

    channel_id: str
    channel_name: str
    kind: str
    etag: str
    content_type: str
    width: int
    height: int


class EmoteAdded(Event, frozen=True, kw_only=True):
    """An emote became usable; `channel_id` empty for the global set."""

    subject: ClassVar[str] = "channel.emote.added"

    emote_id: str
    channel_id: str
    channel_name: str
    code: str
    tier: int
    animated: bool
    content_type: str
    # Counts the changes of this emote (adding and removing it); 0 in events stored before versions.
    version: int = 0

    @property
    def aggregate(self) -> str:
        """What `version` counts the changes of."""
        return emote_aggregate(self.emote_id)


class EmoteRemoved(Event, frozen=True, kw_only=True):
    subject: ClassVar[str] = "channel.emote.removed"

    emote_id: str
    channel_id: str
    channel_name: str
    code: str
    version: int = 0

    @property
    def aggregate(self) -> str:
        """What `version` counts the changes of."""
        return emote_aggregate(self.emote_id)


# What other services may keep of a channel (libs.replica): kept from the events above, asked on a miss.


class ChannelCopy(msgspec.Struct, frozen=True, kw_only=True):
    """A channel as other services keep it; `version` grows with every change of the channel."""

    channel_id: str
    name: str
    owner_id: str
    version: int = 1


LOOKUP_CHANNEL = Rpc("channel.lookup_channel", Lookup, ChannelCopy)

CHANNEL = Entity(
    name="channel",
    struct=ChannelCopy,
    key="channel_id",
    lookups=("channel_id", "name"),
    stream=STREAM,
    events=(ChannelCreated, ChannelUpdated),
    lookup=LOOKUP_CHANNEL,
)
