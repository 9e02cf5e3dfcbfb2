-- Live sessions this service has seen, and who (if anyone) transcodes them.
CREATE TABLE sessions (
    session_id    text PRIMARY KEY,
    channel_id    text NOT NULL,
    channel_name  text NOT NULL,
    started_at    timestamptz NOT NULL,
    -- Media timestamps (ms) count from here; a replica that takes over keeps the same timeline.
    epoch_us      bigint,
    ended_at      timestamptz,
    rungs         jsonb NOT NULL DEFAULT '[]',
    has_audio     boolean NOT NULL DEFAULT false,
    encoder       text NOT NULL DEFAULT '',
    process_id    text,
    heartbeat_at  timestamptz,
    finished      boolean NOT NULL DEFAULT false
);
CREATE INDEX sessions_channel ON sessions (channel_name, started_at DESC);

-- One row per stored segment number: every rung and the audio track of that number are in the bucket.
CREATE TABLE segments (
    session_id   text NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    number       integer NOT NULL,
    start_ms     bigint NOT NULL,
    duration_ms  integer NOT NULL,
    bytes        bigint NOT NULL,
    PRIMARY KEY (session_id, number)
);

CREATE TABLE recordings (
    recording_id  text PRIMARY KEY REFERENCES sessions (session_id) ON DELETE CASCADE,
    channel_id    text NOT NULL,
    channel_name  text NOT NULL,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz NOT NULL,
    duration_ms   bigint NOT NULL,
    segments      integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recordings_channel ON recordings (channel_name, started_at DESC);

-- Who owns which channel (from channel.channel.created), for the owner-only delete.
CREATE TABLE channel_owners (
    channel_id  text PRIMARY KEY,
    name        text NOT NULL,
    owner_id    text NOT NULL
);
