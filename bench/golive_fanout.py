"""Go-live fan-out: a channel with N followers (100,000) goes live; seconds until every inbox row exists
and every live push is published on core NATS, against the same rows written with one COPY into a table of
the same shape and indexes in the same run (the ceiling). Goal: <= 5 s on 2 cores.

    PYTHONPATH=. .venv/bin/python bench/golive_fanout.py [--followers 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from libs.bus import connect, new_id, publish
from libs.devstack.stack import Stack
from proto.ingest import SessionStarted


async def _wait_answering(nats_url: str, timeout: float = 60.0) -> None:
    nc = await connect(nats_url, name="bench-ping")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                await nc.request("$SRV.PING.notification", b"", timeout=0.5)
                return
            except Exception:
                await asyncio.sleep(0.1)
        raise TimeoutError("notification service never answered")
    finally:
        await nc.drain()


async def _seed(db: Any, channel_id: str, name: str, followers: int) -> None:
    """The channel's copy and the follower projection in bulk (as if its created event and 100,000 follow
    events had been consumed)."""
    await db.execute(
        "INSERT INTO notification.copied_channels (channel_id, name, owner_id, version) VALUES ($1, $2, $3, 1)",
        channel_id,
        name,
        new_id(),
    )
    now = datetime.now(UTC)
    rows = [(channel_id, f"user-{i:07d}", now) for i in range(followers)]
    await db.copy_records_to_table("follows", schema_name="notification", records=rows)
    await db.execute("ANALYZE notification.follows")


async def _fanout(nats_url: str, db: Any, channel_id: str, name: str, followers: int) -> float:
    nc = await connect(nats_url, name="bench-pushes")
    pushes = 0
    all_pushed = asyncio.Event()

    async def on_push(_: Any) -> None:
        nonlocal pushes
        pushes += 1
        if pushes == followers:
            all_pushed.set()

    await nc.subscribe("notify.user.*", cb=on_push, pending_msgs_limit=followers * 2)
    await nc.flush()
    event = SessionStarted(
        session_id=new_id(), channel_id=channel_id, channel_name=name, started_at=datetime.now(UTC)
    )
    started = time.perf_counter()
    await publish(nc.jetstream(), event)
    await asyncio.wait_for(all_pushed.wait(), timeout=300)
    while (
        await db.fetchval("SELECT count(*) FROM notification.notifications WHERE kind = 'live'") < followers
    ):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    await nc.drain()
    return elapsed


async def _copy_ceiling(db: Any, channel_id: str, name: str, followers: int) -> float:
    """The same rows with one COPY into a table of the same shape and indexes."""
    await db.execute("CREATE TABLE notification.copy_ceiling (LIKE notification.notifications INCLUDING ALL)")
    now = datetime.now(UTC)
    rows = [(f"user-{i:07d}", "live", "live:ceiling", channel_id, name, now) for i in range(followers)]
    columns = ["user_id", "kind", "dedup_key", "channel_id", "channel_name", "created_at"]
    started = time.perf_counter()
    await db.copy_records_to_table("copy_ceiling", schema_name="notification", records=rows, columns=columns)
    return time.perf_counter() - started


async def main(followers: int) -> None:
    stack = Stack(Path(tempfile.mkdtemp(prefix="cpc-bench-")), services=["notification"])
    try:
        await asyncio.to_thread(stack.start_infra)
        stack.start_service("notification")
        await _wait_answering(stack.nats_url)
        db = await asyncpg.connect(stack.database_url)
        channel_id, name = new_id(), "bench_channel"
        await _seed(db, channel_id, name, followers)
        fanout = await _fanout(stack.nats_url, db, channel_id, name, followers)
        ceiling = await _copy_ceiling(db, channel_id, name, followers)
        await db.close()
    finally:
        stack.stop()
    print(f"followers                      {followers:>12,}")
    print(f"go-live fan-out (rows+pushes)  {fanout:>12.3f} s   {followers / fanout:>12,.0f} rows/s")
    print(f"one COPY, same rows (ceiling)  {ceiling:>12.3f} s   {followers / ceiling:>12,.0f} rows/s")
    print(f"fan-out / COPY                 {fanout / ceiling:>12.2f} x")
    print(f"goal <= 5 s                    {'met' if fanout <= 5 else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().followers))
