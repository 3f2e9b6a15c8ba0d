"""POST /api/v1/email → event store → delivery over real SMTP → ClickHouse → GET /api/v1/events."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.message import MessageStatus, message_id_for
from engine.runtime.composition import Engine
from tests.integration.conftest import new_postgres_schema, wait_for
from tests.integration.receiver import Receiver

pytestmark = pytest.mark.slow


def email_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Subject": "Hello World",
        "ContentType": "html",
        "HtmlContent": "<p>Hello, World!</p>",
        "PlainContent": "Hello, World!",
        "From": {"email": "sender@example.com", "name": "John Doe"},
        "To": [{"email": "recipient@example.org", "name": "Jane Doe"}],
    }
    body.update(changes)
    return body


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def events_of(client: httpx.AsyncClient, key: str, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/events", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()


def status_of(engine: Engine, submission: str, index: int = 0) -> MessageStatus:
    return engine.app.message(message_id_for(UUID(submission), index)).status


@pytest.fixture(params=["sqlite", "postgres"])
def eventstore_url(request: pytest.FixtureRequest) -> str:
    return "" if request.param == "sqlite" else new_postgres_schema()


async def test_a_sent_email_is_delivered_and_its_events_are_listed(
    make_engine: Callable[..., Engine],
    api_client: Callable[[Engine], httpx.AsyncClient],
    receiver: Receiver,
    eventstore_url: str,
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url, EVENTSTORE_URL=eventstore_url)
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    attachment = base64.b64encode(b"%PDF-1.4 tiny").decode()
    response = await client.post(
        "/api/v1/email",
        json=email_body(
            CC=[{"email": "copy@example.org", "name": "Copy"}],
            BCC=[{"email": "hidden@example.org", "name": "Hidden"}],
            Attachments=[{"filename": "a.pdf", "type": "application/pdf", "content": attachment}],
            Headers={"X-Campaign": "spring"},
            Tags=["welcome"],
        ),
        headers=bearer(keys["SenderAPIKey"]),
    )
    assert response.status_code == 200, response.text
    message_id = response.json()["MessageID"]

    received = receiver.wait_for_count(3)
    by_recipient = {r.recipients[0]: r for r in received}
    assert set(by_recipient) == {"recipient@example.org", "copy@example.org", "hidden@example.org"}
    mail = by_recipient["recipient@example.org"].message
    assert mail["Subject"] == "Hello World"
    assert mail["To"] == "Jane Doe <recipient@example.org>"
    assert mail["Cc"] == "Copy <copy@example.org>"
    assert (
        mail["Bcc"] is None
        and b"hidden@example.org" not in by_recipient["recipient@example.org"].data
    )
    assert mail["X-Campaign"] == "spring"
    assert message_id in mail["Message-ID"]
    assert {part.get_content_type() for part in mail.walk()} >= {
        "text/plain", "text/html", "application/pdf",
    }  # fmt: skip

    for index in range(3):
        wait_for(lambda i=index: status_of(engine, message_id, i) is MessageStatus.DELIVERED)

    def delivered_rows() -> Any:
        listed = httpx_sync_events(engine, keys["SenderAPIKey"], message_id)
        return listed if listed["TotalRecords"] >= 12 else None

    listed = wait_for(delivered_rows)
    types = sorted(e["EventType"] for e in listed["Events"] if e["Recipient"] == "copy@example.org")
    assert types == ["accepted", "delivered", "queued", "sent"]
    assert all(e["MessageId"] == message_id for e in listed["Events"])


def httpx_sync_events(engine: Engine, key: str, message_id: str) -> dict[str, Any]:
    """Read events through the query the API uses, without an event loop."""
    from projections.events import list_events

    context = engine.app.sender_context(key)
    assert context is not None
    total, events = list_events(
        engine.reporting,
        domain_id=context.domain_id,
        start_from=0,
        retrieve_count=100,
        submission_id=UUID(message_id),
    )
    return {"TotalRecords": total, "Events": events}


async def test_events_endpoint_pages_and_filters(
    make_engine: Callable[..., Engine],
    api_client: Callable[[Engine], httpx.AsyncClient],
    receiver: Receiver,
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url)
    keys = engine.app.bootstrap("example.com")
    other = engine.app.bootstrap("example.net")
    client = api_client(engine)
    ids = []
    for n in range(3):
        response = await client.post(
            "/api/v1/email",
            json=email_body(To=[{"email": f"r{n}@example.org", "name": "R"}]),
            headers=bearer(keys["SenderAPIKey"]),
        )
        ids.append(response.json()["MessageID"])
    receiver.wait_for_count(3)
    wait_for(lambda: httpx_sync_events(engine, keys["SenderAPIKey"], ids[-1])["TotalRecords"] == 4)
    wait_for(lambda: all(
        httpx_sync_events(engine, keys["SenderAPIKey"], i)["TotalRecords"] == 4 for i in ids
    ))  # fmt: skip

    everything = await events_of(client, keys["SenderAPIKey"], RetrieveCount=100)
    assert everything["TotalRecords"] == 12
    first = await events_of(client, keys["SenderAPIKey"], StartFrom=0, RetrieveCount=5)
    second = await events_of(client, keys["SenderAPIKey"], StartFrom=5, RetrieveCount=5)
    assert len(first["Events"]) == 5 and first["TotalRecords"] == 12
    paged = [e["EventId"] for e in first["Events"] + second["Events"]]
    assert paged == [e["EventId"] for e in everything["Events"][:10]]
    default_page = await events_of(client, keys["SenderAPIKey"])
    assert len(default_page["Events"]) == 5

    delivered = await events_of(client, keys["SenderAPIKey"], Event="delivered", RetrieveCount=100)
    assert delivered["TotalRecords"] == 3
    assert {e["EventType"] for e in delivered["Events"]} == {"delivered"}
    one = await events_of(client, keys["SenderAPIKey"], MessageID=ids[0], RetrieveCount=100)
    assert one["TotalRecords"] == 4
    timestamps = [e["EventTimestamp"] for e in everything["Events"]]
    assert timestamps == sorted(timestamps, reverse=True)

    future = await events_of(client, keys["SenderAPIKey"], StartDate="2099-01-01 00:00:00")
    assert future["TotalRecords"] == 0
    past = await events_of(client, keys["SenderAPIKey"], EndDate=1_000_000_000)
    assert past["TotalRecords"] == 0

    # Another account's key sees none of it.
    assert (await events_of(client, other["SenderAPIKey"]))["TotalRecords"] == 0


async def test_temporary_failures_are_retried_and_permanent_ones_bounce(
    make_engine: Callable[..., Engine],
    api_client: Callable[[Engine], httpx.AsyncClient],
    receiver: Receiver,
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url, DELIVERY_RETRY_SCHEDULE="1")
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    deferred = await client.post(
        "/api/v1/email",
        json=email_body(To=[{"email": "defer-me@example.org", "name": "D"}]),
        headers=bearer(keys["SenderAPIKey"]),
    )
    bounced = await client.post(
        "/api/v1/email",
        json=email_body(To=[{"email": "bounce-me@example.org", "name": "B"}]),
        headers=bearer(keys["SenderAPIKey"]),
    )
    deferred_id, bounced_id = deferred.json()["MessageID"], bounced.json()["MessageID"]

    wait_for(lambda: status_of(engine, bounced_id) is MessageStatus.BOUNCED)
    bounce = engine.app.message(message_id_for(UUID(bounced_id), 0))
    assert bounce.last_reply is not None
    assert bounce.last_reply["code"] == 550 and bounce.last_reply["enhanced_status"] == "5.1.1"

    wait_for(lambda: status_of(engine, deferred_id) is MessageStatus.DELIVERED)
    message = engine.app.message(message_id_for(UUID(deferred_id), 0))
    assert message.attempts == 2
    assert [r.recipients for r in receiver.received] == [["defer-me@example.org"]]

    def events_for(submission: str) -> list[str] | None:
        listed = httpx_sync_events(engine, keys["SenderAPIKey"], submission)
        names = sorted(e["EventType"] for e in listed["Events"])
        return names if "delivered" in names or "bounced" in names else None

    assert wait_for(lambda: events_for(deferred_id)) == sorted(
        ["accepted", "queued", "sent", "deferred", "queued", "sent", "delivered"]
    )
    bounced_events = wait_for(lambda: events_for(bounced_id))
    assert bounced_events == ["accepted", "bounced", "queued", "sent"]


async def test_send_at_holds_a_message_until_its_time(
    make_engine: Callable[..., Engine],
    api_client: Callable[[Engine], httpx.AsyncClient],
    receiver: Receiver,
) -> None:
    import time as _time

    engine = make_engine(SMTP_RELAY_URL=receiver.url)
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    send_at = int(_time.time()) + 2
    response = await client.post(
        "/api/v1/email", json=email_body(SendAt=send_at), headers=bearer(keys["SenderAPIKey"])
    )
    message_id = response.json()["MessageID"]
    assert status_of(engine, message_id) is MessageStatus.SCHEDULED
    wait_for(lambda: status_of(engine, message_id) is MessageStatus.DELIVERED, timeout=20)
    assert _time.time() >= send_at
    assert len(receiver.received) == 1


async def test_without_a_relay_mail_stays_in_the_sandbox(
    make_engine: Callable[..., Engine], api_client: Callable[[Engine], httpx.AsyncClient]
) -> None:
    engine = make_engine(SMTP_RELAY_URL="")
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    response = await client.post(
        "/api/v1/email", json=email_body(), headers=bearer(keys["SenderAPIKey"])
    )
    message_id = response.json()["MessageID"]
    wait_for(lambda: status_of(engine, message_id) is MessageStatus.DELIVERED)
    message = engine.app.message(message_id_for(UUID(message_id), 0))
    assert message.last_reply is not None and "sandbox" in message.last_reply["text"]
    shown = await client.get(f"/api/v1/email/{message_id}", headers=bearer(keys["SenderAPIKey"]))
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["MessageID"] == message_id
    assert body["Recipients"][0]["Status"] == "delivered"
    assert "Subject: Hello World" in body["Recipients"][0]["Raw"]
