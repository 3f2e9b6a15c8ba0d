"""The reporting schema: its tables, its versioned migrations, retention, and rebuilds.

Tables
    ``events``                  one row per reported event (see :mod:`projections.events`)
    ``rollup_hourly``/``_daily``  counts per account, domain, campaign, event type, hour/day
    ``tag_rollup_hourly``/``_daily``  the same per tag (an event with two tags counts for each)
    ``campaign_rollup``         per campaign, instance, event type, minute
    ``projection_positions``    how far each consumer has projected
    ``schema_migrations``       which migrations have been applied

Rollups are ``AggregatingMergeTree`` tables filled by materialized views on
``events``: a plain ``count`` (``SimpleAggregateFunction(sum)``) per bucket, a
``uniq`` state of message ids for the unique figures (exact up to 65,536
distinct messages per merged set, then within about 1 %), and the first and
last event time. Counts stay exact because ``events`` is written once per event
(:func:`projections.events.insert_new_events`); set-valued states
(``groupBitmap`` of event positions) were measured and rejected: exact under any
duplication, but ten times slower to read (45 ms against 3 ms for a domain with
130,000 events over 90 days).

Migrations are numbered; each runs once, in order, at start, and records itself
in ``schema_migrations``. Every statement is idempotent (``IF NOT EXISTS``), so a
migration interrupted half way runs again safely. The same migrations build the
shadow tables of a rebuild (:func:`create_shadow_tables`), so a rebuilt schema
is exactly the migrated one.

On a ClickHouse cluster (``CLICKHOUSE_CLUSTER``, see :class:`Topology`) the same
migrations create every table ``ON CLUSTER``: the rows live in replicated tables
``<name>_local`` on each node, and ``<name>`` is a ``Distributed`` table over them, so
the queries, the inserts and the write-once check read and write the plain names as on
one server. Events are spread over the shards by message, so every copy of an event
meets the others on one shard; each shard's views fill its own rollups, and a read of a
rollup adds up the shards' partial counts. The two bookkeeping tables are replicated
whole to every node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from adapters.ports import ReportingStore
from projections.audit import audit_ddl

__all__ = [
    "LOCAL_SUFFIX",
    "MIGRATIONS",
    "ONE_SERVER",
    "PROJECTION_TABLES",
    "SHADOW_SUFFIX",
    "Migration",
    "Topology",
    "applied_versions",
    "apply_retention",
    "create_shadow_tables",
    "drop_shadow_tables",
    "migrate",
    "shadow_names",
    "swap_in_shadow_tables",
]

SHADOW_SUFFIX = "__rebuild"
LOCAL_SUFFIX = "_local"
# Where a replicated table keeps its parts' metadata in ClickHouse Keeper. {uuid} is the
# table's own (the same on every node of an ON CLUSTER creation), not its name: a rebuild
# exchanges tables and creates its shadow tables again under the same names. {shard} and
# {replica} are each node's macros ({replica} unique in the cluster).
SHARDED_REPLICA_PATH = "'/clickhouse/tables/{uuid}/{shard}', '{replica}'"
WHOLE_REPLICA_PATH = "'/clickhouse/tables/{uuid}/all', '{replica}'"
# Inserts into a Distributed table spread the rows by message: every copy of an event goes
# to the same shard, where ReplacingMergeTree and the write-once check find each other.
EVENTS_SHARDING_KEY = "cityHash64(message_id)"


@dataclass(frozen=True)
class Topology:
    """One server (chdb or a ClickHouse server), or the named cluster of a server's
    ``remote_servers`` configuration."""

    cluster: str = ""

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {_identifier(self.cluster)}" if self.cluster else ""

    @property
    def drop_now(self) -> str:
        # A dropped replicated table leaves Keeper only after a delay unless SYNC.
        return f"{self.on_cluster} SYNC" if self.cluster else ""

    def stored_in(self, table: str) -> str:
        """The table that holds ``table``'s rows on this node (what DDL changes)."""
        return table + LOCAL_SUFFIX if self.cluster else table

    def table(
        self, name: str, columns: str, engine: str, layout: str, sharding_key: str | None
    ) -> list[str]:
        """``CREATE TABLE`` statements for ``name``: one table on a single server; on a
        cluster a replicated table on every node, sharded when ``sharding_key`` is given
        (with a ``Distributed`` table of the plain name over the shards), else whole."""
        if not self.cluster:
            return [f"CREATE TABLE IF NOT EXISTS {name}\n({columns})\nENGINE = {engine}\n{layout}"]
        stored = self.stored_in(name) if sharding_key is not None else name
        path = SHARDED_REPLICA_PATH if sharding_key is not None else WHOLE_REPLICA_PATH
        statements = [
            f"CREATE TABLE IF NOT EXISTS {stored}{self.on_cluster}\n({columns})\n"
            f"ENGINE = {_replicated(engine, path)}\n{layout}"
        ]
        if sharding_key is not None:
            cluster = _identifier(self.cluster)
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {name}{self.on_cluster} AS {stored}\n"
                f"ENGINE = Distributed({cluster}, currentDatabase(), {stored}, {sharding_key})"
            )
        return statements

    def view(self, name: str, target: str, select: str) -> str:
        """A materialized view feeding ``target`` from inserts into ``select``'s table: on a
        cluster each node's view feeds its own shard of ``target``."""
        return (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}{self.on_cluster}\n"
            f"TO {self.stored_in(target)}\nAS {select}"
        )


ONE_SERVER = Topology()


def _identifier(name: str) -> str:
    """A backquoted ClickHouse identifier (the cluster's name comes from settings)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _replicated(engine: str, path: str) -> str:
    """``ReplacingMergeTree(v)`` → ``ReplicatedReplacingMergeTree(<path>, v)``."""
    family, _, arguments = engine.partition("(")
    arguments = arguments.rstrip(")").strip()
    return f"Replicated{family}({path}{', ' + arguments if arguments else ''})"


# Tables rebuilt from the event store, in the order they are created; views after their tables.
PROJECTION_TABLES = (
    "events",
    "rollup_hourly",
    "rollup_daily",
    "tag_rollup_hourly",
    "tag_rollup_daily",
    "campaign_rollup",
)
_VIEWS = (
    "rollup_hourly_mv",
    "rollup_daily_mv",
    "tag_rollup_hourly_mv",
    "tag_rollup_daily_mv",
    "campaign_rollup_mv",
)

Names = Mapping[str, str]


def live_names() -> dict[str, str]:
    return {name: name for name in (*PROJECTION_TABLES, *_VIEWS)}


def shadow_names() -> dict[str, str]:
    return {name: name + SHADOW_SUFFIX for name in (*PROJECTION_TABLES, *_VIEWS)}


# ---------------------------------------------------------------------------
# Statements

_EVENT_COLUMNS = """
    event_id UUID,
    position UInt64,
    event_type LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    account_id UUID,
    domain_id UUID,
    submission_id UUID,
    message_id UUID,
    recipient String,
    recipient_domain LowCardinality(String),
    sender String,
    subject String,
    tags Array(String),
    campaign_id String DEFAULT '',
    smtp_code UInt16,
    enhanced_status String,
    diagnostic String,
    attempt UInt16,
    details String,
    INDEX idx_submission_id submission_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_message_id message_id TYPE bloom_filter GRANULARITY 4
"""
_EVENT_LAYOUT = "PARTITION BY toYYYYMM(occurred_at)\nORDER BY (domain_id, occurred_at, event_id)"


def _bookkeeping_tables(topology: Topology) -> list[str]:
    """Which consumer projected how far, and which migrations ran: whole on every node."""
    return [
        *topology.table(
            "projection_positions",
            "consumer String, position UInt64, updated_at DateTime64(3)",
            "ReplacingMergeTree(updated_at)",
            "ORDER BY consumer",
            sharding_key=None,
        ),
        *topology.table(
            "schema_migrations",
            "version UInt32, description String, applied_at DateTime64(3, 'UTC')",
            "ReplacingMergeTree(applied_at)",
            "ORDER BY version",
            sharding_key=None,
        ),
    ]


# The bucket dimensions every rollup shares, as expressions over an ``events`` row. The
# reporting queries use the same expressions for the edges of a range that no whole bucket
# covers, so a figure reads the same whichever table it came from.
BOUNCE_TYPE_SQL = "if(event_type = 'bounced', JSONExtractString(details, 'BounceType'), '')"
IS_RETRY_SQL = "toUInt8(event_type = 'sent' AND attempt > 1)"
TAG_SQL = "arrayJoin(if(empty(tags), [''], tags))"

_FIGURE_COLUMNS = """
    events SimpleAggregateFunction(sum, UInt64),
    messages AggregateFunction(uniq, UUID),
    first_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
"""
_FIGURES_SQL = (
    "count() AS events, uniqState(message_id) AS messages, "
    "min(occurred_at) AS first_at, max(occurred_at) AS last_at"
)


@dataclass(frozen=True)
class _Rollup:
    table: str
    key: tuple[tuple[str, str, str], ...]  # (column, type, expression over events)
    partition: str
    where: str = ""

    @property
    def _order(self) -> str:
        return ", ".join(column for column, _, _ in self.key)

    @property
    def _select(self) -> str:
        keys = ", ".join(f"{expression} AS {column}" for column, _, expression in self.key)
        return f"{keys}, {_FIGURES_SQL}"

    def ddl(self, names: Names, topology: Topology) -> list[str]:
        columns = ",\n".join(f"    {column} {type_}" for column, type_, _ in self.key)
        where = f"WHERE {self.where}" if self.where else ""
        select = f"""SELECT {self._select}
            FROM {topology.stored_in(names["events"])}
            {where}
            GROUP BY {self._order}
            """  # noqa: S608 (names and expressions are ours)
        return [
            *topology.table(
                names[self.table],
                f"{columns},\n{_FIGURE_COLUMNS}",
                "AggregatingMergeTree",
                f"PARTITION BY {self.partition}\nORDER BY ({self._order})",
                # Rows come from each shard's view; only a backfill inserts through the
                # Distributed table, and any shard may keep a partial count.
                sharding_key="rand()",
            ),
            topology.view(names[self.table + "_mv"], names[self.table], select),
        ]

    def backfill(self, names: Names, up_to_position: int) -> str:
        """Counts of the rows stored before the view existed (up to ``up_to_position``)."""
        condition = f"position <= {int(up_to_position)}"
        if self.where:
            condition += f" AND ({self.where})"
        return f"""
            INSERT INTO {names[self.table]}
            SELECT {self._select}
            FROM {names["events"]}
            WHERE {condition}
            GROUP BY {self._order}
            """  # noqa: S608 (fixed text and an int)


_DIMENSIONS = (
    ("domain_id", "UUID", "domain_id"),
    ("account_id", "UUID", "account_id"),
)
_KINDS = (
    ("event_type", "LowCardinality(String)", "event_type"),
    ("bounce_type", "LowCardinality(String)", BOUNCE_TYPE_SQL),
    ("is_retry", "UInt8", IS_RETRY_SQL),
)
ROLLUPS = (
    _Rollup(
        "rollup_hourly",
        (*_DIMENSIONS, ("hour", "DateTime('UTC')", "toStartOfHour(occurred_at)"),
         *_KINDS, ("campaign_id", "String", "campaign_id")),
        "toYYYYMM(hour)",
    ),
    _Rollup(
        "rollup_daily",
        (*_DIMENSIONS, ("day", "Date", "toDate(occurred_at)"),
         *_KINDS, ("campaign_id", "String", "campaign_id")),
        "toYYYYMM(day)",
    ),
    _Rollup(
        "tag_rollup_hourly",
        (*_DIMENSIONS, ("hour", "DateTime('UTC')", "toStartOfHour(occurred_at)"),
         *_KINDS, ("tag", "String", TAG_SQL)),
        "toYYYYMM(hour)",
    ),
    _Rollup(
        "tag_rollup_daily",
        (*_DIMENSIONS, ("day", "Date", "toDate(occurred_at)"),
         *_KINDS, ("tag", "String", TAG_SQL)),
        "toYYYYMM(day)",
    ),
    _Rollup(
        "campaign_rollup",
        (("campaign_id", "String", "campaign_id"), ("submission_id", "UUID", "submission_id"),
         *_KINDS, ("minute", "DateTime('UTC')", "toStartOfMinute(occurred_at)")),
        "tuple()",
        where="campaign_id != ''",
    ),
)  # fmt: skip


# ---------------------------------------------------------------------------
# Migrations


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[ReportingStore, Names, Topology], None]


def _events_ddl(names: Names, topology: Topology) -> list[str]:
    return topology.table(
        names["events"], _EVENT_COLUMNS, "ReplacingMergeTree", _EVENT_LAYOUT, EVENTS_SHARDING_KEY
    )


def _create_events(store: ReportingStore, names: Names, topology: Topology) -> None:
    for statement in _events_ddl(names, topology):
        store.command(statement)


def _create_rollups(store: ReportingStore, names: Names, topology: Topology) -> None:
    # Views first, then the rows stored before them: a row the projector inserts meanwhile
    # has a later position than the snapshot, so it is counted by its view and only there.
    found = store.query(f"SELECT max(position) AS top FROM {names['events']}")  # noqa: S608
    up_to = int(found[0]["top"]) if found else 0
    for rollup in ROLLUPS:
        for statement in rollup.ddl(names, topology):
            store.command(statement)
    if up_to:
        for rollup in ROLLUPS:
            store.command(rollup.backfill(names, up_to))


def _campaign_index_ddl(names: Names, topology: Topology) -> str:
    # The few raw-row questions asked by campaign (held messages, recent deliveries).
    return (
        f"ALTER TABLE {topology.stored_in(names['events'])}{topology.on_cluster} "
        "ADD INDEX IF NOT EXISTS idx_campaign_id campaign_id TYPE bloom_filter GRANULARITY 4"
    )


def _index_campaign_id(store: ReportingStore, names: Names, topology: Topology) -> None:
    store.command(_campaign_index_ddl(names, topology))


def _create_audit_log(store: ReportingStore, names: Names, topology: Topology) -> None:
    for statement in audit_ddl(topology):
        store.command(statement)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events table", _create_events),
    Migration(2, "rollups by hour, day, tag and campaign, with their views", _create_rollups),
    Migration(3, "bloom filter index on events.campaign_id", _index_campaign_id),
    Migration(4, "audit_log: who changed what (Account.AuditLog)", _create_audit_log),
)


def applied_versions(store: ReportingStore, topology: Topology = ONE_SERVER) -> set[int]:
    for statement in _bookkeeping_tables(topology):
        store.command(statement)
    rows = store.query("SELECT version FROM schema_migrations FINAL")
    return {int(row["version"]) for row in rows}


def migrate(
    store: ReportingStore, retention_days: int | None = None, topology: Topology = ONE_SERVER
) -> list[int]:
    """Apply the migrations not yet applied, in order; returns their versions.

    ``retention_days``, when given, is then applied to ``events`` (see :func:`apply_retention`).
    """
    done = applied_versions(store, topology)
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        migration.apply(store, live_names(), topology)
        store.insert(
            "schema_migrations",
            [
                {
                    "version": migration.version,
                    "description": migration.description,
                    "applied_at": datetime.now(UTC),
                }
            ],
        )
        applied.append(migration.version)
    if retention_days is not None:
        apply_retention(store, retention_days, topology=topology)
    return applied


def apply_retention(
    store: ReportingStore, days: int, table: str = "events", topology: Topology = ONE_SERVER
) -> None:
    """Raw events older than ``days`` are deleted by merges (0 keeps them for ever); the
    rollups keep their counts. Changed only when it differs, because changing a TTL
    rewrites the table's parts."""
    stored = topology.stored_in(table)
    rows = store.query(
        "SELECT engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name = {table:String}",
        {"table": stored},
    )
    current = str(rows[0]["engine_full"]) if rows else ""
    wanted = f"toDateTime(occurred_at) + toIntervalDay({int(days)})"
    has_ttl = " TTL " in current
    alter = f"ALTER TABLE {stored}{topology.on_cluster}"
    if days > 0 and f"TTL {wanted} " not in current + " ":
        store.command(f"{alter} MODIFY TTL {wanted}")
    elif days <= 0 and has_ttl:
        store.command(f"{alter} REMOVE TTL")


# ---------------------------------------------------------------------------
# Rebuilds


def drop_shadow_tables(store: ReportingStore, topology: Topology = ONE_SERVER) -> None:
    names = shadow_names()
    for view in _VIEWS:
        store.command(f"DROP VIEW IF EXISTS {names[view]}{topology.drop_now}")
    for table in PROJECTION_TABLES:
        store.command(f"DROP TABLE IF EXISTS {names[table]}{topology.drop_now}")
        if topology.cluster:
            local = topology.stored_in(names[table])
            store.command(f"DROP TABLE IF EXISTS {local}{topology.drop_now}")


def create_shadow_tables(store: ReportingStore, topology: Topology = ONE_SERVER) -> dict[str, str]:
    """Empty ``*__rebuild`` copies of every projection table, with their views, built by
    the same migrations as the live ones; returns the shadow names."""
    drop_shadow_tables(store, topology)
    names = shadow_names()
    for migration in MIGRATIONS:
        migration.apply(store, names, topology)
    return names


def swap_in_shadow_tables(store: ReportingStore, topology: Topology = ONE_SERVER) -> None:
    """Make the rebuilt tables the live ones, then drop the old ones.

    Each ``EXCHANGE TABLES`` is atomic; the views name their tables, so after the
    exchange the live views feed the new rollups from the new ``events``. On a cluster
    the tables that hold the rows are exchanged on every node; the ``Distributed``
    tables name them, so they read the new rows too.
    """
    names = shadow_names()
    for table in PROJECTION_TABLES:
        store.command(
            f"EXCHANGE TABLES {topology.stored_in(names[table])} "
            f"AND {topology.stored_in(table)}{topology.on_cluster}"
        )
    drop_shadow_tables(store, topology)


def schema_statements(topology: Topology) -> list[str]:
    """Every statement the migrations run on an empty database, in order: to review the
    DDL of a cluster before pointing the engine at it (``sendstream schema``)."""
    names = live_names()
    rollups = [statement for rollup in ROLLUPS for statement in rollup.ddl(names, topology)]
    return [
        *_bookkeeping_tables(topology),
        *_events_ddl(names, topology),
        *rollups,
        _campaign_index_ddl(names, topology),
        *audit_ddl(topology),
    ]
