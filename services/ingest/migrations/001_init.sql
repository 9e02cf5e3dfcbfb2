-- Live broadcast sessions. At most one unfinished session per channel.
CREATE TABLE sessions (
    id text PRIMARY KEY,
    channel_id text NOT NULL,
    channel_name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('whip', 'operator')),
    state text NOT NULL CHECK (state IN ('live', 'grace', 'ended')),
    process_id text NOT NULL DEFAULT '',
    resource text NOT NULL DEFAULT '',
    announced boolean NOT NULL DEFAULT false,
    video_codec text NOT NULL DEFAULT '',
    audio_codec text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    grace_until timestamptz,
    ended_at timestamptz
);
CREATE UNIQUE INDEX sessions_one_open_per_channel ON sessions (channel_id) WHERE state <> 'ended';
CREATE INDEX sessions_open ON sessions (state) WHERE state <> 'ended';
