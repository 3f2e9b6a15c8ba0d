"""The at-scale mode spread over processes that die: PostgreSQL holds the events, the
Kafka-protocol broker carries them, two processes each run the relay and the scheduler
(one leads, one waits), three share delivery through their consumer group. Killing the
relay leader and a delivery process with ``kill -9`` mid-run and starting them again
loses nothing and sends nothing twice."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from domain.message import FINAL_STATUSES, MessageStatus
from engine.delivery.worker import INTERRUPTED
from engine.runtime.composition import Engine
from tests.integration.conftest import KAFKA_MODE, new_postgres_schema, wait_for
from tests.integration.receiver import Receiver
from tests.integration.test_crash_safety import SlowHandlerReceiver
from tests.services import ServeProcess, write_burst

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not KAFKA_MODE, reason="the at-scale mode runs through the broker"),
]

MESSAGES = 2000


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = SlowHandlerReceiver().start()
    yield server
    server.stop()


def test_killing_leaders_and_a_delivery_process_loses_and_doubles_nothing(
    make_engine: Callable[..., Engine], receiver: Receiver, tmp_path: Path
) -> None:
    eventstore = new_postgres_schema()
    engine = make_engine(roles=frozenset(), EVENTSTORE_URL=eventstore)
    keys = engine.app.bootstrap("example.com")

    settings = engine.settings
    env = {
        **os.environ,
        "EVENTSTORE_URL": eventstore,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "KAFKA_PARTITIONS": "6",
        "SMTP_RELAY_URL": receiver.url,
        "DELIVERY_CONCURRENCY": "16",
        "DELIVERY_RETRY_SCHEDULE": "1",
        "SMTP_SUBMISSION_PORTS": "",
        "BOUNCE_SMTP_PORTS": "",
    }
    singletons = [ServeProcess(f"leader{n}", ["relay", "scheduler"], env, tmp_path) for n in (1, 2)]
    deliveries = [ServeProcess(f"delivery{n}", ["delivery"], env, tmp_path) for n in (1, 2, 3)]
    everyone = singletons + deliveries
    try:
        for process in everyone:
            process.start()
        wait_for(lambda: sum(p.said("relay: leading") for p in singletons) == 1, timeout=60)
        wait_for(lambda: sum(p.said("scheduler: leading") for p in singletons) == 1, timeout=60)
        # The other process waits as the standby of both roles.
        wait_for(lambda: sum(p.said("another process leads") for p in singletons) >= 2)

        message_ids = write_burst(engine, keys["SenderAPIKey"], MESSAGES, "Scale test")

        receiver.wait_for_count(300, timeout=120)
        leader = next(p for p in singletons if p.said("relay: leading"))
        standby = next(p for p in singletons if p is not leader)
        killed_at = time.monotonic()
        leader.kill()
        deliveries[0].kill()
        assert len(receiver.received) < MESSAGES, "all was sent before the kills"
        wait_for(lambda: standby.said("relay: leading"), timeout=30)
        takeover = time.monotonic() - killed_at
        # Started again once the broker has let the dead member go (its session, 6 s): the
        # test broker (Tansu) leaves the group rejoining forever when the new member joins
        # while the dead one is still a member (its SyncGroup never gives assignments).
        time.sleep(8)
        leader.start()
        deliveries[0].start()

        def all_final() -> bool:
            return all(engine.app.message(m).status in FINAL_STATUSES for m in message_ids)

        wait_for(all_final, timeout=300, interval=1.0)
        # The restarted delivery process is given partitions again.
        assigned = f"adapters.kafka: assigned {settings.kafka_topic_prefix}."
        wait_for(lambda: deliveries[0].said(assigned, since_start=True), timeout=60)
    finally:
        for process in everyone:
            process.stop()

    assert takeover < 15, f"the standby took {takeover:.1f} s to lead"
    subjects = Counter(r.message["Subject"] for r in receiver.received)
    assert not {k: v for k, v in subjects.items() if v > 1}, "a message was received twice"
    statuses: Counter[MessageStatus] = Counter()
    for n, message_id in enumerate(message_ids):
        message = engine.app.message(message_id)
        statuses[message.status] += 1
        if message.status is MessageStatus.DELIVERED:
            assert f"Scale test {n}" in subjects, f"message {n} is Delivered but never arrived"
        else:
            # Failed only if the killed process had it in flight: it may have arrived.
            assert message.status is MessageStatus.FAILED
            assert message.failure_reason == INTERRUPTED
    assert statuses[MessageStatus.FAILED] <= 16  # DELIVERY_CONCURRENCY of the killed process
    assert all(p.said(assigned) for p in deliveries)
