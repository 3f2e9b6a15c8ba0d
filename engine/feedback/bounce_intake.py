"""The bounce intake: an SMTP server for what comes back to the return paths.

Every outgoing message leaves with a return path of its own (``domain.verp``), and
receiving systems send their delivery reports (DSNs) and feedback reports (ARF
complaints) there. This server accepts mail only for those addresses, reads it
(``adapters.dsn``) and hands each failure and complaint to the engine's callbacks, with
the message id that the return path names: the report's own recipient lines are
information, never trusted to say which message it was.

It is never a relay: RCPT accepts nothing but a return path whose signature checks
(``550 5.1.1`` for anything else), there is no AUTH, and nothing received is sent on.

Replies at the end of DATA:

* ``250``: the report was recorded, or it was nothing to record (an auto-reply, spam, a
  read receipt, a success notice, a DMARC failure report, garbage): accepted and
  dropped, with a log line (``2.6.0``). A ``550`` would only make the sender's system
  bounce it to its own sender (for a bounce, nobody) or try again, forever, for mail
  that will never be read.
* ``451 4.3.0``: a callback failed (the event store is down): the sender will try again,
  and no bounce or complaint is lost.
* ``552 5.3.4`` for a message over ``max_message_bytes`` (reports are small; a returned
  message is at most a few MB).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.dsn import (
    DeliveryReport,
    FeedbackReport,
    classify_recipient,
    is_complaint,
    parse_report,
)
from adapters.faults import storage_fault
from adapters.smtp_in import ReceivingHooks, ReceivingServer
from domain.bounces import BounceClass
from domain.verp import message_id_from_unsubscribe_address, message_id_from_verp

log = logging.getLogger(__name__)

__all__ = ["BounceIntake", "OnBounce", "OnComplaint"]

OnBounce = Callable[[UUID, BounceClass, DeliveryReport | None], None]
OnComplaint = Callable[[UUID, FeedbackReport], None]

MAX_RECIPIENTS = 50  # return paths in one transaction (one report is sent to one)
_FAILURES = ("failed", "delayed")

NO_SUCH_USER = "550 5.1.1 no such user here"
RECORDED = "250 2.0.0 Ok: report recorded"
DROPPED = "250 2.6.0 Ok: not a delivery or feedback report, discarded"
NOTHING_TO_RECORD = "250 2.6.0 Ok: no failure or complaint in this report, discarded"
TRY_LATER = "451 4.3.0 Temporary failure, try again later"


class _Hooks(ReceivingHooks):
    """aiosmtpd's ``handle_*`` hooks: RCPT checks the return path, DATA reads the report.
    Bounces come from the null sender <>, feedback loops from an address of theirs."""

    def __init__(self, intake: BounceIntake) -> None:
        super().__init__()
        self._intake = intake

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (
            message_id_from_verp(address, self._intake.verp_key) is None
            and self._intake.unsubscribed_by(address) is None
        ):
            return NO_SUCH_USER
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 Too many recipients: at most {MAX_RECIPIENTS} per message"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        # Mail to a List-Unsubscribe mailto: address is the unsubscribe; what it says is not.
        leaving = [m for m in map(self._intake.unsubscribed_by, envelope.rcpt_tos) if m]
        if leaving and self._intake.on_unsubscribe is not None:
            for message_id in leaving:
                await asyncio.to_thread(self._intake.on_unsubscribe, message_id)
            if len(leaving) == len(envelope.rcpt_tos):
                return "250 2.0.0 Unsubscribed"
        message_ids = [
            m
            for m in (message_id_from_verp(a, self._intake.verp_key) for a in envelope.rcpt_tos)
            if m is not None
        ]
        return await self.finished(self._intake.receive(message_ids, data, session.peer))

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default reply names the exception: not the client's business.
        log.error("bounce intake session failed", exc_info=error)
        return TRY_LATER


class BounceIntake(ReceivingServer):
    thread_name = "bounce-intake"
    ident = "Sendstream bounce intake"
    server_label = "bounce"  # its sessions in /metrics

    """The SMTP server of the return paths, on ``host``: one listener per port in
    ``ports`` (0 binds a free port; after ``start()``, ``ports`` holds those bound).

    ``on_bounce(message_id, bounce_class, report)`` is called once for each failed or
    delayed recipient of a delivery report, ``on_complaint(message_id, report)`` once for
    a feedback report of a complaint type (``adapters.dsn.COMPLAINT_TYPES``). Both run in
    worker threads, never on the server's loop: they may block (they save events).
    """

    def __init__(
        self,
        host: str,
        ports: list[int],
        verp_key: bytes,
        on_bounce: OnBounce,
        on_complaint: OnComplaint,
        max_message_bytes: int = 2_000_000,
        *,
        hostname: str | None = None,
        idle_timeout: float = 300.0,
        unsubscribe_key: bytes | None = None,
        on_unsubscribe: Callable[[UUID], object] | None = None,
    ) -> None:
        if not verp_key:
            raise ValueError("the bounce intake needs the VERP key")
        super().__init__(host, ports, max_message_bytes, hostname, idle_timeout)
        self.verp_key = verp_key
        self.on_bounce = on_bounce
        self.on_complaint = on_complaint
        self.unsubscribe_key = unsubscribe_key
        self.on_unsubscribe = on_unsubscribe
        self._hooks = _Hooks(self)

    def unsubscribed_by(self, address: str) -> UUID | None:
        """The message whose List-Unsubscribe ``mailto:`` this is, if it is one."""
        if not self.unsubscribe_key:
            return None
        return message_id_from_unsubscribe_address(address, self.unsubscribe_key)

    # --- what a report becomes ----------------------------------------------------------

    async def receive(self, message_ids: Sequence[UUID], data: bytes, peer: Any = None) -> str:
        """The reply to one message received for ``message_ids`` (their return paths)."""
        report = await asyncio.to_thread(parse_report, data)
        try:
            if isinstance(report, FeedbackReport):
                return await self._complaint(message_ids, report, peer)
            if isinstance(report, DeliveryReport):
                return await self._bounces(message_ids, report, peer)
        except Exception as error:
            fault = storage_fault(error)
            if fault is None:
                log.exception("recording a report from %s failed", peer)
            else:  # the sender retries: nothing is lost
                log.warning("a report from %s waits: the event store is %s", peer, fault.value)
            return TRY_LATER
        log.info("not a report, from %s (%d bytes): discarded", peer, len(data))
        return DROPPED

    async def _bounces(self, message_ids: Sequence[UUID], report: DeliveryReport, peer: Any) -> str:
        failures = [r for r in report.recipients if r.action in _FAILURES]
        if not failures:
            log.info("delivery report from %s with no failure: discarded", peer)
            return NOTHING_TO_RECORD
        classes = [classify_recipient(r) for r in failures]
        for message_id in message_ids:
            for bounce in classes:
                await asyncio.to_thread(self.on_bounce, message_id, bounce, report)
        return RECORDED

    async def _complaint(
        self, message_ids: Sequence[UUID], report: FeedbackReport, peer: Any
    ) -> str:
        if not is_complaint(report.feedback_type):
            # not-spam, auth-failure (DMARC forensics)… are reports, not complaints.
            log.info("feedback report %r from %s: not a complaint", report.feedback_type, peer)
            return NOTHING_TO_RECORD
        for message_id in message_ids:
            await asyncio.to_thread(self.on_complaint, message_id, report)
        return RECORDED
