"""A tracked message end to end: its pixel, a click, the one-click unsubscribe and a DSN for its
return path, each recorded on the Message and listed by the events API."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx

from domain.message import MessageStatus
from domain.suppression import BOUNCE, UNSUBSCRIBE
from engine.runtime.composition import Engine
from tests.integration.conftest import wait_for
from tests.integration.receiver import Receiver

Client = Callable[[Engine], httpx.AsyncClient]

DSN = """From: MAILER-DAEMON@mx.example.org
To: {return_path}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

The mail could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

--B--
"""


async def test_opens_clicks_unsubscribes_and_bounces_come_back_to_the_message(
    make_engine: Callable[..., Engine], api_client: Client, receiver: Receiver
) -> None:
    engine = make_engine(SMTP_RELAY_URL=receiver.url, BOUNCE_SMTP_PORTS="0")
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")

    async def command(name: str, **params: Any) -> dict[str, Any]:
        response = await client.post(
            "/api.php", json={"APIKey": keys["AccountAPIKey"], "Command": name, **params}
        )
        body: dict[str, Any] = response.json()
        assert body["Success"] is True, body
        return body

    await command(
        "EmailGateway.UpdateDomain",
        DomainID=keys["DomainID"],
        OpenTracking="1",
        LinkTracking="1",
        UnsubscribeLink="1",
    )

    async def send(to: str) -> UUID:
        response = await client.post(
            "/api/v1/email",
            headers={"Authorization": f"Bearer {keys['SenderAPIKey']}"},
            json={
                "Subject": "Tracked",
                "ContentType": "html",
                "HtmlContent": '<html><body><p><a href="https://shop.example/sale?a=1&amp;b=2">'
                "Sale</a></p></body></html>",
                "From": {"email": "news@shop.example", "name": "Shop"},
                "To": [{"email": to, "name": ""}],
            },
        )
        assert response.status_code == 200, response.text
        return engine.app.submission(UUID(response.json()["MessageID"])).message_ids[0]

    message_id = await send("reader@example.org")
    wait_for(lambda: receiver.received, timeout=30)
    received = receiver.received[0]
    html = received.message.get_body(("html",))
    assert html is not None
    body = html.get_content()
    pixel = re.search(r'src="http://[^"]+(/t/o/[^"]+\.gif)"', body)
    click = re.search(r'href="http://[^"]+(/t/c/[^"]+)"', body)
    assert pixel and click, body
    unsubscribe = re.search(r"<http://[^>]+(/t/u/[^>]+)>", received.message["List-Unsubscribe"])
    assert unsubscribe is not None
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return_path = received.mail_from
    assert return_path.startswith("b-") and return_path.endswith("@sendstream.localhost")

    reader = {"user-agent": "Mozilla/5.0 (Macintosh) AppleWebKit Safari/605.1.15"}
    opened = await client.get(pixel.group(1), headers=reader)
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    clicked = await client.get(click.group(1), headers=reader)
    assert clicked.status_code == 302
    assert clicked.headers["location"] == "https://shop.example/sale?a=1&b=2"
    forged = click.group(1)[:-2] + ("AA" if not click.group(1).endswith("AA") else "BB")
    assert (await client.get(forged)).status_code == 404
    engine.feedback.flush()  # hits are recorded in batches, off the event loop
    message = engine.app.message(message_id)
    assert (message.opens, message.clicks) == (1, 1)

    one_click = await client.post(
        unsubscribe.group(1), content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert one_click.status_code == 200
    assert engine.app.message(message_id).unsubscribed
    suppressions = engine.app.suppression_list(UUID(keys["AccountID"]))
    assert suppressions is not None and suppressions.reason_for("reader@example.org") == UNSUBSCRIBE

    # The events API shows what came back.
    async def event_types() -> set[str]:
        response = await client.get(
            "/api/v1/events",
            params={"RetrieveCount": 100},
            headers={"Authorization": f"Bearer {keys['SenderAPIKey']}"},
        )
        return {e["EventType"] for e in response.json()["Events"]}

    for _ in range(100):
        if {"open", "click", "unsubscribe"} <= await event_types():
            break
        await asyncio.sleep(0.1)
    assert {"open", "click", "unsubscribe"} <= await event_types()

    # A DSN for a second message's return path bounces it and suppresses the address.
    bounced_id = await send("gone@example.org")
    wait_for(lambda: engine.app.message(bounced_id).status is MessageStatus.DELIVERED)
    copy = next(r for r in receiver.received if r.recipients == ["gone@example.org"])
    assert engine.bounce_intake is not None
    port = engine.bounce_intake.ports[0]
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail(
            "", [copy.mail_from],
            DSN.format(return_path=copy.mail_from, recipient="gone@example.org").encode(),
        )  # fmt: skip
    wait_for(lambda: engine.app.message(bounced_id).status is MessageStatus.BOUNCED, timeout=30)
    message = engine.app.message(bounced_id)
    assert (message.bounce_kind, message.last_reply["enhanced_status"]) == ("hard", "5.1.1")  # type: ignore[index]
    suppressions = engine.app.suppression_list(UUID(keys["AccountID"]))
    assert suppressions is not None and suppressions.reason_for("gone@example.org") == BOUNCE
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        smtp.mail("")
        code, _ = smtp.rcpt("someone@example.org")  # never a relay
        assert code == 550

    # The List-Unsubscribe mailto: of a third message, as an older mail client uses it.
    leaving_id = await send("leaving@example.org")
    wait_for(lambda: engine.app.message(leaving_id).status is MessageStatus.DELIVERED)
    copy = next(r for r in receiver.received if r.recipients == ["leaving@example.org"])
    mailto = re.search(r"<mailto:([^?>]+)", copy.message["List-Unsubscribe"])
    assert mailto is not None and mailto.group(1).startswith("u-")
    assert mailto.group(1) != copy.mail_from
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail(
            "leaving@example.org", [mailto.group(1)],
            b"From: leaving@example.org\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n",
        )  # fmt: skip
    message = engine.app.message(leaving_id)
    assert message.unsubscribed
    suppressions = engine.app.suppression_list(UUID(keys["AccountID"]))
    assert suppressions is not None
    assert suppressions.reason_for("leaving@example.org") == UNSUBSCRIBE
