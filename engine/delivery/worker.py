"""The delivery worker: turns Queued events into SMTP transactions and records the outcome.

Exactly-once towards the recipient rests on the Message aggregate, not on the
stream: a worker claims each message (a DeliveryAttempted event, guarded by
optimistic concurrency) before it opens the SMTP transaction, and records each
reply as an event. A message re-read after a
restart is therefore never sent again. The one case the claim cannot settle is a
worker killed between the server's reply and our record of it: such a message is
recorded as Failed with reason ``interrupted`` (it may have arrived) rather than
risking a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from adapters.faults import log_failure
from adapters.metrics import DELIVERY_OUTCOMES
from adapters.ports import EventSource, MailTransport, SmtpOutcome
from adapters.templating import TemplateRefused
from adapters.throttle import KeyedThrottle
from domain.account import SenderDomain
from domain.bounces import classify
from domain.campaign import Campaign, CampaignStatus
from domain.content import EmailContent
from domain.message import CAMPAIGN_CANCELLED, QUEUE_CLEARED, Message, MessageStatus
from domain.providers import provider_of
from domain.routing import SourceAddress
from domain.share import DeliveryShare
from engine.application import Sendstream
from engine.delivery.handoff import ContentCache, FreshMessages, StreamedMessages
from engine.delivery.pools import Postpone, SourceChooser
from engine.delivery.rendering import MessageRenderer
from engine.eventlog.writer import BatchWriter
from engine.feedback.service import FeedbackService
from engine.keys import tracking_key, unsubscribe_mail_key, verp_key
from engine.settings import Settings

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"
_CAMPAIGN_RECHECK = 0.3  # seconds


def way_out(settings: Settings) -> str:
    """The ``source`` of the delivery outcomes of mail that left from no sending address of
    ours: ``relay:HOST`` through the relay, ``direct`` from the machine's own address (no
    ``SENDING_ADDRESSES``, or no session opened), ``sandbox`` when nothing is sent. Like the
    sending addresses, they come from the configuration: the label stays bounded."""
    if settings.outbound == "relay":
        return f"relay:{urlsplit(settings.smtp_relay_url).hostname or ''}"
    return settings.outbound


class DeliveryWorker:
    def __init__(
        self,
        app: Sendstream,
        writer: BatchWriter,
        source: EventSource,
        transport: MailTransport,
        batch_size: int = 500,
        fresh: FreshMessages | None = None,
        contents: ContentCache | None = None,
        renderer: MessageRenderer | None = None,
        feedback: FeedbackService | None = None,
        sources: SourceChooser | None = None,
        share: DeliveryShare | None = None,
    ) -> None:
        self._sources = sources
        self._share = share
        self._fresh = fresh
        self._streamed = StreamedMessages()
        self._feedback = feedback
        self._app = app
        self._writer = writer
        self._source = source
        self._transport = transport
        self._way_out = way_out(app.settings)
        self._batch_size = batch_size
        self._contents = contents or ContentCache(app)
        self._semaphore = asyncio.Semaphore(app.settings.delivery_concurrency)
        self._throttle = KeyedThrottle(
            app.settings.recipient_domain_concurrency, app.settings.recipient_domain_rate
        )
        self.delivered_count = 0
        self._domains: dict[UUID, SenderDomain] = {}
        # campaign id → (when read, its status or None if gone, its IPPool)
        self._campaigns: dict[str, tuple[float, CampaignStatus | None, str]] = {}
        self._renderer = renderer or MessageRenderer(
            self._contents,
            app.settings,
            tracking_key=tracking_key(app.settings),
            verp_key=verp_key(app.settings),
            unsubscribe_key=unsubscribe_mail_key(app.settings),
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self._start_streaming()
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as error:
                log_failure(log, "delivery: batch failed; it will be read again", error)
                await asyncio.to_thread(self._source.rewind)
                # The batch read again may hold messages it claimed without recording an
                # outcome: they are loaded from the store, where that claim is.
                await self._start_streaming()
                await asyncio.sleep(1.0)

    async def _start_streaming(self) -> None:
        newest = await asyncio.to_thread(self._app.recorder.max_notification_id)
        self._streamed = StreamedMessages(since=newest or 0)

    async def run_once(self, wait: float = 0.5) -> int:
        """One batch: poll (up to ``wait`` seconds), deliver, then commit."""
        envelopes = await asyncio.to_thread(self._source.poll, self._batch_size, wait)
        queued: dict[UUID, int] = {}
        for envelope in envelopes:
            if (
                self._share is not None
                and envelope.stream == "message"
                and not self._share.holds(envelope.aggregate_id)
            ):
                continue  # another delivery process's (a Kafka source hands out all)
            self._streamed.learn(envelope)
            if envelope.event_type == "Message.Queued":
                queued[envelope.aggregate_id] = envelope.aggregate_version
            elif (
                envelope.event_type == "Submission.Received"
                and self._transport.renders_messages
                and envelope.aggregate_id not in self._contents
            ):
                # The content arrives just before its messages: keep it rather than load it.
                self._contents.put(
                    envelope.aggregate_id, EmailContent.from_dict(envelope.data["content"])
                )
        handled = 0
        if queued:
            ready = await asyncio.to_thread(self._load, queued)
            # Every delivery ends before a failure is raised: none may still be claiming
            # while the batch is read again.
            results = await asyncio.gather(
                *(self._deliver(m) for m in ready), return_exceptions=True
            )
            failure = next((r for r in results if isinstance(r, BaseException)), None)
            if failure is not None:
                raise failure
            handled = sum(r for r in results if isinstance(r, int))
        # Only now is every effect of the batch durable, so only now may the position move.
        await asyncio.to_thread(self._source.commit)
        return handled

    def _load(self, queued: dict[UUID, int]) -> list[Message]:
        """The messages still waiting for delivery; settles those a dead worker left mid-attempt.

        ``queued`` maps each message to the version its Queued event gave it.
        """
        ready: list[Message] = []
        interrupted: list[Message] = []
        for message_id, version in queued.items():
            fresh = self._fresh.take(message_id, version) if self._fresh else None
            message = (
                fresh or self._streamed.take(message_id, version) or self._app.message(message_id)
            )
            if message.status is MessageStatus.QUEUED:
                ready.append(message)
            elif message.status is MessageStatus.SENDING:
                # Claimed by a worker that died before it recorded the reply: the server may
                # have the message already, so it is not sent again.
                message.fail(
                    reason=INTERRUPTED,
                    reply_text="the delivery worker stopped during the SMTP transaction; "
                    "not retried, to avoid a duplicate",
                )
                interrupted.append(message)
        # Read each domain of the batch afresh: a cleared queue or a deleted domain must stop
        # its messages here, and a verified domain's key signs them.
        self._domains = {}
        for domain_id in {message.domain_id for message in ready}:
            with contextlib.suppress(AggregateNotFoundError):
                self._domains[domain_id] = self._app.domain(domain_id)
        cleared = [m for m in ready if self._was_cleared(m)]
        for message in cleared:
            message.fail(reason=QUEUE_CLEARED, reply_text="the domain's queue was cleared")
        self._campaigns.clear()  # each campaign read afresh once per batch
        for message in ready:
            if message.campaign_id and message.status is MessageStatus.QUEUED:
                self._stop_if_campaign_stopped(message)
        stopped = [m for m in ready if m.status is not MessageStatus.QUEUED]
        if stopped:
            ready = [m for m in ready if m.status is MessageStatus.QUEUED]
        if interrupted or stopped:
            try:
                self._writer.save([*interrupted, *stopped])
            except IntegrityError:
                log.info("delivery: a message changed meanwhile; it is read again later")
        if self._transport.renders_messages:
            for message in ready:
                self._contents.get(message.submission_id)  # warm, while still off the loop
        if self._sources is not None:
            self._sources.prefetch({message.account_id for message in ready})
        return ready

    def _campaign(self, campaign_id: str) -> tuple[CampaignStatus | None, str]:
        """A campaign's status (None if it is gone) and its IP pool, re-read at most every
        ``_CAMPAIGN_RECHECK`` seconds (a pause must stop new SMTP transactions within a
        second)."""
        now = time.monotonic()
        cached = self._campaigns.get(campaign_id)
        if cached is not None and now - cached[0] < _CAMPAIGN_RECHECK:
            return cached[1], cached[2]
        try:
            campaign = self._app._get(UUID(campaign_id), Campaign)
        except (AggregateNotFoundError, ValueError):
            status, pool = None, ""
        else:
            status = None if campaign.is_deleted else campaign.status
            pool = str(campaign.options.get("IPPool") or "")
        self._campaigns[campaign_id] = (now, status, pool)
        return status, pool

    def _stop_if_campaign_stopped(self, message: Message) -> bool:
        """Hold the message of a paused campaign, fail that of a cancelled one; True if so."""
        status = self._campaign(message.campaign_id)[0]
        if status is CampaignStatus.PAUSED:
            message.hold("campaign paused")
            return True
        if status is None or status in (CampaignStatus.CANCELLED, CampaignStatus.FAILED):
            message.fail(reason=CAMPAIGN_CANCELLED, reply_text="the campaign was cancelled")
            return True
        return False

    def _was_cleared(self, message: Message) -> bool:
        domain = self._domains.get(message.domain_id)
        cleared_at = domain.queue_cleared_at if domain is not None else None
        return cleared_at is not None and message.created_on <= cleared_at

    async def _claim(self, message: Message) -> Message | None:
        """Record the attempt before any SMTP traffic. Claims are taken only when a sending
        slot is free, so at most ``DELIVERY_CONCURRENCY`` messages are ever in doubt after a
        crash; the group-commit writer still saves concurrent claims in one transaction."""
        for _ in range(2):
            message.start_attempt()
            try:
                # Through a database restart too: a claim whose COMMIT went unanswered
                # but landed is found stored, so the message is sent, not left claimed.
                await self._writer.save_until_stored([message])
                return message
            except IntegrityError:
                # Something else (a queue clear, another worker) changed it: look again.
                message = await asyncio.to_thread(self._app.message, message.id)
                if message.status is not MessageStatus.QUEUED:
                    return None
        return None

    async def _deliver(self, message: Message) -> int:
        # The recipient's domain first, so that messages waiting for a busy mailbox provider
        # hold none of the slots other domains' messages need.
        recipient_domain = message.recipient.rpartition("@")[2]
        async with self._throttle.slot(recipient_domain), self._semaphore:
            if message.campaign_id and self._stop_if_campaign_stopped(message):
                with contextlib.suppress(IntegrityError):
                    await self._writer.save_async([message])
                return 1
            domain = self._domains.get(message.domain_id)
            sources = self._sources_for(message, domain)
            if isinstance(sources, Postpone):
                message.postpone(sources.until, sources.reason)
                with contextlib.suppress(IntegrityError):
                    await self._writer.save_async([message])
                return 1
            claimed = await self._claim(message)
            if claimed is None:
                return 0
            message = claimed
            rendered = False
            try:
                raw = b""
                return_path = message.sender
                if self._transport.renders_messages:
                    raw = self._renderer.render(message, domain)
                    return_path = self._renderer.return_path(message, domain)
            except TemplateRefused as refused:
                # The content's template failed on this recipient's data: the message fails
                # with the reason, and the recipient is not to blame (no suppression).
                log.warning("delivery: %s not rendered: %s", message.id, refused)
                outcome = SmtpOutcome(554, "5.6.0", f"message could not be rendered: {refused}")
            except Exception as error:
                log.exception("delivery: cannot render %s", message.id)
                outcome = SmtpOutcome(554, "5.6.0", f"message could not be rendered: {error}")
            else:
                rendered = True
                outcome = await self._transport.send(return_path, message.recipient, raw, sources)
            # The mail has left (or was refused): its outcome is kept until it is stored,
            # through a full disk or a database restart, rather than lost to a retry.
            message = await self._record_outcome_of(message, outcome)
            if not message.is_final:
                self._streamed.keep(message)  # a retry's Queued finds it here
            if outcome.is_permanent and rendered and self._feedback is not None:
                # A refusal at SMTP time suppresses as a bounce report (DSN) would.
                bounce = classify(outcome.enhanced_status, outcome.code, outcome.text)
                await asyncio.to_thread(
                    self._feedback.suppress_after_bounce,
                    message.account_id,
                    message.recipient,
                    bounce.kind,
                    bounce.definitive,
                    datetime.now(UTC),
                )
        if outcome.is_success:
            self.delivered_count += 1
        return 1

    def _sources_for(
        self, message: Message, domain: SenderDomain | None
    ) -> tuple[SourceAddress, ...] | Postpone | None:
        """The addresses the message may leave from, when pools are in play: its campaign's
        pool, else its domain's (else the account's default, else the machine's)."""
        if self._sources is None:
            return None
        campaign_pool = self._campaign(message.campaign_id)[1] if message.campaign_id else ""
        domain_pool = domain.ip_pool if domain is not None else ""
        return self._sources.choose(message.account_id, (campaign_pool, domain_pool))

    async def _record_outcome_of(self, message: Message, outcome: SmtpOutcome) -> Message:
        """Store the reply. The mail has left (or was refused): its outcome is kept until it
        is stored, through a full disk or a database restart, rather than lost to a retry.
        An event recorded on the message meanwhile (a bounce report or an open that came
        back quickly) makes the save a conflict: the reply is recorded again on the
        message as it now is."""
        try:
            await self._writer.save_until_stored([self._record(message, outcome)])
            self._count(message, outcome)
            return message
        except IntegrityError:
            fresh = await asyncio.to_thread(self._app.message, message.id)
            if fresh.status is not MessageStatus.SENDING:
                log.info("delivery: %s was settled meanwhile (%s)", fresh.id, fresh.status)
                return fresh
            await self._writer.save_until_stored([self._record(fresh, outcome)])
            self._count(fresh, outcome)
            return fresh

    def _count(self, message: Message, outcome: SmtpOutcome) -> None:
        """The stored outcome, by the recipient's provider and the address or relay it left
        through (``/metrics``)."""
        DELIVERY_OUTCOMES.labels(
            outcome=message.status.value,
            provider=provider_of(message.recipient),
            source=outcome.source or self._way_out,
        ).inc()

    def _record(self, message: Message, outcome: SmtpOutcome) -> Message:
        self._record_outcome(message, outcome)
        for change in outcome.route_changes:
            message.note_route_change(
                change.kind, change.route, change.source, change.seconds, change.reason
            )
        return message

    def _record_outcome(self, message: Message, outcome: SmtpOutcome) -> None:
        settings = self._app.settings
        if outcome.is_success:
            message.record_delivered(
                outcome.code, outcome.enhanced_status, outcome.text,
                outcome.remote, outcome.tls, outcome.source,
            )  # fmt: skip
        elif outcome.is_permanent:
            kind = classify(outcome.enhanced_status, outcome.code, outcome.text).kind
            message.record_bounced(
                outcome.code,
                outcome.enhanced_status,
                outcome.text,
                kind="block" if kind == "block" else "hard",
                remote_mta=outcome.remote,
                tls=outcome.tls,
                source_ip=outcome.source,
            )
        else:
            now = datetime.now(UTC)
            message.record_deferred(
                outcome.code,
                outcome.enhanced_status,
                outcome.text,
                now=now,
                first_accepted_at=message.lifetime_starts_at,
                retry_schedule=settings.retry_schedule,
                lifetime=settings.message_lifetime,
                remote_mta=outcome.remote,
                tls=outcome.tls,
                source_ip=outcome.source,
            )
