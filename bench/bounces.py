"""``python -m bench.bounces``: DSNs per second through the bounce intake.

Four aiosmtplib clients, each over its one connection, send their share of ``count``
real Postfix DSNs (the committed ``tests/fixtures/bounces/postfix`` samples, taken in
turn), each to a return path of its own: RCPT checks its signature, DATA parses and
classifies the report and hands the bounce to a callback in a worker thread. The
callback only counts, so what is measured is the intake itself.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import threading
import time
from pathlib import Path
from uuid import UUID, uuid4

from aiosmtplib import SMTP

from adapters.dsn import DeliveryReport, FeedbackReport
from bench.machine import describe, print_table
from domain.bounces import BounceClass
from domain.verp import verp_address
from engine.feedback.bounce_intake import BounceIntake

KEY = b"bench key: not a secret"
HOST = "bounces.bench.test"
SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "bounces" / "postfix"


class _Counter:
    def __init__(self) -> None:
        self.bounces = 0
        self._lock = threading.Lock()

    def on_bounce(
        self, message_id: UUID, bounce: BounceClass, report: DeliveryReport | None
    ) -> None:
        with self._lock:
            self.bounces += 1

    def on_complaint(self, message_id: UUID, report: FeedbackReport) -> None:
        pass


def _samples() -> list[bytes]:
    found = sorted(SAMPLES.glob("*.eml"))
    if not found:
        raise RuntimeError(f"no samples in {SAMPLES}")
    return [re.sub(rb"\r?\n", b"\r\n", path.read_bytes()) for path in found]


async def _connection(
    port: int, numbers: range, samples: list[bytes], latencies: list[float]
) -> None:
    client = SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
    await client.connect()
    for n in numbers:
        started = time.perf_counter()
        _, reply = await client.sendmail(
            "", [verp_address(uuid4(), HOST, KEY)], samples[n % len(samples)]
        )
        latencies.append(time.perf_counter() - started)
        if "report recorded" not in reply:
            raise RuntimeError(f"DSN {n} was not recorded: {reply}")
    await client.quit()


async def _send(port: int, count: int, connections: int) -> tuple[float, list[float]]:
    samples = _samples()
    latencies: list[float] = []
    share = -(-count // connections)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(port, range(c * share, min((c + 1) * share, count)), samples, latencies)
            for c in range(connections)
        )
    )
    return time.perf_counter() - started, latencies


def run(count: int = 2000, connections: int = 4) -> list[tuple[str, str, str]]:
    counter = _Counter()
    intake = BounceIntake(
        "127.0.0.1", [0], KEY, counter.on_bounce, counter.on_complaint, hostname="bench"
    )
    intake.start()
    try:
        elapsed, latencies = asyncio.run(_send(intake.ports[0], count, connections))
    finally:
        intake.stop()
    if counter.bounces != count:
        raise RuntimeError(f"{counter.bounces} bounces recorded for {count} DSNs")
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        (f"Bounce intake: DSNs over {connections} SMTP connections", f"{count}", ""),
        ("Bounce intake: DSNs per s", f"{count / elapsed:.0f}", ">= 200"),
        (
            "Bounce intake: latency per DSN p50 (p99)",
            f"{statistics.median(latencies) * 1000:.1f} ms ({p99 * 1000:.1f} ms)",
            "",
        ),
    ]


if __name__ == "__main__":
    print_table("Machine", [(k, v, "") for k, v in describe().items()])
    print_table("Bounces", run())
