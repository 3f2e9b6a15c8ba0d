"""``python -m bench analytics``: the reporting side on 10,000,000 events, embedded (chdb).

1. Projection ingest: the projector (``Projector.run_once``: mapping, the write-once
   check, the insert, the rollups' views) fed 1,000,000 envelopes of 250,000
   messages from memory, so that the figure is the projection's own, not the
   event store's read speed.
2. Bulk load: 10,000,000 synthetic events written by ClickHouse itself
   (``INSERT … SELECT``), through the same views. 1,000 sender domains, 10,000
   campaigns and transactional mail; campaign sizes and domains are skewed
   (a few campaigns of 100,000+ messages, most of a few hundred), each campaign
   sends within two hours at a random moment of the last 85 days, and its opens
   and clicks follow over three days. Per message: accepted, sent, then
   delivered (95 %), bounced (3 %) or deferred and delivered (2 %); opened by
   a quarter (some twice), clicked by one in twenty.
3. Queries, 200 runs each, through the functions the API calls: the domain or
   campaign of each run is drawn in proportion to its events (busy tenants ask
   more), over a 30-day range ending at a random day.
4. The console's pages: the overview of one of the 200 busiest accounts (24 hours and
   30 days: its figures, the chart's every bucket, the page rendered) and the
   Messages page of a domain (its newest 50 events, rendered) and a campaign's page
   (its statistics and its throughput chart, rendered): the page's own work,
   without the session check and the HTTP round trip.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import orjson

from adapters.ports import ReportingStore
from api.console.pages import Console, every_bucket
from bench.machine import describe, print_table
from domain.envelope import EventEnvelope
from engine.campaigns.runner import campaign_statistics
from engine.reporting.projector import MessageFactsCache, Projector
from engine.runtime.composition import Engine, tune_garbage_collector
from engine.settings import Settings
from projections.events import encode_events, insert_new_encoded, list_event_rows
from projections.query import parse_query
from projections.stats import (
    AGGREGATIONS,
    CAMPAIGN_KINDS,
    SERIES_KINDS,
    account_overview,
    aggregated_events,
    campaign_series,
    domain_stats,
)

RUNS = 200


class EnvelopesInMemory:
    """An event source over a prepared list: what the projector reads, without a store."""

    def __init__(self, envelopes: list[EventEnvelope]) -> None:
        self._envelopes = envelopes
        self._next = 0
        self._committed = 0

    def poll(self, max_records: int, timeout: float) -> list[EventEnvelope]:
        batch = self._envelopes[self._next : self._next + max_records]
        self._next += len(batch)
        return batch

    def commit(self) -> None:
        self._committed = self._next

    def rewind(self) -> None:
        self._next = self._committed

    def close(self) -> None:
        pass


def synthetic_envelopes(messages: int, start_position: int) -> list[EventEnvelope]:
    """Four events a message (accepted, sent, delivered, and an open for every other one
    or a click), with their data as the embedded event store hands it over (objects)."""
    rng = random.Random(11)
    now = datetime.now(UTC) - timedelta(days=1)
    account, domains = uuid4(), [uuid4() for _ in range(50)]
    envelopes: list[EventEnvelope] = []
    position = start_position
    for n in range(messages):
        message, submission = uuid4(), uuid4()
        at = now + timedelta(milliseconds=n)
        steps: list[tuple[str, dict[str, Any]]] = [
            (
                "Message.Accepted",
                {
                    "submission_id": submission,
                    "account_id": account,
                    "domain_id": rng.choice(domains),
                    "recipient": f"reader{n}@example.org",
                    "sender": "news@shop.example",
                    "subject": "Your weekly digest",
                    "tags": ["weekly"],
                    "campaign_id": "",
                },
            ),
            ("Message.DeliveryAttempted", {"attempt": 1}),
            ("Message.Delivered", {"code": 250, "enhanced_status": "2.0.0", "reply_text": "ok"}),
            (
                ("Message.Opened", {"ip": "192.0.2.1", "user_agent": "Mozilla/5.0"})
                if n % 2
                else ("Message.Clicked", {"ip": "192.0.2.1", "url": "https://shop.example/a"})
            ),
        ]
        for version, (event_type, data) in enumerate(steps, start=1):
            position += 1
            envelopes.append(
                EventEnvelope(
                    event_id=uuid4(),
                    position=position,
                    stream="message",
                    event_type=event_type,
                    aggregate_id=message,
                    aggregate_version=version,
                    occurred_at=at + timedelta(milliseconds=version),
                    data=data,
                )
            )
    return envelopes


def measure_ingest(engine: Engine, messages: int = 250_000) -> tuple[int, float, float]:
    """The projector's events/s, and its ceiling on the same machine: ClickHouse writing
    the same rows, already mapped and encoded, in inserts of the projector's size."""
    envelopes = synthetic_envelopes(messages, start_position=10**9)
    projector = Projector(engine.app, EnvelopesInMemory(envelopes), engine.reporting, 20_000)
    started = time.perf_counter()
    while projector.run_once(timeout=0):
        pass
    seconds = time.perf_counter() - started

    _truncate(engine.reporting)
    facts = MessageFactsCache(engine.app)
    chunk = 60_000  # three of the bench's batches, as the projector writes them
    encoded = [
        encode_events(envelopes[first : first + chunk], facts, facts.remember)
        for first in range(0, len(envelopes), chunk)
    ]
    started = time.perf_counter()
    for batch in encoded:
        insert_new_encoded(engine.reporting, batch)
    ceiling = len(envelopes) / (time.perf_counter() - started)
    _truncate(engine.reporting)
    return len(envelopes), seconds, ceiling


def _truncate(store: ReportingStore) -> None:
    for table in ("events", "rollup_hourly", "rollup_daily", "tag_rollup_hourly",
                  "tag_rollup_daily", "campaign_rollup"):  # fmt: skip
        store.command(f"TRUNCATE TABLE {table}")


def _u(expression: str, salt: int) -> str:
    """A uniform number in [0, 1) drawn from ``expression``: repeatable, no state."""
    return f"(cityHash64({expression}, {salt}) / 18446744073709551616.)"


def _id(prefix: str, expression: str) -> str:
    return f"toUUID(concat('{prefix}', leftPad(toString({expression}), 12, '0')))"


SUBJECTS = "['Welcome to the club', 'Your weekly digest', 'Sale ends tonight', 'Order update']"


def bulk_load(store: ReportingStore, messages: int) -> None:
    days = 85 * 86400
    store.command(
        f"""
        INSERT INTO events (event_id, position, event_type, occurred_at, account_id, domain_id,
            submission_id, message_id, recipient, recipient_domain, sender, subject, tags,
            campaign_id, smtp_code, attempt, details)
        SELECT generateUUIDv4(m * 8 + idx), m * 8 + idx, kind,
            sent_at + if(kind IN ('open', 'click'),
                         toIntervalSecond(toUInt32({_u("m", 9)} * 259200 * (idx - 2))),
                         toIntervalSecond(idx)),
            account_id, domain_id, submission_id, message_id,
            concat('reader', toString(m), '@', recipient_domain), recipient_domain,
            concat('news@d', toString(d), '.example'), subject, tags, campaign_id,
            if(kind IN ('delivered', 'bounced'), if(kind = 'delivered', 250, 550), 0),
            if(kind = 'sent', 1, 0),
            multiIf(kind = 'bounced', if({_u("m", 8)} < 0.7, '{{"BounceType":"hard"}}',
                                         '{{"BounceType":"soft"}}'),
                    kind = 'click', concat('{{"URL":"https://d', toString(d),
                                           '.example/p', toString(m % 7), '"}}'),
                    '')
        FROM (
            SELECT number AS m,
                toUInt32(10000 * pow({_u("number", 1)}, 3)) AS c,
                toUInt32(1000 * pow({_u("c", 2)}, 2)) AS d,
                {_id("00000000-0000-4000-a000-", "intDiv(d, 3)")} AS account_id,
                {_id("00000000-0000-4000-9000-", "d")} AS domain_id,
                {_id("00000000-0000-4000-8000-", "c")} AS submission_id,
                generateUUIDv4(number) AS message_id,
                if({_u("number", 3)} < 0.1, '', toString(submission_id)) AS campaign_id,
                {SUBJECTS}[1 + c % 4] AS subject,
                ['gmail.com', 'yahoo.com', 'outlook.com', 'gmx.de', 'orange.fr'][1 + m % 5]
                    AS recipient_domain,
                if(c % 3 = 0, ['promo'], if(c % 3 = 1, ['news', 'weekly'], [])) AS tags,
                now64(3, 'UTC') - toIntervalSecond(3 * 86400)
                    - toIntervalSecond(toUInt32({_u("c", 4)} * {days}))
                    + toIntervalSecond(toUInt32({_u("number", 5)} * 7200)) AS sent_at,
                {_u("number", 6)} AS fate,
                arrayConcat(['accepted', 'sent'],
                    if(fate < 0.95, ['delivered'],
                       if(fate < 0.98, ['bounced'], ['deferred', 'delivered'])),
                    if({_u("number", 7)} < 0.25, if(fate < 0.05, ['open', 'open'], ['open']), []),
                    if({_u("number", 10)} < 0.05, ['click'], [])) AS kinds
            FROM numbers({int(messages)})
        )
        ARRAY JOIN kinds AS kind, arrayEnumerate(kinds) AS idx
        """  # noqa: S608 (fixed text and ints)
    )


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def _timed(runs: int, call: Callable[[random.Random], Any]) -> tuple[float, float]:
    rng = random.Random(5)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call(rng)
        samples.append((time.perf_counter() - started) * 1000)
    return _percentiles(samples)


def run(events: int = 10_000_000) -> list[tuple[str, str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="sendstream-bench-analytics-"))
    settings = Settings(
        SENDSTREAM_DATA_DIR=workdir / "var",
        SMTP_SUBMISSION_PORTS="",
        BOUNCE_SMTP_PORTS="",
        INBOUND_SMTP_PORTS="",
    )
    engine = Engine(settings, roles=frozenset())
    tune_garbage_collector()  # as `sendstream serve` does
    rows: list[tuple[str, str, str]] = []
    try:
        store = engine.reporting
        count, seconds, ceiling = measure_ingest(engine)
        rows.append(
            (
                "projection ingest (events/s)",
                f"{count / seconds:,.0f}",
                f">= 150,000 (ceiling, ClickHouse writing the mapped rows: {ceiling:,.0f}: "
                f"{count / seconds / ceiling:.0%})",
            )
        )

        started = time.perf_counter()
        bulk_load(store, messages=int(events / 3.44))
        loaded = int(store.query("SELECT count() AS n FROM events")[0]["n"])
        load_seconds = time.perf_counter() - started
        rows.append(("bulk load, events", f"{loaded:,}", "10,000,000"))
        rows.append(("bulk load through the views (events/s)", f"{loaded / load_seconds:,.0f}", ""))
        rollup = int(store.query("SELECT count() AS n FROM rollup_hourly")[0]["n"])
        rows.append(("hourly rollup rows", f"{rollup:,}", ""))

        domains = store.query("SELECT domain_id, count() AS n FROM events GROUP BY domain_id")
        domain_ids = [UUID(str(r["domain_id"])) for r in domains]
        domain_weights = [int(r["n"]) for r in domains]
        campaigns = store.query(
            "SELECT campaign_id, count() AS n FROM events WHERE campaign_id != '' "
            "GROUP BY campaign_id"
        )
        campaign_ids = [UUID(r["campaign_id"]) for r in campaigns]
        campaign_weights = [int(r["n"]) for r in campaigns]
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

        def window(rng: random.Random) -> tuple[UUID, datetime, datetime]:
            domain = rng.choices(domain_ids, domain_weights)[0]
            end = today - timedelta(days=rng.randrange(0, 60)) - timedelta(milliseconds=1)
            return domain, end - timedelta(days=30) + timedelta(milliseconds=1), end

        def stats(rng: random.Random) -> None:
            domain_stats(store, *window(rng))

        fields = sorted(AGGREGATIONS)

        def aggregate(rng: random.Random) -> None:
            domain, start, end = window(rng)
            aggregated_events(store, domain, rng.choice(fields), 10, start, end)

        terms = [parse_query(q) for q in ("subject:welcome", "recipient:*@gmail.com", "tag:promo")]

        def search(rng: random.Random) -> None:
            domain, start, end = window(rng)
            list_event_rows(store, domain_id=domain, start_from=0, retrieve_count=50,
                            start=start, end=end, terms=rng.choice(terms))  # fmt: skip

        def campaign(rng: random.Random) -> None:
            campaign_statistics(store, rng.choices(campaign_ids, campaign_weights)[0])

        console = Console(engine)
        reader = SimpleNamespace(time_zone="UTC", username="bench", name="bench")
        accounts = [
            [UUID(str(d)) for d in row["domains"]]
            for row in store.query(
                "SELECT account_id, groupUniqArray(domain_id) AS domains FROM events "
                "GROUP BY account_id ORDER BY count() DESC LIMIT 200"
            )
        ]

        def overview(days: int) -> Callable[[random.Random], None]:
            """The console's overview: its figures, every bucket of its chart, its page."""

            def call(rng: random.Random) -> None:
                domains = rng.choice(accounts)
                end = datetime.now(UTC)
                start = end - timedelta(days=days)
                found = account_overview(store, domains, start, end, by_day=days > 1)
                series = every_bucket(found["Series"], start, end, days > 1, "UTC")
                shown = {**found, "Range": f"{days}d", "Series": series, "Domains": 1}
                shown["Stats"]["BounceRate"] = 0.0
                console.templates.get_template("overview.html").render(
                    account=reader, csrf="", overview=shown, periods=["24h", "7d", "30d"],
                    kinds=SERIES_KINDS, data="{}", section="overview",
                )  # fmt: skip

            return call

        def messages_page(rng: random.Random) -> None:
            """The console's Messages page: the newest 50 events of a domain, rendered."""
            domain = rng.choices(domain_ids, domain_weights)[0]
            total, found = list_event_rows(store, domain_id=domain, start_from=0,
                                           retrieve_count=50)  # fmt: skip
            events = [
                {"event_type": r["event_type"], "recipient": r["recipient"],
                 "timestamp": r["occurred_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "message_id": str(r["submission_id"]),
                 "message": {"headers": {"subject": r["subject"]}}}
                for r in found
            ]  # fmt: skip
            console.templates.get_template("messages.html").render(
                account=reader, csrf="", domains=[{"DomainID": str(domain), "DomainName": "d"}],
                filters={"domain": str(domain), "query": "", "event": "", "from": "", "to": ""},
                events=events, total=total, page=1, pages=-(-total // 50), first=1,
                event_names=[], per_page=50, section="messages",
            )  # fmt: skip

        def campaign_page(rng: random.Random) -> None:
            """The console's campaign page: its statistics and its throughput chart, rendered."""
            campaign_id = rng.choices(campaign_ids, campaign_weights)[0]
            shown: dict[str, Any] = {"CampaignID": str(campaign_id), "CampaignName": "bench",
                                     "Status": "Sent", "Progress": 100, "ScheduleType": "Immediate",
                                     "CreatedDate": datetime.now(UTC)}  # fmt: skip
            shown |= campaign_statistics(store, campaign_id)
            shown["Chart"] = campaign_series(store, campaign_id)
            console.templates.get_template("campaign.html").render(
                account=reader, csrf="", campaign=shown, kinds=CAMPAIGN_KINDS, section="campaigns",
                chart=orjson.dumps({"kinds": CAMPAIGN_KINDS, **shown["Chart"]}).decode(),
            )  # fmt: skip

        for name, call, target in (
            ("EmailGateway.DomainStats", stats, 50),
            ("EmailGateway.AggrEvents", aggregate, 100),
            ("EmailGateway.GetEvents with Query", search, 100),
            ("Campaign.Get statistics", campaign, 30),
            ("console overview, 24 hours", overview(1), 200),
            ("console overview, 30 days", overview(30), 200),
            ("console messages page", messages_page, 200),
            ("console campaign page", campaign_page, 200),
        ):
            call(random.Random(1))  # the first run reads the parts' indexes from disk
            p50, p99 = _timed(RUNS, call)
            rows.append((f"{name} p50 (ms)", f"{p50:.1f}", ""))
            rows.append((f"{name} p99 (ms)", f"{p99:.1f}", f"<= {target}"))
    finally:
        engine.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


if __name__ == "__main__":
    print_table("Machine", [(k, v, "") for k, v in describe().items()])
    print_table("Analytics (embedded, chdb)", run())
