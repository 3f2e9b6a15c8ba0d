"""Statistics from the rollups, on every reporting engine (chdb, clickhouse-connect, a server).

The rows are real ``events`` rows (``rows_for`` of synthetic envelopes); the
expected figures are counted here in Python from the same rows, so a figure
read from a daily, hourly or raw slice must equal the plain count.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from adapters.ports import ReportingStore
from domain.errors import Extensions, RequestRejected
from engine.campaigns.runner import campaign_statistics
from engine.params import date_param, parse_timestamp
from projections.events import ensure_schema, insert_new_events
from projections.schema import MIGRATIONS, applied_versions, apply_retention, migrate
from projections.stats import (
    SERIES_KINDS,
    Slice,
    account_overview,
    aggregated_events,
    campaign_series,
    domain_stats,
    plan,
)
from tests.adapters.test_clickhouse import STORE_KINDS, open_store

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POSITIONS = itertools.count(1)  # the event store's log positions: unique per event


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReportingStore]:
    with open_store(request.param, tmp_path) as opened:
        ensure_schema(opened)
        yield opened


def row(
    domain_id: UUID,
    occurred_at: datetime,
    event_type: str,
    *,
    message_id: UUID | None = None,
    campaign_id: str = "",
    submission_id: UUID | None = None,
    tags: tuple[str, ...] = (),
    bounce_type: str = "",
    attempt: int = 0,
    recipient: str = "someone@example.org",
    url: str = "",
    position: int = 0,
) -> dict[str, Any]:
    details = ""
    if bounce_type:
        details = f'{{"BounceType":"{bounce_type}"}}'
    elif url:
        details = f'{{"URL":"{url}"}}'
    return {
        "event_id": uuid4(),
        "position": position or next(POSITIONS),
        "event_type": event_type,
        "occurred_at": occurred_at,
        "account_id": UUID(int=1),
        "domain_id": domain_id,
        "submission_id": submission_id or UUID(int=2),
        "message_id": message_id or uuid4(),
        "recipient": recipient,
        "recipient_domain": recipient.rpartition("@")[2],
        "sender": "news@example.com",
        "subject": "Hello",
        "tags": list(tags),
        "campaign_id": campaign_id,
        "smtp_code": 0,
        "enhanced_status": "",
        "diagnostic": "",
        "attempt": attempt,
        "details": details,
    }


def traffic(domain_id: UUID, seed: int = 7) -> list[dict[str, Any]]:
    """Ten days of mail at odd minutes: sends, retries, deliveries, bounces, opens, clicks."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for n in range(600):
        at = T0 + timedelta(minutes=rng.randrange(10 * 24 * 60), milliseconds=rng.randrange(1000))
        message = uuid4()
        tags = rng.choice([(), ("promo",), ("news", "weekly")])
        common = {"message_id": message, "tags": tags, "campaign_id": rng.choice(["", "c1"])}
        rows.append(row(domain_id, at, "sent", attempt=1, **common))
        if n % 10 == 0:
            rows.append(row(domain_id, at + timedelta(minutes=5), "sent", attempt=2, **common))
        fate = rng.random()
        if fate < 0.1:
            kind = rng.choice(["hard", "soft", "block"])
            bounced = row(
                domain_id, at + timedelta(seconds=1), "bounced", bounce_type=kind, **common
            )
            rows.append(bounced)
            continue
        rows.append(row(domain_id, at + timedelta(seconds=1), "delivered", **common))
        for opened in range(rng.choice([0, 0, 1, 2])):
            rows.append(row(domain_id, at + timedelta(hours=1 + opened), "open", **common))
        if rng.random() < 0.2:
            link = "https://x.example/a"
            rows.append(row(domain_id, at + timedelta(hours=3), "click", url=link, **common))
    for position, item in enumerate(rows, start=1):
        item["position"] = position
    return rows


def expected(rows: list[dict[str, Any]], start: datetime, stop: datetime) -> dict[str, int]:
    inside = [r for r in rows if start <= r["occurred_at"] < stop]
    kinds = Counter(r["event_type"] for r in inside)
    bounces = Counter(r["details"] for r in inside if r["event_type"] == "bounced")
    return {
        "Sent": sum(1 for r in inside if r["event_type"] == "sent" and r["attempt"] <= 1),
        "Delivered": kinds["delivered"],
        "HardBounces": bounces['{"BounceType":"hard"}'],
        "SoftBounces": bounces['{"BounceType":"soft"}'],
        "Blocks": bounces['{"BounceType":"block"}'],
        "Opens": kinds["open"],
        "UniqueOpens": len({r["message_id"] for r in inside if r["event_type"] == "open"}),
        "Clicks": kinds["click"],
        "UniqueClicks": len({r["message_id"] for r in inside if r["event_type"] == "click"}),
    }


def test_slices_cover_a_range_exactly_once() -> None:
    start = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    stop = datetime(2026, 3, 5, 14, 15, tzinfo=UTC)
    assert plan(start, stop) == [
        Slice("events", start, datetime(2026, 3, 1, 10, tzinfo=UTC)),
        Slice("hourly", datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)),
        Slice("daily", datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)),
        Slice("hourly", datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 5, 14, tzinfo=UTC)),
        Slice("events", datetime(2026, 3, 5, 14, tzinfo=UTC), stop),
    ]
    assert plan(start, start + timedelta(minutes=10)) == [
        Slice("events", start, start + timedelta(minutes=10))
    ]
    assert plan(stop, start) == []
    hours = plan(start, stop, daily=False)
    assert [s.source for s in hours] == ["events", "hourly", "events"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (T0, T0 + timedelta(days=10)),  # whole days
        (T0 + timedelta(hours=5, minutes=17), T0 + timedelta(days=6, hours=3, minutes=41)),
        (T0 + timedelta(days=2, minutes=3), T0 + timedelta(days=2, minutes=50)),  # within an hour
    ],
)
def test_domain_stats_equal_a_plain_count_whatever_the_slices(
    store: ReportingStore, start: datetime, end: datetime
) -> None:
    domain_id = uuid4()
    rows = traffic(domain_id)
    insert_new_events(store, rows)
    insert_new_events(store, traffic(uuid4(), seed=8))  # another domain's mail is not counted
    insert_new_events(store, rows[:50])  # a redelivery is not counted twice

    answer = domain_stats(store, domain_id, start, end - timedelta(milliseconds=1))

    for name, value in expected(rows, start, end).items():
        assert answer["Stats"][name] == value, name
    length = end - start
    for name, value in expected(rows, start - length, start).items():
        assert answer["ComparisonStats"][name] == value, name
        assert answer["ComparisonStats"]["Deltas"][name] == answer["Stats"][name] - value
    promo = [r for r in rows if "promo" in r["tags"]]
    if any(start <= r["occurred_at"] < end for r in promo):
        assert answer["TagStats"]["promo"]["Delivered"] == expected(promo, start, end)["Delivered"]
    assert "" not in answer["TagStats"]


def test_aggregated_events_by_every_field(store: ReportingStore) -> None:
    domain_id = uuid4()
    rows = traffic(domain_id)
    insert_new_events(store, rows)
    start, end = T0 + timedelta(hours=7, minutes=30), T0 + timedelta(days=8, minutes=10)
    inside = [r for r in rows if start <= r["occurred_at"] <= end]

    def buckets(field: str, zone: str = "UTC") -> dict[str, int]:
        found = aggregated_events(store, domain_id, field, 1000, start, end, zone)
        assert [b["Count"] for b in found] == sorted((b["Count"] for b in found), reverse=True)
        return {b["Key"]: b["Count"] for b in found}

    assert buckets("eventtype") == Counter(r["event_type"] for r in inside)
    assert buckets("campaign") == Counter(r["campaign_id"] for r in inside)
    assert buckets("tag") == Counter(t for r in inside for t in (r["tags"] or [""]))
    assert buckets("recipientdomain") == {"example.org": len(inside)}
    assert buckets("url") == {
        "https://x.example/a": sum(r["event_type"] == "click" for r in inside)
    }
    assert buckets("bouncetype") == Counter(
        r["details"].split('"')[3] for r in inside if r["event_type"] == "bounced"
    )
    assert buckets("hour") == Counter(
        r["occurred_at"].strftime("%Y-%m-%dT%H:00:00Z") for r in inside
    )
    assert buckets("day") == Counter(r["occurred_at"].date().isoformat() for r in inside)
    tokyo = ZoneInfo("Asia/Tokyo")
    assert buckets("day", "Asia/Tokyo") == Counter(
        r["occurred_at"].astimezone(tokyo).date().isoformat() for r in inside
    )
    top = aggregated_events(store, domain_id, "eventtype", 2, start, end)
    assert len(top) == 2 and top[0]["Key"] == "sent"


def test_campaign_statistics_from_the_campaign_rollup(store: ReportingStore) -> None:
    domain_id, first, second = uuid4(), uuid4(), uuid4()
    campaign = str(uuid4())
    rows = []
    for submission, count in ((first, 6), (second, 4)):
        for n in range(count):
            message = uuid4()
            at = T0 + timedelta(seconds=n + (100 if submission == second else 0))
            common = {"message_id": message, "campaign_id": campaign, "submission_id": submission}
            rows.append(row(domain_id, at, "accepted", **common))
            rows.append(row(domain_id, at, "sent", attempt=1, **common))
            if n == 0:
                rows.append(row(domain_id, at, "bounced", bounce_type="soft", **common))
                continue
            rows.append(row(domain_id, at, "delivered", **common))
            rows.append(row(domain_id, at + timedelta(hours=1), "open", **common))
            rows.append(row(domain_id, at + timedelta(hours=2), "open", **common))
    rows.append(row(domain_id, T0, "delivered", campaign_id=str(uuid4())))  # another campaign
    insert_new_events(store, rows)
    insert_new_events(store, rows)

    stats = campaign_statistics(store, UUID(campaign))

    assert (stats["TotalRecipients"], stats["TotalDelivered"], stats["TotalSent"]) == (10, 8, 10)
    assert (stats["TotalSoftBounces"], stats["TotalHardBounces"]) == (2, 0)
    assert stats["SoftBounceRatio"] == "20.00"
    assert stats["Statistics"]["OpenStatistics"] == {"TotalOpens": 16, "UniqueOpens": 8}
    assert [(i["InstanceID"], i["Recipients"], i["Delivered"]) for i in stats["Instances"]] == [
        (str(first), 6, 5),
        (str(second), 4, 3),
    ]
    assert stats["CampaignThroughput"]["AverageEmailsPerSecond"] == round(8 / 102, 1)
    assert campaign_statistics(store, uuid4())["TotalRecipients"] == 0


@pytest.mark.parametrize(("span", "step"), [(timedelta(minutes=10), 5), (timedelta(hours=5), 300)])
def test_a_campaigns_throughput_is_counted_in_steps_from_the_events_or_the_rollup(
    store: ReportingStore, span: timedelta, step: int
) -> None:
    domain_id, campaign = uuid4(), str(uuid4())
    rng = random.Random(3)
    moments = sorted(T0 + span * rng.random() for _ in range(300))
    kinds = Counter[str]()
    rows = [row(domain_id, T0, "accepted", campaign_id=campaign),
            row(domain_id, T0 + span, "accepted", campaign_id=campaign)]  # fmt: skip
    for at in moments:
        kind = rng.choice(("delivered", "delivered", "deferred", "bounced"))
        kinds[kind] += 1
        rows.append(row(domain_id, at, kind, campaign_id=campaign))
    rows.append(row(domain_id, T0, "delivered", campaign_id=str(uuid4())))  # another campaign
    insert_new_events(store, rows)

    chart = campaign_series(store, UUID(campaign))

    assert chart["Step"] == step  # at most 120 steps over the span
    times = [datetime.fromisoformat(point["At"]) for point in chart["Series"]]
    assert times[0] <= T0 < times[0] + timedelta(seconds=step)
    assert times[-1] <= T0 + span < times[-1] + timedelta(seconds=step)
    assert all(b - a == timedelta(seconds=step) for a, b in itertools.pairwise(times))  # no gap
    for kind in ("delivered", "deferred", "bounced"):
        assert sum(point[kind] for point in chart["Series"]) == kinds[kind]
    assert campaign_series(store, uuid4()) == {"Step": 1, "Series": []}


def test_migrations_bring_an_old_table_up_to_date_and_backfill_the_rollups(
    store: ReportingStore,
) -> None:
    """A store made by the first version (``events`` only) gets the rollups, counted once."""
    for name in [t["name"] for t in store.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%View'"
    )]:  # fmt: skip
        store.command(f"DROP VIEW {name}")
    for table in ("rollup_hourly", "rollup_daily", "tag_rollup_hourly", "tag_rollup_daily",
                  "campaign_rollup", "schema_migrations"):  # fmt: skip
        store.command(f"DROP TABLE {table}")
    domain_id = uuid4()
    rows = traffic(domain_id)
    store.insert("events", rows)  # stored before the rollups existed

    assert migrate(store) == [m.version for m in MIGRATIONS]
    assert migrate(store) == []
    assert applied_versions(store) == {m.version for m in MIGRATIONS}
    assert store.query("SELECT sum(events) AS n FROM rollup_daily") == [{"n": len(rows)}]
    more = traffic(domain_id, seed=9)
    for item in more:
        item["position"] += len(rows)
    insert_new_events(store, more)
    assert store.query("SELECT sum(events) AS n FROM rollup_hourly") == [
        {"n": len(rows) + len(more)}
    ]
    stats = domain_stats(store, domain_id, T0, T0 + timedelta(days=20))
    assert stats["Stats"]["Delivered"] == sum(r["event_type"] == "delivered" for r in rows + more)


def test_retention_is_a_ttl_on_raw_events_only(store: ReportingStore) -> None:
    def ttl(table: str) -> str:
        rows = store.query(
            "SELECT engine_full FROM system.tables "
            "WHERE database = currentDatabase() AND name = {t:String}",
            {"t": table},
        )
        return str(rows[0]["engine_full"])

    apply_retention(store, 90)
    assert "TTL toDateTime(occurred_at) + toIntervalDay(90)" in ttl("events")
    apply_retention(store, 90)  # unchanged: not altered again
    apply_retention(store, 30)
    assert "toIntervalDay(30)" in ttl("events")
    assert " TTL " not in ttl("rollup_daily")

    domain_id = uuid4()
    old, recent = T0 - timedelta(days=400), datetime.now(UTC) - timedelta(days=1)
    insert_new_events(store, [row(domain_id, old, "delivered", position=1),
                              row(domain_id, recent, "delivered", position=2)])  # fmt: skip
    store.command("OPTIMIZE TABLE events FINAL")
    assert store.query("SELECT count() AS n FROM events") == [{"n": 1}]  # the old row is gone
    assert store.query("SELECT sum(events) AS n FROM rollup_daily") == [{"n": 2}]  # still counted
    apply_retention(store, 0)
    assert " TTL " not in ttl("events")


def test_dates_are_read_in_the_account_time_zone() -> None:
    paris = "Europe/Paris"
    assert date_param("2026-03-01", end_of_day=False, zone=paris) == datetime(
        2026, 2, 28, 23, tzinfo=UTC
    )
    assert date_param("2026-07-01", end_of_day=True, zone=paris) == datetime(
        2026, 7, 1, 21, 59, 59, 999_000, tzinfo=UTC
    )
    assert date_param("2026-03-01 08:00:00", end_of_day=True, zone=paris) == datetime(
        2026, 3, 1, 7, tzinfo=UTC
    )
    # A Unix timestamp and an explicit offset are instants, whatever the zone.
    assert date_param("1617235200", end_of_day=False, zone=paris) == datetime(
        2021, 4, 1, tzinfo=UTC
    )
    assert date_param("2026-03-01T08:00:00Z", end_of_day=False, zone=paris) == datetime(
        2026, 3, 1, 8, tzinfo=UTC
    )
    assert date_param("2026-03-01", end_of_day=False) == datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("9999-12-31T23:59:59-01:00", "UTC"),  # after year 9999 in UTC
        ("0001-01-01T00:00:00+01:00", "UTC"),  # before year 1 in UTC
        ("9999-12-31", "America/New_York"),  # the end of that day, in UTC
    ],
)
def test_a_date_beyond_what_utc_can_hold_is_an_invalid_date_not_a_failure(
    text: str, zone: str
) -> None:
    # Found by schemathesis: these answered 500 (OverflowError) from GET /api/v1/events.
    with pytest.raises(RequestRejected) as rejected:
        date_param(text, end_of_day=True, zone=zone)
    assert rejected.value.errors == (Extensions.INVALID_DATE,)
    assert parse_timestamp(text) is None or zone != "UTC"


def test_an_accounts_overview_sums_its_domains_by_hour_and_by_day(store: ReportingStore) -> None:
    ours, also_ours, theirs = uuid4(), uuid4(), uuid4()
    rows = traffic(ours) + traffic(also_ours, seed=9)
    for position, item in enumerate(rows, start=1):
        item["position"] = position
    late = T0 + timedelta(days=2, hours=5, minutes=7)
    deferring = [
        row(ours, late, "deferred", recipient="a@slow.example", position=10_001),
        row(ours, late, "deferred", recipient="b@slow.example", position=10_002),
        row(also_ours, late, "bounced", bounce_type="hard", recipient="c@gone.example",
            position=10_003),
    ]  # fmt: skip
    insert_new_events(store, rows + deferring)
    foreign = traffic(theirs, seed=10)
    for position, item in enumerate(foreign, start=20_001):
        item["position"] = position
    insert_new_events(store, foreign)  # another account's mail is not counted
    start, end = T0 + timedelta(hours=13, minutes=30), T0 + timedelta(days=6, hours=2)
    stop = end + timedelta(milliseconds=1)
    counted = rows + deferring

    by_day = account_overview(store, [ours, also_ours], start, end, by_day=True)
    for name, value in expected(counted, start, stop).items():
        assert by_day["Stats"][name] == value, name
    assert by_day["Stats"]["Deferred"] == 2
    for kind in SERIES_KINDS:
        assert sum(point[kind] for point in by_day["Series"]) == sum(
            1 for r in counted if start <= r["occurred_at"] < stop and r["event_type"] == kind
        ), kind
    assert [p["At"] for p in by_day["Series"]] == sorted(p["At"] for p in by_day["Series"])
    inside = [r for r in counted if start <= r["occurred_at"] < stop]
    bounced_there = sum(
        1 for r in inside if r["event_type"] == "bounced" and r["recipient_domain"] == "example.org"
    )
    assert by_day["TopDeferringDomains"] == [
        {"Domain": "example.org", "Deferred": 0, "Bounced": bounced_there},
        {"Domain": "slow.example", "Deferred": 2, "Bounced": 0},
        {"Domain": "gone.example", "Deferred": 0, "Bounced": 1},
    ]

    day = late.replace(minute=0)
    by_hour = account_overview(store, [ours], day, day + timedelta(hours=1), by_day=False)
    hour = [p for p in by_hour["Series"] if p["At"] == day.strftime("%Y-%m-%dT%H:00:00Z")]
    assert hour and hour[0]["deferred"] == 2
    assert account_overview(store, [], start, end, by_day=True)["Series"] == []


def test_a_range_of_millennia_compares_with_what_the_tables_can_hold(
    store: ReportingStore,
) -> None:
    domain_id = uuid4()
    insert_new_events(store, traffic(domain_id))
    start = datetime(2208, 10, 2, 12, 19, 47, tzinfo=UTC)  # as schemathesis once asked
    answer = domain_stats(store, domain_id, start, datetime(8991, 9, 2, tzinfo=UTC))
    assert answer["Stats"]["Sent"] == 0
    assert answer["ComparisonStats"]["PeriodStart"] == "1900-01-01T00:00:00Z"
    assert answer["ComparisonStats"]["Sent"] == expected(traffic(domain_id), T0, start)["Sent"]
