"""What a message received for a routed domain becomes: for each recipient, an
``InboundMessage`` (the envelope, the sender's SPF/DKIM/DMARC results, the message), then
the route's action: a signed call to its URL (the webhook machinery's store, retries and
attempt log), a copy sent on to its addresses, or nothing more.

Retries by the sending server are safe: a copy's id is derived from the message's bytes
and the recipient, so a message received again after a lost reply is recognised, its call
is stored once (the store ignores a job it has), and its forward is sent once (an
idempotency key of the copy).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import orjson
from eventsourcing.persistence import IntegrityError

from adapters.inbound_mail import parse_inbound
from adapters.mail_auth import AuthResults, check_sender
from adapters.metrics import INBOUND_MESSAGES
from adapters.webhook_store import DeliveryJob, WebhookStore
from domain.content import Address, Attachment, EmailContent
from domain.inbound import INBOUND_EVENT, InboundMessage, RouteAction
from engine.application import Sendstream
from engine.idempotency import IdempotentCall
from engine.inbound.routes import RouteTable, RouteView
from engine.sending.service import SendingService

log = logging.getLogger(__name__)

FORWARD_ENDPOINT = "inbound forward"
_FORWARDER = "forwarding"  # the local part forwarded copies come from


def copy_id(data: bytes, recipient: str) -> UUID:
    digest = hashlib.sha256(data).hexdigest()
    return uuid5(NAMESPACE_URL, f"sendstream:inbound:{digest}:{recipient.lower()}")


class InboundReceiver:
    def __init__(
        self,
        app: Sendstream,
        table: RouteTable,
        webhook_store: Callable[[], WebhookStore],
        sending: SendingService,
        resolver: str = "",
        authserv_id: str = "sendstream",
    ) -> None:
        self._app = app
        self._table = table
        self._webhook_store = webhook_store
        self._sending = sending
        self._resolver = resolver
        self._authserv_id = authserv_id

    async def receive(
        self, mail_from: str, recipients: list[str], data: bytes, client_address: str, helo: str
    ) -> None:
        """Record and act on one message for ``recipients`` (each accepted at RCPT).
        Raises if anything could not be stored: the SMTP reply is then 451."""
        parsed = await asyncio.to_thread(parse_inbound, data)
        auth = await asyncio.to_thread(
            check_sender, data, client_ip=client_address, mail_from=mail_from, helo=helo,
            resolver=self._resolver,
        )  # fmt: skip
        now = datetime.now(UTC)
        for recipient in recipients:
            route = await asyncio.to_thread(self._table.route_for, recipient)
            if route is None:
                log.info("inbound: the route for %s is gone since RCPT; not kept", recipient)
                continue
            copy = InboundMessage(
                id=copy_id(data, recipient), account_id=route.account_id, route_id=route.id,
                action=route.action.value, mail_from=mail_from, recipient=recipient,
                client_address=client_address, helo=helo, size=len(data),
                subject=str(parsed.get("Subject", ""))[:998],
                header_message_id=str(parsed.get("MessageId", ""))[:998],
                authentication=auth.to_dict(), raw_base64=base64.b64encode(data).decode(),
                received_at=now,
            )  # fmt: skip
            try:
                await asyncio.to_thread(self._app.save, copy)
                INBOUND_MESSAGES.labels(route.action.value).inc()
            except IntegrityError:
                log.info("inbound: %s for %s received again; acting once", copy.id, recipient)
            if route.action is RouteAction.POST and route.webhook_id is not None:
                payload = self._payload(copy, route, parsed, auth)
                await asyncio.to_thread(self._call, route.webhook_id, copy.id, payload, now)
            elif route.action is RouteAction.FORWARD:
                await self._forward(route, copy.id, parsed, mail_from, now)

    def _payload(
        self, copy: InboundMessage, route: RouteView, parsed: dict[str, Any], auth: AuthResults
    ) -> bytes:
        data = {
            "InboundID": str(copy.id),
            "RouteID": str(route.id),
            "ReceivedAt": copy.received_at.isoformat(),
            "Envelope": {
                "MailFrom": copy.mail_from,
                "Recipient": copy.recipient,
                "ClientAddress": copy.client_address,
                "Helo": copy.helo,
                "Size": copy.size,
            },
            "Authentication": auth.to_dict(),
            "AuthenticationResults": auth.authentication_results_header(self._authserv_id),
            **parsed,
        }
        return orjson.dumps(
            {"type": INBOUND_EVENT, "timestamp": copy.received_at.isoformat(), "data": data}
        )

    def _call(self, webhook_id: UUID, copy_id: UUID, payload: bytes, now: datetime) -> None:
        job = DeliveryJob(
            webhook_id=webhook_id, event_id=copy_id, message_id=copy_id, position=0,
            occurred_at=now, payload=payload, attempt=0, due_at=now,
        )  # fmt: skip
        self._webhook_store().enqueue([job], None)

    async def _forward(
        self, route: RouteView, copy_id: UUID, parsed: dict[str, Any], mail_from: str,
        now: datetime,
    ) -> None:  # fmt: skip
        """The message sent on from the receiving domain (its own From would fail its
        domain's DMARC here): its sender becomes the Reply-To and the display name."""
        sender = await asyncio.to_thread(
            self._app.sender_context_for, route.account_id, route.domain_id, route.id
        )
        call = IdempotentCall(
            route.account_id, f"inbound-{copy_id.hex}", FORWARD_ENDPOINT, {"copy": str(copy_id)}
        )
        if await asyncio.to_thread(call.earlier_answer, self._app, now) is not None:
            return
        original = str(parsed.get("From") or mail_from or "unknown sender")
        reply_to = _address_in(original) or mail_from
        content = EmailContent(
            subject=str(parsed.get("Subject") or "(no subject)")[:998],
            sender=Address(
                f"{_FORWARDER}@{sender.domain_name}", f"{original[:200]} via {sender.domain_name}"
            ),
            to=tuple(Address(address) for address in route.forward_to),
            reply_to=(Address(reply_to),) if reply_to else (),
            html=parsed.get("Html") or None,
            plain=parsed.get("Text") or (None if parsed.get("Html") else " "),
            attachments=tuple(
                Attachment(a["Filename"] or "attachment", a["ContentType"], a["ContentBase64"])
                for a in parsed.get("Attachments", ())
            ),
        )  # fmt: skip
        with contextlib.suppress(IntegrityError):  # the same copy forwarded by a retry
            await self._sending.accept(sender, content, now, source="inbound", idempotent=call)


def _address_in(text: str) -> str:
    from email.utils import parseaddr

    return parseaddr(text)[1]
