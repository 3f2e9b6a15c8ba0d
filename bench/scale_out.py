"""``python -m bench scale-out``: the at-scale mode as separate processes on this machine.

PostgreSQL (the machine's server, a fresh schema per run) holds the events, the
Kafka-protocol broker carries them, ``serve --role relay --role scheduler`` runs the
relay, ``serve --role delivery`` processes share the delivery group's partitions, and
this process projects into ClickHouse (chdb) to see the Delivered events arrive. The
same burst is delivered to smtp-sink by 1, 2 and 3 delivery processes; then the relay
leader is killed with ``kill -9`` and the time until its standby leads is measured.
Two cores bound the absolute figures: the point is that adding a delivery process does
not lower throughput, and that a standby takes over in seconds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from bench.ceiling import smtp_ceiling
from bench.delivery import delivered_count, wait_until_delivered
from engine.runtime.composition import Engine, Role
from engine.settings import Settings
from tests.services import (
    RunningService,
    ServeProcess,
    start_kafka_broker,
    start_smtp_sink,
    write_burst,
)

POSTGRES_URL = os.environ.get("SENDSTREAM_BENCH_POSTGRES", "postgresql://root@127.0.0.1:5432/test")
PARTITIONS = 6


def _new_schema() -> str:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    return f"{POSTGRES_URL}?schema={schema}"


def _environment(eventstore: str, broker: RunningService, prefix: str, sink: str) -> dict[str, str]:
    return {
        **os.environ,
        "EVENTSTORE_URL": eventstore,
        "KAFKA_BOOTSTRAP_SERVERS": broker.url,
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_PARTITIONS": str(PARTITIONS),
        "SMTP_RELAY_URL": sink,
        "SMTP_SUBMISSION_PORTS": "",
        "BOUNCE_SMTP_PORTS": "",
        "INBOUND_SMTP_PORTS": "",
    }


def _one_run(
    workdir: Path, broker: RunningService, sink: RunningService, processes: int, messages: int
) -> float:
    """Messages per second from the burst written to the last Delivered in ClickHouse."""
    prefix = f"b{uuid.uuid4().hex[:8]}"
    eventstore = _new_schema()
    run_dir = workdir / prefix
    settings = Settings(
        SENDSTREAM_DATA_DIR=run_dir / "bench", EVENTSTORE_URL=eventstore,
        KAFKA_BOOTSTRAP_SERVERS=broker.url, KAFKA_TOPIC_PREFIX=prefix,
        KAFKA_PARTITIONS=PARTITIONS, SMTP_SUBMISSION_PORTS="", BOUNCE_SMTP_PORTS="",
        INBOUND_SMTP_PORTS="",
    )  # fmt: skip
    engine = Engine(settings, roles=frozenset({Role.PROJECTOR}))
    env = _environment(eventstore, broker, prefix, sink.url)
    served = [ServeProcess("leader", ["relay", "scheduler"], env, run_dir)]
    served += [ServeProcess(f"delivery{n}", ["delivery"], env, run_dir) for n in range(processes)]
    try:
        engine.start_workers()
        for process in served:
            process.start()
        keys = engine.app.bootstrap("example.com")
        deadline = time.monotonic() + 60
        while (
            sum(p.said(f"adapters.kafka: assigned {prefix}.") > 0 for p in served[1:]) < processes
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the delivery processes did not all join their group")
            time.sleep(0.2)
        started = time.perf_counter()
        write_burst(engine, keys["SenderAPIKey"], messages, "Scale-out", batch=1000)
        wait_until_delivered(engine, messages, started, label=f"{processes} process(es)")
        seconds = time.perf_counter() - started
        assert delivered_count(engine) == messages
        return messages / seconds
    finally:
        for process in served:
            process.stop()
        engine.close()


def _failover(workdir: Path, broker: RunningService, sink: RunningService) -> float:
    """Seconds from the relay leader's ``kill -9`` to its standby leading."""
    prefix = f"f{uuid.uuid4().hex[:8]}"
    env = _environment(_new_schema(), broker, prefix, sink.url)
    first, second = (ServeProcess(f"leader{n}", ["relay"], env, workdir / prefix) for n in (1, 2))
    try:
        first.start()
        while not first.said("relay: leading"):
            time.sleep(0.05)
        second.start()
        while not second.said("another process leads"):
            time.sleep(0.05)
        killed = time.monotonic()
        first.kill()
        while not second.said("relay: leading"):
            time.sleep(0.01)
        return time.monotonic() - killed
    finally:
        first.stop()
        second.stop()


def run(messages: int = 10_000) -> list[tuple[str, str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="sendstream-bench-scale-"))
    broker = start_kafka_broker()
    sink = start_smtp_sink(keep_messages=False)
    rows: list[tuple[str, str, str]] = []
    try:
        ceiling = asyncio.run(
            smtp_ceiling([(sink.host, sink.port)], min(messages, 20_000), 0,
                         lambda n: f"user{n}@example.org")
        )  # fmt: skip
        rates = []
        for processes in (1, 2, 3):
            rate = _one_run(workdir, broker, sink, processes, messages)
            rates.append(rate)
            rows.append((
                f"at scale: {messages} messages, {processes} delivery process(es) (msg/s)",
                f"{rate:.0f}", f"ceiling {ceiling:.0f}: {rate / ceiling:.0%}",
            ))  # fmt: skip
        rows.append((
            "at scale: adding a delivery process never lowered throughput",
            "yes" if rates[1] >= 0.9 * rates[0] and rates[2] >= 0.9 * rates[1] else "no",
            "within 10 % (two cores)",
        ))  # fmt: skip
        seconds = _failover(workdir, broker, sink)
        rows.append(("at scale: relay leader kill -9 → standby leading (s)", f"{seconds:.2f}",
                     "a few seconds"))  # fmt: skip
    finally:
        sink.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows
