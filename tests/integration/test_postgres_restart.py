"""PostgreSQL stopped for ten seconds in the middle of a 10,000-message run at scale, and
started again: a server of the test's own (initdb, pg_ctl), never the machine's. While it
is down the API refuses with 503 and Retry-After; the workers reconnect by themselves;
every accepted message is delivered once (issue 20)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import KAFKA_MODE, wait_for
from tests.integration.receiver import Receiver
from tests.services import (
    PrivatePostgres,
    ServeProcess,
    bootstrap_account,
    free_port,
    wait_until_healthy,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not KAFKA_MODE, reason="the at-scale mode runs through the broker"),
]

MESSAGES = 10_000
IN_FLIGHT = 32
STOP_AFTER = 2_000  # accepted messages before the database stops
DOWN_SECONDS = 10
UNAVAILABLE = "The event store cannot be reached: nothing was stored. Retry later."


def email(n: int) -> dict[str, object]:
    return {"Subject": f"Restart {n}", "ContentType": "html", "HtmlContent": f"<p>{n}</p>",
            "From": {"email": "news@example.com", "name": "News"},
            "To": [{"email": f"reader{n}@example.org", "name": "Reader"}]}  # fmt: skip


async def offer(url: str, key: str, postgres: PrivatePostgres) -> tuple[list[int], list[str]]:
    """Offer every message once (a refused one is not retried), stopping the database
    once STOP_AFTER are accepted and starting it DOWN_SECONDS later. The accepted
    subjects, and each answer's status."""
    statuses: list[int] = []
    accepted: list[str] = []
    enough, stopped = asyncio.Event(), asyncio.Event()
    numbers = iter(range(MESSAGES))

    async def outage() -> None:
        await enough.wait()
        await asyncio.to_thread(postgres.stop)
        stopped.set()
        await asyncio.sleep(DOWN_SECONDS)
        await asyncio.to_thread(postgres.start)

    async def client(session: httpx.AsyncClient) -> None:
        for n in numbers:
            answer = await session.post("/api/v1/email", json=email(n))
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                accepted.append(f"Restart {n}")
                if len(accepted) >= STOP_AFTER:
                    enough.set()
                continue
            assert answer.status_code == 503, answer.text
            assert answer.json() == {"Errors": [{"Code": 503, "Message": UNAVAILABLE}]}
            assert answer.headers["Retry-After"] == "5"
            await asyncio.sleep(0.05)  # a refused client waits a little

    headers = {"Authorization": f"Bearer {key}"}
    # Idle connections are dropped before the server's keep-alive (uvicorn's 5 s) would:
    # a request sent on a connection the server is closing meets a ReadError, its outcome
    # unknown (requests wait 5 s for the database while it is down).
    limits = httpx.Limits(keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60,
                                 limits=limits) as session:  # fmt: skip
        restarting = asyncio.create_task(outage())
        await asyncio.gather(*(client(session) for _ in range(IN_FLIGHT)))
        await restarting
    assert stopped.is_set()
    return statuses, accepted


def test_a_postgres_restart_mid_run_loses_and_doubles_nothing(
    postgres: PrivatePostgres, receiver: Receiver, request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:  # fmt: skip
    broker = request.getfixturevalue("kafka_broker")
    env = {
        **os.environ,
        "EVENTSTORE_URL": postgres.url,
        "KAFKA_BOOTSTRAP_SERVERS": broker.url,
        "KAFKA_TOPIC_PREFIX": f"pgrestart{uuid.uuid4().hex[:8]}",
        "SMTP_RELAY_URL": receiver.url,
        "SMTP_SUBMISSION_PORTS": "",
        "BOUNCE_SMTP_PORTS": "",
        "INBOUND_SMTP_PORTS": "",
        "DELIVERY_RETRY_SCHEDULE": "1",
    }
    env.pop("CLICKHOUSE_URL", None)
    keys = bootstrap_account({**env, "SENDSTREAM_DATA_DIR": str(tmp_path / "bootstrap")})
    port = free_port()
    api = ServeProcess("api", ["api"], env, tmp_path, arguments=["--port", str(port)])
    workers = ServeProcess("workers", ["relay", "delivery", "scheduler"], env, tmp_path)
    try:
        api.start()
        workers.start()
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, seconds=60)
        started = time.monotonic()
        statuses, accepted = asyncio.run(offer(url, keys["SenderAPIKey"], postgres))
        counted = Counter(statuses)
        assert counted[503] > 0, "the API never noticed the database was down"
        assert counted[200] == len(accepted) > STOP_AFTER  # it accepted again once back

        receiver.wait_for_count(len(accepted), timeout=300)
        wait_for(lambda: len(receiver.received) == len(accepted), timeout=10)
        took = time.monotonic() - started
    finally:
        workers.stop()
        api.stop()
    subjects = Counter(str(r.message["Subject"]) for r in receiver.received)
    assert set(subjects.values()) == {1}, "a message was sent twice"
    assert set(subjects) == set(accepted)
    for process in (api, workers):  # faults are warned of in a line, never a traceback
        assert "Traceback" not in process.log.read_text(errors="replace"), process.name
    print(f"{counted[200]} accepted, {counted[503]} refused while down, {took:.0f} s in all")
