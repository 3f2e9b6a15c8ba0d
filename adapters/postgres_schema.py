"""Create a store's tables in a PostgreSQL schema once, whichever process starts first.

Several processes of one installation start together (a leader and its standby, three
webhook callers) and each makes sure its tables exist. ``CREATE … IF NOT EXISTS`` is not
safe against a concurrent creation of the same object (one of them fails on a unique
index of the catalogue), and ``CREATE INDEX IF NOT EXISTS`` locks its table even when the
index exists, which can deadlock with a process already at work. So: when every object
is there no DDL runs at all; otherwise the creators take turns on an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

_CREATED_NAME = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE
)


def created_objects(statements: Sequence[str]) -> frozenset[str]:
    """The tables and indexes that ``statements`` create, by name."""
    names = {found.group(1) for text in statements for found in _CREATED_NAME.finditer(text)}
    if len(names) != len(statements):
        raise ValueError("each statement must create one table or index, IF NOT EXISTS")
    return frozenset(names)


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name``, the same in every process."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"sendstream-ddl").digest()
    return int.from_bytes(digest, "big", signed=True)


def ensure_objects(
    db: psycopg.Connection[Any], schema: str, statements: Sequence[str], *, owner: str
) -> None:
    """Run ``statements`` in ``schema`` unless everything they create exists already.

    ``db`` is in autocommit mode; ``owner`` names the store, so stores sharing a schema
    take turns only with themselves.
    """
    from psycopg import sql

    objects = created_objects(statements)
    if _present(db, schema, objects):
        return
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(f"{schema}:{owner}"),))
        if _present(db, schema, objects):
            return  # the process we waited for made them
        db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for statement in statements:
            db.execute(statement)


def _present(db: psycopg.Connection[Any], schema: str, objects: frozenset[str]) -> bool:
    row = db.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (schema, sorted(objects)),
    ).fetchone()
    return row is not None and row[0] == len(objects)
