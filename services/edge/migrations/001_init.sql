-- Live sessions as edge knows them, from stream.session.started/ended.
CREATE TABLE live_sessions (
    channel_name text PRIMARY KEY,
    channel_id text NOT NULL,
    session_id text NOT NULL,
    video_codec text NOT NULL,
    audio_codec text NOT NULL,
    started_at timestamptz NOT NULL
);

-- Viewer sessions; a row whose process stopped refreshing `last_seen` no longer counts.
CREATE TABLE viewers (
    id text PRIMARY KEY,
    channel_name text NOT NULL,
    channel_id text NOT NULL,
    session_id text NOT NULL,
    viewer_id text NOT NULL DEFAULT '',
    process_id text NOT NULL,
    joined_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    left_at timestamptz
);
CREATE INDEX viewers_watching ON viewers (channel_name) WHERE left_at IS NULL;
