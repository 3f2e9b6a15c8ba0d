"""Rebuilding the reporting tables from the event store (``sendstream replay-projections``).

Mail goes through a running engine (sandbox delivery, the live projector filling
ClickHouse; in Kafka mode through the relay and the broker) until every message's
``delivered`` row is listed. A replay must then leave exactly the rows the live
projector wrote, once each, and bring them all back after the table was emptied,
both in process and through the command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from domain.content import Address, EmailContent
from engine.reporting.replay import replay
from engine.runtime.composition import Engine
from projections.events import list_events
from tests.integration.conftest import wait_for

SUBMISSIONS = 4
RECIPIENTS = 2  # per submission
MESSAGES = SUBMISSIONS * RECIPIENTS
ROWS = MESSAGES * 4  # accepted, queued, sent, delivered
SUMMARY = re.compile(
    r"^replayed the event store up to position (\d+): (\d+) rows in table 'events'$"
)
REPO = Path(__file__).resolve().parents[2]


def send_mail(engine: Engine) -> UUID:
    """``SUBMISSIONS`` emails of ``RECIPIENTS`` recipients each; returns the domain id."""
    keys = engine.app.bootstrap("example.com")
    sender = engine.app.sender_context(keys["SenderAPIKey"])
    assert sender is not None
    for n in range(SUBMISSIONS):
        content = EmailContent(
            subject=f"Replay {n}",
            sender=Address("news@example.com", "News"),
            to=(Address(f"to{n}@example.org", "To"),),
            cc=(Address(f"cc{n}@example.org", "Cc"),),
            plain="hello",
            tags=("replay",),
        )
        submission, messages = engine.app.prepare_submission(sender, content, datetime.now(UTC))
        engine.writer.save([submission, *messages])
    return sender.domain_id


def listed(engine: Engine, domain_id: UUID, event_type: str | None = None) -> list[dict[str, Any]]:
    """The domain's events as ``GET /api/v1/events`` lists them (deduplicated by FINAL).

    The count and the page are two queries: while the projector still writes, a row may
    land between them, so ask again until they agree."""
    for _ in range(50):
        total, events = list_events(
            engine.reporting,
            domain_id=domain_id,
            start_from=0,
            retrieve_count=1000,
            event_type=event_type,
        )
        if total == len(events):
            return events
        time.sleep(0.05)
    raise AssertionError(f"the count ({total}) and the page ({len(events)}) never agreed")


def stored_rows(engine: Engine) -> Counter[tuple[UUID, str]]:
    """Every physical row of ``events`` (no FINAL), counted by (event id, type)."""
    rows = engine.reporting.query("SELECT event_id, event_type FROM events")
    return Counter((row["event_id"], row["event_type"]) for row in rows)


def wait_until_projected(engine: Engine, domain_id: UUID) -> list[dict[str, Any]]:
    """Wait for every message's ``delivered`` row, then for all of its rows."""
    wait_for(lambda: len(listed(engine, domain_id, "delivered")) == MESSAGES)

    def every_row() -> list[dict[str, Any]] | None:
        events = listed(engine, domain_id)
        return events if len(events) == ROWS else None

    events: list[dict[str, Any]] = wait_for(every_row)
    return events


def assert_rows_once(engine: Engine, expected: Counter[tuple[UUID, str]]) -> None:
    rows = stored_rows(engine)
    duplicates = {key: n for key, n in rows.items() if n > 1}
    assert not duplicates, f"rows stored more than once: {duplicates}"
    assert set(rows) == set(expected)


def test_replay_rebuilds_exactly_the_rows_the_projector_wrote(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(SMTP_RELAY_URL="")
    domain_id = send_mail(engine)
    before = wait_until_projected(engine, domain_id)
    rows = Counter({key: 1 for key in stored_rows(engine)})
    assert len(rows) == ROWS
    assert Counter(event["EventType"] for event in before) == {
        "accepted": MESSAGES, "queued": MESSAGES, "sent": MESSAGES, "delivered": MESSAGES,
    }  # fmt: skip
    last_position = engine.app.recorder.max_notification_id()

    assert replay(engine.app, engine.reporting) == last_position
    assert_rows_once(engine, rows)
    assert listed(engine, domain_id) == before

    engine.reporting.command("TRUNCATE TABLE events")
    assert listed(engine, domain_id) == []
    assert replay(engine.app, engine.reporting) == last_position
    assert_rows_once(engine, rows)
    assert listed(engine, domain_id) == before


def test_the_cli_rebuilds_the_tables_of_a_closed_engine(
    make_engine: Callable[..., Engine], tmp_path: Path
) -> None:
    engine = make_engine(SMTP_RELAY_URL="")
    domain_id = send_mail(engine)
    before = wait_until_projected(engine, domain_id)
    rows = Counter({key: 1 for key in stored_rows(engine)})
    last_position = engine.app.recorder.max_notification_id()
    engine.reporting.command("TRUNCATE TABLE events")
    data_dir = engine.settings.data_dir
    engine.close()  # chdb lets one process at a time own the folder

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("EVENTSTORE_URL", "CLICKHOUSE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env["SENDSTREAM_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "replay-projections"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"no output; stderr:\n{done.stderr}"
    summary = SUMMARY.match(lines[-1])
    assert summary, f"last line is not the summary: {lines[-1]!r}"
    assert int(summary.group(1)) == last_position
    assert int(summary.group(2)) == len(rows)

    reopened = make_engine(roles=frozenset(), start=False)  # same data folder
    assert reopened.settings.data_dir == data_dir
    assert_rows_once(reopened, rows)
    assert listed(reopened, domain_id) == before
