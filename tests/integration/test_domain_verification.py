"""VerifyDomain against a real DNS server (dnsmasq), and DKIM on what a verified domain sends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from adapters.dkim import verify as dkim_verify
from adapters.dns import DnsLookup
from engine.runtime.composition import Engine, Role
from tests.integration.conftest import wait_for
from tests.integration.receiver import Receiver
from tests.services import DnsmasqService

Client = Callable[[Engine], httpx.AsyncClient]


async def command(client: httpx.AsyncClient, key: str, name: str, **params: Any) -> Any:
    response = await client.post("/api.php", json={"APIKey": key, "Command": name, **params})
    body = response.json()
    assert body["Success"] is True, body
    return body


def published(records: list[dict[str, Any]], **changes: str | None) -> list[Any]:
    """dnsmasq entries for ``records``; ``changes`` maps a purpose to a wrong value, or to None
    to leave that record out."""
    entries = []
    for record in records:
        value = changes.get(record["Purpose"], record["Value"])
        if value is not None:
            entries.append((record["Host"], record["Type"], value))
    return entries


async def test_verification_follows_dns_and_a_verified_domain_signs_with_dkim(
    make_engine: Callable[..., Engine],
    api_client: Client,
    dns_server: Callable[..., DnsmasqService],
    receiver: Receiver,
) -> None:
    # The records exist only once the domains do; the engine that checks them comes after.
    setup = make_engine(roles=frozenset({Role.API}))
    keys = setup.app.bootstrap("owner.example")
    account_key = keys["AccountAPIKey"]
    client = api_client(setup)
    good = await command(client, account_key, "EmailGateway.AddDomain", DomainName="good.example")
    bad = await command(client, account_key, "EmailGateway.AddDomain", DomainName="bad.example")
    dns = dns_server(
        published(good["Domain"]["DNSRecords"])
        + published(
            bad["Domain"]["DNSRecords"],
            spf="v=spf1 include:_spf.somebody-else.example ~all",
            dkim=None,
        )
    )

    engine = make_engine(
        roles=frozenset({Role.API, Role.DELIVERY, Role.RELAY}),  # relay: Kafka mode
        DNS_RESOLVER=dns.resolver,
        SMTP_RELAY_URL=receiver.url,
    )
    client = api_client(engine)
    verified = await command(
        client, account_key, "EmailGateway.VerifyDomain", DomainID=good["NewSenderDomainID"]
    )
    assert all(r["Verified"] for r in verified["DNSVerificationResults"])
    assert verified["Domain"]["Status"] == "Enabled"
    assert (verified["Domain"]["DKIMStatus"], verified["Domain"]["SPFStatus"]) == (
        "Verified",
        "Verified",
    )

    checked = await command(
        client, account_key, "EmailGateway.VerifyDomain", DomainID=bad["NewSenderDomainID"]
    )
    by_purpose = {r["Purpose"]: r["Verified"] for r in checked["DNSVerificationResults"]}
    assert by_purpose["spf"] is False and by_purpose["dkim"] is False
    assert by_purpose["verification"] is True and by_purpose["dmarc"] is True
    assert (checked["Domain"]["DKIMStatus"], checked["Domain"]["SPFStatus"]) == (
        "Failed",
        "Failed",
    )
    domain = await command(
        client, account_key, "EmailGateway.GetDomain", DomainID=bad["NewSenderDomainID"]
    )
    assert {r["Purpose"]: r["Verified"] for r in domain["Domain"]["DNSRecords"]} == by_purpose

    key = await command(
        client,
        account_key,
        "EmailGateway.AddAPI",
        Description="app",
        DomainID=good["NewSenderDomainID"],
    )
    sent = await client.post(
        "/api/v1/email",
        headers={"Authorization": f"Bearer {key['APIKey']['Key']}"},
        json={
            "Subject": "Signed",
            "ContentType": "html",
            "HtmlContent": "<p>Hello</p>",
            "PlainContent": "Hello",
            "From": {"email": "news@good.example", "name": "News"},
            "To": [{"email": "reader@example.org", "name": "Reader"}],
        },
    )
    assert sent.status_code == 200, sent.text
    wait_for(lambda: receiver.received, timeout=30)
    raw = receiver.received[0].data
    assert raw.startswith(b"DKIM-Signature:")
    lookup = DnsLookup(dns.resolver)
    assert dkim_verify(raw, lookup)
    assert not dkim_verify(raw.replace(b"Hello", b"Hullo"), lookup)
