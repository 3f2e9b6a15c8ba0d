"""Domain statistics, aggregated events and campaign statistics (``EmailGateway.DomainStats``,
``EmailGateway.AggrEvents``, ``Campaign.Get``), read from the rollups.

A date range is cut into slices (:func:`plan`): whole UTC days come from the daily
rollup, whole hours at its edges from the hourly rollup, and minutes at the very
edges (a range that starts at 09:30, or an account in a half-hour time zone) from
the raw ``events`` rows, grouped with the same expressions the rollups' views use.
So a figure is the same whichever table it came from, and a stats query reads a
few hundred rollup rows however many events the range holds.

Counts are of events (each stored once, see :mod:`projections.events`); "unique"
figures are distinct messages from ``uniq`` states. ``Sent`` counts first
attempts, so a message retried three times is sent once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from adapters.ports import ReportingStore
from projections.schema import BOUNCE_TYPE_SQL, IS_RETRY_SQL, TAG_SQL

__all__ = [
    "AGGREGATIONS",
    "CAMPAIGN_KINDS",
    "SERIES_KINDS",
    "Slice",
    "account_overview",
    "aggregated_events",
    "campaign_figures",
    "campaign_series",
    "domain_stats",
    "plan",
]

# ClickHouse's DateTime64 starts here.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


# ---------------------------------------------------------------------------
# Slices


@dataclass(frozen=True)
class Slice:
    source: str  # "events", "hourly" or "daily"
    low: datetime  # inclusive
    high: datetime  # exclusive


def _floor(moment: datetime, unit: timedelta) -> datetime:
    moment = moment.astimezone(UTC)
    if unit == DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil(moment: datetime, unit: timedelta) -> datetime:
    floor = _floor(moment, unit)
    return floor if floor == moment else floor + unit


def plan(start: datetime, stop: datetime, *, daily: bool = True) -> list[Slice]:
    """The slices covering ``[start, stop)``: raw rows, then hours, days, hours, raw rows."""
    if stop <= start:
        return []
    first_hour, last_hour = _ceil(start, HOUR), _floor(stop, HOUR)
    if first_hour >= last_hour:
        return [Slice("events", start, stop)]
    slices: list[Slice] = []
    if start < first_hour:
        slices.append(Slice("events", start, first_hour))
    first_day, last_day = _ceil(first_hour, DAY), _floor(last_hour, DAY)
    if daily and first_day < last_day:
        if first_hour < first_day:
            slices.append(Slice("hourly", first_hour, first_day))
        slices.append(Slice("daily", first_day, last_day))
        if last_day < last_hour:
            slices.append(Slice("hourly", last_day, last_hour))
    else:
        slices.append(Slice("hourly", first_hour, last_hour))
    if last_hour < stop:
        slices.append(Slice("events", last_hour, stop))
    return slices


@dataclass(frozen=True)
class _Dimension:
    """One GROUP BY key: its expression over raw rows and over a rollup (``$t`` = its time)."""

    raw: str
    rollup: str


_DIMENSIONS: dict[str, _Dimension] = {
    "event_type": _Dimension("event_type", "event_type"),
    "bounce_type": _Dimension(BOUNCE_TYPE_SQL, "bounce_type"),
    "is_retry": _Dimension(IS_RETRY_SQL, "is_retry"),
    "campaign_id": _Dimension("campaign_id", "campaign_id"),
    "tag": _Dimension(TAG_SQL, "tag"),
    "hour": _Dimension(
        "formatDateTime(toStartOfHour(occurred_at), '%Y-%m-%dT%H:00:00Z')",
        "formatDateTime(toStartOfHour($t), '%Y-%m-%dT%H:00:00Z')",
    ),
    "day": _Dimension(
        "toString(toDate(occurred_at, {tz:String}))", "toString(toDate($t, {tz:String}))"
    ),
}  # fmt: skip

# Only these event types have unique figures; merging the states of the others is wasted work.
_UNIQUE_KINDS = "event_type IN ('open', 'click')"

_TABLES = {
    (False, "hourly"): ("rollup_hourly", "hour"),
    (False, "daily"): ("rollup_daily", "day"),
    (True, "hourly"): ("tag_rollup_hourly", "hour"),
    (True, "daily"): ("tag_rollup_daily", "day"),
}


def _sliced_query(
    dimensions: Sequence[str],
    periods: Sequence[tuple[datetime, datetime]],
    *,
    tagged: bool,
    daily: bool,
    condition: str = "",
    messages: bool = True,
    several_domains: bool = False,
) -> tuple[str, dict[str, Any]]:
    """One query summing ``events`` (and merging ``messages``) by ``period`` and
    ``dimensions`` over the slices of each period; its text is ours, its values bound.
    The caller binds ``domain`` (or ``domains``, an array, with ``several_domains``) and
    ``tz`` where a dimension reads it."""
    scope = "domain_id IN {domains:Array(UUID)}" if several_domains else "domain_id = {domain:UUID}"
    parameters: dict[str, Any] = {}
    parts: list[str] = []
    # Inner aliases are prefixed: an alias named like a column would shadow it in WHERE.
    names = ", ".join(f"d_{d}" for d in dimensions)
    outer = ", ".join(f"d_{d} AS {d}" for d in dimensions)
    message_state = ", uniqState(message_id) AS messages" if messages else ""
    message_column = ", messages" if messages else ""
    for period, (start, stop) in enumerate(periods):
        for n, piece in enumerate(plan(start, stop, daily=daily)):
            low, high = f"low_{period}_{n}", f"high_{period}_{n}"
            parameters[low], parameters[high] = piece.low, piece.high
            where = f"{scope}{f' AND ({condition})' if condition else ''}"
            if piece.source == "events":
                keys = ", ".join(f"{_DIMENSIONS[d].raw} AS d_{d}" for d in dimensions)
                parts.append(
                    f"SELECT {period} AS period, {keys}, count() AS events{message_state} "  # noqa: S608
                    f"FROM events WHERE {where} "
                    f"AND occurred_at >= {{{low}:DateTime64(3, 'UTC')}} "
                    f"AND occurred_at < {{{high}:DateTime64(3, 'UTC')}} "
                    f"GROUP BY period, {names}"
                )
                continue
            table, time_column = _TABLES[(tagged, piece.source)]
            keys = ", ".join(
                f"{_DIMENSIONS[d].rollup.replace('$t', time_column)} AS d_{d}" for d in dimensions
            )
            if piece.source == "daily":
                parameters[low], parameters[high] = piece.low.date(), piece.high.date()
                bounds = f"day >= {{{low}:Date}} AND day < {{{high}:Date}}"
            else:
                low_hour = f"{{{low}:DateTime64(3, 'UTC')}}"
                bounds = f"hour >= {low_hour} AND hour < {{{high}:DateTime64(3, 'UTC')}}"
            parts.append(
                f"SELECT {period} AS period, {keys}, events{message_column} "  # noqa: S608
                f"FROM {table} WHERE {where} AND {bounds}"
            )
    if not parts:
        return "", parameters
    merged = f", uniqMergeIf(messages, {_UNIQUE_KINDS}) AS messages" if messages else ""
    union = "\nUNION ALL\n".join(parts)
    sql = (
        f"SELECT period, {outer}, sum(events) AS events{merged} "  # noqa: S608
        f"FROM ({union}) GROUP BY period, {names}"
    )
    return sql, parameters


# ---------------------------------------------------------------------------
# Figures

_NAMES = (
    "Sent", "Delivered", "Deferred", "HardBounces", "SoftBounces", "Blocks", "Opens",
    "UniqueOpens", "Clicks", "UniqueClicks", "Unsubscribes", "Complaints",
)  # fmt: skip


def _figures(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The named figures, with rates, from rows of (event_type, bounce_type, is_retry) sums."""
    figures = dict.fromkeys(_NAMES, 0)
    for row in rows:
        kind, events = row["event_type"], int(row["events"])
        unique = int(row.get("messages") or 0)
        if kind == "sent":
            if not int(row["is_retry"]):
                figures["Sent"] += events
        elif kind == "delivered":
            figures["Delivered"] += events
        elif kind == "deferred":
            figures["Deferred"] += events
        elif kind == "bounced":
            bounce = row["bounce_type"]
            name = {"soft": "SoftBounces", "block": "Blocks"}.get(bounce, "HardBounces")
            figures[name] += events
        elif kind == "open":
            figures["Opens"] += events
            figures["UniqueOpens"] += unique
        elif kind == "click":
            figures["Clicks"] += events
            figures["UniqueClicks"] += unique
        elif kind == "unsubscribe":
            figures["Unsubscribes"] += events
        elif kind == "complaint":
            figures["Complaints"] += events
    return _with_rates(figures)


def _with_rates(figures: dict[str, Any]) -> dict[str, Any]:
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


_KIND_DIMENSIONS = ("event_type", "bounce_type", "is_retry")


def domain_stats(
    store: ReportingStore, domain_id: UUID, start: datetime, end: datetime
) -> dict[str, Any]:
    """``Stats`` for ``[start, end]`` (inclusive, to the millisecond), ``ComparisonStats``
    (the preceding period of equal length, with the change of each figure) and ``TagStats``."""
    stop = end + timedelta(milliseconds=1)
    length = stop - start
    # The comparison period, cut at the first moment a report can hold (a range of
    # millennia would otherwise start before the year 1).
    compared_from = start - length if start - EARLIEST > length else EARLIEST
    periods = [(start, stop), (compared_from, start)]
    sql, parameters = _sliced_query(_KIND_DIMENSIONS, periods, tagged=False, daily=True)
    rows = store.query(sql, {**parameters, "domain": domain_id}) if sql else []
    stats = _figures(r for r in rows if r["period"] == 0)
    before = _figures(r for r in rows if r["period"] == 1)
    comparison = {
        **before,
        "PeriodStart": compared_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "PeriodEnd": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Deltas": {key: round(stats[key] - before[key], 2) for key in stats},
    }
    sql, parameters = _sliced_query(
        ("tag", *_KIND_DIMENSIONS), [(start, stop)], tagged=True, daily=True, condition=""
    )
    tag_rows = store.query(sql, {**parameters, "domain": domain_id}) if sql else []
    by_tag: dict[str, list[Mapping[str, Any]]] = {}
    for row in tag_rows:
        if row["tag"]:
            by_tag.setdefault(str(row["tag"]), []).append(row)
    return {
        "Stats": stats,
        "ComparisonStats": comparison,
        "TagStats": {tag: _figures(by_tag[tag]) for tag in sorted(by_tag)[:1000]},
    }


# AggregatedField (lower case, no separators) → how its buckets are read.
AGGREGATIONS: dict[str, str] = {
    "eventtype": "event_type",
    "recipientdomain": "recipient_domain",
    "tag": "tag",
    "campaign": "campaign_id",
    "hour": "hour",
    "day": "day",
    "url": "url",
    "bouncetype": "bounce_type",
}

# Fields no rollup keeps (their cardinality is the recipients' or the links'): read from the
# raw rows of the range, which the table's sorting key narrows to the domain and the dates.
_RAW_FIELDS = {
    "recipient_domain": ("recipient_domain", ""),
    "url": ("JSONExtractString(details, 'URL')", "event_type = 'click'"),
}


def aggregated_events(
    store: ReportingStore,
    domain_id: UUID,
    field: str,
    size: int,
    start: datetime,
    end: datetime,
    time_zone: str = "UTC",
) -> list[dict[str, Any]]:
    """Buckets of event counts by ``field`` (a key of ``AGGREGATIONS``) in ``[start, end]``,
    largest first; days are the account's (``time_zone``)."""
    dimension = AGGREGATIONS[field]
    stop = end + timedelta(milliseconds=1)
    parameters: dict[str, Any] = {"domain": domain_id, "tz": time_zone, "size": size}
    if dimension in _RAW_FIELDS:
        expression, condition = _RAW_FIELDS[dimension]
        sql = f"""
            SELECT {expression} AS key, count() AS count
            FROM events
            WHERE domain_id = {{domain:UUID}}
              AND occurred_at >= {{start:DateTime64(3, 'UTC')}}
              AND occurred_at < {{stop:DateTime64(3, 'UTC')}}
              {f"AND {condition}" if condition else ""}
            GROUP BY key
            ORDER BY count DESC, key
            LIMIT {{size:UInt32}}
            """  # noqa: S608 (fixed expressions; values are bound)
        rows = store.query(sql, {**parameters, "start": start, "stop": stop})
    else:
        condition = "event_type = 'bounced'" if dimension == "bounce_type" else ""
        # Daily rollups are UTC days: other time zones' days are summed from hours.
        daily = dimension != "hour" and (dimension != "day" or time_zone == "UTC")
        inner, bound = _sliced_query(
            (dimension,), [(start, stop)], tagged=dimension == "tag", daily=daily,
            condition=condition, messages=False,
        )  # fmt: skip
        if not inner:
            return []
        rows = store.query(
            f"""
            SELECT {dimension} AS key, sum(events) AS count FROM ({inner})
            GROUP BY key ORDER BY count DESC, key LIMIT {{size:UInt32}}
            """,  # noqa: S608 (fixed text; values are bound)
            {**parameters, **bound},
        )
    return [{"Key": str(row["key"]), "Count": int(row["count"])} for row in rows]


# ---------------------------------------------------------------------------
# Campaigns


def campaign_figures(store: ReportingStore, campaign_id: UUID) -> list[dict[str, Any]]:
    """A campaign's rows of (submission_id, event_type, bounce_type, is_retry) with their
    events (``total``), distinct messages (``unique_messages``, for opens and clicks), first
    and last times, and the events of the current and previous minute (``recent``)."""
    return store.query(
        """
        SELECT submission_id, event_type, bounce_type, is_retry,
               sum(events) AS total,
               uniqMergeIf(messages, event_type IN ('open', 'click')) AS unique_messages,
               min(first_at) AS first, max(last_at) AS last,
               sumIf(events, minute >= toStartOfMinute(now()) - INTERVAL 1 MINUTE) AS recent
        FROM campaign_rollup
        WHERE campaign_id = {c:String}
        GROUP BY submission_id, event_type, bounce_type, is_retry
        """,
        {"c": str(campaign_id)},
    )


# A campaign's throughput: its deliveries, deferrals and bounces, counted in at most
# SERIES_POINTS steps from its first event to its last (or to now while it sends).

CAMPAIGN_KINDS = ("delivered", "deferred", "bounced")
SERIES_POINTS = 120
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


def campaign_series(
    store: ReportingStore, campaign_id: UUID, *, until_now: bool = False
) -> dict[str, Any]:
    """``Step`` (seconds) and ``Series``: a point per step with the events of each kind of
    CAMPAIGN_KINDS in it. Steps of a minute or more are read from the campaign rollup; finer
    steps (a campaign younger than two hours) from its raw events, found by the bloom
    filter on ``campaign_id``."""
    bounds = store.query(
        "SELECT min(first_at) AS first, max(last_at) AS last, count() AS rows "
        "FROM campaign_rollup WHERE campaign_id = {c:String}",
        {"c": str(campaign_id)},
    )
    if not bounds or not int(bounds[0]["rows"]):
        return {"Step": _STEPS[0], "Series": []}
    first: datetime = bounds[0]["first"].astimezone(UTC)
    last: datetime = bounds[0]["last"].astimezone(UTC)
    if until_now:
        last = max(last, datetime.now(UTC))
    span = (last - first).total_seconds()
    step = next((s for s in _STEPS if span / s <= SERIES_POINTS), _STEPS[-1])
    parameters = {"c": str(campaign_id), "step": step}
    if step >= 60:
        sql = (
            "SELECT toStartOfInterval(minute, toIntervalSecond({step:UInt32})) AS at, "
            "event_type, sum(events) AS events FROM campaign_rollup "
            "WHERE campaign_id = {c:String} AND event_type IN {kinds:Array(String)} "
            "GROUP BY at, event_type"
        )
    else:
        sql = (
            "SELECT toStartOfInterval(occurred_at, toIntervalSecond({step:UInt32})) AS at, "
            "event_type, count() AS events FROM events "
            "WHERE campaign_id = {c:String} AND event_type IN {kinds:Array(String)} "
            "AND occurred_at >= {first:DateTime64(3, 'UTC')} "
            "AND occurred_at <= {last:DateTime64(3, 'UTC')} "
            "GROUP BY at, event_type"
        )
        parameters |= {"first": first, "last": last}
    counted: dict[datetime, dict[str, int]] = {}
    for row in store.query(sql, {**parameters, "kinds": list(CAMPAIGN_KINDS)}):
        at = row["at"].astimezone(UTC) if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
        counted.setdefault(at, {})[str(row["event_type"])] = int(row["events"])
    start = datetime.fromtimestamp(first.timestamp() // step * step, UTC)
    series = []
    at = start
    while at <= last:
        found = counted.get(at, {})
        point: dict[str, Any] = {"At": at.isoformat().replace("+00:00", "Z")}
        point |= {kind: found.get(kind, 0) for kind in CAMPAIGN_KINDS}
        series.append(point)
        at += timedelta(seconds=step)
    return {"Step": step, "Series": series}


# ---------------------------------------------------------------------------
# The console's overview of an account: its figures over all its sender domains, their
# course by hour or by day, and the recipient domains that defer or bounce the most.

# The event types drawn in the overview's chart, in the order they are drawn.
SERIES_KINDS = ("sent", "delivered", "deferred", "bounced", "open", "click")
TOP_DOMAINS = 10


def account_overview(
    store: ReportingStore,
    domain_ids: Sequence[UUID],
    start: datetime,
    end: datetime,
    *,
    by_day: bool,
    time_zone: str = "UTC",
) -> dict[str, Any]:
    """``Stats`` as ``DomainStats`` names them, ``Series`` (one point per hour, or per day of
    ``time_zone``, with a count per kind of SERIES_KINDS) and ``TopDeferringDomains``."""
    stop = end + timedelta(milliseconds=1)
    bound = {"domains": list(domain_ids), "tz": time_zone}
    if not domain_ids:
        return {"Stats": _figures([]), "Series": [], "TopDeferringDomains": []}
    sql, parameters = _sliced_query(
        _KIND_DIMENSIONS, [(start, stop)], tagged=False, daily=True, several_domains=True
    )
    stats = _figures(store.query(sql, {**parameters, **bound}) if sql else [])
    bucket = "day" if by_day else "hour"
    sql, parameters = _sliced_query(
        (bucket, "event_type"), [(start, stop)], tagged=False,
        daily=by_day and time_zone == "UTC", messages=False, several_domains=True,
        condition="event_type IN ('sent', 'delivered', 'deferred', 'bounced', 'open', 'click')",
    )  # fmt: skip
    points: dict[str, dict[str, int]] = {}
    for row in store.query(sql, {**parameters, **bound}) if sql else []:
        point = points.setdefault(str(row[bucket]), dict.fromkeys(SERIES_KINDS, 0))
        point[str(row["event_type"])] += int(row["events"])
    top = store.query(
        """
        SELECT recipient_domain AS domain,
               countIf(event_type = 'deferred') AS deferred,
               countIf(event_type = 'bounced') AS bounced
        FROM events
        WHERE domain_id IN {domains:Array(UUID)}
          AND occurred_at >= {start:DateTime64(3, 'UTC')}
          AND occurred_at < {stop:DateTime64(3, 'UTC')}
          AND event_type IN ('deferred', 'bounced')
        GROUP BY domain
        ORDER BY deferred + bounced DESC, domain
        LIMIT {top:UInt32}
        """,
        {**bound, "start": start, "stop": stop, "top": TOP_DOMAINS},
    )
    return {
        "Stats": stats,
        "Series": [{"At": at, **points[at]} for at in sorted(points)],
        "TopDeferringDomains": [
            {
                "Domain": str(r["domain"]),
                "Deferred": int(r["deferred"]),
                "Bounced": int(r["bounced"]),
            }
            for r in top
        ],
    }
