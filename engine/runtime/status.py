"""``sendstream status``: who runs the roles that run once, and how far behind each reader
of the event stream is, as an operator asks before and after moving processes around."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.share import DeliveryShare
from engine.runtime.composition import (
    KAFKA_GROUPS,
    Engine,
    delivery_event_types,
    open_lease,
    open_schedule_store,
)
from engine.settings import Settings

__all__ = ["LEASED_ROLES", "FollowerLag", "Status", "installation_status"]

# The roles that run under a lease (see engine.runtime.leadership).
LEASED_ROLES = ("relay", "scheduler", "campaigns")


# Counting stops here: a reader this far behind is simply far behind.
COUNT_UP_TO = 10_000


@dataclass(frozen=True)
class FollowerLag:
    """One reader of the stream: where it is, where the stream ends, and what it has left.

    In the event store a reader's position is the last event it read *of the kinds it
    reads*, so it stays below the newest event while it waits; ``waiting`` counts the
    events of its kinds after it (up to ``COUNT_UP_TO``). On Kafka it is the group's
    committed offset and the partition's end.
    """

    reader: str
    where: str  # "event store" or a Kafka topic partition
    position: int | None
    end: int | None
    waiting: int | None = None

    @property
    def lag(self) -> int | None:
        if self.waiting is not None:
            return self.waiting
        if self.position is None or self.end is None or self.end < self.position:
            return None  # never read, or the broker's end is not one to trust
        return self.end - self.position

    def as_dict(self) -> dict[str, Any]:
        return {"Reader": self.reader, "Where": self.where, "Position": self.position,
                "End": self.end, "Lag": self.lag}  # fmt: skip


@dataclass
class Status:
    leaders: dict[str, str | None] = field(default_factory=dict)
    followers: list[FollowerLag] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "Leaders": [{"Role": role, "Holder": holder} for role, holder in self.leaders.items()],
            "Readers": [follower.as_dict() for follower in self.followers],
        }


def installation_status(engine: Engine) -> Status:
    settings = engine.settings
    status = Status()
    for role in LEASED_ROLES:
        if role == "relay" and not settings.uses_kafka:
            continue  # no relay without a broker
        lease = open_lease(settings, role)
        status.leaders[role] = lease.holder()
    newest = engine.app.recorder.max_notification_id() or 0
    kinds = _kinds_read()
    readers = ["relay"] if settings.uses_kafka else ["delivery", "projector", "webhooks", "audit"]
    shares: dict[str, DeliveryShare] = {}
    if not settings.uses_kafka and settings.delivery_processes > 1:
        count = settings.delivery_processes
        shares = {s.consumer: s for s in (DeliveryShare(k, count) for k in range(1, count + 1))}
        readers += list(shares)
    positions = {reader: engine.tracking.max_tracking_id(reader) for reader in readers}
    schedule = open_schedule_store(settings)
    try:
        positions["scheduler"] = schedule.position()
    finally:
        schedule.close()
    for reader, position in positions.items():
        share = shares.get(reader)
        # A share reads only its own messages' events, and no submission.
        topics = kinds["delivery share"] if share else kinds.get(reader, [])
        after = engine.app.recorder.select_notifications(
            start=position or 0, limit=COUNT_UP_TO, topics=topics, inclusive_of_start=False
        )
        waiting = (
            len(after)
            if share is None
            else sum(share.holds(UUID(str(n.originator_id))) for n in after)
        )
        status.followers.append(FollowerLag(reader, "event store", position, newest, waiting))
    if settings.uses_kafka:
        status.followers += _kafka_lags(settings)
    return status


def _kinds_read() -> dict[str, list[str]]:
    """The topics of the events each reader of the event store reads; none: all of them."""
    from domain.batch import Batch
    from engine.delivery.scheduler import SCHEDULER_TOPICS
    from engine.reporting.audit import audited_event_types
    from engine.reporting.projector import projected_event_types
    from engine.webhooks.intake import intake_event_types

    received, accepted, queued = delivery_event_types()
    return {
        "delivery": [get_topic(cls) for cls in (received, accepted, queued)],
        "delivery share": [get_topic(cls) for cls in (accepted, queued)],
        "projector": [get_topic(cls) for cls in projected_event_types()],
        "webhooks": [get_topic(cls) for cls in intake_event_types()],
        "scheduler": list(SCHEDULER_TOPICS),
        "batches": [get_topic(Batch.Accepted)],  # type: ignore[attr-defined]
        "audit": [get_topic(cls) for cls in audited_event_types()],
        "relay": [],
    }


def _kafka_lags(settings: Settings) -> list[FollowerLag]:
    from adapters.kafka import group_offsets

    lags = []
    for name in KAFKA_GROUPS:
        group = f"{settings.kafka_topic_prefix}-{name}"
        for (topic, partition), (committed, end) in sorted(
            group_offsets(settings.kafka_bootstrap_servers, group).items()
        ):
            lags.append(FollowerLag(group, f"{topic}[{partition}]", committed, end))
    return lags


def readiness(engine: Engine) -> list[dict[str, Any]]:
    """What ``/readyz`` asks: the event store answers, the reporting tables answer, the
    broker takes a connection (at scale), and none of this process's loops has ended."""
    import socket

    checks: list[dict[str, Any]] = []

    def check(name: str, probe: Callable[[], object]) -> None:
        try:
            probe()
        except Exception as error:
            checks.append({"Check": name, "Ok": False, "Error": f"{type(error).__name__}: {error}"})
        else:
            checks.append({"Check": name, "Ok": True})

    check("event store", engine.app.recorder.max_notification_id)
    check("reporting", lambda: engine.reporting.query("SELECT 1 AS one"))
    settings = engine.settings
    if settings.uses_kafka:
        host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")

        def broker() -> None:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=2).close()

        check("broker", broker)
    stopped = engine.stopped_loops()
    checks.append({"Check": "loops", "Ok": not stopped,
                   **({"Error": "ended: " + ", ".join(stopped)} if stopped else {})})  # fmt: skip
    return checks
