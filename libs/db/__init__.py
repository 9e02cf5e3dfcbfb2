"""PostgreSQL for services: pools bound to a schema, migrations, the transactional outbox."""

from libs.db.migrate import Migration, MigrationError, apply_migrations, load_migrations
from libs.db.outbox import OutboxRelay, add_event
from libs.db.pool import Connection, Pool, create_pool

__all__ = [
    "Connection",
    "Migration",
    "MigrationError",
    "OutboxRelay",
    "Pool",
    "add_event",
    "apply_migrations",
    "create_pool",
    "load_migrations",
]
