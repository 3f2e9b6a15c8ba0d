"""One recipient's copy of a message, exactly as it is sent: merge tags filled, links and
the open pixel tracked, List-Unsubscribe, MIME, DKIM; and, made again the same way, the list
of tracked links a click token indexes."""

from __future__ import annotations

import dataclasses

from adapters.dkim import sign as dkim_sign
from adapters.mime import build_message
from domain.account import SenderDomain
from domain.content import Address, EmailContent
from domain.message import Message
from domain.tracking import track_message, unsubscribe_url
from domain.verp import unsubscribe_address, verp_address
from engine.delivery.handoff import ContentCache
from engine.delivery.personalise import Personaliser
from engine.settings import Settings


class MessageRenderer:
    def __init__(
        self,
        contents: ContentCache,
        settings: Settings,
        tracking_key: bytes,
        verp_key: bytes,
        unsubscribe_key: bytes = b"",
    ) -> None:
        self._contents = contents
        self._settings = settings
        self._tracking_key = tracking_key
        self._verp_key = verp_key
        # A key of its own, so that the mailto: address and the return path never match.
        self._unsubscribe_key = unsubscribe_key or verp_key[::-1]
        self._personaliser = Personaliser()

    def content_for(self, message: Message) -> EmailContent:
        content = self._contents.get(message.submission_id)
        if message.merge_fields is not None:
            content = self._personaliser.personalise(
                message.submission_id, content, message.recipient, message.merge_fields
            )
        return content

    def tracking_base(self, domain: SenderDomain | None) -> str:
        """The domain's own tracking host once DNS shows its CNAME to us, else ours."""
        if domain is not None and domain.last_checked.get("tracking"):
            return f"http://{domain.subdomain or 'track'}.{domain.name}"
        return self._settings.public_url.rstrip("/")

    def return_path(self, message: Message, domain: SenderDomain | None) -> str:
        """The envelope sender: a VERP address naming the message, so that a bounce that
        comes back later is matched to it (and cannot be forged for another)."""
        return verp_address(message.id, self._bounce_host(domain), self._verp_key)

    def _bounce_host(self, domain: SenderDomain | None) -> str:
        """The domain's bounce host once DNS shows its CNAME to us, else ours."""
        if domain is not None and domain.last_checked.get("return_path"):
            return f"bounces.{domain.name}"
        return self._settings.mail_hostname

    def tracked_links(
        self, message: Message, domain: SenderDomain | None
    ) -> list[tuple[str, bool]]:
        content = self.content_for(message)
        return track_message(
            content.html, content.plain, self.tracking_base(domain), message.id,
            self._tracking_key, links=True, opens=False,
        )[2]  # fmt: skip

    def render(self, message: Message, domain: SenderDomain | None) -> bytes:
        content = self.content_for(message)
        base = self.tracking_base(domain)
        links = content.track_links
        opens = content.track_opens
        if domain is not None:
            links = domain.link_tracking if links is None else links
            opens = domain.open_tracking if opens is None else opens
        if links or opens:
            html, plain, _ = track_message(
                content.html, content.plain, base, message.id, self._tracking_key,
                links=bool(links), opens=bool(opens),
            )  # fmt: skip
            content = dataclasses.replace(content, html=html, plain=plain)
        extra: list[tuple[str, str]] = []
        if message.campaign_id or (domain is not None and domain.unsubscribe_link):
            # RFC 8058 one-click: mailbox providers POST to the https one on the reader's
            # behalf; older clients send mail to the mailto one (our bounce server takes it).
            link = unsubscribe_url(base, message.id, self._tracking_key)
            mailto = unsubscribe_address(
                message.id, self._bounce_host(domain), self._unsubscribe_key
            )
            extra = [("List-Unsubscribe", f"<{link}>, <mailto:{mailto}?subject=unsubscribe>"),
                     ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]  # fmt: skip
        raw = build_message(
            content,
            recipient=Address(message.recipient),
            message_id=str(message.submission_id),
            extra_headers=extra,
            domain=content.sender.email.rpartition("@")[2],
        )
        if domain is not None and domain.signs_with_dkim:
            raw = dkim_sign(
                raw,
                domain=domain.name,
                selector=domain.dkim_selector,
                private_key_pem=domain.dkim_private_key,
            )
        return raw
