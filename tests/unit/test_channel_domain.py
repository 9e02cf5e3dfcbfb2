"""The channel rules and the image checks, without servers."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from datetime import UTC, datetime

import msgspec
import pytest
from PIL import Image

from libs import paging
from libs.bus import BadRequest, Conflict, Forbidden
from proto.channel import CreateChannel, UpdateChannel
from services.channel import domain
from services.channel.images import AVATAR_SIZE, BANNER_BOX, MAX_PIXELS, process_image


def _new(**overrides: object) -> CreateChannel:
    fields: dict[str, object] = {
        "owner_id": "u1",
        "name": "alice",
        "title": "Painting birds",
        "category": "Art",
    }
    fields.update(overrides)
    return msgspec.convert(fields, CreateChannel)


def _stored(**overrides: object) -> domain.StoredChannel:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    fields: dict[str, object] = {
        "id": "c1", "name": "alice", "owner_id": "u1", "owner_username": "alice", "title": "Birds",
        "description": "", "category": "Art", "tags": ["painting"], "language": "en",
        "live_session_id": None, "live_since": None, "created_at": now, "updated_at": now,
        "stream_key_prefix": "live_abcdefg", "avatar": None, "banner": None, "version": 3,
    }  # fmt: skip
    fields.update(overrides)
    return msgspec.convert(fields, domain.StoredChannel)


# Names, fields ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"), [("alice", "alice"), ("Alice_99", "alice_99"), ("abc", "abc")]
)
def test_names_are_slugs_in_lower_case(given: str, canonical: str) -> None:
    assert domain.clean_name(given) == canonical


@pytest.mark.parametrize("bad", ["ab", "a" * 26, "has space", "dash-name", "émile", "name\n", "", "a.b"])
def test_bad_names_are_refused_naming_the_value(bad: str) -> None:
    with pytest.raises(BadRequest) as err:
        domain.clean_name(bad)
    assert f'"{bad}"' in err.value.detail


@pytest.mark.parametrize("taken", ["api", "Live", "vod", "dashboard", "settings", "signin", "assets"])
def test_names_of_site_paths_are_reserved(taken: str) -> None:
    """Channel pages are /<name>: a channel may not shadow the API, media paths or app pages."""
    with pytest.raises(BadRequest, match="reserved"):
        domain.clean_name(taken)


def test_new_fields_are_trimmed_and_canonical() -> None:
    fields = domain.new_fields(
        _new(
            title="  Birds  ",
            category="software and game development",
            language="FR",
            tags=["Art", "art", "ART2"],
        )
    )
    assert fields.title == "Birds"
    assert fields.category == "Software and Game Development"
    assert fields.language == "fr"
    assert fields.tags == ["Art", "ART2"]  # duplicates ignoring case dropped, first spelling kept


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"title": ""}, ["title", "empty"]),
        ({"title": "x" * 141}, ["title", "141"]),
        ({"title": "two\nlines"}, ["title", "line breaks"]),
        ({"description": "d" * 1001}, ["description", "1001"]),
        ({"category": "Cooking Badly"}, ["Cooking Badly", "Just Chatting"]),
        ({"tags": ["has space"]}, ['"has space"']),
        ({"tags": [""]}, ['""']),
        ({"tags": ["t" * 26]}, ["t" * 26]),
        ({"tags": ["semi;colon"]}, ["semi;colon"]),
        ({"tags": [f"t{i}" for i in range(11)]}, ["11 tags", "at most 10"]),
        ({"language": "eng"}, ['"eng"']),
        ({"language": "e1"}, ['"e1"']),
    ],
)
def test_bad_fields_are_refused_naming_the_problem(overrides: dict[str, object], words: list[str]) -> None:
    with pytest.raises(BadRequest) as err:
        domain.new_fields(_new(**overrides))
    for word in words:
        assert word in err.value.detail


def test_eleven_tags_that_dedup_to_ten_are_fine() -> None:
    tags = [f"t{i}" for i in range(10)] + ["T0"]
    assert len(domain.clean_tags(tags)) == 10


def test_partial_update_changes_only_sent_fields_and_names_them() -> None:
    current = domain.new_fields(_new(description="old", tags=["a"]))
    fields, changed = domain.apply_update(
        current, UpdateChannel(actor_id="u1", name="alice", title="New title", tags=["a"])
    )
    assert fields.title == "New title"
    assert fields.description == "old"
    assert changed == ["title"]  # tags were sent but did not move


def test_update_checks_the_fields_it_gets() -> None:
    current = domain.new_fields(_new())
    with pytest.raises(BadRequest, match="category"):
        domain.apply_update(current, UpdateChannel(actor_id="u1", name="alice", category="Nope"))


def test_only_the_owner_passes_the_owner_check() -> None:
    domain.check_owner("u1", "u1", channel="alice", action="edit it")
    for actor in ("u2", ""):
        with pytest.raises(Forbidden, match='owner of channel "alice" may edit it'):
            domain.check_owner("u1", actor, channel="alice", action="edit it")


def test_role_rules() -> None:
    common = {"owner_id": "o", "username": "bob", "channel": "alice", "role": "moderator"}
    domain.check_role_change(user_id="b", held=None, granted=True, **common)  # type: ignore[arg-type]
    domain.check_role_change(user_id="b", held="moderator", granted=True, **common)  # type: ignore[arg-type]
    domain.check_role_change(user_id="o", held=None, granted=False, **common)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match='"bob" owns channel "alice"'):
        domain.check_role_change(user_id="o", held=None, granted=True, **common)  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="already a vip"):
        domain.check_role_change(user_id="b", held="vip", granted=True, **common)  # type: ignore[arg-type]


# Stream keys, search, cursors ---------------------------------------------------------------------------


def test_stream_keys_are_random_hashed_and_checked() -> None:
    key, prefix, key_hash = domain.new_stream_key()
    other, _, _ = domain.new_stream_key()
    assert key.startswith("live_")
    assert len(key) >= 45
    assert key != other
    assert key.startswith(prefix)
    assert len(prefix) == 12
    assert key.encode() not in key_hash
    assert len(key_hash) == 32
    assert domain.stream_key_matches(key, key_hash)
    assert not domain.stream_key_matches(other, key_hash)
    assert not domain.stream_key_matches(key, None)


@pytest.mark.parametrize(
    ("query", "pattern"),
    [("birds", "%birds%"), ("50%", "%50\\%%"), ("a_b", "%a\\_b%"), ("c:\\x", "%c:\\\\x%")],
)
def test_like_patterns_take_wildcards_literally(query: str, pattern: str) -> None:
    assert domain.like_pattern(query) == pattern


def test_cursors_round_trip_and_bad_ones_are_refused() -> None:
    cursor = domain.Cursor(True, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "id-1")
    assert paging.decode_cursor(paging.encode_cursor(cursor), domain.Cursor) == cursor
    for bad in ("nonsense!", "e30", paging.encode_cursor(cursor)[:-3]):
        with pytest.raises(BadRequest, match="cursor"):
            paging.decode_cursor(bad, domain.Cursor)


def test_a_page_cuts_the_extra_row_and_points_after_its_last() -> None:
    """The store reads one row more than the page: that row only says another page follows."""
    at = datetime(2026, 1, 2, tzinfo=UTC)
    channels = [_stored(id=f"c{n}", created_at=at) for n in range(3)]
    items, cursor = paging.page(channels, 2, domain.cursor_after)
    assert [c.id for c in items] == ["c0", "c1"]
    assert cursor is not None
    assert paging.decode_cursor(cursor, domain.Cursor) == domain.Cursor(False, at, "c1")
    assert paging.page(channels, 3, domain.cursor_after) == (channels, None)
    assert paging.decode_cursor("", domain.Cursor) is None  # the first page


@pytest.mark.parametrize("limit", [0, -1, 101])
def test_limits_outside_1_to_100_are_refused(limit: int) -> None:
    with pytest.raises(BadRequest, match=str(limit)):
        paging.check_limit(limit)


# Images -------------------------------------------------------------------------------------------------


def image_bytes(fmt: str, size: tuple[int, int] = (640, 480), mode: str = "RGB", **save: object) -> bytes:
    """An image made in memory, with a gradient so that it compresses like a picture."""
    img = Image.linear_gradient("L").resize(size).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid-looking PNG whose header declares `width` x `height` 1-bit pixels, all zero (a few KB)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + (width + 7) // 8)
    idat = zlib.compressobj(9)
    data = b"".join(idat.compress(row) for _ in range(64)) + idat.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_avatars_of_each_format_become_256_square_webp(fmt: str) -> None:
    out = process_image(image_bytes(fmt, (640, 480)), "avatar", f"image/{fmt.lower()}")
    assert (out.width, out.height) == AVATAR_SIZE
    assert out.content_type == "image/webp"
    with Image.open(io.BytesIO(out.data)) as img:
        assert img.format == "WEBP"
        assert img.size == AVATAR_SIZE


def test_banners_fit_into_1200_by_480_keeping_their_shape() -> None:
    out = process_image(image_bytes("JPEG", (3000, 1000)), "banner", "image/jpeg")
    assert (out.width, out.height) == (1200, 400)
    small = process_image(image_bytes("PNG", (600, 200)), "banner", "image/png")
    assert (small.width, small.height) == (600, 200)  # never blown up
    assert out.width <= BANNER_BOX[0]
    assert out.height <= BANNER_BOX[1]


def test_metadata_is_stripped_and_the_etag_is_the_sha256_of_the_bytes() -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {2: (1.0, 2.0, 3.0)}  # GPS
    src = image_bytes("JPEG", (400, 400), exif=exif.tobytes(), icc_profile=b"\x00" * 128)
    out = process_image(src, "avatar", "image/jpeg")
    assert b"SecretCam" not in out.data
    with Image.open(io.BytesIO(out.data)) as img:
        assert "exif" not in img.info
        assert "icc_profile" not in img.info
    assert out.etag == hashlib.sha256(out.data).hexdigest()


def test_transparency_survives() -> None:
    img = Image.new("RGB", (300, 300), (200, 30, 30))
    img.putalpha(Image.linear_gradient("L").resize((300, 300)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    out = process_image(buf.getvalue(), "avatar", "image/png")
    with Image.open(io.BytesIO(out.data)) as result:
        assert result.mode == "RGBA"
        alpha = result.getchannel("A")
        assert alpha.getextrema()[0] < 50  # still see-through at the top


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (b"just some text, not a picture\n" * 10, "image/png"),
        (b"GIF89a" + b"\x00" * 100, "image/jpeg"),
        (image_bytes("GIF", (20, 20), mode="P"), "image/png"),
        (image_bytes("BMP", (20, 20)), "image/webp"),
    ],
)
def test_non_images_and_other_formats_are_refused_whatever_they_claim(data: bytes, declared: str) -> None:
    with pytest.raises(BadRequest) as err:
        process_image(data, "avatar", declared)
    assert "not a PNG, JPEG or WebP image" in err.value.detail
    assert declared in err.value.detail


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_images_are_refused(fmt: str) -> None:
    whole = image_bytes(fmt, (640, 480))
    for cut in (len(whole) // 2, 40):
        with pytest.raises(BadRequest, match="truncated or corrupt"):
            process_image(whole[:cut], "avatar", "image/png")


def test_empty_body_is_refused() -> None:
    with pytest.raises(BadRequest, match="empty"):
        process_image(b"", "avatar", "image/png")


def test_decompression_bomb_is_refused_from_its_header_naming_its_dimensions() -> None:
    bomb = png_bomb(30000, 30000)
    assert len(bomb) < 20_000
    with pytest.raises(BadRequest) as err:
        process_image(bomb, "avatar", "image/png")
    assert "30000x30000" in err.value.detail
    assert str(MAX_PIXELS) in err.value.detail


def test_just_over_the_pixel_limit_is_refused_too() -> None:
    # Between Pillow's warning and its error: our own check must catch it.
    with pytest.raises(BadRequest, match="9000x5000"):
        process_image(png_bomb(9000, 5000), "banner", "image/png")


# Views, events and lookups ---------------------------------------------------------------------------


def test_only_the_owner_sees_the_stream_key_prefix() -> None:
    channel = _stored()
    assert domain.channel_view(channel, actor_id="u1").stream_key_prefix == "live_abcdefg"
    assert domain.channel_view(channel, actor_id="u2").stream_key_prefix is None
    assert domain.channel_view(channel).stream_key_prefix is None


def test_a_channel_is_live_while_it_has_a_session() -> None:
    assert domain.channel_view(_stored()).live is False
    assert domain.channel_view(_stored(live_session_id="s1")).live is True


def test_the_update_event_carries_the_owner_and_the_new_version() -> None:
    event = domain.updated_event(_stored(title="Fish"), ["title"])
    assert (event.owner_id, event.version, event.changed, event.title) == ("u1", 3, ["title"], "Fish")
    created = domain.created_event(_stored(version=1))
    assert (created.owner_id, created.version) == ("u1", 1)


@pytest.mark.parametrize(("raw", "field"), [("channel_id", "channel_id"), ("Name", "name")])
def test_a_channel_is_looked_up_by_id_or_name_in_any_case(raw: str, field: str) -> None:
    assert domain.lookup_field(raw) == field


def test_a_lookup_by_another_field_is_refused_naming_it() -> None:
    with pytest.raises(BadRequest, match='not "owner_id"'):
        domain.lookup_field("owner_id")
