"""One handler per ingest request; the lifecycle rules are in domain.py, the peer in broadcast.py."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.sdp import candidate_from_sdp
from nats.aio.client import Client

from libs.bus import BadRequest, Conflict, NotFound, Route, Unprocessable, new_id, request, route
from libs.db import add_event
from libs.media.ice import IceSettings, advertise, link_headers, rtc_configuration
from libs.media.sdp import check_offer
from libs.obs.logging import get_logger
from proto import channel as pc
from proto import ingest as pi
from services.ingest import domain, store
from services.ingest.broadcast import BroadcastPeer, Measured

__all__ = ["IngestHandlers"]

log = get_logger("ingest")


def _open(row: Any) -> domain.OpenSession | None:
    if row is None:
        return None
    return domain.OpenSession(
        kind=row["kind"], state=row["state"], last_seen=row["last_seen"], grace_until=row["grace_until"]
    )


def _state(row: Any) -> pi.SessionState:
    return pi.SessionState(
        session_id=row["id"],
        channel_id=row["channel_id"],
        channel_name=row["channel_name"],
        state=row["state"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
    )


async def _end(conn: Any, session_id: str) -> Any:
    """End the session and record its events (a started event first if it never left)."""
    row = await store.end_session(conn, session_id)
    if row is None:
        return None
    common = {"session_id": row["id"], "channel_id": row["channel_id"], "channel_name": row["channel_name"]}
    if not row["announced"]:
        await add_event(conn, pi.SessionStarted(**common, started_at=row["started_at"]))
    await add_event(conn, pi.SessionEnded(**common, started_at=row["started_at"], ended_at=row["ended_at"]))
    log.info("session_ended", **common)
    return row


class IngestHandlers:
    """The ingest endpoints over the pool, NATS and this process's broadcaster peers."""

    def __init__(self, pool: Any, nc: Client, config: Any, ice: IceSettings, process_id: str) -> None:
        self.pool, self.nc, self.config, self.ice = pool, nc, config, ice
        self.process_id = process_id
        self.grace = timedelta(seconds=config.grace_seconds)
        self.stale = timedelta(seconds=config.stale_seconds)
        self.peers: dict[str, BroadcastPeer] = {}  # by resource

    def routes(self) -> list[Route[Any, Any]]:
        """Every request endpoint of the process, including its own PATCH/DELETE subjects."""
        return [
            route(pi.OFFER, self.offer),
            route(pi.OPERATOR_START, self.operator_start),
            route(pi.OPERATOR_END, self.operator_end),
            route(pi.patch_rpc(self.process_id), self.patch),
            route(pi.delete_rpc(self.process_id), self.delete),
        ]

    def _peer(self, session_id: str, resource: str) -> BroadcastPeer:
        return BroadcastPeer(
            nc=self.nc,
            pc=RTCPeerConnection(rtc_configuration(self.ice)),
            session_id=session_id,
            resource=resource,
            on_measured=self._announce,
            on_gone=self._gone,
            media_timeout=self.config.media_timeout_seconds,
            connect_timeout=self.config.connect_timeout_seconds,
        )

    async def offer(self, req: pi.WhipOffer) -> pi.WhipAnswer:
        """WHIP POST: check the key and the offer, then answer; a dropped broadcaster resumes its session."""
        check_offer(req.sdp)
        owner = await request(
            self.nc, pc.CHECK_KEY, pc.CheckKey(name=req.channel_name, stream_key=req.stream_key)
        )
        resource = secrets.token_urlsafe(24)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.fetch_open(conn, owner.channel_id)
            decision = domain.decide_start(
                _open(row), "whip", datetime.now(UTC), grace=self.grace, stale=self.stale
            )
            if decision in ("conflict", "same"):
                raise Conflict(
                    f'channel "{owner.name}" is already live with another broadcaster', code="already_live"
                )
            if row is not None and decision == "new":
                await _end(conn, row["id"])
            session_id = row["id"] if decision == "resume" else new_id()
            peer = self._peer(session_id, resource)
            try:
                answer = await peer.accept(req.sdp)
            except Exception as exc:
                await peer.close()
                raise Unprocessable(f"the offer cannot be answered: {exc}", code="offer_rejected") from None
            if decision == "resume":
                await self._drop_local(row["resource"])
                await store.resume_session(
                    conn, session_id, kind="whip", process_id=self.process_id, resource=resource
                )
            else:
                await store.insert_session(
                    conn,
                    session_id=session_id,
                    channel_id=owner.channel_id,
                    channel_name=owner.name,
                    kind="whip",
                    process_id=self.process_id,
                    resource=resource,
                    video_codec=peer.codecs.get("video", ""),
                    audio_codec=peer.codecs.get("audio", ""),
                )
        self.peers[resource] = peer
        await peer.start()
        log.info(
            "session_accepted",
            session_id=session_id,
            channel=owner.name,
            decision=decision,
            codecs=peer.codecs,
        )
        return pi.WhipAnswer(
            session_id=session_id,
            process_id=self.process_id,
            resource=resource,
            sdp=advertise(answer, self.ice),
            resumed=decision == "resume",
            ice_links=link_headers(self.ice),
        )

    async def _drop_local(self, resource: str) -> None:
        peer = self.peers.pop(resource, None) if resource else None
        if peer is not None:
            await peer.close()

    async def _announce(self, peer: BroadcastPeer, measured: Measured) -> None:
        """The started event, with what the first second of media showed."""
        width, height, bitrate = measured
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.fetch_session(conn, peer.session_id)
            if row is None or row["state"] == "ended" or not await store.mark_announced(conn, row["id"]):
                return
            await add_event(
                conn,
                pi.SessionStarted(
                    session_id=row["id"],
                    channel_id=row["channel_id"],
                    channel_name=row["channel_name"],
                    started_at=row["started_at"],
                    video_codec=row["video_codec"],
                    audio_codec=row["audio_codec"],
                    width=width,
                    height=height,
                    bitrate_kbps=bitrate,
                ),
            )
        log.info("session_started", session_id=peer.session_id, width=width, height=height, kbps=bitrate)

    async def _gone(self, peer: BroadcastPeer, reason: str) -> None:
        """The broadcaster vanished without DELETE: keep the session for the grace period."""
        self.peers.pop(peer.resource, None)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.set_grace(conn, peer.session_id, datetime.now(UTC) + self.grace)
        await peer.close()

    async def patch(self, req: pi.SessionPatch) -> pi.PatchResult:
        """Trickle ICE: add the fragment's candidates; an ICE restart is refused (resume with a new POST)."""
        peer = self.peers.get(req.resource)
        if peer is None:
            raise NotFound("no WHIP session at this address", code="session_not_found")
        lines = [line.strip() for line in req.fragment.splitlines() if line.strip()]
        if not lines:
            raise BadRequest("the PATCH body is empty: send an SDP fragment", code="invalid_sdp")
        remote = peer.pc.remoteDescription
        ufrags = [line.split(":", 1)[1] for line in lines if line.startswith("a=ice-ufrag:")]
        if remote is not None and ufrags and f"a=ice-ufrag:{ufrags[0]}" not in remote.sdp:
            raise Unprocessable(
                "ICE restart is not supported: POST a new offer "
                "(the session continues within its grace period)",
                code="ice_restart_unsupported",
            )
        mid = next((line.split(":", 1)[1] for line in lines if line.startswith("a=mid:")), "0")
        for line in lines:
            if not line.startswith("a=candidate:"):
                continue
            try:
                candidate = candidate_from_sdp(line[2:].split(":", 1)[1])
            except (ValueError, IndexError) as exc:
                raise BadRequest(f'bad candidate line "{line[:80]}": {exc}', code="invalid_sdp") from None
            candidate.sdpMid = mid
            await peer.pc.addIceCandidate(candidate)
        return pi.PatchResult()

    async def delete(self, req: pi.SessionRef) -> pi.SessionClosed:
        """WHIP DELETE: the broadcaster ends the session now."""
        peer = self.peers.pop(req.resource, None)
        if peer is None:
            raise NotFound("no WHIP session at this address", code="session_not_found")
        await peer.close()
        async with self.pool.acquire() as conn, conn.transaction():
            await _end(conn, peer.session_id)
        return pi.SessionClosed(session_id=peer.session_id)

    async def _channel(self, name: str) -> pc.Channel:
        return await request(self.nc, pc.GET, pc.GetChannel(name=name))

    async def operator_start(self, req: pi.OperatorSession) -> pi.SessionState:
        """A session without media, under the same rules as a broadcaster's."""
        channel = await self._channel(req.channel_name)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.fetch_open(conn, channel.id)
            decision = domain.decide_start(
                _open(row), "operator", datetime.now(UTC), grace=self.grace, stale=self.stale
            )
            if decision == "conflict":
                raise Conflict(
                    f'channel "{channel.name}" is already live with a broadcaster', code="already_live"
                )
            if decision == "same":
                return _state(row)
            if row is not None and decision == "new":
                await _end(conn, row["id"])
            if decision == "resume":
                row = await store.resume_session(conn, row["id"], kind="operator", process_id="", resource="")
            else:
                row = await store.insert_session(
                    conn,
                    session_id=new_id(),
                    channel_id=channel.id,
                    channel_name=channel.name,
                    kind="operator",
                    process_id="",
                    resource="",
                    video_codec="",
                    audio_codec="",
                )
                await store.mark_announced(conn, row["id"])
                await add_event(
                    conn,
                    pi.SessionStarted(
                        session_id=row["id"],
                        channel_id=channel.id,
                        channel_name=channel.name,
                        started_at=row["started_at"],
                    ),
                )
            return _state(row)

    async def operator_end(self, req: pi.OperatorSession) -> pi.SessionState:
        """End the channel's session now, or (`drop`) as a lost connection: after the grace period."""
        channel = await self._channel(req.channel_name)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await store.fetch_open(conn, channel.id)
            if row is None:
                raise NotFound(f'channel "{channel.name}" has no live session', code="not_live")
            resource = row["resource"]
            if req.drop:
                await store.set_grace(conn, row["id"], datetime.now(UTC) + self.grace)
                row = await store.fetch_session(conn, row["id"])
            else:
                row = await _end(conn, row["id"])
        with contextlib.suppress(Exception):
            await self._drop_local(resource)
        return _state(row)

    async def maintain(self) -> None:
        """Every second: refresh this process's sessions, end those whose grace period passed."""
        while True:
            await asyncio.sleep(1.0)
            now = datetime.now(UTC)
            async with self.pool.acquire() as conn, conn.transaction():
                await store.heartbeat(conn, self.process_id)
                for row in await store.sweep_candidates(conn):
                    if domain.is_expired(_open(row), now, grace=self.grace, stale=self.stale):  # type: ignore[arg-type]
                        await _end(conn, row["id"])

    async def close(self) -> None:
        """Close every peer (their sessions are resumed or expired by whichever process sees them)."""
        for peer in list(self.peers.values()):
            await peer.close()
        self.peers.clear()
