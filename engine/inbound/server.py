"""The inbound SMTP server: where a customer's MX points, for the domains it has routes for.

It is never a relay: RCPT accepts only an address that a route of its domain matches
(``550 5.7.1`` for a domain without routes, ``550 5.1.1`` for an address none matches),
there is no AUTH, and a message is sent on only where a route says ``forward``. Replies:

* ``250 2.0.0``: every recipient's copy was recorded and its route's action stored;
* ``451 4.3.0``: the event store could not take it (the sender tries again; a retry of a
  recorded message is recognised, see ``engine.inbound.receiver``);
* ``552 5.3.4`` over ``max_message_bytes``; ``452 4.5.3`` past ``max_recipients``.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.faults import storage_fault
from adapters.smtp_in import ReceivingHooks, ReceivingServer
from engine.inbound.receiver import InboundReceiver
from engine.inbound.routes import RouteTable

log = logging.getLogger(__name__)

NO_ROUTE_FOR_DOMAIN = "550 5.7.1 Relay access denied: this server takes no mail for that domain"
NO_SUCH_USER = "550 5.1.1 No such user here"
RECEIVED = "250 2.0.0 Ok: received"
TRY_LATER = "451 4.3.0 Temporary failure, try again later"


class _Hooks(ReceivingHooks):
    def __init__(self, server: InboundServer) -> None:
        super().__init__()
        self._server = server

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        table = self._server.table
        domain = address.rpartition("@")[2]
        if "@" not in address or not await asyncio.to_thread(table.receives_for, domain):
            return NO_ROUTE_FOR_DOMAIN
        if await asyncio.to_thread(table.route_for, address) is None:
            return NO_SUCH_USER
        if len(envelope.rcpt_tos) >= self._server.max_recipients:
            limit = self._server.max_recipients
            return f"452 4.5.3 Too many recipients: at most {limit} per message"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer or "")
        return await self.finished(
            self._receive(
                envelope.mail_from or "", list(envelope.rcpt_tos),
                envelope.original_content or b"", peer, session.host_name or "",
            )
        )  # fmt: skip

    async def _receive(
        self, mail_from: str, recipients: list[str], data: bytes, peer: str, helo: str
    ) -> str:
        try:
            await self._server.receiver.receive(mail_from, recipients, data, peer, helo)
        except Exception as error:
            fault = storage_fault(error)
            if fault is None:
                log.exception("inbound: a message from %s could not be recorded", peer)
            else:
                log.warning("inbound: a message from %s waits: the event store is %s",
                            peer, fault.value)  # fmt: skip
            return TRY_LATER
        return RECEIVED

    async def handle_exception(self, error: Exception) -> str:
        log.error("inbound session failed", exc_info=error)
        return TRY_LATER


class InboundServer(ReceivingServer):
    """Where routed domains' MX points (adapters.smtp_in.ReceivingServer: its listeners)."""

    thread_name = "inbound-smtp"
    ident = "Sendstream inbound"
    server_label = "inbound"  # its sessions in /metrics

    def __init__(
        self,
        host: str,
        ports: list[int],
        table: RouteTable,
        receiver: InboundReceiver,
        max_message_bytes: int = 10_000_000,
        max_recipients: int = 50,
        *,
        hostname: str | None = None,
        idle_timeout: float = 300.0,
    ) -> None:
        super().__init__(host, ports, max_message_bytes, hostname, idle_timeout)
        self.table = table
        self.receiver = receiver
        self.max_recipients = max_recipients
        self._hooks = _Hooks(self)
