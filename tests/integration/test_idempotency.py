"""Idempotency-Key on POST /api/v1/email (issue 21): a retry answers the first answer and
sends nothing again, however it races the first; another request with the key is refused;
the key is kept in the event store, so another API process knows it; after a day it may
be used again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from eventsourcing.persistence import IntegrityError

from domain.errors import Extensions
from domain.idempotency import IdempotentRequest, idempotent_request_id
from engine.idempotency import IdempotentCall
from engine.runtime.composition import Engine, Role
from tests.integration.conftest import new_postgres_schema
from tests.integration.receiver import Receiver

Client = Callable[[Engine], httpx.AsyncClient]


def email(subject: str = "Hello", **changes: Any) -> dict[str, Any]:
    return {"Subject": subject, "ContentType": "html", "HtmlContent": "<p>Hi</p>",
            "From": {"email": "news@example.com", "name": "News"},
            "To": [{"email": "reader@example.org", "name": "Reader"}], **changes}  # fmt: skip


async def send(
    client: httpx.AsyncClient, key: str, body: dict[str, Any], idempotency_key: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return await client.post("/api/v1/email", json=body, headers=headers)


def error_of(answer: httpx.Response) -> tuple[int, int, str]:
    (error,) = answer.json()["Errors"]
    return answer.status_code, error["Code"], error["Message"]


@pytest.fixture
def delivering(
    make_engine: Callable[..., Engine], api_client: Client, receiver: Receiver
) -> tuple[httpx.AsyncClient, str]:
    """A client of an engine that delivers to ``receiver``, and a sender key."""
    engine = make_engine(SMTP_RELAY_URL=receiver.url)
    return api_client(engine), engine.app.bootstrap("example.com")["SenderAPIKey"]


async def test_a_retry_answers_the_first_answer_and_sends_nothing_again(
    delivering: tuple[httpx.AsyncClient, str], receiver: Receiver
) -> None:
    client, key = delivering

    first = await send(client, key, email(), "order-1001")
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await send(client, key, email(), "order-1001")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    # The same fields in another order are the same request.
    reordered = dict(reversed(list(email().items())))
    assert (await send(client, key, reordered, "order-1001")).json() == first.json()

    other = await send(client, key, email("Another"), "order-1001")
    assert error_of(other) == (422, 422, Extensions.IDEMPOTENCY_KEY_REUSED.message)
    without = await send(client, key, email(), None)  # no key: a send of its own
    assert without.json() != first.json()

    receiver.wait_for_count(2)
    await asyncio.sleep(1.0)  # nothing more arrives
    assert sorted(str(r.message["Subject"]) for r in receiver.received) == ["Hello", "Hello"]


@pytest.mark.parametrize("bad_key", ["", "x" * 256, "naïve", "tab\there"])
async def test_a_key_that_is_not_printable_ascii_of_255_at_most_is_refused(
    make_engine: Callable[..., Engine], api_client: Client, bad_key: str
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    key = engine.app.bootstrap("example.com")["SenderAPIKey"]
    client = api_client(engine)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": bad_key.encode("utf-8")}
    answer = await client.post("/api/v1/email", json=email(), headers=headers)  # type: ignore[arg-type]
    assert error_of(answer) == (400, 400, Extensions.INVALID_IDEMPOTENCY_KEY.message)


async def test_retries_racing_each_other_all_get_the_one_send(
    delivering: tuple[httpx.AsyncClient, str], receiver: Receiver
) -> None:
    client, key = delivering
    answers = await asyncio.gather(*(send(client, key, email(), "race") for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["MessageID"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 19
    receiver.wait_for_count(1)
    await asyncio.sleep(1.0)
    assert len(receiver.received) == 1


async def test_another_api_process_on_the_same_store_knows_the_key(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    store = new_postgres_schema()
    first_process = make_engine(roles=frozenset({Role.API}), EVENTSTORE_URL=store)
    key = first_process.app.bootstrap("example.com")["SenderAPIKey"]
    second_process = make_engine(roles=frozenset({Role.API}), EVENTSTORE_URL=store)
    first = await send(api_client(first_process), key, email(), "from-a")
    again = await send(api_client(second_process), key, email(), "from-a")
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_a_key_older_than_a_day_may_be_used_for_a_new_send(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)
    first = await send(client, keys["SenderAPIKey"], email(), "yesterday")
    # The key as a day and an hour ago: its record is moved back by a new event.
    record_id = idempotent_request_id(UUID(keys["AccountID"]), "yesterday")
    record = engine.app._get(record_id, IdempotentRequest)
    record.answer_anew(record.fingerprint, record.answer, datetime.now(UTC) - timedelta(hours=25))
    engine.app.save(record)

    anew = await send(client, keys["SenderAPIKey"], email("Other content"), "yesterday")
    assert anew.status_code == 200, anew.text
    assert anew.json() != first.json()
    assert "Idempotent-Replayed" not in anew.headers
    record = engine.app._get(record_id, IdempotentRequest)
    assert record.answer == anew.json()


async def test_a_webhook_added_again_with_the_key_is_added_once(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}), WEBHOOK_ALLOW_HTTP="true",
                         WEBHOOK_ALLOW_LOOPBACK="true")  # fmt: skip
    key = engine.app.bootstrap("example.com")["SenderAPIKey"]
    client = api_client(engine)
    body = {"Event": "delivered", "WebhookURL": "http://127.0.0.1:9/hook"}

    async def add(idempotency_key: str, **changes: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}
        return await client.post("/api/v1/webhooks", json=body | changes, headers=headers)

    answers = await asyncio.gather(*(add("hook-1") for _ in range(5)))
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.json()["NewWebhookID"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 4
    other = await add("hook-1", Event="open")
    assert error_of(other) == (422, 422, Extensions.IDEMPOTENCY_KEY_REUSED.message)
    listed = await client.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {key}"})
    webhook_ids = [w["WebhookID"] for w in listed.json()["Webhooks"]]
    assert webhook_ids == [answers[0].json()["NewWebhookID"]]


def test_a_request_answered_meanwhile_makes_the_late_one_conflict_not_renew(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    account_id = UUID(engine.app.bootstrap("example.com")["AccountID"])
    now = datetime.now(UTC)
    late, early = (IdempotentCall(account_id, "k", "POST /x", {"a": 1}) for _ in range(2))
    assert late.earlier_answer(engine.app, now) is None
    assert early.earlier_answer(engine.app, now) is None
    engine.app.save(early.record({"Id": "early"}, now))
    with pytest.raises(IntegrityError):
        engine.app.save(late.record({"Id": "late"}, now))
    assert late.earlier_answer(engine.app, now) == {"Id": "early"}


async def test_api_php_commands_that_create_take_a_key_and_others_refuse_one(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    account_key = engine.app.bootstrap("example.com")["AccountAPIKey"]
    client = api_client(engine)

    async def command(name: str, header: str | None = None, **params: Any) -> httpx.Response:
        headers = {"Idempotency-Key": header} if header is not None else {}
        body = {"APIKey": account_key, "Command": name, **params}
        return await client.post("/api.php", json=body, headers=headers)

    first = await command("List.Create", ListName="Readers", IdempotencyKey="list-1")
    assert first.json()["Success"] is True, first.text
    again = await command("List.Create", ListName="Readers", IdempotencyKey="list-1")
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    # Without the key the retry is a second request, which the name refuses.
    assert (await command("List.Create", ListName="Readers")).json()["Success"] is False
    lists = (await command("Lists.Get")).json()["Lists"]
    assert [entry["ListName"] for entry in lists] == ["Readers"]

    other = await command("List.Create", ListName="Other", IdempotencyKey="list-1")
    assert (other.status_code, other.json()) == (200, {
        "Success": False, "ErrorCode": 422,
        "ErrorMessage": Extensions.IDEMPOTENCY_KEY_REUSED.message,
    })  # fmt: skip

    created = await command("Campaign.Create", "campaign-1", CampaignName="Spring")
    copied = await command("Campaign.Create", "campaign-1", CampaignName="Spring")
    assert copied.json() == created.json()
    assert copied.headers["Idempotent-Replayed"] == "true"

    refused = await command("Campaigns.Get", "no-1")
    assert (refused.status_code, refused.json()["ErrorMessage"]) == (
        400, "Campaigns.Get does not take an Idempotency-Key"
    )  # fmt: skip


async def test_a_refused_request_may_be_retried_with_its_key_and_keys_are_per_domain(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}), WEBHOOK_ALLOW_HTTP="true",
                         WEBHOOK_ALLOW_LOOPBACK="true")  # fmt: skip
    keys = engine.app.bootstrap("example.com")
    client = api_client(engine)

    refused = await send(client, keys["SenderAPIKey"], email(Subject=""), "retry-me")
    assert refused.status_code == 422, refused.text
    accepted = await send(client, keys["SenderAPIKey"], email(), "retry-me")
    assert accepted.status_code == 200, accepted.text
    assert "Idempotent-Replayed" not in accepted.headers

    # A second domain of the account, with a sender key of its own.
    async def command(name: str, **params: Any) -> dict[str, Any]:
        body = {"APIKey": keys["AccountAPIKey"], "Command": name, **params}
        answer: dict[str, Any] = (await client.post("/api.php", json=body)).json()
        assert answer["Success"] is True, answer
        return answer

    other_domain = await command("EmailGateway.AddDomain", DomainName="other.example")
    added_key = await command("EmailGateway.AddAPI", Description="B",
                              DomainID=other_domain["NewSenderDomainID"])  # fmt: skip
    other_key = added_key["APIKey"]["Key"]
    hook = {"Event": "delivered", "WebhookURL": "http://127.0.0.1:9/hook"}
    for sender_key, status in ((keys["SenderAPIKey"], 200), (other_key, 422)):
        headers = {"Authorization": f"Bearer {sender_key}", "Idempotency-Key": "hook"}
        added = await client.post("/api/v1/webhooks", json=hook, headers=headers)
        assert added.status_code == status, added.text

    null_key = await client.post("/api.php", json={"APIKey": keys["AccountAPIKey"],
                                 "Command": "List.Create", "ListName": "L",
                                 "IdempotencyKey": None})  # fmt: skip
    assert null_key.status_code == 400, null_key.text
