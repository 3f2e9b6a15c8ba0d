"""One PostgreSQL connection a store keeps for its life, opened again after the server
went away (a restart, a failover): the operation that met the closed connection fails, and
the next one runs on a new connection, so the caller's own retry is the recovery."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import sql

CONNECT_TIMEOUT_SECONDS = 5


class SchemaConnection:
    """An autocommit connection whose ``search_path`` is ``schema``."""

    def __init__(self, conninfo: str, schema: str) -> None:
        self._conninfo = conninfo
        self._schema = schema
        self._db = self._open()

    def _open(self) -> psycopg.Connection[Any]:
        db: psycopg.Connection[Any] = psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
        return db

    @property
    def db(self) -> psycopg.Connection[Any]:
        """The connection, a new one if the last was lost (raises while the server is away)."""
        if self._db.closed or self._db.broken:
            with contextlib.suppress(psycopg.Error):
                self._db.close()
            self._db = self._open()
        return self._db

    def close(self) -> None:
        self._db.close()
