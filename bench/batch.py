"""POST /api/v1/email/batch: batches of 1,000 recipients, each rendered with its own data,
against the real ``sendstream serve`` (embedded defaults), one at a time for the latency of
a batch and several at once for the recipients accepted per second. Beside them, single
sends of one recipient (wrk) to the same server: the rate a batch is meant to beat."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.api_accept import Server, run_wrk
from bench.machine import percentile

BATCH = 1_000


def batch_body(batch: int, size: int = BATCH) -> dict[str, Any]:
    return {
        "From": {"email": "bench@example.com", "name": "Bench"},
        "Subject": "Your order {{ order }}",
        "ContentType": "html",
        "HtmlContent": "<p>Hello {{ name }}, order {{ order }} ships today.</p>",
        "PlainContent": "Hello {{ name }}, order {{ order }} ships today.",
        "TemplateData": {"shop": "Bench"},
        "Recipients": [
            {"email": f"r{batch}-{n}@example.org", "name": f"Reader {n}",
             "TemplateData": {"name": f"Reader {n}", "order": f"{batch}-{n}"}}
            for n in range(size)
        ],
    }  # fmt: skip


async def _batches(
    url: str, key: str, count: int, in_flight: int, first: int = 0
) -> tuple[list[float], float, str]:
    """``count`` batches, ``in_flight`` at a time: each one's seconds, the wall time, and
    a MessageID of the last batch answered."""
    headers = {"Authorization": f"Bearer {key}"}
    bodies = [batch_body(first + n) for n in range(count)]
    last = ""
    latencies: list[float] = []
    next_batch = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_batch, last
        while next_batch < count:
            body = bodies[next_batch]
            next_batch += 1
            started = time.perf_counter()
            answer = await client.post(f"{url}/api/v1/email/batch", json=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            accepted = answer.json().get("Accepted")
            if answer.status_code != 200 or accepted != BATCH:
                raise RuntimeError(f"batch refused: {answer.status_code} {answer.text[:300]}")
            last = answer.json()["Recipients"][-1]["MessageID"]

    async with httpx.AsyncClient(timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(in_flight)))
        return latencies, time.perf_counter() - started, last


def _made_by(url: str, key: str, message_id: str, timeout: float = 600) -> float:
    """When the fan-out has made ``message_id``'s submission (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        shown = httpx.get(f"{url}/api/v1/email/{message_id}",
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
        if shown.status_code == 200:
            return time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError(f"{message_id} was not made in {timeout} s")


def _measure(roles: tuple[str, ...], batches: int, label: str) -> list[tuple[str, str, str]]:
    server = Server(roles=roles)
    whole = not roles
    try:
        key = server.start()
        # Single sends first, while nothing else is waiting to be done.
        single = run_wrk(server.url, key, 10, 32)
        asyncio.run(_batches(server.url, key, 5, 1, first=10_000))  # warm up
        alone, _, _ = asyncio.run(_batches(server.url, key, batches, 1, first=20_000))
        started = time.perf_counter()
        _, wall, last = asyncio.run(_batches(server.url, key, batches, 4, first=30_000))
        made = batches * BATCH / (_made_by(server.url, key, last) - started) if whole else 0.0
    finally:
        server.stop()
    alone_ms = [s * 1000 for s in alone]
    rows = [
        (f"{label}: batch of 1,000, one at a time, p50 ms",
         f"{percentile(alone_ms, 0.5):.0f}", ""),
        (f"{label}: batch of 1,000, one at a time, p99 ms",
         f"{percentile(alone_ms, 0.99):.0f}", "≤ 100 ms"),
        (f"{label}: recipients accepted per s, 4 batches in flight",
         f"{batches * BATCH / wall:,.0f}", "≥ 5,000/s"),
        (f"{label}: beside it, single sends of one recipient per s (wrk, before)",
         f"{single['rps']:,.0f}", "the rate a batch beats"),
    ]  # fmt: skip
    if whole:
        rows.append((f"{label}: messages made by the fan-out per s, the same batches",
                     f"{made:,.0f}", "what is sustained"))  # fmt: skip
    return rows


def run(batches: int = 60) -> list[tuple[str, str, str]]:
    """Acceptance alone (``serve --role api``: the event store, no fan-out, delivery or
    reporting on the machine's cores), then the whole engine making, delivering and
    counting what it accepts, and how fast its fan-out makes the messages."""
    return _measure(("api",), batches, "`serve --role api`") + _measure(
        (), batches, "whole `serve`"
    )
