"""``python -m bench webhooks``: webhook calls to a real HTTP server on loopback.

The receiver is nginx (``make test-deps`` installs it), so that the receiving end costs
the two cores little: it listens on 39 ports, one endpoint each; 38 answer 200 and one
answers 500. A 40th endpoint is a socket that takes connections and never answers (a
hung server). So 5 % of the endpoints fail or time out. Each endpoint is the delivery
webhook of its own sender domain. nginx logs each call to a healthy endpoint with the
moment it answered and the call's ``webhook-id``; the lag is that moment less the time
of the event the call reports.

The engine runs as ``sendstream serve`` runs it, on the SQLite store: this process
stands for the worker process (intake from the stream, and calls), and
``WEBHOOK_PROCESSES`` - 1 processes of ``sendstream serve --role webhook-calls`` make
calls beside it. ``WEBHOOK_DISABLE_AFTER`` is raised so that the failing endpoints keep
failing for the whole run instead of being disabled after 1,000 calls.

1. Throughput: 30,000 delivered events at once; the figure is successful calls to the
   healthy endpoints per second until they are all made, while the failing and silent
   endpoints take their retries and timeouts beside them.
2. Lag: delivered events at a steady 1,500 a second for 20 s; the figure is the delay
   from each event to its arrival at a healthy endpoint (p50 and p99).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import uvloop

from bench.machine import describe, percentile, print_table
from domain.envelope import EventEnvelope
from engine.runtime.composition import Engine, Role, tune_garbage_collector
from engine.runtime.processes import WorkerProcess
from engine.settings import Settings
from engine.webhooks.commands import REST_ADD_ERRORS, WebhookRegistry, message_id_header
from engine.webhooks.intake import WebhookIntake

ENDPOINTS = 40
HEALTHY = ENDPOINTS - 2


class PacedEvents:
    """An event source that hands out ``Accepted`` + ``Delivered`` pairs as time passes
    (``rate`` deliveries a second, up to ``total``), stamped with the moment they are read;
    ``delivered_at`` keeps each delivery's time by its ``webhook-id``."""

    def __init__(self, domains: list[tuple[UUID, UUID]], rate: float, total: int) -> None:
        self._domains = domains
        self._rate = rate
        self._total = total
        self._made = 0
        self._position = 0
        self._started = time.monotonic()
        self.delivered_at: dict[str, float] = {}

    @property
    def done(self) -> bool:
        return self._made >= self._total

    def poll(self, max_records: int, timeout: float) -> list[EventEnvelope]:
        due = min(self._total, int((time.monotonic() - self._started) * self._rate))
        count = min(due - self._made, max_records // 2)
        if count <= 0:
            time.sleep(min(timeout, 0.005))
            return []
        now = datetime.now(UTC)
        envelopes = []
        for n in range(self._made, self._made + count):
            account_id, domain_id = self._domains[n % len(self._domains)]
            message_id = uuid4()
            for version, (event_type, data) in enumerate(
                [
                    ("Message.Accepted", {
                        "submission_id": uuid4(), "account_id": account_id,
                        "domain_id": domain_id, "recipient": f"reader{n}@example.org",
                        "sender": "news@shop.example", "subject": "Weekly", "tags": [],
                        "campaign_id": "",
                    }),
                    ("Message.Delivered", {"code": 250, "enhanced_status": "2.0.0",
                                           "reply_text": "ok"}),
                ],
                start=1,
            ):  # fmt: skip
                self._position += 1
                event_id = uuid4()
                if event_type == "Message.Delivered":
                    self.delivered_at[message_id_header(event_id)] = now.timestamp()
                envelopes.append(
                    EventEnvelope(
                        event_id=event_id,
                        position=self._position,
                        stream="message",
                        event_type=event_type,
                        aggregate_id=message_id,
                        aggregate_version=version,
                        occurred_at=now,
                        data=data,
                    )
                )
        self._made += count
        return envelopes

    def commit(self) -> None:
        pass

    def rewind(self) -> None:
        pass

    def close(self) -> None:
        pass


class Nginx:
    """nginx on ``ports``: ``/ok…`` answers 200 and is logged as "msec webhook-id",
    ``/fail…`` answers 500."""

    def __init__(self, workdir: Path, ports: list[int]) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise SystemExit("bench webhooks needs nginx: run `make test-deps` first")
        self.log = workdir / "calls.log"
        listen = "\n".join(f"    listen 127.0.0.1:{port} backlog=4096;" for port in ports)
        temp = "\n".join(
            f"  {kind}_temp_path {workdir}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        config = workdir / "nginx.conf"
        config.write_text(
            f"worker_processes 1;\ndaemon off;\npid {workdir}/nginx.pid;\n"
            f"error_log {workdir}/error.log warn;\n"
            "events { worker_connections 16384; }\n"
            "http {\n  access_log off;\n  keepalive_requests 1000000;\n"
            f"  keepalive_timeout 60s;\n{temp}\n"
            "  log_format calls '$msec $http_webhook_id';\n"
            f"  server {{\n{listen}\n"
            f"    location /ok {{ access_log {self.log} calls buffer=256k flush=100ms;"
            ' return 200 "ok"; }\n'
            '    location /fail { return 500 "no"; }\n  }\n}\n'
        )
        self._process = subprocess.Popen([binary, "-p", str(workdir), "-c", str(config)])
        deadline = time.monotonic() + 10
        while not _listening(ports[-1]):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(workdir / 'error.log').read_text()}")
            time.sleep(0.05)

    def calls(self) -> list[tuple[float, str]]:
        """(answered at, webhook-id) of each call logged so far."""
        if not self.log.exists():
            return []
        rows = []
        for line in self.log.read_text().splitlines():
            stamp, _, message_id = line.partition(" ")
            if message_id:
                rows.append((float(stamp), message_id))
        return rows

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _phase(engine: Engine, domains: list[tuple[UUID, UUID]], rate: float, total: int,
           nginx: Nginx) -> tuple[float, list[float]]:  # fmt: skip
    """Feed ``total`` deliveries at ``rate``; returns (healthy calls a second, their lags)."""
    source = PacedEvents(domains, rate, total)
    registry = WebhookRegistry(engine.app)
    intake = WebhookIntake(engine.app, source, engine.webhook_store, registry)
    stop = threading.Event()
    expected = total * HEALTHY // ENDPOINTS
    seen = len(nginx.calls())

    def feed() -> None:
        while not stop.is_set() and not source.done:
            intake.run_once(timeout=0.01)

    async def deliver() -> None:
        delivery, sender = engine.webhook_caller(registry)
        stopped = asyncio.Event()
        task = asyncio.create_task(delivery.run(stopped))
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            if len(nginx.calls()) - seen >= expected:
                break
        stopped.set()
        await task
        await sender.aclose()

    deadline = time.monotonic() + 120 + total / rate
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as sendstream serve
        runner.run(deliver())
    stop.set()
    feeder.join()
    time.sleep(0.3)  # nginx writes its log every 100 ms
    calls = [
        (answered, answered - source.delivered_at[message_id])
        for answered, message_id in nginx.calls()[seen:]
        if message_id in source.delivered_at
    ]
    if not calls:
        return 0.0, []
    first_event = min(answered - lag for answered, lag in calls)
    last = max(answered for answered, _ in calls)
    return len(calls) / (last - first_event), [lag for _, lag in calls]


def run(messages: int = 30_000, seconds: int = 20) -> list[tuple[str, str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="sendstream-bench-webhooks-"))
    ports = _free_ports(ENDPOINTS)
    nginx = Nginx(workdir, ports[1:])
    silent = socket.socket()  # takes connections (the kernel does) and never answers
    silent.bind(("127.0.0.1", ports[0]))
    silent.listen(4096)
    settings = Settings(
        SENDSTREAM_DATA_DIR=workdir / "var", SMTP_SUBMISSION_PORTS="", BOUNCE_SMTP_PORTS="",
        INBOUND_SMTP_PORTS="",
        WEBHOOK_ALLOW_LOOPBACK="true", WEBHOOK_ALLOW_HTTP="true", WEBHOOK_TIMEOUT_SECONDS="5",
        WEBHOOK_DISABLE_AFTER=str(10**9),
    )  # fmt: skip
    engine = Engine(settings, roles=frozenset())
    helpers = [
        WorkerProcess(settings, {Role.WEBHOOK_CALLS}) for _ in range(settings.webhook_processes - 1)
    ]
    rows: list[tuple[str, str, str]] = []
    try:
        tune_garbage_collector()
        domains: list[tuple[UUID, UUID]] = []
        for n, port in enumerate(ports):
            keys = engine.app.bootstrap(f"shop{n}.example")
            account_id, domain_id = UUID(keys["AccountID"]), UUID(keys["DomainID"])
            path = "/silent" if n == 0 else "/fail" if n == 1 else f"/ok/{n}"
            engine.webhooks.add(
                account_id, engine.app.domain(domain_id),
                {"Event": "delivery", "WebhookURL": f"http://127.0.0.1:{port}{path}"},
                REST_ADD_ERRORS,
            )  # fmt: skip
            domains.append((account_id, domain_id))
        for helper in helpers:
            helper.start()
        throughput, _ = _phase(engine, domains, 10**9, messages, nginx)
        rows.append(("webhook calls/s to healthy endpoints (backlog)", f"{throughput:,.0f}",
                     ">= 1,500"))  # fmt: skip
        rate, lags = _phase(engine, domains, 1500, 1500 * seconds, nginx)
        rows.append(("steady 1,500 events/s: healthy calls/s", f"{rate:,.0f}", ""))
        if lags:
            rows.append(("lag event -> healthy endpoint p50 (s)",
                         f"{statistics.median(lags):.3f}", ""))  # fmt: skip
            rows.append(("lag event -> healthy endpoint p99 (s)",
                         f"{percentile(lags, 0.99):.3f}", "<= 2"))  # fmt: skip
        rows.append(("failing + silent endpoints", "2 of 40 (5 %)", ""))
        rows.append(("processes making calls", str(settings.webhook_processes), ""))
    finally:
        for helper in helpers:
            helper.stop()
        engine.close()
        nginx.stop()
        silent.close()
    return rows


if __name__ == "__main__":
    print_table("machine", [(k, v, "") for k, v in describe().items()])
    print_table("webhooks", run())
    os._exit(0)
