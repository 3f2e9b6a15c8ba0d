"""End-to-end delivery: a burst of messages from accepted to received by Postfix's smtp-sink
to a Delivered row visible in ClickHouse, on the embedded defaults (or through Kafka)."""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from domain.content import Address, EmailContent
from engine.runtime import Engine
from engine.settings import Settings
from tests.services import start_kafka_broker, start_smtp_sink


def delivered_count(engine: Engine) -> int:
    rows = engine.reporting.query(
        "SELECT uniqExact(event_id) AS n FROM events WHERE event_type = {t:String}",
        {"t": "delivered"},
    )
    return int(rows[0]["n"])


def run(messages: int = 50_000, kafka: bool = False) -> list[tuple[str, str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="sendstream-bench-"))
    sink = start_smtp_sink()
    broker = start_kafka_broker() if kafka else None
    engine = Engine(
        Settings(
            SENDSTREAM_DATA_DIR=workdir / "var",
            SMTP_RELAY_URL=sink.url,
            KAFKA_BOOTSTRAP_SERVERS=broker.url if broker else "",
        )
    )
    try:
        keys = engine.app.bootstrap("example.com")
        sender = engine.app.sender_context(keys["SenderAPIKey"])
        assert sender is not None
        engine.start_workers()
        started = time.perf_counter()
        now = datetime.now(UTC)
        for first in range(0, messages, 1000):
            batch = []
            for n in range(first, min(first + 1000, messages)):
                content = EmailContent(
                    subject=f"Burst {n}",
                    sender=Address("news@example.com", "News"),
                    to=(Address(f"user{n}@example.org", "User"),),
                    html="<p>Hello</p>",
                    plain="Hello",
                )
                submission, recipients = engine.app.prepare_submission(sender, content, now)
                batch += [submission, *recipients]
            engine.writer.save(batch)
        accepted = time.perf_counter() - started
        with tqdm(total=messages, unit="msg", desc="delivered") as bar:
            seen = 0
            while seen < messages:
                time.sleep(0.5)
                count = delivered_count(engine)
                bar.update(count - seen)
                seen = count
                if time.perf_counter() - started > 600:
                    raise RuntimeError(f"only {seen} of {messages} delivered after 600 s")
        total = time.perf_counter() - started
    finally:
        engine.close()
        sink.stop()
        if broker:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    mode = "Kafka" if kafka else "embedded"
    return [
        (f"{mode}: burst size (messages)", f"{messages}", ""),
        (f"{mode}: accepted into the event store (s)", f"{accepted:.1f}", ""),
        (f"{mode}: accepted → Delivered in ClickHouse (s)", f"{total:.1f}", ""),
        (f"{mode}: end-to-end messages per s", f"{messages / total:.0f}", ">= 1000"),
    ]
