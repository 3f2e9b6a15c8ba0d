"""SMTP submission: messages accepted per second over authenticated connections (aiosmtplib
clients, each sending its share over its one connection), into the event store."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from aiosmtplib import SMTP
from tqdm import tqdm

from domain.account import SmtpCredential, smtp_credential_id
from engine.accounts.passwords import hash_password
from engine.runtime.composition import Engine, Role
from engine.sending.smtp_submission import SubmissionServer
from engine.settings import Settings

USERNAME = "bench@example.com"
PASSWORD = "bench password"  # noqa: S105 (a throwaway credential of a throwaway store)


def _message(n: int) -> bytes:
    return (
        "From: News <news@example.com>\r\n"
        f"To: User {n} <user{n}@example.org>\r\n"
        f"Subject: Burst {n}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n'
        "\r\n"
        "--b\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "\r\n"
        f"Hello, user {n}.\r\n"
        "--b\r\n"
        'Content-Type: text/html; charset="utf-8"\r\n'
        "\r\n"
        f"<p>Hello, user {n}.</p>\r\n"
        "--b--\r\n"
    ).encode("ascii")


async def _connection(port: int, numbers: range, latencies: list[float], bar: tqdm[Any]) -> None:
    client = SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await client.connect()
    await client.login(USERNAME, PASSWORD)
    for n in numbers:
        started = time.perf_counter()
        _, reply = await client.sendmail("news@example.com", [f"user{n}@example.org"], _message(n))
        latencies.append(time.perf_counter() - started)
        if "queued as" not in reply:
            raise RuntimeError(f"message {n} was not accepted: {reply}")
        bar.update()
    await client.quit()


async def _send(port: int, messages: int, connections: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    share = -(-messages // connections)
    with tqdm(total=messages, unit="msg", desc="accepted over SMTP") as bar:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(port, range(c * share, min((c + 1) * share, messages)), latencies, bar)
                for c in range(connections)
            )
        )
        elapsed = time.perf_counter() - started
    return elapsed, latencies


def run(messages: int = 3000, connections: int = 8) -> list[tuple[str, str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="sendstream-bench-"))
    settings = Settings(
        SENDSTREAM_DATA_DIR=workdir / "var",
        SMTP_SUBMISSION_HOST="127.0.0.1",
        SMTP_SUBMISSION_PORTS="0",
        SMTP_SUBMISSION_RATE_LIMIT="1000000/second",
        SEND_RATE_LIMIT="1000000/second",
    )
    # Acceptance alone: nothing delivers, so what is measured is the submission path.
    engine = Engine(settings, roles=frozenset({Role.API}))
    server = SubmissionServer(engine.app, engine.settings, engine.sending)
    try:
        keys = engine.app.bootstrap("example.com")
        domain = engine.app.domain(UUID(keys["DomainID"]))
        credential = SmtpCredential(
            id=smtp_credential_id(USERNAME),
            account_id=domain.account_id,
            domain_id=domain.id,
            username=USERNAME,
            password_hash=hash_password(PASSWORD),
            issued_at=datetime.now(UTC),
        )
        domain.attach_smtp_credential(credential.id)
        engine.app.save(credential, domain)
        server.start()
        elapsed, latencies = asyncio.run(_send(server.ports[0], messages, connections))
    finally:
        server.stop()
        engine.close()
        shutil.rmtree(workdir, ignore_errors=True)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        (f"SMTP submission: messages over {connections} connections", f"{messages}", ""),
        ("SMTP submission: accepted messages per s", f"{messages / elapsed:.0f}", ">= 300"),
        (
            "SMTP submission: latency per message p50 (p99)",
            f"{statistics.median(latencies) * 1000:.1f} ms ({p99 * 1000:.1f} ms)",
            "",
        ),
    ]
