-- What the first second of media showed, kept so a lookup of the session (ingest.lookup_session) answers
-- what the started event carried.
ALTER TABLE sessions
    ADD COLUMN width integer NOT NULL DEFAULT 0,
    ADD COLUMN height integer NOT NULL DEFAULT 0,
    ADD COLUMN bitrate_kbps integer NOT NULL DEFAULT 0;
