-- The version of each follow and subscription (per channel and user), one more with every follow,
-- unfollow and subscription change, counted in the transaction that writes its event (Followed,
-- Unfollowed and the subscription events carry it). A row outlives the follow it counts, so a re-follow
-- after an unfollow gets a higher version and consumers can tell a late, older event from a newer one.
CREATE TABLE aggregate_versions (
    aggregate text PRIMARY KEY,
    version bigint NOT NULL
);
