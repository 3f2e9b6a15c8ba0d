"""DELIVERY_MODE=direct end to end: POST /api/v1/email → DNS → the recipient domain's own
mail server → the outcome, naming that server, on the Message and in /api/v1/events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.message import MessageStatus, message_id_for
from engine.runtime.composition import Engine
from tests.fake_mx import FakeMx
from tests.integration.conftest import wait_for
from tests.services import parse_sink_message, received_messages

pytestmark = pytest.mark.slow


def direct_engine(make_engine: Callable[..., Engine], fake_mx: FakeMx) -> Engine:
    return make_engine(
        DELIVERY_MODE="direct",
        DNS_RESOLVER=fake_mx.resolver,
        DIRECT_ALLOW_PRIVATE_ADDRESSES="true",
        DIRECT_TIMEOUT_SECONDS="2",
    )


async def send_to(client: httpx.AsyncClient, key: str, *recipients: str) -> str:
    response = await client.post(
        "/api/v1/email",
        json={
            "Subject": "Direct",
            "ContentType": "plain",
            "PlainContent": "Straight to your server.",
            "From": {"email": "news@example.com", "name": "News"},
            "To": [{"email": address, "name": "Reader"} for address in recipients],
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    message_id: str = response.json()["MessageID"]
    return message_id


async def events(client: httpx.AsyncClient, key: str, message_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/v1/events",
        params={"MessageID": message_id},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["Events"]
    return found


async def test_mail_reaches_the_recipients_own_server_and_the_event_names_it(
    make_engine: Callable[..., Engine],
    api_client: Callable[[Engine], httpx.AsyncClient],
    fake_mx: FakeMx,
) -> None:
    engine = direct_engine(make_engine, fake_mx)
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    sink = fake_mx.sinks["mx1.alpha.example"]
    before = len(received_messages(sink))

    message_id = await send_to(client, keys["SenderAPIKey"], "alice@alpha.example")
    message = message_id_for(UUID(message_id), 0)
    wait_for(lambda: engine.app.message(message).status is MessageStatus.DELIVERED)

    arrived = [parse_sink_message(raw) for raw in received_messages(sink)[before:]]
    assert any(
        mail.recipients == ("alice@alpha.example",) and message_id.encode() in mail.content
        for mail in arrived
    )
    assert engine.app.message(message).last_reply is not None

    def delivered() -> dict[str, Any] | None:
        rows = [e for e in events_now() if e["EventType"] == "delivered"]
        return rows[0] if rows else None

    def events_now() -> list[dict[str, Any]]:
        from projections.events import list_events

        context = engine.app.sender_context(keys["SenderAPIKey"])
        assert context is not None
        _, found = list_events(
            engine.reporting, domain_id=context.domain_id, start_from=0,
            retrieve_count=50, submission_id=UUID(message_id),
        )  # fmt: skip
        return found

    row = wait_for(delivered)
    assert row["Details"]["RemoteMTA"] == "mx1.alpha.example[127.0.0.2]"
    listed = await events(client, keys["SenderAPIKey"], message_id)
    assert any(e["Details"].get("RemoteMTA") == "mx1.alpha.example[127.0.0.2]" for e in listed)


async def test_a_null_mx_bounces_and_a_silent_dns_defers(
    make_engine: Callable[..., Engine],
    api_client: Callable[[Engine], httpx.AsyncClient],
    fake_mx: FakeMx,
) -> None:
    engine = direct_engine(make_engine, fake_mx)
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    message_id = await send_to(
        client, keys["SenderAPIKey"], "erin@null.example", "hank@elsewhere.org"
    )
    null_mx, no_answer = (message_id_for(UUID(message_id), n) for n in range(2))

    wait_for(lambda: engine.app.message(null_mx).status is MessageStatus.BOUNCED)
    bounced = engine.app.message(null_mx)
    assert bounced.last_reply is not None
    assert (bounced.last_reply["code"], bounced.last_reply["enhanced_status"]) == (556, "5.1.10")

    def deferred_once() -> bool:
        message = engine.app.message(no_answer)
        # an attempt's reply is recorded once it ends; SENDING alone is an attempt under way
        return message.last_reply is not None and message.status in (
            MessageStatus.DEFERRED, MessageStatus.QUEUED, MessageStatus.SENDING,
        )  # fmt: skip

    wait_for(deferred_once)
    reply = engine.app.message(no_answer).last_reply
    assert reply is not None and reply["enhanced_status"] == "4.4.3"
