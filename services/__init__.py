"""CPC Live services: one package each, always the same rooms (app, handlers, domain, store, migrations)."""
