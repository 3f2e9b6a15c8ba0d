"""Storage faults are told from bugs by what real drivers raise: SQLite out of pages, a
write to a full device, PostgreSQL unreachable or cancelling a statement."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from adapters.faults import StorageFault, log_failure, storage_fault
from tests.integration.conftest import POSTGRES_URL
from tests.services import free_port


def raised(action: object) -> BaseException:
    with pytest.raises(Exception) as caught:
        action()  # type: ignore[operator]
    return caught.value


def test_sqlite_out_of_space_is_full_even_when_wrapped(tmp_path: Path) -> None:
    store = sqlite3.connect(tmp_path / "small.sqlite")
    store.execute("CREATE TABLE t (x BLOB)")
    store.execute("PRAGMA max_page_count = 3")  # SQLITE_FULL, as a full disk gives it
    error = raised(lambda: store.execute("INSERT INTO t VALUES (zeroblob(100000))"))
    assert storage_fault(error) is StorageFault.FULL
    try:  # the event store library raises its own, from SQLite's
        raise OperationalError(error) from error
    except OperationalError as wrapped:
        assert storage_fault(wrapped) is StorageFault.FULL


def write_to_a_full_device() -> None:
    with open("/dev/full", "wb", buffering=0) as device:
        device.write(b"x")


def test_a_write_to_a_full_device_is_full() -> None:
    assert storage_fault(raised(write_to_a_full_device)) is StorageFault.FULL


@pytest.mark.postgres
def test_postgres_away_or_cancelling_is_unavailable() -> None:
    closed = f"postgresql://127.0.0.1:{free_port()}/test?connect_timeout=2"
    assert storage_fault(raised(lambda: psycopg.connect(closed))) is StorageFault.UNAVAILABLE
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute("SET statement_timeout = 50")
        timed_out = raised(lambda: connection.execute("SELECT pg_sleep(1)"))
        assert storage_fault(timed_out) is StorageFault.UNAVAILABLE
        division = raised(lambda: connection.execute("SELECT 1/0"))
        assert storage_fault(division) is None  # a bug of the query, not the machine's


def test_bugs_are_not_faults_and_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bug = raised(lambda: {}["missing"])
    assert storage_fault(bug) is None
    looping = ValueError("a cause that is its own context")
    looping.__context__ = looping
    assert storage_fault(looping) is None
    log = logging.getLogger("test.faults")
    with caplog.at_level(logging.WARNING, logger="test.faults"):
        log_failure(log, "tick failed", bug)
        log_failure(log, "tick failed", raised(write_to_a_full_device))
    first, second = caplog.records
    assert (first.levelname, first.exc_info is not None) == ("ERROR", True)
    assert (second.levelname, second.exc_info) == ("WARNING", None)
    assert "the storage is full" in second.getMessage()
