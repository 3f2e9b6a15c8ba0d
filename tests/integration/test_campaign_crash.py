"""Kill -9 the engine in the middle of a campaign's fan-out and delivery, start it again:
every recipient gets the campaign once, and nobody twice."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from uuid import UUID

import pytest

from domain.campaign import CampaignStatus, campaign_message_id
from domain.message import MessageStatus
from engine.delivery.worker import INTERRUPTED
from engine.runtime.composition import Engine
from engine.settings import Settings
from tests.integration.conftest import wait_for
from tests.integration.receiver import Receiver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RECIPIENTS = 3000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(data_dir: Path) -> tuple[UUID, UUID]:
    """An approved campaign to RECIPIENTS subscribers; the engine that made it is closed."""
    engine = Engine(Settings(SENDSTREAM_DATA_DIR=data_dir), roles=frozenset())
    try:
        keys = engine.app.bootstrap("shop.example")
        account = engine.app.account(UUID(keys["AccountID"]))
        service = engine.campaigns
        created = service.create_list(account, {"ListName": "All"})
        rows = "\n".join(["EmailAddress"] + [f"r{n}@example.org" for n in range(RECIPIENTS)])
        service.import_subscribers(account, {"ListID": created["ListID"], "Data": rows})
        email = service.create_email(
            account,
            {"Subject": "Hi", "FromName": "Shop", "FromEmail": "news@shop.example",
             "MessagePlain": "hello"},
        )  # fmt: skip
        campaign = service.create_campaign(account, {"CampaignName": "Crash"})
        service.update_campaign(
            account,
            {"CampaignID": campaign["CampaignID"], "RelEmailID": email["EmailID"],
             "RecipientListsAndSegments": created["ListID"]},
        )  # fmt: skip
        service.approve(account, {"CampaignID": campaign["CampaignID"]})
        return UUID(campaign["CampaignID"]), account.id
    finally:
        engine.close()


def serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--single-process",
         "--port", str(free_port())],
        env=env, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_killing_the_engine_mid_campaign_sends_each_recipient_at_most_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    data_dir = tmp_path / "var"
    campaign_id, _ = prepare(data_dir)
    env = {
        **os.environ,
        "SENDSTREAM_DATA_DIR": str(data_dir),
        "SMTP_RELAY_URL": receiver.url,
        "SMTP_SUBMISSION_PORTS": "",
        "BOUNCE_SMTP_PORTS": "",
        "INBOUND_SMTP_PORTS": "",
        "CAMPAIGN_FANOUT_WINDOW": "400",  # fan-out stays just ahead: the kill lands in it
        "KAFKA_BOOTSTRAP_SERVERS": "",
    }
    log = tmp_path / "serve.log"
    first = serve(env, log)
    try:
        wait_for(lambda: len(receiver.received) >= 600, timeout=120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    received_before_kill = len(receiver.received)
    assert received_before_kill < RECIPIENTS, "the kill came too late to prove anything"

    second = serve(env, log)
    try:
        checker = Engine(Settings(SENDSTREAM_DATA_DIR=data_dir), roles=frozenset())

        def sent() -> bool:
            campaign = checker.campaigns._get(campaign_id, object)
            return campaign.status is CampaignStatus.SENT  # type: ignore[attr-defined,no-any-return]

        wait_for(sent, timeout=180)
        campaign = checker.campaigns._get(campaign_id, object)
        instance = campaign.current_instance  # type: ignore[attr-defined]
        statuses = Counter()
        interrupted = set()
        for index in range(RECIPIENTS):
            message = checker.app.message(campaign_message_id(instance, index))
            statuses[message.status] += 1
            if message.failure_reason == INTERRUPTED:
                interrupted.add(message.recipient)
        checker.close()
    finally:
        second.terminate()
        second.wait(timeout=60)

    copies = Counter(r.recipients[0] for r in receiver.received)
    assert max(copies.values()) == 1, "a recipient got the campaign twice"
    # Every message was created exactly once and reached a final state ...
    assert sum(statuses.values()) == RECIPIENTS
    assert set(statuses) <= {MessageStatus.DELIVERED, MessageStatus.FAILED}
    # ... and all arrived but those the kill caught inside their SMTP transaction, which
    # are failed as "interrupted" rather than risk a second copy.
    missing = {f"r{n}@example.org" for n in range(RECIPIENTS)} - set(copies)
    assert missing <= interrupted
    assert len(interrupted) <= 64  # DELIVERY_CONCURRENCY
