-- Users as the social service knows them: from identity.user.registered and from verified tokens.
CREATE TABLE users (
    id text PRIMARY KEY,
    username text NOT NULL
);
CREATE INDEX users_username_lower ON users (lower(username));

-- Channels from channel.channel.created (and a channel.get on a miss): who owns what.
CREATE TABLE channels (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    owner_id text NOT NULL,
    follower_count bigint NOT NULL DEFAULT 0 CHECK (follower_count >= 0)
);

-- One row per follow; the primary key is what makes a repeated or concurrent follow a no-op.
CREATE TABLE follows (
    user_id text NOT NULL,
    channel_id text NOT NULL REFERENCES channels (id),
    followed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (user_id, channel_id)
);
-- Followers of a channel and channels a user follows, newest first (the list and cursor order).
CREATE INDEX follows_by_channel ON follows (channel_id, followed_at DESC, user_id DESC);
CREATE INDEX follows_by_user ON follows (user_id, followed_at DESC, channel_id DESC);

-- One row per user and channel; an ended subscription keeps its row (and its cumulative months) and is
-- started again under a new id.
CREATE TABLE subscriptions (
    user_id text NOT NULL,
    channel_id text NOT NULL REFERENCES channels (id),
    id text NOT NULL UNIQUE,
    tier smallint NOT NULL CHECK (tier BETWEEN 1 AND 3),
    active boolean NOT NULL,
    started_at timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    cumulative_months integer NOT NULL CHECK (cumulative_months >= 0),
    streak_months integer NOT NULL CHECK (streak_months >= 0),
    gifted_by_id text NOT NULL DEFAULT '',
    ended_at timestamptz,
    end_reason text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, channel_id)
);
-- What the expiry sweep scans.
CREATE INDEX subscriptions_due ON subscriptions (period_end) WHERE active;
CREATE INDEX subscriptions_active_by_channel ON subscriptions (channel_id) WHERE active;

-- Payment-provider events handled, by the provider's event id (idempotency), with the signature that
-- carried each (a second request with the same signature is a replay).
CREATE TABLE payment_events (
    event_id text PRIMARY KEY,
    type text NOT NULL,
    signature text NOT NULL UNIQUE,
    received_at timestamptz NOT NULL DEFAULT now()
);
