-- Channels and live sessions are now copies kept by libs/replica.py (copied_channels,
-- copied_live_sessions, fed by channel's and ingest's events, replayed from the start on first run).
-- Channel rows made from follow or session events before the channel was known go with the old table: the
-- copy asks the channel service on a miss instead.
--
-- What the notification service owns of a session moves into a table of its own keyed by the session's
-- id: whether its start and its end were handled (go-live fan-out, stream.online/offline webhooks) and
-- whether its followers were notified. The copy's replay of ingest's history then reacts to no session
-- handled before.
CREATE TABLE session_reactions (
    session_id text PRIMARY KEY,
    started_handled boolean NOT NULL DEFAULT false,
    ended_handled boolean NOT NULL DEFAULT false,
    notified boolean NOT NULL DEFAULT false
);
INSERT INTO session_reactions (session_id, started_handled, ended_handled, notified)
SELECT session_id, true, ended_at IS NOT NULL, notified FROM sessions;

DROP TABLE sessions;
DROP TABLE channels;
