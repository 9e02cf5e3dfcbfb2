-- Users by name, from identity.user.registered (for /ban name and friends).
CREATE TABLE users (
    id text PRIMARY KEY,
    username text NOT NULL
);
CREATE INDEX users_username_lower ON users (lower(username));

-- One room per channel (from channel.channel.created); the room id is the channel id.
CREATE TABLE rooms (
    room_id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    owner_id text NOT NULL,
    slow_seconds integer NOT NULL DEFAULT 0,
    followers_only_minutes integer,
    subscribers_only boolean NOT NULL DEFAULT false,
    emote_only boolean NOT NULL DEFAULT false
);

-- Moderators and VIPs, from channel.role.granted/revoked.
CREATE TABLE roles (
    room_id text NOT NULL,
    user_id text NOT NULL,
    role text NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- Follows and subscriptions, from the social service's events.
CREATE TABLE follows (
    room_id text NOT NULL,
    user_id text NOT NULL,
    followed_at timestamptz NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE TABLE subscriptions (
    room_id text NOT NULL,
    user_id text NOT NULL,
    tier integer NOT NULL,
    months integer NOT NULL,
    period_end timestamptz NOT NULL,
    active boolean NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- Emotes, from channel.emote.added/removed; room_id '' is the global set.
CREATE TABLE emotes (
    emote_id text PRIMARY KEY,
    room_id text NOT NULL,
    code text NOT NULL,
    tier integer NOT NULL DEFAULT 0,
    animated boolean NOT NULL DEFAULT false
);
CREATE INDEX emotes_room ON emotes (room_id);

-- Messages accepted into a room's stream: rate limits, slow mode, and deletions by id or by user.
CREATE TABLE messages (
    message_id text PRIMARY KEY,
    room_id text NOT NULL,
    user_id text NOT NULL,
    seq bigint NOT NULL,
    sent_at timestamptz NOT NULL,
    deleted boolean NOT NULL DEFAULT false
);
CREATE INDEX messages_by_sender ON messages (room_id, user_id, sent_at DESC);
CREATE INDEX messages_by_time ON messages (sent_at);

-- Bans (until NULL) and timeouts.
CREATE TABLE bans (
    room_id text NOT NULL,
    user_id text NOT NULL,
    until timestamptz,
    reason text NOT NULL DEFAULT '',
    actor_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);

CREATE TABLE blocked_terms (
    room_id text NOT NULL,
    term text NOT NULL,
    added_by text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, term)
);

CREATE TABLE mod_log (
    id bigserial PRIMARY KEY,
    room_id text NOT NULL,
    actor_id text NOT NULL,
    actor_username text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    detail text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mod_log_room ON mod_log (room_id, id DESC);
