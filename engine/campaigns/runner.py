"""Campaigns that fall due: audience, fan-out into Messages, completion.

The runner keeps the account-wide truth in the event store and only a cache in
memory: which campaigns to look at (rebuilt from the log's Campaign events at
start) and each sending instance's audience. Fan-out is exactly-once: the
Messages of a batch have ids derived from the instance and the recipient's
position, and are saved in one transaction with the instance's count of them,
so a crash anywhere resumes at the first uncounted recipient. It stays at most
``window`` messages ahead of delivery, so that a pause or a cancel has little
to hold back and memory stays flat.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from adapters.faults import log_failure
from adapters.ports import ReportingStore
from domain.campaign import (
    Campaign,
    CampaignEmail,
    CampaignInstance,
    CampaignStatus,
    SavedSegment,
    campaign_message_id,
    fanout_id,
)
from domain.content import Address, EmailContent
from domain.creation import create
from domain.lists import EMAIL_FIELD, SubscriberList
from domain.message import CAMPAIGN_CANCELLED, Message, MessageStatus
from domain.submission import Submission
from engine.application import Sendstream
from projections.stats import campaign_figures

log = logging.getLogger(__name__)

AUDIENCE_CHUNK = 5000
FANOUT_BATCH = 1000


class CampaignRunner:
    def __init__(
        self,
        app: Sendstream,
        sender_domain_for: Callable[[UUID, str], UUID | None],
        finished_count: Callable[[UUID], int],
        held_messages: Callable[[UUID], list[UUID]],
        window: int = 20_000,
    ) -> None:
        self._app = app
        self._sender_domain_for = sender_domain_for
        self._finished_count = finished_count
        self._held_messages = held_messages
        self._window = window
        self._watch: set[UUID] = set()
        self._watch_lock = threading.Lock()
        self._position = 0
        self._instances: dict[UUID, CampaignInstance] = {}
        # Per instance: the campaign's pause count whose held messages were released, and
        # until when to keep looking (a worker may still hold one for a moment after Resume).
        self._released: dict[UUID, tuple[int, float]] = {}
        self._topics = [
            get_topic(cls)
            for cls in vars(Campaign).values()
            if isinstance(cls, type) and issubclass(cls, Campaign.Event)
        ]

    def watch(self, campaign_id: UUID) -> None:
        """Look at this campaign on the next tick (a command just changed it)."""
        with self._watch_lock:
            self._watch.add(campaign_id)

    def _follow_log(self) -> None:
        # Up to the newest event now, and no further: past it once, the events of other
        # aggregates (nearly all of them) are never scanned again.
        newest = self._app.recorder.max_notification_id() or 0
        while self._position < newest:
            notifications = self._app.recorder.select_notifications(
                start=self._position, limit=1000, stop=newest, topics=self._topics,
                inclusive_of_start=False,
            )  # fmt: skip
            if not notifications:
                self._position = newest
                return
            self._position = notifications[-1].id
            with self._watch_lock:
                self._watch.update(UUID(str(n.originator_id)) for n in notifications)

    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception as error:
                log_failure(log, "campaigns: tick failed", error)
            stop.wait(interval)

    def tick(self, now: datetime | None = None) -> None:
        self._follow_log()
        with self._watch_lock:
            watched = list(self._watch)
        for campaign_id in watched:
            try:
                keep = self._advance(campaign_id, now or datetime.now(UTC))
            except IntegrityError:
                keep = True  # a command changed it meanwhile: look again next tick
            if not keep:
                with self._watch_lock:
                    self._watch.discard(campaign_id)

    def _advance(self, campaign_id: UUID, now: datetime) -> bool:
        """Move one campaign along; False once there is nothing more to do for it."""
        from domain.campaign_schedule import Schedule, first_due

        try:
            campaign = self._app._get(campaign_id, Campaign)
        except AggregateNotFoundError:
            return False
        status = campaign.status
        if status is CampaignStatus.CANCELLED or (campaign.is_deleted and not campaign.is_final):
            self._stop_instance(campaign)
            return False
        if status in (CampaignStatus.SENT, CampaignStatus.FAILED, CampaignStatus.DRAFT):
            return False
        if status is CampaignStatus.READY:
            due = first_due(Schedule.from_dict(campaign.schedule), now)
            if due is None:
                return False
            if due > now:
                campaign.schedule_for(due)
                self._app.save(campaign)
                return True
            self._start(campaign, now)
            return True
        if status is CampaignStatus.SCHEDULED:
            if campaign.due_at is not None and campaign.due_at <= now:
                self._start(campaign, now)
            return True
        if status is CampaignStatus.PENDING:
            self._resolve_audience(campaign, now)
            return True
        if status is CampaignStatus.SENDING:
            self._fan_out(campaign, now)
            return True
        return True  # Paused: wait for Resume

    def _start(self, campaign: Campaign, now: datetime) -> None:
        campaign.start_instance(now)
        self._app.save(campaign)
        self._resolve_audience(campaign, now)

    # The audience, resolved once per instance and recorded before any message exists.

    def _resolve_audience(self, campaign: Campaign, now: datetime) -> None:
        instance_id = campaign.current_instance
        assert instance_id is not None
        try:
            self._app._get(fanout_id(instance_id), CampaignInstance)
        except AggregateNotFoundError:
            pass
        else:  # recorded by a run that stopped before marking the campaign as sending
            campaign.mark_sending(now)
            self._app.save(campaign)
            return
        email = self._email(campaign)
        domain_id = (
            self._sender_domain_for(campaign.account_id, email.from_email) if email else None
        )
        if email is None or domain_id is None:
            campaign.fail(
                "its email is gone or its From address is on no active sender domain", now
            )
            self._app.save(campaign)
            return
        recipients, suppressed, excluded = self._audience(campaign)
        if not recipients:
            campaign.fail("no recipients", now)
            self._app.save(campaign)
            return
        instance = CampaignInstance(
            id=fanout_id(instance_id),
            instance_id=instance_id,
            campaign_id=campaign.id,
            account_id=campaign.account_id,
            domain_id=domain_id,
            number=campaign.instances_started,
        )
        for start in range(0, len(recipients), AUDIENCE_CHUNK):
            instance.record_audience(recipients[start : start + AUDIENCE_CHUNK])
        for start in range(0, len(suppressed), AUDIENCE_CHUNK):
            instance.record_suppressed(suppressed[start : start + AUDIENCE_CHUNK])
        instance.complete_audience(total=len(recipients), excluded=excluded)
        content = campaign_content(email, campaign.tags)
        submission = Submission(
            id=instance_id,
            account_id=campaign.account_id,
            domain_id=domain_id,
            source="campaign",
            content=content.to_dict(),
            message_ids=[],
        )
        campaign.mark_sending(now)
        self._app.save(instance, submission, campaign)
        self._instances[instance_id] = instance

    def _email(self, campaign: Campaign) -> CampaignEmail | None:
        if campaign.email_id is None:
            return None
        try:
            email = self._app._get(campaign.email_id, CampaignEmail)
        except AggregateNotFoundError:
            return None
        return None if email.is_deleted else email

    def _audience(
        self, campaign: Campaign
    ) -> tuple[list[dict[str, str]], list[dict[str, str]], int]:
        """Lists and segments, minus exclusions and the account's suppressions, each address
        once (with the fields of the first list it was found in)."""
        from domain.segments import evaluate, parse_segment

        audience = campaign.audience
        lists: dict[str, list[dict[str, str]]] = {}

        def members(list_id: str) -> list[dict[str, str]]:
            if list_id not in lists:
                try:
                    found = self._app._get(UUID(list_id), SubscriberList)
                except (AggregateNotFoundError, ValueError):
                    lists[list_id] = []
                else:
                    usable = found.account_id == campaign.account_id and not found.is_deleted
                    lists[list_id] = found.active_subscribers() if usable else []
            return lists[list_id]

        by_email: dict[str, dict[str, str]] = {}
        if "rules" in audience:
            segment = parse_segment(audience["rules"])
            for criterion in segment.criteria:
                for fields in members(criterion.list_id):
                    by_email.setdefault(fields[EMAIL_FIELD], fields)
            wanted = evaluate(segment, {c.list_id: members(c.list_id) for c in segment.criteria})
            chosen = [by_email[email] for email in wanted if email in by_email]
            excluded_emails: set[str] = set()
        else:
            # Each id is a list or a saved segment (whose rules pick from their own lists).
            def audience_of(source_id: str) -> list[dict[str, str]]:
                saved = self._saved_segment(source_id, campaign.account_id)
                if saved is None:
                    return members(source_id)
                segment = parse_segment(saved.bundle)
                fields_of: dict[str, dict[str, str]] = {}
                for criterion in segment.criteria:
                    for fields in members(criterion.list_id):
                        fields_of.setdefault(fields[EMAIL_FIELD], fields)
                wanted = evaluate(
                    segment, {c.list_id: members(c.list_id) for c in segment.criteria}
                )
                return [fields_of[email] for email in wanted if email in fields_of]

            for source_id in audience.get("include", []):
                for fields in audience_of(source_id):
                    by_email.setdefault(fields[EMAIL_FIELD], fields)
            excluded_emails = {
                f[EMAIL_FIELD]
                for source_id in audience.get("exclude", [])
                for f in audience_of(source_id)
            }
            chosen = [f for email, f in by_email.items() if email not in excluded_emails]
        suppressions = self._app.suppression_list(campaign.account_id)
        kept, suppressed = [], []
        for fields in chosen:
            reason = suppressions.reason_for(fields[EMAIL_FIELD]) if suppressions else None
            if reason is None:
                kept.append(fields)
            else:
                suppressed.append({"EmailAddress": fields[EMAIL_FIELD], "Reason": reason})
        return kept, suppressed, len(by_email) - len(kept)

    def _saved_segment(self, segment_id: str, account_id: UUID) -> SavedSegment | None:
        try:
            found = self._app._get(UUID(segment_id), SavedSegment)
        except (AggregateNotFoundError, ValueError):
            return None
        return found if found.account_id == account_id and not found.is_deleted else None

    # Fan-out.

    def _instance(self, instance_id: UUID) -> CampaignInstance:
        instance = self._instances.get(instance_id)
        if instance is None:
            instance = self._app._get(fanout_id(instance_id), CampaignInstance)
            self._instances[instance_id] = instance
        return instance

    def _fan_out(self, campaign: Campaign, now: datetime) -> None:
        from domain.campaign_schedule import Schedule, next_due

        assert campaign.current_instance is not None
        instance = self._instance(campaign.current_instance)
        self._release_after_pauses(campaign, instance)
        finished = self._finished_count(instance.instance_id)
        while instance.created < instance.total and instance.created - finished < self._window:
            self._create_batch(campaign, instance)
        if instance.created >= instance.total and finished >= instance.total:
            following = next_due(
                Schedule.from_dict(campaign.schedule), now, campaign.instances_started
            )
            campaign.finish_instance(now, following)
            instance.finish(now)
            self._app.save(campaign, instance)
            self._instances.pop(instance.instance_id, None)

    def _create_batch(self, campaign: Campaign, instance: CampaignInstance) -> None:
        email = self._email(campaign)
        sender = email.from_email if email else ""
        subject = email.subject if email else ""
        start = instance.created
        end = min(start + FANOUT_BATCH, instance.total)
        messages = []
        for index in range(start, end):
            fields = instance.audience[index]
            message = create(
                Message,
                "Accepted",
                id=campaign_message_id(instance.instance_id, index),
                submission_id=instance.instance_id,
                account_id=instance.account_id,
                domain_id=instance.domain_id,
                recipient=fields[EMAIL_FIELD],
                recipient_kind="to",
                sender=sender,
                subject=subject,
                tags=list(campaign.tags),
                campaign_id=str(campaign.id),
                merge_fields=fields,
            )
            message.queue()
            messages.append(message)
        instance.count_batch(end)
        try:
            self._app.save(instance, *messages)
        except IntegrityError:
            # Someone else counted this batch (another runner): start again from the store.
            self._instances.pop(instance.instance_id, None)
            raise

    def _release_after_pauses(self, campaign: Campaign, instance: CampaignInstance) -> None:
        """After a pause (seen now, or before a restart), release held messages for a few
        seconds; otherwise spare the reporting tables the question."""
        seen, until = self._released.get(instance.instance_id, (0, 0.0))
        now = time.monotonic()
        if campaign.pause_count != seen:
            seen, until = campaign.pause_count, now + 3.0
            self._released[instance.instance_id] = (seen, until)
        if now < until:
            self._release_held(instance)

    def _release_held(self, instance: CampaignInstance) -> None:
        """Messages held while the campaign was paused go back to the queue once it sends."""
        released = []
        for message_id in self._held_messages(instance.instance_id):
            try:
                message = self._app.message(message_id)
            except AggregateNotFoundError:
                continue
            if message.status is MessageStatus.HELD:
                message.queue()
                released.append(message)
        if released:
            self._app.save(*released)

    def _stop_instance(self, campaign: Campaign) -> None:
        """A cancelled campaign: its waiting messages fail, as events, and none is sent."""
        if campaign.current_instance is None:
            return
        try:
            instance = self._instance(campaign.current_instance)
        except AggregateNotFoundError:
            return
        if instance.finished:
            return
        stopped = []
        for index in range(instance.created):
            try:
                message = self._app.message(campaign_message_id(instance.instance_id, index))
            except AggregateNotFoundError:
                continue
            if message.status in (MessageStatus.QUEUED, MessageStatus.HELD):
                message.fail(reason=CAMPAIGN_CANCELLED, reply_text="the campaign was cancelled")
                stopped.append(message)
            if len(stopped) >= 1000:
                self._app.save(*stopped)
                stopped = []
        instance.finish(datetime.now(UTC))
        self._app.save(instance, *stopped)
        self._instances.pop(instance.instance_id, None)


def campaign_content(email: CampaignEmail, tags: Iterable[str] = ()) -> EmailContent:
    """What a campaign's email sends, before each recipient's merge tags are filled."""
    return EmailContent(
        subject=email.subject,
        sender=Address(email.from_email, email.from_name),
        to=(),
        reply_to=(Address(email.reply_to, ""),) if email.reply_to else (),
        html=email.html or None,
        plain=email.plain or None,
        tags=tuple(tags),
    )


def campaign_statistics(store: ReportingStore, campaign_id: UUID) -> dict[str, Any]:
    """Campaign.Get's statistics, from the campaign rollup (one query, whatever the size)."""
    rows = campaign_figures(store, campaign_id)
    instances: dict[UUID, list[dict[str, Any]]] = {}
    for row in rows:
        instances.setdefault(row["submission_id"], []).append(row)

    def total(kind: str, of: list[dict[str, Any]] = rows, bounce: str | None = None) -> int:
        return sum(
            int(r["total"])
            for r in of
            if r["event_type"] == kind and (bounce is None or r["bounce_type"] == bounce)
        )

    def unique(kind: str) -> int:
        return sum(int(r["unique_messages"]) for r in rows if r["event_type"] == kind)

    delivered = total("delivered")
    bounced = total("bounced")
    soft = total("bounced", bounce="soft")
    hard = bounced - soft
    sent = delivered + bounced
    delivered_rows = [r for r in rows if r["event_type"] == "delivered"]
    throughput = 0.0
    if delivered > 1:
        first = min(r["first"] for r in delivered_rows)
        last = max(r["last"] for r in delivered_rows)
        seconds = (last - first).total_seconds()
        throughput = delivered / seconds if seconds > 0 else float(delivered)
    # Deliveries in the current and the previous minute, over the time they span.
    recent = sum(int(r["recent"]) for r in delivered_rows)
    now = datetime.now(UTC)
    window = (now - now.replace(second=0, microsecond=0)).total_seconds() + 60
    recent_rate = recent / window if recent else 0.0

    def ratio(part: int) -> str:
        return f"{(100 * part / sent):.2f}" if sent else "0.00"

    started = {
        submission: min(r["first"] for r in group) for submission, group in instances.items()
    }
    return {
        "TotalRecipients": total("accepted"),
        "TotalSent": sent,
        "TotalDelivered": delivered,
        "TotalHardBounces": hard,
        "TotalSoftBounces": soft,
        "TotalDeferred": total("deferred"),
        "HardBounceRatio": ratio(hard),
        "SoftBounceRatio": ratio(soft),
        "TotalFailed": total("failed"),
        "Statistics": {
            "OpenStatistics": {"TotalOpens": total("open"), "UniqueOpens": unique("open")},
            "ClickStatistics": {"TotalClicks": total("click"), "UniqueClicks": unique("click")},
            "TotalUnsubscribes": total("unsubscribe"),
            "TotalComplaints": total("complaint"),
        },
        # A recursive campaign's sends, each with its own figures.
        "Instances": [
            {
                "Number": number,
                "InstanceID": str(submission),
                "StartedAt": started[submission].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Recipients": total("accepted", instances[submission]),
                "Delivered": total("delivered", instances[submission]),
                "Bounced": total("bounced", instances[submission]),
                "Failed": total("failed", instances[submission]),
            }
            for number, submission in enumerate(sorted(started, key=started.__getitem__), 1)
        ],
        "CampaignThroughput": {
            "EmailsPerSecond": round(recent_rate if recent_rate > 0 else throughput, 1),
            "AverageEmailsPerSecond": round(throughput, 1),
        },
    }
