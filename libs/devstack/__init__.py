"""Embedded infrastructure for `make run` and the tests: nats-server, PostgreSQL and service processes."""
