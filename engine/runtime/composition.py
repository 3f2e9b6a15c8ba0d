"""Builds a running engine from settings: the event store, the writer and the worker roles."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import uvloop
from eventsourcing.persistence import Recording, TrackingRecorder

from adapters.ports import EventSource, Lease, MailTransport, ReportingStore
from adapters.sandbox import SandboxTransport
from adapters.schedule_store import PostgresScheduleStore, ScheduleStore, SqliteScheduleStore
from adapters.thread_names import NamedThread, named_executor
from domain.message import Message
from domain.submission import Submission
from engine.application import Sendstream
from engine.delivery.handoff import ContentCache, FreshMessages
from engine.delivery.scheduler import Scheduler
from engine.delivery.worker import DeliveryWorker
from engine.eventlog.followers import (
    NewEventSignal,
    NotificationLogSource,
    RecentEvents,
    Wanted,
    open_event_source,
)
from engine.eventlog.relay import ALL_STREAMS, Relay
from engine.eventlog.writer import BatchWriter
from engine.reporting.projector import Projector, projected_event_types
from engine.runtime.leadership import run_as_leader
from engine.sending.history import MessageHistory
from engine.sending.service import SendingService
from engine.settings import Settings
from projections.audit import AUDITED_STREAMS

if TYPE_CHECKING:
    from adapters.kafka import KafkaEventPublisher
    from adapters.webhook_http import AddressPolicy, WebhookSender
    from adapters.webhook_store import WebhookStore
    from engine.accounts.agencies import AgencyCommands
    from engine.accounts.gateway import Gateway
    from engine.accounts.ip_pools import SendingAddressCommands
    from engine.accounts.users import UserCommands
    from engine.campaigns.commands import CampaignService
    from engine.campaigns.runner import CampaignRunner
    from engine.delivery.pools import SourceChooser
    from engine.delivery.rendering import MessageRenderer
    from engine.feedback.bounce_intake import BounceIntake
    from engine.feedback.service import FeedbackService
    from engine.feedback.suppressions import SuppressionCommands
    from engine.inbound.routes import RouteCommands, RouteTable
    from engine.inbound.server import InboundServer
    from engine.reporting.audit import AuditCommands
    from engine.sending.smtp_submission import SubmissionServer
    from engine.templates.commands import TemplateCommands
    from engine.webhooks.calls import WebhookDelivery
    from engine.webhooks.commands import WebhookCommands, WebhookRegistry

log = logging.getLogger(__name__)


class Role(StrEnum):
    API = "api"
    RELAY = "relay"
    DELIVERY = "delivery"
    PROJECTOR = "projector"
    SCHEDULER = "scheduler"
    SMTP = "smtp"  # the SMTP submission server
    CAMPAIGNS = "campaigns"  # starts due campaigns and fans them out
    WEBHOOKS = "webhooks"  # the stream → a stored call per event and listening webhook
    WEBHOOK_CALLS = "webhook-calls"  # makes the stored calls (in as many processes as wanted)


ALL_ROLES = frozenset(Role)

# The consumer groups that read the stream at scale (``{KAFKA_TOPIC_PREFIX}-name``) and
# the streams each reads; the relay counts each when it records how far all have got.
KAFKA_GROUPS: dict[str, tuple[str, ...]] = {
    "delivery": ("message", "submission"),
    "projector": ("message",),
    "webhooks": ("message", "webhook", "senderdomain"),
    "batches": ("batch",),
    "audit": AUDITED_STREAMS,
}


def tune_garbage_collector() -> None:
    """Call once the engine is built. What was built at start lives for the whole run: keep
    the collector from rescanning it. The engine allocates in bursts (batches of events);
    CPython's default first threshold (700) runs the young collection thousands of times a
    second under load (measured: the projector maps 30 % more rows a second without it)."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def open_transport(settings: Settings) -> MailTransport:
    """The way out that ``DELIVERY_MODE`` names; called inside the delivery worker's loop."""
    if settings.outbound == "direct":
        import ssl

        from adapters.dns import MailRoutes
        from adapters.mta_sts import MtaStsPolicies
        from adapters.smtp_out.direct import DirectTransport

        routes = MailRoutes(settings.dns_resolver)
        ca_file = settings.tls_ca_file or None
        verify = ssl.create_default_context(cafile=ca_file)
        policies = (
            MtaStsPolicies(
                routes,
                # A context of its own: httpcore sets ALPN "http/1.1" on the one it is given.
                ssl.create_default_context(cafile=ca_file),
                allow_private_addresses=settings.direct_allow_private_addresses,
            )
            if settings.mta_sts
            else None
        )
        return DirectTransport(
            routes,
            policies=policies,
            verify_context=verify,
            helo_name=settings.mail_hostname,
            port=settings.direct_smtp_port,
            allow_private_addresses=settings.direct_allow_private_addresses,
            shaping=settings.shaping_rules(),
            sources=settings.sources(),
            idle_seconds=settings.direct_idle_seconds,
            timeout=settings.direct_timeout_seconds,
        )
    if settings.outbound == "relay":
        from adapters.smtp_out import SmtpRelayTransport

        return SmtpRelayTransport(settings.smtp_relay_url, pool_size=settings.smtp_pool_size)
    return SandboxTransport()


def open_schedule_store(settings: Settings) -> ScheduleStore:
    if settings.eventstore_url.startswith(("postgresql://", "postgres://")):
        return PostgresScheduleStore(settings.postgres_conninfo(), schema=settings.postgres_schema)
    return SqliteScheduleStore(
        Path(settings.data_dir) / "schedule.sqlite", synchronous=settings.sqlite_synchronous
    )


def delivery_event_types() -> tuple[type, type, type]:
    """What the delivery worker reads: a submission's content, and each message's Accepted
    (it builds the message from the stream, not a read) and Queued."""
    # @event("Queued") makes Message.Queued when the class is built; mypy cannot see it.
    received: type = Submission.Received  # type: ignore[attr-defined]
    accepted: type = Message.Accepted  # type: ignore[attr-defined]
    queued: type = Message.Queued  # type: ignore[attr-defined]
    return received, accepted, queued


def open_lease(settings: Settings, role: str) -> Lease:
    """An advisory lock in PostgreSQL at scale; a locked file in the data folder embedded."""
    from adapters.lease import FileLease, PostgresLease

    if settings.eventstore_url.startswith(("postgresql://", "postgres://")):
        return PostgresLease(settings.postgres_conninfo(), role, schema=settings.postgres_schema)
    return FileLease(Path(settings.data_dir) / "leases" / f"{role}.lock")


def webhook_address_policy(settings: Settings) -> AddressPolicy:
    from adapters.webhook_http import AddressPolicy

    return AddressPolicy(
        allow_loopback=settings.webhook_allow_loopback,
        allow_private=settings.webhook_allow_private,
    )


async def until_stopped(
    stop: threading.Event, run: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    """Run an async worker loop until the engine's (thread) ``stop`` is set."""
    stopped = asyncio.Event()

    async def watch() -> None:
        await asyncio.to_thread(stop.wait)
        stopped.set()

    watcher = asyncio.create_task(watch())
    try:
        await run(stopped)
    finally:
        watcher.cancel()


@dataclass
class Engine:
    """One process's share of Sendstream: what its roles need, started and stopped together."""

    settings: Settings
    roles: frozenset[Role] = ALL_ROLES
    app: Sendstream = field(init=False)
    writer: BatchWriter = field(init=False)
    signal: NewEventSignal = field(init=False)
    recent: RecentEvents = field(init=False)
    fresh: FreshMessages = field(init=False)
    contents: ContentCache = field(init=False)
    tracking: TrackingRecorder = field(init=False)
    sending: SendingService = field(init=False)
    _reporting: ReportingStore | None = field(init=False, default=None)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _threads: list[threading.Thread] = field(init=False, default_factory=list)
    # Closed after the threads that read them: a Kafka member then leaves its group at
    # once, and the members that stay take its partitions without waiting out its session.
    _sources: list[EventSource] = field(init=False, default_factory=list)
    _publisher: KafkaEventPublisher | None = field(init=False, default=None)
    delivery: DeliveryWorker | None = field(init=False, default=None)
    _gateway: Gateway | None = field(init=False, default=None)
    submission_server: SubmissionServer | None = field(init=False, default=None)
    campaign_runner: CampaignRunner | None = field(init=False, default=None)
    _campaigns: CampaignService | None = field(init=False, default=None)
    _suppressions: SuppressionCommands | None = field(init=False, default=None)
    _templates: TemplateCommands | None = field(init=False, default=None)
    _renderer: MessageRenderer | None = field(init=False, default=None)
    _feedback: FeedbackService | None = field(init=False, default=None)
    bounce_intake: BounceIntake | None = field(init=False, default=None)
    inbound_server: InboundServer | None = field(init=False, default=None)
    _routes: RouteCommands | None = field(init=False, default=None)
    _users: UserCommands | None = field(init=False, default=None)
    _agencies: AgencyCommands | None = field(init=False, default=None)
    _audit: AuditCommands | None = field(init=False, default=None)
    _route_table: RouteTable | None = field(init=False, default=None)
    _webhook_store: WebhookStore | None = field(init=False, default=None)
    _schedule_store: ScheduleStore | None = field(init=False, default=None)
    _webhooks: WebhookCommands | None = field(init=False, default=None)
    _sending_addresses: SendingAddressCommands | None = field(init=False, default=None)
    webhook_delivery: WebhookDelivery | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.app = Sendstream(self.settings)
        self.signal = NewEventSignal()
        self.recent = RecentEvents()
        self.writer = BatchWriter(self.app, on_commit=self._committed)
        tracking = self.app.factory.tracking_recorder()
        assert isinstance(tracking, TrackingRecorder)
        self.tracking = tracking
        self.fresh = FreshMessages()
        self.contents = ContentCache(self.app)
        # The API hands what it accepts straight to a delivery worker in the same process.
        delivers_here = Role.DELIVERY in self.roles
        self.sending = SendingService(
            self.app,
            self.writer,
            self.fresh if delivers_here else None,
            self.contents if delivers_here else None,
        )
        self.history = MessageHistory(self.app, lambda m, d: self.renderer.render(m, d))

    @property
    def gateway(self) -> Gateway:
        """The account layer of ``/api.php``; built on first use (it reads the reporting
        tables to clear a domain's queue, so it lives where they are open)."""
        if self._gateway is None:
            from engine.accounts.gateway import Gateway
            from projections.events import unfinished_message_ids

            self._gateway = Gateway(
                self.app,
                self.sending.forget_all,
                pending_messages=lambda domain_id: unfinished_message_ids(
                    self.reporting, domain_id
                ),
                reporting=lambda: self.reporting,
                check_pool=self.sending_addresses.check_pool,
            )
        return self._gateway

    @property
    def campaigns(self) -> CampaignService:
        """The campaign, list and email commands of ``/api.php``."""
        if self._campaigns is None:
            from engine.campaigns.commands import CampaignService
            from engine.campaigns.runner import campaign_statistics

            self._campaigns = CampaignService(
                self.app,
                statistics=lambda campaign_id: campaign_statistics(self.reporting, campaign_id),
                on_change=self._watch_campaign,
                check_pool=self.sending_addresses.check_pool,
            )
        return self._campaigns

    @property
    def renderer(self) -> MessageRenderer:
        """Renders each recipient's copy; shared so that clicks find the links it tracked."""
        if self._renderer is None:
            from engine.delivery.rendering import MessageRenderer
            from engine.keys import tracking_key, unsubscribe_mail_key, verp_key

            self._renderer = MessageRenderer(
                self.contents,
                self.settings,
                tracking_key=tracking_key(self.settings),
                verp_key=verp_key(self.settings),
                unsubscribe_key=unsubscribe_mail_key(self.settings),
            )
        return self._renderer

    @property
    def feedback(self) -> FeedbackService:
        """Opens, clicks, unsubscribes, bounces and complaints, recorded on the Message."""
        if self._feedback is None:
            from engine.feedback.service import FeedbackService

            self._feedback = FeedbackService(
                self.app,
                tracked_links=lambda message: self.renderer.tracked_links(message, None),
                soft_bounce_limit=self.settings.soft_bounce_limit,
                soft_bounce_window=timedelta(days=self.settings.soft_bounce_window_days),
                on_suppressed=self.sending.forget_suppressions,
            )
        return self._feedback

    @property
    def suppressions(self) -> SuppressionCommands:
        """The unsubscribe, bounce, complaint and block list commands of ``/api.php``."""
        if self._suppressions is None:
            from engine.feedback.suppressions import SuppressionCommands

            # The send path caches each account's list for a moment: not after a change here.
            self._suppressions = SuppressionCommands(
                self.app, on_change=lambda account: self.sending.forget_suppressions(account.id)
            )
        return self._suppressions

    @property
    def templates(self) -> TemplateCommands:
        """The ``Template.*`` commands of ``/api.php``."""
        if self._templates is None:
            from engine.templates.commands import TemplateCommands

            self._templates = TemplateCommands(self.app, on_change=self.sending.forget_template)
        return self._templates

    @property
    def routes(self) -> RouteCommands:
        """The ``Route.*`` commands of ``/api.php`` and ``/api/v1/routes``."""
        if self._routes is None:
            from engine.inbound.routes import RouteCommands

            self._routes = RouteCommands(self.app, self.webhooks)
        return self._routes

    @property
    def users(self) -> UserCommands:
        """``User.*``, ``Users.Get`` and the role-limited account keys of ``/api.php``."""
        if self._users is None:
            from engine.accounts.users import UserCommands

            self._users = UserCommands(self.app, self.gateway)
        return self._users

    @property
    def agencies(self) -> AgencyCommands:
        """``Agency.*``: client accounts and their combined statistics."""
        if self._agencies is None:
            from engine.accounts.agencies import AgencyCommands

            self._agencies = AgencyCommands(self.app, self.gateway, lambda: self.reporting)
        return self._agencies

    @property
    def audit(self) -> AuditCommands:
        """``Account.AuditLog``."""
        if self._audit is None:
            from engine.reporting.audit import AuditCommands

            self._audit = AuditCommands(self.gateway, lambda: self.reporting)
        return self._audit

    @property
    def route_table(self) -> RouteTable:
        """Which route takes a recipient, for the inbound server of this process."""
        if self._route_table is None:
            from engine.inbound.routes import RouteTable

            self._route_table = RouteTable(self.app)
        return self._route_table

    @property
    def schedule_store(self) -> ScheduleStore:
        """The timers, as read by ``/metrics`` (the scheduler keeps its own connection)."""
        if self._schedule_store is None:
            self._schedule_store = open_schedule_store(self.settings)
        return self._schedule_store

    @property
    def webhook_store(self) -> WebhookStore:
        """Calls owed to webhooks and their attempt log: shared by the API (backfills, the
        attempt log command) and the webhook worker, so a file or database, not memory."""
        if self._webhook_store is None:
            from adapters.webhook_store import PostgresWebhookStore, SqliteWebhookStore

            settings = self.settings
            if settings.eventstore_url.startswith(("postgresql://", "postgres://")):
                self._webhook_store = PostgresWebhookStore(
                    settings.postgres_conninfo(), schema=settings.postgres_schema
                )
            else:
                self._webhook_store = SqliteWebhookStore(
                    settings.data_dir / "webhooks.sqlite", synchronous=settings.sqlite_synchronous
                )
        return self._webhook_store

    @property
    def webhooks(self) -> WebhookCommands:
        """The webhook commands of ``/api.php`` and ``/api/v1/webhooks``."""
        if self._webhooks is None:
            from engine.webhooks.commands import WebhookCommands

            self._webhooks = WebhookCommands(
                self.app,
                store=lambda: self.webhook_store,
                reporting=lambda: self.reporting,
                allow_http=self.settings.webhook_allow_http,
                policy=webhook_address_policy(self.settings),
            )
        return self._webhooks

    @property
    def sending_addresses(self) -> SendingAddressCommands:
        """The sending address and pool commands of ``/api.php``."""
        if self._sending_addresses is None:
            from engine.accounts.ip_pools import SendingAddressCommands

            self._sending_addresses = SendingAddressCommands(
                self.app,
                self.settings.shaping_rules().warmup,
                self.settings.mail_hostname,
                shared=frozenset(source.address for source in self.settings.sources()),
                allow_loopback=self.settings.direct_allow_private_addresses,
            )
        return self._sending_addresses

    def _watch_campaign(self, campaign_id: UUID) -> None:
        if self.campaign_runner is not None:
            self.campaign_runner.watch(campaign_id)

    def _committed(self, recordings: Sequence[Recording[UUID]]) -> None:
        self.recent.add(recordings)
        self.signal.notify()

    @property
    def reporting(self) -> ReportingStore:
        if self._reporting is None:
            from adapters.clickhouse import open_reporting_store
            from projections.events import ensure_schema

            settings = self.settings
            store = open_reporting_store(
                settings.clickhouse_url or None,
                str(settings.chdb_path),
                distributed=bool(settings.clickhouse_cluster),
            )
            ensure_schema(store, settings.events_retention_days, settings.reporting_topology)
            self._reporting = store
        return self._reporting

    def start_workers(self) -> None:
        """Start every worker role of this process in its own thread."""
        # The workers mostly wait on SQLite, sockets and chdb, and each wait releases the GIL;
        # a short switch interval lets a waiter back in soon instead of after CPython's 5 ms
        # (measured: +25% delivered messages per second).
        sys.setswitchinterval(0.0005)
        if Role.RELAY in self.roles and self.settings.uses_kafka:
            from adapters.kafka import KafkaEventPublisher

            publisher = KafkaEventPublisher(
                self.settings.kafka_bootstrap_servers,
                topic_prefix=self.settings.kafka_topic_prefix,
                streams=ALL_STREAMS,
                partitions=self.settings.kafka_partitions,
                expected_groups=KAFKA_GROUPS,
            )
            self._publisher = publisher

            def relay(term: threading.Event) -> None:
                # A new term starts from the position the last leader committed.
                source = NotificationLogSource(
                    self.app, self.tracking, "relay", None, self.signal, recent=self.recent
                )
                Relay(source, publisher, tracking=self.tracking).run(term)

            self._spawn_leader("relay", relay)
        if Role.SCHEDULER in self.roles:
            scheduler = Scheduler(self.app, self.writer, open_schedule_store(self.settings))
            self._spawn_leader("scheduler", scheduler.run)

            def fan_out(term: threading.Event) -> None:
                # Batches become each recipient's submission and Message (in one process).
                from domain.batch import Batch
                from engine.sending.batch_fanout import BatchFanOut

                source = self._source(
                    "batches",
                    KAFKA_GROUPS["batches"],
                    event_types=[Batch.Accepted],  # type: ignore[attr-defined]
                )
                BatchFanOut(self.app, source, self.writer).run(term)

            self._spawn_leader("batches", fan_out)
        if Role.PROJECTOR in self.roles:
            projector = Projector(
                self.app,
                self._source(
                    "projector", KAFKA_GROUPS["projector"], event_types=projected_event_types()
                ),
                self.reporting,
            )
            self._spawn("projector", projector.run)
            from engine.reporting.audit import AuditReader, audited_event_types

            audit = AuditReader(
                # Changes are few: not woken by every commit, as the readers of messages are.
                self._source(
                    "audit", KAFKA_GROUPS["audit"], event_types=audited_event_types(), woken=False
                ),
                self.reporting,
            )
            self._spawn("audit", audit.run)
        if Role.DELIVERY in self.roles:
            self._spawn("delivery", self._run_delivery)
        if Role.WEBHOOKS in self.roles or Role.WEBHOOK_CALLS in self.roles:
            from engine.reporting.projector import MessageFactsCache
            from engine.webhooks.commands import WebhookRegistry
            from engine.webhooks.intake import (
                WebhookIntake,
                WebhookInterest,
                intake_event_types,
            )

            registry = WebhookRegistry(self.app)
            if Role.WEBHOOKS in self.roles:
                streams = KAFKA_GROUPS["webhooks"]
                facts = MessageFactsCache(self.app)
                interest = WebhookInterest(registry, facts)
                intake_source = self._source(
                    "webhooks", streams, event_types=intake_event_types(), wanted=interest.wants
                )
                intake = WebhookIntake(
                    self.app, intake_source, self.webhook_store, registry, facts=facts
                )
                self._spawn("webhook-intake", intake.run)
            if Role.WEBHOOK_CALLS in self.roles:
                self._spawn("webhook-calls", lambda stop: self._run_webhooks(stop, registry))
        if Role.API in self.roles:
            self.feedback.start()
        if Role.CAMPAIGNS in self.roles:
            from engine.campaigns.runner import CampaignRunner
            from projections.events import finished_message_count, held_message_ids

            self.campaign_runner = CampaignRunner(
                self.app,
                sender_domain_for=self.campaigns.sender_domain_for,
                finished_count=lambda instance: finished_message_count(self.reporting, instance),
                held_messages=lambda instance: held_message_ids(self.reporting, instance),
                window=self.settings.campaign_fanout_window,
            )
            self._spawn_leader("campaigns", self.campaign_runner.run)
        settings = self.settings
        if Role.SMTP in self.roles and (settings.submission_ports or settings.submission_tls_ports):
            from engine.sending.smtp_submission import SubmissionServer

            self.submission_server = SubmissionServer(self.app, settings, self.sending)
            self.submission_server.start()
        if Role.SMTP in self.roles and settings.bounce_ports:
            from engine.feedback.bounce_intake import BounceIntake
            from engine.keys import unsubscribe_mail_key, verp_key

            self.bounce_intake = BounceIntake(
                settings.smtp_submission_host,
                settings.bounce_ports,
                verp_key(settings),
                on_bounce=self.feedback.record_bounce,
                on_complaint=self.feedback.record_complaint,
                unsubscribe_key=unsubscribe_mail_key(settings),
                on_unsubscribe=self.feedback.record_unsubscribe_by_mail,
            )
            self.bounce_intake.start()
        if Role.SMTP in self.roles and settings.inbound_ports:
            from engine.inbound.receiver import InboundReceiver
            from engine.inbound.server import InboundServer

            receiver = InboundReceiver(
                self.app, self.route_table, lambda: self.webhook_store, self.sending,
                resolver=settings.dns_resolver, authserv_id=settings.mail_hostname,
            )  # fmt: skip
            self.inbound_server = InboundServer(
                settings.smtp_submission_host,
                settings.inbound_ports,
                self.route_table,
                receiver,
                max_message_bytes=settings.inbound_max_bytes,
                max_recipients=settings.inbound_max_recipients,
            )
            self.inbound_server.start()

    def _source(
        self,
        consumer: str,
        streams: Iterable[str] = ("message",),
        event_types: Sequence[type] | None = None,
        wanted: Wanted | None = None,
        start_from: str | None = None,
        woken: bool = True,
    ) -> EventSource:
        """``woken``: read again at each commit of this process (else every 50 ms)."""
        source = open_event_source(
            self.settings,
            self.app,
            self.tracking,
            consumer,
            tuple(streams),
            self.signal if woken else None,
            event_types=event_types,
            recent=self.recent,
            wanted=wanted,
            start_from=start_from,
        )
        self._sources.append(source)
        return source

    def _run_delivery(self, stop: threading.Event) -> None:
        async def main() -> None:
            # Loads and saves leave the loop for these threads: named, their CPU is counted.
            asyncio.get_running_loop().set_default_executor(named_executor("delivery-io"))
            transport = open_transport(self.settings)
            received, accepted, queued = delivery_event_types()
            share = self.settings.share
            if share is None:
                source = self._source(
                    "delivery",
                    streams=KAFKA_GROUPS["delivery"],
                    event_types=[received, accepted, queued],
                )
            else:
                # Only its own messages are decoded; their contents are loaded when needed,
                # since a submission's recipients may fall in several shares.
                source = self._source(
                    share.consumer,
                    event_types=[accepted, queued],
                    wanted=lambda message_id, _: share.holds(message_id),
                    start_from="delivery",
                )
            worker = DeliveryWorker(
                self.app,
                self.writer,
                source,
                transport,
                fresh=self.fresh,
                contents=self.contents,
                renderer=self.renderer,
                feedback=self.feedback,
                sources=self._source_chooser(),
                share=share,
            )
            self.delivery = worker
            try:
                await until_stopped(stop, worker.run)
            finally:
                await transport.close()

        # uvloop, as for webhook calls: SMTP sessions are socket round trips too.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())

    def _source_chooser(self) -> SourceChooser | None:
        """Direct delivery picks each message's sending address from its pool."""
        if self.settings.outbound != "direct":
            return None
        from engine.delivery.pools import SourceChooser

        return SourceChooser(
            self.app, self.settings.sources(), self.settings.shaping_rules().warmup
        )

    def webhook_caller(self, registry: WebhookRegistry) -> tuple[WebhookDelivery, WebhookSender]:
        """The loop that makes stored webhook calls, and its sender (for ``aclose``), as
        the settings say; built inside the event loop that runs them."""
        from adapters.webhook_http import WebhookSender
        from engine.webhooks.calls import WebhookDelivery

        settings = self.settings
        sender = WebhookSender(
            webhook_address_policy(settings),
            connect_timeout=settings.webhook_connect_timeout_seconds,
            total_timeout=settings.webhook_timeout_seconds,
            max_connections=settings.webhook_concurrency,
            max_per_host=settings.webhook_per_endpoint,
        )
        delivery = WebhookDelivery(
            self.app,
            self.webhook_store,
            registry,
            sender,
            concurrency=settings.webhook_concurrency,
            lease_seconds=settings.webhook_timeout_seconds * 2 + 60,
            retry_delays=settings.webhook_retry_delays,
            disable_after=settings.webhook_disable_after,
        )
        return delivery, sender

    def _run_webhooks(self, stop: threading.Event, registry: WebhookRegistry) -> None:
        async def main() -> None:
            delivery, sender = self.webhook_caller(registry)
            self.webhook_delivery = delivery
            try:
                await until_stopped(stop, delivery.run)
            finally:
                await sender.aclose()

        # uvloop: the calls are network round trips on many sockets, which its event loop
        # (libuv) makes for about a tenth less CPU than asyncio's own.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())

    def _spawn_leader(self, name: str, target: Callable[[threading.Event], None]) -> None:
        """A role that must run once in the installation: it runs while this process holds
        its lease; the same role in other processes waits as a standby."""
        lease = open_lease(self.settings, name)
        self._spawn(name, lambda stop: run_as_leader(name, lease, target, stop))

    def _spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = NamedThread(target=target, args=(self._stop,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stopped_loops(self) -> list[str]:
        """The worker loops of this process that have ended while it runs (each should
        run until the process stops)."""
        if self._stop.is_set():
            return []
        return [thread.name for thread in self._threads if not thread.is_alive()]

    def close(self) -> None:
        if self.submission_server is not None:
            self.submission_server.stop()
        if self.bounce_intake is not None:
            self.bounce_intake.stop()
        if self.inbound_server is not None:
            self.inbound_server.stop()
        if self._feedback is not None:
            self._feedback.close()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        for source in self._sources:
            try:
                source.close()
            except Exception:
                log.exception("an event source did not close cleanly")
        if self._publisher is not None:
            self._publisher.close()
        self.writer.close()
        if self._reporting is not None:
            self._reporting.close()
        if self._webhook_store is not None:
            self._webhook_store.close()
        if self._schedule_store is not None:
            self._schedule_store.close()
        self.app.close()
