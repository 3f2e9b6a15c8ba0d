"""Sending addresses and pools over ``/api.php``, and direct delivery through them: the
smtp-sink sees the pool's addresses, warm-up caps postpone mail rather than fail it, and
the pauses a receiver asks for are events in the reporting tables and ``AggrEvents``."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.ip_pools import SendingAddresses, sending_addresses_id
from domain.message import MessageStatus, message_id_for
from engine.runtime.composition import Engine, Role
from tests.fake_mx import FakeMx
from tests.integration.conftest import wait_for
from tests.integration.test_command_api import Tenant, failed, ok
from tests.integration.test_direct_delivery import send_to
from tests.services import received_messages

Client = Callable[[Engine], httpx.AsyncClient]
INVALID = "The specified value does not exist or is not a valid IP Address."
DUPLICATE = "The specified IP Address is already registered."


@pytest.fixture
def tenants(make_engine: Callable[..., Engine], api_client: Client) -> tuple[Tenant, Tenant]:
    # Loopback addresses stand for the machine's public ones here.
    engine = make_engine(
        roles=frozenset({Role.API}), DIRECT_ALLOW_PRIVATE_ADDRESSES="true",
        SENDING_ADDRESSES="127.0.0.39=shared.example",
    )  # fmt: skip
    client = api_client(engine)
    return Tenant(engine, client, "alpha.example"), Tenant(engine, client, "beta.example")


def stored(tenant: Tenant) -> SendingAddresses:
    return tenant.engine.app._get(sending_addresses_id(tenant.account_id), SendingAddresses)


@pytest.mark.unit  # commands only: the stream plays no part
async def test_an_address_is_registered_once_and_only_if_it_is_this_machines(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, beta = tenants
    added = ok(await alpha.call(
        "EmailGateway.AddIPAddress", IPAddress="127.0.0.40", HeloName="MTA40.Example.",
    ))  # fmt: skip
    assert added["IPAddress"] == {
        "IPAddress": "127.0.0.40", "HeloName": "mta40.example", "Pools": [], "WarmUp": None,
    }  # fmt: skip
    failed(
        await alpha.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.40"), 409, DUPLICATE, 409
    )
    failed(
        await beta.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.40"), 409, DUPLICATE, 409
    )
    # written another way, it is the same address
    failed(
        await beta.call("EmailGateway.AddIPAddress", IPAddress="::ffff:127.0.0.40"),
        409,
        DUPLICATE,
        409,
    )
    # the machine's shared addresses belong to no account
    failed(
        await beta.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.39"), 409, DUPLICATE, 409
    )
    for bad in ("192.0.2.1", "203.0.113.9", "not an address", "127.0.0.256", "1" * 100, 7, [1],
                "0.0.0.0", "::", "224.0.0.1", {"a": 1}, "127.0.0.4\x00"):  # fmt: skip  # noqa: S104
        failed(await alpha.call("EmailGateway.AddIPAddress", IPAddress=bad), 400, INVALID, 400)
    failed(
        await alpha.call("EmailGateway.AddIPAddress"), 400,
        "A required field was not supplied: IPAddress.", 400,
    )  # fmt: skip
    failed(
        await alpha.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.41", HeloName="-bad-"),
        400, "Invalid Option specified: HeloName", 400,
    )  # fmt: skip
    failed(
        await alpha.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.41", WarmUp="maybe"),
        400, "Invalid Option specified: WarmUp", 400,
    )  # fmt: skip
    # nothing of the refused ones was kept
    assert list(stored(alpha).addresses) == ["127.0.0.40"]
    listed = ok(await alpha.call("EmailGateway.GetIPAddresses"))["IPAddresses"]
    assert [a["IPAddress"] for a in listed] == ["127.0.0.40"]
    assert ok(await beta.call("EmailGateway.GetIPAddresses"))["IPAddresses"] == []
    # released, it may be registered again, by another account
    ok(await alpha.call("EmailGateway.DeleteIPAddress", IPAddress="127.0.0.40"))
    failed(
        await alpha.call("EmailGateway.DeleteIPAddress", IPAddress="127.0.0.40"), 400, INVALID, 400
    )
    ok(await beta.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.40", WarmUp="1"))
    warm = ok(await beta.call("EmailGateway.GetIPAddresses"))["IPAddresses"][0]["WarmUp"]
    assert (warm["Day"], warm["HourlyCap"], warm["DailyCap"], warm["Finished"]) == (
        1, 50, 500, False,
    )  # fmt: skip
    # another account's address is not yours to change or release
    failed(
        await alpha.call("EmailGateway.DeleteIPAddress", IPAddress="127.0.0.40"), 400, INVALID, 400
    )
    failed(
        await alpha.call("EmailGateway.UpdateIPAddress", IPAddress="127.0.0.40", WarmUp="0"),
        400, INVALID, 400,
    )  # fmt: skip
    changed = ok(await beta.call(
        "EmailGateway.UpdateIPAddress", IPAddress="127.0.0.40", WarmUp="0", HeloName="b.example"
    ))["IPAddress"]  # fmt: skip
    assert (changed["HeloName"], changed["WarmUp"]) == ("b.example", None)


@pytest.mark.unit  # commands only: the stream plays no part
async def test_loopback_addresses_are_refused_where_mail_goes_out_for_real(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({Role.API}))
    tenant = Tenant(engine, api_client(engine), "alpha.example")
    failed(
        await tenant.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.40"), 400, INVALID, 400
    )
    assert ok(await tenant.call("EmailGateway.GetIPAddresses"))["IPAddresses"] == []


@pytest.mark.unit  # commands only: the stream plays no part
async def test_pools_group_the_accounts_own_addresses_and_attach_to_domains(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, beta = tenants
    ok(await alpha.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.43"))
    ok(await alpha.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.44"))
    ok(await beta.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.45"))
    pool = ok(await alpha.call(
        "EmailGateway.AddIPPool", PoolName="Dedicated", IPAddresses="127.0.0.43*3, 127.0.0.44",
    ))["IPPool"]  # fmt: skip
    assert pool == {
        "PoolName": "Dedicated",
        "IPAddresses": [
            {"IPAddress": "127.0.0.43", "Weight": 3}, {"IPAddress": "127.0.0.44", "Weight": 1},
        ],
    }  # fmt: skip
    # another account's address, or one never registered, is no member
    for members in ("127.0.0.45", "127.0.0.46"):
        failed(
            await alpha.call("EmailGateway.AddIPPool", PoolName="x", IPAddresses=members),
            400, INVALID, 400,
        )  # fmt: skip
    failed(
        await alpha.call("EmailGateway.AddIPPool", PoolName="dedicated", IPAddresses="127.0.0.43"),
        400, "Invalid Option specified: PoolName (a pool named 'Dedicated' exists)", 400,
    )  # fmt: skip
    failed(
        await alpha.call("EmailGateway.AddIPPool", PoolName="y", IPAddresses="127.0.0.43*0"),
        400, "Invalid Option specified: IPAddresses ('127.0.0.43*0': the weight is 1 to 1000)",
        400,
    )  # fmt: skip
    failed(
        await alpha.call("EmailGateway.AddIPPool", PoolName="y"), 400,
        "A required field was not supplied: IPAddresses.", 400,
    )  # fmt: skip
    assert list(stored(alpha).pools) == ["Dedicated"]

    # a domain takes a pool of its account, and nothing else
    failed(
        await alpha.call("EmailGateway.UpdateDomain", DomainID=alpha.domain_id, IPPool="nope",
                         LinkTracking="1"),
        400, "Invalid Option specified: IPPool (no pool named 'nope')", 400,
    )  # fmt: skip
    domain = alpha.engine.app.domain(UUID(alpha.domain_id))
    assert (domain.ip_pool, domain.link_tracking) == ("", False)  # unchanged
    failed(
        await beta.call("EmailGateway.UpdateDomain", DomainID=beta.domain_id, IPPool="Dedicated"),
        400, "Invalid Option specified: IPPool (no pool named 'Dedicated')", 400,
    )  # fmt: skip
    answer = ok(await alpha.call(
        "EmailGateway.UpdateDomain", DomainID=alpha.domain_id, IPPool="DEDICATED",
    ))  # fmt: skip
    assert answer["Domain"]["IPPool"] == "Dedicated"
    shown = ok(await alpha.call("EmailGateway.GetDomain", DomainID=alpha.domain_id))
    assert shown["Domain"]["IPPool"] == "Dedicated"

    # replaced, listed, and gone with its last address's release only from the pool
    ok(
        await alpha.call(
            "EmailGateway.UpdateIPPool", PoolName="dedicated", IPAddresses="127.0.0.44"
        )
    )
    ok(await alpha.call("EmailGateway.DeleteIPAddress", IPAddress="127.0.0.44"))
    pools = ok(await alpha.call("EmailGateway.GetIPPools"))["IPPools"]
    assert pools == [{"PoolName": "Dedicated", "IPAddresses": []}]
    ok(await alpha.call("EmailGateway.DeleteIPPool", PoolName="Dedicated"))
    failed(
        await alpha.call("EmailGateway.DeleteIPPool", PoolName="Dedicated"), 400,
        "Invalid Option specified: PoolName (no pool named 'Dedicated')", 400,
    )  # fmt: skip
    assert ok(await alpha.call("EmailGateway.GetIPPools"))["IPPools"] == []


@pytest.mark.unit  # commands only: the stream plays no part
async def test_a_campaign_takes_a_pool_of_its_account(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    ok(await alpha.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.47"))
    ok(await alpha.call("EmailGateway.AddIPPool", PoolName="news", IPAddresses="127.0.0.47"))
    campaign_id = ok(await alpha.call("Campaign.Create", CampaignName="Winter"))["CampaignID"]
    failed(
        await alpha.call("Campaign.Update", CampaignID=campaign_id, IPPool="other"), 400,
        "Invalid Option specified: IPPool (no pool named 'other')", 400,
    )  # fmt: skip
    ok(await alpha.call("Campaign.Update", CampaignID=campaign_id, IPPool="News"))
    from domain.campaign import Campaign

    campaign = alpha.engine.app._get(UUID(campaign_id), Campaign)
    assert campaign.options["IPPool"] == "news"


# --- Direct delivery through pools ---------------------------------------------------------


def client_addresses(fake_mx: FakeMx, before: int) -> Counter[str]:
    dumps = received_messages(fake_mx.sinks["mx1.alpha.example"])[before:]
    found: Counter[str] = Counter()
    for dump in dumps:
        for line in dump.split(b"\n"):
            if line.startswith(b"X-Client-Addr: "):
                found[line.split(b": ", 1)[1].decode()] += 1
    return found


@pytest.mark.slow
async def test_mail_leaves_from_the_domains_pool_and_waits_at_warm_up_caps(
    make_engine: Callable[..., Engine], api_client: Client, fake_mx: FakeMx, tmp_path: Path
) -> None:
    shaping = tmp_path / "shaping.toml"
    shaping.write_text("[[warmup]]\nfrom_day = 1\nper_hour = 2\nper_day = 2\n")
    engine = make_engine(
        DELIVERY_MODE="direct", DNS_RESOLVER=fake_mx.resolver, SHAPING_FILE=str(shaping),
        DIRECT_ALLOW_PRIVATE_ADDRESSES="true", DIRECT_TIMEOUT_SECONDS="2",
        SENDING_ADDRESSES="127.0.0.50=shared.example",
    )  # fmt: skip
    client = api_client(engine)
    tenant = Tenant(engine, client, "example.com")
    ok(await tenant.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.51", HeloName="a.example"))
    ok(await tenant.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.52", HeloName="b.example"))
    ok(await tenant.call(
        "EmailGateway.AddIPPool", PoolName="dedicated", IPAddresses="127.0.0.51, 127.0.0.52",
    ))  # fmt: skip
    ok(await tenant.call(
        "EmailGateway.UpdateDomain", DomainID=tenant.domain_id, IPPool="dedicated",
    ))  # fmt: skip
    before = len(received_messages(fake_mx.sinks["mx1.alpha.example"]))
    recipients = [f"pool{n}@alpha.example" for n in range(8)]
    submission = UUID(await send_to(client, tenant.sender_key, *recipients))
    messages = [message_id_for(submission, n) for n in range(len(recipients))]
    wait_for(lambda: all(
        engine.app.message(m).status is MessageStatus.DELIVERED for m in messages
    ))  # fmt: skip
    seen = client_addresses(fake_mx, before)
    assert set(seen) == {"127.0.0.51", "127.0.0.52"} and sum(seen.values()) == 8

    # the account's own warming address: two a day, the rest wait for tomorrow
    ok(await tenant.call("EmailGateway.AddIPAddress", IPAddress="127.0.0.53", WarmUp="1"))
    ok(await tenant.call("EmailGateway.AddIPPool", PoolName="warm", IPAddresses="127.0.0.53"))
    ok(await tenant.call("EmailGateway.UpdateDomain", DomainID=tenant.domain_id, IPPool="warm"))
    before = len(received_messages(fake_mx.sinks["mx1.alpha.example"]))
    wait_for(lambda: engine.app.domain(UUID(tenant.domain_id)).ip_pool == "warm")
    await asyncio.sleep(2.1)  # the delivery worker sees the change of pools within 2 s
    submission = UUID(await send_to(client, tenant.sender_key, *recipients[:5]))
    messages = [message_id_for(submission, n) for n in range(5)]

    def settled() -> Counter[MessageStatus]:
        statuses = Counter(engine.app.message(m).status for m in messages)
        done = statuses[MessageStatus.DELIVERED] == 2 and statuses[MessageStatus.SCHEDULED] == 3
        return statuses if done else Counter()

    wait_for(settled)
    assert client_addresses(fake_mx, before) == {"127.0.0.53": 2}
    postponed = [
        engine.app.message(m) for m in messages
        if engine.app.message(m).status is MessageStatus.SCHEDULED
    ]  # fmt: skip
    assert all(p.attempts == 0 and p.next_attempt_at is not None for p in postponed)
    # Two a day: the three that wait go tomorrow, and (the one a day's cap leaves over,
    # whichever was handled last) the day after; never more than the cap on one day.
    days = Counter(p.next_attempt_at.date() for p in postponed if p.next_attempt_at)
    assert min(days) == (datetime.now(UTC) + timedelta(days=1)).date(), days
    assert all(count <= 2 for count in days.values()), days

    def postponed_rows() -> list[dict[str, Any]]:
        from projections.events import list_events

        _, found = list_events(
            engine.reporting, domain_id=UUID(tenant.domain_id), start_from=0,
            retrieve_count=100, submission_id=submission,
        )  # fmt: skip
        return [row for row in found if row["EventType"] == "postponed"]

    rows = wait_for(lambda: len(postponed_rows()) == 3 and postponed_rows())
    # two a day, two an hour: tomorrow (UTC) at 00:00 and 00:30, the third the day after
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    after = tomorrow + timedelta(days=1)
    assert sorted(row["Details"]["Until"] for row in rows) == [
        f"{tomorrow}T00:00:00.000Z", f"{tomorrow}T00:30:00.000Z", f"{after}T00:00:00.000Z",
    ]  # fmt: skip


@pytest.mark.slow
async def test_a_receivers_slow_down_is_a_throttled_event_in_aggr_events(
    make_engine: Callable[..., Engine], api_client: Client, fake_mx: FakeMx
) -> None:
    engine = make_engine(
        DELIVERY_MODE="direct", DNS_RESOLVER=fake_mx.resolver,
        DIRECT_ALLOW_PRIVATE_ADDRESSES="true", DIRECT_TIMEOUT_SECONDS="2",
    )  # fmt: skip
    client = api_client(engine)
    tenant = Tenant(engine, client, "example.com")
    submission = UUID(await send_to(client, tenant.sender_key, "slow@rate-limit.example"))
    message = message_id_for(submission, 0)
    wait_for(lambda: engine.app.message(message).route_changes == 1)

    async def aggregated() -> dict[str, int]:
        answer = ok(await tenant.call(
            "EmailGateway.AggrEvents", DomainID=tenant.domain_id, AggregatedField="eventType",
        ))  # fmt: skip
        return {str(b["Key"]): int(b["Count"]) for b in answer["AggBuckets"]}

    for _ in range(300):
        found = await aggregated()
        if found.get("throttled"):
            break
        await asyncio.sleep(0.1)
    # The message is tried again meanwhile: the projector may write its next deferral
    # in the same insert as the first (it writes a busy stream once a second).
    assert found["throttled"] == 1 and found["deferred"] >= 1
    listed = await client.get(
        "/api/v1/events", params={"MessageID": str(submission)},
        headers={"Authorization": f"Bearer {tenant.sender_key}"},
    )  # fmt: skip
    throttled = [e for e in listed.json()["Events"] if e["EventType"] == "throttled"]
    assert throttled and throttled[0]["Details"]["Route"] == "mx.rate-limit.example"
