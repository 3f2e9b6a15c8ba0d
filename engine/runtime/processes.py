"""The engine on both cores: the API in one process, the delivery side in another.

CPython runs one thread at a time per process, so an engine whose API, delivery
worker and scheduler share a process uses one core. ``sendstream serve`` therefore
runs the delivery side (delivery, scheduler and, with Kafka, the relay) in a child
process of its own. All processes write to the same event store: SQLite serialises
their transactions, PostgreSQL was built for it.

Delivery is bound by its process's one core as well, so ``DELIVERY_PROCESSES`` - 1 more
children deliver beside the worker process (``--role delivery``), each its share of the
messages (``DELIVERY_SHARE``, :mod:`domain.share`), read from the stream at its own pace.

Webhook calls cost the most CPU per event of anything the worker does (an HTTP round
trip in Python, about half a millisecond), so ``WEBHOOK_PROCESSES`` - 1 more children
make calls beside the worker process (``--role webhook-calls``): they take due calls
from the same store, whose claims are leased: no two take a call at the same time.

The webhook intake (the stream → stored calls) runs with the API: most of what it reads
the API has just written, so it finds those events in memory instead of decoding them,
and the delivery process, the busier of the two, is spared it. The campaign runner
stays with the API too: it reads the reporting tables to pace its
fan-out, and it keeps the delivery process free for delivering. The SMTP submission
server stays with the API: both accept mail through the same send
service. The projector stays with the API because embedded ClickHouse (chdb) lets one
process at a time open its folder, and the API reads what the projector writes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterable

from engine.runtime.composition import Role
from engine.settings import Settings

log = logging.getLogger(__name__)

# What each process runs when `serve` is given no --role.
API_PROCESS_ROLES = frozenset({Role.API, Role.PROJECTOR, Role.SMTP, Role.CAMPAIGNS, Role.WEBHOOKS})
WORKER_PROCESS_ROLES = frozenset({Role.DELIVERY, Role.SCHEDULER, Role.RELAY, Role.WEBHOOK_CALLS})


class WorkerProcess:
    """A ``sendstream serve --role …`` child that stops with its parent, however the parent
    ends, and is started again if it dies on its own."""

    def __init__(
        self,
        settings: Settings,
        roles: Iterable[Role] = WORKER_PROCESS_ROLES,
        restart_delay: float = 1.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self._settings = settings
        self._env = {**settings.as_env(), **(env or {})}
        self._roles = sorted(roles)
        self._restart_delay = restart_delay
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._supervisor = threading.Thread(
            target=self._supervise, name="worker-process", daemon=True
        )
        self._supervisor.start()

    def _spawn(self) -> None:
        command = [sys.executable, "-m", "cli", "serve", "--parent-pid", str(os.getpid())]
        command += [arg for role in self._roles for arg in ("--role", role.value)]
        with self._lock:
            self._process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                command, env={**os.environ, **self._env}
            )
        log.info("worker process %d runs %s", self._process.pid, ", ".join(self._roles))

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("worker process %d exited with %s; starting another", process.pid, code)
            if self._stopping.wait(self._restart_delay):
                return
            self._spawn()

    @property
    def label(self) -> str:
        """``worker``, or what a smaller child runs and its number: ``delivery 2/3``."""
        if set(self._roles) == WORKER_PROCESS_ROLES:
            return "worker"
        share = self._env.get("DELIVERY_SHARE", "")
        return " ".join(role.value for role in self._roles) + (f" {share}" if share else "")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def request_stop(self) -> None:
        """Ask the child to stop (SIGTERM) without waiting, so that several stop together."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def stop(self, timeout: float = 20.0) -> None:
        self.request_stop()
        with self._lock:
            process = self._process
        if process is None:
            return
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("worker process %d did not stop in %.0f s; killed", process.pid, timeout)
            process.kill()
            process.wait()


def worker_processes(settings: Settings) -> list[WorkerProcess]:
    """The children of ``serve``: the worker process (delivering the first share), a
    delivery process for each other share, and the extra webhook callers."""
    count = settings.delivery_processes

    def share(number: int) -> dict[str, str]:
        # Through Kafka the delivery group shares the topics' partitions among its members;
        # from the notification log each process keeps to its share of the messages.
        if count == 1 or settings.uses_kafka:
            return {"DELIVERY_SHARE": ""}
        return {"DELIVERY_SHARE": f"{number}/{count}"}

    children = [WorkerProcess(settings, WORKER_PROCESS_ROLES, env=share(1))]
    children += [
        WorkerProcess(settings, {Role.DELIVERY}, env=share(number))
        for number in range(2, count + 1)
    ]
    # The worker process makes webhook calls too; these make them beside it.
    children += [
        WorkerProcess(settings, {Role.WEBHOOK_CALLS}) for _ in range(settings.webhook_processes - 1)
    ]
    return children


def stop_when_parent_exits(parent_pid: int, stop: threading.Event, interval: float = 0.5) -> None:
    """Set ``stop`` once ``parent_pid`` is no longer this process's parent (it died)."""

    def watch() -> None:
        while not stop.wait(interval):
            if os.getppid() != parent_pid:
                log.warning("the API process %d is gone; stopping", parent_pid)
                stop.set()
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
