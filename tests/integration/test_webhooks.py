"""Webhooks end to end: commands on /api.php and /api/v1/webhooks, calls made to a real
HTTP server (uvicorn), signatures checked by the Standard Webhooks library, retries,
disabling, the attempt log and the seven-day backfill."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from domain.webhook import Webhook as WebhookAggregate
from engine.runtime.composition import ALL_ROLES, Engine, Role
from tests.integration.conftest import wait_for
from tests.webhook_receiver import WebhookReceiver

Client = Callable[[Engine], httpx.AsyncClient]

LOCAL = {"WEBHOOK_ALLOW_LOOPBACK": "true", "WEBHOOK_ALLOW_HTTP": "true"}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(slow_seconds=5).start()
    yield server
    server.stop()


class Api:
    def __init__(self, engine: Engine, client: httpx.AsyncClient) -> None:
        self.engine = engine
        self.client = client
        self.keys = engine.app.bootstrap("shop.example")

    async def call(self, name: str, **params: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api.php", json={"APIKey": self.keys["AccountAPIKey"], "Command": name, **params}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def ok(self, name: str, **params: Any) -> dict[str, Any]:
        body = await self.call(name, **params)
        assert body["Success"] is True, body
        return body

    async def send(self, to: str) -> UUID:
        response = await self.client.post(
            "/api/v1/email",
            headers={"Authorization": f"Bearer {self.keys['SenderAPIKey']}"},
            json={
                "Subject": "Hello",
                "ContentType": "plain",
                "PlainContent": "Hi there",
                "From": {"email": "news@shop.example", "name": "Shop"},
                "To": [{"email": to, "name": ""}],
            },
        )
        assert response.status_code == 200, response.text
        return UUID(response.json()["MessageID"])


def api_for(make_engine: Callable[..., Engine], api_client: Client, **env: Any) -> Api:
    engine = make_engine(**{**LOCAL, **env})
    return Api(engine, api_client(engine))


async def test_delivered_mail_is_posted_signed_and_logged(
    make_engine: Callable[..., Engine], api_client: Client, receiver: WebhookReceiver
) -> None:
    api = api_for(make_engine, api_client)
    domain_id = api.keys["DomainID"]
    added = await api.ok(
        "EmailGateway.AddWebhook", DomainID=domain_id, Event="delivered",
        WebhookURL=f"{receiver.url}/hooks/delivery",
    )  # fmt: skip
    await api.ok(
        "EmailGateway.AddWebhook", DomainID=domain_id, Event="send", Method="FORM",
        WebhookURL=f"{receiver.url}/hooks/sent?source=sendstream",
        Parameters={"EmailAddress": "email", "Subject": "subject", "UserID": ""},
    )  # fmt: skip
    listed = await api.ok("EmailGateway.GetWebhooks", DomainID=domain_id)
    signing_key = listed["SigningKey"]
    assert signing_key.startswith("whsec_")
    assert {(w["Event"], w["Status"]) for w in listed["Webhooks"]} == {
        ("delivered", "Active"), ("send", "Active"),
    }  # fmt: skip

    message = await api.send("reader@example.org")
    wait_for(lambda: receiver.calls_to("/hooks/delivery") and receiver.calls_to("/hooks/sent"))

    [delivery] = receiver.calls_to("/hooks/delivery")
    assert delivery.method == "POST" and delivery.headers["content-type"] == "application/json"
    # A verifier library, not our own code, checks the signature.
    payload = StandardWebhook(signing_key).verify(delivery.body, delivery.headers)
    assert payload["type"] == "email.delivery"
    assert payload["data"]["EmailAddress"] == "reader@example.org"
    assert payload["data"]["TransactionalGroupID"] == str(message)
    assert payload["data"]["Subject"] == "Hello"
    with pytest.raises(Exception):  # noqa: B017 (the library's own verification error)
        StandardWebhook(signing_key).verify(delivery.body + b" ", delivery.headers)

    [sent] = receiver.calls_to("/hooks/sent")
    assert sent.method == "POST" and sent.query == "source=sendstream"
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(sent.body.decode()) == {"email": ["reader@example.org"], "subject": ["Hello"]}
    # The library verifies, then reads the body as JSON; a form body is signed all the same.
    expected = StandardWebhook(signing_key).sign(
        sent.headers["webhook-id"],
        datetime.fromtimestamp(int(sent.headers["webhook-timestamp"]), UTC),
        sent.body.decode(),
    )
    assert sent.headers["webhook-signature"] == expected

    log = await api.ok("EmailGateway.GetWebhookAttempts", WebhookID=added["NewWebhookID"])
    wait_for(lambda: api.engine.webhook_store.attempts(UUID(added["NewWebhookID"]), 0, 10)[0])
    log = await api.ok("EmailGateway.GetWebhookAttempts", WebhookID=added["NewWebhookID"])
    assert log["TotalRecords"] == 1
    [attempt] = log["Attempts"]
    assert attempt["Success"] is True and attempt["StatusCode"] == 200
    assert attempt["URL"] == f"{receiver.url}/hooks/delivery" and attempt["Response"] == "ok"
    failures = await api.ok(
        "EmailGateway.GetWebhookAttempts", WebhookID=added["NewWebhookID"], Status="Failure"
    )
    assert failures["TotalRecords"] == 0


async def test_a_failing_endpoint_is_retried_with_the_same_id_and_disabled_in_the_end(
    make_engine: Callable[..., Engine], api_client: Client, receiver: WebhookReceiver
) -> None:
    api = api_for(make_engine, api_client, WEBHOOK_RETRY_SCHEDULE="0.2", WEBHOOK_DISABLE_AFTER="4")
    domain_id = api.keys["DomainID"]
    flaky = await api.ok(
        "EmailGateway.AddWebhook", DomainID=domain_id, Event="delivery",
        WebhookURL=f"{receiver.url}/flaky", Method="GET",
    )  # fmt: skip
    failing = await api.ok(
        "EmailGateway.AddWebhook", DomainID=domain_id, Event="delivery",
        WebhookURL=f"{receiver.url}/fail",
    )  # fmt: skip
    await api.send("reader@example.org")

    # The flaky endpoint: 503, then 200 to the retry, which carries the same webhook-id.
    wait_for(lambda: len(receiver.calls_to("/flaky")) >= 2)
    first, second = receiver.calls_to("/flaky")[:2]
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.method == "GET" and "EmailAddress=reader%40example.org" in first.query
    # The failing one: four failures in a row disable it, and GetWebhooks says why.
    wait_for(
        lambda: (
            api.engine.app._get(UUID(failing["NewWebhookID"]), WebhookAggregate).status
            == "Disabled"
        )
    )
    listed = await api.ok("EmailGateway.GetWebhooks", DomainID=domain_id)
    by_id = {w["WebhookID"]: w for w in listed["Webhooks"]}
    assert by_id[failing["NewWebhookID"]]["Status"] == "Disabled"
    assert "4 consecutive failed calls" in by_id[failing["NewWebhookID"]]["DisabledReason"]
    assert "HTTP 500" in by_id[failing["NewWebhookID"]]["DisabledReason"]
    assert by_id[flaky["NewWebhookID"]]["Status"] == "Active"
    calls_when_disabled = len(receiver.calls_to("/fail"))
    assert calls_when_disabled == 4
    log = await api.ok(
        "EmailGateway.GetWebhookAttempts", WebhookID=failing["NewWebhookID"], Status="Failure",
        RetrieveCount=2,
    )  # fmt: skip
    assert log["TotalRecords"] == 4 and [a["Attempt"] for a in log["Attempts"]] == [4, 3]
    assert log["Attempts"][0]["StatusCode"] == 500

    await api.send("later@example.org")  # a disabled webhook is not called
    wait_for(lambda: len(receiver.calls_to("/flaky")) >= 4)
    assert len(receiver.calls_to("/fail")) == calls_when_disabled


async def test_a_new_webhook_gets_the_last_seven_days_oldest_first(
    make_engine: Callable[..., Engine], api_client: Client, receiver: WebhookReceiver
) -> None:
    api = api_for(make_engine, api_client)
    for n in range(3):
        await api.send(f"reader{n}@example.org")
    reporting = api.engine.reporting
    wait_for(
        lambda: (
            reporting.query("SELECT count() AS n FROM events WHERE event_type = 'delivered'")[0][
                "n"
            ]
            == 3
        )
    )
    await api.ok(
        "EmailGateway.AddWebhook", DomainID=api.keys["DomainID"], Event="delivery",
        WebhookURL=f"{receiver.url}/backfill",
    )  # fmt: skip
    wait_for(lambda: len(receiver.calls_to("/backfill")) == 3)
    recipients = [
        json.loads(c.body)["data"]["EmailAddress"] for c in receiver.calls_to("/backfill")
    ]
    assert sorted(recipients) == [f"reader{n}@example.org" for n in range(3)]


@pytest.mark.parametrize(
    ("params", "code"),
    [({"Event": "open", "WebhookURL": "https://hooks.example/x"}, 1),
     ({"DomainID": "{domain}", "WebhookURL": "https://hooks.example/x"}, 2),
     ({"DomainID": "{domain}", "Event": "deferred", "WebhookURL": "https://hooks.example/x"}, 3),
     ({"DomainID": "00000000-0000-0000-0000-000000000000", "Event": "open",
       "WebhookURL": "https://hooks.example/x"}, 4),
     ({"DomainID": "{domain}", "Event": "open"}, 5),
     ({"DomainID": "{domain}", "Event": "open", "WebhookURL": "ftp://hooks.example/x"}, 422),
     ({"DomainID": "{domain}", "Event": "open", "WebhookURL": "http://127.0.0.1:9/x"}, 422),
     ({"DomainID": "{domain}", "Event": "open", "WebhookURL": "https://hooks.example/x",
       "Parameters": {"NoSuchField": "x"}}, 422),
     ({"DomainID": "{domain}", "Event": "open", "WebhookURL": "https://hooks.example/x",
       "Method": "PUT"}, 422)],
)  # fmt: skip
async def test_add_webhook_errors_leave_nothing_behind(
    make_engine: Callable[..., Engine], api_client: Client, params: dict[str, Any], code: int
) -> None:
    engine = make_engine()  # the defaults: https only, loopback refused
    api = Api(engine, api_client(engine))
    filled = {k: v.format(domain=api.keys["DomainID"]) if isinstance(v, str) else v
              for k, v in params.items()}  # fmt: skip
    body = await api.call("EmailGateway.AddWebhook", **filled)
    assert body["Success"] is False and body["ErrorCode"] == code, body
    listed = await api.ok("EmailGateway.GetWebhooks", DomainID=api.keys["DomainID"])
    assert listed["Webhooks"] == []


async def test_the_rest_endpoints(
    make_engine: Callable[..., Engine], api_client: Client, receiver: WebhookReceiver
) -> None:
    api = api_for(make_engine, api_client)
    bearer = {"Authorization": f"Bearer {api.keys['SenderAPIKey']}"}
    client = api.client

    missing = await client.post("/api/v1/webhooks", headers=bearer, json={"Event": "delivered"})
    assert missing.status_code == 422
    assert missing.json() == {"Errors": [{"Code": 5, "Message": "WebhookURL is missing"}]}
    invalid = await client.post(
        "/api/v1/webhooks", headers=bearer, json={"Event": "x", "WebhookURL": receiver.url}
    )
    assert invalid.json()["Errors"][0] == {"Code": 3, "Message": "Invalid Event value"}
    unknown_key = await client.get("/api/v1/webhooks", headers={"Authorization": "Bearer nope"})
    assert unknown_key.status_code == 401
    assert unknown_key.json()["Errors"][0] == {"Code": 13, "Message": "Invalid SenderAPIKey"}

    added = await client.post(
        "/api/v1/webhooks", headers=bearer,
        json={"Event": "delivered", "WebhookURL": f"{receiver.url}/rest"},
    )  # fmt: skip
    assert added.status_code == 200, added.text
    webhook_id = added.json()["NewWebhookID"]
    listed = (await client.get("/api/v1/webhooks", headers=bearer)).json()
    assert listed["SigningKey"].startswith("whsec_")
    assert [(w["Event"], w["URL"], w["Status"]) for w in listed["Webhooks"]] == [
        ("delivered", f"{receiver.url}/rest", "Active")
    ]

    no_id = await client.request("DELETE", "/api/v1/webhooks", headers=bearer, json={})
    assert no_id.status_code == 422
    assert no_id.json() == {"Errors": [{"Code": 1, "Message": "WebhookID is missing"}]}
    wrong = await client.request(
        "DELETE", "/api/v1/webhooks", headers=bearer, json={"WebhookID": "123"}
    )
    assert wrong.status_code == 404
    assert wrong.json() == {"Errors": [{"Code": 4, "Message": "Invalid WebhookID"}]}
    deleted = await client.request(
        "DELETE", "/api/v1/webhooks", headers=bearer, json={"WebhookID": webhook_id}
    )
    assert deleted.json() == {"Message": "Webhook successfully deleted."}
    assert (await client.get("/api/v1/webhooks", headers=bearer)).json()["Webhooks"] == []
    again = await api.call("EmailGateway.DeleteWebhook", WebhookID=webhook_id,
                           DomainID=api.keys["DomainID"])  # fmt: skip
    assert again["ErrorCode"] == 4


async def test_stored_calls_are_made_by_callers_in_other_processes_each_once(
    make_engine: Callable[..., Engine], api_client: Client, receiver: WebhookReceiver
) -> None:
    # The intake (with the API) stores calls; callers with their own store connections, as
    # `serve --role webhook-calls` processes have, make them: each call once, signed.
    api = api_for(make_engine, api_client, roles=ALL_ROLES - {Role.WEBHOOK_CALLS})
    added = await api.ok(
        "EmailGateway.AddWebhook", DomainID=api.keys["DomainID"], Event="delivered",
        WebhookURL=f"{receiver.url}/hooks/split",
    )  # fmt: skip
    webhook_id = UUID(added["NewWebhookID"])
    signing_key = (await api.ok("EmailGateway.GetWebhooks", DomainID=api.keys["DomainID"]))[
        "SigningKey"
    ]
    messages = [await api.send(f"reader{n}@example.org") for n in range(40)]
    wait_for(lambda: api.engine.webhook_store.pending_count(webhook_id) == len(messages))
    assert receiver.calls_to("/hooks/split") == []  # nobody here makes calls

    # Small claims (a quarter of 8 slots at a time), so that both callers take some.
    callers = [
        make_engine(roles=frozenset({Role.WEBHOOK_CALLS}), WEBHOOK_CONCURRENCY="8", **LOCAL)
        for _ in range(2)
    ]
    wait_for(lambda: len(receiver.calls_to("/hooks/split")) >= len(messages))
    wait_for(lambda: api.engine.webhook_store.pending_count(webhook_id) == 0)
    assert all(caller.webhook_delivery.delivered > 0 for caller in callers)

    calls = receiver.calls_to("/hooks/split")
    ids = [call.headers["webhook-id"] for call in calls]
    assert len(ids) == len(set(ids)) == len(messages)
    reported = {
        StandardWebhook(signing_key).verify(call.body, call.headers)["data"]["TransactionalGroupID"]
        for call in calls
    }
    assert reported == {str(m) for m in messages}
    total, _ = api.engine.webhook_store.attempts(webhook_id, 0, 100, succeeded=True)
    assert total == len(messages)


async def test_a_silent_endpoint_holds_up_no_other_endpoint(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    # Few slots in all, and an endpoint that never answers in time: its calls time out,
    # it gets one call at a time, and once it is behind its calls wait in the store
    # instead of in the slots the healthy endpoint needs.
    receiver = WebhookReceiver(slow_seconds=3).start(extra_ports=1)
    try:
        api = api_for(make_engine, api_client, WEBHOOK_CONCURRENCY="8",
                      WEBHOOK_TIMEOUT_SECONDS="1.5", WEBHOOK_RETRY_SCHEDULE="600")  # fmt: skip
        silent = await api.ok(
            "EmailGateway.AddWebhook", DomainID=api.keys["DomainID"], Event="delivered",
            WebhookURL=f"http://127.0.0.1:{receiver.ports[1]}/slow",
        )  # fmt: skip
        await api.ok(
            "EmailGateway.AddWebhook", DomainID=api.keys["DomainID"], Event="delivered",
            WebhookURL=f"{receiver.url}/healthy",
        )  # fmt: skip
        count = 60
        for n in range(count):
            await api.send(f"reader{n}@example.org")
        wait_for(lambda: len(receiver.calls_to("/healthy")) == count, timeout=30)
        # The silent endpoint was tried one call at a time, and its other calls waited in
        # the store: hardly any of them took a slot to time out waiting for one to it.
        # (Had they, 60 calls timing out 1.5 s at a time would fill the 8 slots for 10 s
        # and more, the healthy calls waiting behind them.)
        silent_id = UUID(silent["NewWebhookID"])
        _, attempts = api.engine.webhook_store.attempts(silent_id, 0, 100)
        waited = [a for a in attempts if a.error.startswith("timeout waiting")]
        assert len(receiver.calls_to("/slow")) < count / 3
        # (Those claimed before its first call had been held long: from 3 to 28 of the
        # 60 here, against about 55 when every claimed call waits for a slot.)
        assert len(waited) < count * 0.75, [a.error for a in attempts]
    finally:
        receiver.stop()
