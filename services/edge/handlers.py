"""One handler per edge request, thin: rules in domain.py, SQL in store.py, the feeds of live sessions in
playback.py. This process's viewers (their peer connections) live here, with the maintenance step that
keeps their rows fresh and lets go of those that are over."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from nats.aio.client import Client

from libs.bus import NotFound, Route, Unprocessable, answers, new_id, request, route, utcnow
from libs.db import Pool, add_event
from libs.media.aiortc_ext import restrict_codecs
from libs.media.ice import IceSettings, advertise, link_headers, rtc_configuration
from libs.media.rtp_fanout import DirectSender, IdleTrack, KeyframeGate
from libs.media.sdp import check_offer
from libs.obs.logging import get_logger
from proto import channel as pc
from proto import edge as pe
from proto.ingest import LiveSession
from services.edge import domain, store
from services.edge.config import EdgeConfig
from services.edge.playback import SessionFeed

__all__ = ["Handlers"]

log = get_logger("edge")


@dataclass
class Viewer:
    """One viewer's peer connection and RTP streams in this process."""

    viewer_session_id: str
    session_id: str
    pc: RTCPeerConnection
    senders: list[DirectSender]


@dataclass(frozen=True, kw_only=True, slots=True)
class Handlers:
    """One method per edge request, marked with the Rpc it answers, over the pool, NATS and this process's
    viewers. DELETE goes to a subject naming this process: `process_routes` binds it."""

    pool: Pool
    nc: Client
    config: EdgeConfig
    ice: IceSettings
    process_id: str
    viewers: dict[str, Viewer] = field(default_factory=dict)  # this process's, by resource
    feeds: dict[str, SessionFeed] = field(default_factory=dict)  # by live session
    closing: set[asyncio.Task[Viewer | None]] = field(default_factory=set)

    def process_routes(self) -> list[Route[Any, Any]]:
        """This process's own DELETE endpoint (its subject names it, so no `@answers`)."""
        return [route(pe.delete_rpc(self.process_id), self.delete)]

    async def _feed(self, session_id: str) -> SessionFeed:
        feed = self.feeds.get(session_id)
        if feed is None:
            feed = self.feeds[session_id] = SessionFeed(self.nc, session_id)
            await feed.start()
        return feed

    def _senders(self, pc: RTCPeerConnection, live: LiveSession) -> list[DirectSender]:
        """One direct RTP sender per track of the broadcast the offer can take, or Unprocessable."""
        senders: list[DirectSender] = []
        for transceiver in pc.getTransceivers():
            codec = domain.track_codec(live, transceiver.kind)
            if not codec:
                continue
            if not restrict_codecs(transceiver, codec):
                raise Unprocessable(
                    f"the stream is {codec} but the offer's {transceiver.kind} section lacks it",
                    code="unsupported_codec",
                )
            sender = pc.addTrack(IdleTrack(transceiver.kind))
            gate = KeyframeGate(self.config.viewer_backlog_bytes)
            senders.append(DirectSender(sender, gate, lambda: self._ask_keyframe(live.session_id)))
        return senders

    async def _answer(
        self, offer: str, live: LiveSession
    ) -> tuple[RTCPeerConnection, list[DirectSender], str]:
        pc = RTCPeerConnection(rtc_configuration(self.ice))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            senders = self._senders(pc, live)
            await pc.setLocalDescription(await pc.createAnswer())
        except Unprocessable:
            await pc.close()
            raise
        except Exception as exc:
            await pc.close()
            raise Unprocessable(f"the offer cannot be answered: {exc}", code="offer_rejected") from None
        return pc, senders, str(pc.localDescription.sdp)

    def _ask_keyframe(self, session_id: str) -> None:
        """A viewer sent PLI/FIR: ask ingest for a keyframe (rate-limited by the feed)."""
        feed = self.feeds.get(session_id)
        if feed is not None:
            feed.ask_keyframe()

    @answers(pe.OFFER)
    async def offer(self, req: pe.WhepOffer) -> pe.WhepAnswer:
        """WHEP POST: answer with the stream's codecs and start at its next keyframe."""
        check_offer(req.sdp)
        async with self.pool.acquire() as conn:
            live = await store.fetch_live(conn, req.channel_name.lower())
        if live is None:
            raise NotFound(f'channel "{req.channel_name}" is not live', code="not_live")
        pc, senders, answer = await self._answer(req.sdp, live)
        resource = secrets.token_urlsafe(24)
        async with self.pool.acquire() as conn, conn.transaction():
            joined = await store.insert_viewer(
                conn,
                viewer_session_id=new_id(),
                live=live,
                viewer_id=req.viewer_id,
                process_id=self.process_id,
            )
            await add_event(conn, domain.viewer_joined(joined))
        self.viewers[resource] = Viewer(joined.id, live.session_id, pc, senders)
        feed = await self._feed(live.session_id)
        for sender in senders:
            feed.add(sender)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._leave(resource)

        log.info("viewer_joined", viewer_session_id=joined.id, channel=live.channel_name)
        return pe.WhepAnswer(
            viewer_session_id=joined.id,
            process_id=self.process_id,
            resource=resource,
            sdp=advertise(answer, self.ice),
            ice_links=link_headers(self.ice),
        )

    async def _leave(self, resource: str) -> Viewer | None:
        """The viewer at `resource` leaves: off its feed, its peer closed, its row and event (once)."""
        viewer = self.viewers.pop(resource, None)
        if viewer is None:
            return None
        feed = self.feeds.get(viewer.session_id)
        if feed is not None:
            for sender in viewer.senders:
                feed.remove(sender)
            if feed.empty:
                self.feeds.pop(viewer.session_id, None)
                await feed.close()
        await viewer.pc.close()
        async with self.pool.acquire() as conn, conn.transaction():
            left = await store.leave(conn, viewer.viewer_session_id)
            if left is not None:
                await add_event(conn, domain.viewer_left(left))
        log.info("viewer_left", viewer_session_id=viewer.viewer_session_id)
        return viewer

    def close_session(self, session_id: str) -> None:
        """The session ended: this process's viewers of it leave, in the background (called from the copy's
        transaction, which has recorded them as left; their own leave then changes nothing)."""
        for resource, viewer in list(self.viewers.items()):
            if viewer.session_id == session_id:
                task = asyncio.create_task(self._leave(resource), name=f"leave-{viewer.viewer_session_id}")
                self.closing.add(task)
                task.add_done_callback(self.closing.discard)

    async def delete(self, req: pe.ViewerRef) -> pe.ViewerLeftReply:
        """WHEP DELETE: the viewer leaves."""
        viewer = await self._leave(req.resource)
        if viewer is None:
            raise NotFound("no WHEP session at this address", code="session_not_found")
        return pe.ViewerLeftReply(viewer_session_id=viewer.viewer_session_id)

    @answers(pe.VIEWERS)
    async def count(self, req: pe.CountViewers) -> pe.ViewerCount:
        """How many watch the channel now (all edge processes)."""
        async with self.pool.acquire() as conn:
            n = await store.count_viewers(conn, req.channel_name.lower())
        return pe.ViewerCount(channel_name=req.channel_name.lower(), viewers=n)

    @answers(pe.VIEWER_HISTORY)
    async def viewer_history(self, req: pe.ViewerHistoryRequest) -> pe.ViewerHistory:
        """edge.viewer_history: the owner's recent sessions and one session's viewer curve, peak, average."""
        domain.check_history_request(req.bucket_seconds, req.sessions)
        channel = await request(self.nc, pc.GET, pc.GetChannel(name=req.channel))
        domain.check_owner(channel.owner_id, req.actor_id, channel=channel.name)
        curve = None
        async with self.pool.acquire() as conn:
            sessions = await store.list_sessions(conn, channel.id, req.sessions)
            chosen = domain.choose_session(sessions, req.session_id, channel=channel.name)
            if chosen is not None:
                window = domain.curve_window(chosen, req.bucket_seconds, utcnow())
                points = await store.viewer_curve(conn, window)
                curve = domain.session_curve(window, points, await store.session_stats(conn, window))
        return pe.ViewerHistory(
            channel_id=channel.id, channel_name=channel.name, sessions=sessions, curve=curve
        )

    async def maintain(self) -> bool:
        """Worker step: refresh this process's viewers, let go of those of processes that went silent, and
        close this process's viewers that are over (their session ended, seen by any edge process)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await store.heartbeat(conn, self.process_id)
            for viewer_session_id in await store.stale_viewers(conn, self.config.viewer_stale_seconds):
                left = await store.leave(conn, viewer_session_id)
                if left is not None:
                    await add_event(conn, domain.viewer_left(left))
            mine = {v.viewer_session_id: resource for resource, v in self.viewers.items()}
            over = await store.left_among(conn, list(mine)) if mine else set()
        for viewer_session_id in over:
            await self._leave(mine[viewer_session_id])
        return False

    async def close(self) -> None:
        """Every viewer leaves."""
        for resource in list(self.viewers):
            with contextlib.suppress(Exception):
                await self._leave(resource)
