"""The channel rules: what a valid channel is, who may change it, stream keys, list cursors. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from datetime import datetime
from typing import Any

import msgspec

from libs.bus import BadRequest, Conflict, Forbidden
from proto.channel import (
    CHANNEL,
    Channel,
    ChannelCreated,
    ChannelUpdated,
    CreateChannel,
    Image,
    ImageUpdated,
    UpdateChannel,
)

__all__ = [
    "CATEGORIES",
    "ChannelFields",
    "Cursor",
    "StoredChannel",
    "StoredKey",
    "apply_update",
    "channel_view",
    "check_owner",
    "check_role_change",
    "clean_category",
    "clean_name",
    "clean_query",
    "created_event",
    "cursor_after",
    "fields_of",
    "hash_stream_key",
    "image_event",
    "like_pattern",
    "lookup_field",
    "new_fields",
    "new_stream_key",
    "stream_key_matches",
    "updated_event",
]

# Shipped list; a category outside it is refused so that browsing by category stays meaningful.
CATEGORIES: tuple[str, ...] = (
    "Just Chatting",
    "Gaming",
    "Music",
    "Art",
    "Software and Game Development",
    "IRL",
    "Sports",
    "Education",
    "Science & Technology",
    "Talk Shows & Podcasts",
    "Food & Drink",
    "Travel & Outdoors",
    "Makers & Crafting",
    "Fitness & Health",
    "ASMR",
    "Other",
)
_CATEGORY_BY_KEY = {c.casefold(): c for c in CATEGORIES}

NAME_PATTERN = re.compile(r"[a-z0-9_]{3,25}", re.ASCII)
TITLE_MAX = 140
DESCRIPTION_MAX = 1000
TAGS_MAX = 10
TAG_MAX = 25
LANGUAGE_PATTERN = re.compile(r"[a-z]{2}", re.ASCII)
QUERY_MAX = 100
STREAM_KEY_PREFIX = "live_"
# Shown to the owner to tell keys apart: "live_" plus 7 of the key's 43 random characters.
DISPLAY_PREFIX_LEN = 12


class ChannelFields(msgspec.Struct, frozen=True, kw_only=True):
    """The editable fields of a channel, already checked and normalized."""

    title: str
    description: str
    category: str
    tags: list[str]
    language: str


class StoredChannel(msgspec.Struct, frozen=True, kw_only=True):
    """A channel as the store reads it: its row, its owner's name (from the users copy, '' until it
    arrives) and both images."""

    id: str
    name: str
    owner_id: str
    owner_username: str
    title: str
    description: str
    category: str
    tags: list[str]
    language: str
    live_session_id: str | None
    live_since: datetime | None
    created_at: datetime
    updated_at: datetime
    stream_key_prefix: str | None
    avatar: Image | None
    banner: Image | None
    version: int

    @property
    def live(self) -> bool:
        """Whether the channel has an open session."""
        return self.live_session_id is not None

    def image(self, kind: str) -> Image | None:
        """The channel's avatar or banner."""
        return self.avatar if kind == "avatar" else self.banner


class StoredKey(msgspec.Struct, frozen=True, kw_only=True):
    """What opens a channel: its id, owner, name and stream key hash (None before the first key)."""

    id: str
    owner_id: str
    name: str
    stream_key_hash: bytes | None


# Channel pages live at /<name>: these first path segments belong to the gateway and the web app.
RESERVED_NAMES = frozenset(
    {"api", "live", "vod", "schema", "healthz", "readyz", "assets", "icons", "static", "signin",
     "signup", "signout", "dashboard", "settings", "admin", "notifications", "search", "directory"}
)  # fmt: skip


def clean_name(name: str) -> str:
    """The channel name in canonical (lower) case, or BadRequest saying what is wrong with it."""
    canonical = name.lower()
    if not NAME_PATTERN.fullmatch(canonical):
        raise BadRequest(
            f'channel name "{name}" must be 3 to 25 characters of a-z, 0-9 and _', code="invalid_name"
        )
    if canonical in RESERVED_NAMES:
        raise BadRequest(f'channel name "{name}" is reserved for the site itself', code="reserved_name")
    return canonical


def _has_control(text: str, *, allow_newlines: bool) -> bool:
    allowed = "\n\r\t" if allow_newlines else ""
    return any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text)


def clean_title(title: str) -> str:
    """A title of 1 to 140 characters on one line."""
    text = title.strip()
    if not text:
        raise BadRequest("title must not be empty", code="invalid_title")
    if len(text) > TITLE_MAX:
        raise BadRequest(f"title is {len(text)} characters long; at most {TITLE_MAX}", code="invalid_title")
    if _has_control(text, allow_newlines=False):
        raise BadRequest("title must not contain control characters or line breaks", code="invalid_title")
    return text


def clean_description(description: str) -> str:
    """A description of at most 1000 characters (line breaks allowed)."""
    text = description.strip()
    if len(text) > DESCRIPTION_MAX:
        raise BadRequest(
            f"description is {len(text)} characters long; at most {DESCRIPTION_MAX}",
            code="invalid_description",
        )
    if _has_control(text, allow_newlines=True):
        raise BadRequest("description must not contain control characters", code="invalid_description")
    return text


def clean_category(category: str) -> str:
    """The canonical spelling of one of CATEGORIES (matched case-insensitively)."""
    found = _CATEGORY_BY_KEY.get(category.strip().casefold())
    if found is None:
        raise BadRequest(
            f'unknown category "{category}"; choose one of: {", ".join(CATEGORIES)}', code="invalid_category"
        )
    return found


def clean_tags(tags: list[str]) -> list[str]:
    """At most 10 tags of 1 to 25 letters or digits, duplicates (ignoring case) dropped, order kept."""
    seen: set[str] = set()
    result: list[str] = []
    for tag in tags:
        if not 1 <= len(tag) <= TAG_MAX or not tag.isalnum():
            raise BadRequest(
                f'tag "{tag}" must be 1 to {TAG_MAX} letters or digits, without spaces', code="invalid_tag"
            )
        key = tag.casefold()
        if key not in seen:
            seen.add(key)
            result.append(tag)
    if len(result) > TAGS_MAX:
        raise BadRequest(f"{len(result)} tags given; at most {TAGS_MAX}", code="invalid_tags")
    return result


def clean_language(language: str) -> str:
    """A two-letter ISO 639-1 language code, lower case."""
    code = language.strip().lower()
    if not LANGUAGE_PATTERN.fullmatch(code):
        raise BadRequest(
            f'language "{language}" must be a two-letter code such as "en"', code="invalid_language"
        )
    return code


def new_fields(req: CreateChannel) -> ChannelFields:
    """Check the fields of a new channel."""
    return ChannelFields(
        title=clean_title(req.title),
        description=clean_description(req.description),
        category=clean_category(req.category),
        tags=clean_tags(req.tags),
        language=clean_language(req.language),
    )


def apply_update(current: ChannelFields, req: UpdateChannel) -> tuple[ChannelFields, list[str]]:
    """The fields after a partial update, and the names of those whose value changed."""
    updates: dict[str, Any] = {}
    if req.title is not msgspec.UNSET:
        updates["title"] = clean_title(req.title)
    if req.description is not msgspec.UNSET:
        updates["description"] = clean_description(req.description)
    if req.category is not msgspec.UNSET:
        updates["category"] = clean_category(req.category)
    if req.tags is not msgspec.UNSET:
        updates["tags"] = clean_tags(req.tags)
    if req.language is not msgspec.UNSET:
        updates["language"] = clean_language(req.language)
    changed = [k for k, v in updates.items() if getattr(current, k) != v]
    return msgspec.structs.replace(current, **updates), changed


def lookup_field(raw: str) -> str:
    """The channel field a lookup is by (channel_id or name, any case), or BadRequest naming it."""
    by = raw.strip().lower()
    if by not in CHANNEL.lookups:
        raise BadRequest(f'a channel is looked up by channel_id or name, not "{raw[:40]}"', code="bad_lookup")
    return by


def check_owner(owner_id: str, actor_id: str, *, channel: str, action: str) -> None:
    """Forbidden unless `actor_id` owns the channel."""
    if not actor_id or owner_id != actor_id:
        raise Forbidden(f'only the owner of channel "{channel}" may {action}', code="not_owner")


def check_role_change(
    *, owner_id: str, user_id: str, username: str, channel: str, role: str, held: str | None, granted: bool
) -> None:
    """The owner holds no role on their own channel, and a user holds one role per channel."""
    if not granted:
        return
    if user_id == owner_id:
        raise BadRequest(
            f'"{username}" owns channel "{channel}" and cannot also be its {role}', code="owner_role"
        )
    if held is not None and held != role:
        raise Conflict(
            f'"{username}" is already a {held} of channel "{channel}"; remove that role first',
            code="has_other_role",
        )


def hash_stream_key(stream_key: str) -> bytes:
    """SHA-256 of a stream key: keys carry 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(stream_key.encode()).digest()


def new_stream_key() -> tuple[str, str, bytes]:
    """A fresh stream key, its display prefix and its hash."""
    key = STREAM_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:DISPLAY_PREFIX_LEN], hash_stream_key(key)


def stream_key_matches(given: str, stored_hash: bytes | None) -> bool:
    """Whether `given` is the key whose hash is stored, compared in constant time."""
    if stored_hash is None:
        return False
    return hmac.compare_digest(hash_stream_key(given), stored_hash)


def like_pattern(query: str) -> str:
    """An ILIKE pattern matching `query` anywhere, with its own %, _ and backslash taken literally."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def clean_query(q: str) -> str:
    """A search text of at most 100 characters, trimmed ('' matches every channel)."""
    text = q.strip()
    if len(text) > QUERY_MAX:
        raise BadRequest(f"q is {len(text)} characters long; at most {QUERY_MAX}", code="invalid_query")
    return text


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    """Where a page ended, in list order: live first, then newest."""

    live: bool
    created_at: datetime
    id: str


def cursor_after(channel: StoredChannel) -> Cursor:
    """The cursor of the page that follows `channel`."""
    return Cursor(channel.live, channel.created_at, channel.id)


def channel_view(channel: StoredChannel, *, actor_id: str = "") -> Channel:
    """The Channel reply (the fields it shares with the stored channel, by name); the key prefix only for
    its owner."""
    view = msgspec.convert(channel, Channel, from_attributes=True)
    is_owner = bool(actor_id) and actor_id == channel.owner_id
    return view if is_owner else msgspec.structs.replace(view, stream_key_prefix=None)


def created_event(channel: StoredChannel) -> ChannelCreated:
    """ChannelCreated for a channel just stored."""
    return ChannelCreated(
        channel_id=channel.id,
        name=channel.name,
        owner_id=channel.owner_id,
        title=channel.title,
        category=channel.category,
        tags=list(channel.tags),
        language=channel.language,
        created_at=channel.created_at,
        version=channel.version,
    )


def updated_event(channel: StoredChannel, changed: list[str]) -> ChannelUpdated:
    """ChannelUpdated for a channel just changed (its fields and version after the change)."""
    return ChannelUpdated(
        channel_id=channel.id,
        name=channel.name,
        owner_id=channel.owner_id,
        version=channel.version,
        changed=changed,
        **msgspec.structs.asdict(fields_of(channel)),
    )


def image_event(channel: StoredChannel, kind: str, image: Image) -> ImageUpdated:
    """ImageUpdated for a channel's new avatar or banner."""
    return ImageUpdated(
        channel_id=channel.id,
        channel_name=channel.name,
        kind=kind,
        etag=image.etag,
        content_type=image.content_type,
        width=image.width,
        height=image.height,
    )


def fields_of(channel: StoredChannel) -> ChannelFields:
    """The editable fields of a stored channel."""
    return msgspec.convert(channel, ChannelFields, from_attributes=True)
