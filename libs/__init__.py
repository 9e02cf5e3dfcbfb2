"""Code every CPC Live service shares: bus, database, observability, config. Never imports services."""
