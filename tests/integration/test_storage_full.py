"""A full disk, for real: the embedded data folder on a small tmpfs that the test fills in
the middle of a run. What was accepted is delivered once, what cannot be stored is refused
with an answer that says to retry, and sending resumes when space returns, without a
restart (issue 20)."""

from __future__ import annotations

import asyncio
import os
import smtplib
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Served, serving
from tests.integration.conftest import wait_for
from tests.integration.receiver import SlowReceiver
from tests.services import free_port

pytestmark = [pytest.mark.unit, pytest.mark.slow]

ACCEPTED_BEFORE = 300
TMPFS_BYTES = 256 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own (root may mount one: the test's machine is its sandbox)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(folder)],
                   check=True)  # fmt: skip
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path) -> Path:
    """Every byte left, taken by one file (dd stops at ENOSPC)."""
    filler = disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)
    assert os.statvfs(disk).f_bavail == 0
    return filler


def email(n: int) -> dict[str, object]:
    return {"Subject": f"Full disk {n}", "ContentType": "html", "HtmlContent": f"<p>{n}</p>",
            "From": {"email": "news@example.com", "name": "News"},
            "To": [{"email": f"reader{n}@example.org", "name": "Reader"}]}  # fmt: skip


def send(served: Served, numbers: range) -> list[httpx.Response]:
    async def all_of() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {served.keys['SENDER_KEY']}"}
        async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=60) as client:
            return list(await asyncio.gather(
                *(client.post("/api/v1/email", json=email(n)) for n in numbers)
            ))  # fmt: skip

    return asyncio.run(all_of())


def command(served: Served, name: str, **params: str) -> httpx.Response:
    fields = {"Command": name, "APIKey": served.keys["ACCOUNT_KEY"], **params}
    return httpx.post(f"{served.url}/api.php", data=fields, timeout=30)


def statuses(served: Served, message_ids: list[str]) -> Counter[str]:
    headers = {"Authorization": f"Bearer {served.keys['SENDER_KEY']}"}
    found: Counter[str] = Counter()
    with httpx.Client(base_url=served.url, headers=headers, timeout=30) as client:
        for message_id in message_ids:
            shown = client.get(f"/api/v1/email/{message_id}").json()
            found.update(r["Status"] for r in shown["Recipients"])
    return found


def test_a_full_disk_refuses_what_it_cannot_store_and_loses_nothing_accepted(
    small_disk: Path, tmp_path: Path
) -> None:
    receiver = SlowReceiver(0.2).start()  # 300 messages take seconds to leave
    submission_port = free_port()
    try:
        with serving(tmp_path, small_disk / "var", SMTP_RELAY_URL=receiver.url,
                     SMTP_SUBMISSION_PORTS=str(submission_port)) as served:  # fmt: skip
            domain_id = command(served, "EmailGateway.GetDomains").json()["Domains"][0]["DomainID"]
            smtp = command(served, "EmailGateway.AddSMTP", DomainID=domain_id).json()["SMTP"]

            accepted = send(served, range(ACCEPTED_BEFORE))
            assert [a.status_code for a in accepted] == [200] * ACCEPTED_BEFORE
            message_ids = [str(a.json()["MessageID"]) for a in accepted]
            filler = fill(small_disk)
            assert len(receiver.received) < ACCEPTED_BEFORE, "all was sent before the disk filled"

            # What still fits in pages the files hold already (the write-ahead log's) is
            # stored; the rest is refused with a reason and a time to come back.
            refused: list[int] = []
            n = ACCEPTED_BEFORE
            while len(refused) < 5:
                assert n < ACCEPTED_BEFORE + 2000, "nothing was refused on a full disk"
                for number, answer in zip(
                    range(n, n + 10), send(served, range(n, n + 10)), strict=True
                ):
                    if answer.status_code == 200:
                        message_ids.append(str(answer.json()["MessageID"]))
                        continue
                    assert answer.status_code == 503, answer.text
                    assert answer.headers["Retry-After"] == "30"
                    assert answer.json() == {"Errors": [{"Code": 503, "Message": (
                        "The event store is out of disk space: nothing was stored. Retry later."
                    )}]}  # fmt: skip
                    refused.append(number)
                n += 10
            made = command(served, "EmailGateway.AddDomain", DomainName="full.example")
            assert made.status_code == 503
            assert made.headers["Retry-After"] == "30"
            assert made.json()["ErrorCode"] == 503 and made.json()["Success"] is False
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = (
                "news@example.com", "reader@example.org", "By SMTP")  # fmt: skip
            message.set_content("hello")
            with smtplib.SMTP("127.0.0.1", submission_port, timeout=30) as client:
                client.login(smtp["Username"], smtp["Password"])
                with pytest.raises(smtplib.SMTPDataError) as refusal:
                    client.send_message(message)
            assert refusal.value.smtp_code == 452
            assert refusal.value.smtp_error.startswith(b"4.3.1")

            # Space returns: no restart, and every accepted message is delivered, once.
            time.sleep(3)  # the worker meets the full disk with outcomes to record
            filler.unlink()
            later = send(served, range(n, n + 5))
            assert [a.status_code for a in later] == [200] * 5
            message_ids += [str(a.json()["MessageID"]) for a in later]
            receiver.wait_for_count(len(message_ids), timeout=180)
            wait_for(lambda: statuses(served, message_ids) == {"delivered": len(message_ids)},
                     timeout=60, interval=1.0)  # fmt: skip
            subjects = Counter(str(r.message["Subject"]) for r in receiver.received)
            assert set(subjects.values()) == {1}, "a message was sent twice"
            assert len(subjects) == len(message_ids)
            assert not {f"Full disk {k}" for k in refused} & set(subjects)  # never stored
    finally:
        receiver.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "the storage is full" in log or "event store write failed" in log
    with sqlite3.connect(small_disk / "var" / "events.sqlite") as store:
        assert store.execute("PRAGMA integrity_check").fetchone() == ("ok",)
