-- Channel emotes (channel_id '' is the global set shipped with the project); images live in the
-- object store under proto.channel.emote_object_name(id, size).
CREATE TABLE emotes (
    id text PRIMARY KEY,
    channel_id text NOT NULL,
    code text NOT NULL,
    tier integer NOT NULL DEFAULT 0 CHECK (tier BETWEEN 0 AND 3),
    animated boolean NOT NULL,
    content_type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT emotes_code_taken UNIQUE (channel_id, code)
);
