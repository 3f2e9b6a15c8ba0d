"""Kill -9 the delivery worker mid-batch, restart it: nobody receives a message twice,
whether mail leaves through a relay or straight to the recipients' mail servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.content import Address, EmailContent
from domain.message import FINAL_STATUSES, MessageStatus
from engine.delivery.worker import INTERRUPTED
from engine.runtime.composition import Engine, Role
from tests.fake_mx import FakeMx
from tests.integration.conftest import wait_for
from tests.integration.receiver import Receiver, SlowReceiver

pytestmark = pytest.mark.slow

MESSAGES = 1500


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = SlowReceiver(0.003).start()
    yield server
    server.stop()


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--role", "delivery"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )


# "direct" asks for the fake mail servers only when it runs: its mark puts it beside the
# other tests of them when the suite is spread over processes (tests/conftest.py).
@pytest.fixture(params=["relay", pytest.param("direct", marks=pytest.mark.xdist_group("fake-mx"))])
def outbound(request: pytest.FixtureRequest, receiver: Receiver) -> tuple[dict[str, str], str]:
    """The worker's settings for each way out, and the recipients' domain."""
    if request.param == "relay":
        return {"SMTP_RELAY_URL": receiver.url}, "example.org"
    fake_mx: FakeMx = request.getfixturevalue("fake_mx")
    # crash.example's MX host is 127.0.0.1, where the receiver listens on its own port.
    return {
        "DELIVERY_MODE": "direct",
        "DNS_RESOLVER": fake_mx.resolver,
        "DIRECT_ALLOW_PRIVATE_ADDRESSES": "true",
        "DIRECT_SMTP_PORT": str(receiver.port),
    }, "crash.example"


def test_killing_the_worker_mid_batch_never_duplicates_a_message(
    make_engine: Callable[..., Engine],
    receiver: Receiver,
    outbound: tuple[dict[str, str], str],
    tmp_path: Path,
) -> None:
    worker_settings, recipient_domain = outbound
    engine = make_engine(roles=frozenset({Role.RELAY}), SMTP_RELAY_URL=receiver.url)
    keys = engine.app.bootstrap("example.com")
    sender = engine.app.sender_context(keys["SenderAPIKey"])
    assert sender is not None
    now = datetime.now(UTC)
    message_ids = []
    batch = []
    for n in range(MESSAGES):
        content = EmailContent(
            subject=f"Crash test {n}",
            sender=Address("news@example.com", "News"),
            to=(Address(f"user{n}@{recipient_domain}", "User"),),
            plain="hello",
        )
        submission, messages = engine.app.prepare_submission(sender, content, now)
        batch += [submission, *messages]
        message_ids += [m.id for m in messages]
    engine.writer.save(batch)

    settings = engine.settings
    env = {
        **os.environ,
        "SENDSTREAM_DATA_DIR": str(settings.data_dir),
        **worker_settings,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "DELIVERY_CONCURRENCY": "32",
    }
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        receiver.wait_for_count(300, timeout=120)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        received_at_kill = len(receiver.received)
        assert received_at_kill < MESSAGES, "the worker finished before it could be killed"

        worker = start_worker(env, log)

        def all_final() -> bool:
            return all(engine.app.message(m).status in FINAL_STATUSES for m in message_ids)

        wait_for(all_final, timeout=180, interval=0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)

    received = Counter(r.message["Message-ID"] for r in receiver.received)
    duplicates = {k: v for k, v in received.items() if v > 1}
    assert not duplicates, f"{len(duplicates)} messages were received more than once"

    statuses = Counter()
    interrupted = 0
    for message_id in message_ids:
        message = engine.app.message(message_id)
        statuses[message.status] += 1
        if message.status is MessageStatus.FAILED:
            assert message.failure_reason == INTERRUPTED
            interrupted += 1
    assert statuses[MessageStatus.DELIVERED] + interrupted == MESSAGES
    # Only messages that were mid-transaction at the kill can be in doubt.
    assert interrupted <= 32
    assert len(received) >= statuses[MessageStatus.DELIVERED]
