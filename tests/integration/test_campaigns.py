"""Campaigns end to end: a list imported, an email with merge tags, approve, fan-out, delivery
to a real SMTP server, statistics; pause, resume and cancel; tenancy."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.campaign import CampaignStatus
from engine.runtime.composition import Engine, Role
from tests.integration.conftest import wait_for
from tests.integration.receiver import Receiver, SlowReceiver

Client = Callable[[Engine], httpx.AsyncClient]


@pytest.fixture
def slow_receiver() -> Iterator[Receiver]:
    server = SlowReceiver().start()
    yield server
    server.stop()


class Account:
    def __init__(self, engine: Engine, client: httpx.AsyncClient, domain: str) -> None:
        self.engine = engine
        self.client = client
        keys = engine.app.bootstrap(domain)
        self.key = keys["AccountAPIKey"]
        self.domain = domain

    async def call(self, command: str, **params: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api.php", json={"APIKey": self.key, "Command": command, **params}
        )
        body: dict[str, Any] = response.json()
        return body

    async def ok(self, command: str, **params: Any) -> dict[str, Any]:
        body = await self.call(command, **params)
        assert body["Success"] is True, (command, body)
        return body


def csv_of(count: int, extra: str = "") -> str:
    lines = ["EmailAddress,FirstName,City"]
    lines += [f"user{n}@example.org,Name{n},City{n % 3}" for n in range(count)]
    return "\n".join(lines) + extra


async def prepared_campaign(account: Account, subscribers: int) -> tuple[str, str]:
    created = await account.ok(
        "List.Create", ListName="Readers", Fields="EmailAddress,FirstName,City"
    )
    list_id = created["ListID"]
    imported = await account.ok(
        "Subscribers.Import",
        ListID=list_id,
        Format="csv",
        Data=csv_of(subscribers, "\nnot-an-address,X,Y\nuser1@example.org,Again,Z\n"),
    )
    assert imported["Imported"] == subscribers
    assert [row["Line"] for row in imported["Invalid"]] == [subscribers + 2, subscribers + 3]
    email = await account.ok(
        "Email.Create",
        Subject="Hello %Subscriber:FirstName|friend%",
        FromName="News",
        FromEmail=f"news@{account.domain}",
        MessageHTML="<p>Hi %Subscriber:FirstName|there% from %Subscriber:City%</p>",
    )
    campaign = await account.ok("Campaign.Create", CampaignName="Autumn")
    await account.ok(
        "Campaign.Update",
        CampaignID=campaign["CampaignID"],
        RelEmailID=email["EmailID"],
        RecipientListsAndSegments=list_id,
        ScheduleType="Immediate",
    )
    return campaign["CampaignID"], list_id


async def test_a_campaign_reaches_every_subscriber_once_personalised(
    make_engine: Callable[..., Engine], api_client: Client, receiver: Receiver
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url)
    account = Account(engine, api_client(engine), "shop.example")
    campaign_id, _ = await prepared_campaign(account, 40)
    await account.ok("Campaign.Approve", CampaignID=campaign_id)
    wait_for(lambda: len(receiver.received) >= 40, timeout=60)

    def status() -> str:
        return engine.campaigns._get(UUID(campaign_id), object).status  # type: ignore[attr-defined,no-any-return]

    wait_for(lambda: status() is CampaignStatus.SENT, timeout=60)
    copies = Counter(r.recipients[0] for r in receiver.received)
    assert len(copies) == 40 and set(copies.values()) == {1}
    by_recipient = {r.recipients[0]: r.message for r in receiver.received}
    message = by_recipient["user7@example.org"]
    assert message["Subject"] == "Hello Name7"
    assert message["To"].addresses[0].addr_spec == "user7@example.org"
    html = message.get_body(("html",))
    assert html is not None and "Hi Name7 from City1" in html.get_content()
    plain = message.get_body(("plain",))
    assert plain is not None and "Hi Name7 from City1" in plain.get_content()

    got = await account.ok(
        "Campaign.Get", campaignid=campaign_id, retrievestatistics="true", retrievetags="true"
    )
    assert got["Campaign"]["Status"] == "Sent"

    def delivered() -> Any:
        stats = engine.campaigns.get_campaign(
            engine.app.account(engine.campaigns._get(UUID(campaign_id), object).account_id),  # type: ignore[attr-defined]
            {"campaignid": campaign_id, "retrievestatistics": "true"},
        )["Campaign"]
        return stats["TotalDelivered"] == 40 and stats

    stats = wait_for(delivered, timeout=30)
    assert stats["TotalSent"] == 40 and stats["HardBounceRatio"] == "0.00"
    assert stats["CampaignThroughput"]["AverageEmailsPerSecond"] > 0
    assert [(i["Number"], i["Recipients"], i["Delivered"]) for i in stats["Instances"]] == [
        (1, 40, 40)
    ]
    listed = await account.ok("Campaigns.Get", CampaignStatus="Sent", RetrieveStatistics="true")
    assert [c["CampaignID"] for c in listed["Campaigns"]] == [campaign_id]
    assert listed["TotalCampaigns"] == 1


async def test_campaign_errors_are_the_documented_ones(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine()
    account = Account(engine, api_client(engine), "shop.example")
    other = Account(engine, account.client, "other.example")
    created = await account.ok("Campaign.Create", CampaignName="X")
    campaign_id = created["CampaignID"]

    async def error(command: str, **params: Any) -> tuple[int, str]:
        body = await account.call(command, **params)
        assert body["Success"] is False, body
        return body["ErrorCode"], body["ErrorMessage"]

    assert await error("Campaign.Create") == (1, "The campaign name is required.")
    assert await error("Campaign.Approve") == (1, "Missing required parameter: CampaignID")
    assert await error("Campaign.Pause", CampaignID=campaign_id) == (
        3,
        "Campaign is not in a 'Sending' state",
    )
    assert await error("Campaign.Resume", CampaignID=campaign_id) == (
        3,
        "Campaign is not in a 'Paused' state",
    )
    assert await error("Campaign.Update") == (1, "Campaign ID is required")
    assert await error("Campaign.Update", CampaignID=campaign_id, CampaignStatus="Sent") == (
        3,
        "Invalid campaign status",
    )
    assert await error("Campaign.Update", CampaignID=campaign_id, RelEmailID="nope") == (
        4,
        "Email ID does not belong to the user",
    )
    assert await error("Campaign.Update", CampaignID=campaign_id, ScheduleType="Weekly") == (
        5,
        "Invalid schedule type",
    )
    assert await error(
        "Campaign.Update", CampaignID=campaign_id, ScheduleType="Future", SendTimeZone="UTC"
    ) == (6, "Send date is required for future scheduled campaigns")
    assert await error("Campaign.Get") == (1, "Required parameter 'campaignid' is missing.")
    assert await error("Campaign.Copy", CampaignID="nope") == (1, "Invalid source campaign")
    assert await error("Campaigns.Delete") == (
        1,
        "The 'campaigns' parameter is missing or invalid.",
    )
    # Another account sees nothing of it.
    for command, params, code in (
        ("Campaign.Get", {"campaignid": campaign_id}, 2),
        ("Campaign.Update", {"CampaignID": campaign_id, "CampaignName": "mine"}, 2),
        ("Campaign.Approve", {"CampaignID": campaign_id}, 2),
        ("Campaign.Cancel", {"CampaignID": campaign_id}, 2),
        ("Campaign.Pause", {"CampaignID": campaign_id}, 2),
        ("Campaign.Copy", {"CampaignID": campaign_id}, 1),
        ("Campaigns.Delete", {"Campaigns": campaign_id}, 1),
    ):
        body = await other.call(command, **params)
        assert (body["Success"], body["ErrorCode"]) == (False, code), (command, body)
    assert (await other.ok("Campaigns.Get"))["TotalCampaigns"] == 0

    copied = await account.ok("Campaign.Copy", CampaignID=campaign_id)
    assert copied["NewCampaignID"] != campaign_id
    await account.ok("Campaigns.Delete", Campaigns=f"{campaign_id},{copied['NewCampaignID']}")
    assert (await account.ok("Campaigns.Get"))["TotalCampaigns"] == 0


async def test_pause_holds_resume_continues_and_cancel_stops(
    make_engine: Callable[..., Engine], api_client: Client, slow_receiver: Receiver
) -> None:
    receiver = slow_receiver
    engine = make_engine(SMTP_RELAY_URL=receiver.url, SMTP_POOL_SIZE="1", DELIVERY_CONCURRENCY="4")
    account = Account(engine, api_client(engine), "shop.example")
    created = await account.ok("List.Create", ListName="L", Fields="EmailAddress,FirstName")
    rows = [{"EmailAddress": f"reader{n}@example.org", "FirstName": f"N{n}"} for n in range(300)]
    await account.ok("Subscribers.Import", ListID=created["ListID"], Format="json", Data=rows)
    email = await account.ok(
        "Email.Create", Subject="S", FromName="N", FromEmail="a@shop.example", MessagePlain="hi"
    )
    campaign = (await account.ok("Campaign.Create", CampaignName="P"))["CampaignID"]
    await account.ok(
        "Campaign.Update",
        CampaignID=campaign,
        RelEmailID=email["EmailID"],
        RecipientListsAndSegments=created["ListID"],
    )
    await account.ok("Campaign.Approve", CampaignID=campaign)
    wait_for(lambda: len(receiver.received) >= 5, timeout=60)
    await account.ok("Campaign.Pause", CampaignID=campaign)
    await asyncio.sleep(1.0)  # transactions already open may finish; none may start after this
    paused_at = len(receiver.received)
    await asyncio.sleep(1.5)
    assert len(receiver.received) <= paused_at + 1
    assert len(receiver.received) < 300
    await account.ok("Campaign.Resume", CampaignID=campaign)
    wait_for(lambda: len(receiver.received) >= 300, timeout=120)
    assert len({r.recipients[0] for r in receiver.received}) == 300

    # A second campaign, cancelled at once: nothing more arrives.
    second = (await account.ok("Campaign.Copy", CampaignID=campaign))["NewCampaignID"]
    # The same subject to the same list so soon is refused (DuplicateMassEmailException).
    body = await account.call("Campaign.Approve", CampaignID=second)
    assert (body["ErrorCode"], body["ErrorMessage"]) == (
        4,
        "A campaign with this subject and list was recently sent.",
    )
    other = await account.ok(
        "Email.Create", Subject="T", FromName="N", FromEmail="a@shop.example", MessagePlain="hi"
    )
    await account.ok("Campaign.Update", CampaignID=second, RelEmailID=other["EmailID"])
    before = len(receiver.received)
    await account.ok("Campaign.Approve", CampaignID=second)
    await account.ok("Campaign.Cancel", CampaignID=second)
    await asyncio.sleep(2.0)
    assert len(receiver.received) - before < 300
    body = await account.call("Campaign.Cancel", CampaignID=second)
    assert (body["ErrorCode"], body["ErrorMessage"]) == (3, "Campaign is already Cancelled")


async def test_a_recursive_campaign_sends_one_instance_per_due_time_up_to_its_max(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    from datetime import UTC, datetime, timedelta

    from engine.campaigns.runner import CampaignRunner
    from projections.events import finished_message_count, held_message_ids

    # The runner is driven by hand with a clock of its own; delivery runs for real.
    engine = make_engine(
        roles=frozenset({Role.API, Role.DELIVERY, Role.PROJECTOR, Role.SCHEDULER, Role.RELAY})
    )
    account = Account(engine, api_client(engine), "shop.example")
    campaign_id, _ = await prepared_campaign(account, 3)
    await account.ok(
        "Campaign.Update",
        CampaignID=campaign_id,
        ScheduleType="Recursive",
        ScheduleRecDaysOfWeek="0,1,2,3,4,5,6",
        ScheduleRecMonths="1,2,3,4,5,6,7,8,9,10,11,12",
        ScheduleRecHours="*",
        ScheduleRecMinutes="0,30",
        ScheduleRecSendMaxInstance="2",
        SendTimeZone="Europe/Berlin",
    )
    await account.ok("Campaign.Approve", CampaignID=campaign_id)
    runner = CampaignRunner(
        engine.app,
        engine.campaigns.sender_domain_for,
        lambda instance: finished_message_count(engine.reporting, instance),
        lambda instance: held_message_ids(engine.reporting, instance),
    )
    clock = datetime(2026, 12, 1, 9, 10, tzinfo=UTC)

    def status() -> CampaignStatus:
        return engine.campaigns._get(UUID(campaign_id), object).status  # type: ignore[attr-defined,no-any-return]

    def run_until(wanted: CampaignStatus, now: datetime) -> None:
        def reached() -> bool:
            runner.tick(now)
            return status() is wanted

        wait_for(reached, timeout=60, interval=0.2)

    run_until(CampaignStatus.SCHEDULED, clock)  # next :00 or :30, Berlin time
    campaign = engine.campaigns._get(UUID(campaign_id), object)
    assert campaign.due_at == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # type: ignore[attr-defined]
    run_until(CampaignStatus.SCHEDULED, clock + timedelta(minutes=21))  # first instance done
    assert engine.campaigns._get(UUID(campaign_id), object).instances_started == 1  # type: ignore[attr-defined]
    run_until(CampaignStatus.SENT, clock + timedelta(minutes=51))  # the second and last
    assert engine.campaigns._get(UUID(campaign_id), object).instances_started == 2  # type: ignore[attr-defined]

    def per_instance() -> Any:
        stats = await_stats()
        return [i["Delivered"] for i in stats["Instances"]] == [3, 3] and stats

    def await_stats() -> Any:
        owner = engine.app.account(account_id_of(engine, campaign_id))
        return engine.campaigns.get_campaign(
            owner, {"campaignid": campaign_id, "retrievestatistics": "true"}
        )["Campaign"]

    stats = wait_for(per_instance, timeout=30)
    assert stats["TotalDelivered"] == 6


def account_id_of(engine: Engine, campaign_id: str) -> UUID:
    campaign = engine.campaigns._get(UUID(campaign_id), object)
    return campaign.account_id  # type: ignore[attr-defined,no-any-return]


async def test_saved_segments_and_exclusions_choose_the_audience(
    make_engine: Callable[..., Engine], api_client: Client, receiver: Receiver
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url)
    account = Account(engine, api_client(engine), "shop.example")
    campaign_id, list_id = await prepared_campaign(account, 40)
    bundle = {
        "operator": "or",
        "criteria": [
            {
                "list_id": list_id,
                "operator": "and",
                "rules": [
                    {"type": "fields", "field_id": "City", "operator": "equals", "value": "city1"}
                ],
            }
        ],
    }
    segment = await account.ok("Segment.Create", SegmentName="City one", RulesJsonBundle=bundle)
    listed = await account.ok("Segments.Get")
    assert [s["SegmentID"] for s in listed["Segments"]] == [segment["SegmentID"]]
    blocked = await account.ok("List.Create", ListName="Blocked")
    await account.ok(
        "Subscriber.Subscribe", ListID=blocked["ListID"], EmailAddress="User1@Example.org"
    )
    # user4 unsubscribed from the account: left out, and counted as suppressed.
    await account.ok("Unsubscribe.Add", EmailAddress="user4@example.org")
    await account.ok(
        "Campaign.Update",
        CampaignID=campaign_id,
        RecipientListsAndSegments=segment["SegmentID"],
        Exclude_RecipientListsAndSegments=blocked["ListID"],
    )
    await account.ok("Campaign.Approve", CampaignID=campaign_id)
    # City1 is every third reader from user1: 13 of 40, less user1, excluded.
    expected = {f"user{n}@example.org" for n in range(40) if n % 3 == 1} - {
        "user1@example.org",
        "user4@example.org",
    }
    wait_for(lambda: len(receiver.received) >= len(expected), timeout=60)
    await asyncio.sleep(1.0)
    assert {r.recipients[0] for r in receiver.received} == expected
    assert len(receiver.received) == 11
    got = await account.ok("Campaign.Get", campaignid=campaign_id, retrievestatistics="true")
    assert got["Campaign"]["TotalSuppressed"] == 1


async def test_campaign_emails_are_templates_checked_when_stored(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    """One template engine (issue 21): a campaign email's parts are the sandboxed templates
    stored templates are, merge tags included, and a broken one is refused when stored."""
    engine = make_engine(roles=frozenset({Role.API}))
    account = Account(engine, api_client(engine), "shop.example")
    created = await account.ok("List.Create", ListName="R", Fields="EmailAddress,FirstName,City")
    await account.ok("Subscribers.Import", ListID=created["ListID"], Format="csv",
                     Data="EmailAddress,FirstName,City\nann@example.org,<Ann>,Oslo\n"
                          "bo@example.org,,Rome\n")  # fmt: skip
    common = {"FromName": "News", "FromEmail": "news@shop.example"}
    email = await account.ok(
        "Email.Create", Subject="Hi %Subscriber:FirstName|friend%", **common,
        MessageHTML="<p>{% if City == 'Oslo' %}God dag{% else %}Hello{% endif %} "
                    "%Subscriber:FirstName|there%, {{ Subscriber.city | upper }}</p>",
    )  # fmt: skip

    async def preview(address: str) -> dict[str, Any]:
        return await account.ok("Email.Preview", EmailID=email["EmailID"],
                                ListID=created["ListID"], EmailAddress=address)  # fmt: skip

    ann, bo = await preview("ann@example.org"), await preview("bo@example.org")
    assert ann["Subject"] == "Hi <Ann>"
    assert ann["MessageHTML"] == "<p>God dag &lt;Ann&gt;, OSLO</p>"
    assert (bo["Subject"], bo["MessageHTML"]) == ("Hi friend", "<p>Hello there, ROME</p>")
    assert bo["MessagePlain"] == "Hello there, ROME"

    broken = await account.call(
        "Email.Create", Subject="S", **common, MessageHTML="<p>ok</p>\n{% for x in %}"
    )
    assert (broken["ErrorCode"], broken["ErrorMessage"]) == (
        19, "Invalid template: MessageHTML, line 2: Expected an expression, got "
        "'end of statement block'",
    )  # fmt: skip
    refused = await account.call("Email.Update", EmailID=email["EmailID"],
                                 Subject="{{ range(3) }}")  # fmt: skip
    assert refused["ErrorCode"] == 19
    # What no header may hold would fail every recipient at send time: refused now.
    for field, value in (("Subject", "Spring\u0085sale"), ("FromName", "News\x1b[31m")):
        unsafe = await account.call("Email.Create", **{**common, "Subject": "S", field: value},
                                    MessagePlain="hi")  # fmt: skip
        assert unsafe["ErrorMessage"] == f"Invalid Option specified: {field}", unsafe
    assert refused["ErrorMessage"].startswith("Invalid template: Subject, line 1: there is no")
