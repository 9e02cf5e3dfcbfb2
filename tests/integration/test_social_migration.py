"""The social schema's move to copies on a real PostgreSQL: a database made before it keeps each channel's
follower count (now in social's own channel_stats), the follows and subscriptions keep working without the
old tables, and names come from the copies."""

from __future__ import annotations

from pathlib import Path

from libs.bus import utcnow
from libs.replica import Replica
from proto import channel as pc
from proto import identity
from services.social import store
from services.social.app import MIGRATIONS
from tests.integration.upgrades import upgraded

_OLD_ROWS = """
INSERT INTO users (id, username) VALUES ('u1', 'fan'), ('u2', 'other');
INSERT INTO channels (id, name, owner_id, follower_count) VALUES ('c1', 'painter', 'o1', 2), ('c2', 'quiet', 'o2', 0);
INSERT INTO follows (user_id, channel_id) VALUES ('u1', 'c1'), ('u2', 'c1');
INSERT INTO subscriptions (user_id, channel_id, id, tier, active, started_at, period_end, cumulative_months,
                           streak_months)
VALUES ('u1', 'c1', 's1', 2, true, now(), now() + interval '30 days', 3, 1);
"""


async def test_a_database_from_before_the_copies_keeps_follower_counts_and_reads_names_from_copies(
    database_url: str, tmp_path: Path
) -> None:
    async with upgraded(database_url, MIGRATIONS, tmp_path, upto=1, old_rows=_OLD_ROWS) as up:
        conn, tables = up.conn, up.tables
        assert up.applied[0] == 2  # then any newer ones (003_aggregate_versions, ...)
        assert {"users", "channels"}.isdisjoint(tables)
        assert await store.counts(conn, channel_id="c1") == (2, 1)
        assert await store.counts(conn, channel_id="c2") == (0, 0)
        # A channel the copy has not seen yet can be followed (no foreign key to a copy).
        assert await store.insert_follow(conn, user_id="u1", channel_id="c3") is not None
        assert await store.counts(conn, channel_id="c3") == (1, 0)
        assert await store.delete_follow(conn, user_id="u1", channel_id="c3")
        assert await store.counts(conn, channel_id="c3") == (0, 0)

        users, channels = Replica(identity.USER), Replica(pc.CHANNEL)
        await users.install(conn)
        await channels.install(conn)
        # Before the copies have replayed, lists still answer (names empty)...
        page = await store.list_followers(conn, channel_id="c1", after=None, limit=10)
        assert {(e.user_id, e.username, e.channel_name) for e in page} == {("u1", "", ""), ("u2", "", "")}
        # ...and once the owners' events arrived, they carry the names.
        await users.apply(conn, identity.UserRegistered(user_id="u1", username="fan"))
        await channels.apply(
            conn,
            pc.ChannelCreated(
                channel_id="c1",
                name="painter",
                owner_id="o1",
                title="",
                category="",
                tags=[],
                language="en",
                created_at=utcnow(),
            ),
        )
        following = await store.list_following(conn, user_id="u1", after=None, limit=10)
        assert [(e.username, e.channel_id, e.channel_name) for e in following] == [("fan", "c1", "painter")]
        held = await store.fetch_subscription(conn, user_id="u1", channel_id="c1")
        assert held is not None
        assert (held.state.id, held.state.cumulative_months) == ("s1", 3)
        assert (held.user.username, held.channel.name, held.channel.owner_id) == ("fan", "painter", "o1")
