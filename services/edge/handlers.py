"""One handler per edge request and per session event; queueing rules in domain.py, feeds in playback.py."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from libs.bus import Event, NotFound, Route, Unprocessable, new_id, request, route, utcnow
from libs.db import add_event
from libs.media.aiortc_ext import restrict_codecs
from libs.media.ice import IceSettings, advertise, link_headers, rtc_configuration
from libs.media.rtp_fanout import DirectSender, IdleTrack, KeyframeGate
from libs.media.sdp import check_offer
from libs.obs.logging import get_logger
from proto import channel as pc
from proto import edge as pe
from proto import ingest as pi
from services.edge import domain, store
from services.edge.playback import SessionFeed

__all__ = ["EdgeHandlers"]

log = get_logger("edge")


@dataclass
class Viewer:
    """One viewer's peer connection and RTP streams in this process."""

    viewer_session_id: str
    session_id: str
    pc: RTCPeerConnection
    senders: list[DirectSender]


class EdgeHandlers:
    """The edge endpoints over the pool, NATS and this process's viewers."""

    def __init__(self, pool: Any, nc: Any, config: Any, ice: IceSettings, process_id: str) -> None:
        self.pool, self.nc, self.config, self.ice, self.process_id = pool, nc, config, ice, process_id
        self.viewers: dict[str, Viewer] = {}  # by resource
        self.feeds: dict[str, SessionFeed] = {}

    def routes(self) -> list[Route[Any, Any]]:
        """Every request endpoint of the process, including its own DELETE subject."""
        return [
            route(pe.OFFER, self.offer),
            route(pe.VIEWERS, self.count),
            route(pe.VIEWER_HISTORY, self.viewer_history),
            route(pe.delete_rpc(self.process_id), self.delete),
        ]

    async def _feed(self, session_id: str) -> SessionFeed:
        feed = self.feeds.get(session_id)
        if feed is None:
            feed = self.feeds[session_id] = SessionFeed(self.nc, session_id)
            await feed.start()
        return feed

    async def _answer(self, offer: str, live: Any) -> tuple[RTCPeerConnection, list[DirectSender], str]:
        pc = RTCPeerConnection(rtc_configuration(self.ice))
        senders: list[DirectSender] = []
        session_id = live["session_id"]
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            for transceiver in pc.getTransceivers():
                codec = live["video_codec"] if transceiver.kind == "video" else live["audio_codec"]
                if not codec:
                    continue
                if not restrict_codecs(transceiver, codec):
                    raise Unprocessable(
                        f"the stream is {codec} but the offer's {transceiver.kind} section lacks it",
                        code="unsupported_codec",
                    )
                sender = pc.addTrack(IdleTrack(transceiver.kind))
                gate = KeyframeGate(self.config.viewer_backlog_bytes)
                senders.append(DirectSender(sender, gate, lambda: self._ask_keyframe(session_id)))
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

    async def offer(self, req: pe.WhepOffer) -> pe.WhepAnswer:
        """WHEP POST: answer with the stream's codecs and start at its next keyframe."""
        check_offer(req.sdp)
        async with self.pool.acquire() as conn:
            live = await store.fetch_live(conn, req.channel_name.lower())
        if live is None:
            raise NotFound(f'channel "{req.channel_name}" is not live', code="not_live")
        pc, senders, answer = await self._answer(req.sdp, live)
        viewer_session_id, resource = new_id(), secrets.token_urlsafe(24)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.insert_viewer(
                conn,
                viewer_session_id=viewer_session_id,
                live=live,
                viewer_id=req.viewer_id,
                process_id=self.process_id,
            )
            await add_event(
                conn,
                pe.ViewerJoined(
                    viewer_session_id=viewer_session_id,
                    channel_id=live["channel_id"],
                    channel_name=live["channel_name"],
                    session_id=live["session_id"],
                    viewer_id=req.viewer_id,
                    joined_at=row["joined_at"],
                ),
            )
        viewer = Viewer(viewer_session_id, live["session_id"], pc, senders)
        self.viewers[resource] = viewer
        feed = await self._feed(live["session_id"])
        for sender in senders:
            feed.add(sender)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._leave(resource)

        log.info("viewer_joined", viewer_session_id=viewer_session_id, channel=live["channel_name"])
        return pe.WhepAnswer(
            viewer_session_id=viewer_session_id,
            process_id=self.process_id,
            resource=resource,
            sdp=advertise(answer, self.ice),
            ice_links=link_headers(self.ice),
        )

    async def _leave(self, resource: str) -> Viewer | None:
        viewer = self.viewers.pop(resource, None)
        if viewer is None:
            return None
        feed = self.feeds.get(viewer.session_id)
        for sender in viewer.senders:
            if feed is not None:
                feed.remove(sender)
        if feed is not None and feed.empty:
            self.feeds.pop(viewer.session_id, None)
            await feed.close()
        await viewer.pc.close()
        async with self.pool.acquire() as conn, conn.transaction():
            await _record_leave(conn, viewer.viewer_session_id)
        log.info("viewer_left", viewer_session_id=viewer.viewer_session_id)
        return viewer

    async def delete(self, req: pe.ViewerRef) -> pe.ViewerLeftReply:
        """WHEP DELETE: the viewer leaves."""
        viewer = await self._leave(req.resource)
        if viewer is None:
            raise NotFound("no WHEP session at this address", code="session_not_found")
        return pe.ViewerLeftReply(viewer_session_id=viewer.viewer_session_id)

    async def count(self, req: pe.CountViewers) -> pe.ViewerCount:
        """How many watch the channel now (all edge processes)."""
        async with self.pool.acquire() as conn:
            n = await store.count_viewers(conn, req.channel_name.lower())
        return pe.ViewerCount(channel_name=req.channel_name.lower(), viewers=n)

    async def viewer_history(self, req: pe.ViewerHistoryRequest) -> pe.ViewerHistory:
        """edge.viewer_history: the owner's recent sessions and one session's viewer curve, peak, average."""
        domain.check_history_request(req.bucket_seconds, req.sessions)
        channel = await request(self.nc, pc.GET, pc.GetChannel(name=req.channel))
        domain.check_owner(channel.owner_id, req.actor_id, channel=channel.name)
        async with self.pool.acquire() as conn:
            rows = await store.list_sessions(conn, channel.id, req.sessions)
            sessions = [pe.SessionSummary(**dict(r)) for r in rows]
            chosen = next((s for s in sessions if s.session_id == req.session_id), None)
            if req.session_id and chosen is None:
                raise NotFound(
                    f'channel "{channel.name}" has no recent session "{req.session_id}"',
                    code="session_not_found",
                )
            chosen = chosen or (sessions[0] if sessions else None)
            curve = await _curve(conn, chosen, req.bucket_seconds) if chosen else None
        return pe.ViewerHistory(
            channel_id=channel.id, channel_name=channel.name, sessions=sessions, curve=curve
        )

    async def on_session(self, event: Event) -> None:
        """Keep the live sessions table and the sessions history; viewers of an ended session leave."""
        async with self.pool.acquire() as conn:
            if isinstance(event, pi.SessionStarted):
                await store.put_session(
                    conn,
                    session_id=event.session_id,
                    channel_id=event.channel_id,
                    channel_name=event.channel_name,
                    started_at=event.started_at,
                )
                await store.put_live(
                    conn,
                    channel_name=event.channel_name,
                    channel_id=event.channel_id,
                    session_id=event.session_id,
                    video_codec=event.video_codec,
                    audio_codec=event.audio_codec,
                    started_at=event.started_at,
                )
                return
            assert isinstance(event, pi.SessionEnded)
            await store.end_live(conn, event.session_id)
            await store.end_session(
                conn,
                session_id=event.session_id,
                channel_id=event.channel_id,
                channel_name=event.channel_name,
                started_at=event.started_at,
                ended_at=event.ended_at,
            )
        for resource, viewer in list(self.viewers.items()):
            if viewer.session_id == event.session_id:
                await self._leave(resource)

    async def maintain(self) -> None:
        """Every two seconds: refresh our viewers, let go of viewers of processes that went silent."""
        while True:
            await asyncio.sleep(2.0)
            async with self.pool.acquire() as conn, conn.transaction():
                await store.heartbeat(conn, self.process_id)
                for row in await store.stale_viewers(conn, 10.0):
                    await _record_leave(conn, row["id"])

    async def close(self) -> None:
        """Every viewer leaves."""
        for resource in list(self.viewers):
            with contextlib.suppress(Exception):
                await self._leave(resource)


async def _record_leave(conn: Any, viewer_session_id: str) -> None:
    row = await store.leave(conn, viewer_session_id)
    if row is not None:
        await add_event(
            conn,
            pe.ViewerLeft(
                viewer_session_id=row["id"],
                channel_id=row["channel_id"],
                channel_name=row["channel_name"],
                session_id=row["session_id"],
                viewer_id=row["viewer_id"],
                joined_at=row["joined_at"],
                left_at=row["left_at"],
            ),
        )


async def _curve(conn: Any, session: pe.SessionSummary, bucket_seconds: int) -> pe.SessionCurve:
    """The session's viewer curve up to its end (now while it is live) and its exact peak and average."""
    until = session.ended_at or utcnow()
    bucket = domain.curve_bucket((until - session.started_at).total_seconds(), bucket_seconds)
    bounds: dict[str, Any] = {
        "session_id": session.session_id,
        "started_at": session.started_at,
        "ended_at": until,
    }
    points = await store.viewer_curve(conn, bucket=bucket, **bounds)
    stats = await store.session_stats(conn, **bounds)
    return pe.SessionCurve(
        session_id=session.session_id,
        started_at=session.started_at,
        ended_at=session.ended_at,
        bucket_seconds=bucket,
        points=[pe.ViewerPoint(at=p["at"], viewers=p["viewers"]) for p in points],
        peak=stats["peak"],
        average=round(stats["average"], 3),
    )
