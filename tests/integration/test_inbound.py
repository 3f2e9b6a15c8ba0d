"""Inbound routes (issue 21): mail for a customer's domain, sent by ``swaks``, by Postfix's
``sendmail`` (a private Postfix relaying to us) and by Python's smtplib to the real
inbound SMTP server, posted to the route's URL with the
webhook machinery's signature, forwarded, or kept; and never relayed."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import smtplib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from standardwebhooks import Webhook as StandardWebhook

from domain.inbound import InboundMessage
from engine.runtime.composition import Engine
from tests.integration.conftest import wait_for
from tests.integration.receiver import Receiver
from tests.services import DnsmasqService, start_dnsmasq, start_postfix
from tests.webhook_receiver import WebhookReceiver

Client = Callable[[Engine], httpx.AsyncClient]
SENDER_RECORDS = [
    ("sender.example", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
    ("_dmarc.sender.example", "TXT", "v=DMARC1; p=reject"),
    ("elsewhere.example", "TXT", "v=spf1 ip4:192.0.2.1 -all"),
]
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[DnsmasqService]:
    server = start_dnsmasq(SENDER_RECORDS, tmp_path / "dns")
    yield server
    server.stop()


def _swaks(port: int, *arguments: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("swaks") is None:
        pytest.fail("swaks is not installed (make test-deps)")
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--helo", "mx.sender.example",
         "--timeout", "20", *arguments],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_mail_for_a_routed_domain_is_posted_forwarded_or_kept_and_never_relayed(
    make_engine: Callable[..., Engine],
    api_client: Client,
    receiver: Receiver,
    webhook_receiver: WebhookReceiver,
    dns: DnsmasqService,
    tmp_path: Path,
) -> None:
    engine = make_engine(
        SMTP_RELAY_URL=receiver.url, INBOUND_SMTP_PORTS="0", DNS_RESOLVER=dns.resolver,
        WEBHOOK_ALLOW_LOOPBACK="true", WEBHOOK_ALLOW_HTTP="true",
    )  # fmt: skip
    assert engine.inbound_server is not None
    port = engine.inbound_server.ports[0]
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")

    async def command(name: str, **params: Any) -> dict[str, Any]:
        body = {"APIKey": keys["AccountAPIKey"], "Command": name, **params}
        answer: dict[str, Any] = (await client.post("/api.php", json=body)).json()
        return answer

    posted = await command("Route.Create", Domain="in.shop.example", Recipient="support",
                           URL=f"{webhook_receiver.url}/inbound")  # fmt: skip
    assert posted["Success"] is True, posted
    forwarded = await command("Route.Create", Domain="in.shop.example",
                              Pattern=r"ticket-\d+@in\.shop\.example", Action="forward",
                              ForwardTo="ops@example.org")  # fmt: skip
    assert forwarded["Success"] is True, forwarded
    kept = await command("Route.Create", Domain="in.shop.example", Recipient="*",
                         Action="store", Priority=10)  # fmt: skip
    assert kept["Success"] is True, kept
    listed = await command("Routes.Get")
    assert listed["TotalRoutes"] == 3

    # A message with an attachment, an encoded subject and sender name, and 8-bit text.
    attachment = tmp_path / "invoice.pdf"
    attachment.write_bytes(PDF)
    sent = _swaks(
        port, "--from", "alice@sender.example", "--to", "support@in.shop.example",
        "--header", "Subject: =?utf-8?B?" + base64.b64encode("Grüße, ça va?".encode()).decode()
        + "?=", "--header", "From: =?iso-8859-1?q?Al=E9?= <alice@sender.example>",
        "--body", "Hello support", "--attach-type", "application/pdf",
        "--attach", f"@{attachment}",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    (call,) = wait_for(lambda: webhook_receiver.calls_to("/inbound"), timeout=30)
    signing_key = (await command("EmailGateway.GetWebhooks",
                                 DomainID=keys["DomainID"]))["SigningKey"]  # fmt: skip
    body = StandardWebhook(signing_key).verify(call.body, call.headers)
    assert body["type"] == "inbound"
    data = body["data"]
    assert data["Subject"] == "Grüße, ça va?"
    assert "Alé" in data["From"]
    assert data["Envelope"]["MailFrom"] == "alice@sender.example"
    assert data["Envelope"]["Recipient"] == "support@in.shop.example"
    assert "Hello support" in data["Text"]
    (pdf,) = data["Attachments"]
    assert (pdf["Filename"], pdf["ContentType"]) == ("invoice.pdf", "application/pdf")
    assert base64.b64decode(pdf["ContentBase64"]) == PDF
    assert data["Authentication"]["spf"] == "pass"
    assert data["Authentication"]["dmarc"] == "pass"
    assert "spf=pass" in data["AuthenticationResults"]
    copy = engine.app._get(UUID(data["InboundID"]), InboundMessage)
    assert copy.route_id == UUID(posted["RouteID"])
    raw = base64.b64decode(copy.raw_base64)  # the message as received, kept
    assert len(raw) == copy.size and b"invoice.pdf" in raw and b"Hello support" in raw

    # Forwarded from the domain, with the sender as Reply-To; SPF fails from elsewhere.
    raw = (
        "From: Bob <bob@elsewhere.example>\r\nTo: ticket-42@in.shop.example\r\n"
        "Subject: Ticket 42\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nDéjà vu: the printer.\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        smtp.sendmail("bob@elsewhere.example", ["ticket-42@in.shop.example"], raw)
    (copy_sent,) = receiver.wait_for_count(1)
    message = copy_sent.message
    assert copy_sent.recipients == ["ops@example.org"]
    assert message["From"].addresses[0].addr_spec == "forwarding@shop.example"
    assert message["Reply-To"].addresses[0].addr_spec == "bob@elsewhere.example"
    assert "Déjà vu" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    # A program's mail through Postfix's sendmail, relayed by Postfix's smtp client.
    postfix = start_postfix(f"127.0.0.1:{port}")  # in /tmp: its daemons reach the queue
    try:
        postfix.sendmail(
            b"From: Cron <cron@sender.example>\nTo: support@in.shop.example\n"
            b"Subject: nightly report\n\nAll jobs ran.\n",
            "cron@sender.example", "support@in.shop.example",
        )  # fmt: skip
        calls = wait_for(lambda: len(webhook_receiver.calls_to("/inbound")) >= 2, timeout=60)
        assert calls, postfix.log_tail()
    finally:
        postfix.stop()
    relayed = json.loads(webhook_receiver.calls_to("/inbound")[1].body)["data"]
    assert relayed["Subject"] == "nightly report"
    assert "All jobs ran." in relayed["Text"]
    assert any(name == "Received" and "Postfix" in value for name, value in relayed["Headers"])

    # Broken MIME (a boundary that never comes) is kept, not refused.
    broken = (
        b"From: x@sender.example\r\nSubject: broken\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="nope"\r\n\r\nno parts at all\r\n'
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        smtp.sendmail("x@sender.example", ["anyone@in.shop.example"], broken)
        # Never a relay, and no address of a domain without routes.
        for recipient, code in (("someone@example.org", 550), ("a@shop.example", 550)):
            smtp.mail("x@sender.example")
            assert smtp.rcpt(recipient)[0] == code
            smtp.rset()
    assert wait_for(lambda: _kept(engine, "broken"), timeout=10)

    deleted = await command("Route.Delete", RouteID=kept["RouteID"])
    assert deleted["Success"] is True
    engine.route_table.forget()
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        smtp.ehlo("mx.sender.example")
        smtp.mail("x@sender.example")
        assert smtp.rcpt("anyone@in.shop.example")[0] == 550  # no route takes it now
        assert smtp.rcpt("support@in.shop.example")[0] == 250


def _kept(engine: Engine, subject: str) -> bool:
    for item in engine.app.recorder.select_notifications(start=1, limit=10_000):
        if item.topic.endswith("InboundMessage.Received") and subject.encode() in item.state:
            return True
    return False


async def test_routes_over_rest_belong_to_the_keys_domain(
    make_engine: Callable[..., Engine], api_client: Client, webhook_receiver: WebhookReceiver
) -> None:
    engine = make_engine(WEBHOOK_ALLOW_LOOPBACK="true", WEBHOOK_ALLOW_HTTP="true")
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    other = engine.app.bootstrap("other.example")
    headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}"}
    created = await client.post("/api/v1/routes", headers=headers, json={
        "Recipient": "orders", "URL": f"{webhook_receiver.url}/orders"})  # fmt: skip
    assert created.status_code == 200, created.text
    route_id = created.json()["RouteID"]
    shown = (await client.get(f"/api/v1/routes/{route_id}", headers=headers)).json()["Route"]
    assert (shown["Domain"], shown["Recipient"], shown["Action"]) == (
        "shop.example", "orders@shop.example", "post")  # fmt: skip
    foreign = await client.post("/api/v1/routes", headers=headers,
                                json={"Domain": "other.example", "Action": "store"})  # fmt: skip
    assert foreign.status_code == 422
    assert foreign.json()["Errors"][0]["Code"] == 3
    pattern = await client.post("/api/v1/routes", headers=headers,
                                json={"Pattern": "(unclosed", "Action": "store"})  # fmt: skip
    assert (pattern.status_code, pattern.json()["Errors"][0]["Code"]) == (422, 4)
    stranger = {"Authorization": f"Bearer {other['SenderAPIKey']}"}
    assert (await client.get(f"/api/v1/routes/{route_id}", headers=stranger)).status_code == 404
    assert (await client.get("/api/v1/routes", headers=stranger)).json()["TotalRoutes"] == 0
    gone = await client.delete(f"/api/v1/routes/{route_id}", headers=headers)
    assert gone.json() == {"RouteID": route_id}
    assert (await client.get("/api/v1/routes", headers=headers)).json()["TotalRoutes"] == 0
    webhooks = await client.get("/api/v1/webhooks", headers=headers)
    assert json.loads(webhooks.text)["Webhooks"] == []  # the route's webhook went with it


async def test_the_inbound_server_keeps_its_limits_and_takes_a_retried_message_once(
    make_engine: Callable[..., Engine],
    api_client: Client,
    webhook_receiver: WebhookReceiver,
    dns: DnsmasqService,
) -> None:
    engine = make_engine(
        INBOUND_SMTP_PORTS="0", INBOUND_MAX_BYTES="4000", INBOUND_MAX_RECIPIENTS="2",
        DNS_RESOLVER=dns.resolver, WEBHOOK_ALLOW_LOOPBACK="true", WEBHOOK_ALLOW_HTTP="true",
    )  # fmt: skip
    assert engine.inbound_server is not None
    port = engine.inbound_server.ports[0]
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    created = await client.post(
        "/api.php",
        json={"APIKey": keys["AccountAPIKey"], "Command": "Route.Create",
              "Domain": "shop.example", "URL": f"{webhook_receiver.url}/in"},
    )  # fmt: skip
    assert created.json()["Success"] is True, created.text
    message = (
        b"From: a@sender.example\r\nSubject: once\r\nMessage-ID: <1@sender.example>\r\n\r\nhi\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        smtp.ehlo("mx.sender.example")
        smtp.mail("a@sender.example")
        codes = [smtp.rcpt(f"r{n}@shop.example")[0] for n in range(3)]
        assert codes == [250, 250, 452]
        smtp.rset()
        # Refused at MAIL already: smtplib announces the size (SIZE=, RFC 1870).
        with pytest.raises(smtplib.SMTPSenderRefused) as too_big:
            smtp.sendmail("a@sender.example", ["r@shop.example"], message + b"x" * 5000)
        assert too_big.value.smtp_code == 552
        smtp.rset()
        # The same message twice (a sender retrying after a lost reply): one copy, one call.
        smtp.sendmail("a@sender.example", ["r@shop.example"], message)
        smtp.sendmail("a@sender.example", ["r@shop.example"], message)
    (call,) = wait_for(lambda: webhook_receiver.calls_to("/in"), timeout=30)
    await asyncio.sleep(1.5)
    assert len(webhook_receiver.calls_to("/in")) == 1
    assert json.loads(call.body)["data"]["Subject"] == "once"
