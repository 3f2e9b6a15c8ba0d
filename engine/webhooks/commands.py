"""Customer webhooks: the commands that manage them, and what a call carries.

The commands are 002's ``EmailGateway.AddWebhook``, ``GetWebhooks`` and ``DeleteWebhook``
(and ``/api/v1/webhooks``), plus ``EmailGateway.GetWebhookAttempts``, our name for 004's
Event API Log. Calls are stored by :mod:`engine.webhooks.intake` and made by
:mod:`engine.webhooks.calls`; both build a call's content here, from the same ``events``
rows the reporting API shows, so a backfilled event and a live one look alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit
from uuid import UUID, uuid4

import orjson
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from adapters.ports import ReportingStore
from adapters.webhook_http import (
    AddressPolicy,
    UnsafeWebhookURL,
    check_webhook_url,
    new_signing_key,
    resolve_safely,
)
from adapters.webhook_store import Attempt, DeliveryJob, WebhookStore
from domain import errors as E
from domain.account import Account, SenderDomain
from domain.errors import ErrorText, RequestRejected
from domain.inbound import INBOUND_EVENT
from domain.webhook import (
    BACKFILL_DAYS,
    EVENT_FIELDS,
    METHODS,
    InvalidParameterMap,
    Webhook,
    canonical_event,
    named_fields,
    parameter_map,
)
from engine.application import SenderContext, Sendstream
from engine.idempotency import IdempotentCall, answered
from engine.params import MAX_PAGED_RECORDS, count_param, iso_time, text_param, uuid_param
from projections.events import rows_since

MAX_WEBHOOKS_PER_DOMAIN = 100
MAX_BACKFILL = 100_000
MAX_FIELD_CHARS = 4096  # keeps every call's body bounded (a subject, a URL, a user agent)
MAX_ATTEMPTS_PAGE = 100
# What an Idempotency-Key's fingerprint names as the endpoint of an added webhook.
ADD_ENDPOINT = "POST /api/v1/webhooks"

# The ``events`` row types that feed each webhook event (bounces of the block kind are blocks).
ROW_TYPES: Mapping[str, tuple[str, ...]] = {
    "sent": ("sent",),
    "delivery": ("delivered",),
    "bounce": ("bounced",),
    "block": ("bounced",),
    "open": ("open",),
    "click": ("click",),
    "unsubscribe": ("unsubscribe",),
    "complaint": ("complaint",),
}
_MOMENT_FIELD = {
    "sent": "SentDateTime",
    "delivery": "DeliveredDateTime",
    "open": "OpenDateTime",
    "click": "ClickDateTime",
    "unsubscribe": "UnsubscribeDateTime",
    "bounce": "BounceDateTime",
    "complaint": "ComplaintDateTime",
    "block": "BlockDateTime",
}


# ---------------------------------------------------------------------------
# What a call carries


def webhook_event_of(row: Mapping[str, Any], details: Mapping[str, Any]) -> str | None:
    """The webhook event an ``events`` row is, if any."""
    event_type = row["event_type"]
    if event_type == "bounced":
        return "block" if details.get("BounceType") == "block" else "bounce"
    return {
        "sent": "sent",
        "delivered": "delivery",
        "open": "open",
        "click": "click",
        "unsubscribe": "unsubscribe",
        "complaint": "complaint",
    }.get(event_type)


def documented_time(moment: datetime) -> str:
    """004's form, ``1/28/2015 9:19:00 AM``, in UTC."""
    moment = moment.astimezone(UTC)
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment:%M:%S} {half}"


def field_values(event: str, row: Mapping[str, Any], details: Mapping[str, Any]) -> dict[str, str]:
    """Every documented field of ``event`` (004) for one row, as text."""
    diagnostic = row["diagnostic"] or ""
    code = int(row["smtp_code"] or 0)
    values = {
        "TransactionalEmailID": str(row["message_id"]),
        "RelayMsgID": str(row["message_id"]),
        "UserID": str(row["account_id"]),
        "EmailAddress": row["recipient"],
        "Subject": row["subject"],
        "TransactionalGroupID": str(row["submission_id"]),
        "FromEmailAddress": row["sender"],
        "CustomID": str(details.get("CustomID", "")),
        _MOMENT_FIELD[event]: documented_time(row["occurred_at"]),
        "SMTPCode": str(code) if code else "",
        "SMTPResponse": diagnostic,
        "IPAddress": str(details.get("IpAddress", "")),
        "Browser": str(details.get("UserAgent", "")),
        "URL": str(details.get("URL", "")),
        "Position": str(details.get("Position", "")),
        "HTML": "True" if details.get("HTML") else "False",
        "UnsubscribeType": str(details.get("UnsubscribeType", "")),
        "DiagnosticCode": f"smtp;{code} {row['enhanced_status']} {diagnostic}".replace("  ", " ")
        if code
        else diagnostic,
        "Definitive": str(details.get("Definitive", 1)),
        "AbuseID": str(details.get("AbuseID", "")),
    }
    return {name: values[name][:MAX_FIELD_CHARS] for name in EVENT_FIELDS[event]}


def call_content(
    event: str, parameters: Mapping[str, str], row: Mapping[str, Any], details: Mapping[str, Any]
) -> bytes:
    """What is stored for a call: Standard Webhooks' ``{type, timestamp, data}``.

    A POST sends it as it is; a form POST or GET sends ``data`` as parameters, so the
    method may change between the event and the call.
    """
    fields = named_fields(event, parameters, field_values(event, row, details))
    moment = row["occurred_at"].astimezone(UTC)
    return orjson.dumps(
        {
            "type": f"email.{event}",
            "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{moment.microsecond // 1000:03d}Z",
            "data": fields,
        }
    )


def request_parts(method: str, url: str, content: bytes) -> tuple[str, str, bytes, str]:
    """(HTTP method, URL, body, content type) of a call in the webhook's ``method``."""
    if method == "POST":
        return "POST", url, content, "application/json"
    data = orjson.loads(content)["data"]
    encoded = urlencode(data)
    if method == "FORM":
        return "POST", url, encoded.encode(), "application/x-www-form-urlencoded"
    separator = "&" if "?" in url else "?"
    return "GET", f"{url}{separator}{encoded}" if encoded else url, b"", ""


def message_id_header(event_id: UUID) -> str:
    """Standard Webhooks' ``webhook-id``: the same for every try of one event."""
    return f"msg_{event_id.hex}"


# ---------------------------------------------------------------------------
# Who listens to what


@dataclass(frozen=True)
class WebhookView:
    id: UUID
    domain_id: UUID
    event_type: str
    url: str
    method: str
    parameters: Mapping[str, str]
    is_active: bool


@dataclass
class DomainWebhooks:
    signing_key: str
    by_event: dict[str, list[WebhookView]] = field(default_factory=dict)
    loaded_at: float = 0.0

    def find(self, webhook_id: UUID) -> WebhookView | None:
        for views in self.by_event.values():
            for view in views:
                if view.id == webhook_id:
                    return view
        return None


class WebhookRegistry:
    """The webhooks of each sender domain, read from the event store and kept a few seconds.

    The intake forgets what it knew when the stream shows a webhook changing; the time
    limit covers changes the stream has not brought yet, and callers in processes
    without an intake.
    """

    def __init__(self, app: Sendstream, lifetime: float = 5.0) -> None:
        self._app = app
        self._lifetime = lifetime
        self._domains: dict[UUID, DomainWebhooks] = {}
        self._lock = threading.Lock()

    def for_domain(self, domain_id: UUID, fresh: bool = False) -> DomainWebhooks:
        """``fresh`` reads the event store even when a recent copy is kept."""
        now = time.monotonic()
        with self._lock:
            known = self._domains.get(domain_id)
            if not fresh and known is not None and now - known.loaded_at < self._lifetime:
                return known
        loaded = self._load(domain_id, now)
        with self._lock:
            self._domains[domain_id] = loaded
        return loaded

    def forget(self) -> None:
        with self._lock:
            self._domains.clear()

    def _load(self, domain_id: UUID, now: float) -> DomainWebhooks:
        try:
            domain = self._app.domain(domain_id)
        except AggregateNotFoundError:
            return DomainWebhooks(signing_key="", loaded_at=now)
        loaded = DomainWebhooks(signing_key=domain.webhook_signing_key, loaded_at=now)
        if domain.is_deleted:
            return loaded
        for webhook_id in domain.webhook_ids:
            webhook = self._app._get(webhook_id, Webhook)
            if webhook.is_active:
                view = WebhookView(
                    id=webhook.id,
                    domain_id=webhook.domain_id,
                    event_type=webhook.event_type,
                    url=webhook.url,
                    method=webhook.method,
                    parameters=dict(webhook.parameters),
                    is_active=True,
                )
                loaded.by_event.setdefault(webhook.event_type, []).append(view)
        return loaded


def jobs_for_rows(
    registry: WebhookRegistry, rows: list[dict[str, Any]], due_at: datetime
) -> list[DeliveryJob]:
    """The calls owed for these ``events`` rows: one per row and listening webhook."""
    jobs: list[DeliveryJob] = []
    for row in rows:
        domain = registry.for_domain(row["domain_id"])
        if not domain.by_event:
            continue
        details = orjson.loads(row["details"]) if row["details"] else {}
        event = webhook_event_of(row, details)
        if event is None:
            continue
        for webhook in domain.by_event.get(event, ()):
            jobs.append(job_for(webhook, row, details, due_at))
    return jobs


def job_for(
    webhook: WebhookView | Webhook,
    row: Mapping[str, Any],
    details: Mapping[str, Any],
    due_at: datetime,
) -> DeliveryJob:
    """The call owed to ``webhook`` for one row (``details``: the row's, already parsed)."""
    return DeliveryJob(
        webhook_id=webhook.id,
        event_id=row["event_id"],
        message_id=row["message_id"],
        position=int(row["position"]),
        occurred_at=row["occurred_at"],
        payload=call_content(webhook.event_type, webhook.parameters, row, details),
        attempt=0,
        due_at=due_at,
    )


# ---------------------------------------------------------------------------
# Commands


@dataclass(frozen=True)
class WebhookErrors:
    """One endpoint's wording of the errors AddWebhook can meet."""

    missing_event: ErrorText
    invalid_event: ErrorText
    missing_url: ErrorText


API_ADD_ERRORS = WebhookErrors(
    E.AddWebhook.MISSING_EVENT, E.AddWebhook.INVALID_EVENT, E.AddWebhook.MISSING_URL
)
REST_ADD_ERRORS = WebhookErrors(
    E.AddWebhookRest.MISSING_EVENT, E.AddWebhookRest.INVALID_EVENT, E.AddWebhookRest.MISSING_URL
)


class WebhookCommands:
    def __init__(
        self,
        app: Sendstream,
        store: Callable[[], WebhookStore],
        reporting: Callable[[], ReportingStore] | None,
        allow_http: bool,
        policy: AddressPolicy,
    ) -> None:
        self._app = app
        self._store = store
        self._reporting = reporting
        self._allow_http = allow_http
        self._policy = policy

    def commands(self) -> dict[str, Callable[[Account, dict[str, Any]], dict[str, Any]]]:
        return {
            "EmailGateway.AddWebhook": self.add_webhook,
            "EmailGateway.GetWebhooks": self.get_webhooks,
            "EmailGateway.DeleteWebhook": self.delete_webhook,
            "EmailGateway.GetWebhookAttempts": self.get_attempts,
            "EmailGateway.TestWebhook": self.test_webhook,
        }

    # /api.php

    def _own_domain(self, account: Account, value: Any, error: ErrorText) -> SenderDomain:
        domain_id = uuid_param(value)
        if domain_id is None:
            raise RequestRejected(error)
        try:
            domain = self._app.domain(domain_id)
        except AggregateNotFoundError:
            raise RequestRejected(error) from None
        if domain.is_deleted or domain.account_id != account.id:
            raise RequestRejected(error)
        return domain

    def add_webhook(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        if text_param(params.get("DomainID")) is None:
            raise RequestRejected(E.AddWebhook.MISSING_DOMAIN_ID)
        domain = self._own_domain(account, params["DomainID"], E.AddWebhook.DOMAIN_NOT_FOUND)
        webhook_id = self.add(account.id, domain, params, API_ADD_ERRORS)
        return {"NewWebhookID": str(webhook_id)}

    def get_webhooks(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        if text_param(params.get("DomainID")) is None:
            raise RequestRejected(E.GetWebhooks.MISSING_DOMAIN_ID)
        domain = self._own_domain(account, params["DomainID"], E.GetWebhooks.DOMAIN_NOT_FOUND)
        domain = self._ensure_signing_key(domain)
        return {"SigningKey": domain.webhook_signing_key, "Webhooks": self.describe(domain)}

    def delete_webhook(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        if (
            text_param(params.get("WebhookID")) is None
            or text_param(params.get("DomainID")) is None
        ):
            raise RequestRejected(E.DeleteWebhook.MISSING_PARAMETER)
        domain = self._own_domain(account, params["DomainID"], E.DeleteWebhook.DOMAIN_NOT_FOUND)
        if not self.delete(domain, params["WebhookID"]):
            raise RequestRejected(E.DeleteWebhook.WEBHOOK_NOT_FOUND)
        return {}

    def get_attempts(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        if text_param(params.get("WebhookID")) is None:
            raise RequestRejected(E.GetWebhookAttempts.MISSING_WEBHOOK_ID)
        webhook = self._webhook(params["WebhookID"])
        if webhook is None or webhook.account_id != account.id:
            raise RequestRejected(E.GetWebhookAttempts.WEBHOOK_NOT_FOUND)
        start_from = count_param(params.get("StartFrom"), 0, "StartFrom")
        count = min(
            count_param(params.get("RetrieveCount"), 50, "RetrieveCount"), MAX_ATTEMPTS_PAGE
        )
        if start_from + count > MAX_PAGED_RECORDS:
            raise RequestRejected(E.Extensions.TOO_MANY_RECORDS)
        status = (text_param(params.get("Status")) or "").lower()
        if status not in ("", "success", "failure"):
            raise RequestRejected(E.GetWebhookAttempts.INVALID_STATUS)
        succeeded = None if not status else status == "success"
        total, attempts = self._store().attempts(webhook.id, start_from, count, succeeded)
        return {
            "WebhookID": str(webhook.id),
            "Status": webhook.status,
            "DisabledReason": webhook.disabled_reason or None,
            "TotalRecords": total,
            "Attempts": [_describe_attempt(attempt) for attempt in attempts],
        }

    def test_webhook(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """Queue one call of the webhook's event with sample values, signed and logged as
        every call is: how a user checks an endpoint before real mail flows."""
        if text_param(params.get("WebhookID")) is None:
            raise RequestRejected(E.TestWebhook.MISSING_WEBHOOK_ID)
        webhook = self._webhook(params["WebhookID"])
        if webhook is None or webhook.account_id != account.id or webhook.is_deleted:
            raise RequestRejected(E.TestWebhook.WEBHOOK_NOT_FOUND)
        now = datetime.now(UTC)
        event_id = uuid4()
        row = {
            "event_id": event_id, "message_id": event_id, "submission_id": event_id,
            "position": 0, "occurred_at": now, "account_id": account.id,
            "recipient": "recipient@example.com", "sender": "sender@example.com",
            "subject": "Sendstream test event", "smtp_code": 250,
            "enhanced_status": "2.0.0", "diagnostic": "test call: no mail was sent",
        }  # fmt: skip
        details = {
            "CustomID": "test", "IpAddress": "192.0.2.1", "UserAgent": "Sendstream test",
            "URL": "https://example.com/", "Position": 1, "UnsubscribeType": "link",
        }  # fmt: skip
        job = job_for(webhook, row, details, now) if webhook.event_type != INBOUND_EVENT else (
            DeliveryJob(
                webhook_id=webhook.id, event_id=event_id, message_id=event_id, position=0,
                occurred_at=now, attempt=0, due_at=now, payload=orjson.dumps({
                    "type": INBOUND_EVENT, "timestamp": now.isoformat(),
                    "data": {"InboundID": str(event_id), "Subject": "Sendstream test event",
                             "From": "sender@example.com", "Text": "test call: no mail came",
                             "Envelope": {"MailFrom": "sender@example.com",
                                          "Recipient": "recipient@example.com"}},
                }),
            )
        )  # fmt: skip
        self._store().enqueue([job], None)
        return {"WebhookID": str(webhook.id), "EventID": str(event_id)}

    # Shared by /api.php and /api/v1/webhooks.

    def add(
        self, account_id: UUID, domain: SenderDomain, params: dict[str, Any], errors: WebhookErrors
    ) -> UUID:
        event_name = text_param(params.get("Event"))
        if event_name is None:
            raise RequestRejected(errors.missing_event)
        event = canonical_event(event_name)
        if event is None:
            raise RequestRejected(errors.invalid_event)
        url = text_param(params.get("WebhookURL"))
        if url is None:
            raise RequestRejected(errors.missing_url)
        url = self.checked_url(url)
        method = (text_param(params.get("Method")) or "POST").upper()
        if method not in METHODS:
            raise RequestRejected(E.Extensions.INVALID_WEBHOOK_METHOD)
        parameters = self._parameters(event, params.get("Parameters"))
        if len(domain.webhook_ids) >= MAX_WEBHOOKS_PER_DOMAIN:
            raise RequestRejected(
                E.Extensions.INVALID_PARAMETER.format(name="Event: too many webhooks")
            )
        now = datetime.now(UTC)
        webhook = Webhook(
            id=uuid.uuid4(),
            account_id=account_id,
            domain_id=domain.id,
            event_type=event,
            event_name=event_name.lower(),
            url=url,
            method=method,
            parameters=parameters,
            added_at=now,
        )
        domain = self._app.domain(domain.id)
        domain.attach_webhook(webhook.id)
        if not domain.webhook_signing_key:
            domain.set_webhook_signing_key(new_signing_key())
        # The answer of EmailGateway.AddWebhook and of POST /api/v1/webhooks alike.
        self._app.save(webhook, domain, *answered({"NewWebhookID": str(webhook.id)}))
        self.backfill(webhook, now)
        return webhook.id

    def checked_url(self, url: str) -> str:
        """``url`` as it will be called, or the refusal of one the calls may not go to."""
        try:
            url = check_webhook_url(url, allow_http=self._allow_http)
            # Refused at creation when its host resolves to a refused address; the worker
            # checks again at every call (the name may resolve elsewhere by then).
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            asyncio.run(resolve_safely(parts.hostname or "", port, self._policy))
        except UnsafeWebhookURL as error:
            raise RequestRejected(
                E.Extensions.INVALID_WEBHOOK_URL.format(reason=str(error))
            ) from None
        return url

    def inbound_webhook(
        self, account_id: UUID, domain_id: UUID, url: str, now: datetime
    ) -> tuple[Webhook, SenderDomain]:
        """A webhook of event ``inbound`` for an inbound route's calls (not saved: saved
        with the route), attached to the sender domain, whose signing key signs them."""
        webhook = Webhook(
            id=uuid.uuid4(), account_id=account_id, domain_id=domain_id,
            event_type=INBOUND_EVENT, event_name=INBOUND_EVENT, url=url, method="POST",
            parameters={}, added_at=now,
        )  # fmt: skip
        domain = self._app.domain(domain_id)
        domain.attach_webhook(webhook.id)
        if not domain.webhook_signing_key:
            domain.set_webhook_signing_key(new_signing_key())
        return webhook, domain

    def _parameters(self, event: str, given: Any) -> dict[str, str]:
        if given is None or given == "":
            return {}
        if isinstance(given, str):
            try:
                given = orjson.loads(given)
            except orjson.JSONDecodeError:
                raise RequestRejected(
                    E.Extensions.INVALID_WEBHOOK_PARAMETERS.format(reason="not a JSON object")
                ) from None
        if not isinstance(given, dict) or len(given) > len(EVENT_FIELDS[event]):
            raise RequestRejected(
                E.Extensions.INVALID_WEBHOOK_PARAMETERS.format(reason="not a map of fields")
            )
        try:
            return parameter_map(event, given)
        except InvalidParameterMap as error:
            raise RequestRejected(
                E.Extensions.INVALID_WEBHOOK_PARAMETERS.format(reason=str(error))
            ) from None

    def backfill(self, webhook: Webhook, now: datetime) -> int:
        """004: "JangoMail will call the web service for the last seven days worth of data".

        Oldest first; the worker's per-endpoint limits pace the calls.
        """
        if self._reporting is None:
            return 0
        rows = rows_since(
            self._reporting(),
            webhook.domain_id,
            ROW_TYPES[webhook.event_type],
            now - timedelta(days=BACKFILL_DAYS),
            MAX_BACKFILL,
        )
        jobs = []
        for row in rows:
            details = orjson.loads(row["details"]) if row["details"] else {}
            if webhook_event_of(row, details) == webhook.event_type:
                jobs.append(job_for(webhook, row, details, now))
        return self._store().enqueue(jobs, None) if jobs else 0

    def _ensure_signing_key(self, domain: SenderDomain) -> SenderDomain:
        if domain.webhook_signing_key:
            return domain
        for _ in range(3):
            domain = self._app.domain(domain.id)
            domain.set_webhook_signing_key(new_signing_key())
            try:
                self._app.save(domain)
                return domain
            except IntegrityError:
                continue
        return self._app.domain(domain.id)

    def describe(self, domain: SenderDomain) -> list[dict[str, Any]]:
        store = self._store()
        described = []
        for webhook_id in domain.webhook_ids:
            webhook = self._webhook(webhook_id)
            if webhook is None or webhook.is_deleted:
                continue
            described.append(
                {
                    "WebhookID": str(webhook.id),
                    "URL": webhook.url,
                    "Event": webhook.event_name,
                    "Events": [webhook.event_name],
                    "Method": webhook.method,
                    "Parameters": dict(webhook.parameters),
                    "Status": webhook.status,
                    "DisabledReason": webhook.disabled_reason or None,
                    "DisabledDate": iso_time(webhook.disabled_at),
                    "ConsecutiveFailures": store.consecutive_failures(webhook.id),
                    "PendingDeliveries": store.pending_count(webhook.id),
                    "CreationDate": iso_time(webhook.added_at),
                }
            )
        return described

    def delete(self, domain: SenderDomain, value: Any) -> bool:
        webhook_id = uuid_param(value)
        if webhook_id is None or webhook_id not in domain.webhook_ids:
            return False
        webhook = self._webhook(webhook_id)
        if webhook is None or webhook.is_deleted:
            return False
        webhook.delete(datetime.now(UTC))
        domain = self._app.domain(domain.id)
        domain.detach_webhook(webhook.id)
        self._app.save(webhook, domain)
        self._store().drop_jobs(webhook.id)
        return True

    def _webhook(self, value: Any) -> Webhook | None:
        webhook_id = value if isinstance(value, UUID) else uuid_param(value)
        if webhook_id is None:
            return None
        try:
            return self._app._get(webhook_id, Webhook)
        except AggregateNotFoundError:
            return None

    # /api/v1/webhooks

    def rest_add(
        self, sender: SenderContext, params: dict[str, Any], idempotency_key: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """The new webhook's id, and whether it is the answer of an earlier request with
        the same Idempotency-Key."""

        def add() -> dict[str, Any]:
            domain = self._app.domain(sender.domain_id)
            webhook_id = self.add(sender.account_id, domain, params, REST_ADD_ERRORS)
            return {"NewWebhookID": str(webhook_id)}

        if idempotency_key is None:
            return add(), False
        endpoint = f"{ADD_ENDPOINT} {sender.domain_id}"  # the domain is part of the request
        call = IdempotentCall(sender.account_id, idempotency_key, endpoint, params)
        return call.perform(self._app, add)

    def rest_list(self, sender: SenderContext) -> dict[str, Any]:
        domain = self._ensure_signing_key(self._app.domain(sender.domain_id))
        return {"SigningKey": domain.webhook_signing_key, "Webhooks": self.describe(domain)}

    def rest_delete(self, sender: SenderContext, params: dict[str, Any]) -> dict[str, Any]:
        if text_param(params.get("WebhookID")) is None:
            raise RequestRejected(E.DeleteWebhookRest.MISSING_WEBHOOK_ID)
        if not self.delete(self._app.domain(sender.domain_id), params["WebhookID"]):
            raise RequestRejected(E.DeleteWebhookRest.INVALID_WEBHOOK_ID)
        return {"Message": "Webhook successfully deleted."}


def _describe_attempt(attempt: Attempt) -> dict[str, Any]:
    return {
        "AttemptedAt": iso_time(attempt.attempted_at),
        "EventID": str(attempt.event_id),
        "Attempt": attempt.attempt,
        "URL": attempt.url,
        "StatusCode": attempt.status_code,
        "LatencyMs": round(attempt.latency_ms, 1),
        "Success": attempt.succeeded,
        "Error": attempt.error or None,
        "Response": attempt.response_snippet,
    }
