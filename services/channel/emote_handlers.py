"""Channel emotes: upload (owner only), list, delete, and the global set installed at first start.
Images are stored in the object store before the row that names them; events tell chat."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any

import asyncpg
from nats.errors import Error as NatsError

from libs.bus import Conflict, NotFound, Route, ServiceUnavailable, new_id, route
from libs.db import add_event
from libs.obs.logging import get_logger
from proto import channel as pc
from services.channel import domain, store
from services.channel.emotes import (
    GLOBAL_CODES,
    MAX_EMOTES_PER_CHANNEL,
    ProcessedEmote,
    check_code,
    check_tier,
    draw_global,
    global_emote_id,
    process_emote,
)

__all__ = ["EmoteHandlers"]

log = get_logger("channel")


def _view(row: Any) -> pc.Emote:
    return pc.Emote(
        id=row["id"],
        code=row["code"],
        channel_id=row["channel_id"],
        tier=row["tier"],
        animated=row["animated"],
        content_type=row["content_type"],
        urls=pc.emote_urls(row["id"]),
        created_at=row["created_at"],
    )


def _added(row: Any, channel_name: str) -> pc.EmoteAdded:
    return pc.EmoteAdded(
        emote_id=row["id"],
        channel_id=row["channel_id"],
        channel_name=channel_name,
        code=row["code"],
        tier=row["tier"],
        animated=row["animated"],
        content_type=row["content_type"],
    )


class EmoteHandlers:
    """Emote endpoints over the pool, the emote bucket and the image workers."""

    def __init__(self, pool: Any, bucket: Any, executor: Executor) -> None:
        self.pool = pool
        self.bucket = bucket
        self.executor = executor

    def routes(self) -> list[Route[Any, Any]]:
        """The emote endpoints."""
        return [
            route(pc.UPLOAD_EMOTE, self.upload),
            route(pc.LIST_EMOTES, self.list),
            route(pc.DELETE_EMOTE, self.delete),
        ]

    async def _owned(self, conn: Any, name: str, actor_id: str, *, lock: bool) -> Any:
        row = await store.fetch_channel(conn, name=name.lower(), lock=lock)
        if row is None:
            raise NotFound(f'channel "{name}" does not exist', code="channel_not_found")
        domain.check_owner(row["owner_id"], actor_id, channel=row["name"], action="manage its emotes")
        return row

    async def _put_images(self, emote_id: str, img: ProcessedEmote) -> None:
        try:
            for size, data in img.sizes.items():
                await self.bucket.put(pc.emote_object_name(emote_id, size), data)
        except (NatsError, TimeoutError) as exc:
            log.warning("emote_store_failed", emote_id=emote_id, error=str(exc))
            raise ServiceUnavailable(
                "the image store is not reachable; try again", code="image_store"
            ) from None

    async def _drop_images(self, emote_id: str) -> None:
        for size in pc.EMOTE_SIZES:
            try:
                await self.bucket.delete(pc.emote_object_name(emote_id, size))
            except Exception as exc:  # an orphan costs a few KB; the row is what counts
                log.warning("emote_image_not_deleted", emote_id=emote_id, size=size, error=str(exc))

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
            if len(await store.list_emotes(conn, channel_id=channel["id"])) >= MAX_EMOTES_PER_CHANNEL:
                raise Conflict(
                    f"a channel has at most {MAX_EMOTES_PER_CHANNEL} emotes; delete one first",
                    code="emote_limit",
                )
            if await store.emote_code_taken(conn, channel_id=channel["id"], code=code):
                raise Conflict(f'emote code "{code}" is taken', code="emote_code_taken")
            await self._put_images(emote_id, img)
            row = await store.insert_emote(
                conn,
                emote_id=emote_id,
                channel_id=channel["id"],
                code=code,
                tier=tier,
                animated=img.animated,
                content_type=img.content_type,
            )
            await add_event(conn, _added(row, channel["name"]))
        log.info("emote_added", channel_id=channel["id"], code=code, tier=tier, animated=img.animated)
        return _view(row)

    async def list(self, req: pc.ListEmotes) -> pc.EmoteList:
        """channel.list_emotes: a channel's emotes, or the global set when `name` is empty."""
        async with self.pool.acquire() as conn:
            channel_id = ""
            if req.name:
                channel = await store.fetch_channel(conn, name=req.name.lower())
                if channel is None:
                    raise NotFound(f'channel "{req.name}" does not exist', code="channel_not_found")
                channel_id = channel["id"]
            rows = await store.list_emotes(conn, channel_id=channel_id)
        return pc.EmoteList(items=[_view(r) for r in rows])

    async def delete(self, req: pc.DeleteEmote) -> pc.Emote:
        """channel.delete_emote: the owner removes an emote by code; chat stops showing it."""
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await self._owned(conn, req.name, req.actor_id, lock=True)
            row = await store.delete_emote(conn, channel_id=channel["id"], code=req.code)
            if row is None:
                raise NotFound(
                    f'channel "{channel["name"]}" has no emote "{req.code}"', code="emote_not_found"
                )
            event = pc.EmoteRemoved(
                emote_id=row["id"], channel_id=channel["id"], channel_name=channel["name"], code=row["code"]
            )
            await add_event(conn, event)
        await self._drop_images(row["id"])
        log.info("emote_removed", channel_id=channel["id"], code=row["code"])
        return _view(row)

    async def install_global_set(self) -> None:
        """Draw and store the global emotes missing from this deployment (idempotent; replicas may race)."""
        loop = asyncio.get_running_loop()
        for code in GLOBAL_CODES:
            emote_id = global_emote_id(code)
            async with self.pool.acquire() as conn:
                if await conn.fetchval("SELECT 1 FROM emotes WHERE id = $1", emote_id):
                    continue
            img = await loop.run_in_executor(self.executor, draw_global, code)
            await self._put_images(emote_id, img)  # the same bytes every time: a repeat is harmless
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    row = await store.insert_emote(
                        conn,
                        emote_id=emote_id,
                        channel_id="",
                        code=code,
                        tier=0,
                        animated=img.animated,
                        content_type=img.content_type,
                    )
                    await add_event(conn, _added(row, ""))
            except asyncpg.UniqueViolationError:
                continue
            log.info("global_emote_installed", code=code)
