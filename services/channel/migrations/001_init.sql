-- Users as the channel service knows them, from identity.user.registered (and verified tokens).
CREATE TABLE users (
    id text PRIMARY KEY,
    username text NOT NULL
);
CREATE INDEX users_username_lower ON users (lower(username));

CREATE TABLE channels (
    id text PRIMARY KEY,
    owner_id text NOT NULL CONSTRAINT channels_one_per_owner UNIQUE,
    -- Stored in lower case, so this is the case-insensitive uniqueness.
    name text NOT NULL CONSTRAINT channels_name_taken UNIQUE CHECK (name ~ '^[a-z0-9_]{3,25}$'),
    title text NOT NULL,
    description text NOT NULL DEFAULT '',
    category text NOT NULL,
    tags text[] NOT NULL DEFAULT '{}',
    language text NOT NULL DEFAULT 'en',
    stream_key_hash bytea,
    stream_key_prefix text,
    stream_key_rotated_at timestamptz,
    live_session_id text,
    live_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- The list order: live first, then newest.
CREATE INDEX channels_list_order ON channels (((live_session_id IS NOT NULL)) DESC, created_at DESC, id DESC);
CREATE INDEX channels_category ON channels (category);

-- Avatar and banner: the stored object is named by channel, kind and etag (proto.channel.image_object_name).
CREATE TABLE channel_images (
    channel_id text NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('avatar', 'banner')),
    etag text NOT NULL,
    content_type text NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, kind)
);

-- Moderators and VIPs; one role per user and channel.
CREATE TABLE channel_roles (
    channel_id text NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id text NOT NULL,
    role text NOT NULL CHECK (role IN ('moderator', 'vip')),
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_roles_by_role ON channel_roles (channel_id, role, granted_at);

-- Live sessions from stream.session.started/ended; a channel is live while it has an open one.
CREATE TABLE live_sessions (
    session_id text PRIMARY KEY,
    channel_id text NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    started_at timestamptz NOT NULL,
    ended_at timestamptz
);
CREATE INDEX live_sessions_open ON live_sessions (channel_id, started_at DESC) WHERE ended_at IS NULL;
