-- Users and live sessions are now copies kept by libs/replica.py (copied_users from identity's events,
-- copied_live_sessions from ingest's, replayed from the start on first run); a channel's live state
-- follows the sessions copy. Nothing the channel service owns was kept in these tables, and nothing
-- refers to them (the live_sessions foreign key to channels goes with the table).
DROP TABLE live_sessions;
DROP TABLE users;
