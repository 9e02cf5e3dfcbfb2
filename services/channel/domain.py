"""The channel rules: what a valid channel is, who may change it, stream keys, list cursors. No I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from libs.bus import BadRequest, Conflict, Forbidden
from proto.channel import Channel, CreateChannel, Image, UpdateChannel

__all__ = [
    "CATEGORIES",
    "ChannelFields",
    "Cursor",
    "apply_update",
    "channel_view",
    "check_limit",
    "check_owner",
    "check_role_change",
    "clean_name",
    "decode_cursor",
    "encode_cursor",
    "fields_dict",
    "fields_of",
    "hash_stream_key",
    "like_pattern",
    "new_fields",
    "new_stream_key",
    "stream_key_matches",
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
LIST_LIMIT_MAX = 100
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


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    """Where a page ended, in list order: live first, then newest."""

    live: bool
    created_at: datetime
    id: str


_cursor_decoder = msgspec.json.Decoder(Cursor)


def encode_cursor(cursor: Cursor) -> str:
    """An opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """Read a cursor made by `encode_cursor`, or BadRequest."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.MsgspecError):
        raise BadRequest(
            f'cursor "{text[:80]}" is not one this API returned', code="invalid_cursor"
        ) from None


def check_limit(limit: int) -> int:
    """A page size between 1 and 100."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise BadRequest(f"limit {limit} must be between 1 and {LIST_LIMIT_MAX}", code="invalid_limit")
    return limit


def _image(row: Mapping[str, Any], kind: str) -> Image | None:
    if row[f"{kind}_etag"] is None:
        return None
    return Image(
        etag=row[f"{kind}_etag"],
        content_type=row[f"{kind}_content_type"],
        width=row[f"{kind}_width"],
        height=row[f"{kind}_height"],
        updated_at=row[f"{kind}_updated_at"],
    )


def channel_view(row: Mapping[str, Any], *, actor_id: str = "") -> Channel:
    """The Channel reply for a row of store.CHANNEL_COLUMNS; the key prefix only for its owner."""
    is_owner = bool(actor_id) and actor_id == row["owner_id"]
    return Channel(
        id=row["id"],
        name=row["name"],
        owner_id=row["owner_id"],
        owner_username=row["owner_username"],
        title=row["title"],
        description=row["description"],
        category=row["category"],
        tags=list(row["tags"]),
        language=row["language"],
        live=row["live_session_id"] is not None,
        live_since=row["live_since"],
        avatar=_image(row, "avatar"),
        banner=_image(row, "banner"),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        stream_key_prefix=row["stream_key_prefix"] if is_owner else None,
    )


def fields_dict(fields: ChannelFields) -> dict[str, Any]:
    """The fields as keyword arguments (for events)."""
    return msgspec.structs.asdict(fields)


def fields_of(row: Mapping[str, Any]) -> ChannelFields:
    """The editable fields of a channel row."""
    return ChannelFields(
        title=row["title"],
        description=row["description"],
        category=row["category"],
        tags=list(row["tags"]),
        language=row["language"],
    )
