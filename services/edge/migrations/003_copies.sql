-- Live sessions are now a copy kept by libs/replica.py (copied_live_sessions, fed by ingest's events,
-- replayed from the start of the STREAM stream on first run); the open session of a channel is read from
-- it. Edge's own history of sessions (sessions) stays: it outlives the stream's retention, for the curves.
DROP TABLE live_sessions;
