"""The send service: everything between an authenticated request and durable Messages."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from adapters.event_metadata import unattributed
from adapters.metrics import MESSAGES_ACCEPTED
from adapters.mime import build_message
from adapters.templating import TemplateRefused, render, render_subject
from domain.account import SenderApiKey, domain_accepts_sender
from domain.batch import Batch, batch_submission_id
from domain.content import Address, EmailContent
from domain.creation import create
from domain.errors import ErrorText, Extensions, RequestRejected, SendEmail
from domain.message import Message
from domain.suppression import SuppressionList
from domain.template import Template, UnknownVersion, version_number
from engine.accounts.callers import current_request
from engine.admission import Admission
from engine.application import SenderContext, Sendstream
from engine.delivery.handoff import ContentCache, FreshMessages
from engine.eventlog.writer import BatchWriter
from engine.idempotency import IdempotentCall
from engine.ids import new_id
from engine.params import uuid_param
from engine.rate_limit import RequestLimit
from engine.sending import batch
from engine.sending.batch import BATCH_ENDPOINT
from engine.sending.request import parse_send_request

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

_AUTH_CACHE_SECONDS = 2.0
# A send from a stored template: these give the template, and it gives these parts.
TEMPLATE_FIELDS = ("TemplateID", "TemplateVersion", "TemplateData")
TEMPLATE_PARTS = ("Subject", "HtmlContent", "PlainContent")
# What an Idempotency-Key's fingerprint names as the endpoint of a send.
SEND_ENDPOINT = "POST /api/v1/email"


class BriefCache(Generic[K, V]):
    """What the send path read lately (keys, suppression lists, templates), kept for
    ``_AUTH_CACHE_SECONDS``: each request would otherwise read the store again."""

    def __init__(self, most: int = 10_000) -> None:
        self._entries: dict[K, tuple[float, V]] = {}
        self._most = most

    def get(self, key: K, load: Callable[[K], V]) -> V:
        now = time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and now - cached[0] < _AUTH_CACHE_SECONDS:
            return cached[1]
        found = load(key)
        if len(self._entries) > self._most:
            self._entries.clear()
        self._entries[key] = (now, found)
        return found

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


class DailyQuota:
    """Messages accepted per account per UTC day, for the account's daily send limit.

    Counted in this process; a deployment with several API processes gives each its share.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._day: date | None = None
        self._counts: defaultdict[UUID, int] = defaultdict(int)

    def take(self, account_id: UUID, amount: int, limit: int | None, today: date) -> bool:
        with self._lock:
            if self._day != today:
                self._day, self._counts = today, defaultdict(int)
            if limit is not None and self._counts[account_id] + amount > limit:
                return False
            self._counts[account_id] += amount
            return True

    def give_back(self, account_id: UUID, amount: int) -> None:
        with self._lock:
            self._counts[account_id] = max(0, self._counts[account_id] - amount)


def _ignore_outcome(future: Future[None]) -> None:
    """A lost race on a key's day of use is harmless: another request recorded it."""
    if future.exception() is not None:
        log.debug("key use not recorded: %s", future.exception())


class SendingService:
    def __init__(
        self,
        app: Sendstream,
        writer: BatchWriter,
        fresh: FreshMessages | None = None,
        contents: ContentCache | None = None,
    ) -> None:
        self._app = app
        self._writer = writer
        self._fresh = fresh
        self._contents = contents
        settings = app.settings
        self._request_limiter = RequestLimit(settings.api_rate_limit)
        self._send_limiter = RequestLimit(settings.send_rate_limit)
        self._quota = DailyQuota()
        # Shared by the API and SMTP submission of this process: they share its CPU.
        self.admission = Admission(settings.max_sends_in_progress)
        self._auth_cache: BriefCache[str, SenderContext | None] = BriefCache()
        self._suppression_cache: BriefCache[UUID, SuppressionList | None] = BriefCache()
        # A change made in this process drops its entry at once (forget_template).
        self._template_cache: BriefCache[UUID, Template | None] = BriefCache()
        self._used_on: dict[UUID, date] = {}

    def authenticate(
        self, secret: str | None, too_many: ErrorText, missing: ErrorText, invalid: ErrorText
    ) -> SenderContext:
        """The sender behind a key, after its rate limit; raises the endpoint's own errors."""
        if not secret:
            raise RequestRejected(missing)
        sender = self._auth_cache.get(secret, self._app.sender_context)
        if sender is None:
            raise RequestRejected(invalid)
        self._request_limiter.check(str(sender.key_id), too_many)
        # The events this request causes name the key (adapters.event_metadata).
        current_request().note_sender(sender.account_id, sender.key_id)
        return sender

    def note_use(self, key_id: UUID) -> None:
        """Record a sender key's day of use (its LastUsedDate) once per key and day, after a
        request it made succeeded (a refused request records nothing). The event is handed
        to the writer and nobody waits for it."""
        today = datetime.now(UTC).date()
        if self._used_on.get(key_id) == today:
            return
        self._used_on[key_id] = today
        try:
            key = self._app._get(key_id, SenderApiKey)
        except AggregateNotFoundError:
            return
        key.note_use(today)
        with unattributed():
            self._writer.submit([key]).add_done_callback(_ignore_outcome)

    def forget_key(self, secret: str) -> None:
        self._auth_cache.forget(secret)

    def forget_all(self) -> None:
        """Drop every cached key lookup (a key was revoked: it must stop working at once)."""
        self._auth_cache.clear()

    def _suppressions(self, account_id: UUID) -> SuppressionList | None:
        """The account's suppression list, re-read at most every couple of seconds."""
        return self._suppression_cache.get(account_id, self._app.suppression_list)

    def _stored_template(self, template_id: UUID) -> Template | None:
        try:
            return self._app._get(template_id, Template)
        except AggregateNotFoundError:
            return None

    def forget_template(self, template_id: UUID) -> None:
        self._template_cache.forget(template_id)

    def forget_suppressions(self, account_id: UUID) -> None:
        self._suppression_cache.forget(account_id)

    def suppress(self, account_id: UUID, email: str, reason: str) -> None:
        self._app.suppress(account_id, email, reason, datetime.now(UTC))
        self._suppression_cache.forget(account_id)

    async def send(self, sender: SenderContext, body: dict[str, Any]) -> str:
        """Accept one email; returns its MessageID once every recipient's Message is durable."""
        self._check_sender(sender)
        now = datetime.now(UTC)
        content, template = self._content(sender, body, now)
        return await self.accept(sender, content, now, template=template)

    async def send_once(
        self, sender: SenderContext, body: dict[str, Any], idempotency_key: str
    ) -> tuple[str, bool]:
        """:meth:`send` under an Idempotency-Key: the MessageID, and whether it is the
        answer of an earlier request with the same key (then nothing was sent again)."""
        self._check_sender(sender)
        # A key belongs to the account; the domain sending is part of the request.
        endpoint = f"{SEND_ENDPOINT} {sender.domain_id}"
        call = IdempotentCall(sender.account_id, idempotency_key, endpoint, body)
        now = datetime.now(UTC)
        # As IdempotentCall.perform, for a send that waits on the writer without a thread;
        # the store is read off the event loop (a slow database must not stall it). A retry
        # is answered before its content is built: its template may be gone since.
        if (earlier := await asyncio.to_thread(call.earlier_answer, self._app, now)) is not None:
            return str(earlier["MessageID"]), True
        content, template = self._content(sender, body, now)
        try:
            return await self.accept(
                sender, content, now, idempotent=call, template=template
            ), False
        except IntegrityError:
            earlier = await asyncio.to_thread(call.earlier_answer, self._app, now)
            if earlier is None:
                raise
            return str(earlier["MessageID"]), True

    async def send_batch(
        self, sender: SenderContext, body: dict[str, Any], idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Accept a batch (engine.sending.batch): its answer, and whether it is the answer
        of an earlier request with the same Idempotency-Key."""
        self._check_sender(sender)
        now = datetime.now(UTC)
        if idempotency_key is None:
            return await self._accept_batch(sender, body, now, None), False
        call = IdempotentCall(
            sender.account_id, idempotency_key, f"{BATCH_ENDPOINT} {sender.domain_id}", body
        )
        if (earlier := await asyncio.to_thread(call.earlier_answer, self._app, now)) is not None:
            return earlier, True
        try:
            return await self._accept_batch(sender, body, now, call), False
        except IntegrityError:
            earlier = await asyncio.to_thread(call.earlier_answer, self._app, now)
            if earlier is None:
                raise
            return earlier, True

    async def _accept_batch(
        self,
        sender: SenderContext,
        body: dict[str, Any],
        now: datetime,
        idempotent: IdempotentCall | None,
    ) -> dict[str, Any]:
        # Rendering and building a thousand messages is tens of milliseconds of CPU: done
        # in a thread, the event loop goes on answering the other requests meanwhile.
        entries, template = await asyncio.to_thread(self._personalised, sender, body, now)
        accepted = [(i, e.content) for i, e in enumerate(entries) if e.content is not None]
        if not accepted:
            return batch.answer(entries, {})
        self._send_limiter.check(str(sender.account_id), SendEmail.SEND_RATE_EXCEEDED)
        if not self._quota.take(
            sender.account_id, len(accepted), sender.daily_send_limit, now.date()
        ):
            raise RequestRejected(SendEmail.SENDING_LIMIT_REACHED)
        answer, aggregates = self._batch_record(sender, entries, accepted, now, template,
                                                idempotent)  # fmt: skip
        try:
            await self._writer.save_async(aggregates)
        except BaseException:
            self._quota.give_back(sender.account_id, len(accepted))
            raise
        self.note_use(sender.key_id)
        MESSAGES_ACCEPTED.labels("batch").inc(len(accepted))
        return answer

    def _personalised(
        self, sender: SenderContext, body: dict[str, Any], now: datetime
    ) -> tuple[list[batch.BatchEntry], dict[str, Any] | None]:
        """Each recipient's entry, after what they share is checked; and the stored
        template the batch is rendered from (if any)."""
        recipients = batch.recipients_field(body)
        data = batch.shared_data(body)
        template = None
        if body.get("TemplateID") not in (None, ""):
            body, template = self._template_parts(sender, body)
        settings = self._app.settings
        shared = parse_send_request(
            {k: v for k, v in body.items() if k not in TEMPLATE_FIELDS},
            max_recipients=settings.max_recipients, max_reply_to=settings.max_reply_to,
            now=now, with_recipients=False,
        )  # fmt: skip
        if not domain_accepts_sender(sender.domain_name, shared.sender.email):
            raise RequestRejected(SendEmail.INVALID_FROM)
        batch.check_attachments(shared)
        parts = batch.Parts(shared.subject, shared.html, shared.plain)
        if template is None:
            parts.check()  # a stored template was checked when it was stored
        suppressions = self._suppressions(sender.account_id)
        return batch.personalise(shared, parts, recipients, data, suppressions), template

    @staticmethod
    def _batch_record(
        sender: SenderContext,
        entries: list[batch.BatchEntry],
        accepted: list[tuple[int, EmailContent]],
        now: datetime,
        template: dict[str, Any] | None,
        idempotent: IdempotentCall | None,
    ) -> tuple[dict[str, Any], list[Aggregate]]:
        """The answer, and what to save: the batch as one event (its recipients' messages
        are made from it by the fan-out, with the MessageIDs answered here), and the
        answer under its Idempotency-Key."""
        batch_id = new_id()
        first = accepted[0][1]
        shared = replace(first, to=(), subject="", html=None, plain=None).to_dict()
        recipients = [
            {"Index": index, "Email": content.to[0].email, "Name": content.to[0].name,
             "Subject": content.subject, "Html": content.html, "Plain": content.plain}
            for index, content in accepted
        ]  # fmt: skip
        record = create(
            Batch, "Accepted", id=batch_id, account_id=sender.account_id,
            domain_id=sender.domain_id, key_id=sender.key_id, content=shared,
            template=template, recipients=recipients, accepted_at=now,
        )  # fmt: skip
        message_ids = {index: str(batch_submission_id(batch_id, index)) for index, _ in accepted}
        answer = batch.answer(entries, message_ids)
        aggregates: list[Aggregate] = [record]
        if idempotent is not None:
            aggregates.append(idempotent.record(answer, now))
        return answer, aggregates

    def _template_parts(
        self, sender: SenderContext, body: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``body`` with the parts of the stored template it names (their sources, not
        rendered), and the template and version for the submissions' record."""
        template = self._template(sender.account_id, body.get("TemplateID"))
        try:
            version = (
                template.active
                if body.get("TemplateVersion") in (None, "")
                else template.numbered(version_number(body["TemplateVersion"]))
            )
        except UnknownVersion:
            raise RequestRejected(SendEmail.INVALID_TEMPLATE_ID) from None
        if any(body.get(part) not in (None, "") for part in TEMPLATE_PARTS):
            raise RequestRejected(Extensions.TEMPLATE_AND_CONTENT)
        parts = {"Subject": version.subject, "HtmlContent": version.html or None,
                 "PlainContent": version.text or None,
                 "ContentType": "html" if version.html.strip() else "plain"}  # fmt: skip
        return body | parts, {"TemplateID": str(template.id), "Version": version.number}

    def _content(
        self, sender: SenderContext, body: dict[str, Any], now: datetime
    ) -> tuple[EmailContent, dict[str, Any] | None]:
        """The content of a send, and the stored template it was rendered from (if any)."""
        template = None
        if body.get("TemplateID") not in (None, ""):
            body, template = self._rendered(sender, body)
        settings = self._app.settings
        content = parse_send_request(
            body, max_recipients=settings.max_recipients, max_reply_to=settings.max_reply_to,
            now=now,
        )  # fmt: skip
        return content, template

    def _rendered(
        self, sender: SenderContext, body: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``body`` with its subject and content rendered from the account's template
        ``TemplateID`` (its ``TemplateVersion``, or the active one) and ``TemplateData``."""
        body, template = self._template_parts(sender, body)
        data = body.get("TemplateData", {})
        if not isinstance(data, dict):
            raise RequestRejected(Extensions.INVALID_PARAMETER.format(name="TemplateData"))
        try:
            subject = render_subject(body["Subject"], data)
            html = (
                render("HTMLContent", body["HtmlContent"], data, html=True)
                if body["HtmlContent"]
                else ""
            )
            text = (
                render("PlainContent", body["PlainContent"], data) if body["PlainContent"] else ""
            )
        except TemplateRefused as refused:
            raise RequestRejected(
                Extensions.TEMPLATE_NOT_RENDERED.format(reason=str(refused))
            ) from None
        rendered = {k: v for k, v in body.items() if k not in TEMPLATE_FIELDS}
        rendered |= {"Subject": subject, "ContentType": "html" if html.strip() else "plain",
                     "HtmlContent": html or None, "PlainContent": text or None}  # fmt: skip
        return rendered, template

    def _template(self, account_id: UUID, value: Any) -> Template:
        template_id = uuid_param(value)
        found = (
            self._template_cache.get(template_id, self._stored_template) if template_id else None
        )
        if found is None or found.account_id != account_id or found.is_deleted:
            raise RequestRejected(SendEmail.INVALID_TEMPLATE_ID)
        return found

    @staticmethod
    def _check_sender(sender: SenderContext) -> None:
        if not sender.account_active:
            raise RequestRejected(SendEmail.ACCOUNT_DEACTIVATED)
        if not sender.account_verified:
            raise RequestRejected(SendEmail.ACCOUNT_NOT_VERIFIED)
        if not sender.domain_active:
            raise RequestRejected(SendEmail.DOMAIN_NOT_ACTIVATED)

    async def accept(
        self,
        sender: SenderContext,
        content: EmailContent,
        now: datetime | None = None,
        source: str = "api",
        idempotent: IdempotentCall | None = None,
        template: dict[str, Any] | None = None,
    ) -> str:
        """Accept content already parsed (by the API or the SMTP submission server): the
        sender, suppression, rate and quota checks, then durable Messages; the MessageID.
        With ``idempotent``, its key's answer is saved in the same transaction."""
        self._check_sender(sender)
        now = now or datetime.now(UTC)
        if not domain_accepts_sender(sender.domain_name, content.sender.email):
            raise RequestRejected(SendEmail.INVALID_FROM)
        suppressions = self._suppressions(sender.account_id)
        recipients = content.recipients()
        if suppressions is not None and any(suppressions.contains(a.email) for _, a in recipients):
            raise RequestRejected(SendEmail.SUPPRESSED)
        self._send_limiter.check(str(sender.account_id), SendEmail.SEND_RATE_EXCEEDED)
        if not self._quota.take(
            sender.account_id, len(recipients), sender.daily_send_limit, now.date()
        ):
            raise RequestRejected(SendEmail.SENDING_LIMIT_REACHED)
        submission, messages = self._app.prepare_submission(
            sender, content, now, source=source, template=template
        )
        aggregates: list[Aggregate] = [submission, *messages]
        if idempotent is not None:
            answer = {"MessageID": str(submission.id)}
            aggregates.append(idempotent.record(answer, now))
        await self._store(sender, aggregates, len(recipients), messages, [(submission.id, content)])
        MESSAGES_ACCEPTED.labels(source).inc(len(recipients))
        return str(submission.id)

    async def _store(
        self,
        sender: SenderContext,
        aggregates: list[Aggregate],
        recipients: int,
        messages: list[Message],
        contents: list[tuple[UUID, EmailContent]],
    ) -> None:
        """Save what a send accepted in one transaction (giving its ``recipients`` back to
        the day's quota if that fails), then hand the delivery worker its messages and
        contents directly, rather than through a reload."""
        try:
            await self._writer.save_async(aggregates)
        except BaseException:
            self._quota.give_back(sender.account_id, recipients)
            raise
        if self._fresh is not None:
            self._fresh.add(messages)
        if self._contents is not None:
            for submission_id, content in contents:
                self._contents.put(submission_id, content)
        self.note_use(sender.key_id)

    def describe(self, sender: SenderContext, submission_id: UUID) -> dict[str, Any] | None:
        """A submission and its recipients' status, with the MIME each one gets; None if not the
        sender's domain (indistinguishable from absent, so ids of others cannot be probed)."""
        try:
            submission = self._app.submission(submission_id)
        except AggregateNotFoundError:
            return None
        if submission.domain_id != sender.domain_id:
            return None
        content = EmailContent.from_dict(submission.content)
        recipients = []
        for message_id in submission.message_ids:
            message = self._app.message(message_id)
            raw = build_message(
                content,
                recipient=Address(message.recipient),
                message_id=str(submission.id),
                domain=content.sender.email.rpartition("@")[2],
            )
            recipients.append(
                {
                    "Recipient": message.recipient,
                    "Kind": message.recipient_kind,
                    "Status": message.status.value,
                    "Attempts": message.attempts,
                    "LastReply": message.last_reply,
                    "Raw": raw.decode("utf-8", "replace"),
                }
            )
        return {
            "MessageID": str(submission.id),
            "Subject": content.subject,
            "Source": submission.source,
            "AcceptedAt": submission.created_on.isoformat(),
            "Recipients": recipients,
        }
