-- Users, refresh-token families, refresh tokens (stored as SHA-256 digests), the access-token
-- signing key, and failed sign-ins (shared by every replica for throttling).

CREATE TABLE users (
    id uuid PRIMARY KEY,
    username text NOT NULL UNIQUE CHECK (username = lower(username)),
    email text NOT NULL,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One family per sign-in; every rotation adds a token to it. Revoking the family ends the session.
CREATE TABLE refresh_families (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoked_reason text
);

CREATE INDEX refresh_families_user_id ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    family_id uuid NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    client_addr text NOT NULL DEFAULT ''
);

CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

-- The newest row signs; its private key never leaves this schema.
CREATE TABLE signing_keys (
    kid text PRIMARY KEY,
    algorithm text NOT NULL DEFAULT 'EdDSA',
    private_key_pem text NOT NULL,
    public_key_pem text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every sign-in attempt is written here before the password is checked and deleted again when it
-- succeeds or is refused by the throttle, so concurrent guesses count against the limit at once.
CREATE TABLE login_failures (
    id bigserial PRIMARY KEY,
    username text NOT NULL,
    client_addr text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX login_failures_username ON login_failures (username, failed_at);
CREATE INDEX login_failures_client_addr ON login_failures (client_addr, failed_at);
