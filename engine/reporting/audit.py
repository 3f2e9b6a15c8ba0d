"""The audit reader, which copies the events callers caused to ``audit_log``
(projections.audit), and ``Account.AuditLog``, which reads them back."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import TrackingRecorder

import domain
from adapters.event_store import rewind_tracking
from adapters.ports import EventSource, ReportingStore
from domain.account import Account
from domain.errors import Audit, RequestRejected
from engine.accounts.gateway import Gateway
from engine.application import Sendstream
from engine.eventlog.followers import NotificationLogSource, run_until_stopped
from engine.params import count_param, uuid_param
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


MAX_AUDIT_PAGE = 500


class AuditCommands:
    """``Account.AuditLog``."""

    def __init__(self, gateway: Gateway, reporting: Callable[[], ReportingStore]) -> None:
        self._gateway = gateway
        self._reporting = reporting

    def commands(self) -> dict[str, Callable[[Account, dict[str, Any]], dict[str, Any]]]:
        return {"Account.AuditLog": self.audit_log}

    def audit_log(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """Paged (``Page`` from 1, ``PageSize`` up to 500), and filtered by ``UserID`` (a user
        or a key), ``AuditCommand``, ``ObjectID`` and ``StartDate``/``EndDate``."""
        from projections.audit import read_audit_log

        start, end = self._gateway.date_range(account, params)
        page = _positive(params, "Page", 1)
        size = _positive(params, "PageSize", 100)
        if size > MAX_AUDIT_PAGE:
            raise RequestRejected(Audit.INVALID_OPTION.format(name="PageSize"))
        object_id = None
        if params.get("ObjectID") not in (None, ""):
            object_id = uuid_param(params.get("ObjectID"))
            if object_id is None:
                raise RequestRejected(Audit.INVALID_OPTION.format(name="ObjectID"))
        user = ""
        if params.get("UserID") not in (None, ""):
            user_id = uuid_param(params.get("UserID"))
            if user_id is None:
                raise RequestRejected(Audit.INVALID_OPTION.format(name="UserID"))
            user = str(user_id)
        command = params.get("AuditCommand")
        if command is not None and (not isinstance(command, str) or len(command) > 100):
            raise RequestRejected(Audit.INVALID_OPTION.format(name="AuditCommand"))
        entries, total = read_audit_log(
            self._reporting(), account.id, start=start, end=end, user_id=user,
            command=(command or "").strip(), object_id=object_id,
            offset=(page - 1) * size, limit=size,
        )  # fmt: skip
        return {"Entries": entries, "TotalCount": total, "Page": page, "PageSize": size}


def _positive(params: dict[str, Any], name: str, default: int) -> int:
    try:
        number = count_param(params.get(name), default, name)
    except RequestRejected:
        number = 0  # not a number: this command's own error, as for zero
    if number < 1:
        raise RequestRejected(Audit.INVALID_OPTION.format(name=name))
    return number
