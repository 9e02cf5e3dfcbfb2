"""One handler per ingest request, thin: the lifecycle rules are in domain.py, the SQL in store.py, the
broadcaster's peer in broadcast.py. The peers' own news (first second measured, broadcaster gone) and the
maintenance step are here too, as they change the same sessions."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.sdp import candidate_from_sdp
from nats.aio.client import Client

from libs.bus import BadRequest, NotFound, Route, Unprocessable, answers, new_id, request, route, utcnow
from libs.db import Connection, Pool, add_event
from libs.media.ice import IceSettings, advertise, link_headers, rtc_configuration
from libs.media.sdp import check_offer
from libs.obs.logging import get_logger
from proto import channel as pc
from proto import ingest as pi
from proto.base import Lookup
from services.ingest import domain, store
from services.ingest.broadcast import BroadcastPeer, Measured
from services.ingest.config import IngestConfig
from services.ingest.domain import Session

__all__ = ["Handlers"]

log = get_logger("ingest")


async def _end(conn: Connection, session_id: str) -> Session | None:
    """End the session and record its events (a started event first if it never left)."""
    ended = await store.end_session(conn, session_id)
    if ended is None:
        return None
    for event in domain.end_events(ended):
        await add_event(conn, event)
    log.info("session_ended", session_id=ended.id, channel_id=ended.channel_id, channel=ended.channel_name)
    return ended


@dataclass(frozen=True, kw_only=True, slots=True)
class Handlers:
    """One method per ingest request, marked with the Rpc it answers, over the pool, NATS and this process's
    broadcaster peers. PATCH and DELETE go to subjects naming this process: `process_routes` binds them."""

    pool: Pool
    nc: Client
    config: IngestConfig
    ice: IceSettings
    process_id: str
    peers: dict[str, BroadcastPeer] = field(default_factory=dict)  # this process's, by resource

    def process_routes(self) -> list[Route[Any, Any]]:
        """This process's own PATCH and DELETE endpoints (their subjects name it, so no `@answers`)."""
        return [
            route(pi.patch_rpc(self.process_id), self.patch),
            route(pi.delete_rpc(self.process_id), self.delete),
        ]

    def _decide(self, s: Session | None, kind: str, channel: str) -> domain.StartDecision:
        c = self.config
        return domain.start_or_refuse(s, kind, utcnow(), channel=channel, grace=c.grace, stale=c.stale)

    async def _accepted_peer(self, session_id: str, resource: str, sdp: str) -> tuple[BroadcastPeer, str]:
        """A peer for the session that answered `sdp`, and its answer."""
        peer = BroadcastPeer(
            nc=self.nc,
            pc=RTCPeerConnection(rtc_configuration(self.ice)),
            session_id=session_id,
            resource=resource,
            on_measured=self._announce,
            on_gone=self._gone,
            media_timeout=self.config.media_timeout_seconds,
            connect_timeout=self.config.connect_timeout_seconds,
        )
        try:
            return peer, await peer.accept(sdp)
        except Exception as exc:
            await peer.close()
            raise Unprocessable(f"the offer cannot be answered: {exc}", code="offer_rejected") from None

    @answers(pi.OFFER)
    async def offer(self, req: pi.WhipOffer) -> pi.WhipAnswer:
        """WHIP POST: check the key and the offer, then answer; a dropped broadcaster resumes its session."""
        check_offer(req.sdp)
        owner = await request(
            self.nc, pc.CHECK_KEY, pc.CheckKey(name=req.channel_name, stream_key=req.stream_key)
        )
        resource = secrets.token_urlsafe(24)
        async with self.pool.acquire() as conn, conn.transaction():
            found = await store.fetch_open(conn, owner.channel_id)
            decision = self._decide(found, "whip", owner.name)
            if found is not None and decision == "new":
                await _end(conn, found.id)
            session_id = found.id if found is not None and decision == "resume" else new_id()
            peer, answer = await self._accepted_peer(session_id, resource, req.sdp)
            if found is not None and decision == "resume":
                await self._drop_local(found.resource)
                await store.resume_session(
                    conn, session_id, kind="whip", process_id=self.process_id, resource=resource
                )
            else:
                await store.insert_session(
                    conn, session_id=session_id, channel_id=owner.channel_id, channel_name=owner.name,
                    kind="whip", process_id=self.process_id, resource=resource,
                    video_codec=peer.codecs.get("video", ""), audio_codec=peer.codecs.get("audio", ""),
                )  # fmt: skip
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
            found = await store.fetch_session(conn, peer.session_id)
            if found is None or found.state == "ended":
                return
            announced = await store.mark_announced(
                conn, found.id, width=width, height=height, bitrate_kbps=bitrate
            )
            if announced is None:
                return
            await add_event(conn, domain.started_event(announced))
        log.info("session_started", session_id=peer.session_id, width=width, height=height, kbps=bitrate)

    async def _gone(self, peer: BroadcastPeer, reason: str) -> None:
        """The broadcaster vanished without DELETE: keep the session for the grace period."""
        self.peers.pop(peer.resource, None)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.set_grace(conn, peer.session_id, utcnow() + self.config.grace)
        await peer.close()

    async def patch(self, req: pi.SessionPatch) -> pi.PatchResult:
        """Trickle ICE: add the fragment's candidates; an ICE restart is refused (resume with a new POST)."""
        peer = self.peers.get(req.resource)
        if peer is None:
            raise NotFound("no WHIP session at this address", code="session_not_found")
        remote = peer.pc.remoteDescription
        trickle = domain.trickle_candidates(req.fragment, remote.sdp if remote is not None else None)
        for value in trickle.candidates:
            try:
                candidate = candidate_from_sdp(value)
            except (ValueError, IndexError) as exc:
                line = f"a=candidate:{value}"[:80]
                raise BadRequest(f'bad candidate line "{line}": {exc}', code="invalid_sdp") from None
            candidate.sdpMid = trickle.mid
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

    @answers(pi.LOOKUP_SESSION)
    async def lookup_session(self, req: Lookup) -> pi.LiveSession:
        """A live session as others keep a copy of it (libs.replica asks this on a miss)."""
        if req.by.lower() not in pi.LIVE_SESSION.lookups:
            raise BadRequest(f'a live session is looked up by session_id, not "{req.by}"', code="bad_lookup")
        async with self.pool.acquire() as conn:
            found = await store.fetch_session(conn, req.value, lock=False)
        if found is None:
            raise NotFound(f'live session "{req.value}" does not exist', code="session_not_found")
        return domain.live_session(found)

    async def _channel(self, name: str) -> pc.Channel:
        return await request(self.nc, pc.GET, pc.GetChannel(name=name))

    @answers(pi.OPERATOR_START)
    async def operator_start(self, req: pi.OperatorSession) -> pi.SessionState:
        """A session without media, under the same rules as a broadcaster's."""
        channel = await self._channel(req.channel_name)
        async with self.pool.acquire() as conn, conn.transaction():
            found = await store.fetch_open(conn, channel.id)
            decision = self._decide(found, "operator", channel.name)
            if found is not None and decision == "same":
                return domain.session_state(found)
            if found is not None and decision == "resume":
                resumed = await store.resume_session(conn, found.id, kind="operator")
                return domain.session_state(resumed)
            if found is not None:
                await _end(conn, found.id)
            new = await store.insert_session(
                conn, session_id=new_id(), channel_id=channel.id, channel_name=channel.name, kind="operator"
            )
            announced = await store.mark_announced(conn, new.id)
            await add_event(conn, domain.started_event(announced or new))
            return domain.session_state(new)

    @answers(pi.OPERATOR_END)
    async def operator_end(self, req: pi.OperatorSession) -> pi.SessionState:
        """End the channel's session now, or (`drop`) as a lost connection: after the grace period."""
        channel = await self._channel(req.channel_name)
        async with self.pool.acquire() as conn, conn.transaction():
            found = await store.fetch_open(conn, channel.id)
            if found is None:
                raise NotFound(f'channel "{channel.name}" has no live session', code="not_live")
            if req.drop:
                after = await store.set_grace(conn, found.id, utcnow() + self.config.grace)
            else:
                after = await _end(conn, found.id)
        with contextlib.suppress(Exception):
            await self._drop_local(found.resource)
        return domain.session_state(after or found)

    async def maintain(self) -> bool:
        """Worker step (every second): refresh this process's sessions, end those whose grace period passed
        or whose process went silent."""
        now, c = utcnow(), self.config
        async with self.pool.acquire() as conn, conn.transaction():
            await store.heartbeat(conn, self.process_id)
            for s in await store.sweep_candidates(conn):
                if domain.is_expired(s, now, grace=c.grace, stale=c.stale):
                    await _end(conn, s.id)
        return False

    async def close(self) -> None:
        """Close every peer (their sessions are resumed or expired by whichever process sees them)."""
        for peer in list(self.peers.values()):
            await peer.close()
        self.peers.clear()
