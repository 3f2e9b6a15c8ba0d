"""The sandbox next hop: accepts every message and sends nothing.

With no ``SMTP_RELAY_URL`` configured, mail is kept only in the event store
(the submission holds the content), where the API can show it.
"""

from __future__ import annotations

from adapters.ports import SmtpOutcome
from domain.routing import SourceAddress

SANDBOX_REPLY = SmtpOutcome(250, "2.0.0", "sandbox: kept in the event store, not sent")


class SandboxTransport:
    renders_messages = False

    async def send(
        self,
        mail_from: str,
        recipient: str,
        message: bytes,
        sources: tuple[SourceAddress, ...] | None = None,
    ) -> SmtpOutcome:
        return SANDBOX_REPLY

    async def close(self) -> None:
        return None
