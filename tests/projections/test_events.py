"""The ``events`` read model on real engines: mapping, dedup, paging, filters, positions."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest

from adapters.ports import ReportingStore
from domain.envelope import EventEnvelope, event_id_for
from domain.message import Message
from projections.events import (
    EVENT_COLUMNS,
    EVENT_TYPE_NAMES,
    EVENT_TYPES,
    MessageFacts,
    MissingMessageFacts,
    count_events,
    encode_events,
    ensure_schema,
    insert_new_encoded,
    insert_new_events,
    list_events,
    load_facts,
    load_position,
    rows_for,
    save_position,
    tab_separated_lines,
)
from projections.schema import create_shadow_tables, swap_in_shadow_tables
from tests.adapters.test_clickhouse import HOSTILE, STORE_KINDS, open_store

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReportingStore]:
    with open_store(request.param, tmp_path) as opened:
        ensure_schema(opened)
        yield opened


def no_lookup(message_id: UUID) -> MessageFacts | None:
    raise AssertionError(f"lookup should not be needed for {message_id}")


class Positions:
    """Hands out notification ids, as the event store would."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last


def envelopes_of(message: Message, positions: Positions) -> list[EventEnvelope]:
    """What engine.eventlog.followers.to_envelope makes of the events a Message has pending."""
    envelopes = []
    for event in message.collect_events():
        data = {
            k: v
            for k, v in event.__dict__.items()
            if k not in {"originator_id", "originator_version", "timestamp", "originator_topic"}
        }
        envelopes.append(
            EventEnvelope(
                event_id=event_id_for(event.originator_id, event.originator_version),
                position=positions.next(),
                stream="message",
                event_type=type(event).__qualname__,
                aggregate_id=event.originator_id,
                aggregate_version=event.originator_version,
                occurred_at=event.timestamp,
                data=data,
            )
        )
    return envelopes


def new_message(
    domain_id: UUID | None = None,
    recipient: str = "user@example.com",
    subject: str = "Welcome",
    submission_id: UUID | None = None,
    send_at: datetime | None = None,
) -> Message:
    message = Message(
        id=uuid4(),
        submission_id=submission_id or uuid4(),
        account_id=uuid4(),
        domain_id=domain_id or uuid4(),
        recipient=recipient,
        recipient_kind="to",
        sender="news@sender.test",
        subject=subject,
        tags=["welcome", "onboarding"],
    )
    if send_at is not None:
        message.schedule(send_at)
    return message


def synthetic(
    domain_id: UUID,
    count: int,
    at: Sequence[datetime],
    positions: Positions,
    event_type: str = "Message.Delivered",
    submission_id: UUID | None = None,
) -> tuple[list[EventEnvelope], dict[UUID, MessageFacts]]:
    """``count`` later events of as many messages, timestamps cycling through ``at``."""
    facts: dict[UUID, MessageFacts] = {}
    envelopes = []
    for i in range(count):
        message_id = uuid4()
        facts[message_id] = MessageFacts(
            message_id=message_id,
            submission_id=submission_id or uuid4(),
            account_id=uuid4(),
            domain_id=domain_id,
            recipient=f"r{i}@example.com",
            sender="s@sender.test",
            subject=f"subject {i}",
            tags=("t",),
        )
        envelopes.append(
            EventEnvelope(
                event_id=event_id_for(message_id, 5),
                position=positions.next(),
                stream="message",
                event_type=event_type,
                aggregate_id=message_id,
                aggregate_version=5,
                occurred_at=at[i % len(at)],
                data={"code": 250, "enhanced_status": "2.0.0", "reply_text": "250 ok"},
            )
        )
    return envelopes, facts


def every_type_of_event() -> tuple[Message, list[EventEnvelope]]:
    """Three messages of one domain whose histories hold every Message event type."""
    positions = Positions()
    delivered = new_message()
    domain_id = delivered.domain_id
    delivered.queue()
    delivered.start_attempt()
    delivered.record_deferred(
        421, "4.7.0", "try later", T0, T0, [timedelta(minutes=5)], timedelta(days=1)
    )
    delivered.queue()
    delivered.start_attempt()
    delivered.record_delivered(250, "2.0.0", "250 2.0.0 Ok: queued as 1234")
    bounced = new_message(domain_id, recipient="nobody@example.org")
    bounced.queue()
    bounced.start_attempt()
    bounced.record_bounced(550, "5.1.1", "550 5.1.1 No such user")
    failed = new_message(domain_id, recipient="late@example.net", send_at=T0)
    failed.fail(reason="expired", code=451, enhanced_status="4.4.1", reply_text="no answer")
    envelopes = []
    for message in (delivered, bounced, failed):
        envelopes += envelopes_of(message, positions)
    return delivered, envelopes


def kafka_json(envelope: EventEnvelope) -> EventEnvelope:
    """The envelope as a consumer reading Kafka JSON sees it: data values as strings."""
    return EventEnvelope(
        event_id=envelope.event_id,
        position=envelope.position,
        stream=envelope.stream,
        event_type=envelope.event_type,
        aggregate_id=envelope.aggregate_id,
        aggregate_version=envelope.aggregate_version,
        occurred_at=envelope.occurred_at,
        data=orjson.loads(orjson.dumps(envelope.data)),
    )


def listed_ids(store: ReportingStore, domain_id: UUID, **filters: Any) -> list[str]:
    total, events = list_events(
        store, domain_id=domain_id, start_from=0, retrieve_count=10_000, **filters
    )
    assert total == len(events)
    return [event["EventId"] for event in events]


# ---------------------------------------------------------------------------
# Schema


LIVE_TABLES = [
    "audit_log", "campaign_rollup", "campaign_rollup_mv", "events", "projection_positions",
    "rollup_daily", "rollup_daily_mv", "rollup_hourly", "rollup_hourly_mv",
    "schema_migrations", "tag_rollup_daily", "tag_rollup_daily_mv",
    "tag_rollup_hourly", "tag_rollup_hourly_mv",
]  # fmt: skip


def test_schema_applies_idempotently(store: ReportingStore) -> None:
    ensure_schema(store)
    ensure_schema(store)

    tables = store.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    )
    assert [t["name"] for t in tables] == LIVE_TABLES


# ---------------------------------------------------------------------------
# Mapping


def test_a_held_campaign_message_maps_to_its_row() -> None:
    message = new_message()
    message.queue()
    message.hold("campaign paused")
    message.queue()
    rows = rows_for(envelopes_of(message, Positions()), no_lookup)
    assert [r["event_type"] for r in rows] == ["accepted", "queued", "held", "queued"]


def test_a_postponed_message_and_the_route_changes_its_replies_caused_map_to_rows() -> None:
    message = new_message()
    message.queue()
    until = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
    message.postpone(until, "warm-up: every address of the pool (192.0.2.1) has sent its cap")
    message.queue()
    message.start_attempt()
    message.record_deferred(
        421, "4.7.0", "slow down", now=until, first_accepted_at=until,
        retry_schedule=[timedelta(minutes=5)], lifetime=timedelta(days=3),
        source_ip="192.0.2.1",
    )  # fmt: skip
    message.note_route_change("throttled", "google", "192.0.2.1", 30.5, "421 slow down")
    message.note_route_change("suspended", "mx.example.net", "", 3600, "554 5.7.1 listed")
    message.note_route_change("resumed", "google", "192.0.2.1", 0, "250 ok")

    rows = rows_for(envelopes_of(message, Positions()), no_lookup)

    assert [r["event_type"] for r in rows] == [
        "accepted", "queued", "postponed", "queued", "sent", "deferred",
        "throttled", "suspended", "resumed",
    ]  # fmt: skip
    postponed = rows[2]
    assert orjson.loads(postponed["details"]) == {"Until": "2026-12-03T11:00:00.000Z"}
    assert postponed["diagnostic"].startswith("warm-up: every address")
    throttled, suspended, resumed = (orjson.loads(r["details"]) for r in rows[6:])
    assert throttled == {"Route": "google", "SourceIP": "192.0.2.1", "Seconds": 30.5}
    assert suspended == {"Route": "mx.example.net", "Seconds": 3600.0}
    assert resumed == {"Route": "google", "SourceIP": "192.0.2.1"}
    assert rows[7]["diagnostic"] == "554 5.7.1 listed"
    assert all(r["message_id"] == message.id for r in rows)


def test_every_message_event_type_maps_to_its_row() -> None:
    delivered, envelopes = every_type_of_event()

    rows = rows_for(envelopes, no_lookup)

    assert [r["event_type"] for r in rows] == [
        "accepted", "queued", "sent", "deferred", "queued", "sent", "delivered",
        "accepted", "queued", "sent", "bounced",
        "accepted", "scheduled", "failed",
    ]  # fmt: skip
    # Held belongs to campaigns, postponed and the route changes to direct delivery, the rest
    # to what happens after delivery: tested on their own.
    after = {"held", "open", "click", "unsubscribe", "complaint", "postponed"}
    after |= {"throttled", "suspended", "resumed"}
    assert {r["event_type"] for r in rows} == set(EVENT_TYPES.values()) - after
    for row, envelope in zip(rows, envelopes, strict=True):
        assert row["event_id"] == envelope.event_id
        assert row["position"] == envelope.position
        assert row["message_id"] == envelope.aggregate_id
        assert row["domain_id"] == delivered.domain_id
        assert row["occurred_at"] == envelope.occurred_at.replace(
            microsecond=envelope.occurred_at.microsecond // 1000 * 1000
        )
    first = rows[0]
    assert first["submission_id"] == delivered.submission_id
    assert first["account_id"] == delivered.account_id
    assert first["recipient"] == "user@example.com"
    assert first["recipient_domain"] == "example.com"
    assert first["sender"] == "news@sender.test"
    assert first["subject"] == "Welcome"
    assert first["tags"] == ["welcome", "onboarding"]
    assert first["campaign_id"] == ""
    sent, deferred, delivered_row = rows[2], rows[3], rows[6]
    assert (sent["attempt"], rows[5]["attempt"]) == (1, 2)
    assert (deferred["smtp_code"], deferred["enhanced_status"], deferred["diagnostic"]) == (
        421,
        "4.7.0",
        "try later",
    )
    assert orjson.loads(deferred["details"]) == {"RetryAt": "2026-05-01T12:05:00.000Z"}
    assert delivered_row["smtp_code"] == 250
    assert rows[10]["smtp_code"] == 550
    assert rows[10]["recipient_domain"] == "example.org"
    failed = rows[13]
    assert (failed["smtp_code"], failed["enhanced_status"], failed["diagnostic"]) == (
        451,
        "4.4.1",
        "no answer",
    )
    assert orjson.loads(failed["details"]) == {"Reason": "expired"}


def test_every_event_type_is_listed_in_the_api_shape(store: ReportingStore) -> None:
    delivered, envelopes = every_type_of_event()
    store.insert("events", rows_for(envelopes, no_lookup))

    total, events = list_events(
        store, domain_id=delivered.domain_id, start_from=0, retrieve_count=100
    )

    assert total == len(envelopes) == len(events)
    by_id = {event["EventId"]: event for event in events}
    for envelope in envelopes:
        event = by_id[str(envelope.event_id)]
        assert set(event) == {
            "EventId", "EventType", "EventTimestamp", "Recipient", "MessageId",
            "CampaignId", "Details",
        }  # fmt: skip
        assert event["EventType"] == EVENT_TYPES[envelope.event_type]
        assert TIMESTAMP.match(event["EventTimestamp"])
        assert event["CampaignId"] is None
    delivered_events = [e for e in events if e["MessageId"] == str(delivered.submission_id)]
    assert [e["EventType"] for e in delivered_events] == [
        "delivered",
        "sent",
        "queued",
        "deferred",
        "sent",
        "queued",
        "accepted",
    ]  # fmt: skip  (newest first, in the order things happened)
    assert {e["Recipient"] for e in delivered_events} == {"user@example.com"}
    details = {e["EventType"]: e["Details"] for e in events if e["Recipient"] != "user@example.com"}
    assert details["bounced"] == {
        "SmtpCode": 550,
        "EnhancedStatus": "5.1.1",
        "Diagnostic": "550 5.1.1 No such user",
        "BounceType": "hard",
        "Definitive": 1,
    }
    assert details["failed"] == {
        "SmtpCode": 451,
        "EnhancedStatus": "4.4.1",
        "Diagnostic": "no answer",
        "Reason": "expired",
    }
    assert delivered_events[0]["Details"] == {
        "SmtpCode": 250,
        "EnhancedStatus": "2.0.0",
        "Diagnostic": "250 2.0.0 Ok: queued as 1234",
    }
    assert delivered_events[1]["Details"] == {"Attempt": 2}
    assert delivered_events[3]["Details"]["RetryAt"] == "2026-05-01T12:05:00.000Z"
    assert delivered_events[-1]["Details"] == {}


def test_event_timestamps_are_utc_with_milliseconds(store: ReportingStore) -> None:
    positions = Positions()
    domain_id = uuid4()
    at = datetime(2026, 5, 1, 14, 0, 0, 987654, tzinfo=UTC)
    envelopes, facts = synthetic(domain_id, 1, [at], positions)
    store.insert("events", rows_for(envelopes, facts.get))

    _, [event] = list_events(store, domain_id=domain_id, start_from=0, retrieve_count=1)

    assert event["EventTimestamp"] == "2026-05-01T14:00:00.987Z"


def test_data_from_kafka_json_maps_like_objects() -> None:
    _, envelopes = every_type_of_event()
    envelopes += envelopes_of(new_message(send_at=T0), Positions())

    from_objects = rows_for(envelopes, no_lookup)
    from_json = rows_for([kafka_json(e) for e in envelopes], no_lookup)

    assert from_json == from_objects
    assert orjson.loads(from_objects[-1]["details"]) == {"SendAt": "2026-05-01T12:00:00.000Z"}
    encoded = encode_events(envelopes, no_lookup)
    assert encode_events([kafka_json(e) for e in envelopes], no_lookup) == encoded
    assert encoded.lines == tab_separated_lines(from_objects)


def test_other_streams_and_types_map_to_no_row() -> None:
    positions = Positions()
    kinds = [
        ("submission", "Submission.Created"),
        ("account", "Account.Registered"),
        ("message", "Message.SomethingNew"),
    ]
    envelopes = [
        EventEnvelope(uuid4(), positions.next(), stream, event_type, uuid4(), 1, T0, {})
        for stream, event_type in kinds
    ]

    assert rows_for(envelopes, no_lookup) == []


def test_later_events_ask_the_lookup_for_their_facts() -> None:
    message = new_message()
    message.queue()
    accepted, queued = envelopes_of(message, Positions())
    facts = rows_for([accepted], no_lookup)[0]
    asked: list[UUID] = []

    def lookup(message_id: UUID) -> MessageFacts | None:
        asked.append(message_id)
        return MessageFacts(
            message_id=message_id,
            submission_id=facts["submission_id"],
            account_id=facts["account_id"],
            domain_id=facts["domain_id"],
            recipient=facts["recipient"],
            sender=facts["sender"],
            subject=facts["subject"],
            tags=tuple(facts["tags"]),
        )

    [row] = rows_for([queued], lookup)

    assert asked == [message.id]
    assert row["event_type"] == "queued"
    assert {k: row[k] for k in ("domain_id", "recipient", "subject", "tags")} == {
        k: facts[k] for k in ("domain_id", "recipient", "subject", "tags")
    }


def test_an_event_whose_message_nobody_knows_is_not_dropped_silently() -> None:
    message = new_message()
    message.queue()
    _, queued = envelopes_of(message, Positions())

    with pytest.raises(MissingMessageFacts):
        rows_for([queued], lambda _: None)


def test_facts_can_be_loaded_back_from_the_store(store: ReportingStore) -> None:
    delivered, envelopes = every_type_of_event()
    store.insert("events", rows_for(envelopes, no_lookup))
    message_ids = {e.aggregate_id for e in envelopes}

    facts = load_facts(store, [*message_ids, uuid4()])

    assert set(facts) == message_ids
    got = facts[delivered.id]
    assert got == MessageFacts(
        message_id=delivered.id,
        submission_id=delivered.submission_id,
        account_id=delivered.account_id,
        domain_id=delivered.domain_id,
        recipient=delivered.recipient,
        sender=delivered.sender,
        subject=delivered.subject,
        tags=tuple(delivered.tags),
    )
    assert load_facts(store, []) == {}
    # A later batch is mapped from what the store knows.
    delivered_later = [e for e in envelopes if e.event_type != "Message.Accepted"]
    assert rows_for(delivered_later, facts.get) == [
        r for r in rows_for(envelopes, no_lookup) if r["event_type"] != "accepted"
    ]


# ---------------------------------------------------------------------------
# Duplicates


def test_duplicates_never_double_count(store: ReportingStore) -> None:
    delivered, envelopes = every_type_of_event()
    rows = rows_for(envelopes, no_lookup)
    assert insert_new_events(store, rows) == len(rows)
    assert insert_new_events(store, rows) == 0  # a replay
    assert insert_new_events(store, rows[3:7] + rows[:2]) == 0  # a redelivery, other batch
    assert insert_new_events(store, rows[:2] + rows[:2]) == 0  # the same event twice in one batch

    expected = len(envelopes)
    total, events = list_events(
        store, domain_id=delivered.domain_id, start_from=0, retrieve_count=100
    )
    assert total == expected
    assert len({e["EventId"] for e in events}) == len(events) == expected
    assert count_events(store, domain_id=delivered.domain_id) == expected
    assert count_events(store, domain_id=delivered.domain_id, event_type="queued") == 3
    assert store.query("SELECT count() AS n FROM events") == [{"n": expected}]
    # The rollups' views counted each event once.
    assert store.query("SELECT sum(events) AS n FROM rollup_hourly") == [{"n": expected}]
    paged = [
        e["EventId"]
        for start in range(0, expected, 4)
        for e in list_events(
            store, domain_id=delivered.domain_id, start_from=start, retrieve_count=4
        )[1]
    ]
    assert paged == [e["EventId"] for e in events]


def test_a_copy_that_slipped_past_the_guard_is_merged_away(store: ReportingStore) -> None:
    delivered, envelopes = every_type_of_event()
    rows = rows_for(envelopes, no_lookup)
    store.insert("events", rows)
    store.insert("events", rows[:3])  # two writers inserting the same events at one instant
    store.command("OPTIMIZE TABLE events FINAL")
    assert store.query("SELECT count() AS n FROM events") == [{"n": len(rows)}]
    assert count_events(store, domain_id=delivered.domain_id) == len(rows)


# ---------------------------------------------------------------------------
# Paging


def test_paging_is_stable_and_complete_over_ties(store: ReportingStore) -> None:
    positions = Positions()
    domain_id = uuid4()
    same_moments = [T0, T0 + timedelta(milliseconds=1), T0 + timedelta(seconds=1)]
    envelopes, facts = synthetic(domain_id, 57, same_moments, positions)
    rows = rows_for(envelopes, facts.get)
    # Several inserts, so the rows sit in several parts.
    for start in range(0, len(rows), 20):
        store.insert("events", rows[start : start + 20])

    expected = [
        str(r["event_id"])
        for r in sorted(
            rows, key=lambda r: (r["occurred_at"], r["position"], r["event_id"]), reverse=True
        )
    ]
    for page_size in (1, 7, 10, 57, 100):
        seen: list[str] = []
        for start in range(0, 60, page_size):
            total, events = list_events(
                store, domain_id=domain_id, start_from=start, retrieve_count=page_size
            )
            assert total == 57
            assert len(events) == max(0, min(page_size, 57 - start))
            seen += [e["EventId"] for e in events]
        assert seen == expected
    assert list_events(store, domain_id=domain_id, start_from=57, retrieve_count=10) == (57, [])
    assert list_events(store, domain_id=domain_id, start_from=0, retrieve_count=0) == (57, [])


def test_negative_paging_is_refused(store: ReportingStore) -> None:
    with pytest.raises(ValueError):
        list_events(store, domain_id=uuid4(), start_from=-1, retrieve_count=5)
    with pytest.raises(ValueError):
        list_events(store, domain_id=uuid4(), start_from=0, retrieve_count=-5)


# ---------------------------------------------------------------------------
# Filters


@pytest.fixture
def two_domains(store: ReportingStore) -> tuple[UUID, UUID, UUID, list[dict[str, Any]]]:
    """Domain A with events at T0 + 0..9 minutes; domain B with the same moments."""
    positions = Positions()
    domain_a, domain_b, submission = uuid4(), uuid4(), uuid4()
    moments = [T0 + timedelta(minutes=m) for m in range(10)]
    a, a_facts = synthetic(domain_a, 10, moments, positions)
    a_bounced, b_facts = synthetic(domain_a, 3, moments[:3], positions, "Message.Bounced")
    a_submission, s_facts = synthetic(
        domain_a, 2, moments[5:7], positions, submission_id=submission
    )
    b, other = synthetic(domain_b, 10, moments, positions, submission_id=submission)
    facts = {**a_facts, **b_facts, **s_facts, **other}
    rows = rows_for(a + a_bounced + a_submission + b, facts.get)
    store.insert("events", rows)
    return domain_a, domain_b, submission, rows


def test_domains_never_see_each_others_events(
    store: ReportingStore, two_domains: tuple[UUID, UUID, UUID, list[dict[str, Any]]]
) -> None:
    domain_a, domain_b, _, rows = two_domains

    ids_a = set(listed_ids(store, domain_a))
    ids_b = set(listed_ids(store, domain_b))

    assert ids_a == {str(r["event_id"]) for r in rows if r["domain_id"] == domain_a}
    assert ids_b == {str(r["event_id"]) for r in rows if r["domain_id"] == domain_b}
    assert len(ids_a) == 15
    assert len(ids_b) == 10
    assert listed_ids(store, uuid4()) == []
    assert count_events(store, domain_id=uuid4()) == 0


def test_time_range_is_inclusive(
    store: ReportingStore, two_domains: tuple[UUID, UUID, UUID, list[dict[str, Any]]]
) -> None:
    domain_a, _, _, rows = two_domains
    start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)

    ids = listed_ids(store, domain_a, start=start, end=end)

    expected = {
        str(r["event_id"])
        for r in rows
        if r["domain_id"] == domain_a and start <= r["occurred_at"] <= end
    }
    assert set(ids) == expected
    assert len(ids) == 4 + 1 + 1  # delivered at 2..5, bounced at 2, submission at 5
    assert len(listed_ids(store, domain_a, start=start)) == 8 + 1 + 2
    assert len(listed_ids(store, domain_a, end=start)) == 3 + 3
    just_after = start + timedelta(milliseconds=1)
    assert len(listed_ids(store, domain_a, start=just_after, end=end)) == 3 + 1
    naive = listed_ids(
        store, domain_a, start=start.replace(tzinfo=None), end=end.replace(tzinfo=None)
    )
    assert set(naive) == expected  # naive datetimes are UTC


def test_filter_by_event_type(
    store: ReportingStore, two_domains: tuple[UUID, UUID, UUID, list[dict[str, Any]]]
) -> None:
    domain_a, _, _, _ = two_domains

    total, events = list_events(
        store, domain_id=domain_a, start_from=0, retrieve_count=100, event_type="bounced"
    )

    assert total == 3
    assert {e["EventType"] for e in events} == {"bounced"}
    assert "open" in EVENT_TYPE_NAMES  # a type the API accepts before anything projects it
    assert listed_ids(store, domain_a, event_type="open") == []
    assert listed_ids(store, domain_a, event_type="bounced' OR '1'='1") == []


def test_filter_by_submission(
    store: ReportingStore, two_domains: tuple[UUID, UUID, UUID, list[dict[str, Any]]]
) -> None:
    domain_a, domain_b, submission, _ = two_domains

    total, events = list_events(
        store, domain_id=domain_a, start_from=0, retrieve_count=100, submission_id=submission
    )

    assert total == 2
    assert {e["MessageId"] for e in events} == {str(submission)}
    # The same submission id under another domain stays in that domain.
    assert len(listed_ids(store, domain_b, submission_id=submission)) == 10
    combined = listed_ids(
        store,
        domain_a,
        submission_id=submission,
        event_type="delivered",
        start=T0 + timedelta(minutes=6),
        end=T0 + timedelta(minutes=6),
    )
    assert len(combined) == 1


# ---------------------------------------------------------------------------
# Hostile strings


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_recipient_and_subject_round_trip(store: ReportingStore, hostile: str) -> None:
    message = new_message(recipient=f"{hostile}@example.com", subject=hostile)
    message.queue()
    message.start_attempt()
    message.record_bounced(550, "5.1.1", hostile)
    envelopes = envelopes_of(message, Positions())
    store.insert("events", rows_for(envelopes, no_lookup))

    total, events = list_events(store, domain_id=message.domain_id, start_from=0, retrieve_count=10)

    assert total == 4
    assert {e["Recipient"] for e in events} == {f"{hostile}@example.com"}
    assert events[0]["Details"].get("Diagnostic", "") == hostile  # absent when empty
    [stored] = store.query(
        "SELECT DISTINCT subject FROM events WHERE domain_id = {d:UUID}", {"d": message.domain_id}
    )
    assert stored == {"subject": hostile}
    assert count_events(store, domain_id=message.domain_id) == 4


def test_every_column_round_trips_through_the_projectors_encoding(store: ReportingStore) -> None:
    """The projector writes TabSeparated lines; each stored column must equal the mapped row."""
    messages = []
    for hostile in HOSTILE:
        message = Message(
            id=uuid4(),
            submission_id=uuid4(),
            account_id=uuid4(),
            domain_id=uuid4(),
            recipient=f"{hostile}@Example.COM",
            recipient_kind="to",
            sender=f"{hostile}@sender.test",
            subject=hostile,
            tags=[hostile, "plain"],
            campaign_id=str(uuid4()),
        )
        message.queue()
        message.start_attempt()
        message.record_bounced(550, "5.1.1", hostile)
        messages.append(message)
    positions = Positions()
    envelopes = [envelope for message in messages for envelope in envelopes_of(message, positions)]
    rows = rows_for(envelopes, no_lookup)
    encoded = encode_events(envelopes, no_lookup)
    assert encoded.lines == tab_separated_lines(rows)
    assert encoded.positions == [row["position"] for row in rows]

    assert insert_new_encoded(store, encoded) == len(rows)
    assert insert_new_encoded(store, encoded) == 0  # a replay

    stored = store.query(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY position")  # noqa: S608
    assert [{**row, "tags": list(row["tags"])} for row in stored] == rows


# ---------------------------------------------------------------------------
# Positions


def test_positions_save_and_load(store: ReportingStore) -> None:
    assert load_position(store, "projector") is None

    save_position(store, "projector", 5)
    save_position(store, "projector", 9)
    save_position(store, "webhooks", 2)
    save_position(store, "'; DROP TABLE projection_positions; --", 7)

    assert load_position(store, "projector") == 9
    assert load_position(store, "webhooks") == 2
    assert load_position(store, "'; DROP TABLE projection_positions; --") == 7
    save_position(store, "projector", 3)  # a deliberate rewind is honoured
    assert load_position(store, "projector") == 3
    assert load_position(store, "nobody") is None


# ---------------------------------------------------------------------------
# Rebuild and volume


def test_rebuilt_tables_are_swapped_in(store: ReportingStore) -> None:
    delivered, envelopes = every_type_of_event()
    rows = rows_for(envelopes, no_lookup)
    store.insert("events", rows[:2])  # the live table lags behind

    names = create_shadow_tables(store)
    store.insert(names["events"], rows)
    assert count_events(store, domain_id=delivered.domain_id) == 2  # still serving the old
    swap_in_shadow_tables(store)

    assert count_events(store, domain_id=delivered.domain_id) == len(rows)
    assert store.query("SELECT sum(events) AS n FROM rollup_daily") == [{"n": len(rows)}]
    tables = store.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    )
    assert [t["name"] for t in tables] == LIVE_TABLES
    # The live views now feed the new rollups.
    later = [{**row, "event_id": uuid4(), "position": row["position"] + 10_000} for row in rows]
    insert_new_events(store, later)
    assert store.query("SELECT sum(events) AS n FROM rollup_hourly") == [{"n": 2 * len(rows)}]


def test_insert_of_100k_event_rows(store: ReportingStore) -> None:
    positions = Positions()
    domain_id = uuid4()
    moments = [T0 + timedelta(milliseconds=37 * i) for i in range(1000)]
    envelopes, facts = synthetic(domain_id, 100_000, moments, positions)
    rows = rows_for(envelopes, facts.get)

    store.insert("events", rows)

    assert count_events(store, domain_id=domain_id) == 100_000
    total, events = list_events(store, domain_id=domain_id, start_from=99_990, retrieve_count=100)
    assert total == 100_000
    assert len(events) == 10


def test_what_happens_after_delivery_maps_to_the_event_api_rows() -> None:
    message = new_message()
    message.queue()
    message.start_attempt()
    message.record_delivered(250, "2.0.0", "ok")
    message.record_open("192.0.2.1", "Mozilla/5.0 (via ggpht.com GoogleImageProxy)", True, T0)
    message.record_click("https://shop.example/a", 2, True, "192.0.2.2", "Safari", False, T0)
    message.record_unsubscribe("u", "192.0.2.3", T0)
    message.record_bounce_report("hard", 550, "5.1.1", "smtp;550 5.1.1 gone", True, T0)
    message.record_complaint("abuse-1", "abuse", "Yahoo FBL", T0)
    rows = rows_for(envelopes_of(message, Positions()), no_lookup)
    by_type = {r["event_type"]: r for r in rows}
    assert list(by_type) == [
        "accepted", "queued", "sent", "delivered", "open", "click", "unsubscribe", "bounced",
        "complaint",
    ]  # fmt: skip
    assert orjson.loads(by_type["open"]["details"]) == {
        "IpAddress": "192.0.2.1",
        "UserAgent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)",
        "Machine": True,
    }
    click = orjson.loads(by_type["click"]["details"])
    assert (click["URL"], click["Position"], click["HTML"], click["Machine"]) == (
        "https://shop.example/a",
        2,
        True,
        False,
    )
    assert orjson.loads(by_type["unsubscribe"]["details"]) == {
        "UnsubscribeType": "u",
        "IpAddress": "192.0.2.3",
    }
    bounce = by_type["bounced"]
    assert (bounce["smtp_code"], bounce["enhanced_status"], bounce["diagnostic"]) == (
        550,
        "5.1.1",
        "smtp;550 5.1.1 gone",
    )
    assert orjson.loads(bounce["details"])["Definitive"] == 1
    assert orjson.loads(by_type["complaint"]["details"])["AbuseID"] == "abuse-1"
