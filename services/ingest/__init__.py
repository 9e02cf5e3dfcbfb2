"""ingest: WHIP broadcast sessions; publishes encoded frames on NATS and the session lifecycle events."""
