"""The ReportingStore contract, run on every adapter.

* ``chdb``: :class:`ChdbStore`, the embedded engine in a fresh folder;
* ``clickhouse-connect-over-chdb``: :class:`ClickHouseServerStore` on a ``chdb://``
  DSN, which runs clickhouse-connect's binding and insert code against the
  same engine, so the server adapter's own code is exercised on every run;
* ``clickhouse-server``: :class:`ClickHouseServerStore` on ``CLICKHOUSE_URL``,
  in a database of its own, only when that variable is set.

chdb allows one engine folder per process at a time, so each store is closed
before the next test opens its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.clickhouse import (
    ChdbStore,
    ClickHouseServerStore,
    ReportingStoreError,
    _chdb_parameter,
    open_reporting_store,
)
from adapters.ports import ReportingStore

CLICKHOUSE_URL = os.environ.get("CLICKHOUSE_URL", "")

STORE_KINDS = [
    pytest.param("chdb", id="chdb"),
    pytest.param("connect-chdb", id="clickhouse-connect-over-chdb"),
    pytest.param(
        "server",
        id="clickhouse-server",
        marks=pytest.mark.skipif(not CLICKHOUSE_URL, reason="CLICKHOUSE_URL is not set"),
    ),
]

HOSTILE = [
    "plain",
    "",
    "it's",
    "'; DROP TABLE things; --",
    "\\",
    "ends with a backslash \\",
    "\\' escaped quote",
    "back\\slash \\n not a newline",
    "new\nline",
    "carriage\rreturn",
    "tab\there",
    "nul\x00byte",
    '"double" `back` quotes',
    "{name:String} looks like a placeholder",
    "]', 'array break",
    "ünïcödé ✉️ 😀",
]


@contextmanager
def open_store(kind: str, folder: Path) -> Iterator[ReportingStore]:
    """A fresh, empty store of the given kind; closed (and its database dropped) afterwards."""
    if kind == "chdb":
        chdb_store = ChdbStore(str(folder / "chdb"))
        try:
            yield chdb_store
        finally:
            chdb_store.close()
    elif kind == "connect-chdb":
        connect_store = ClickHouseServerStore(f"chdb://{folder / 'connect'}")
        try:
            yield connect_store
        finally:
            connect_store.close()
    elif kind == "server":
        import clickhouse_connect

        database = f"sendstream_test_{uuid4().hex[:12]}"
        admin = clickhouse_connect.get_client(dsn=CLICKHOUSE_URL)
        admin.command(f"CREATE DATABASE {database}")
        parts = urlsplit(CLICKHOUSE_URL)
        server_store = ClickHouseServerStore(urlunsplit(parts._replace(path=f"/{database}")))
        try:
            yield server_store
        finally:
            server_store.close()
            admin.command(f"DROP DATABASE IF EXISTS {database}")
            admin.close()
    else:
        raise ValueError(kind)


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReportingStore]:
    with open_store(request.param, tmp_path) as opened:
        yield opened


THINGS_DDL = """
CREATE TABLE things
(
    id UUID,
    at DateTime64(3, 'UTC'),
    name String,
    big UInt64,
    small UInt8,
    tags Array(String),
    note String DEFAULT 'none'
)
ENGINE = MergeTree
ORDER BY id
"""


@pytest.fixture
def things(store: ReportingStore) -> ReportingStore:
    store.command(THINGS_DDL)
    return store


def _thing(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid4(),
        "at": datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=UTC),
        "name": "thing",
        "big": 2**64 - 1,
        "small": 7,
        "tags": ["a", "b"],
    }
    row.update(overrides)
    return row


# ---------------------------------------------------------------------------
# Round trips


def test_insert_and_query_round_trip_types(things: ReportingStore) -> None:
    row = _thing()
    things.insert("things", [row])

    [got] = things.query("SELECT * FROM things")

    assert got == {**row, "note": "none"}  # the omitted column got its default
    assert isinstance(got["id"], UUID)
    assert got["at"].tzinfo is not None


def test_query_returns_empty_list_for_no_rows(things: ReportingStore) -> None:
    assert things.query("SELECT * FROM things WHERE small = {small:UInt8}", {"small": 1}) == []


def test_datetimes_are_stored_in_utc_whatever_their_zone(things: ReportingStore) -> None:
    paris = datetime(2026, 3, 4, 7, 6, 7, 999999, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Paris")
    )
    naive = datetime(2026, 3, 4, 5, 6, 7, 5000)  # taken as UTC
    things.insert("things", [_thing(name="paris", at=paris), _thing(name="naive", at=naive)])

    rows = {r["name"]: r["at"] for r in things.query("SELECT name, at FROM things")}

    # DateTime64(3) keeps milliseconds and truncates the rest.
    assert rows["paris"] == datetime(2026, 3, 4, 7, 6, 7, 999000, tzinfo=UTC)
    assert rows["naive"] == datetime(2026, 3, 4, 5, 6, 7, 5000, tzinfo=UTC)


def test_datetime_parameters_keep_milliseconds(things: ReportingStore) -> None:
    base = datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)
    things.insert(
        "things",
        [_thing(name=str(i), at=base + timedelta(milliseconds=i)) for i in range(3)],
    )

    rows = things.query(
        "SELECT name FROM things WHERE at >= {start:DateTime64(3, 'UTC')} ORDER BY name",
        {"start": base + timedelta(milliseconds=1)},
    )

    assert [r["name"] for r in rows] == ["1", "2"]


def test_parameters_of_every_supported_kind(store: ReportingStore) -> None:
    some_id = uuid4()
    [row] = store.query(
        """
        SELECT {s:String} AS s, {n:Int64} AS n, {f:Float64} AS f, {u:UUID} AS u,
               {a:Array(String)} AS a, {ids:Array(UUID)} AS ids,
               {nothing:Nullable(String)} IS NULL AS is_null, {b:Bool} AS b
        """,
        {
            "s": "x",
            "n": -(2**63),
            "f": 1.5,
            "u": some_id,
            "a": ["p", "q"],
            "ids": [some_id],
            "nothing": None,
            "b": True,
        },
    )
    assert row == {
        "s": "x",
        "n": -(2**63),
        "f": 1.5,
        "u": some_id,
        "a": ["p", "q"],
        "ids": [some_id],
        "is_null": 1,
        "b": True,
    }


# ---------------------------------------------------------------------------
# Hostile values are data, never SQL


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_round_trip_as_parameters(store: ReportingStore, value: str) -> None:
    [row] = store.query(
        "SELECT {s:String} AS s, {a:Array(String)} AS a, length({s:String}) AS n",
        {"s": value, "a": [value, value]},
    )

    assert row["s"] == value
    assert row["a"] == [value, value]
    assert row["n"] == len(value.encode())


def test_hostile_strings_round_trip_through_insert(things: ReportingStore) -> None:
    rows = [_thing(name=value, tags=[value]) for value in HOSTILE]
    things.insert("things", rows)

    for value in HOSTILE:
        found = things.query(
            "SELECT name, tags FROM things WHERE name = {name:String}", {"name": value}
        )
        assert found == [{"name": value, "tags": [value]}]
    assert things.query("SELECT count() AS n FROM things") == [{"n": len(HOSTILE)}]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text())
def test_any_text_round_trips(things: ReportingStore, value: str) -> None:
    [row] = things.query(
        "SELECT {s:String} AS s, {a:Array(String)} AS a", {"s": value, "a": [value]}
    )
    assert row == {"s": value, "a": [value]}


def test_a_table_name_is_checked_before_it_reaches_sql(things: ReportingStore) -> None:
    with pytest.raises(ReportingStoreError):
        things.insert("things; DROP TABLE things", [_thing()])
    with pytest.raises(ReportingStoreError):
        things.insert("things`", [_thing()])
    assert things.query("SELECT count() AS n FROM things") == [{"n": 0}]


def test_unknown_columns_are_refused(things: ReportingStore) -> None:
    with pytest.raises(ReportingStoreError):
        things.insert("things", [_thing(surprise=1)])


def test_integers_that_do_not_fit_their_declared_type_are_refused(store: ReportingStore) -> None:
    # The engine alone would silently wrap 300 to 44.
    with pytest.raises(ReportingStoreError, match="does not fit"):
        store.query("SELECT {n:UInt8} AS n", {"n": 300})
    with pytest.raises(ReportingStoreError, match="does not fit"):
        store.query("SELECT {n:UInt64} AS n", {"n": -1})
    with pytest.raises(ReportingStoreError):
        store.query("SELECT {n:UInt8} AS n", {"n": "1 OR 1=1"})
    with pytest.raises(ReportingStoreError):
        store.query("SELECT {n:UInt8} AS n", {"n": True})


def test_values_that_do_not_parse_as_their_type_are_refused(store: ReportingStore) -> None:
    with pytest.raises(ReportingStoreError):
        store.query("SELECT {u:UUID} AS u", {"u": "not-a-uuid' OR 1=1 --"})
    with pytest.raises(ReportingStoreError):
        store.query("SELECT {at:DateTime64(3, 'UTC')} AS at", {"at": "yesterday'); DROP"})


def test_engine_errors_are_reporting_store_errors(store: ReportingStore) -> None:
    with pytest.raises(ReportingStoreError):
        store.query("SELEC nonsense")
    with pytest.raises(ReportingStoreError):
        store.command("DROP TABLE no_such_table")


def test_unsupported_parameter_types_are_refused(store: ReportingStore) -> None:
    with pytest.raises(ReportingStoreError):
        store.query("SELECT {s:String} AS s", {"s": object()})


# ---------------------------------------------------------------------------
# Volume


def test_insert_of_100k_rows(things: ReportingStore) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "id": UUID(int=i + 1),
            "at": base + timedelta(seconds=i),
            "name": f"n{i}",
            "big": i,
            "small": i % 256,
            "tags": ["x"],
        }
        for i in range(100_000)
    ]

    things.insert("things", rows)

    assert things.query("SELECT count() AS n, sum(big) AS total FROM things") == [
        {"n": 100_000, "total": sum(range(100_000))}
    ]


# ---------------------------------------------------------------------------
# Adapter specifics


def test_open_reporting_store_picks_chdb_without_a_url(tmp_path: Path) -> None:
    store = open_reporting_store(None, str(tmp_path / "chdb"))
    try:
        assert isinstance(store, ChdbStore)
        assert store.query("SELECT 1 AS one") == [{"one": 1}]
    finally:
        store.close()
    store = open_reporting_store("", str(tmp_path / "chdb"))
    try:
        assert isinstance(store, ChdbStore)
    finally:
        store.close()


def test_open_reporting_store_picks_the_server_with_a_url(tmp_path: Path) -> None:
    store = open_reporting_store(f"chdb://{tmp_path / 'connect'}", str(tmp_path / "unused"))
    try:
        assert isinstance(store, ClickHouseServerStore)
        assert store.query("SELECT 1 AS one") == [{"one": 1}]
    finally:
        store.close()


def test_chdb_store_persists_to_its_folder(tmp_path: Path) -> None:
    first = ChdbStore(str(tmp_path / "chdb"))
    first.command(THINGS_DDL)
    first.insert("things", [_thing(name="kept")])
    first.close()

    second = ChdbStore(str(tmp_path / "chdb"))
    try:
        assert second.query("SELECT name FROM things") == [{"name": "kept"}]
    finally:
        second.close()


def test_chdb_stores_on_one_folder_are_isolated_by_database(tmp_path: Path) -> None:
    left = ChdbStore(str(tmp_path / "chdb"), database="left")
    right = ChdbStore(str(tmp_path / "chdb"), database="right")
    try:
        left.command(THINGS_DDL)
        right.command(THINGS_DDL)
        left.insert("things", [_thing(name="left")])

        assert left.query("SELECT name FROM things") == [{"name": "left"}]
        assert right.query("SELECT name FROM things") == []
    finally:
        left.close()
        right.close()
    with pytest.raises(ReportingStoreError):
        ChdbStore(str(tmp_path / "chdb"), database="bad`name")


def test_chdb_store_is_safe_to_share_between_threads(tmp_path: Path) -> None:
    store = ChdbStore(str(tmp_path / "chdb"))
    store.command(THINGS_DDL)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.insert("things", [_thing(name=f"{n}-{i}")])
                store.query("SELECT count() AS n FROM things")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert store.query("SELECT count() AS n FROM things") == [{"n": 120}]
    finally:
        store.close()


def test_a_closed_chdb_store_refuses_work(tmp_path: Path) -> None:
    store = ChdbStore(str(tmp_path / "chdb"))
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(ReportingStoreError, match="closed"):
        store.query("SELECT 1")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("a\\b", "a\\\\b"),
        ("new\nline\ttab", "new\\nline\\ttab"),
        ("it's", "it's"),
        (None, "\\N"),
        (True, "true"),
        (42, "42"),
        (UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), "2026-01-02 03:04:05.006000"),
        (["it's", "a\\b", None], "['it\\'s', 'a\\\\b', NULL]"),
    ],
)
def test_chdb_parameter_text(value: Any, text: str) -> None:
    """chdb reads parameters in ClickHouse's escaped text format; arrays hold quoted literals."""
    assert _chdb_parameter(value) == text
