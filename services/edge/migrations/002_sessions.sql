-- Every session edge has seen, kept after it ends so that its viewer curve can still be drawn
-- (live_sessions forgets a session when it ends). Sessions older than this table are rebuilt from viewers.
CREATE TABLE sessions (
    session_id text PRIMARY KEY,
    channel_id text NOT NULL,
    channel_name text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz
);
CREATE INDEX sessions_by_channel ON sessions (channel_id, started_at DESC);
CREATE INDEX viewers_by_session ON viewers (session_id, joined_at);

INSERT INTO sessions (session_id, channel_id, channel_name, started_at, ended_at)
SELECT v.session_id, min(v.channel_id), min(v.channel_name), min(v.joined_at),
       CASE WHEN l.session_id IS NULL THEN max(coalesce(v.left_at, v.last_seen)) END
FROM viewers v LEFT JOIN live_sessions l ON l.session_id = v.session_id
GROUP BY v.session_id, l.session_id
ON CONFLICT DO NOTHING;
INSERT INTO sessions (session_id, channel_id, channel_name, started_at)
SELECT session_id, channel_id, channel_name, started_at FROM live_sessions
ON CONFLICT (session_id) DO UPDATE SET started_at = EXCLUDED.started_at;
