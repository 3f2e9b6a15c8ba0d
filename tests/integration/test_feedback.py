"""Feedback after delivery (opens, bounces, complaints, unsubscribes) and the account's
suppression lists: recorded on the Message, kept in the lists, refused by the send path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx

from domain.message import MessageStatus
from domain.suppression import BOUNCE, COMPLAINT, UNSUBSCRIBE
from engine.feedback.service import FeedbackService
from engine.runtime.composition import Engine, Role
from tests.integration.conftest import wait_for

Client = Callable[[Engine], httpx.AsyncClient]


class Tenant:
    def __init__(self, engine: Engine, client: httpx.AsyncClient, domain: str) -> None:
        self.engine, self.client = engine, client
        keys = engine.app.bootstrap(domain)
        self.account_key, self.sender_key = keys["AccountAPIKey"], keys["SenderAPIKey"]
        self.account_id = UUID(keys["AccountID"])
        self.domain = domain

    async def call(self, command: str, **params: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api.php", json={"APIKey": self.account_key, "Command": command, **params}
        )
        body: dict[str, Any] = response.json()
        return body

    async def send(self, to: str) -> httpx.Response:
        return await self.client.post(
            "/api/v1/email",
            headers={"Authorization": f"Bearer {self.sender_key}"},
            json={
                "Subject": "Hi",
                "ContentType": "plain",
                "PlainContent": "hello",
                "From": {"email": f"news@{self.domain}", "name": "News"},
                "To": [{"email": to, "name": ""}],
            },
        )


async def test_suppression_lists_are_managed_per_account_and_refuse_sending(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    client = api_client(engine)
    alpha, beta = Tenant(engine, client, "alpha.example"), Tenant(engine, client, "beta.example")

    added = await alpha.call("Unsubscribe.Add", EmailAddress="Gone@Example.org")
    assert added["Success"] is True and added["EmailAddress"] == "gone@example.org"
    again = await alpha.call("Unsubscribe.Add", EmailAddress="gone@example.org")
    assert (again["ErrorCode"], again["ErrorMessage"]) == (
        19,
        "Email address is on account's Unsubscribe List.",
    )
    listed = await alpha.call("Unsubscribes.Get")
    assert [a["EmailAddress"] for a in listed["Addresses"]] == ["gone@example.org"]
    assert (await beta.call("Unsubscribes.Get"))["Addresses"] == []
    assert (await alpha.call("Bounces.Get"))["Addresses"] == []

    refused = await alpha.send("gone@example.org")
    assert refused.status_code == 422
    assert refused.json()["Errors"][0]["Code"] == 14
    assert (await beta.send("gone@example.org")).status_code == 200  # beta's lists are its own

    exported = await alpha.call("Unsubscribes.Export")
    assert exported["Data"].splitlines()[1].startswith("gone@example.org,unsubscribe,")
    removed = await alpha.call("Unsubscribe.Remove", EmailAddress="gone@example.org")
    assert removed["Success"] is True
    assert (await alpha.send("gone@example.org")).status_code == 200

    bounced = await alpha.call("Bounce.Add", EmailAddress="bad@example.org")
    assert bounced["Success"] is True
    blocked_again = await alpha.call("Block.Add", EmailAddress="bad@example.org")
    assert blocked_again["ErrorCode"] == 20  # already on the bounce list
    missing = await alpha.call("Unsubscribe.Add")
    assert missing["ErrorMessage"] == "A required field was not supplied: EmailAddress."


async def test_feedback_is_recorded_on_the_message_and_suppresses(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API, Role.DELIVERY, Role.RELAY}))
    tenant = Tenant(engine, api_client(engine), "alpha.example")
    feedback = FeedbackService(engine.app, soft_bounce_limit=2)
    from adapters.dsn import FeedbackReport
    from domain.bounces import BounceClass

    async def delivered(to: str) -> UUID:
        response = await tenant.send(to)
        assert response.status_code == 200, response.text
        message_id = engine.app.submission(UUID(response.json()["MessageID"])).message_ids[0]
        wait_for(lambda: engine.app.message(message_id).status is MessageStatus.DELIVERED)
        return message_id

    def reason(email: str) -> str | None:
        suppressions = engine.app.suppression_list(tenant.account_id)
        return suppressions.reason_for(email) if suppressions else None

    opened = await delivered("reader@example.org")
    feedback.record_open(opened, "192.0.2.1", "Mozilla/5.0 (via ggpht.com GoogleImageProxy)")
    feedback.flush()  # hits are recorded in batches, off the caller's path
    assert engine.app.message(opened).opens == 1

    hard = await delivered("gone@example.org")
    feedback.record_bounce(hard, BounceClass("hard", True, "5.1.1", "smtp;550 5.1.1 no such user"))
    message = engine.app.message(hard)
    assert (message.status, message.bounce_kind) == (MessageStatus.BOUNCED, "hard")
    assert reason("gone@example.org") == BOUNCE

    soft = [await delivered("full@example.org") for _ in range(2)]
    feedback.record_bounce(soft[0], BounceClass("soft", False, "4.2.2", "mailbox full"))
    assert reason("full@example.org") is None
    assert engine.app.message(soft[0]).status is MessageStatus.DELIVERED  # soft: still delivered
    feedback.record_bounce(soft[1], BounceClass("soft", False, "4.2.2", "mailbox full"))
    assert reason("full@example.org") == BOUNCE  # the second within the window

    blocked = await delivered("strict@example.org")
    feedback.record_bounce(blocked, BounceClass("block", False, "5.7.1", "spam"))
    assert engine.app.message(blocked).bounce_kind == "block"
    assert reason("strict@example.org") is None  # about us, not the recipient
    unsure = await delivered("maybe@example.org")
    feedback.record_bounce(unsure, BounceClass("hard", False, "5.4.7", "expired"))
    assert reason("maybe@example.org") is None  # counted like a soft one

    complainer = await delivered("angry@example.org")
    report = FeedbackReport(
        feedback_type="abuse", user_agent="Yahoo!-Mail-Feedback/2.0",
        original_recipient="angry@example.org", original_mail_from="", abuse_id="42",
        original_message_id=None, arrival_date="",
    )  # fmt: skip
    feedback.record_complaint(complainer, report)
    feedback.record_complaint(complainer, report)  # reported twice: recorded once
    message = engine.app.message(complainer)
    assert message.complained and message.unsubscribed
    assert reason("angry@example.org") == COMPLAINT

    unsubscriber = await delivered("done@example.org")
    assert feedback.record_unsubscribe(unsubscriber, "192.0.2.9", "Mozilla", one_click=True)
    assert engine.app.message(unsubscriber).unsubscribed
    assert reason("done@example.org") == UNSUBSCRIBE
    engine.sending.forget_suppressions(tenant.account_id)
    assert (await tenant.send("done@example.org")).json()["Errors"][0]["Code"] == 14


async def test_the_accounts_custom_id_header_is_reported_with_every_event(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine()
    tenant = Tenant(engine, api_client(engine), "alpha.example")
    updated = await tenant.call("Account.Update", CustomIDHeader="X-Custom-ID")
    assert updated["CustomIDHeader"] == "X-Custom-ID"
    assert (await tenant.call("Account.Get"))["Account"]["CustomIDHeader"] == "X-Custom-ID"
    bad = await tenant.call("Account.Update", CustomIDHeader="Bad: header")
    assert bad["ErrorCode"] == 400
    response = await tenant.client.post(
        "/api/v1/email",
        headers={"Authorization": f"Bearer {tenant.sender_key}"},
        json={
            "Subject": "Hi", "ContentType": "plain", "PlainContent": "hello",
            "From": {"email": "news@alpha.example", "name": "News"},
            "To": [{"email": "reader@example.org", "name": ""}],
            "Headers": {"X-Custom-ID": "order-987987"},
        },
    )  # fmt: skip
    assert response.status_code == 200, response.text

    async def custom_ids() -> set[str]:
        listed = await tenant.client.get(
            "/api/v1/events",
            params={"MessageID": response.json()["MessageID"], "RetrieveCount": 100},
            headers={"Authorization": f"Bearer {tenant.sender_key}"},
        )
        events = listed.json()["Events"]
        if not any(e["EventType"] == "delivered" for e in events):
            return set()
        return {e["Details"].get("CustomID", "") for e in events}

    # As long as wait_for allows: in Kafka mode the consumers may still be joining their group.
    for _ in range(300):
        found = await custom_ids()
        if found:
            break
        await asyncio.sleep(0.1)
    assert found == {"order-987987"}
