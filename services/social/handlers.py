"""Follow, unfollow and the read requests of the social service; subscriptions are in billing.py and
the rules in domain.py."""

from __future__ import annotations

from typing import Any

from libs.bus import Route, route
from libs.db import add_event
from libs.obs.logging import get_logger
from proto import social as ps
from services.social import domain, store
from services.social.directory import Directory

__all__ = ["FollowHandlers"]

log = get_logger("social")


def _page(rows: list[Any], limit: int, *, key: str) -> ps.FollowPage:
    items = [
        ps.FollowEntry(
            user_id=r["user_id"],
            username=r["username"],
            channel_id=r["channel_id"],
            channel_name=r["channel_name"],
            followed_at=r["followed_at"],
        )
        for r in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = domain.encode_cursor(domain.Cursor(last["followed_at"], last[key]))
    return ps.FollowPage(items=items, next_cursor=next_cursor)


class FollowHandlers:
    """Follows, lists, counts and relationships over the service's pool."""

    def __init__(self, pool: Any, directory: Directory) -> None:
        self.pool = pool
        self.directory = directory

    def routes(self) -> list[Route[Any, Any]]:
        """The request endpoints answered here."""
        return [
            route(ps.FOLLOW, self.follow),
            route(ps.UNFOLLOW, self.unfollow),
            route(ps.FOLLOWERS, self.followers),
            route(ps.FOLLOWING, self.following),
            route(ps.COUNTS, self.counts),
            route(ps.HISTORY, self.history),
            route(ps.RELATIONSHIP, self.relationship),
        ]

    async def follow(self, req: ps.FollowRequest) -> ps.FollowState:
        """social.follow: idempotent; a repeat (or a concurrent twin) keeps the first follow time."""
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await self.directory.channel(conn, req.channel)
            domain.check_not_owner(channel["owner_id"], req.user_id, channel=channel["name"], action="follow")
            await store.upsert_user(conn, user_id=req.user_id, username=req.username)
            followed_at = await store.insert_follow(conn, user_id=req.user_id, channel_id=channel["id"])
            changed = followed_at is not None
            if followed_at is None:
                followed_at = await store.fetch_follow(conn, user_id=req.user_id, channel_id=channel["id"])
            else:
                await add_event(
                    conn,
                    ps.Followed(
                        user_id=req.user_id,
                        username=req.username,
                        channel_id=channel["id"],
                        channel_name=channel["name"],
                        followed_at=followed_at,
                    ),
                )
        if changed:
            log.info("followed", user_id=req.user_id, channel_id=channel["id"])
        return ps.FollowState(
            channel_id=channel["id"],
            channel_name=channel["name"],
            following=True,
            followed_at=followed_at,
            changed=changed,
        )

    async def unfollow(self, req: ps.FollowRequest) -> ps.FollowState:
        """social.unfollow: idempotent; only a follow that existed emits an event."""
        async with self.pool.acquire() as conn, conn.transaction():
            channel = await self.directory.channel(conn, req.channel)
            changed = await store.delete_follow(conn, user_id=req.user_id, channel_id=channel["id"])
            if changed:
                await add_event(
                    conn,
                    ps.Unfollowed(
                        user_id=req.user_id,
                        username=req.username,
                        channel_id=channel["id"],
                        channel_name=channel["name"],
                    ),
                )
        if changed:
            log.info("unfollowed", user_id=req.user_id, channel_id=channel["id"])
        return ps.FollowState(
            channel_id=channel["id"],
            channel_name=channel["name"],
            following=False,
            followed_at=None,
            changed=changed,
        )

    async def followers(self, req: ps.ListFollowers) -> ps.FollowPage:
        """social.followers: a channel's followers, newest first, by cursor."""
        limit = domain.check_limit(req.limit)
        after = domain.decode_cursor(req.cursor) if req.cursor else None
        async with self.pool.acquire() as conn:
            channel = await self.directory.channel(conn, req.channel)
            rows = await store.list_followers(conn, channel_id=channel["id"], after=after, limit=limit + 1)
        return _page(rows, limit, key="user_id")

    async def following(self, req: ps.ListFollowing) -> ps.FollowPage:
        """social.following: the channels a user follows, newest follow first, by cursor."""
        limit = domain.check_limit(req.limit)
        after = domain.decode_cursor(req.cursor) if req.cursor else None
        async with self.pool.acquire() as conn:
            rows = await store.list_following(conn, user_id=req.user_id, after=after, limit=limit + 1)
        return _page(rows, limit, key="channel_id")

    async def counts(self, req: ps.CountsRequest) -> ps.Counts:
        """social.counts: followers and active subscribers of a channel."""
        async with self.pool.acquire() as conn:
            channel = await self.directory.channel(conn, req.channel)
            followers, subscribers = await store.follower_count(conn, channel_id=channel["id"])
        return ps.Counts(
            channel_id=channel["id"],
            channel_name=channel["name"],
            followers=followers,
            subscribers=subscribers,
        )

    async def history(self, req: ps.HistoryRequest) -> ps.AudienceHistory:
        """social.history: the owner's daily followers and active subscribers (see store.audience_history
        for what unfollows and restarts leave out)."""
        days = domain.check_days(req.days)
        async with self.pool.acquire() as conn:
            channel = await self.directory.channel(conn, req.channel)
            domain.check_owner(
                channel["owner_id"], req.actor_id, channel=channel["name"], action="see its audience"
            )
            rows = await store.audience_history(conn, channel_id=channel["id"], days=days)
        return ps.AudienceHistory(
            channel_id=channel["id"],
            channel_name=channel["name"],
            points=[
                ps.AudiencePoint(day=r["day"], followers=r["followers"], subscribers=r["subscribers"])
                for r in rows
            ],
        )

    async def relationship(self, req: ps.RelationshipRequest) -> ps.Relationship:
        """social.relationship: whether a user follows a channel (since when) and their subscription."""
        async with self.pool.acquire() as conn:
            channel = await self.directory.channel(conn, req.channel)
            followed_at = await store.fetch_follow(conn, user_id=req.user_id, channel_id=channel["id"])
            row = await store.fetch_subscription(conn, user_id=req.user_id, channel_id=channel["id"])
            user = {"id": req.user_id, "username": ""}
            if row is not None:
                user_row = await store.find_user_by_id(conn, user_id=req.user_id)
                user["username"] = user_row["username"] if user_row else ""
        subscription = None
        if row is not None:
            subscription = domain.subscription_view(
                domain.SubState.of(row), user=user, channel=channel, gifter=row["gifter"]
            )
        return ps.Relationship(
            channel_id=channel["id"],
            channel_name=channel["name"],
            is_owner=channel["owner_id"] == req.user_id,
            following=followed_at is not None,
            followed_at=followed_at,
            subscription=subscription,
        )
