"""SMTP in (aiosmtpd): listening sockets, the SMTP dialogue, STARTTLS, implicit TLS and AUTH.

What to do with a login, a sender, a recipient or a message is the caller's
business (a ``SubmissionHandler``); this module only speaks the protocol. All
listeners share one asyncio loop, run in a thread of its own, so the server
never blocks a caller's loop and stops without leaving threads or sockets.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, AnyStr, Generic, Protocol, TypeVar, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

from adapters.loop_thread import LoopThreadServer
from adapters.metrics import SMTP_SESSIONS, SMTP_SESSIONS_CLOSED

log = logging.getLogger(__name__)

IdentityT = TypeVar("IdentityT")


class SubmissionHandler(Protocol[IdentityT]):
    """The server's questions. A returned reply is a complete SMTP reply line; None means yes."""

    async def authenticate(self, username: str, password: str) -> IdentityT | None:
        """The identity behind a login, or None when the credentials are not valid."""
        ...

    async def mail_from(self, identity: IdentityT, address: str) -> str | None: ...

    async def rcpt_to(self, identity: IdentityT, address: str, accepted: int) -> str | None:
        """``accepted``: how many recipients this transaction already has."""
        ...

    async def message(
        self, identity: IdentityT, mail_from: str, recipients: list[str], data: bytes
    ) -> str:
        """The reply to the end of DATA (``data`` as received, dot-stuffing undone)."""
        ...


@dataclass(frozen=True)
class Listener:
    port: int
    implicit_tls: bool


class _QuietSession(Session):
    # aiosmtpd 1.4 assigns the deprecated ``login_data`` property on every successful
    # AUTH, and the property logs a warning each time; a plain attribute keeps logs clean.
    login_data: Any = None


def _capture(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """aiosmtpd's authenticator hook. It is synchronous, and an Argon2 check in it would
    stall every connection of the loop for its whole duration; so it only hands the parsed
    credentials on, and ``_SubmissionSMTP._verified`` awaits the real check."""
    return AuthResult(success=False, handled=False, auth_data=auth_data)


class _Hooks(Generic[IdentityT]):
    """aiosmtpd's ``handle_*`` hooks, translated into ``SubmissionHandler`` calls."""

    def __init__(self, handler: SubmissionHandler[IdentityT]) -> None:
        self.handler = handler
        # Messages being accepted, which stop() lets finish: the client would otherwise
        # send again a message that was saved but never answered.
        self.in_flight: set[asyncio.Future[str]] = set()

    @staticmethod
    def _identity(session: Session) -> IdentityT:
        """What ``authenticate`` returned for this session (MAIL needs it; RCPT needs MAIL)."""
        return cast(IdentityT, session.auth_data)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        refusal = await self.handler.mail_from(self._identity(session), address)
        if refusal is not None:
            return refusal
        # A hook that answers takes over what aiosmtpd would otherwise record itself.
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        identity = self._identity(session)
        refusal = await self.handler.rcpt_to(identity, address, len(envelope.rcpt_tos))
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None and envelope.original_content is not None
        accepting = asyncio.ensure_future(
            self.handler.message(
                self._identity(session),
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
            )
        )
        self.in_flight.add(accepting)
        accepting.add_done_callback(self.in_flight.discard)
        return await accepting

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default reply names the exception and its text; neither is the
        # client's business, and a failure of ours is worth a retry.
        if isinstance(error, TLSSetupException):
            # A client that gives up on the handshake: aiosmtpd closes the connection.
            log.info("TLS handshake failed: %s", error.__cause__)
        else:
            log.error("SMTP session failed", exc_info=error)
        return "451 4.3.0 Temporary failure, try again later"


class _SubmissionSMTP(SMTP):
    def __init__(
        self,
        hooks: _Hooks[Any],
        server: SmtpServer[Any],
        *,
        implicit_tls: bool,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        tls_context = server.tls_context
        super().__init__(
            hooks,
            loop=loop,
            hostname=server.hostname,
            ident="Sendstream ESMTP",
            data_size_limit=server.data_size_limit,
            # STARTTLS over a connection that is TLS already is meaningless.
            tls_context=None if implicit_tls else tls_context,
            # With a certificate configured, passwords never cross the wire in the clear:
            # AUTH waits for STARTTLS. Without one there is no way to encrypt, so AUTH is
            # allowed in the clear (loopback, private networks). aiosmtpd counts only its own
            # STARTTLS as TLS, so on an implicit-TLS port, encrypted from the first byte,
            # the requirement must be off.
            auth_require_tls=tls_context is not None and not implicit_tls,
            authenticator=_capture,
            timeout=server.idle_timeout,
        )
        self._hooks = hooks
        self._server = server
        self._auth_failures = 0

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server.connections.add(self)
        SMTP_SESSIONS.labels(self._server.server_label).inc()
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._server.connections.discard(self)
        SMTP_SESSIONS_CLOSED.labels(self._server.server_label).inc()
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        # aiosmtpd enforces the size limit itself (at MAIL FROM when SIZE= is declared, and
        # while DATA streams in, without buffering the excess) but words the refusal its own
        # way; rewriting its reply here is smaller than copying either command.
        if isinstance(status, str) and status.startswith("552 Error"):
            await super().push(self._server.size_exceeded_reply)
            return
        await super().push(status)

    async def auth_PLAIN(self, _: SMTP, args: list[str]) -> AuthResult:
        return await self._verified(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: SMTP, args: list[str]) -> AuthResult:
        return await self._verified(await super().auth_LOGIN(_, args))

    async def _verified(self, parsed: AuthResult) -> AuthResult:
        """The outcome of AUTH once the handler has checked what aiosmtpd parsed."""
        credentials = parsed.auth_data
        if not isinstance(credentials, LoginPassword):
            return parsed  # malformed or aborted: aiosmtpd has answered already
        identity = None
        try:
            username = credentials.login.decode("utf-8")
            password = credentials.password.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            identity = await self._hooks.handler.authenticate(username, password)
        if identity is not None:
            return AuthResult(success=True, auth_data=identity)
        self._auth_failures += 1
        if self._auth_failures >= self._server.max_auth_failures:
            # Each guess costs us a password hash; a connection gets only a few.
            await super().push("421 4.7.0 Too many failed authentication attempts")
            if self.transport is not None:
                self.transport.close()
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)  # 535 5.7.8 from aiosmtpd


class SmtpServer(LoopThreadServer, Generic[IdentityT]):
    thread_name = "smtp-in"

    """SMTP listeners on ``host``: ``ports`` in the clear (offering STARTTLS when a TLS
    context is given) and ``tls_ports`` with implicit TLS (which need one). Port 0 binds
    a free port; ``listeners`` tells which ones were bound. ``server_label`` names its
    sessions in ``/metrics`` (``sendstream_smtp_sessions_total{server}``)."""

    def __init__(
        self,
        handler: SubmissionHandler[IdentityT],
        *,
        host: str,
        ports: Sequence[int],
        tls_ports: Sequence[int] = (),
        tls_context: ssl.SSLContext | None = None,
        hostname: str,
        data_size_limit: int,
        size_exceeded_reply: str = "552 5.3.4 Message size exceeds fixed maximum message size",
        max_auth_failures: int = 3,
        idle_timeout: float = 300.0,
        server_label: str,
    ) -> None:
        super().__init__()
        if tls_ports and tls_context is None:
            raise ValueError("implicit-TLS ports need a TLS context (certificate and key)")
        self.hostname = hostname
        self.tls_context = tls_context
        self.data_size_limit = data_size_limit
        self.size_exceeded_reply = size_exceeded_reply
        self.max_auth_failures = max_auth_failures
        self.idle_timeout = idle_timeout
        self.server_label = server_label
        self.connections: set[_SubmissionSMTP] = set()
        self._hooks = _Hooks(handler)
        self._host = host
        self._wanted = [Listener(p, False) for p in ports] + [Listener(p, True) for p in tls_ports]
        self._listeners: list[Listener] = []
        self._servers: list[asyncio.Server] = []

    @property
    def listeners(self) -> list[Listener]:
        return list(self._listeners)

    def _stopped(self) -> None:
        self._listeners = []

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        for wanted in self._wanted:
            server = await loop.create_server(
                self._protocol_factory(wanted.implicit_tls, loop),
                host=self._host,
                port=wanted.port,
                ssl=self.tls_context if wanted.implicit_tls else None,
            )
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self._listeners.append(Listener(port, wanted.implicit_tls))

    def _protocol_factory(
        self, implicit_tls: bool, loop: asyncio.AbstractEventLoop
    ) -> Callable[[], _SubmissionSMTP]:
        return lambda: _SubmissionSMTP(self._hooks, self, implicit_tls=implicit_tls, loop=loop)

    def _in_flight(self) -> set[asyncio.Future[str]]:
        return self._hooks.in_flight


TOO_BIG = "552 5.3.4 Message too big for this system"


class ReceivingHooks:
    """aiosmtpd's hooks that servers of mail addressed to us share: any sender is taken
    (nothing is ever sent to it), and replies in progress are kept for stopping to let
    them finish (the sender would otherwise send again what was recorded but not
    answered)."""

    def __init__(self) -> None:
        self.in_flight: set[asyncio.Future[str]] = set()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def finished(self, reply: Awaitable[str]) -> str:
        """``reply``, awaited where stopping can wait for it."""
        receiving = asyncio.ensure_future(reply)
        self.in_flight.add(receiving)
        receiving.add_done_callback(self.in_flight.discard)
        return await receiving


class Receiving(Protocol):
    """A server of mail addressed to us (the bounce intake, inbound mail)."""

    hostname: str
    max_message_bytes: int
    idle_timeout: float
    connections: set[Any]
    server_label: str


class ReceivingSMTP(SMTP):
    """SMTP for mail addressed to us: no AUTH at all (nobody logs in, nothing is relayed),
    the size limit's refusal worded with its status code, connections kept so that
    stopping can wait for them, and counted (``/metrics``)."""

    def __init__(
        self, hooks: Any, owner: Receiving, loop: asyncio.AbstractEventLoop, ident: str
    ) -> None:
        super().__init__(
            hooks,
            loop=loop,
            hostname=owner.hostname,
            ident=ident,
            data_size_limit=owner.max_message_bytes,
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
            timeout=owner.idle_timeout,
        )
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._owner.connections.add(self)
        SMTP_SESSIONS.labels(self._owner.server_label).inc()
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner.connections.discard(self)
        SMTP_SESSIONS_CLOSED.labels(self._owner.server_label).inc()
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        # aiosmtpd enforces the size limit itself (at MAIL with SIZE=, and while DATA
        # streams in, without buffering the excess) but words it without a status code.
        if isinstance(status, str) and status.startswith("552 Error"):
            await super().push(TOO_BIG)
            return
        await super().push(status)


class ReceivingServer(LoopThreadServer):
    """A server of mail addressed to us on ``host``: one listener per port in ``ports``
    (0 binds a free one; after ``start()``, ``ports`` holds those bound). A subclass sets
    ``_hooks`` (its ``ReceivingHooks``), ``ident`` and ``server_label`` (its sessions' name
    in ``/metrics``: ``sendstream_smtp_sessions_total{server}``)."""

    ident = "Sendstream"
    server_label = "receiving"
    _hooks: ReceivingHooks

    def __init__(
        self,
        host: str,
        ports: Sequence[int],
        max_message_bytes: int,
        hostname: str | None,
        idle_timeout: float,
    ) -> None:
        super().__init__()
        self.host = host
        self.ports: list[int] = list(ports)
        self.max_message_bytes = max_message_bytes
        # socket.getfqdn(), aiosmtpd's default, can wait seconds on a DNS lookup.
        self.hostname = hostname or socket.gethostname()
        self.idle_timeout = idle_timeout
        self.connections: set[Any] = set()
        self._wanted = list(ports)

    def _stopped(self) -> None:
        self.ports = list(self._wanted)

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        for port in self._wanted:
            self._servers.append(
                await loop.create_server(
                    lambda: ReceivingSMTP(self._hooks, self, loop, self.ident),
                    host=self.host,
                    port=port,
                )
            )
        self.ports = [server.sockets[0].getsockname()[1] for server in self._servers]

    def _in_flight(self) -> set[asyncio.Future[str]]:
        return self._hooks.in_flight
