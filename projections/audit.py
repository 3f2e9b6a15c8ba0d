"""The audit trail: who changed what, read back from the events' own metadata.

Every event a request causes carries who made it and which request it was
(``adapters.event_metadata``). The audit reader copies those of the account's own
objects (not its messages: they have their event history) into ``audit_log``, one row
per event; ``Account.AuditLog`` shows one entry per request and object, newest first.
Rows are keyed by their position in the log, so reading an event twice stores it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from adapters.event_metadata import METADATA_KEY, parse_metadata
from adapters.ports import ReportingStore
from domain.envelope import EventEnvelope

TABLE = "audit_log"

# The streams of the objects an account configures. Messages, submissions, batches and
# inbound copies are its traffic, shown by the event history, and idempotency records
# and username claims are bookkeeping of commands audited by their other events.
AUDITED_STREAMS = (
    "account", "user", "accountkey", "senderdomain", "senderapikey", "smtpcredential",
    "webhook", "sendingaddresses", "addressclaim", "subscriberlist", "savedsegment",
    "campaignemail", "campaign", "campaigninstance", "library", "template",
    "templateindex", "inboundroute", "routelist", "suppressionlist",
)  # fmt: skip
UNAUDITED_STREAMS = (
    "message", "submission", "batch", "inboundmessage", "idempotentrequest", "usernameclaim",
)  # fmt: skip

_COLUMNS = """
    account_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    position UInt64,
    request_id String,
    request_key String,
    command LowCardinality(String),
    via LowCardinality(String),
    role LowCardinality(String),
    user_id String,
    actor String,
    key_id String,
    address String,
    agency_id String,
    object_type LowCardinality(String),
    object_id UUID,
    event_type LowCardinality(String)
"""
_LAYOUT = "PARTITION BY toYYYYMM(occurred_at)\nORDER BY (account_id, position)"
SHARDING_KEY = "cityHash64(account_id)"


def audit_ddl(topology: Any) -> list[str]:
    """``topology``: a ``projections.schema.Topology``."""
    statements: list[str] = topology.table(
        TABLE, _COLUMNS, "ReplacingMergeTree", _LAYOUT, SHARDING_KEY
    )
    return statements


def audit_rows(envelopes: Sequence[EventEnvelope]) -> list[dict[str, Any]]:
    """The rows of the events a caller caused (those with no caller are the engine's own)."""
    rows = []
    for envelope in envelopes:
        metadata = parse_metadata(envelope.data.get(METADATA_KEY))
        if not metadata.get("account_id"):
            continue
        object_type, _, event_type = envelope.event_type.partition(".")
        rows.append(
            {
                "account_id": UUID(str(metadata["account_id"])),
                "occurred_at": envelope.occurred_at,
                "position": int(envelope.position),
                "request_id": str(metadata.get("request_id", "")),
                "request_key": str(metadata.get("request_key", "")),
                "command": str(metadata.get("command", "")),
                "via": str(metadata.get("via", "")),
                "role": str(metadata.get("role", "")),
                "user_id": str(metadata.get("user_id", "")),
                "actor": str(metadata.get("actor", "")),
                "key_id": str(metadata.get("key_id", "")),
                "address": str(metadata.get("address", "")),
                "agency_id": str(metadata.get("agency_id", "")),
                "object_type": object_type,
                "object_id": UUID(str(envelope.aggregate_id)),
                "event_type": event_type,
            }
        )
    return rows


def insert_audit_rows(store: ReportingStore, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        store.insert(TABLE, rows)


def read_audit_log(
    store: ReportingStore,
    account_id: UUID,
    *,
    start: datetime,
    end: datetime,
    user_id: str = "",
    command: str = "",
    object_id: UUID | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """One entry per request and object, newest first, and how many there are in all."""
    conditions = [
        "account_id = {account:UUID}",
        "occurred_at >= {start:DateTime64(3, 'UTC')}",
        "occurred_at <= {end:DateTime64(3, 'UTC')}",
    ]
    parameters: dict[str, Any] = {"account": account_id, "start": start, "end": end}
    if user_id:
        conditions.append("(user_id = {user:String} OR key_id = {user:String})")
        parameters["user"] = user_id
    if command:
        conditions.append("lower(command) = lower({command:String})")
        parameters["command"] = command
    if object_id is not None:
        conditions.append("object_id = {object:UUID}")
        parameters["object"] = object_id
    where = " AND ".join(conditions)
    # One entry per request (by the key we made for it, not the id a client may repeat)
    # and object; what has no key (none here: every API request has one), per event.
    grouped = f"""
        SELECT if(request_key = '', toString(position), request_key) AS request,
               any(request_id) AS the_request_id, object_id AS object,
               min(occurred_at) AS at, min(position) AS first_position,
               any(command) AS the_command, any(via) AS the_via, any(role) AS the_role,
               any(user_id) AS the_user, any(actor) AS the_actor, any(key_id) AS the_key,
               any(address) AS the_address, any(agency_id) AS the_agency,
               any(object_type) AS the_type, groupArray(event_type) AS events
        FROM {TABLE} FINAL
        WHERE {where}
        GROUP BY request, object
    """  # noqa: S608 (the conditions are fixed text; values are bound)
    total = store.query(f"SELECT count() AS n FROM ({grouped})", parameters)  # noqa: S608
    rows = store.query(
        f"{grouped} ORDER BY at DESC, first_position DESC "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt32}",
        {**parameters, "limit": limit, "offset": offset},
    )
    return [_entry(row) for row in rows], int(total[0]["n"]) if total else 0


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    at = row["at"]
    return {
        "At": at.isoformat() if isinstance(at, datetime) else str(at),
        "RequestID": str(row["the_request_id"]),
        "Command": row["the_command"],
        "Via": row["the_via"],
        "Role": row["the_role"],
        "UserID": row["the_user"] or None,
        "Actor": row["the_actor"],
        "KeyID": row["the_key"] or None,
        "Address": row["the_address"],
        "AgencyAccountID": row["the_agency"] or None,
        "ObjectType": row["the_type"],
        "ObjectID": str(row["object"]),
        "Events": list(row["events"]),
    }
