"""Stores' tables are created once, by whichever of several starting processes comes first."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from adapters.postgres_schema import created_objects, ensure_objects
from engine.application import Sendstream
from engine.settings import Settings
from tests.integration.conftest import POSTGRES_URL, new_postgres_schema

STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS sendstream_probe (id bigint PRIMARY KEY, due timestamptz)",
    "CREATE INDEX IF NOT EXISTS sendstream_probe_due ON sendstream_probe (due)",
    "CREATE TABLE IF NOT EXISTS sendstream_probe_position (id integer PRIMARY KEY)",
)


def connect(schema: str) -> psycopg.Connection[Any]:
    db = psycopg.connect(POSTGRES_URL, autocommit=True)
    db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return db


def tables_in(schema: str) -> set[str]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        rows = db.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    return {row[0] for row in rows}


def test_the_created_objects_are_named_by_their_statements() -> None:
    assert created_objects(STATEMENTS) == {
        "sendstream_probe",
        "sendstream_probe_due",
        "sendstream_probe_position",
    }
    with pytest.raises(ValueError):
        created_objects(("ALTER TABLE sendstream_probe ADD COLUMN x int",))


def started_together(starters: int, start: Callable[[int], None]) -> list[BaseException]:
    """``start(n)`` in ``starters`` threads released at once; what they raised."""
    ready = threading.Barrier(starters)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        ready.wait()
        try:
            start(n)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_processes_starting_together_create_the_schema_once_without_an_error() -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    connections = [connect(schema) for _ in range(8)]
    errors = started_together(
        len(connections),
        lambda n: ensure_objects(connections[n], schema, STATEMENTS, owner="probe"),
    )
    for db in connections:
        db.close()

    assert errors == []
    assert created_objects(STATEMENTS) <= tables_in(schema)


def test_when_everything_exists_no_ddl_runs_so_a_busy_table_is_not_locked() -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with connect(schema) as first:
        ensure_objects(first, schema, STATEMENTS, owner="probe")
    with connect(schema) as busy, connect(schema) as starter:
        # A process at work holds its table; CREATE INDEX IF NOT EXISTS would wait for it.
        busy.execute("BEGIN")
        busy.execute("LOCK TABLE sendstream_probe IN ACCESS EXCLUSIVE MODE")
        starter.execute("SET lock_timeout = '2s'")
        ensure_objects(starter, schema, STATEMENTS, owner="probe")
        busy.execute("ROLLBACK")


def test_processes_starting_together_on_a_new_database_make_the_event_store_once(
    tmp_path: Path,
) -> None:
    # Seen in CI: one of five processes starting at once died with "tuple concurrently
    # updated" while eventsourcing created its tables.
    settings = Settings(EVENTSTORE_URL=new_postgres_schema(), SENDSTREAM_DATA_DIR=tmp_path)
    apps: list[Sendstream] = []

    def start(_: int) -> None:
        app = Sendstream(settings)
        apps.append(app)
        app.factory.tracking_recorder()

    errors = started_together(6, start)
    for app in apps:
        app.close()
    assert errors == []
    assert len(apps) == 6
