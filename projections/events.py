"""The ``events`` read model: one row per thing that happened to one recipient's message.

It answers ``GET /api/v1/events`` and ``EmailGateway.GetEvents``: a sender
domain's events, newest first, filtered by time, type and submission. Its DDL
and the rollups fed from it are in :mod:`projections.schema`.

Duplicates. The same event reaches the projector more than once: at-least-once
redelivery from the stream, a batch retried after a crash before its position
was saved, a catch-up after a rebuild. Every row for one event has the same
sorting key ``(domain_id, occurred_at, event_id)``, because the mapping is a
pure function of the event and of its message's immutable facts. Two guards:

* :func:`insert_new_events` leaves out the events of a batch that are already
  stored (one query on the primary key per batch), so each event is written
  once. This is what keeps the rollups' counts exact: a materialized view counts
  what is inserted, and cannot tell a copy.
* the table is a ``ReplacingMergeTree`` on that key, so a copy that slips past
  the guard (two writers inserting the same new event at the same instant)
  disappears at the next merge.

Queries read without ``FINAL``: with one copy per event it is only cost (on
10M rows, a filtered page of the largest domain took ~55 ms with FINAL and
~6 ms without). Insert deduplication tokens were not enough on their own: they
catch an identical block inserted again, not one event redelivered in another
batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from uuid import UUID

import orjson

from adapters.ports import ReportingStore
from domain.envelope import EventEnvelope
from projections.query import Term, query_sql
from projections.schema import ONE_SERVER, Topology, migrate

__all__ = [
    "EVENTS_TABLE",
    "EVENT_TYPES",
    "EVENT_TYPE_NAMES",
    "EncodedEvents",
    "FactsLookup",
    "MessageFacts",
    "MissingMessageFacts",
    "count_events",
    "encode_events",
    "ensure_schema",
    "facts_from_accepted",
    "insert_new_encoded",
    "insert_new_events",
    "list_events",
    "load_facts",
    "load_position",
    "rows_for",
    "save_position",
]

EVENTS_TABLE = "events"

# Domain event type → the API's event type.
EVENT_TYPES: Mapping[str, str] = {
    "Message.Accepted": "accepted",
    "Message.Scheduled": "scheduled",  # ours: held for its SendAt time
    "Message.Queued": "queued",
    "Message.DeliveryAttempted": "sent",
    "Message.Delivered": "delivered",
    "Message.Deferred": "deferred",
    "Message.Bounced": "bounced",
    "Message.Failed": "failed",
    "Message.Held": "held",  # ours: its campaign is paused
    "Message.Postponed": "postponed",  # ours: its pool's addresses are at their warm-up caps
    # Ours: this message's reply paused, stopped or freed the mail from one of our addresses
    # to a provider (traffic shaping); Details name the route.
    "Message.RouteThrottled": "throttled",
    "Message.RouteSuspended": "suspended",
    "Message.RouteResumed": "resumed",
    # After delivery: the Event API's open, click, unsubscribe, bounce and complaint.
    "Message.Opened": "open",
    "Message.Clicked": "click",
    "Message.Unsubscribed": "unsubscribe",
    "Message.BounceReported": "bounced",
    "Message.Complained": "complaint",
}

# Every event type the API may be asked to filter by: those projected today, and those
# the tracking, suppression and complaint streams will add (a filter on them finds nothing yet).
EVENT_TYPE_NAMES: frozenset[str] = frozenset(
    {*EVENT_TYPES.values(), "open", "click", "unsubscribe", "complaint", "block", "suppressed"}
)


def ensure_schema(
    store: ReportingStore, retention_days: int | None = None, topology: Topology = ONE_SERVER
) -> None:
    """Bring the reporting schema up to date; safe to run at every start."""
    migrate(store, retention_days, topology)


def insert_new_events(
    store: ReportingStore, rows: Sequence[dict[str, Any]], table: str = "events"
) -> int:
    """Insert the rows whose events are not stored yet; returns how many were inserted."""
    moments = [_millisecond(_datetime(row["occurred_at"])) for row in rows]
    encoded = EncodedEvents(
        lines=tab_separated_lines(rows),
        positions=[int(row["position"]) for row in rows],
        domains={row["domain_id"] for row in rows},
    )
    if moments:
        encoded.first_millisecond = _unix_millisecond(min(moments))
        encoded.last_millisecond = _unix_millisecond(max(moments))
    return insert_new_encoded(store, encoded, table)


def insert_new_encoded(store: ReportingStore, encoded: EncodedEvents, table: str = "events") -> int:
    """Insert the lines whose events are not stored yet; returns how many were inserted.

    An event keeps its position in the event store's log wherever it is read
    from (the notification log, Kafka, a replay), so positions identify the
    copies. The lookup asks for the stored positions within the batch's
    domains, time span and position range, and the batch is compared in Python:
    binding the 20,000 ids of a batch cost 70 ms (positions) to 390 ms (UUIDs),
    the ranges alone 5 ms.
    """
    unique: dict[int, int] = {}
    for index, position in enumerate(encoded.positions):
        unique.setdefault(position, index)
    if not unique:
        return 0
    found = store.query(
        f"""
        SELECT DISTINCT position FROM {table}
        WHERE domain_id IN {{domains:Array(UUID)}}
          AND occurred_at >= fromUnixTimestamp64Milli({{low:Int64}}, 'UTC')
          AND occurred_at <= fromUnixTimestamp64Milli({{high:Int64}}, 'UTC')
          AND position >= {{first:UInt64}} AND position <= {{last:UInt64}}
        """,  # noqa: S608 (the table name is ours)
        {
            "domains": sorted(encoded.domains),
            "low": encoded.first_millisecond,
            "high": encoded.last_millisecond,
            "first": min(unique),
            "last": max(unique),
        },
    )
    stored = {int(row["position"]) for row in found}
    lines = encoded.lines
    fresh = [lines[index] for position, index in unique.items() if position not in stored]
    if fresh:
        store.insert_tab_separated(table, EVENT_COLUMNS, "".join(fresh).encode())
    return len(fresh)


# ---------------------------------------------------------------------------
# Encoding

EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "position", "event_type", "occurred_at",
    "account_id", "domain_id", "submission_id", "message_id", "recipient", "recipient_domain",
    "sender", "subject", "tags", "campaign_id",
    "smtp_code", "enhanced_status", "diagnostic", "attempt", "details",
)  # fmt: skip
# The columns between event_type and smtp_code repeat for every row of one message.
_MESSAGE_COLUMNS = EVENT_COLUMNS[4:14]

_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
_TSV_SPECIAL = re.compile(r"[\\\t\n\r\0]")


def _tsv_text(value: str) -> str:
    return value.translate(_TSV_ESCAPES) if value and _TSV_SPECIAL.search(value) else value


def _tsv_value(value: Any) -> str:
    if isinstance(value, str):
        return _tsv_text(value)
    if isinstance(value, UUID):
        return value.hex
    if isinstance(value, (list, tuple)):
        quoted = ("'" + _tsv_text(item).replace("'", "\\'") + "'" for item in value)
        return "[" + ",".join(quoted) + "]"
    return str(value)


def tab_separated_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each ``events`` row as a TabSeparated line (ClickHouse), in ``EVENT_COLUMNS`` order.

    Why not JSON: chdb parses TabSeparated in half the time of JSONEachRow
    (100,000 rows: ~0.38 s against ~0.78 s). UUIDs go as 32 hex digits and
    times as Unix seconds with milliseconds, both read by ClickHouse and
    cheaper to write. :func:`encode_events` writes the same lines from the envelopes.
    """
    fragments: dict[UUID, str] = {}
    lines: list[str] = []
    for row in rows:
        fragment = fragments.get(row["message_id"])
        if fragment is None:
            fragment = fragments[row["message_id"]] = _message_fragment(row)
        lines.append(_event_line(row, fragment))
    return lines


def _message_fragment(row: Mapping[str, Any]) -> str:
    return "\t".join(_tsv_value(row[column]) for column in _MESSAGE_COLUMNS)


def _event_line(row: Mapping[str, Any], message_fragment: str) -> str:
    moment = row["occurred_at"]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    columns = (row["smtp_code"], row["enhanced_status"], row["diagnostic"], row["attempt"],
               row["details"])  # fmt: skip
    return _line(
        row["event_id"], row["position"], row["event_type"], f"{moment.timestamp():.3f}",
        message_fragment, columns,
    )  # fmt: skip


def _line(
    event_id: Any, position: int, event_type: str, unix_time: str, message_fragment: str,
    columns: EventColumns,
) -> str:  # fmt: skip
    # The hot loop of the projector: the three free-text columns are usually empty.
    smtp_code, enhanced_status, diagnostic, attempt, details = columns
    if enhanced_status and _TSV_SPECIAL.search(enhanced_status):
        enhanced_status = enhanced_status.translate(_TSV_ESCAPES)
    if diagnostic and _TSV_SPECIAL.search(diagnostic):
        diagnostic = diagnostic.translate(_TSV_ESCAPES)
    if details and _TSV_SPECIAL.search(details):
        details = details.translate(_TSV_ESCAPES)
    # event_type is one of EVENT_TYPES' names, never outside text.
    return (
        f"{event_id.hex if isinstance(event_id, UUID) else UUID(str(event_id)).hex}\t"
        f"{position:d}\t{event_type}\t{unix_time}\t{message_fragment}\t{smtp_code:d}\t"
        f"{enhanced_status}\t{diagnostic}\t{attempt:d}\t{details}\n"
    )


# ---------------------------------------------------------------------------
# Mapping


@dataclass  # not frozen: a frozen dataclass takes 4x as long to make, once per message
class MessageFacts:
    """What every row of a message repeats: learnt once, from its ``Accepted`` event.
    Treated as immutable: the encoded forms below are cached."""

    message_id: UUID
    submission_id: UUID
    account_id: UUID
    domain_id: UUID
    recipient: str
    sender: str
    subject: str
    tags: tuple[str, ...] = ()
    campaign_id: str = ""
    custom_id: str = ""  # the value of the account's Custom-ID header (004)

    @cached_property
    def row_template(self) -> dict[str, Any]:
        """The columns every row of this message shares; rows are copies (read-only lists)."""
        return {
            "event_id": None,
            "position": 0,
            "event_type": "",
            "occurred_at": None,
            "account_id": self.account_id,
            "domain_id": self.domain_id,
            "submission_id": self.submission_id,
            "message_id": self.message_id,
            "recipient": self.recipient,
            "recipient_domain": self.recipient.rpartition("@")[2].lower(),
            "sender": self.sender,
            "subject": self.subject,
            "tags": list(self.tags),
            "campaign_id": self.campaign_id,
            "smtp_code": 0,
            "enhanced_status": "",
            "diagnostic": "",
            "attempt": 0,
            "details": "",
        }

    @cached_property
    def tab_separated(self) -> str:
        """The message's columns of an encoded row (see :func:`tab_separated_lines`): the
        same text as ``_message_fragment(self.row_template)``, written without the row."""
        return "\t".join(
            (
                self.account_id.hex,
                self.domain_id.hex,
                self.submission_id.hex,
                self.message_id.hex,
                _tsv_text(self.recipient),
                _tsv_text(self.recipient.rpartition("@")[2].lower()),
                _tsv_text(self.sender),
                _tsv_text(self.subject),
                _tsv_value(self.tags),
                _tsv_text(self.campaign_id),
            )
        )


FactsLookup = Callable[[UUID], MessageFacts | None]


class MissingMessageFacts(LookupError):
    """A later event of a message whose facts nobody knows: the batch must not be committed."""


def rows_for(
    envelopes: Sequence[EventEnvelope],
    lookup: FactsLookup,
    remember: Callable[[MessageFacts], None] | None = None,
) -> list[dict[str, Any]]:
    """The ``events`` rows for a batch; envelopes of other streams and types give none.

    Facts come from ``Accepted`` envelopes earlier in the batch, else from
    ``lookup``; ``remember`` is told each message's facts learnt from its
    ``Accepted``, for later batches. Raises :class:`MissingMessageFacts` rather
    than dropping an event whose message is unknown. ``data`` values may be
    objects (from the event store) or their JSON strings (from Kafka).
    :func:`encode_events` maps the same way straight to the lines ClickHouse reads.
    """
    rows: list[dict[str, Any]] = []
    for envelope, event_type, facts in _mapped(envelopes, lookup, remember):
        row = facts.row_template.copy()
        row["event_id"] = _uuid(envelope.event_id)
        row["position"] = int(envelope.position)
        row["event_type"] = event_type
        row["occurred_at"] = _millisecond(_datetime(envelope.occurred_at))
        (
            row["smtp_code"],
            row["enhanced_status"],
            row["diagnostic"],
            row["attempt"],
            row["details"],
        ) = _event_columns(event_type, envelope.data, facts.custom_id)
        rows.append(row)
    return rows


@dataclass
class EncodedEvents:
    """A batch of ``events`` rows as TabSeparated lines, with what the write-once check asks."""

    lines: list[str]
    positions: list[int]
    domains: set[UUID]
    first_millisecond: int = 0  # the earliest and latest occurred_at, Unix milliseconds
    last_millisecond: int = 0

    def __len__(self) -> int:
        return len(self.lines)

    def extend(self, other: EncodedEvents) -> None:
        """Add another batch's lines: one insert of many rows costs far less than several."""
        if not other.lines:
            return
        if not self.lines:
            self.first_millisecond, self.last_millisecond = (
                other.first_millisecond,
                other.last_millisecond,
            )
        else:
            self.first_millisecond = min(self.first_millisecond, other.first_millisecond)
            self.last_millisecond = max(self.last_millisecond, other.last_millisecond)
        self.lines += other.lines
        self.positions += other.positions
        self.domains |= other.domains


def encode_events(
    envelopes: Sequence[EventEnvelope],
    lookup: FactsLookup,
    remember: Callable[[MessageFacts], None] | None = None,
) -> EncodedEvents:
    """The lines of :func:`rows_for`'s rows (as :func:`tab_separated_lines` writes them),
    without making the rows: the projector's hot loop, where building a dictionary per
    event cost more than the rest of the mapping."""
    encoded = EncodedEvents([], [], set())
    lines, positions, domains = encoded.lines, encoded.positions, encoded.domains
    first = last = -1
    for envelope, event_type, facts in _mapped(envelopes, lookup, remember):
        moment = envelope.occurred_at
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            moment = _datetime(moment)
        # Truncated to the millisecond, as the column keeps it.
        seconds = int(moment.timestamp())
        millisecond = seconds * 1000 + moment.microsecond // 1000
        if first < 0 or millisecond < first:
            first = millisecond
        if millisecond > last:
            last = millisecond
        position = int(envelope.position)
        lines.append(
            _line(
                envelope.event_id, position, event_type, f"{seconds:d}.{millisecond % 1000:03d}",
                facts.tab_separated, _event_columns(event_type, envelope.data, facts.custom_id),
            )
        )  # fmt: skip
        positions.append(position)
        domains.add(facts.domain_id)
    encoded.first_millisecond, encoded.last_millisecond = max(first, 0), max(last, 0)
    return encoded


def _mapped(
    envelopes: Sequence[EventEnvelope],
    lookup: FactsLookup,
    remember: Callable[[MessageFacts], None] | None,
) -> Iterator[tuple[EventEnvelope, str, MessageFacts]]:
    """Each projected envelope with its API event type and its message's facts."""
    known: dict[Any, MessageFacts] = {}
    for envelope in envelopes:
        event_type = EVENT_TYPES.get(envelope.event_type)
        if event_type is None:
            continue
        aggregate_id = envelope.aggregate_id
        if event_type == "accepted":
            facts = known[aggregate_id] = facts_from_accepted(_uuid(aggregate_id), envelope.data)
            if remember is not None:
                remember(facts)
        else:
            found = known.get(aggregate_id)
            if found is None:
                found = lookup(_uuid(aggregate_id))
                if found is None:
                    raise MissingMessageFacts(
                        f"no facts for message {aggregate_id} ({envelope.event_type} "
                        f"at position {envelope.position})"
                    )
                known[aggregate_id] = found
            facts = found
        yield envelope, event_type, facts


# smtp_code, enhanced_status, diagnostic, attempt, details (JSON, or empty)
EventColumns = tuple[int, str, str, int, str]


def _event_columns(event_type: str, data: Mapping[str, Any], custom_id: str) -> EventColumns:
    """The columns that differ from one event of a message to the next."""
    smtp_code, enhanced_status, diagnostic, attempt = 0, "", "", 0
    details: dict[str, Any] = {}
    if event_type in ("accepted", "queued"):
        pass
    elif event_type == "scheduled":
        send_at = data.get("send_at")
        if send_at is not None:
            details["SendAt"] = _iso_ms(_datetime(send_at))
    elif event_type == "sent":
        attempt = int(data.get("attempt", 0))
    elif event_type == "postponed":
        details["Until"] = _iso_ms(_datetime(data["until"]))
        diagnostic = str(data.get("reason") or "")
    elif event_type in ("throttled", "suspended", "resumed"):
        details["Route"] = str(data.get("route") or "")
        if data.get("source_ip"):
            details["SourceIP"] = str(data["source_ip"])
        if event_type != "resumed":
            details["Seconds"] = float(data.get("seconds") or 0)
        diagnostic = str(data.get("reason") or "")
    elif event_type in ("delivered", "deferred", "bounced", "failed"):
        smtp_code = int(data.get("code") or 0)
        enhanced_status = str(data.get("enhanced_status") or "")
        diagnostic = str(data.get("reply_text") or "")
        # Which server answered, and over what (direct delivery says; others do not).
        if data.get("remote_mta"):
            details["RemoteMTA"] = str(data["remote_mta"])
        if data.get("tls"):
            details["TLS"] = str(data["tls"])
        if data.get("source_ip"):
            details["SourceIP"] = str(data["source_ip"])
        if event_type == "deferred" and data.get("retry_at") is not None:
            details["RetryAt"] = _iso_ms(_datetime(data["retry_at"]))
        if event_type == "failed" and data.get("reason"):
            details["Reason"] = str(data["reason"])
        if event_type == "bounced":
            # Synchronous (Bounced) and asynchronous (BounceReported, a DSN) alike.
            details["BounceType"] = str(data.get("kind") or "hard")
            details["Definitive"] = 1 if str(data.get("kind") or "hard") != "soft" else 0
            if "diagnostic" in data:
                diagnostic = str(data.get("diagnostic") or "")
                details["Definitive"] = 1 if _truthy(data.get("definitive")) else 0
                details["Source"] = "dsn"
    elif event_type in ("open", "click"):
        details["IpAddress"] = str(data.get("ip") or "")
        details["UserAgent"] = str(data.get("user_agent") or "")
        details["Machine"] = _truthy(data.get("machine"))
        if event_type == "click":
            details["URL"] = str(data.get("url") or "")
            details["Position"] = int(data.get("position") or 1)
            details["HTML"] = _truthy(data.get("html"))
    elif event_type == "unsubscribe":
        details["UnsubscribeType"] = str(data.get("kind") or "m")
        details["IpAddress"] = str(data.get("ip") or "")
    elif event_type == "complaint":
        details["AbuseID"] = str(data.get("abuse_id") or "")
        details["FeedbackType"] = str(data.get("feedback_type") or "")
        details["UserAgent"] = str(data.get("user_agent") or "")
    if custom_id:
        details["CustomID"] = custom_id
    # Extra fields are stored under their API names, so a query only merges them in.
    encoded = orjson.dumps(details, option=orjson.OPT_SORT_KEYS).decode() if details else ""
    return smtp_code, enhanced_status, diagnostic, attempt, encoded


def _truthy(value: Any) -> bool:
    """Booleans arrive as themselves from the event store and as text through Kafka."""
    return value is True or str(value).lower() in ("true", "1")


def facts_from_accepted(message_id: UUID, data: Mapping[str, Any]) -> MessageFacts:
    return MessageFacts(
        message_id=message_id,
        submission_id=_uuid(data["submission_id"]),
        account_id=_uuid(data["account_id"]),
        domain_id=_uuid(data["domain_id"]),
        recipient=str(data["recipient"]),
        sender=str(data.get("sender") or ""),
        subject=str(data.get("subject") or ""),
        tags=tuple(map(str, data.get("tags") or ())),
        campaign_id=str(data.get("campaign_id") or ""),
        custom_id=str(data.get("custom_id") or ""),
    )


def _millisecond(moment: datetime) -> datetime:
    """The column keeps milliseconds; truncating here keeps the row equal to what is stored."""
    sub_millisecond = moment.microsecond % 1000
    if not sub_millisecond:
        return moment
    return moment.replace(microsecond=moment.microsecond - sub_millisecond)


def _unix_millisecond(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _datetime(value: Any) -> datetime:
    """Aware UTC from a datetime or an ISO 8601 string; naive values are taken as UTC."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if parsed.tzinfo is UTC:
        return parsed
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _iso_ms(value: datetime) -> str:
    """``2021-04-01T12:00:00.123Z``: the API's timestamp form."""
    value = _datetime(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def load_facts(store: ReportingStore, message_ids: Iterable[UUID]) -> dict[UUID, MessageFacts]:
    """Facts of already projected messages, in one query: a lookup for a projector's batch."""
    ids = sorted({_uuid(message_id) for message_id in message_ids})
    if not ids:
        return {}
    rows = store.query(
        """
        SELECT message_id, submission_id, account_id, domain_id, recipient, sender, subject,
               tags, campaign_id, details
        FROM events
        WHERE event_type = 'accepted' AND message_id IN {ids:Array(UUID)}
        LIMIT 1 BY message_id
        """,
        {"ids": ids},
    )
    return {
        row["message_id"]: MessageFacts(
            message_id=row["message_id"],
            submission_id=row["submission_id"],
            account_id=row["account_id"],
            domain_id=row["domain_id"],
            recipient=row["recipient"],
            sender=row["sender"],
            subject=row["subject"],
            tags=tuple(row["tags"]),
            campaign_id=row["campaign_id"],
            custom_id=str(orjson.loads(row["details"]).get("CustomID", ""))
            if row["details"]
            else "",
        )
        for row in rows
    }


# ---------------------------------------------------------------------------
# Queries


def _where(
    domain_id: UUID,
    start: datetime | None,
    end: datetime | None,
    event_type: str | None,
    submission_id: UUID | None,
    terms: Sequence[Term] = (),
) -> tuple[str, dict[str, Any]]:
    """The filter, as fixed SQL fragments and bound parameters."""
    clauses = ["domain_id = {domain_id:UUID}"]
    parameters: dict[str, Any] = {"domain_id": domain_id}
    if terms:
        extra, bound = query_sql(list(terms))
        clauses += extra
        parameters.update(bound)
    if start is not None:
        clauses.append("occurred_at >= {start:DateTime64(3, 'UTC')}")
        parameters["start"] = start
    if end is not None:
        clauses.append("occurred_at <= {end:DateTime64(3, 'UTC')}")
        parameters["end"] = end
    if event_type is not None:
        clauses.append("event_type = {event_type:String}")
        parameters["event_type"] = event_type
    if submission_id is not None:
        clauses.append("submission_id = {submission_id:UUID}")
        parameters["submission_id"] = submission_id
    return " AND ".join(clauses), parameters


def count_events(
    store: ReportingStore,
    *,
    domain_id: UUID,
    start: datetime | None = None,
    end: datetime | None = None,
    event_type: str | None = None,
    submission_id: UUID | None = None,
    terms: Sequence[Term] = (),
) -> int:
    """How many distinct events match; ``start`` and ``end`` are inclusive."""
    where, parameters = _where(domain_id, start, end, event_type, submission_id, terms)
    rows = store.query(f"SELECT count() AS total FROM events WHERE {where}", parameters)  # noqa: S608 (fixed fragments; values are bound)
    return int(rows[0]["total"]) if rows else 0


def list_event_rows(
    store: ReportingStore,
    *,
    domain_id: UUID,
    start_from: int,
    retrieve_count: int,
    start: datetime | None = None,
    end: datetime | None = None,
    event_type: str | None = None,
    submission_id: UUID | None = None,
    terms: Sequence[Term] = (),
) -> tuple[int, list[dict[str, Any]]]:
    """``(TotalRecords, Events)`` for ``GET /api/v1/events``, newest first.

    Order is ``occurred_at DESC, position DESC, event_id DESC``: the event
    store's position breaks ties within a millisecond in the order things
    happened (``queued`` after ``accepted``), and the event id makes the order
    total, so ``start_from``/``retrieve_count`` pages neither repeat nor skip.
    """
    if start_from < 0 or retrieve_count < 0:
        raise ValueError("start_from and retrieve_count must not be negative")
    where, parameters = _where(domain_id, start, end, event_type, submission_id, terms)
    total = count_events(
        store,
        domain_id=domain_id,
        start=start,
        end=end,
        event_type=event_type,
        submission_id=submission_id,
        terms=terms,
    )
    if retrieve_count == 0 or start_from >= total:
        return total, []
    rows = store.query(
        f"""
        SELECT event_id, event_type, occurred_at, recipient, submission_id, campaign_id,
               smtp_code, enhanced_status, diagnostic, attempt, details, subject, sender
        FROM events
        WHERE {where}
        ORDER BY occurred_at DESC, position DESC, event_id DESC
        LIMIT {{limit:UInt64}} OFFSET {{offset:UInt64}}
        """,  # noqa: S608 (fixed fragments; values are bound)
        {**parameters, "limit": retrieve_count, "offset": start_from},
    )
    return total, rows


def rows_since(
    store: ReportingStore,
    domain_id: UUID,
    event_types: Sequence[str],
    since: datetime,
    limit: int,
) -> list[dict[str, Any]]:
    """A domain's rows of these types from ``since`` on, oldest first: a webhook's backfill."""
    rows = store.query(
        f"""
        SELECT {", ".join(EVENT_COLUMNS)}
        FROM events
        WHERE domain_id = {{domain_id:UUID}} AND occurred_at >= {{since:DateTime64(3, 'UTC')}}
          AND event_type IN {{event_types:Array(String)}}
        ORDER BY occurred_at, position
        LIMIT {{limit:UInt64}}
        """,  # noqa: S608 (fixed column names; values are bound)
        {"domain_id": domain_id, "since": since, "event_types": list(event_types), "limit": limit},
    )
    for row in rows:
        row["tags"] = list(row["tags"])
    return rows


def list_events(
    store: ReportingStore,
    *,
    domain_id: UUID,
    start_from: int,
    retrieve_count: int,
    start: datetime | None = None,
    end: datetime | None = None,
    event_type: str | None = None,
    submission_id: UUID | None = None,
    terms: Sequence[Term] = (),
) -> tuple[int, list[dict[str, Any]]]:
    """``(TotalRecords, Events)`` in the shape of ``GET /api/v1/events``."""
    total, rows = list_event_rows(
        store, domain_id=domain_id, start_from=start_from, retrieve_count=retrieve_count,
        start=start, end=end, event_type=event_type, submission_id=submission_id, terms=terms,
    )  # fmt: skip
    return total, [_api_event(row) for row in rows]


def _api_event(row: Mapping[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if row["smtp_code"]:
        details["SmtpCode"] = int(row["smtp_code"])
    if row["enhanced_status"]:
        details["EnhancedStatus"] = row["enhanced_status"]
    if row["diagnostic"]:
        details["Diagnostic"] = row["diagnostic"]
    if row["attempt"]:
        details["Attempt"] = int(row["attempt"])
    if row["details"]:
        details.update(orjson.loads(row["details"]))
    return {
        "EventId": str(row["event_id"]),
        "EventType": row["event_type"],
        "EventTimestamp": _iso_ms(row["occurred_at"]),
        "Recipient": row["recipient"],
        "MessageId": str(row["submission_id"]),
        "CampaignId": row["campaign_id"] or None,
        "Details": details,
    }


# ---------------------------------------------------------------------------
# Positions


def save_position(store: ReportingStore, consumer: str, position: int) -> None:
    """Record how far ``consumer`` has projected; call only once its rows are inserted."""
    store.insert(
        "projection_positions",
        [{"consumer": consumer, "position": position, "updated_at": datetime.now(UTC)}],
    )


def load_position(store: ReportingStore, consumer: str) -> int | None:
    """The last saved position of ``consumer``, or None if it never saved one."""
    rows = store.query(
        "SELECT position FROM projection_positions FINAL WHERE consumer = {consumer:String}",
        {"consumer": consumer},
    )
    return int(rows[0]["position"]) if rows else None


def unfinished_message_ids(store: ReportingStore, domain_id: UUID) -> list[UUID]:
    """Messages of a domain with no final event yet (delivered, bounced or failed), as far as
    the reporting tables know: what ``ClearDomainQueue`` has to stop."""
    rows = store.query(
        """
        SELECT message_id
        FROM events FINAL
        WHERE domain_id = {domain:UUID}
        GROUP BY message_id
        HAVING countIf(event_type IN ('delivered', 'bounced', 'failed')) = 0
        """,
        {"domain": domain_id},
    )
    return [_uuid(row["message_id"]) for row in rows]


def finished_message_count(store: ReportingStore, submission_id: UUID) -> int:
    """How many messages of a submission (a campaign instance) have a final event. Asked
    often while a campaign sends, so it counts distinct messages rather than paying for
    FINAL: a row not yet merged away is counted once all the same."""
    rows = store.query(
        """
        SELECT uniqExact(message_id) AS n
        FROM events
        WHERE submission_id = {s:UUID} AND event_type IN ('delivered', 'bounced', 'failed')
        """,
        {"s": submission_id},
    )
    return int(rows[0]["n"]) if rows else 0


def held_message_ids(store: ReportingStore, submission_id: UUID) -> list[UUID]:
    """Messages of a submission whose latest event is ``held`` (their campaign was paused)."""
    rows = store.query(
        """
        SELECT message_id
        FROM events FINAL
        WHERE submission_id = {s:UUID}
          AND message_id IN (
              SELECT message_id FROM events FINAL
              WHERE submission_id = {s:UUID} AND event_type = 'held'
          )
        GROUP BY message_id
        HAVING argMax(event_type, position) = 'held'
        """,
        {"s": submission_id},
    )
    return [_uuid(row["message_id"]) for row in rows]
