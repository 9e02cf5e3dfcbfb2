-- Users and channels are now copies kept by libs/replica.py (copied_users, copied_channels, fed by
-- identity's and channel's events, replayed from the start on first run). What the social service owns of
-- a channel, its follower count, moves into a table of its own keyed by the channel's id.
CREATE TABLE channel_stats (
    channel_id text PRIMARY KEY,
    follower_count bigint NOT NULL DEFAULT 0 CHECK (follower_count >= 0)
);
INSERT INTO channel_stats (channel_id, follower_count) SELECT id, follower_count FROM channels;

-- Copies arrive in any order (a follow can be stored before its channel's event), so nothing refers to them.
ALTER TABLE follows DROP CONSTRAINT follows_channel_id_fkey;
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_channel_id_fkey;
DROP TABLE channels;
DROP TABLE users;
