"""Direct delivery: each message to its recipient domain's own mail servers (RFC 5321 5.1).

The route comes from DNS (``adapters.dns.MailRoutes``: MX hosts in preference order, equal
ones shuffled; the domain itself when it has no MX; a verdict for a null MX or a domain
that does not exist). Hosts are tried in turn, each of its addresses in turn, while they
cannot be reached: no connection, a timeout, a 421 greeting, a failed EHLO. The first
server that answers a mail transaction decides the outcome, which names it
(``mx1.example.net[192.0.2.10]``).

Sessions are kept per server address, so domains that share MX hosts share them; each
carries up to ``max_messages_per_connection`` messages, at most
``max_connections_per_host`` are open to one address, and one idle for ``idle_seconds``
is closed. STARTTLS is used whenever a server offers it, without checking its
certificate (opportunistic TLS, RFC 7435); a server whose TLS handshake fails is asked
again in the clear. The TLS version is reported with each outcome.

Every wait is bounded: aiosmtplib times each command out (``timeout``) and refuses a reply
longer than 32 KiB, so a server that never greets, stalls or talks without end costs one
timeout and no memory, and ends as a deferral naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from dataclasses import dataclass, field

import aiosmtplib

from adapters.dns import MailRoutes
from adapters.ports import SmtpOutcome
from adapters.smtp_out.session import (
    BAD_RECIPIENT_SYNTAX,
    BAD_SENDER_SYNTAX,
    NO_ANSWER,
    SERVICE_CLOSING,
    SMTPUTF8_REQUIRED,
    describe_error,
    envelope_address,
    greet,
    mail_transaction,
    reply_outcome,
    transaction_options,
)
from domain.routing import NO_ROUTE_STATUS, NULL_MX_STATUS, refused_address

_REAP_INTERVAL = 1.0  # seconds between looks for idle sessions to close


@dataclass
class _Session:
    client: aiosmtplib.SMTP
    remote: str  # "host[address]", as outcomes name it
    tls: str  # the TLS version, or "" in the clear
    sent: int = 0
    idle_since: float = 0.0


@dataclass
class _Destination:
    """The sessions to one server address."""

    slots: asyncio.Semaphore
    idle: list[_Session] = field(default_factory=list)
    busy: int = 0


class _Unreachable(Exception):
    """This address gave no session: the next one is worth trying."""


class _TlsFailed(_Unreachable):
    """STARTTLS was offered and failed: worth a session in the clear."""


def _tls_version(client: aiosmtplib.SMTP) -> str:
    ssl_object = client.transport.get_extra_info("ssl_object") if client.transport else None
    return (ssl_object.version() or "") if ssl_object is not None else ""


class DirectTransport:
    """``MailTransport`` to the recipients' own mail servers (see the module's docstring)."""

    renders_messages = True

    def __init__(
        self,
        routes: MailRoutes,
        *,
        helo_name: str,
        port: int = 25,
        allow_private_addresses: bool = False,
        max_connections_per_host: int = 10,
        max_messages_per_connection: int = 100,
        idle_seconds: float = 5.0,
        timeout: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_connections_per_host < 1 or max_messages_per_connection < 1:
            raise ValueError("connection and message limits must be at least 1")
        self._routes = routes
        self._helo_name = helo_name
        self._port = port
        self._allow_private = allow_private_addresses
        self._max_connections = max_connections_per_host
        self._max_messages = max_messages_per_connection
        self._idle_seconds = idle_seconds
        self._timeout = timeout
        self._rng = rng or random.Random()
        self._destinations: dict[str, _Destination] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        # Opportunistic: encrypt against passive reading, accept any certificate.
        self._tls_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._tls_context.check_hostname = False
        self._tls_context.verify_mode = ssl.CERT_NONE

    def __repr__(self) -> str:
        return f"DirectTransport(port={self._port}, hosts={len(self._destinations)})"

    async def send(self, mail_from: str, recipient: str, message: bytes) -> SmtpOutcome:
        if self._closed:
            raise RuntimeError("DirectTransport is closed")
        try:
            sender = envelope_address(mail_from) if mail_from else ""
        except ValueError as exc:
            return SmtpOutcome(553, BAD_SENDER_SYNTAX, f"not sent: {exc}")
        try:
            rcpt = envelope_address(recipient)
        except ValueError as exc:
            return SmtpOutcome(553, BAD_RECIPIENT_SYNTAX, f"not sent: {exc}")
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_idle_sessions())
        route = await self._routes.route(rcpt.rpartition("@")[2])
        if route.status:
            if route.status.startswith("5"):
                # RFC 7505 3.3: 556 for a domain that takes no mail.
                code = 556 if route.status == NULL_MX_STATUS else 550
            else:
                code = 451
            return SmtpOutcome(code, route.status, route.reason)
        failures: list[str] = []
        reached_none = True
        for host in route.hosts(self._rng):
            for address in host.addresses:
                remote = f"{host.name}[{address}]"
                refusal = None if self._allow_private else refused_address(address)
                if refusal is not None:
                    failures.append(f"{remote} not tried: {refusal}")
                    continue
                reached_none = False
                try:
                    return await self._deliver(host.name, address, sender, rcpt, message)
                except _Unreachable as exc:
                    failures.append(str(exc))
        status = NO_ROUTE_STATUS if reached_none else NO_ANSWER
        return SmtpOutcome(0, status, "; ".join(failures) or "no host to try")

    async def close(self) -> None:
        """QUIT the idle sessions; sessions in use close when their send ends."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        sessions = [s for d in self._destinations.values() for s in d.idle]
        for destination in self._destinations.values():
            destination.idle.clear()
        await asyncio.gather(*(self._quit(session) for session in sessions))

    async def _deliver(
        self, host: str, address: str, sender: str, rcpt: str, message: bytes
    ) -> SmtpOutcome:
        destination = self._destinations.get(address)
        if destination is None:
            destination = _Destination(asyncio.Semaphore(self._max_connections))
            self._destinations[address] = destination
        destination.busy += 1  # waiting counts: the reaper must not drop a destination in use
        try:
            async with destination.slots:
                return await self._transaction(destination, host, address, sender, rcpt, message)
        finally:
            destination.busy -= 1

    async def _transaction(
        self,
        destination: _Destination,
        host: str,
        address: str,
        sender: str,
        rcpt: str,
        message: bytes,
    ) -> SmtpOutcome:
        retried = False
        while True:
            session = destination.idle.pop() if destination.idle else None
            reused = session is not None
            if session is None or not session.client.is_connected:
                session = await self._open(host, address)
                reused = False
            session.sent += 1
            try:
                options = transaction_options(session.client, sender, rcpt, message)
                outcome = await mail_transaction(session.client, sender, rcpt, message, options)
            except aiosmtplib.SMTPServerDisconnected as exc:
                session.client.close()
                if reused and not retried:
                    retried = True  # most likely a session the server closed while idle
                    continue
                return self._outcome(session, 0, NO_ANSWER, describe_error(exc))
            except aiosmtplib.SMTPResponseException as exc:
                session.client.close()
                if exc.code == SERVICE_CLOSING and reused and not retried:
                    retried = True
                    continue
                if exc.code < 200:  # aiosmtplib's own code for an unreadable reply
                    return self._outcome(session, 0, NO_ANSWER, describe_error(exc))
                return self._outcome(session, exc.code, "", exc.message)
            except aiosmtplib.SMTPNotSupported as exc:
                self._keep_or_quit(destination, session)
                return SmtpOutcome(
                    553, SMTPUTF8_REQUIRED, f"not sent: {exc}", session.remote, session.tls
                )
            except (aiosmtplib.SMTPException, OSError) as exc:
                session.client.close()  # a timeout mid-command: the session's state is unknown
                return self._outcome(session, 0, NO_ANSWER, describe_error(exc))
            self._keep_or_quit(destination, session)
            return SmtpOutcome(
                outcome.code, outcome.enhanced_status, outcome.text,
                remote=session.remote, tls=session.tls,
            )  # fmt: skip

    def _outcome(self, session: _Session, code: int, status: str, text: str) -> SmtpOutcome:
        if code:
            reply = reply_outcome(code, text)
            return SmtpOutcome(code, reply.enhanced_status, text, session.remote, session.tls)
        return SmtpOutcome(0, status, f"{session.remote}: {text}", session.remote, session.tls)

    def _keep_or_quit(self, destination: _Destination, session: _Session) -> None:
        if session.client.is_connected and session.sent < self._max_messages and not self._closed:
            session.idle_since = time.monotonic()
            destination.idle.append(session)
        else:
            asyncio.get_running_loop().create_task(self._quit(session))

    async def _open(self, host: str, address: str) -> _Session:
        remote = f"{host}[{address}]"
        try:
            return await self._connect(host, address, remote, use_tls=True)
        except _TlsFailed:
            # Opportunistic TLS must not cost the mail: the same server, in the clear.
            return await self._connect(host, address, remote, use_tls=False)

    async def _connect(self, host: str, address: str, remote: str, *, use_tls: bool) -> _Session:
        client = aiosmtplib.SMTP(
            hostname=address,
            port=self._port,
            timeout=self._timeout,
            local_hostname=self._helo_name,
            start_tls=False,
            use_tls=False,
            tls_context=self._tls_context,
        )
        step = "connect"
        try:
            await client.connect()
            step = "EHLO"
            await greet(client)
            tls = ""
            if use_tls and client.supports_extension("starttls"):
                step = "STARTTLS"
                try:
                    await client.starttls(server_hostname=host, tls_context=self._tls_context)
                    await greet(client)  # RFC 3207 4.2: forget what was said in the clear
                except (aiosmtplib.SMTPException, OSError) as exc:
                    client.close()
                    raise _TlsFailed(f"{remote}: STARTTLS failed: {describe_error(exc)}") from exc
                tls = _tls_version(client)
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise _Unreachable(f"{remote}: {step} failed: {describe_error(exc)}") from exc
        return _Session(client, remote, tls)

    async def _quit(self, session: _Session) -> None:
        if session.client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await session.client.quit(timeout=min(self._timeout, 5.0))
        session.client.close()

    async def _reap_idle_sessions(self) -> None:
        while True:
            await asyncio.sleep(_REAP_INTERVAL)
            cutoff = time.monotonic() - self._idle_seconds
            for address, destination in list(self._destinations.items()):
                stale = [s for s in destination.idle if s.idle_since <= cutoff]
                if stale:
                    destination.idle = [s for s in destination.idle if s.idle_since > cutoff]
                    for session in stale:
                        asyncio.get_running_loop().create_task(self._quit(session))
                if not destination.idle and not destination.busy:
                    del self._destinations[address]
