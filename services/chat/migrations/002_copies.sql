-- Users and channels are now copies kept by libs/replica.py (copied_users, copied_channels, fed by
-- identity's and channel's events, replayed from the start on first run; a name not in them yet is asked
-- of its owner). What chat owns of a room, its modes, moves into a table of its own keyed by the room's
-- id (the channel's id); a room without a row has every mode off.
CREATE TABLE room_modes (
    room_id text PRIMARY KEY,
    slow_seconds integer NOT NULL DEFAULT 0,
    followers_only_minutes integer,
    subscribers_only boolean NOT NULL DEFAULT false,
    emote_only boolean NOT NULL DEFAULT false
);
INSERT INTO room_modes (room_id, slow_seconds, followers_only_minutes, subscribers_only, emote_only)
SELECT room_id, slow_seconds, followers_only_minutes, subscribers_only, emote_only FROM rooms
WHERE slow_seconds <> 0 OR followers_only_minutes IS NOT NULL OR subscribers_only OR emote_only;

DROP TABLE rooms;
DROP TABLE users;
