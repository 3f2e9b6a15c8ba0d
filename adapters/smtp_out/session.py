"""One SMTP client session's work, shared by the relay and the direct transports: greeting,
a mail transaction for one recipient, envelope addresses, and replies as ``SmtpOutcome``."""

from __future__ import annotations

import re

import aiosmtplib
import idna
from aiosmtplib.email import parse_address

from adapters.ports import SmtpOutcome

ENHANCED_STATUS = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?![\d.])")

# Status codes for failures that are not a reply about this message (RFC 3463).
NO_ANSWER = "4.4.1"  # could not reach or open a session with the server
SECURITY_SETUP_FAILED = "4.7.0"  # STARTTLS, certificate or AUTH failed
SMTPUTF8_REQUIRED = "5.6.7"  # RFC 6531 3.5: a non-ASCII mailbox, server without SMTPUTF8
BAD_RECIPIENT_SYNTAX = "5.1.3"
BAD_SENDER_SYNTAX = "5.1.7"

SERVICE_CLOSING = 421


def transaction_options(
    client: aiosmtplib.SMTP, sender: str, rcpt: str, message: bytes
) -> list[str]:
    """The MAIL parameters this message needs on this session."""
    options: list[str] = []
    # RFC 6531 3.2: UTF-8 in the envelope or in the header needs SMTPUTF8.
    if not (sender + rcpt).isascii() or not message.partition(b"\r\n\r\n")[0].isascii():
        options.append("SMTPUTF8")
    if not message.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    return options


def checked_envelope(mail_from: str, recipient: str) -> tuple[str, str] | SmtpOutcome:
    """The envelope as it goes on MAIL and RCPT, or the permanent 553 that an address which
    cannot go on an SMTP command line gets (5.1.7 sender, 5.1.3 recipient): it would fail
    the same way on every attempt. ``mail_from`` may be empty (the null reverse-path)."""
    try:
        sender = envelope_address(mail_from) if mail_from else ""
    except ValueError as exc:
        return SmtpOutcome(553, BAD_SENDER_SYNTAX, f"not sent: {exc}")
    try:
        rcpt = envelope_address(recipient)
    except ValueError as exc:
        return SmtpOutcome(553, BAD_RECIPIENT_SYNTAX, f"not sent: {exc}")
    return sender, rcpt


async def greet(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()  # RFC 5321 4.1.4: fall back for pre-ESMTP servers


async def mail_transaction(
    client: aiosmtplib.SMTP, sender: str, rcpt: str, message: bytes, options: list[str]
) -> SmtpOutcome:
    """MAIL, RCPT, DATA for one recipient, on addresses ``envelope_address`` has checked.

    The commands are issued directly rather than through ``sendmail``, which
    parses each address three more times with ``email.utils`` (most of the
    CPU of a transaction, measured).
    """
    utf8 = "SMTPUTF8" in options
    if utf8 and not client.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by the server")
    encoding = "utf-8" if utf8 else "ascii"
    response = await client.execute_command(
        b"MAIL", b"FROM:<" + sender.encode(encoding) + b">", *(o.encode() for o in options)
    )
    if response.code != 250:
        await reset_after_refusal(client, response)
        return reply_outcome(response.code, response.message)
    response = await client.execute_command(b"RCPT", b"TO:<" + rcpt.encode(encoding) + b">")
    if response.code not in (250, 251):
        await reset_after_refusal(client, response)
        return reply_outcome(response.code, response.message)
    response = await client.data(message)
    return reply_outcome(response.code, response.message)


async def reset_after_refusal(client: aiosmtplib.SMTP, response: aiosmtplib.SMTPResponse) -> None:
    """RSET after a refused MAIL or RCPT, so the session can carry the next message.

    A 421 means the relay is closing the session (aiosmtplib has closed it): raised,
    so that the caller's reconnect-and-retry applies, as it does for DATA.
    """
    if response.code == SERVICE_CLOSING:
        raise aiosmtplib.SMTPResponseException(response.code, response.message)
    if client.is_connected:
        await client.rset()


# The everyday address needs no parser: ASCII dot-atom local part at an LDH domain.
PLAIN_ENVELOPE_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
)


def envelope_address(address: str) -> str:
    """The address as it goes on MAIL/RCPT: domain as A-labels, checked for injection."""
    if PLAIN_ENVELOPE_ADDRESS.fullmatch(address):
        return address
    # parse_address raises on some hostile input but silently rewrites other
    # ("a@b.c>\r\nRCPT TO:<x@y>" becomes "a@b.c"): only a bare address that
    # it leaves unchanged goes on the wire.
    bare = parse_address(address)
    if bare != address:
        raise ValueError(f"not a bare envelope address: {address!r}")
    local, at, domain = bare.rpartition("@")
    if at and not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except UnicodeError as exc:  # idna.IDNAError is one
            raise ValueError(f"invalid domain in {address!r}: {exc}") from exc
        bare = f"{local}@{domain}"
    return bare


def reply_outcome(code: int, text: str) -> SmtpOutcome:
    match = ENHANCED_STATUS.match(text)
    return SmtpOutcome(code, match.group(1) if match else "", text)


def no_answer(exc: BaseException) -> SmtpOutcome:
    return SmtpOutcome(0, NO_ANSWER, describe_error(exc))


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
