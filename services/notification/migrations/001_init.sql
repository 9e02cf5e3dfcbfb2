-- Channels as the notification service knows them, from channel.channel.created (owner for follow,
-- subscribe and webhook checks); a session or follow event may create the row before its owner is known.
CREATE TABLE channels (
    id text PRIMARY KEY,
    name text NOT NULL,
    owner_id text
);
CREATE INDEX channels_name ON channels (name);

-- Who follows whom, from social.channel.followed/unfollowed. Ordered by user_id for the fan-out's keyset.
CREATE TABLE follows (
    channel_id text NOT NULL,
    user_id text NOT NULL,
    followed_at timestamptz NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);

-- Live sessions seen, to tell a reconnect (within the grace period) from a new session.
CREATE TABLE sessions (
    session_id text PRIMARY KEY,
    channel_id text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    notified boolean NOT NULL DEFAULT false
);
CREATE INDEX sessions_by_channel ON sessions (channel_id, started_at DESC);

-- A go-live fan-out in progress: `cursor` is the last follower (user_id) whose inbox row is committed.
CREATE TABLE fanout_jobs (
    session_id text PRIMARY KEY,
    channel_id text NOT NULL,
    channel_name text NOT NULL,
    started_at timestamptz NOT NULL,
    cursor text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE preferences (
    user_id text PRIMARY KEY,
    enabled boolean NOT NULL DEFAULT true,
    push_all boolean NOT NULL DEFAULT true
);
CREATE TABLE muted_channels (
    user_id text NOT NULL,
    channel_id text NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);
-- Channels whose go-live reaches Web Push when preferences.push_all is false.
CREATE TABLE push_channels (
    user_id text NOT NULL,
    channel_id text NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);

-- The inbox. `dedup_key` makes every notification exactly-once per user ("live:<session>",
-- "follow:<event>", ...), whatever is redelivered or restarted.
CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    user_id text NOT NULL,
    kind text NOT NULL,
    dedup_key text NOT NULL,
    channel_id text NOT NULL,
    channel_name text NOT NULL,
    actor_username text NOT NULL DEFAULT '',
    tier integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at timestamptz,
    CONSTRAINT notifications_once UNIQUE (user_id, dedup_key)
);
CREATE INDEX notifications_inbox ON notifications (user_id, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;

-- VAPID key pair made at first start, shared by every replica.
CREATE TABLE vapid_keys (
    id integer PRIMARY KEY CHECK (id = 1),
    private_pem text NOT NULL,
    public_key text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE push_subscriptions (
    id bigserial PRIMARY KEY,
    user_id text NOT NULL,
    endpoint text NOT NULL UNIQUE,
    p256dh text NOT NULL,
    auth text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);

-- Web Push sends waiting (written with the inbox row, so a crash cannot lose them).
CREATE TABLE push_deliveries (
    id bigserial PRIMARY KEY,
    notification_id bigint NOT NULL,
    subscription_id bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_deliveries_due ON push_deliveries (next_attempt_at);

-- Single-use tickets for the browser's live stream (no long-lived token in a URL).
CREATE TABLE stream_tickets (
    ticket_hash bytea PRIMARY KEY,
    user_id text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Outgoing webhooks per channel (EventSub-like); enabled once the callback echoed the challenge.
CREATE TABLE webhooks (
    id text PRIMARY KEY,
    channel_id text NOT NULL,
    type text NOT NULL,
    callback_url text NOT NULL,
    secret text NOT NULL,
    status text NOT NULL DEFAULT 'verification_pending',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhooks_once UNIQUE (channel_id, type, callback_url)
);

CREATE TABLE webhook_deliveries (
    id bigserial PRIMARY KEY,
    webhook_id text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    message_id text NOT NULL UNIQUE,
    message_type text NOT NULL,
    body jsonb NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text NOT NULL DEFAULT ''
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at);

-- Deliveries that failed their last try, kept for the owner to inspect.
CREATE TABLE webhook_dead_letters (
    message_id text PRIMARY KEY,
    webhook_id text NOT NULL,
    message_type text NOT NULL,
    body jsonb NOT NULL,
    attempts integer NOT NULL,
    last_error text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
