"""A real SMTP server (aiosmtpd) that records what it receives and answers by recipient.

Local parts steer it: ``bounce-…`` gets 550 5.1.1, ``defer-…`` gets 451 4.3.0 on its
first attempt and is accepted on the next, ``slow-…`` waits before accepting.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    deferred_once: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local = address.partition("@")[0].lower()
        if local.startswith("bounce"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("defer"):
            with self.lock:
                if address not in self.deferred_once:
                    self.deferred_once.add(address)
                    return "451 4.3.0 Temporary lookup failure, try again"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.lock:
            self.received.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
            )
        return "250 2.0.0 Ok: queued"


class Receiver:
    def __init__(self) -> None:
        self.handler = RecordingHandler()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def start(self) -> Receiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def wait_for_count(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"received {len(self.received)} of {count} messages")
            time.sleep(0.05)
        return self.received


def received_headers(item: Received) -> dict[str, Any]:
    message = item.message
    return {k.lower(): str(v) for k, v in message.items()}


class SlowReceiver(Receiver):
    """Takes ``delay`` seconds per message, so that what a test does (a kill, a pause, a
    full disk) lands in the middle of the sending."""

    def __init__(self, delay: float = 0.02) -> None:
        super().__init__()
        original = self.handler.handle_DATA

        async def slow_data(server: SMTP, session: Session, envelope: Envelope) -> str:
            await asyncio.sleep(delay)
            return await original(server, session, envelope)

        self.handler.handle_DATA = slow_data  # type: ignore[method-assign]
