"""Relayed delivery: hand finished messages to another MTA over a few persistent connections.

Opening an SMTP session costs a TCP handshake, a greeting, EHLO, often
STARTTLS and AUTH: several round trips and a TLS handshake per message if
done naively. The relay transport keeps a bounded pool of authenticated
sessions and runs one mail transaction after another on each.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib

from adapters.ports import SmtpOutcome
from adapters.smtp_out.session import (
    NO_ANSWER,
    SECURITY_SETUP_FAILED,
    SERVICE_CLOSING,
    SMTPUTF8_REQUIRED,
    checked_envelope,
    describe_error,
    greet,
    mail_transaction,
    no_answer,
    reply_outcome,
    transaction_options,
)
from domain.routing import SourceAddress


@dataclass(frozen=True)
class RelaySettings:
    """Where and how to reach the relay, parsed from ``SMTP_RELAY_URL``.

    ``smtp://[user:pass@]host[:port][?starttls=opportunistic|required|never][&verify=false]``
    ``[&helo=name]``, or ``smtps://…`` for implicit TLS (port 465 by default).
    """

    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    implicit_tls: bool = False
    starttls: str = "opportunistic"  # "opportunistic", "required" or "never"
    verify_certificates: bool = True
    helo_name: str | None = None

    @classmethod
    def from_url(cls, url: str) -> RelaySettings:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"relay URL must start with smtp:// or smtps://, not {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("relay URL has no host")
        implicit_tls = parts.scheme == "smtps"
        options = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
        unknown = set(options) - {"starttls", "verify", "helo"}
        if unknown:
            # A misspelt option must not silently fall back to a weaker default.
            raise ValueError(f"unknown relay URL option(s): {', '.join(sorted(unknown))}")
        starttls = options.get("starttls", "never" if implicit_tls else "opportunistic")
        if starttls not in ("opportunistic", "required", "never"):
            raise ValueError(f"starttls must be opportunistic, required or never: {starttls!r}")
        if implicit_tls and starttls != "never":
            raise ValueError("smtps:// already encrypts; starttls does not apply")
        verify = options.get("verify", "true").lower()
        if verify not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"verify must be true or false: {verify!r}")
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if implicit_tls else 25),
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            implicit_tls=implicit_tls,
            starttls=starttls,
            verify_certificates=verify in ("true", "1", "yes"),
            helo_name=options.get("helo") or None,
        )

    def __repr__(self) -> str:
        # The password must not reach logs through a repr.
        user = f"{self.username}:***@" if self.username is not None else ""
        scheme = "smtps" if self.implicit_tls else "smtp"
        where = f"{scheme}://{user}{self.hostname}:{self.port}"
        return f"RelaySettings({where}, starttls={self.starttls})"


@dataclass
class _Slot:
    """One place in the pool: a session (or none yet) and how many messages it carried."""

    client: aiosmtplib.SMTP | None = None
    sent: int = 0


class _SetupFailed(Exception):
    def __init__(self, outcome: SmtpOutcome, *, disconnected: bool) -> None:
        super().__init__(outcome.text)
        self.outcome = outcome
        self.disconnected = disconnected


class SmtpRelayTransport:
    """``MailTransport`` that relays every message through one SMTP server.

    Up to ``pool_size`` sessions are opened on demand and shared by concurrent
    ``send`` calls; each carries up to ``max_messages_per_connection`` messages
    before it is replaced, so a relay's per-session limits and slow leaks on
    long sessions are never reached. A session the relay dropped while idle is
    replaced transparently (once per message) before anything is reported.

    ``send`` reports instead of raising: the relay's own reply for MAIL, RCPT
    and DATA; code 0 when no usable session could be had (network, timeout,
    TLS or AUTH trouble), which the engine treats as "try again later"
    because it says nothing about the recipient.

    With ``starttls=opportunistic`` (the default for ``smtp://``) and
    credentials, AUTH goes in clear text if the relay offers no STARTTLS:
    use ``starttls=required`` or ``smtps://`` when that matters.
    """

    renders_messages = True

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        max_messages_per_connection: int = 1000,
        timeout: float = 60.0,
    ) -> None:
        if pool_size < 1 or max_messages_per_connection < 1:
            raise ValueError("pool_size and max_messages_per_connection must be at least 1")
        self.settings = RelaySettings.from_url(url)
        self._pool_size = pool_size
        self._max_messages = max_messages_per_connection
        self._timeout = timeout
        self._tls_context = self._make_tls_context()
        self._helo_name = self.settings.helo_name
        # Last in, first out: the warmest session is reused first and
        # sequential traffic keeps a single session instead of cycling all.
        self._idle: asyncio.LifoQueue[_Slot] = asyncio.LifoQueue()
        for _ in range(pool_size):
            self._idle.put_nowait(_Slot())
        self._closed = False

    def __repr__(self) -> str:
        return f"SmtpRelayTransport({self.settings!r}, pool_size={self._pool_size})"

    async def send(
        self,
        mail_from: str,
        recipient: str,
        message: bytes,
        sources: tuple[SourceAddress, ...] | None = None,
    ) -> SmtpOutcome:
        """One mail transaction: ``MAIL FROM:<mail_from>``, ``RCPT TO:<recipient>``, DATA.

        ``mail_from`` may be empty (the null reverse-path of bounces). An
        address that cannot go on an SMTP command line is never sent and comes
        back as a permanent 553 (5.1.7 sender, 5.1.3 recipient): it would fail
        the same way on every attempt. Raises ``RuntimeError`` after ``close``.
        ``sources`` are direct delivery's: the relay chooses its own way out.
        """
        if self._closed:
            raise RuntimeError("SmtpRelayTransport is closed")
        checked = checked_envelope(mail_from, recipient)
        if isinstance(checked, SmtpOutcome):
            return checked
        sender, rcpt = checked
        slot = await self._idle.get()
        try:
            return await self._deliver(slot, sender, rcpt, message)
        except BaseException:
            # Cancelled mid-transaction: the session's state is unknown.
            self._discard(slot)
            raise
        finally:
            self._idle.put_nowait(slot)

    async def close(self) -> None:
        """QUIT every session; waits for sends in progress to finish first."""
        if self._closed:
            return
        self._closed = True
        slots = [await self._idle.get() for _ in range(self._pool_size)]
        await asyncio.gather(*(self._retire(slot) for slot in slots))
        for slot in slots:
            self._idle.put_nowait(slot)

    async def _deliver(self, slot: _Slot, sender: str, rcpt: str, message: bytes) -> SmtpOutcome:
        retried = False
        while True:
            reused = slot.client is not None and slot.client.is_connected
            try:
                client = await self._session(slot)
            except _SetupFailed as failure:
                if failure.disconnected and not retried:
                    retried = True
                    continue
                return failure.outcome
            options = transaction_options(client, sender, rcpt, message)
            # Refused transactions count too: the limit is about session age.
            slot.sent += 1
            try:
                return await mail_transaction(client, sender, rcpt, message, options)
            except aiosmtplib.SMTPServerDisconnected as exc:
                # Usually an idle session the relay closed. If it dropped after
                # the final dot instead, the retry may deliver twice: SMTP is
                # at-least-once, and a lost message is the worse outcome.
                self._discard(slot)
                if not retried:
                    retried = True
                    continue
                return no_answer(exc)
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == SERVICE_CLOSING:
                    # aiosmtplib has closed the session already. On a reused
                    # session this is usually an idle timeout announced late.
                    self._discard(slot)
                    if reused and not retried:
                        retried = True
                        continue
                return reply_outcome(exc.code, exc.message)
            except aiosmtplib.SMTPNotSupported as exc:
                # sendmail raises this only for SMTPUTF8 before sending MAIL;
                # the relay cannot ever carry this address, so it is final.
                return SmtpOutcome(553, SMTPUTF8_REQUIRED, f"not sent: {exc}")
            except (aiosmtplib.SMTPException, OSError) as exc:
                # Timeouts included: the session may be mid-command, so it goes.
                self._discard(slot)
                return no_answer(exc)

    async def _session(self, slot: _Slot) -> aiosmtplib.SMTP:
        if slot.client is not None and (
            not slot.client.is_connected or slot.sent >= self._max_messages
        ):
            await self._retire(slot)
        if slot.client is None:
            slot.client = await self._open()
            slot.sent = 0
        return slot.client

    async def _open(self) -> aiosmtplib.SMTP:
        """Connect, EHLO, STARTTLS and AUTH as configured; ``_SetupFailed`` names the step."""
        settings = self.settings
        if self._helo_name is None:
            # getfqdn may block on DNS; aiosmtplib would call it for every session.
            self._helo_name = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=settings.hostname,
            port=settings.port,
            use_tls=settings.implicit_tls,
            start_tls=False,  # done below, so a failure is attributed to its step
            tls_context=self._tls_context,
            timeout=self._timeout,
            local_hostname=self._helo_name,
        )
        step = "connect"
        try:
            await client.connect()
            step = "EHLO"
            await greet(client)
            if not settings.implicit_tls and (
                settings.starttls == "required"
                or (settings.starttls == "opportunistic" and client.supports_extension("starttls"))
            ):
                step = "STARTTLS"
                await client.starttls()
                await greet(client)  # RFC 3207 4.2: forget pre-TLS capabilities
            if settings.username is not None:
                step = "AUTH"
                await client.login(settings.username, settings.password or "")
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            security = step in ("STARTTLS", "AUTH") or isinstance(exc, ssl.SSLError)
            status = SECURITY_SETUP_FAILED if security else NO_ANSWER
            text = f"{step} with {settings.hostname}:{settings.port} failed: {describe_error(exc)}"
            raise _SetupFailed(
                SmtpOutcome(0, status, text),
                disconnected=isinstance(exc, aiosmtplib.SMTPServerDisconnected),
            ) from exc
        return client

    async def _retire(self, slot: _Slot) -> None:
        client, slot.client, slot.sent = slot.client, None, 0
        if client is None:
            return
        if client.is_connected:
            # The session is being thrown away either way.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit(timeout=min(self._timeout, 10.0))
        client.close()

    def _discard(self, slot: _Slot) -> None:
        if slot.client is not None:
            slot.client.close()
        slot.client, slot.sent = None, 0

    def _make_tls_context(self) -> ssl.SSLContext | None:
        settings = self.settings
        if not settings.implicit_tls and settings.starttls == "never":
            return None
        # Built once: aiosmtplib would otherwise load the CA store per session.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if not settings.verify_certificates:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
