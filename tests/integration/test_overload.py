"""Overload (issue 20): offered more sends at once than it takes in progress, the API
refuses the rest with 503 and Retry-After, stores nothing of what it refused, and delivers
every send it accepted. The load is real: a hundred senders at once on one process, and
a limit of eight sends in progress."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from domain.errors import Extensions, RequestRejected
from engine.runtime.composition import Engine
from engine.sending.smtp_submission import reply_for_rejection
from tests.integration.receiver import Receiver

SENDERS = 100
OFFER_SECONDS = 4.0


def email(name: str) -> dict[str, object]:
    return {"Subject": name, "ContentType": "html", "HtmlContent": f"<p>{name}</p>",
            "From": {"email": "news@example.com", "name": "News"},
            "To": [{"email": "reader@example.org", "name": "Reader"}]}  # fmt: skip


async def test_an_overloaded_api_refuses_a_share_clearly_and_delivers_all_it_accepted(
    make_engine: Callable[..., Engine],
    api_client: Callable[[Engine], httpx.AsyncClient],
    receiver: Receiver,
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url, MAX_SENDS_IN_PROGRESS="8")
    key = engine.app.bootstrap("example.com")["SenderAPIKey"]
    client = api_client(engine)
    accepted: list[str] = []
    refused: list[tuple[str, httpx.Response]] = []
    stop_at = time.monotonic() + OFFER_SECONDS

    async def sender(number: int) -> None:
        sent = 0
        while time.monotonic() < stop_at:
            name = f"Load {number}-{sent}"
            sent += 1
            answer = await client.post("/api/v1/email", json=email(name),
                                       headers={"Authorization": f"Bearer {key}"})  # fmt: skip
            if answer.status_code == 200:
                accepted.append(name)
            else:
                refused.append((name, answer))

    await asyncio.gather(*(sender(n) for n in range(SENDERS)))

    assert accepted and refused
    for _, answer in refused:
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert answer.json() == {"Errors": [{"Code": 503, "Message": Extensions.BUSY.message}]}
    assert engine.sending.admission.refused == len(refused)
    # Sends refused after their place was taken give it back: bad JSON, a bad field.
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    assert (await client.post("/api/v1/email", content=b"{", headers=headers)).status_code == 400
    bad = await client.post("/api/v1/email", json=email("") | {"From": {}}, headers=headers)
    assert bad.status_code == 422, bad.text
    assert engine.sending.admission.in_progress == 0

    received = receiver.wait_for_count(len(accepted), timeout=120)
    await asyncio.sleep(1.0)  # nothing refused arrives later either
    subjects = [str(r.message["Subject"]) for r in receiver.received]
    assert sorted(subjects) == sorted(accepted)
    assert len(received) == len(accepted)


def test_a_busy_smtp_submission_is_told_to_try_again_later() -> None:
    reply = reply_for_rejection(RequestRejected(Extensions.BUSY, retry_after=1))
    assert reply == "451 4.3.2 The server is busy: nothing was stored. Retry later."
