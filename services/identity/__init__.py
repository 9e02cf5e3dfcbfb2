"""The identity service: users, passwords, sessions (refresh tokens) and access-token signing keys."""
