-- The version of each role (per channel and user) and emote, one more with every grant, revoke, add or
-- remove, counted in the transaction that writes its event (RoleGranted/RoleRevoked, EmoteAdded/
-- EmoteRemoved carry it). A row outlives the role or emote it counts, so a re-grant after a revoke gets a
-- higher version than the revoke and consumers can tell a late, older event from a newer one.
CREATE TABLE aggregate_versions (
    aggregate text PRIMARY KEY,
    version bigint NOT NULL
);
