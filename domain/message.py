"""The Message aggregate: one recipient's copy of a submitted email, and its delivery story.

A submission with three recipients becomes three Messages, so that each
recipient's delivery, bounce or deferral is recorded on its own and can be
replayed exactly.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event


class MessageStatus(StrEnum):
    ACCEPTED = "accepted"  # recorded, not yet queued
    SCHEDULED = "scheduled"  # waiting for its SendAt time
    QUEUED = "queued"  # ready for a delivery worker
    SENDING = "sending"  # a worker has claimed it and is talking SMTP
    HELD = "held"  # its campaign is paused: queued again when it resumes
    DEFERRED = "deferred"  # temporary failure, waiting for the next attempt
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    FAILED = "failed"


# Why a message failed without an SMTP reply (``failure_reason``).
QUEUE_CLEARED = "queue_cleared"  # its domain's queue was cleared, or the domain deleted
CAMPAIGN_CANCELLED = "campaign_cancelled"

FINAL_STATUSES = frozenset({MessageStatus.DELIVERED, MessageStatus.BOUNCED, MessageStatus.FAILED})


class IllegalTransition(Exception):
    """A command does not apply to the message in its present status."""


def message_id_for(submission_id: UUID, recipient_index: int) -> UUID:
    """Each recipient's Message has an id derived from the submission, so retries are idempotent."""
    return uuid5(submission_id, f"recipient:{recipient_index}")


class Message(Aggregate):
    """One recipient's delivery of a submission."""

    @event("Accepted")
    def __init__(
        self,
        id: UUID,
        submission_id: UUID,
        account_id: UUID,
        domain_id: UUID,
        recipient: str,
        recipient_kind: str,
        sender: str,
        subject: str,
        tags: list[str],
        campaign_id: str = "",
        merge_fields: dict[str, str] | None = None,
        custom_id: str = "",
    ) -> None:
        self._id = id
        self.submission_id = submission_id
        self.account_id = account_id
        self.domain_id = domain_id
        self.recipient = recipient
        self.recipient_kind = recipient_kind
        self.sender = sender
        self.subject = subject
        self.tags = tags
        self.campaign_id = campaign_id
        self.custom_id = custom_id
        # A campaign recipient's list fields, for the merge tags of the campaign's content.
        self.merge_fields = merge_fields
        self.send_at: datetime | None = None
        self.status = MessageStatus.ACCEPTED
        self.attempts = 0
        self.next_attempt_at: datetime | None = None
        self.last_reply: dict[str, Any] | None = None
        self.failure_reason: str | None = None
        self.opens = 0
        self.clicks = 0
        self.unsubscribed = False
        self.complained = False
        self.bounce_kind: str | None = None
        self.route_changes = 0  # pauses and resumptions its replies caused
        self.postponed_until: datetime | None = None

    @property
    def lifetime_starts_at(self) -> datetime:
        """When its time to be delivered began: a message held for its SendAt or
        postponed for a warm-up cap has spent none of its lifetime waiting."""
        return max(
            moment
            for moment in (self.created_on, self.send_at, self.postponed_until)
            if moment is not None
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    # Commands: each checks the rule, then records exactly one event.

    def schedule(self, send_at: datetime) -> None:
        if self.status is not MessageStatus.ACCEPTED:
            raise IllegalTransition(f"cannot schedule a {self.status} message")
        self._scheduled(send_at=send_at)

    def queue(self) -> None:
        if self.status not in (
            MessageStatus.ACCEPTED,
            MessageStatus.SCHEDULED,
            MessageStatus.DEFERRED,
            MessageStatus.HELD,
        ):
            raise IllegalTransition(f"cannot queue a {self.status} message")
        # The event ``_queued`` records, triggered without the library's decorator: its
        # generic coercion of arguments, for a method that takes none, was a third of the
        # cost of queuing every message of a batch.
        self.trigger_event(self.Queued)  # type: ignore[attr-defined]

    def hold(self, reason: str) -> None:
        """Its campaign is paused: it waits, unsent, until the campaign resumes."""
        if self.status is not MessageStatus.QUEUED:
            raise IllegalTransition(f"cannot hold a {self.status} message")
        self._held(reason=reason)

    def postpone(self, until: datetime, reason: str) -> None:
        """No address it may leave from has room (a warm-up cap): it waits, unsent and
        without an attempt counted, until ``until``."""
        if self.status is not MessageStatus.QUEUED:
            raise IllegalTransition(f"cannot postpone a {self.status} message")
        self._postponed(until=until, reason=reason)

    def note_route_change(
        self, kind: str, route: str, source_ip: str, seconds: float, reason: str
    ) -> None:
        """This message's reply paused (``throttled``), stopped (``suspended``) or freed
        again (``resumed``) the mail from ``source_ip`` to ``route`` (a provider or an MX
        host): recorded in its history, where the reply is."""
        record = {
            "throttled": self._route_throttled,
            "suspended": self._route_suspended,
            "resumed": self._route_resumed,
        }[kind]
        record(route=route, source_ip=source_ip, seconds=seconds, reason=reason)

    def start_attempt(self) -> None:
        if self.status is not MessageStatus.QUEUED:
            raise IllegalTransition(f"cannot attempt delivery of a {self.status} message")
        self._delivery_attempted(attempt=self.attempts + 1)

    def record_delivered(
        self,
        code: int,
        enhanced_status: str,
        reply_text: str,
        remote_mta: str = "",
        tls: str = "",
        source_ip: str = "",
    ) -> None:
        """``remote_mta`` names the server that answered (``host[address]``), ``tls`` the
        session's TLS version, ``source_ip`` the address we sent from; empty where the way
        out does not say (the sandbox)."""
        self._require_sending()
        self._delivered(
            code=code, enhanced_status=enhanced_status, reply_text=reply_text,
            remote_mta=remote_mta, tls=tls, source_ip=source_ip,
        )  # fmt: skip

    def record_deferred(
        self,
        code: int,
        enhanced_status: str,
        reply_text: str,
        now: datetime,
        first_accepted_at: datetime,
        retry_schedule: list[timedelta],
        lifetime: timedelta,
        remote_mta: str = "",
        tls: str = "",
        source_ip: str = "",
    ) -> None:
        """A temporary failure: wait and retry, unless the message has lived too long."""
        self._require_sending()
        delay = retry_schedule[min(self.attempts - 1, len(retry_schedule) - 1)]
        retry_at = now + delay
        if retry_at - first_accepted_at > lifetime:
            self._failed(
                reason="expired",
                code=code,
                enhanced_status=enhanced_status,
                reply_text=reply_text,
            )
            return
        self._deferred(
            code=code,
            enhanced_status=enhanced_status,
            reply_text=reply_text,
            retry_at=retry_at,
            remote_mta=remote_mta,
            tls=tls,
            source_ip=source_ip,
        )

    def record_bounced(
        self,
        code: int,
        enhanced_status: str,
        reply_text: str,
        kind: str = "hard",
        remote_mta: str = "",
        tls: str = "",
        source_ip: str = "",
    ) -> None:
        """A permanent refusal at SMTP time; ``kind`` is hard or block (policy, 5.7.x)."""
        self._require_sending()
        self._bounced(
            code=code, enhanced_status=enhanced_status, reply_text=reply_text, kind=kind,
            remote_mta=remote_mta, tls=tls, source_ip=source_ip,
        )  # fmt: skip

    def fail(
        self, reason: str, code: int = 0, enhanced_status: str = "", reply_text: str = ""
    ) -> None:
        if self.is_final:
            raise IllegalTransition(f"cannot fail a {self.status} message")
        self._failed(
            reason=reason, code=code, enhanced_status=enhanced_status, reply_text=reply_text
        )

    # What happens after a message left us: engagement and feedback. Each needs the message
    # to have been sent at least once; none changes whether it was delivered, except a
    # bounce report, which is the receiving system taking the delivery back.

    def _require_sent(self, what: str) -> None:
        if self.attempts == 0:
            raise IllegalTransition(f"cannot record {what} for a message never sent")

    def record_open(self, ip: str, user_agent: str, machine: bool, at: datetime) -> None:
        self._require_sent("an open")
        self._opened(ip=ip, user_agent=user_agent, machine=machine, at=at)

    def record_click(
        self,
        url: str,
        position: int,
        html: bool,
        ip: str,
        user_agent: str,
        machine: bool,
        at: datetime,
    ) -> None:
        self._require_sent("a click")
        self._clicked(
            url=url, position=position, html=html, ip=ip, user_agent=user_agent,
            machine=machine, at=at,
        )  # fmt: skip

    def record_unsubscribe(self, kind: str, ip: str, at: datetime) -> None:
        """``kind`` is the Event API's: ``u`` by the recipient's link, ``m`` otherwise."""
        if kind not in ("u", "m"):
            raise IllegalTransition(f"unknown unsubscribe type {kind!r}")
        if not self.unsubscribed:
            self._unsubscribed(kind=kind, ip=ip, at=at)

    def record_bounce_report(
        self,
        kind: str,
        code: int,
        enhanced_status: str,
        diagnostic: str,
        definitive: bool,
        at: datetime,
    ) -> None:
        """An asynchronous bounce (a DSN), after the receiving server had accepted it."""
        self._require_sent("a bounce")
        self._bounce_reported(
            kind=kind, code=code, enhanced_status=enhanced_status, diagnostic=diagnostic,
            definitive=definitive, at=at,
        )  # fmt: skip

    def record_complaint(
        self, abuse_id: str, feedback_type: str, user_agent: str, at: datetime
    ) -> None:
        self._require_sent("a complaint")
        if not self.complained:
            self._complained(
                abuse_id=abuse_id, feedback_type=feedback_type, user_agent=user_agent, at=at
            )

    @event("Opened")
    def _opened(self, ip: str, user_agent: str, machine: bool, at: datetime) -> None:
        self.opens += 1

    @event("Clicked")
    def _clicked(
        self,
        url: str,
        position: int,
        html: bool,
        ip: str,
        user_agent: str,
        machine: bool,
        at: datetime,
    ) -> None:
        self.clicks += 1

    @event("Unsubscribed")
    def _unsubscribed(self, kind: str, ip: str, at: datetime) -> None:
        self.unsubscribed = True

    @event("BounceReported")
    def _bounce_reported(
        self,
        kind: str,
        code: int,
        enhanced_status: str,
        diagnostic: str,
        definitive: bool,
        at: datetime,
    ) -> None:
        if kind != "soft":
            self.status = MessageStatus.BOUNCED
        self.bounce_kind = kind
        self.last_reply = {"code": code, "enhanced_status": enhanced_status, "text": diagnostic}

    @event("Complained")
    def _complained(self, abuse_id: str, feedback_type: str, user_agent: str, at: datetime) -> None:
        self.complained = True

    def _require_sending(self) -> None:
        if self.status is not MessageStatus.SENDING:
            raise IllegalTransition(f"no delivery attempt is open on a {self.status} message")

    # Events: bodies only assign state.

    @event("Scheduled")
    def _scheduled(self, send_at: datetime) -> None:
        self.status = MessageStatus.SCHEDULED
        self.send_at = send_at
        self.next_attempt_at = send_at

    @event("Queued")
    def _queued(self) -> None:
        self.status = MessageStatus.QUEUED
        self.next_attempt_at = None

    @event("Held")
    def _held(self, reason: str) -> None:
        self.status = MessageStatus.HELD

    @event("Postponed")
    def _postponed(self, until: datetime, reason: str) -> None:
        self.status = MessageStatus.SCHEDULED
        self.next_attempt_at = until
        self.postponed_until = until

    @event("RouteThrottled")
    def _route_throttled(self, route: str, source_ip: str, seconds: float, reason: str) -> None:
        self.route_changes += 1

    @event("RouteSuspended")
    def _route_suspended(self, route: str, source_ip: str, seconds: float, reason: str) -> None:
        self.route_changes += 1

    @event("RouteResumed")
    def _route_resumed(self, route: str, source_ip: str, seconds: float, reason: str) -> None:
        self.route_changes += 1

    @event("DeliveryAttempted")
    def _delivery_attempted(self, attempt: int) -> None:
        self.status = MessageStatus.SENDING
        self.attempts = attempt

    # remote_mta, tls and source_ip came with direct delivery: events stored before it lack
    # them, and replay gives them the defaults.
    @event("Delivered")
    def _delivered(
        self,
        code: int,
        enhanced_status: str,
        reply_text: str,
        remote_mta: str = "",
        tls: str = "",
        source_ip: str = "",
    ) -> None:
        self.status = MessageStatus.DELIVERED
        self.last_reply = {"code": code, "enhanced_status": enhanced_status, "text": reply_text}

    @event("Deferred")
    def _deferred(
        self,
        code: int,
        enhanced_status: str,
        reply_text: str,
        retry_at: datetime,
        remote_mta: str = "",
        tls: str = "",
        source_ip: str = "",
    ) -> None:
        self.status = MessageStatus.DEFERRED
        self.next_attempt_at = retry_at
        self.last_reply = {"code": code, "enhanced_status": enhanced_status, "text": reply_text}

    @event("Bounced")
    def _bounced(
        self,
        code: int,
        enhanced_status: str,
        reply_text: str,
        kind: str = "hard",
        remote_mta: str = "",
        tls: str = "",
        source_ip: str = "",
    ) -> None:
        self.status = MessageStatus.BOUNCED
        self.bounce_kind = kind
        self.last_reply = {"code": code, "enhanced_status": enhanced_status, "text": reply_text}

    @event("Failed")
    def _failed(self, reason: str, code: int, enhanced_status: str, reply_text: str) -> None:
        self.status = MessageStatus.FAILED
        self.failure_reason = reason
        self.next_attempt_at = None
        self.last_reply = {"code": code, "enhanced_status": enhanced_status, "text": reply_text}
