"""End-to-end delivery: a burst of messages from accepted to received by Postfix's smtp-sink
to a Delivered row visible in ClickHouse, on the embedded defaults (or through Kafka)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from adapters.thread_names import name_os_thread, named_executor
from bench.ceiling import plain_text_of_size, smtp_ceiling
from bench.cpu import StageClock
from engine.application import SenderContext
from engine.runtime.composition import Engine
from engine.runtime.processes import API_PROCESS_ROLES, worker_processes
from engine.settings import Settings
from tests.services import start_kafka_broker, start_smtp_sink


def _example_org(n: int) -> str:
    return f"user{n}@example.org"


async def accept(
    engine: Engine,
    sender: SenderContext,
    messages: int,
    recipient: Callable[[int], str] = _example_org,
    plain: str = "Hello",
) -> None:
    """``messages`` sends through the send service, 500 at a time, as the API makes them."""

    async def one(n: int) -> None:
        await engine.sending.send(
            sender,
            {
                "Subject": f"Burst {n}",
                "ContentType": "html",
                "HtmlContent": "<p>Hello</p>",
                "PlainContent": plain,
                "From": {"email": "news@example.com", "name": "News"},
                "To": [{"email": recipient(n), "name": "User"}],
            },
        )

    # What the send path hands to threads is counted as the API's, as in `serve`.
    asyncio.get_running_loop().set_default_executor(named_executor("api-io"))
    for first in range(0, messages, 500):
        await asyncio.gather(*(one(n) for n in range(first, min(first + 500, messages))))


def delivered_count(engine: Engine) -> int:
    rows = engine.reporting.query(
        "SELECT uniqExact(event_id) AS n FROM events WHERE event_type = {t:String}",
        {"t": "delivered"},
    )
    return int(rows[0]["n"])


def wait_until_delivered(
    engine: Engine, messages: int, started: float, label: str = "", limit: float = 900
) -> None:
    """Watch the Delivered rows in ClickHouse, with a progress bar, until all are there."""
    with tqdm(total=messages, unit="msg", desc=f"delivered {label}".strip()) as bar:
        seen = 0
        while seen < messages:
            time.sleep(0.5)
            count = delivered_count(engine)
            bar.update(count - seen)
            seen = count
            if time.perf_counter() - started > limit:
                raise RuntimeError(f"only {seen} of {messages} delivered after {limit:.0f} s")


LARGE = 100 * 1024


def run(messages: int = 50_000, kafka: bool = False, size: int = 0) -> list[tuple[str, str, str]]:
    """``size`` is the plain text's length in bytes (0: a few words)."""
    workdir = Path(tempfile.mkdtemp(prefix="sendstream-bench-"))
    sink = start_smtp_sink(keep_messages=False)
    broker = start_kafka_broker() if kafka else None
    settings = Settings(
        SENDSTREAM_DATA_DIR=workdir / "var",
        SMTP_RELAY_URL=sink.url,
        KAFKA_BOOTSTRAP_SERVERS=broker.url if broker else "",
        API_RATE_LIMIT="1000000/second",
        SEND_RATE_LIMIT="1000000/second",
        SMTP_SUBMISSION_PORTS="",
        BOUNCE_SMTP_PORTS="",
        INBOUND_SMTP_PORTS="",
    )
    # As `sendstream serve` runs it: API and projector here, the delivery side in children.
    engine = Engine(settings, roles=API_PROCESS_ROLES)
    children = worker_processes(settings)
    ceiling = asyncio.run(
        smtp_ceiling([(sink.host, sink.port)], min(messages, 20_000), size, _example_org)
    )
    plain = plain_text_of_size(size)
    try:
        keys = engine.app.bootstrap("example.com")
        sender = engine.app.sender_context(keys["SenderAPIKey"])
        assert sender is not None
        engine.start_workers()
        for child in children:
            child.start()
        pids = {child.label: child.pid for child in children if child.pid is not None}
        name_os_thread("api")  # this thread accepts, as the API's event loop does
        clock = StageClock({"API": os.getpid(), **pids})
        clock.start()
        started = time.perf_counter()
        # Through the send service, as the API does (validation, limits, group commit),
        # without the HTTP layer, which bench.api_accept measures on its own.
        asyncio.run(accept(engine, sender, messages, plain=plain))
        accepted = time.perf_counter() - started
        wait_until_delivered(engine, messages, started)
        total = time.perf_counter() - started
        clock.stop()
    finally:
        for child in children:
            child.request_stop()
        for child in children:
            child.stop()
        engine.close()
        sink.stop()
        if broker:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    target = ">= 1200" if kafka else ">= 1000" if size else ">= 1500"
    mode = ("Kafka" if kafka else "embedded") + (f", {size // 1024} KB" if size else "")
    return [
        (f"{mode}: burst size (messages)", f"{messages}", ""),
        (f"{mode}: accepted into the event store (s)", f"{accepted:.1f}", ""),
        (f"{mode}: accepted → Delivered in ClickHouse (s)", f"{total:.1f}", ""),
        (
            f"{mode}: end-to-end messages per s",
            f"{messages / total:.0f}",
            f"{target} (ceiling {ceiling:.0f}: {messages / total / ceiling:.0%})",
        ),
        *clock.rows(mode, messages),
    ]
