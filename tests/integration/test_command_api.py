"""``POST /api.php``: login, sender domains, sender API keys, SMTP credentials, tenancy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest

from domain.message import MessageStatus
from engine.accounts.gateway import QUEUE_CLEARED
from engine.accounts.passwords import verify_password
from engine.runtime.composition import Engine, Role
from tests.integration.conftest import wait_for

Client = Callable[[Engine], httpx.AsyncClient]
API_ONLY = frozenset({Role.API})


class Tenant:
    """One account seen from outside: its secrets and a client."""

    def __init__(self, engine: Engine, client: httpx.AsyncClient, domain: str) -> None:
        self.engine = engine
        self.client = client
        keys = engine.app.bootstrap(domain)
        self.account_key = keys["AccountAPIKey"]
        self.account_id = UUID(keys["AccountID"])
        self.domain_id = keys["DomainID"]
        self.sender_key = keys["SenderAPIKey"]
        self.sender_key_id = keys["SenderAPIKeyID"]

    async def call(self, command: str, **params: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api.php", json={"APIKey": self.account_key, "Command": command, **params}
        )
        assert response.headers["content-type"].startswith("application/json")
        body: dict[str, Any] = response.json()
        body["_status"] = response.status_code
        return body


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["Success"] is True and answer["ErrorCode"] == 0, answer
    assert answer["_status"] == 200
    return answer


def failed(answer: dict[str, Any], code: int, message: str, status: int = 200) -> None:
    assert answer["Success"] is False, answer
    assert (answer["ErrorCode"], answer["ErrorMessage"]) == (code, message)
    assert answer["_status"] == status


@pytest.fixture
def tenants(make_engine: Callable[..., Engine], api_client: Client) -> tuple[Tenant, Tenant]:
    engine = make_engine(roles=API_ONLY)
    client = api_client(engine)
    return Tenant(engine, client, "alpha.example"), Tenant(engine, client, "beta.example")


async def test_parameters_come_as_json_form_or_query(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    form = await alpha.client.post(
        "/api.php", data={"APIKey": alpha.account_key, "Command": "EmailGateway.GetDomains"}
    )
    query = await alpha.client.get(
        "/api.php", params={"APIKey": alpha.account_key, "Command": "EmailGateway.GetDomains"}
    )
    multipart = await alpha.client.post(
        "/api.php",
        files={"APIKey": (None, alpha.account_key), "Command": (None, "EmailGateway.GetDomains")},
    )
    as_json = await alpha.call("EmailGateway.GetDomains")
    for response in (form, query, multipart):
        assert response.status_code == 200
        assert response.json()["Domains"] == as_json["Domains"]
    assert [d["DomainName"] for d in as_json["Domains"]] == ["alpha.example"]


async def test_endpoint_errors(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    client = alpha.client

    async def post(**kwargs: Any) -> dict[str, Any]:
        response = await client.post("/api.php", **kwargs)
        return {**response.json(), "_status": response.status_code}

    failed(
        await post(json={"APIKey": alpha.account_key}),
        400,
        "A required field was not supplied: Command.",
        400,
    )
    failed(
        await post(json={"APIKey": alpha.account_key, "Command": "Nope.Nothing"}),
        400,
        "Unknown command: Nope.Nothing",
        400,
    )
    failed(
        await post(json={"Command": "EmailGateway.GetDomains"}),
        401,
        "A required field was not supplied: SessionID or APIKey.",
        401,
    )
    failed(
        await post(json={"APIKey": "acc_wrong", "Command": "EmailGateway.GetDomains"}),
        401,
        "Invalid SessionID or APIKey.",
        401,
    )
    # A sender key is not an account key.
    failed(
        await post(json={"APIKey": alpha.sender_key, "Command": "EmailGateway.GetDomains"}),
        401,
        "Invalid SessionID or APIKey.",
        401,
    )
    failed(
        await post(content=b'{"Command": ', headers={"content-type": "application/json"}),
        400,
        "The request body could not be read as JSON or form fields",
        400,
    )
    failed(
        await post(content=b"Command=\xff\xfe", headers={"content-type": "text/plain"}),
        400,
        "The request body could not be read as JSON or form fields",
        400,
    )
    big = await post(content=b"x" * (11 * 1024 * 1024), headers={"content-type": "text/plain"})
    assert (big["ErrorCode"], big["_status"]) == (413, 413)
    wrong_method = await client.put("/api.php")
    assert wrong_method.status_code == 405


async def test_login_gives_a_session_that_works_and_a_wrong_password_does_not(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    alpha.engine.gateway.set_login(alpha.account_id, "alice@alpha.example", "correct horse")
    response = await alpha.client.post(
        "/api.php",
        data={
            "Command": "User.Login",
            "Username": "alice@alpha.example",
            "Password": "correct horse",
        },
    )
    session = response.json()
    assert session["Success"] is True and session["SessionID"].startswith("ses_")
    domains = await alpha.client.post(
        "/api.php", json={"SessionID": session["SessionID"], "Command": "EmailGateway.GetDomains"}
    )
    assert domains.json()["Domains"][0]["DomainName"] == "alpha.example"
    for username, password in (("alice@alpha.example", "wrong"), ("nobody", "correct horse")):
        refused = await alpha.client.post(
            "/api.php",
            json={"Command": "User.Login", "Username": username, "Password": password},
        )
        assert refused.status_code == 401
        assert refused.json()["ErrorMessage"] == "Username and password do not match."
    tampered = session["SessionID"][:-2] + ("AA" if session["SessionID"][-2:] != "AA" else "BB")
    refused = await alpha.client.post(
        "/api.php", json={"SessionID": tampered, "Command": "EmailGateway.GetDomains"}
    )
    assert refused.status_code == 401


async def test_sessions_expire(tenants: tuple[Tenant, Tenant]) -> None:
    from engine.accounts.gateway import Sessions

    sessions = Sessions(b"secret", lifetime_seconds=60)
    alpha, _ = tenants
    token, _ = sessions.issue(alpha.account_id, now=1_000_000.0)
    assert sessions.account_of(token, now=1_000_030.0) == alpha.account_id
    assert sessions.account_of(token, now=1_000_061.0) is None
    assert Sessions(b"other", 60).account_of(token, now=1_000_030.0) is None


async def test_domains_are_added_listed_updated_and_deleted(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    failed(await alpha.call("EmailGateway.AddDomain"), 1, "Missing required parameter: DomainName")
    for bad in ("not a domain", "-bad-.example", "a" * 300 + ".com", "localhost", "x\x00.com"):
        failed(
            await alpha.call("EmailGateway.AddDomain", DomainName=bad),
            *((1, "Missing required parameter: DomainName") if "\x00" in bad else
              (2, "Invalid domain name provided")),
        )  # fmt: skip
    failed(
        await alpha.call("EmailGateway.AddDomain", DomainName="ALPHA.example."),
        2,
        "Invalid domain name provided",
    )
    added = ok(await alpha.call("EmailGateway.AddDomain", DomainName="News.Alpha.Example"))
    domain_id = added["NewSenderDomainID"]
    assert added["Domain"]["DomainName"] == "news.alpha.example"
    assert {added["Domain"][k] for k in ("VerificationStatus", "DKIMStatus", "SPFStatus")} == {
        "Pending"
    }
    purposes = {r["Purpose"] for r in added["Domain"]["DNSRecords"]}
    assert {"verification", "spf", "dkim", "dmarc", "tracking", "return_path"} <= purposes

    got = ok(await alpha.call("EmailGateway.GetDomain", DomainID=domain_id))["Domain"]
    assert (got["DomainID"], got["DomainName"], got["IsActive"]) == (
        domain_id,
        "news.alpha.example",
        True,
    )
    failed(await alpha.call("EmailGateway.GetDomain"), 1, "Required parameter missing: DomainID")
    failed(
        await alpha.call("EmailGateway.GetDomain", DomainID=12345),
        2,
        "Unable to retrieve domain information",
    )

    updated = ok(
        await alpha.call(
            "EmailGateway.UpdateDomain",
            DomainID=domain_id,
            LinkTracking="1",
            OpenTracking=1,
            HostingProvider="Provider",
            Subdomain="mail",
        )
    )["Domain"]
    assert updated == {
        "DomainID": domain_id,
        "LinkTracking": "1",
        "OpenTracking": "1",
        "UnsubscribeLink": "0",
        "HostingProvider": "Provider",
        "Subdomain": "mail",
        "IPPool": "",  # ours: the sending-address pool (none: the default)
    }
    refused = await alpha.call("EmailGateway.UpdateDomain", DomainID=domain_id, OpenTracking="x")
    failed(refused, 400, "Invalid Option specified: OpenTracking", 400)
    got = ok(await alpha.call("EmailGateway.GetDomain", DomainID=domain_id))["Domain"]
    assert got["OpenTracking"] == "1"  # the refused update changed nothing

    names = [d["DomainName"] for d in ok(await alpha.call("EmailGateway.GetDomains"))["Domains"]]
    assert names == ["alpha.example", "news.alpha.example"]
    ok(await alpha.call("EmailGateway.DeleteDomain", DomainID=domain_id))
    names = [d["DomainName"] for d in ok(await alpha.call("EmailGateway.GetDomains"))["Domains"]]
    assert names == ["alpha.example"]
    failed(
        await alpha.call("EmailGateway.DeleteDomain", DomainID=domain_id),
        2,
        "Domain not found or user does not have permission to delete the domain",
    )


async def test_the_domain_limit(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    account = alpha.engine.app.account(alpha.account_id)
    account.set_max_domains(2)
    alpha.engine.app.save(account)
    ok(await alpha.call("EmailGateway.AddDomain", DomainName="two.example"))
    failed(
        await alpha.call("EmailGateway.AddDomain", DomainName="three.example"),
        3,
        "User has reached the maximum number of sender domains allowed",
    )


async def test_api_keys_are_issued_listed_and_revoked_at_once(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    failed(
        await alpha.call("EmailGateway.AddAPI", DomainID=alpha.domain_id),
        1,
        "Missing or invalid 'Description' parameter",
    )
    failed(
        await alpha.call("EmailGateway.AddAPI", Description="x"),
        2,
        "Missing or invalid 'DomainID' parameter",
    )
    failed(
        await alpha.call("EmailGateway.AddAPI", Description="x", DomainID="123"),
        3,
        "Unable to retrieve sender domain with provided 'DomainID'",
    )
    added = ok(await alpha.call("EmailGateway.AddAPI", Description="CRM", DomainID=alpha.domain_id))
    key = added["APIKey"]["Key"]
    assert added["APIKey"]["DomainID"] == alpha.domain_id
    assert added["APIKey"]["Description"] == "CRM"

    send = {
        "Subject": "Hi",
        "ContentType": "plain",
        "PlainContent": "hello",
        "From": {"email": "news@alpha.example", "name": "News"},
        "To": [{"email": "someone@example.org", "name": "Someone"}],
    }
    sent = await alpha.client.post(
        "/api/v1/email", json=send, headers={"Authorization": f"Bearer {key}"}
    )
    assert sent.status_code == 200

    listed = ok(await alpha.call("EmailGateway.GetAPIs", DomainID=alpha.domain_id))["APIKeys"]
    by_id = {k["KeyID"]: k for k in listed}
    assert set(by_id) == {alpha.sender_key_id, added["NewAPIKeyID"]}
    mine = by_id[added["NewAPIKeyID"]]
    assert key not in str(listed)  # only a hint of the key is ever shown again
    assert mine["Key"].startswith(key[:10]) and mine["UserID"] == str(alpha.account_id)
    assert mine["CreationDate"].endswith("Z")
    wait_for(lambda: alpha.engine.app._get(UUID(mine["KeyID"]), object).last_used_on)  # type: ignore[attr-defined]

    failed(await alpha.call("EmailGateway.DeleteAPI"), 1, "Missing required parameter: ApiKeyId")
    ok(await alpha.call("EmailGateway.DeleteAPI", ApiKeyId=added["NewAPIKeyID"]))
    refused = await alpha.client.post(
        "/api/v1/email", json=send, headers={"Authorization": f"Bearer {key}"}
    )
    assert refused.status_code == 401
    assert refused.json()["Errors"][0]["Code"] == 13
    failed(
        await alpha.call("EmailGateway.DeleteAPI", ApiKeyId=added["NewAPIKeyID"]),
        2,
        "Invalid API key or API key not found",
    )


async def test_smtp_credentials(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    failed(await alpha.call("EmailGateway.AddSMTP"), 1, "Required field 'DomainID' is missing.")
    added = ok(await alpha.call("EmailGateway.AddSMTP", DomainID=alpha.domain_id))
    smtp = added["SMTP"]
    assert smtp["Username"].endswith("@alpha.example") and smtp["Password"]
    credential = alpha.engine.app.smtp_credential(smtp["Username"])
    assert credential is not None and verify_password(credential.password_hash, smtp["Password"])

    listed = ok(await alpha.call("EmailGateway.GetSMTPs", DomainID=alpha.domain_id))["SMTPs"]
    assert [(s["SMTPID"], s["Username"], s["Password"]) for s in listed] == [
        (added["NewSMTPID"], smtp["Username"], None)
    ]
    reset = ok(await alpha.call("EmailGateway.ResetSMTPPassword", smtpid=added["NewSMTPID"]))
    new_password = reset["SMTP"]["Password"]
    assert new_password != smtp["Password"]
    credential = alpha.engine.app.smtp_credential(smtp["Username"])
    assert credential is not None and verify_password(credential.password_hash, new_password)
    assert not verify_password(credential.password_hash, smtp["Password"])

    failed(await alpha.call("EmailGateway.DeleteSMTP"), 1, "Required field is missing")
    ok(await alpha.call("EmailGateway.DeleteSMTP", smtpid=added["NewSMTPID"]))
    assert alpha.engine.app.smtp_credential(smtp["Username"]) is None
    failed(
        await alpha.call("EmailGateway.ResetSMTPPassword", smtpid=added["NewSMTPID"]),
        2,
        "SMTP configuration not found or access denied",
    )


async def test_no_account_can_see_or_touch_another_accounts_resources(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, beta = tenants
    key = ok(await alpha.call("EmailGateway.AddAPI", Description="a", DomainID=alpha.domain_id))
    smtp = ok(await alpha.call("EmailGateway.AddSMTP", DomainID=alpha.domain_id))
    domain_id, key_id, smtp_id = alpha.domain_id, key["NewAPIKeyID"], smtp["NewSMTPID"]
    before = alpha.engine.app.recorder.max_notification_id()

    refusals = [
        ("EmailGateway.GetDomain", {"DomainID": domain_id}, 2),
        ("EmailGateway.UpdateDomain", {"DomainID": domain_id, "OpenTracking": "1"}, 5),
        ("EmailGateway.DeleteDomain", {"DomainID": domain_id}, 2),
        ("EmailGateway.ClearDomainQueue", {"DomainID": domain_id}, 2),
        ("EmailGateway.VerifyDomain", {"DomainID": domain_id}, 2),
        ("EmailGateway.AddAPI", {"DomainID": domain_id, "Description": "steal"}, 3),
        ("EmailGateway.GetAPIs", {"DomainID": domain_id}, 2),
        ("EmailGateway.DeleteAPI", {"ApiKeyId": key_id}, 2),
        ("EmailGateway.AddSMTP", {"DomainID": domain_id}, 2),
        ("EmailGateway.GetSMTPs", {"DomainID": domain_id}, 2),
        ("EmailGateway.DeleteSMTP", {"smtpid": smtp_id}, 2),
        ("EmailGateway.ResetSMTPPassword", {"smtpid": smtp_id}, 2),
    ]
    for command, params, code in refusals:
        answer = await beta.call(command, **params)
        assert answer["Success"] is False and answer["ErrorCode"] == code, (command, answer)
        # The refusal is the same as for an id that does not exist at all.
        made_up = {k: "0190a2b4-0000-7000-8000-000000000000" for k in params if k != "Description"}
        ghost = await beta.call(command, **{**params, **made_up})
        assert ghost["ErrorMessage"] == answer["ErrorMessage"], command
    names = [d["DomainName"] for d in ok(await beta.call("EmailGateway.GetDomains"))["Domains"]]
    assert names == ["beta.example"]
    assert alpha.engine.app.recorder.max_notification_id() == before  # nothing was recorded


async def test_clearing_a_domain_queue_fails_its_waiting_messages(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine()  # every role: the projector tells which messages wait
    alpha = Tenant(engine, api_client(engine), "alpha.example")
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    sent = await alpha.client.post(
        "/api/v1/email",
        json={
            "Subject": "Later",
            "ContentType": "plain",
            "PlainContent": "hello",
            "From": {"email": "news@alpha.example", "name": "News"},
            "To": [
                {"email": "a@example.org", "name": "A"},
                {"email": "b@example.org", "name": "B"},
            ],
            "SendAt": later,
        },
        headers={"Authorization": f"Bearer {alpha.sender_key}"},
    )
    assert sent.status_code == 200, sent.text
    submission = engine.app.submission(UUID(sent.json()["MessageID"]))

    def projected() -> bool:
        rows = engine.reporting.query(
            "SELECT count() AS n FROM events WHERE submission_id = {s:UUID}", {"s": submission.id}
        )
        return int(rows[0]["n"]) >= 4  # accepted and scheduled, twice

    wait_for(projected, timeout=30)
    cleared = ok(await alpha.call("EmailGateway.ClearDomainQueue", DomainID=alpha.domain_id))
    assert cleared["ClearedMessages"] == 2
    for message_id in submission.message_ids:
        message = engine.app.message(message_id)
        assert message.status is MessageStatus.FAILED
        assert message.failure_reason == QUEUE_CLEARED
    failed(
        await alpha.call("EmailGateway.ClearDomainQueue"), 1, "Missing required parameter: DomainID"
    )


async def test_messages_the_reports_do_not_know_yet_are_stopped_by_delivery(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    # No projector: the clear finds nothing to fail, so only delivery's check can stop them.
    engine = make_engine(roles=frozenset({Role.API, Role.DELIVERY, Role.SCHEDULER, Role.RELAY}))
    alpha = Tenant(engine, api_client(engine), "alpha.example")
    soon = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%d %H:%M:%S")

    async def send(send_at: str | None) -> UUID:
        body: dict[str, Any] = {
            "Subject": "Hi",
            "ContentType": "plain",
            "PlainContent": "hello",
            "From": {"email": "news@alpha.example", "name": "News"},
            "To": [{"email": "a@example.org", "name": "A"}],
        }
        if send_at:
            body["SendAt"] = send_at
        response = await alpha.client.post(
            "/api/v1/email", json=body, headers={"Authorization": f"Bearer {alpha.sender_key}"}
        )
        assert response.status_code == 200, response.text
        return engine.app.submission(UUID(response.json()["MessageID"])).message_ids[0]

    waiting = await send(soon)
    ok(await alpha.call("EmailGateway.ClearDomainQueue", DomainID=alpha.domain_id))
    afterwards = await send(None)
    wait_for(lambda: engine.app.message(waiting).is_final, timeout=30)
    stopped = engine.app.message(waiting)
    assert (stopped.status, stopped.failure_reason, stopped.attempts) == (
        MessageStatus.FAILED,
        QUEUE_CLEARED,
        0,
    )
    wait_for(lambda: engine.app.message(afterwards).status is MessageStatus.DELIVERED)


async def test_commands_are_rate_limited_per_account(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=API_ONLY, API_RATE_LIMIT="3/minute")
    client = api_client(engine)
    alpha, beta = Tenant(engine, client, "alpha.example"), Tenant(engine, client, "beta.example")
    for _ in range(3):
        ok(await alpha.call("EmailGateway.GetDomains"))
    limited = await client.post(
        "/api.php", json={"APIKey": alpha.account_key, "Command": "EmailGateway.GetDomains"}
    )
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    body = limited.json()
    assert body["ErrorCode"] == 429
    assert body["ErrorMessage"] == (
        f"Too many requests. Wait for {limited.headers['Retry-After']} seconds "
        "for another 3 attempts."
    )
    ok(await beta.call("EmailGateway.GetDomains"))  # another account has its own budget


async def test_get_events_pages_filters_and_searches_with_query_terms(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine()
    alpha = Tenant(engine, api_client(engine), "alpha.example")

    async def send(subject: str, to: str, tags: list[str]) -> None:
        response = await alpha.client.post(
            "/api/v1/email",
            headers={"Authorization": f"Bearer {alpha.sender_key}"},
            json={
                "Subject": subject, "ContentType": "plain", "PlainContent": "hi",
                "From": {"email": "news@alpha.example", "name": "News"},
                "To": [{"email": to, "name": ""}], "Tags": tags,
            },
        )  # fmt: skip
        assert response.status_code == 200, response.text

    await send("Welcome aboard", "jane@example.org", ["onboarding"])
    await send("Weekly sale 50% off", "joe@example.net", ["promo"])
    await send("Welcome back", "ann@example.org", ["promo"])

    async def events(**params: Any) -> dict[str, Any]:
        return ok(
            await alpha.call(
                "EmailGateway.GetEvents", DomainID=alpha.domain_id, StartFrom=0,
                RetrieveCount=100, Event="delivered", **params,
            )
        )  # fmt: skip

    for _ in range(200):
        if (await events())["TotalRecords"] == 3:
            break
        await asyncio.sleep(0.1)
    everything = await events()
    assert everything["TotalRecords"] == 3
    first = everything["Events"][0]
    assert first["event_type"] == "delivered" and first["timestamp"].endswith("Z")
    subjects = {e["message"]["headers"]["subject"] for e in everything["Events"]}
    assert subjects == {"Welcome aboard", "Weekly sale 50% off", "Welcome back"}

    async def found(query: str) -> set[str]:
        answer = await events(Query=query)
        return {e["message"]["headers"]["subject"] for e in answer["Events"]}

    assert await found("subject:welcome") == {"Welcome aboard", "Welcome back"}
    assert await found('subject:"welcome back"') == {"Welcome back"}
    assert await found("subject:welcome tag:promo") == {"Welcome back"}
    assert await found("recipient:*@example.net") == {"Weekly sale 50% off"}
    assert await found("subject:50%") == {"Weekly sale 50% off"}
    assert await found("subject:5_%") == set()  # _ and % are literal, not wildcards
    assert await found("sale") == {"Weekly sale 50% off"}  # a bare word: the subject
    assert await found('subject:"\'; DROP TABLE events; --"') == set()
    assert (await events())["TotalRecords"] == 3  # the value was bound, never run
    paged = ok(
        await alpha.call(
            "EmailGateway.GetEvents", DomainID=alpha.domain_id, StartFrom=1, RetrieveCount=1,
            Event="delivered",
        )
    )  # fmt: skip
    assert paged["TotalRecords"] == 3 and len(paged["Events"]) == 1

    too_deep = await alpha.call("EmailGateway.GetEvents", DomainID=alpha.domain_id,
                                StartFrom=19_950, RetrieveCount=100)  # fmt: skip
    failed(too_deep, 422, TOO_MANY_RECORDS)  # a command's own error: HTTP 200
    rest = await alpha.client.get(
        "/api/v1/events", params={"StartFrom": 20_000, "RetrieveCount": 1},
        headers={"Authorization": f"Bearer {alpha.sender_key}"},
    )  # fmt: skip
    assert rest.status_code == 422 and TOO_MANY_RECORDS in rest.text
    assert ok(await alpha.call("EmailGateway.GetEvents", DomainID=alpha.domain_id,
                               StartFrom=19_900, RetrieveCount=100))["Events"] == []  # fmt: skip

    bad = await alpha.call("EmailGateway.GetEvents", DomainID=alpha.domain_id, StartFrom=0,
                           RetrieveCount=10, Query="nosuchfield:x")  # fmt: skip
    assert (bad["ErrorCode"], bad["_status"]) == (400, 400)
    for params, code in (
        ({"StartFrom": 0, "RetrieveCount": 10}, 1),
        ({"DomainID": alpha.domain_id, "RetrieveCount": 10}, 4),
        ({"DomainID": alpha.domain_id, "StartFrom": 0}, 5),
        ({"DomainID": "0190a2b4-0000-7000-8000-000000000000", "StartFrom": 0,
          "RetrieveCount": 1}, 2),
    ):  # fmt: skip
        answer = await alpha.call("EmailGateway.GetEvents", **params)
        assert answer["ErrorCode"] == code, answer


TOO_MANY_RECORDS = (
    "Date range resulted in too many records. "
    "Please narrow date range to pull 20,000 records or less."
)


async def test_report_dates_are_read_in_the_account_time_zone(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine()
    alpha = Tenant(engine, api_client(engine), "alpha.example")
    assert ok(await alpha.call("Account.Get"))["Account"]["TimeZone"] == "UTC"
    bad = await alpha.call("Account.Update", TimeZone="Mars/Olympus_Mons")
    assert (bad["ErrorCode"], bad["ErrorMessage"]) == (400, "Invalid Option specified: TimeZone")
    for hostile in ("../../etc/passwd", "/etc/localtime", "x" * 300, 5):
        assert (await alpha.call("Account.Update", TimeZone=hostile))["ErrorCode"] == 400
    assert ok(await alpha.call("Account.Get"))["Account"]["TimeZone"] == "UTC"  # unchanged
    updated = ok(await alpha.call("Account.Update", TimeZone="Pacific/Kiritimati"))  # UTC+14
    assert updated["TimeZone"] == "Pacific/Kiritimati"

    response = await alpha.client.post(
        "/api/v1/email",
        headers={"Authorization": f"Bearer {alpha.sender_key}"},
        json={"Subject": "Now", "ContentType": "plain", "PlainContent": "hi",
              "From": {"email": "news@alpha.example", "name": "News"},
              "To": [{"email": "a@example.org", "name": ""}]},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    local_today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()

    async def delivered_on(day: date) -> int:
        text = day.isoformat()
        answer = ok(
            await alpha.call(
                "EmailGateway.DomainStats", DomainID=alpha.domain_id, StartDate=text, EndDate=text
            )
        )
        return int(answer["Stats"]["Delivered"])

    for _ in range(200):
        if await delivered_on(local_today) == 1:
            break
        await asyncio.sleep(0.1)
    # The mail was sent "today" in the account's zone, whatever the date is in UTC.
    assert await delivered_on(local_today) == 1
    assert await delivered_on(local_today - timedelta(days=1)) == 0
    by_day = ok(await alpha.call("EmailGateway.AggrEvents", DomainID=alpha.domain_id,
                                 AggregatedField="day"))["AggBuckets"]  # fmt: skip
    assert {b["Key"] for b in by_day} == {local_today.isoformat()}


async def test_aggregated_events_and_domain_stats(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    from domain.bounces import BounceClass

    engine = make_engine()
    alpha = Tenant(engine, api_client(engine), "alpha.example")
    message_ids = []
    for n, (to, tags) in enumerate(
        [("a@gmail.example", ["promo"]), ("b@gmail.example", ["promo"]),
         ("c@yahoo.example", ["news"]), ("d@yahoo.example", [])]
    ):  # fmt: skip
        response = await alpha.client.post(
            "/api/v1/email",
            headers={"Authorization": f"Bearer {alpha.sender_key}"},
            json={
                "Subject": f"S{n}", "ContentType": "plain", "PlainContent": "hi",
                "From": {"email": "news@alpha.example", "name": "News"},
                "To": [{"email": to, "name": ""}], "Tags": tags,
            },
        )  # fmt: skip
        assert response.status_code == 200, response.text
        message_ids.append(engine.app.submission(UUID(response.json()["MessageID"])).message_ids[0])
    wait_for(
        lambda: all(engine.app.message(m).status is MessageStatus.DELIVERED for m in message_ids)
    )
    engine.feedback.record_open(message_ids[0], "192.0.2.1", "Mozilla/5.0 (X11) Firefox")
    engine.feedback.record_open(message_ids[0], "192.0.2.1", "Mozilla/5.0 (X11) Firefox")
    engine.feedback.flush()
    engine.feedback.record_bounce(message_ids[3], BounceClass("hard", True, "5.1.1", "gone"))

    async def stats() -> dict[str, Any]:
        return ok(await alpha.call("EmailGateway.DomainStats", DomainID=alpha.domain_id))

    for _ in range(200):
        figures = (await stats())["Stats"]
        if figures["Delivered"] == 4 and figures["Opens"] == 2 and figures["HardBounces"] == 1:
            break
        await asyncio.sleep(0.1)
    answer = await stats()
    figures = answer["Stats"]
    assert (figures["Sent"], figures["Delivered"], figures["Opens"], figures["UniqueOpens"]) == (
        4,
        4,
        2,
        1,
    )
    assert figures["HardBounces"] == 1 and figures["OpenRate"] == 25.0
    assert answer["ComparisonStats"]["Delivered"] == 0
    assert answer["ComparisonStats"]["Deltas"]["Delivered"] == 4
    assert set(answer["TagStats"]) == {"promo", "news"}
    assert answer["TagStats"]["promo"]["Delivered"] == 2

    by_domain = ok(
        await alpha.call(
            "EmailGateway.AggrEvents", DomainID=alpha.domain_id,
            AggregatedField="recipientDomain", AggregateSize=5,
        )
    )["AggBuckets"]  # fmt: skip
    assert {b["Key"] for b in by_domain} == {"gmail.example", "yahoo.example"}
    by_type = ok(
        await alpha.call("EmailGateway.AggrEvents", DomainID=alpha.domain_id, AggregateSize=2)
    )["AggBuckets"]
    assert len(by_type) == 2 and by_type[0]["Count"] >= by_type[1]["Count"]
    bad = await alpha.call(
        "EmailGateway.AggrEvents", DomainID=alpha.domain_id, AggregatedField="nope"
    )
    assert bad["ErrorCode"] == 400
    missing = await alpha.call("EmailGateway.DomainStats")
    assert (missing["ErrorCode"], missing["ErrorMessage"]) == (
        1, "Required parameter missing: DomainID"
    )  # fmt: skip
