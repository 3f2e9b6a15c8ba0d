"""The audit reader: copies the events callers caused to ``audit_log`` (projections.audit)."""

from __future__ import annotations

import importlib
import pkgutil
import threading

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import TrackingRecorder

import domain
from adapters.event_store import rewind_tracking
from adapters.ports import EventSource, ReportingStore
from engine.application import Sendstream
from engine.eventlog.followers import NotificationLogSource, run_until_stopped
from projections.audit import AUDITED_STREAMS, audit_rows, insert_audit_rows


def aggregate_classes() -> list[type[Aggregate]]:
    """Every aggregate class of the domain package."""
    for module in pkgutil.iter_modules(domain.__path__):
        importlib.import_module(f"domain.{module.name}")
    found: list[type[Aggregate]] = []
    pending = list(Aggregate.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.__module__.startswith("domain.") and cls not in found:
            found.append(cls)
    return found


def audited_event_types() -> list[type]:
    """The event classes of the audited streams, for the log to read only those."""
    return [
        cls
        for owner in aggregate_classes()
        if owner.__name__.lower() in AUDITED_STREAMS
        for cls in vars(owner).values()
        if isinstance(cls, type) and issubclass(cls, owner.Event)
    ]


class AuditReader:
    def __init__(self, source: EventSource, store: ReportingStore) -> None:
        self._source = source
        self._store = store

    def run_once(self, timeout: float = 0.5) -> int:
        try:
            envelopes = self._source.poll(1_000, timeout)
            insert_audit_rows(self._store, audit_rows(envelopes))
        except Exception:
            self._source.rewind()
            raise
        # Committed even when nothing was kept: the log moved past other streams' events.
        self._source.commit()
        return len(envelopes)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("audit", self.run_once, stop)


def rebuild_audit_log(app: Sendstream, tracking: TrackingRecorder, store: ReportingStore) -> int:
    """Read the whole log into ``audit_log`` again (after a restore or a replay); rows are
    keyed by position, so what is there already stays once. Returns the events read."""
    rewind_tracking(tracking, "audit", 0)
    source = NotificationLogSource(
        app, tracking, "audit", AUDITED_STREAMS, event_types=audited_event_types()
    )
    reader = AuditReader(source, store)
    total = 0
    while read := reader.run_once(timeout=0):
        total += read
    return total
