"""Channel emotes: upload (owner only), list, delete, and the global set installed at first start.

Images: a PNG, GIF or WebP upload checked and re-encoded as WebP at 28, 56 and 112 px (animated uploads
stay animated) in a worker thread, and the global set drawn with Pillow. They are stored in the object
store before the row that names them; events tell chat. SQL lives in store.py."""

from __future__ import annotations

import asyncio
import io
import math
import re
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass

import asyncpg
import msgspec
from nats.js.object_store import ObjectStore
from PIL import Image, ImageDraw, ImageOps, ImageSequence, UnidentifiedImageError

from libs.bus import BadRequest, Conflict, NotFound, answers, new_id
from libs.db import Connection, Pool, add_event
from libs.obs.logging import get_logger
from proto import channel as pc
from proto.channel import EMOTE_SIZES
from services.channel import store
from services.channel.buckets import drop_objects, put_objects
from services.channel.domain import StoredChannel
from services.channel.handlers import named, owned
from services.channel.images import DECODE_ERRORS

__all__ = [
    "GLOBAL_CODES",
    "MAX_EMOTES_PER_CHANNEL",
    "EmoteHandlers",
    "ProcessedEmote",
    "check_code",
    "check_tier",
    "draw_global",
    "emote_added",
    "emote_objects",
    "emote_removed",
    "global_emote_id",
    "process_emote",
]

log = get_logger("channel")

MAX_EMOTES_PER_CHANNEL = 50
MAX_SIDE = 4096
MAX_FRAMES = 100
MAX_TOTAL_PIXELS = 40_000_000  # all frames together, decoded
_FORMATS = ("PNG", "GIF", "WEBP")
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,24}$")


class ProcessedEmote(msgspec.Struct, frozen=True, kw_only=True):
    """WebP bytes per size name ("1x", "2x", "4x")."""

    sizes: dict[str, bytes]
    animated: bool
    content_type: str = "image/webp"


def check_code(code: str) -> str:
    """An emote code: 3 to 25 letters and digits, starting with a letter (case kept, matched exactly)."""
    if not _CODE.match(code):
        raise BadRequest(
            f'emote code "{code[:40]}" must be 3 to 25 letters and digits, starting with a letter',
            code="invalid_emote_code",
        )
    return code


def check_tier(tier: int) -> int:
    """0 (everyone) or a subscription tier 1 to 3."""
    if tier not in (0, 1, 2, 3):
        raise BadRequest(f"emote tier must be 0, 1, 2 or 3, not {tier}", code="invalid_emote_tier")
    return tier


def _open(data: bytes, declared: str) -> Image.Image:
    if not data:
        raise BadRequest("emote image is empty", code="invalid_image")
    try:
        img = Image.open(io.BytesIO(data), formats=_FORMATS)
    except UnidentifiedImageError:
        raise BadRequest(
            f'not a PNG, GIF or WebP image (sent as "{declared}")', code="unsupported_image"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, *DECODE_ERRORS):
        raise BadRequest("emote image is truncated, corrupt or too large", code="corrupt_image") from None
    width, height = img.size
    frames = getattr(img, "n_frames", 1)
    if max(width, height) > MAX_SIDE or width * height * frames > MAX_TOTAL_PIXELS or frames > MAX_FRAMES:
        raise BadRequest(
            f"emote image is {width}x{height} with {frames} frames; at most {MAX_SIDE} px a side and"
            f" {MAX_FRAMES} frames",
            code="image_too_large",
        )
    return img


def _square(frame: Image.Image, side: int) -> Image.Image:
    return ImageOps.pad(frame.convert("RGBA"), (side, side), Image.Resampling.LANCZOS, color=(0, 0, 0, 0))


def _encode(frames: list[Image.Image], durations: list[int]) -> bytes:
    buf = io.BytesIO()
    if len(frames) == 1:
        frames[0].save(buf, "WEBP", lossless=True)
    else:
        frames[0].save(
            buf, "WEBP", save_all=True, append_images=frames[1:], duration=durations, loop=0, lossless=True
        )
    return buf.getvalue()


def process_emote(data: bytes, declared: str = "") -> ProcessedEmote:
    """Check an upload and re-encode it at each emote size, padded square, without metadata."""
    with _open(data, declared) as img:
        try:
            frames = [f.copy() for f in ImageSequence.Iterator(img)]
            durations = [
                max(20, int(f.info.get("duration", 100) or 100)) for f in ImageSequence.Iterator(img)
            ]
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, *DECODE_ERRORS):
            raise BadRequest("emote image is truncated or corrupt", code="corrupt_image") from None
    sizes = {
        name: _encode([_square(f, side) for f in frames], durations) for name, side in EMOTE_SIZES.items()
    }
    return ProcessedEmote(sizes=sizes, animated=len(frames) > 1)


# The global set: drawn here, so no image is copied from anywhere. --------------------------------------

GLOBAL_CODES = ("cpcSmile", "cpcSad", "cpcHeart", "cpcWow", "cpcGG", "cpcSpin")


def global_emote_id(code: str) -> str:
    """A global emote's id, the same on every start and every deployment."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cpc-live:global-emote:{code}"))


def _face(draw: ImageDraw.ImageDraw, s: int, mood: str) -> None:
    draw.ellipse((4, 4, s - 4, s - 4), fill=(255, 204, 51, 255), outline=(120, 80, 0, 255), width=6)
    for x in (0.36, 0.64):
        draw.ellipse((x * s - 8, 0.36 * s - 10, x * s + 8, 0.36 * s + 10), fill=(40, 30, 20, 255))
    box = (0.28 * s, 0.5 * s, 0.72 * s, 0.8 * s)
    if mood == "smile":
        draw.arc(box, 20, 160, fill=(40, 30, 20, 255), width=7)
    elif mood == "sad":
        draw.arc((box[0], 0.62 * s, box[2], 0.9 * s), 200, 340, fill=(40, 30, 20, 255), width=7)
    else:
        draw.ellipse((0.42 * s, 0.58 * s, 0.58 * s, 0.8 * s), fill=(40, 30, 20, 255))


def _draw(code: str, angle: float = 0.0) -> Image.Image:
    s = 112
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    if code in ("cpcSmile", "cpcSad", "cpcWow"):
        _face(draw, s, code[3:].lower())
    elif code == "cpcHeart":
        draw.ellipse((10, 18, 58, 66), fill=(230, 40, 70, 255))
        draw.ellipse((54, 18, 102, 66), fill=(230, 40, 70, 255))
        draw.polygon([(13, 52), (99, 52), (56, 100)], fill=(230, 40, 70, 255))
    elif code == "cpcGG":
        draw.rounded_rectangle((6, 20, 106, 92), radius=16, fill=(60, 160, 90, 255))
        draw.text((22, 30), "GG", fill=(255, 255, 255, 255), font_size=44)
    else:  # cpcSpin: a four-armed star turning
        for k in range(4):
            a = angle + k * math.pi / 2
            tip = (s / 2 + 48 * math.cos(a), s / 2 + 48 * math.sin(a))
            left = (s / 2 + 14 * math.cos(a + 0.8), s / 2 + 14 * math.sin(a + 0.8))
            right = (s / 2 + 14 * math.cos(a - 0.8), s / 2 + 14 * math.sin(a - 0.8))
            draw.polygon([left, tip, right, (s / 2, s / 2)], fill=(90, 120, 255, 255))
    return img


def draw_global(code: str) -> ProcessedEmote:
    """Render one emote of the global set at every size (cpcSpin is animated)."""
    frames = [_draw(code, k * math.pi / 16) for k in range(8)] if code == "cpcSpin" else [_draw(code)]
    sizes = {
        name: _encode([f.resize((side, side), Image.Resampling.LANCZOS) for f in frames], [60] * len(frames))
        for name, side in EMOTE_SIZES.items()
    }
    return ProcessedEmote(sizes=sizes, animated=len(frames) > 1)


# Objects and events. -------------------------------------------------------------------------------


def emote_objects(emote_id: str, img: ProcessedEmote) -> dict[str, bytes]:
    """The bytes of each size of an emote by their object names."""
    return {pc.emote_object_name(emote_id, size): data for size, data in img.sizes.items()}


def emote_added(emote: pc.Emote, channel_name: str, *, version: int) -> pc.EmoteAdded:
    """EmoteAdded for an emote just stored, at the emote's new `version`."""
    return pc.EmoteAdded(
        version=version,
        emote_id=emote.id,
        channel_id=emote.channel_id,
        channel_name=channel_name,
        code=emote.code,
        tier=emote.tier,
        animated=emote.animated,
        content_type=emote.content_type,
    )


def emote_removed(emote: pc.Emote, channel_name: str, *, version: int) -> pc.EmoteRemoved:
    """EmoteRemoved for an emote just deleted, at the emote's new `version`."""
    return pc.EmoteRemoved(
        emote_id=emote.id,
        channel_id=emote.channel_id,
        channel_name=channel_name,
        code=emote.code,
        version=version,
    )


# Endpoints. -----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class EmoteHandlers:
    """One method per emote request, over the pool, the emote bucket and the image workers."""

    pool: Pool
    bucket: ObjectStore  # the JetStream object store bucket proto.channel.EMOTE_BUCKET
    executor: Executor

    async def _owned(self, conn: Connection, name: str, actor_id: str, *, lock: bool) -> StoredChannel:
        return await owned(conn, name, actor_id, "manage its emotes", lock=lock)

    async def _add(
        self,
        conn: Connection,
        emote_id: str,
        img: ProcessedEmote,
        *,
        channel: StoredChannel | None,
        code: str,
        tier: int,
    ) -> pc.Emote:
        """Store every size of an emote, then (in the caller's transaction) its row and EmoteAdded; a
        channel of None adds it to the global set."""
        await put_objects(self.bucket, emote_objects(emote_id, img))
        emote = await store.insert_emote(
            conn,
            emote_id=emote_id,
            channel_id="" if channel is None else channel.id,
            code=code,
            tier=tier,
            animated=img.animated,
            content_type=img.content_type,
        )
        version = await store.next_version(conn, aggregate=pc.emote_aggregate(emote.id))
        await add_event(conn, emote_added(emote, "" if channel is None else channel.name, version=version))
        return emote

    @answers(pc.UPLOAD_EMOTE)
    async def upload(self, req: pc.UploadEmote) -> pc.Emote:
        """channel.upload_emote: check the code, tier and image, store all sizes, then add the row."""
        code, tier = check_code(req.code), check_tier(req.tier)
        async with self.pool.acquire() as conn:  # refuse early, before spending CPU on the image
            await self._owned(conn, req.name, req.actor_id, lock=False)
        loop = asyncio.get_running_loop()
        img = await loop.run_in_executor(self.executor, process_emote, req.data, req.content_type)
        emote_id = new_id()
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await self._owned(conn, req.name, req.actor_id, lock=True)
            if len(await store.list_emotes(conn, channel_id=channel.id)) >= MAX_EMOTES_PER_CHANNEL:
                raise Conflict(
                    f"a channel has at most {MAX_EMOTES_PER_CHANNEL} emotes; delete one first",
                    code="emote_limit",
                )
            if await store.emote_code_taken(conn, channel_id=channel.id, code=code):
                raise Conflict(f'emote code "{code}" is taken', code="emote_code_taken")
            emote = await self._add(conn, emote_id, img, channel=channel, code=code, tier=tier)
        log.info("emote_added", channel_id=channel.id, code=code, tier=tier, animated=img.animated)
        return emote

    @answers(pc.LIST_EMOTES)
    async def list_emotes(self, req: pc.ListEmotes) -> pc.EmoteList:
        """channel.list_emotes: a channel's emotes, or the global set when `name` is empty."""
        async with self.pool.acquire() as conn:
            channel_id = (await named(conn, req.name)).id if req.name else ""
            emotes = await store.list_emotes(conn, channel_id=channel_id)
        return pc.EmoteList(items=emotes)

    @answers(pc.DELETE_EMOTE)
    async def delete(self, req: pc.DeleteEmote) -> pc.Emote:
        """channel.delete_emote: the owner removes an emote by code; chat stops showing it."""
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await self._owned(conn, req.name, req.actor_id, lock=True)
            emote = await store.delete_emote(conn, channel_id=channel.id, code=req.code)
            if emote is None:
                raise NotFound(f'channel "{channel.name}" has no emote "{req.code}"', code="emote_not_found")
            version = await store.next_version(conn, aggregate=pc.emote_aggregate(emote.id))
            await add_event(conn, emote_removed(emote, channel.name, version=version))
        await drop_objects(self.bucket, [pc.emote_object_name(emote.id, size) for size in EMOTE_SIZES])
        log.info("emote_removed", channel_id=channel.id, code=emote.code)
        return emote

    async def install_global_set(self) -> None:
        """Draw and store the global emotes missing from this deployment (idempotent; replicas may race)."""
        for code in GLOBAL_CODES:
            await self._install_global(code)

    async def _install_global(self, code: str) -> None:
        emote_id = global_emote_id(code)
        async with self.pool.acquire() as conn:
            if await store.emote_exists(conn, emote_id=emote_id):
                return
        img = await asyncio.get_running_loop().run_in_executor(self.executor, draw_global, code)
        try:
            # Another replica may be installing it too: the same bytes, and one of the rows wins.
            async with self.pool.acquire() as conn, conn.transaction():
                await self._add(conn, emote_id, img, channel=None, code=code, tier=0)
        except asyncpg.UniqueViolationError:
            return
        log.info("global_emote_installed", code=code)
