"""The reporting schema on one server and on a ClickHouse cluster (``CLICKHOUSE_CLUSTER``).

No ClickHouse cluster (servers and Keeper) can run on these machines, so the cluster's
DDL is checked by ClickHouse's own parser (``formatQuery`` in chdb) and by its shape;
the one-server DDL that ``sendstream schema`` prints is run for real and must build
exactly what the migrations build.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from adapters.clickhouse import ChdbStore
from adapters.ports import ReportingStore
from cli.main import cli
from engine.settings import Settings
from projections.schema import (
    EVENTS_SHARDING_KEY,
    ONE_SERVER,
    PROJECTION_TABLES,
    Topology,
    migrate,
    schema_statements,
)

CLUSTER = Topology("reports")


@pytest.fixture
def chdb(tmp_path: Path) -> Iterator[ReportingStore]:
    store = ChdbStore(str(tmp_path / "chdb"))
    try:
        yield store
    finally:
        store.close()


def parsed(store: ReportingStore, statement: str) -> str:
    """ClickHouse's own formatting of ``statement``; raises on a syntax error."""
    rows = store.query("SELECT formatQuery({statement:String}) AS q", {"statement": statement})
    return str(rows[0]["q"])


def tables(store: ReportingStore) -> dict[str, tuple[str, str]]:
    rows = store.query(
        "SELECT name, engine, create_table_query FROM system.tables "
        "WHERE database = currentDatabase() ORDER BY name"
    )
    return {str(r["name"]): (str(r["engine"]), str(r["create_table_query"])) for r in rows}


def test_the_printed_one_server_schema_builds_what_the_migrations_build(
    chdb: ReportingStore, tmp_path: Path
) -> None:
    migrate(chdb, retention_days=0)
    migrated = tables(chdb)
    chdb.command("CREATE DATABASE printed")
    chdb.command("USE printed")
    for statement in schema_statements(ONE_SERVER):
        chdb.command(statement)
    printed = {
        name: (engine, query.replace("printed.", "default."))
        for name, (engine, query) in tables(chdb).items()
    }
    assert printed == migrated


def test_every_cluster_statement_parses_and_reaches_every_node(chdb: ReportingStore) -> None:
    for statement in schema_statements(CLUSTER):
        assert "ON CLUSTER reports" in parsed(chdb, statement), statement


def test_on_a_cluster_rows_live_in_replicated_tables_behind_distributed_ones(
    chdb: ReportingStore,
) -> None:
    statements = [parsed(chdb, s) for s in schema_statements(CLUSTER)]
    created = {
        re.search(r"CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)", s).group(1): s  # type: ignore[union-attr]
        for s in statements
        if s.startswith("CREATE")
    }
    for table in PROJECTION_TABLES:
        local, distributed = created[f"{table}_local"], created[table]
        assert "ENGINE = Replicated" in local
        assert "'/clickhouse/tables/{uuid}/{shard}', '{replica}'" in local
        assert f"AS {table}_local" in distributed
        assert f"Distributed(reports, currentDatabase(), {table}_local, " in distributed
    assert EVENTS_SHARDING_KEY in created["events"]
    # Each node's views feed its own shard of a rollup from its own shard of events.
    for view in (name for name in created if name.endswith("_mv")):
        rollup = view.removesuffix("_mv")
        assert f"TO {rollup}_local" in created[view]
        assert "FROM events_local" in created[view]
    # The bookkeeping tables are whole on every node.
    for table in ("projection_positions", "schema_migrations"):
        assert "'/clickhouse/tables/{uuid}/all', '{replica}'" in created[table]
        assert f"{table}_local" not in created
    # Changes to the rows' table reach every node.
    (alter,) = [s for s in statements if s.startswith("ALTER")]
    assert alter.startswith("ALTER TABLE events_local ON CLUSTER reports")


def test_the_one_server_schema_says_nothing_of_clusters() -> None:
    for statement in schema_statements(ONE_SERVER):
        assert "ON CLUSTER" not in statement
        assert "Replicated" not in statement
        assert "_local" not in statement


def test_a_hostile_cluster_name_stays_one_identifier(chdb: ReportingStore) -> None:
    name = "a`b; DROP TABLE events --"
    for statement in schema_statements(Topology(name)):
        assert "ON CLUSTER `a\\`b; DROP TABLE events --`" in parsed(chdb, statement)


def test_a_cluster_needs_a_server() -> None:
    with pytest.raises(ValidationError, match="CLICKHOUSE_CLUSTER needs CLICKHOUSE_URL"):
        Settings(CLICKHOUSE_CLUSTER="reports")
    settings = Settings(CLICKHOUSE_CLUSTER="reports", CLICKHOUSE_URL="http://ch:8123")
    assert settings.reporting_topology == CLUSTER


def test_sendstream_schema_prints_the_cluster_ddl() -> None:
    printed = CliRunner().invoke(cli, ["schema", "--cluster", "reports"])
    assert printed.exit_code == 0, printed.output
    statements = [s for s in printed.output.split(";\n\n") if s.strip()]
    assert statements == [s.strip() for s in schema_statements(CLUSTER)]
