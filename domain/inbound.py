"""Inbound mail: routes that say what becomes of mail received for a customer's domain, and
the record of each message received.

A route belongs to an account and to one of its sender domains (or a subdomain of one:
``in.shop.example`` for ``shop.example``), and matches recipients of that domain: one
address, every address (``*``), or a regular expression over the whole address. Routes of
a domain are tried in order of priority (lower first, then the older first); the first
that matches acts, and a recipient no route matches is refused at RCPT. What a route does:

* ``post``: the parsed message is POSTed as JSON to the route's URL, by the webhook
  machinery (signatures, retries, attempt log): the route owns a webhook of event
  ``inbound`` on its sender domain;
* ``forward``: the message is sent on to the route's addresses, from the domain;
* ``store``: it is kept (every message received is kept, whatever its route does).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

MAX_PATTERN_LENGTH = 256
MAX_FORWARD_TO = 10
MAX_DESCRIPTION_LENGTH = 256
INBOUND_EVENT = "inbound"  # the event type of a route's webhook


class RouteAction(StrEnum):
    POST = "post"
    FORWARD = "forward"
    STORE = "store"


class MatchKind(StrEnum):
    ADDRESS = "address"  # one address
    ANY = "any"  # every address of the domain
    PATTERN = "pattern"  # a regular expression over the whole address


class InboundRoute(Aggregate):
    @event("Created")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        domain_id: UUID,
        domain_name: str,
        kind: str,
        expression: str,
        action: str,
        url: str,
        forward_to: list[str],
        priority: int,
        description: str,
        webhook_id: UUID | None,
        created_at: datetime,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.domain_id = domain_id  # the sender domain it belongs to
        self.domain_name = domain_name  # the domain it receives for
        self.kind = MatchKind(kind)
        self.expression = expression  # the address, "*", or the pattern
        self.action = RouteAction(action)
        self.url = url
        self.forward_to = forward_to
        self.priority = priority
        self.description = description
        self.webhook_id = webhook_id
        self.created_at = created_at
        self.is_deleted = False

    @event("Deleted")
    def delete(self, deleted_at: datetime) -> None:
        self.is_deleted = True

    def describe(self) -> dict[str, Any]:
        return {
            "RouteID": str(self.id),
            "Domain": self.domain_name,
            "Recipient": self.expression if self.kind is not MatchKind.PATTERN else "",
            "Pattern": self.expression if self.kind is MatchKind.PATTERN else "",
            "Action": self.action.value,
            "URL": self.url,
            "ForwardTo": list(self.forward_to),
            "Priority": self.priority,
            "Description": self.description,
            "CreatedAt": self.created_at.isoformat(),
        }


def inbound_domain_id(domain_name: str) -> UUID:
    """The routes of one receiving domain are found from its name (the SMTP server knows
    only the recipient's)."""
    return uuid5(NAMESPACE_URL, f"sendstream:inbound-domain:{domain_name.lower()}")


def inbound_routes_id(account_id: UUID) -> UUID:
    return uuid5(account_id, "inbound-routes")


class RouteList(Aggregate):
    """Routes in the order they were created: those of one receiving domain (id
    ``inbound_domain_id``, for the server) or of one account (``inbound_routes_id``, for
    listing them). ``owner`` names the domain or the account."""

    @event("Opened")
    def __init__(self, id: UUID, owner: str) -> None:
        self._id = id
        self.owner = owner
        self.route_ids: list[UUID] = []

    @event("RouteAdded")
    def add_route(self, route_id: UUID) -> None:
        self.route_ids.append(route_id)

    @event("RouteRemoved")
    def remove_route(self, route_id: UUID) -> None:
        if route_id in self.route_ids:
            self.route_ids.remove(route_id)


class InboundMessage(Aggregate):
    """One recipient's copy of a message received: the envelope, what the sender's
    authentication showed, the route that took it, and the message itself (base64), so
    that what was received can always be read back and replayed."""

    @event("Received")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        route_id: UUID,
        action: str,
        mail_from: str,
        recipient: str,
        client_address: str,
        helo: str,
        size: int,
        subject: str,
        header_message_id: str,
        authentication: dict[str, Any],
        raw_base64: str,
        received_at: datetime,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.route_id = route_id
        self.action = action
        self.mail_from = mail_from
        self.recipient = recipient
        self.client_address = client_address
        self.helo = helo
        self.size = size
        self.subject = subject
        self.header_message_id = header_message_id
        self.authentication = authentication
        self.raw_base64 = raw_base64
        self.received_at = received_at
