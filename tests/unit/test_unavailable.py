"""One answer to "is a dependency away?" for the consume loop and the request side, naming the dependency."""

from __future__ import annotations

import asyncpg
import pytest
from nats import errors as nats_errors

from libs.bus.errors import is_unavailable, unavailable_dependency
from libs.db.pool import PostgresUnavailable


def _raised_from(outer: Exception, cause: BaseException) -> Exception:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise outer from exc
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.InterfaceError("pool is closing"),
        PostgresUnavailable("PostgreSQL is not reachable: [Errno 111] Connection refused"),
    ],
)
def test_asyncpg_connection_errors_name_postgresql(exc: Exception) -> None:
    assert unavailable_dependency(exc) == "PostgreSQL"
    assert is_unavailable(exc)


def test_a_cause_deep_in_the_chain_counts() -> None:
    wrapped = _raised_from(RuntimeError("store failed"), asyncpg.exceptions.CrashShutdownError("crash"))
    assert unavailable_dependency(wrapped) == "PostgreSQL"


def test_nats_errors_name_nats() -> None:
    assert unavailable_dependency(nats_errors.ConnectionReconnectingError()) == "NATS"
    assert unavailable_dependency(nats_errors.NoRespondersError()) == "NATS"


def test_bugs_and_bad_data_are_not_an_outage() -> None:
    assert unavailable_dependency(ValueError("bad value")) is None
    assert unavailable_dependency(asyncpg.exceptions.UniqueViolationError("duplicate key")) is None
    assert unavailable_dependency(asyncpg.exceptions.UndefinedColumnError("no such column")) is None
    assert not is_unavailable(KeyError("id"))
