"""The broker killed in the middle of a run at scale and started again empty: the test
broker (Tansu) keeps topics, records and group offsets in memory, so its restart loses
them all, the worst a broker restart can do. The relay notices that the broker lost what
it had acknowledged and publishes again from the position every consumer group had
processed; the consumers rejoin and read again; nothing is skipped, no mail leaves twice,
and the counts in ClickHouse stay exact (issue 20)."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from domain.message import FINAL_STATUSES, MessageStatus
from engine.runtime.composition import Engine
from tests.integration.conftest import KAFKA_MODE, wait_for
from tests.integration.receiver import Receiver
from tests.services import (
    PrivatePostgres,
    RunningService,
    ServeProcess,
    free_port,
    start_kafka_broker,
    wait_until_healthy,
    write_burst,
)
from tests.webhook_receiver import WebhookReceiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not KAFKA_MODE, reason="the at-scale mode runs through the broker"),
]

BEFORE, DURING = 3_000, 1_000  # messages written before the kill, and while it is down
DOWN_SECONDS = 5
WEBHOOKS_LOCAL = {"WEBHOOK_ALLOW_LOOPBACK": "true", "WEBHOOK_ALLOW_HTTP": "true"}
LOST = "the broker lost events it had acknowledged"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RunningService]:
    """A broker of this test's own: the session's is shared with other tests."""
    service = start_kafka_broker(tmp_path / "broker", port=free_port())
    yield service
    service.stop()


def test_a_broker_restarted_empty_mid_run_skips_and_doubles_nothing(
    make_engine: Callable[..., Engine], broker: RunningService, postgres: PrivatePostgres,
    receiver: Receiver, webhook_receiver: WebhookReceiver, tmp_path: Path,
) -> None:  # fmt: skip
    eventstore = postgres.url
    engine = make_engine(roles=frozenset(), EVENTSTORE_URL=eventstore, **WEBHOOKS_LOCAL)
    keys = engine.app.bootstrap("example.com")
    port = free_port()
    env = {
        **os.environ,
        "EVENTSTORE_URL": eventstore,
        "KAFKA_BOOTSTRAP_SERVERS": broker.url,
        "KAFKA_TOPIC_PREFIX": f"brk{uuid.uuid4().hex[:8]}",
        # Tansu's own default: after losing its data it makes some topics again by
        # itself (a consumer's fetch or commit is enough) with its default partition
        # count, and a member that still holds another count leaves partitions unread
        # (README: the broker's default partition count should equal KAFKA_PARTITIONS).
        "KAFKA_PARTITIONS": "4",
        "SMTP_RELAY_URL": receiver.url,
        "SMTP_SUBMISSION_PORTS": "",
        "BOUNCE_SMTP_PORTS": "",
        "INBOUND_SMTP_PORTS": "",
        "DELIVERY_RETRY_SCHEDULE": "1",
        **WEBHOOKS_LOCAL,
    }
    env.pop("CLICKHOUSE_URL", None)
    api = ServeProcess("api", ["api", "projector", "webhooks"], env, tmp_path,
                       arguments=["--port", str(port)])  # fmt: skip
    workers = ServeProcess("workers", ["relay", "delivery", "scheduler", "webhook-calls"], env,
                           tmp_path)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def command(name: str, **fields: str) -> dict[str, object]:
        answer = httpx.post(
            f"{url}/api.php",
            timeout=30,
            data={"Command": name, "APIKey": keys["AccountAPIKey"], **fields},
        )
        body: dict[str, object] = answer.json()
        assert body.get("Success"), body
        return body  # fmt: skip

    def delivered_in_clickhouse() -> int:
        stats = command("EmailGateway.DomainStats", DomainID=keys["DomainID"])["Stats"]
        assert isinstance(stats, dict)
        return int(stats["Delivered"])

    try:
        api.start()
        workers.start()
        wait_until_healthy(url, seconds=60)
        command("EmailGateway.AddWebhook", DomainID=keys["DomainID"], Event="delivered",
                WebhookURL=f"{webhook_receiver.url}/hooks/delivered")  # fmt: skip
        message_ids = write_burst(engine, keys["SenderAPIKey"], BEFORE, "Before")
        receiver.wait_for_count(BEFORE // 4, timeout=120)
        broker.process.kill()
        broker.process.wait(timeout=10)
        killed_with = len(receiver.received)
        message_ids += write_burst(engine, keys["SenderAPIKey"], DURING, "During")
        time.sleep(DOWN_SECONDS)
        start_kafka_broker(broker.workdir, port=broker.port)

        def all_final() -> bool:
            return all(engine.app.message(m).status in FINAL_STATUSES for m in message_ids)

        wait_for(all_final, timeout=300, interval=1.0)
        # Exact, not at least: the projector wrote each delivery once, however often it
        # read it.
        counted: list[int] = []

        def projected() -> bool:
            counted.append(delivered_in_clickhouse())
            return counted[-1] >= len(message_ids)

        try:
            wait_for(projected, timeout=240)
        except AssertionError:
            raise AssertionError(f"ClickHouse counted {counted[-3:]} deliveries") from None
        time.sleep(3)  # anything written twice would be counted by now
        assert delivered_in_clickhouse() == len(message_ids), counted[-5:]
        wait_for(lambda: len(webhook_receiver.calls_to("/hooks/delivered")) >= len(message_ids),
                 timeout=120)  # fmt: skip
    finally:
        workers.stop()
        api.stop()

    assert killed_with < BEFORE, "every message had left before the broker was killed"
    assert workers.said(LOST) >= 1, "the relay never noticed the broker had lost its topics"
    statuses = Counter(engine.app.message(m).status for m in message_ids)
    assert statuses == {MessageStatus.DELIVERED: len(message_ids)}
    subjects = Counter(str(r.message["Subject"]) for r in receiver.received)
    assert len(subjects) == len(message_ids) and set(subjects.values()) == {1}
    calls = webhook_receiver.calls_to("/hooks/delivered")
    called = Counter(orjson.loads(c.body)["data"]["TransactionalEmailID"] for c in calls)
    assert set(called) == {str(m) for m in message_ids}
    for process in (api, workers):
        assert "Traceback" not in process.log.read_text(errors="replace"), process.name
