"""Campaigns: an email sent to an audience of list subscribers, once or on a schedule.

``CampaignEmail`` is the content (the ``RelEmailID`` of the documents), with merge
tags. ``Campaign`` is the lifecycle; each send is an *instance* (a recursive campaign
has several), whose fan-out into one ``Message`` per recipient is recorded on a
``CampaignInstance`` so that a crash in the middle resumes exactly where it stopped.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event


class CampaignStatus(StrEnum):
    DRAFT = "Draft"
    READY = "Ready"  # approved, waiting for its first due time
    SCHEDULED = "Scheduled"  # approved, due at a future time
    PENDING = "Pending"  # due: its audience is being resolved
    SENDING = "Sending"
    PAUSED = "Paused"
    SENT = "Sent"
    CANCELLED = "Cancelled"
    FAILED = "Failed"


FINAL = frozenset({CampaignStatus.SENT, CampaignStatus.CANCELLED, CampaignStatus.FAILED})
EDITABLE = frozenset({CampaignStatus.DRAFT, CampaignStatus.READY, CampaignStatus.SCHEDULED})
# A campaign whose messages may be delivered now.
DELIVERING = frozenset({CampaignStatus.PENDING, CampaignStatus.SENDING})


class IllegalCampaignTransition(Exception):
    def __init__(self, status: CampaignStatus, action: str) -> None:
        super().__init__(f"cannot {action} a campaign that is {status.value}")
        self.status = status


def instance_id_for(campaign_id: UUID, number: int) -> UUID:
    """Instance ids are derived, so starting an instance twice is a conflict, not a copy."""
    return uuid5(campaign_id, f"instance:{number}")


def fanout_id(instance_id: UUID) -> UUID:
    """The instance's fan-out record; the instance id itself names its content (the
    ``Submission`` its Messages point to)."""
    return uuid5(instance_id, "fan-out")


def campaign_message_id(instance_id: UUID, index: int) -> UUID:
    """The n-th recipient's Message of an instance: a re-run fan-out finds it already there."""
    return uuid5(instance_id, f"recipient:{index}")


class CampaignEmail(Aggregate):
    """Subject, sender and bodies of a campaign, with ``%Subscriber:Field|fallback%`` tags."""

    @event("Created")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        name: str,
        subject: str,
        from_name: str,
        from_email: str,
        reply_to: str,
        html: str,
        plain: str,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.name = name
        self.subject = subject
        self.from_name = from_name
        self.from_email = from_email
        self.reply_to = reply_to
        self.html = html
        self.plain = plain
        self.is_deleted = False

    @event("Updated")
    def update(
        self,
        name: str,
        subject: str,
        from_name: str,
        from_email: str,
        reply_to: str,
        html: str,
        plain: str,
    ) -> None:
        self.name = name
        self.subject = subject
        self.from_name = from_name
        self.from_email = from_email
        self.reply_to = reply_to
        self.html = html
        self.plain = plain

    @event("Deleted")
    def delete(self) -> None:
        self.is_deleted = True


class Campaign(Aggregate):
    @event("Created")
    def __init__(self, id: UUID, account_id: UUID, name: str, created_at: datetime) -> None:
        self._id = id
        self.account_id = account_id
        self.name = name
        self.created_at = created_at
        self.status = CampaignStatus.DRAFT
        self.email_id: UUID | None = None
        self.schedule: dict[str, Any] = {"kind": "Immediate"}
        self.audience: dict[str, Any] = {}
        self.options: dict[str, Any] = {}
        self.tags: list[str] = []
        self.due_at: datetime | None = None
        self.instances_started = 0
        self.current_instance: UUID | None = None
        self.sending_started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.failure_reason = ""
        self.is_deleted = False
        self.pause_count = 0

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    def _require(self, allowed: frozenset[CampaignStatus], action: str) -> None:
        if self.status not in allowed:
            raise IllegalCampaignTransition(self.status, action)

    # Editing.

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name

    def change(
        self,
        email_id: UUID | None,
        schedule: dict[str, Any] | None,
        audience: dict[str, Any] | None,
    ) -> None:
        """Content, schedule or audience: only before sending, and an approved campaign goes
        back to Ready so that its due time is worked out again."""
        self._require(EDITABLE, "edit")
        self._changed(email_id=email_id, schedule=schedule, audience=audience)

    @event("Changed")
    def _changed(
        self,
        email_id: UUID | None,
        schedule: dict[str, Any] | None,
        audience: dict[str, Any] | None,
    ) -> None:
        if email_id is not None:
            self.email_id = email_id
        if schedule is not None:
            self.schedule = schedule
        if audience is not None:
            self.audience = audience
        if self.status is CampaignStatus.SCHEDULED:
            self.status = CampaignStatus.READY
            self.due_at = None

    @event("OptionsSet")
    def set_options(self, options: dict[str, Any], tags: list[str]) -> None:
        self.options = options
        self.tags = tags

    # Lifecycle.

    def approve(self, at: datetime) -> None:
        self._require(frozenset({CampaignStatus.DRAFT, CampaignStatus.READY}), "approve")
        if self.status is CampaignStatus.DRAFT:
            self._approved(at=at)

    @event("Approved")
    def _approved(self, at: datetime) -> None:
        self.status = CampaignStatus.READY

    def return_to_draft(self) -> None:
        self._require(EDITABLE, "return to draft")
        if self.status is not CampaignStatus.DRAFT:
            self._returned_to_draft()

    @event("ReturnedToDraft")
    def _returned_to_draft(self) -> None:
        self.status = CampaignStatus.DRAFT
        self.due_at = None

    def schedule_for(self, due_at: datetime) -> None:
        self._require(frozenset({CampaignStatus.READY, CampaignStatus.SCHEDULED}), "schedule")
        self._scheduled(due_at=due_at)

    @event("Scheduled")
    def _scheduled(self, due_at: datetime) -> None:
        self.status = CampaignStatus.SCHEDULED
        self.due_at = due_at

    def start_instance(self, at: datetime) -> UUID:
        """The due time has come: a new instance, whose audience is resolved next."""
        self._require(frozenset({CampaignStatus.READY, CampaignStatus.SCHEDULED}), "start")
        number = self.instances_started + 1
        instance_id = instance_id_for(self.id, number)
        self._instance_started(number=number, instance_id=instance_id, at=at)
        return instance_id

    @event("InstanceStarted")
    def _instance_started(self, number: int, instance_id: UUID, at: datetime) -> None:
        self.status = CampaignStatus.PENDING
        self.instances_started = number
        self.current_instance = instance_id
        self.due_at = None

    def mark_sending(self, at: datetime) -> None:
        self._require(frozenset({CampaignStatus.PENDING}), "start sending")
        self._sending(at=at)

    @event("SendingStarted")
    def _sending(self, at: datetime) -> None:
        self.status = CampaignStatus.SENDING
        self.sending_started_at = at

    def pause(self, at: datetime) -> None:
        self._require(DELIVERING, "pause")
        self._paused(at=at)

    @event("Paused")
    def _paused(self, at: datetime) -> None:
        self.status = CampaignStatus.PAUSED
        self.pause_count += 1

    def resume(self, at: datetime) -> None:
        self._require(frozenset({CampaignStatus.PAUSED}), "resume")
        self._resumed(at=at)

    @event("Resumed")
    def _resumed(self, at: datetime) -> None:
        self.status = CampaignStatus.SENDING

    def finish_instance(self, at: datetime, next_due: datetime | None) -> None:
        """Every message of the instance is final; a recursive campaign waits for its next
        instance, any other is sent."""
        self._require(frozenset({CampaignStatus.SENDING}), "finish")
        self._instance_finished(at=at, next_due=next_due)

    @event("InstanceFinished")
    def _instance_finished(self, at: datetime, next_due: datetime | None) -> None:
        self.finished_at = at
        if next_due is None:
            self.status = CampaignStatus.SENT
        else:
            self.status = CampaignStatus.SCHEDULED
            self.due_at = next_due

    def cancel(self, at: datetime) -> None:
        if self.is_final:
            raise IllegalCampaignTransition(self.status, "cancel")
        self._cancelled(at=at)

    @event("Cancelled")
    def _cancelled(self, at: datetime) -> None:
        self.status = CampaignStatus.CANCELLED
        self.due_at = None

    def fail(self, reason: str, at: datetime) -> None:
        self._require(frozenset({CampaignStatus.PENDING, CampaignStatus.SENDING}), "fail")
        self._failed(reason=reason, at=at)

    @event("Failed")
    def _failed(self, reason: str, at: datetime) -> None:
        self.status = CampaignStatus.FAILED
        self.failure_reason = reason

    def delete(self, at: datetime) -> None:
        if not self.is_deleted:
            self._deleted(at=at)

    @event("Deleted")
    def _deleted(self, at: datetime) -> None:
        self.is_deleted = True
        if not self.is_final:
            self.status = CampaignStatus.CANCELLED


class CampaignInstance(Aggregate):
    """One send of a campaign: its audience snapshot and how far its fan-out has come.

    The audience is recorded in chunks before any Message exists; each batch of
    Messages is saved in the same transaction as the ``BatchCreated`` that counts
    it, so after a crash the fan-out resumes at the first recipient not yet counted.
    """

    @event("Started")
    def __init__(
        self,
        id: UUID,
        instance_id: UUID,
        campaign_id: UUID,
        account_id: UUID,
        domain_id: UUID,
        number: int,
    ) -> None:
        self._id = id
        self.instance_id = instance_id
        self.campaign_id = campaign_id
        self.account_id = account_id
        self.domain_id = domain_id
        self.number = number
        self.audience: list[dict[str, str]] = []
        self.suppressed: list[dict[str, str]] = []
        self.audience_complete = False
        self.created = 0
        self.finished = False

    @event("AudienceRecorded")
    def record_audience(self, recipients: list[dict[str, str]]) -> None:
        self.audience.extend(recipients)

    @event("RecipientsSuppressed")
    def record_suppressed(self, recipients: list[dict[str, str]]) -> None:
        """Left out because the account's lists say so (``{"EmailAddress", "Reason"}``): kept
        as a record, never silently dropped."""
        self.suppressed.extend(recipients)

    @event("AudienceComplete")
    def complete_audience(self, total: int, excluded: int) -> None:
        self.audience_complete = True

    @event("BatchCreated")
    def count_batch(self, upto: int) -> None:
        self.created = upto

    @event("Finished")
    def finish(self, at: datetime) -> None:
        self.finished = True

    @property
    def total(self) -> int:
        return len(self.audience)


def library_id(account_id: UUID) -> UUID:
    return uuid5(account_id, "library")


class Library(Aggregate):
    """What an account has made for campaigns: its lists, emails and campaigns, so that they
    can be listed and names kept unique without scanning every aggregate."""

    @event("Opened")
    def __init__(self, id: UUID, account_id: UUID) -> None:
        self._id = id
        self.account_id = account_id
        self.lists: dict[UUID, str] = {}  # id → name
        self.emails: list[UUID] = []
        self.campaigns: list[UUID] = []
        self.segments: dict[UUID, str] = {}  # id → name

    @event("ListAdded")
    def add_list(self, list_id: UUID, name: str) -> None:
        self.lists[list_id] = name

    @event("ListRemoved")
    def remove_list(self, list_id: UUID) -> None:
        self.lists.pop(list_id, None)

    @event("EmailAdded")
    def add_email(self, email_id: UUID) -> None:
        self.emails.append(email_id)

    @event("EmailRemoved")
    def remove_email(self, email_id: UUID) -> None:
        if email_id in self.emails:
            self.emails.remove(email_id)

    @event("SegmentAdded")
    def add_segment(self, segment_id: UUID, name: str) -> None:
        self.segments[segment_id] = name

    @event("SegmentRemoved")
    def remove_segment(self, segment_id: UUID) -> None:
        self.segments.pop(segment_id, None)

    @event("CampaignAdded")
    def add_campaign(self, campaign_id: UUID) -> None:
        self.campaigns.append(campaign_id)

    @event("CampaignRemoved")
    def remove_campaign(self, campaign_id: UUID) -> None:
        if campaign_id in self.campaigns:
            self.campaigns.remove(campaign_id)


class SavedSegment(Aggregate):
    """A named audience rule (a ``RulesJsonBundle``) that campaigns name by id in
    ``RecipientListsAndSegments`` and ``Exclude_RecipientListsAndSegments``."""

    @event("Created")
    def __init__(self, id: UUID, account_id: UUID, name: str, bundle: dict[str, Any]) -> None:
        self._id = id
        self.account_id = account_id
        self.name = name
        self.bundle = bundle
        self.is_deleted = False

    @event("Deleted")
    def delete(self) -> None:
        self.is_deleted = True
