-- Channels and live sessions are now copies kept by libs/replica.py (copied_channels,
-- copied_live_sessions, fed by their owners' events, replayed from the start on first run). What stays
-- here is the transcoder's own state of a session, keyed by its id.
DROP TABLE channel_owners;

ALTER TABLE sessions RENAME TO transcodes;
ALTER TABLE transcodes DROP COLUMN channel_id, DROP COLUMN channel_name, DROP COLUMN started_at,
    DROP COLUMN ended_at;
COMMENT ON TABLE transcodes IS 'the transcoder''s state of each live session it has seen (who transcodes it, its ladder)';

-- Rungs were once written as a JSON string holding the array: store the array itself.
UPDATE transcodes SET rungs = (rungs #>> '{}')::jsonb WHERE jsonb_typeof(rungs) = 'string';
