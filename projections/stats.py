"""Domain statistics and aggregated events (``EmailGateway.DomainStats`` and ``AggrEvents``),
read from the ``events`` table. Counts are of distinct events (a row replayed or delivered
twice counts once) and, for "unique" figures, of distinct messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from adapters.ports import ReportingStore

# AggregatedField → the SQL expression that names a bucket.
AGGREGATIONS: dict[str, str] = {
    "eventtype": "event_type",
    "recipientdomain": "recipient_domain",
    "tag": "arrayJoin(if(empty(tags), [''], tags))",
    "campaign": "campaign_id",
    "hour": "formatDateTime(toStartOfHour(occurred_at), '%Y-%m-%dT%H:00:00Z')",
    "day": "formatDateTime(toStartOfDay(occurred_at), '%Y-%m-%d')",
    "url": "JSONExtractString(details, 'URL')",
    "bouncetype": "JSONExtractString(details, 'BounceType')",
}


def aggregated_events(
    store: ReportingStore,
    domain_id: UUID,
    field: str,
    size: int,
    start: datetime,
    end: datetime,
) -> list[dict[str, Any]]:
    """Buckets of event counts by ``field`` (a key of ``AGGREGATIONS``), largest first."""
    expression = AGGREGATIONS[field]
    rows = store.query(
        f"""
        SELECT {expression} AS key, uniqExact(event_id) AS count
        FROM events
        WHERE domain_id = {{domain:UUID}}
          AND occurred_at >= {{start:DateTime64(3, 'UTC')}}
          AND occurred_at <= {{end:DateTime64(3, 'UTC')}}
        GROUP BY key
        ORDER BY count DESC, key
        LIMIT {{size:UInt32}}
        """,  # noqa: S608 (the expression is one of ours; values are bound)
        {"domain": domain_id, "start": start, "end": end, "size": size},
    )
    return [{"Key": str(row["key"]), "Count": int(row["count"])} for row in rows]


_FIGURES = """
    uniqExactIf(message_id, event_type = 'sent') AS sent,
    uniqExactIf(message_id, event_type = 'delivered') AS delivered,
    uniqExactIf(message_id, event_type = 'deferred') AS deferred,
    uniqExactIf(message_id, event_type = 'bounced'
                AND JSONExtractString(details, 'BounceType') IN ('hard', '')) AS hard_bounces,
    uniqExactIf(message_id, event_type = 'bounced'
                AND JSONExtractString(details, 'BounceType') = 'soft') AS soft_bounces,
    uniqExactIf(message_id, event_type = 'bounced'
                AND JSONExtractString(details, 'BounceType') = 'block') AS blocks,
    uniqExactIf(event_id, event_type = 'open') AS opens,
    uniqExactIf(message_id, event_type = 'open') AS unique_opens,
    uniqExactIf(event_id, event_type = 'click') AS clicks,
    uniqExactIf(message_id, event_type = 'click') AS unique_clicks,
    uniqExactIf(message_id, event_type = 'unsubscribe') AS unsubscribes,
    uniqExactIf(message_id, event_type = 'complaint') AS complaints
"""

_NAMES = {
    "sent": "Sent", "delivered": "Delivered", "deferred": "Deferred",
    "hard_bounces": "HardBounces", "soft_bounces": "SoftBounces", "blocks": "Blocks",
    "opens": "Opens", "unique_opens": "UniqueOpens", "clicks": "Clicks",
    "unique_clicks": "UniqueClicks", "unsubscribes": "Unsubscribes", "complaints": "Complaints",
}  # fmt: skip


def _with_rates(row: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {name: int(row[column]) for column, name in _NAMES.items()}
    sent, delivered = figures["Sent"], figures["Delivered"]

    def rate(part: int, whole: int) -> float:
        return round(100 * part / whole, 2) if whole else 0.0

    figures.update(
        {
            "DeliveryRate": rate(delivered, sent),
            "HardBounceRate": rate(figures["HardBounces"], sent),
            "SoftBounceRate": rate(figures["SoftBounces"], sent),
            "OpenRate": rate(figures["UniqueOpens"], delivered),
            "ClickRate": rate(figures["UniqueClicks"], delivered),
            "UnsubscribeRate": rate(figures["Unsubscribes"], delivered),
            "ComplaintRate": rate(figures["Complaints"], delivered),
        }
    )
    return figures


def _period(
    store: ReportingStore, domain_id: UUID, start: datetime, end: datetime
) -> dict[str, Any]:
    rows = store.query(
        f"""
        SELECT {_FIGURES}
        FROM events
        WHERE domain_id = {{domain:UUID}}
          AND occurred_at >= {{start:DateTime64(3, 'UTC')}}
          AND occurred_at <= {{end:DateTime64(3, 'UTC')}}
        """,  # noqa: S608 (fixed text; values are bound)
        {"domain": domain_id, "start": start, "end": end},
    )
    return _with_rates(rows[0])


def domain_stats(
    store: ReportingStore, domain_id: UUID, start: datetime, end: datetime
) -> dict[str, Any]:
    """``Stats``, ``ComparisonStats`` (the preceding period of equal length, with the
    change of each figure) and ``TagStats``."""
    stats = _period(store, domain_id, start, end)
    length = end - start
    before = _period(store, domain_id, start - length, start)
    comparison = {
        **before,
        "PeriodStart": (start - length).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "PeriodEnd": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Deltas": {key: round(stats[key] - before[key], 2) for key in stats},
    }
    tag_rows = store.query(
        f"""
        SELECT arrayJoin(tags) AS tag, {_FIGURES}
        FROM events
        WHERE domain_id = {{domain:UUID}} AND notEmpty(tags)
          AND occurred_at >= {{start:DateTime64(3, 'UTC')}}
          AND occurred_at <= {{end:DateTime64(3, 'UTC')}}
        GROUP BY tag
        ORDER BY tag
        LIMIT 1000
        """,  # noqa: S608 (fixed text; values are bound)
        {"domain": domain_id, "start": start, "end": end},
    )
    return {
        "Stats": stats,
        "ComparisonStats": comparison,
        "TagStats": {str(row["tag"]): _with_rates(row) for row in tag_rows},
    }
