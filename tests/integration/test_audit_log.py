"""``Account.AuditLog`` (issue 22): who changed what, read back from the events' metadata,
and the request id that follows a request into the events it causes; an agency's
combined statistics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest

from adapters.event_metadata import metadata_of
from domain.errors import Extensions
from engine.reporting.audit import aggregate_classes, rebuild_audit_log
from engine.runtime.composition import Engine, Role
from projections.audit import AUDITED_STREAMS, UNAUDITED_STREAMS
from tests.integration.receiver import Receiver
from tests.integration.test_command_api import Tenant, failed, ok
from tests.integration.test_send_pipeline import bearer, email_body

Client = Callable[[Engine], httpx.AsyncClient]
API_AND_READERS = frozenset({Role.API, Role.PROJECTOR, Role.RELAY})  # the relay: at scale
PASSWORD = "a-long-enough-password"


async def eventually(check: Callable[[], Any]) -> Any:
    """Ask ``check`` (a coroutine function) until it answers something truthy (for 30 s)."""
    async with asyncio.timeout(30):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.1)


async def as_session(tenant: Tenant, session: str, command: str, **params: Any) -> httpx.Response:
    return await tenant.client.post(
        "/api.php", json={"SessionID": session, "Command": command, **params}
    )


def test_every_stream_is_audited_or_named_as_traffic() -> None:
    streams = {cls.__name__.lower() for cls in aggregate_classes()}
    assert streams == set(AUDITED_STREAMS) | set(UNAUDITED_STREAMS)
    assert not set(AUDITED_STREAMS) & set(UNAUDITED_STREAMS)


@pytest.fixture
def tenants(make_engine: Callable[..., Engine], api_client: Client) -> tuple[Tenant, Tenant]:
    engine = make_engine(roles=API_AND_READERS)
    client = api_client(engine)
    return Tenant(engine, client, "alpha.example"), Tenant(engine, client, "beta.example")


async def test_the_log_says_who_changed_what_from_where_in_which_request(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, beta = tenants
    admin = ok(await alpha.call("User.Create", Username="ada", Password=PASSWORD, Role="admin"))
    admin_id = admin["User"]["UserID"]
    viewer = ok(await alpha.call("User.Create", Username="vic", Password=PASSWORD, Role="viewer"))
    session = ok(await alpha.call("User.Login", Username="ada", Password=PASSWORD))["SessionID"]
    made = await alpha.client.post(
        "/api.php",
        json={"SessionID": session, "Command": "List.Create", "ListName": "News"},
        headers={"X-Request-ID": "req-list-1"},
    )
    assert made.headers["x-request-id"] == "req-list-1"
    list_id = made.json()["ListID"]
    template = await alpha.client.post(
        "/api/v1/templates",
        json={"TemplateName": "Receipt", "Subject": "Order", "PlainContent": "Thanks"},
        headers=bearer(alpha.sender_key),
    )
    assert template.status_code == 200, template.text
    sent = await alpha.client.post(
        "/api/v1/email",
        json=email_body(From={"email": "news@alpha.example", "name": "Alpha"}),
        headers=bearer(alpha.sender_key),
    )
    assert sent.status_code == 200, sent.text

    async def entries(**params: Any) -> list[dict[str, Any]]:
        return list(ok(await alpha.call("Account.AuditLog", **params))["Entries"])

    async def all_written() -> list[dict[str, Any]]:
        found = await entries()
        return found if any(e["ObjectType"] == "Template" for e in found) else []

    log = await eventually(all_written)
    # Newest first: the template (two objects: it and the account's name index), the list
    # (it and the account's library of lists), the two users (each: the user and the account
    # that lists it).
    assert [e["Command"] for e in log] == [
        "POST /api/v1/templates", "POST /api/v1/templates", "List.Create", "List.Create",
        "User.Create", "User.Create", "User.Create", "User.Create",
    ]  # fmt: skip
    assert {e["ObjectType"] for e in log[:4]} == {
        "Template", "TemplateIndex", "SubscriberList", "Library"
    }  # fmt: skip
    listed = next(e for e in log if e["ObjectType"] == "SubscriberList")
    assert listed == {
        "At": listed["At"], "RequestID": "req-list-1", "Command": "List.Create",
        "Via": "session", "Role": "admin", "UserID": admin_id, "Actor": "ada", "KeyID": None,
        "Address": "127.0.0.1", "AgencyAccountID": None, "ObjectType": "SubscriberList",
        "ObjectID": list_id, "Events": listed["Events"],
    }  # fmt: skip
    assert listed["Events"][0] == "Created"
    by_key = {e["ObjectType"] for e in log[4:]}
    assert by_key == {"User", "Account"}
    assert {e["Via"] for e in log[4:]} == {"account-key"}
    assert {e["Actor"] for e in log[4:]} == {"account key"}
    rest = next(e for e in log if e["ObjectType"] == "Template")
    assert (rest["Via"], rest["KeyID"], rest["UserID"]) == ("sender-key", alpha.sender_key_id, None)
    assert rest["RequestID"] == template.headers["x-request-id"]
    # The send is traffic, not a change: not here, yet its events name the request.
    assert all(e["ObjectType"] not in ("Message", "Submission") for e in log)
    # (The console's page of a message shows the same history.)
    history = alpha.engine.history.of(alpha.account_id, UUID(sent.json()["MessageID"]))
    assert history is not None
    for recorded in (history["Events"][0], history["Recipients"][0]["Events"][0]):
        metadata = dict(recorded["Details"]["metadata"])
        assert len(metadata.pop("request_key")) == 32  # ours, whatever id the client gave
        assert metadata == {
            "request_id": sent.headers["x-request-id"], "address": "127.0.0.1",
            "account_id": str(alpha.account_id), "via": "sender-key",
            "key_id": alpha.sender_key_id, "command": "POST /api/v1/email",
        }  # fmt: skip

    # Filters and pages.
    assert list_id in [e["ObjectID"] for e in await entries(UserID=admin_id)]
    assert {e["RequestID"] for e in await entries(UserID=admin_id)} == {"req-list-1"}
    assert [e["Command"] for e in await entries(AuditCommand="list.create")] == ["List.Create"] * 2
    assert [e["ObjectID"] for e in await entries(ObjectID=viewer["User"]["UserID"])] == [
        viewer["User"]["UserID"]
    ]
    second = ok(await alpha.call("Account.AuditLog", Page=2, PageSize=1))
    assert (second["TotalCount"], second["Entries"]) == (8, log[1:2])
    assert await entries(StartDate="2020-01-01", EndDate="2020-01-31") == []
    failed(
        await alpha.call("Account.AuditLog", PageSize=501), 1, "Invalid Option specified: PageSize"
    )
    failed(await alpha.call("Account.AuditLog", Page=0), 1, "Invalid Option specified: Page")
    failed(
        await alpha.call("Account.AuditLog", ObjectID="x"), 1, "Invalid Option specified: ObjectID"
    )
    # As DomainStats answers it on /api.php: a command's own error, with 200.
    invalid_date = await alpha.call("Account.AuditLog", StartDate="yesterday")
    failed(invalid_date, Extensions.INVALID_DATE.code, Extensions.INVALID_DATE.message)

    # Another account sees none of it; a viewer may not read it, an admin may.
    assert ok(await beta.call("Account.AuditLog"))["Entries"] == []
    vic = ok(await alpha.call("User.Login", Username="vic", Password=PASSWORD))["SessionID"]
    refused = await as_session(alpha, vic, "Account.AuditLog")
    assert (refused.status_code, refused.json()["ErrorMessage"]) == (
        403,
        "The viewer role may not run Account.AuditLog.",
    )
    assert (await as_session(alpha, session, "Account.AuditLog")).json()["TotalCount"] == 8

    # Read again from the log into an empty table: the same entries, each once.
    store = alpha.engine.reporting
    store.command("TRUNCATE TABLE audit_log")
    assert await entries() == []
    rebuild_audit_log(alpha.engine.app, alpha.engine.tracking, store)
    rebuild_audit_log(alpha.engine.app, alpha.engine.tracking, store)
    assert await entries() == log


async def test_an_agency_acting_on_its_client_is_named_in_the_clients_log(
    tenants: tuple[Tenant, Tenant],
) -> None:
    agency, _ = tenants
    client = ok(await agency.call("Agency.AddClient", DomainName="client.example"))["Client"]
    made = ok(
        await agency.call("List.Create", ListName="Theirs", ClientAccountID=client["AccountID"])
    )

    async def client_log() -> list[dict[str, Any]]:
        answer = await agency.client.post(
            "/api.php", json={"APIKey": client["AccountAPIKey"], "Command": "Account.AuditLog"}
        )
        return [e for e in answer.json()["Entries"] if e["ObjectType"] == "SubscriberList"]

    (entry,) = await eventually(client_log)
    assert (entry["ObjectID"], entry["AgencyAccountID"], entry["Via"]) == (
        made["ListID"],
        str(agency.account_id),
        "account-key",
    )
    # The agency's own log has its AddClient, not the client's list.
    own = ok(await agency.call("Account.AuditLog"))["Entries"]
    assert "List.Create" not in {e["Command"] for e in own}


async def test_events_saved_outside_a_request_carry_no_metadata(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    account = alpha.engine.app.account(alpha.account_id)
    account.set_time_zone("Europe/Paris")
    alpha.engine.app.save(account)
    last = list(alpha.engine.app.events.get(alpha.account_id))[-1]
    assert metadata_of(last) == {}
    made = await alpha.client.post("/api.php", json={"APIKey": alpha.account_key,
                                   "Command": "Account.Update", "TimeZone": "UTC"})  # fmt: skip
    assert made.json()["Success"], made.text
    last = list(alpha.engine.app.events.get(alpha.account_id))[-1]
    assert metadata_of(last)["request_id"] == made.headers["x-request-id"]
    assert metadata_of(last)["command"] == "Account.Update"
    assert UUID(metadata_of(last)["account_id"]) == alpha.account_id


async def test_an_agency_sees_each_clients_delivered_mail_and_their_sum(
    make_engine: Callable[..., Engine], api_client: Client, receiver: Receiver
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url)
    client = api_client(engine)
    agency = Tenant(engine, client, "agency.example")
    made = [
        ok(await agency.call("Agency.AddClient", DomainName=f"client{n}.example"))["Client"]
        for n in (1, 2)
    ]
    for count, owner in zip((2, 3), made, strict=True):
        for n in range(count):
            sent = await client.post(
                "/api/v1/email",
                json=email_body(
                    From={"email": f"news@{owner['DomainName']}", "name": "News"},
                    To=[{"email": f"r{n}@example.org", "name": "R"}],
                ),
                headers=bearer(owner["SenderAPIKey"]),
            )
            assert sent.status_code == 200, sent.text
    receiver.wait_for_count(5)

    async def delivered() -> dict[str, Any] | None:
        stats = ok(await agency.call("Agency.Stats"))
        each = [c["Stats"]["Delivered"] for c in stats["Clients"]]
        return stats if stats["Stats"]["Delivered"] == 5 and sum(each) == 5 else None

    stats = await eventually(delivered)
    by_client = {c["AccountID"]: c["Stats"]["Delivered"] for c in stats["Clients"]}
    assert by_client == {made[0]["AccountID"]: 2, made[1]["AccountID"]: 3}
    assert stats["Stats"]["Sent"] == 5
    # A client sees its own figures only: it has no clients, and names no other.
    own = await client.post("/api.php", json={"APIKey": made[0]["AccountAPIKey"],
                            "Command": "Agency.Stats"})  # fmt: skip
    assert own.json()["Clients"] == [] and own.json()["Stats"]["Delivered"] == 0
    other = await client.post("/api.php", json={
        "APIKey": made[0]["AccountAPIKey"], "Command": "Agency.Stats",
        "ClientAccountID": made[1]["AccountID"]})  # fmt: skip
    assert (other.status_code, other.json()["ErrorMessage"]) == (
        403,
        "The specified Master Agency Account could not be found.",
    )
