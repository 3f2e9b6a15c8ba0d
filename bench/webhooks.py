"""``python -m bench webhooks``: webhook calls to a real HTTP server on loopback.

The receiver (uvicorn, ``tests/webhook_receiver.py``) runs in a process of its own and
listens on 40 ports, one endpoint each: 38 answer 200, one answers 500 and one never
answers in time (5 % of the endpoints failing or timing out). Each endpoint is the
delivery webhook of its own sender domain. The worker's two loops run as in
``sendstream serve`` (intake from the stream, calls from the store), on the SQLite store.

1. Throughput: 30,000 delivered events at once; the figure is successful calls to
   the healthy endpoints per second until they are all made, while the failing and
   silent endpoints take their retries and timeouts beside them.
2. Lag: delivered events at a steady 1,500 a second for 20 s; the figure is the delay
   from each event to its arrival at a healthy endpoint (p50 and p99).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx

from bench.machine import describe, print_table
from domain.envelope import EventEnvelope
from engine.runtime import Engine, tune_garbage_collector
from engine.settings import Settings
from engine.webhook_worker import WebhookDelivery, WebhookIntake
from engine.webhooks import REST_ADD_ERRORS, WebhookRegistry

ENDPOINTS = 40


class PacedEvents:
    """An event source that hands out ``Accepted`` + ``Delivered`` pairs as time passes
    (``rate`` deliveries a second, up to ``total``), stamped with the moment they are read."""

    def __init__(self, domains: list[tuple[UUID, UUID]], rate: float, total: int) -> None:
        self._domains = domains
        self._rate = rate
        self._total = total
        self._made = 0
        self._position = 0
        self._started = time.monotonic()

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
                envelopes.append(
                    EventEnvelope(
                        event_id=uuid4(),
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


def _receiver() -> tuple[subprocess.Popen[str], list[int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.webhook_receiver", str(ENDPOINTS - 1)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert process.stdout is not None
    ports: list[int] = json.loads(process.stdout.readline())
    return process, ports


def _lags(port: int) -> list[list[Any]]:
    answer = httpx.get(f"http://127.0.0.1:{port}/__lags", timeout=60)
    result: list[list[Any]] = answer.json()
    return result


def _phase(engine: Engine, domains: list[tuple[UUID, UUID]], rate: float, total: int,
           port: int, healthy_share: float) -> tuple[float, list[float]]:  # fmt: skip
    """Feed ``total`` deliveries at ``rate``; returns (healthy calls a second, their lags)."""
    before = len(_lags(port))
    source = PacedEvents(domains, rate, total)
    registry = WebhookRegistry(engine.app, lifetime=3600)
    intake = WebhookIntake(engine.app, source, engine.webhook_store, registry)
    stop = threading.Event()
    settings = engine.settings
    expected = int(total * healthy_share)

    def feed() -> None:
        while not stop.is_set() and not source.done:
            intake.run_once(timeout=0.01)

    from adapters.webhook_http import AddressPolicy, WebhookSender

    async def deliver() -> None:
        sender = WebhookSender(AddressPolicy(allow_loopback=True),
                               total_timeout=settings.webhook_timeout_seconds)  # fmt: skip
        delivery = WebhookDelivery(engine.app, engine.webhook_store, registry, sender)
        stopped = asyncio.Event()
        task = asyncio.create_task(delivery.run(stopped))
        while delivery.delivered < expected and time.monotonic() < deadline:  # noqa: ASYNC110 (a counter, polled)
            await asyncio.sleep(0.05)
        stopped.set()
        await task
        await sender.aclose()

    started = time.monotonic()
    deadline = started + 120
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    asyncio.run(deliver())
    stop.set()
    feeder.join()
    lags = [row for row in _lags(port)[before:] if row[0].startswith("/ok")]
    if not lags:
        return 0.0, []
    last = max(row[2] for row in lags)
    first_event = min(row[2] - row[1] for row in lags)
    return len(lags) / (last - first_event), [row[1] for row in lags]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(messages: int = 30_000, seconds: int = 20) -> list[tuple[str, str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="sendstream-bench-webhooks-"))
    process, ports = _receiver()
    rows: list[tuple[str, str, str]] = []
    try:
        settings = Settings(
            SENDSTREAM_DATA_DIR=workdir / "var", SMTP_SUBMISSION_PORTS="", BOUNCE_SMTP_PORTS="",
            WEBHOOK_ALLOW_LOOPBACK="true", WEBHOOK_ALLOW_HTTP="true", WEBHOOK_TIMEOUT_SECONDS="5",
        )  # fmt: skip
        engine = Engine(settings, roles=frozenset())
        tune_garbage_collector()
        domains: list[tuple[UUID, UUID]] = []
        for n, port in enumerate(ports):
            keys = engine.app.bootstrap(f"shop{n}.example")
            account_id, domain_id = UUID(keys["AccountID"]), UUID(keys["DomainID"])
            path = "/fail" if n == 0 else "/slow" if n == 1 else f"/ok/{n}"
            engine.webhooks.add(
                account_id, engine.app.domain(domain_id),
                {"Event": "delivery", "WebhookURL": f"http://127.0.0.1:{port}{path}"},
                REST_ADD_ERRORS,
            )  # fmt: skip
            domains.append((account_id, domain_id))
        healthy = (ENDPOINTS - 2) / ENDPOINTS
        throughput, _ = _phase(engine, domains, 10**9, messages, ports[0], healthy)
        rows.append(("webhook calls/s to healthy endpoints (backlog)", f"{throughput:,.0f}",
                     ">= 1,500"))  # fmt: skip
        rate, lags = _phase(engine, domains, 1500, 1500 * seconds, ports[0], healthy)
        rows.append(("steady 1,500 events/s: healthy calls/s", f"{rate:,.0f}", ""))
        if lags:
            rows.append(("lag event -> healthy endpoint p50 (s)",
                         f"{statistics.median(lags):.3f}", ""))  # fmt: skip
            rows.append(("lag event -> healthy endpoint p99 (s)",
                         f"{_percentile(lags, 0.99):.3f}", "<= 2"))  # fmt: skip
        rows.append(("failing + silent endpoints", "2 of 40 (5 %)", ""))
        engine.close()
    finally:
        process.kill()
        process.wait()
    return rows


if __name__ == "__main__":
    print_table("machine", [(k, v, "") for k, v in describe().items()])
    print_table("webhooks", run())
    os._exit(0)
