"""Customer webhooks (002's AddWebhook/GetWebhooks/DeleteWebhook, 004's Event API).

A webhook belongs to one sender domain and one event type. It carries where and how to
call (URL, method), and which of the event's documented fields to send under which
names. Delivery state that changes on every call (retries, the attempt log, the run of
consecutive failures) lives in the delivery store, not here: only what the customer
sees as the webhook's own state is an event (added, changed, disabled, deleted).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

# The event types a webhook can follow, and the names customers use for them (002 says
# "delivery", its REST example "delivered"; 004 says "sent", GetWebhooks "send").
EVENT_SYNONYMS: Mapping[str, str] = {
    "delivery": "delivery",
    "delivered": "delivery",
    "bounce": "bounce",
    "bounced": "bounce",
    "open": "open",
    "opened": "open",
    "click": "click",
    "clicked": "click",
    "unsubscribe": "unsubscribe",
    "unsubscribed": "unsubscribe",
    "complaint": "complaint",
    "complained": "complaint",
    "spam": "complaint",
    "sent": "sent",
    "send": "sent",
    "block": "block",
    "blocked": "block",
}
WEBHOOK_EVENTS = frozenset(EVENT_SYNONYMS.values())

# Each event's documented fields (004), in the document's order, under the names sent
# when the customer maps none. A parameter map picks some and renames them.
EVENT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "sent": (
        "TransactionalEmailID", "UserID", "EmailAddress", "Subject", "TransactionalGroupID",
        "SentDateTime", "FromEmailAddress", "CustomID", "RelayMsgID",
    ),
    "delivery": (
        "TransactionalEmailID", "UserID", "EmailAddress", "Subject", "TransactionalGroupID",
        "DeliveredDateTime", "FromEmailAddress", "SMTPCode", "SMTPResponse", "CustomID",
    ),
    "open": (
        "UserID", "TransactionalEmailID", "TransactionalGroupID", "EmailAddress",
        "OpenDateTime", "IPAddress", "Browser", "CustomID",
    ),
    "click": (
        "UserID", "TransactionalEmailID", "TransactionalGroupID", "EmailAddress", "URL",
        "Position", "HTML", "ClickDateTime", "IPAddress", "Browser", "CustomID",
    ),
    "unsubscribe": (
        "UserID", "EmailAddress", "UnsubscribeType", "UnsubscribeDateTime", "IPAddress",
        "TransactionalGroupID", "TransactionalEmailID", "CustomID",
    ),
    "bounce": (
        "UserID", "EmailAddress", "BounceDateTime", "DiagnosticCode", "Definitive",
        "TransactionalGroupID", "TransactionalEmailID", "CustomID",
    ),
    "complaint": (
        "UserID", "EmailAddress", "ComplaintDateTime", "AbuseID", "TransactionalGroupID",
        "TransactionalEmailID", "CustomID",
    ),
    "block": (
        "UserID", "EmailAddress", "BlockDateTime", "DiagnosticCode", "TransactionalGroupID",
        "TransactionalEmailID", "CustomID",
    ),
}  # fmt: skip

# How the call is made: 004's GET and POST (form fields), and JSON, the default.
METHODS = ("POST", "FORM", "GET")

# Retries after a failed call: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, then hourly (the
# last delay again), for about a day after the first attempt; then the call is given up.
RETRY_DELAYS_SECONDS: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600)
GIVE_UP_AFTER_SECONDS = 24 * 3600
# 004: "If there are 1,000 consecutive failures ... calls to the web service will cease
# until the URL or one of the parameters is modified."
DISABLE_AFTER_FAILURES = 1000
MAX_PARAMETER_NAME = 100
BACKFILL_DAYS = 7  # 004: "JangoMail will call the web service for the last seven days"


def canonical_event(name: str) -> str | None:
    return EVENT_SYNONYMS.get(name.strip().lower())


def max_attempts(schedule: tuple[float, ...] = RETRY_DELAYS_SECONDS) -> int:
    """Attempts in all: the first, one per listed delay, then one per last delay until
    ``GIVE_UP_AFTER_SECONDS`` have been spent waiting."""
    rest = max(0.0, GIVE_UP_AFTER_SECONDS - sum(schedule))
    return 1 + len(schedule) + int(rest // schedule[-1])


def retry_delay(
    attempts_made: int, schedule: tuple[float, ...] = RETRY_DELAYS_SECONDS
) -> float | None:
    """Seconds until the next try after ``attempts_made`` attempts that failed, or None
    once the schedule is spent (counted in attempts, so that a backfilled call of a
    week-old event gets the same day of retries as a fresh one)."""
    if attempts_made < 1 or not schedule:
        raise ValueError("retry_delay is asked after a failed attempt, with a schedule")
    if attempts_made >= max_attempts(schedule):
        return None
    return float(schedule[min(attempts_made, len(schedule)) - 1])


class InvalidParameterMap(ValueError):
    """A parameter map names a field the event does not have, or a name we cannot send."""


def parameter_map(event: str, given: Mapping[str, object]) -> dict[str, str]:
    """The customer's field → name map, checked: 004's "boxes left blank won't be passed",
    so a blank name drops the field, and an empty map means every field under its own name."""
    fields = EVENT_FIELDS[event]
    known = {field.lower(): field for field in fields}
    chosen: dict[str, str] = {}
    for field, name in given.items():
        canonical = known.get(str(field).strip().lower())
        if canonical is None:
            raise InvalidParameterMap(f"{event} events have no field {field!r}")
        if not isinstance(name, str):
            raise InvalidParameterMap(f"the name for {canonical} must be text")
        name = name.strip()
        if len(name) > MAX_PARAMETER_NAME or any(ord(c) < 32 for c in name):
            raise InvalidParameterMap(f"the name for {canonical} is not a usable parameter name")
        chosen[canonical] = name
    return chosen


def named_fields(
    event: str, parameters: Mapping[str, str], values: Mapping[str, str]
) -> dict[str, str]:
    """The fields sent for one event: all documented ones under their own names when no map
    is set, else the mapped ones under the customer's names (blank names left out)."""
    if not parameters:
        return {field: values.get(field, "") for field in EVENT_FIELDS[event]}
    return {name: values.get(field, "") for field, name in parameters.items() if name}


class Webhook(Aggregate):
    """Where one sender domain's events of one type are sent."""

    @event("Added")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        domain_id: UUID,
        event_type: str,
        event_name: str,
        url: str,
        method: str,
        parameters: dict[str, str],
        added_at: datetime,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.domain_id = domain_id
        self.event_type = event_type  # canonical (WEBHOOK_EVENTS)
        self.event_name = event_name  # as the customer wrote it, shown back
        self.url = url
        self.method = method
        self.parameters = parameters
        self.added_at = added_at
        self.disabled_reason = ""
        self.disabled_at: datetime | None = None
        self.is_deleted = False

    @property
    def status(self) -> str:
        if self.is_deleted:
            return "Deleted"
        return "Disabled" if self.disabled_reason else "Active"

    @property
    def is_active(self) -> bool:
        return self.status == "Active"

    def change(self, url: str, method: str, parameters: dict[str, str]) -> None:
        """A change of URL or parameters (004) also lifts a disablement."""
        if (url, method, parameters) != (self.url, self.method, self.parameters):
            self._changed(url=url, method=method, parameters=parameters)

    @event("Changed")
    def _changed(self, url: str, method: str, parameters: dict[str, str]) -> None:
        self.url = url
        self.method = method
        self.parameters = parameters
        self.disabled_reason = ""
        self.disabled_at = None

    def disable(self, reason: str, at: datetime) -> None:
        if self.is_active:
            self._disabled(reason=reason, at=at)

    @event("Disabled")
    def _disabled(self, reason: str, at: datetime) -> None:
        self.disabled_reason = reason
        self.disabled_at = at

    def delete(self, at: datetime) -> None:
        if not self.is_deleted:
            self._deleted(at=at)

    @event("Deleted")
    def _deleted(self, at: datetime) -> None:
        self.is_deleted = True
