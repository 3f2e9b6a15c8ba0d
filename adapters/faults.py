"""Which failures of storage are faults of the machine rather than bugs: a full disk, a
database that is down or restarting. Callers refuse what they cannot store with an answer
that tells the client to retry (503, SMTP 452/451) instead of an unknown error, and loops
wait for the fault to pass instead of giving up.

The exceptions are recognised by what the drivers attach to them (SQLite's result code,
PostgreSQL's SQLSTATE, the OS's errno), along the whole chain of causes: the event store
library wraps the driver's exception in its own.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from enum import Enum

__all__ = ["StorageFault", "log_failure", "storage_fault"]


class StorageFault(Enum):
    FULL = "full"  # no space left: ENOSPC, SQLITE_FULL, PostgreSQL's class 53
    UNAVAILABLE = "unavailable"  # down, restarting, read-only or unreachable


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_UNAVAILABLE_ERRNOS = {errno.EROFS, errno.EIO, errno.ECONNREFUSED, errno.ECONNRESET,
                       errno.ETIMEDOUT, errno.EPIPE, errno.EHOSTUNREACH}  # fmt: skip
_SQLITE_UNAVAILABLE = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY,
                       sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN}  # fmt: skip
# SQLSTATE classes and codes (PostgreSQL's appendix A): 53 insufficient resources,
# 08 connection exceptions, 57P01-57P03 shutting down or starting, 25006 a read-only
# transaction (a standby), 57014 a statement cancelled by statement_timeout.
_PG_FULL_CLASSES = ("53",)
_PG_UNAVAILABLE = ("08", "57P01", "57P02", "57P03", "25006", "57014")


def _fault_of_one(error: BaseException) -> StorageFault | None:
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None:
            primary = code & 0xFF  # extended codes keep the primary one in the low byte
            if primary == sqlite3.SQLITE_FULL:
                return StorageFault.FULL
            if primary in _SQLITE_UNAVAILABLE:
                return StorageFault.UNAVAILABLE
        return None
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str):
        if state.startswith(_PG_FULL_CLASSES):
            return StorageFault.FULL
        if state.startswith(_PG_UNAVAILABLE):
            return StorageFault.UNAVAILABLE
        return None
    if isinstance(error, OSError) and error.errno is not None:
        if error.errno in _FULL_ERRNOS:
            return StorageFault.FULL
        if error.errno in _UNAVAILABLE_ERRNOS:
            return StorageFault.UNAVAILABLE
        return None
    # ClickHouse (chdb, clickhouse-connect) names the fault only in its text.
    text = str(error)
    if "(NOT_ENOUGH_SPACE)" in text or "No space left on device" in text:
        return StorageFault.FULL
    # psycopg's connection failures carry no SQLSTATE; nor does a pool that found no
    # connection in time.
    kind = type(error)
    if kind.__module__.startswith(("psycopg", "psycopg_pool")) and kind.__name__ in {
        "OperationalError", "InterfaceError", "PoolTimeout", "TooManyRequests",
    }:  # fmt: skip
        return StorageFault.UNAVAILABLE
    return None


def storage_fault(error: BaseException) -> StorageFault | None:
    """The fault behind ``error`` or any exception it was raised from, if it is one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        fault = _fault_of_one(current)
        if fault is not None:
            return fault
        current = current.__cause__ or current.__context__
    return None


def _chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in found):
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def broker_fault(error: BaseException) -> bool:
    """Whether the Kafka broker failed ``error`` or an exception it was raised from
    (unreachable, restarting, a coordinator moving): kafka-python raises ``KafkaError``
    for each, and a role can only wait for the broker and try again."""
    from kafka.errors import KafkaError

    return any(isinstance(cause, KafkaError) for cause in _chain(error))


def log_failure(log: logging.Logger, what: str, error: BaseException) -> None:
    """Log that ``what`` failed and will be tried again: a fault of the storage or of the
    broker in one line (it is the machine's, and its traceback would repeat at every
    retry), anything else with its traceback."""
    fault = storage_fault(error)
    if fault is not None:
        log.warning("%s: the storage is %s (%s)", what, fault.value, error)
    elif broker_fault(error):
        log.warning("%s: the broker is unavailable (%s)", what, error)
    else:
        log.error("%s", what, exc_info=error)


class LibraryFaultsInOneLine(logging.Filter):
    """kafka-python logs every failed reconnect at ERROR with its traceback: a broker
    restart is hundreds of tracebacks for one fault, which the roles report themselves,
    once per retry, in one line. Its records keep their text, as warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("kafka") and record.levelno >= logging.ERROR:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True
