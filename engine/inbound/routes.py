"""Inbound routes: ``Route.Create``, ``Route.Get``, ``Routes.Get`` and ``Route.Delete`` (and
``/api/v1/routes``), and the table the inbound SMTP server asks which route takes a
recipient.

A pattern is a regular expression over the whole recipient address, matched without
regard to case by the ``regex`` library with a time limit: a pattern that backtracks
without end on some address gives up after ``PATTERN_TIMEOUT`` seconds and counts as no
match, so a route can cost the server at most that per recipient.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import regex
from eventsourcing.application import AggregateNotFoundError

from domain.account import Account, SenderDomain, domain_accepts_sender
from domain.errors import RequestRejected, Routes
from domain.inbound import (
    MAX_DESCRIPTION_LENGTH,
    MAX_FORWARD_TO,
    MAX_PATTERN_LENGTH,
    InboundRoute,
    MatchKind,
    RouteAction,
    RouteList,
    inbound_domain_id,
    inbound_routes_id,
)
from engine.application import Sendstream
from engine.idempotency import answered
from engine.ids import new_id
from engine.params import is_valid_email, text_param, uuid_param
from engine.webhooks.commands import WebhookCommands

log = logging.getLogger(__name__)

PATTERN_TIMEOUT = 0.01
_DOMAIN_NAME = regex.compile(
    r"(?i)^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)


@dataclass(frozen=True)
class RouteView:
    """What the server needs of a route."""

    id: UUID
    account_id: UUID
    domain_id: UUID
    kind: MatchKind
    expression: str
    action: RouteAction
    webhook_id: UUID | None
    forward_to: tuple[str, ...]
    pattern: Any = None  # the compiled pattern of a PATTERN route

    def matches(self, address: str) -> bool:
        if self.kind is MatchKind.ANY:
            return True
        if self.kind is MatchKind.ADDRESS:
            return address.lower() == self.expression
        try:
            return self.pattern.fullmatch(address, timeout=PATTERN_TIMEOUT) is not None
        except TimeoutError:
            log.warning("inbound route %s: its pattern took too long on %r", self.id, address)
            return False


def _compiled(expression: str) -> Any:
    try:
        return regex.compile(expression, regex.IGNORECASE)
    except (regex.error, OverflowError, RecursionError):
        raise RequestRejected(Routes.INVALID_PATTERN) from None


class RouteCommands:
    def __init__(self, app: Sendstream, webhooks: WebhookCommands) -> None:
        self._app = app
        self._webhooks = webhooks
        self._lock = threading.Lock()  # one change to the indexes at a time per process

    def commands(self) -> dict[str, Any]:
        return {
            "Route.Create": self.create,
            "Route.Get": self.get,
            "Routes.Get": self.get_all,
            "Route.Delete": self.delete,
        }

    def create(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        account = self._app.account(account.id)
        domain_name = (text_param(params.get("Domain")) or "").lower().rstrip(".")
        if not domain_name:
            raise RequestRejected(Routes.MISSING_PARAMETER.format(name="Domain"))
        sender_domain = self._sender_domain(account, domain_name)
        kind, expression = _expression(domain_name, params)
        action = _action(params)
        forward_to = _forward_to(params) if action is RouteAction.FORWARD else []
        url = ""
        if action is RouteAction.POST:
            url = text_param(params.get("URL")) or ""
            if not url:
                raise RequestRejected(Routes.MISSING_PARAMETER.format(name="URL"))
            url = self._webhooks.checked_url(url)
        priority = _priority(params.get("Priority"))
        description = text_param(params.get("Description")) or ""
        if len(description) > MAX_DESCRIPTION_LENGTH:
            raise RequestRejected(Routes.INVALID_OPTION.format(name="Description"))
        now = datetime.now(UTC)
        route_id = new_id()
        saved: list[Any] = []
        webhook_id = None
        if action is RouteAction.POST:
            webhook, with_webhook = self._webhooks.inbound_webhook(
                account.id, sender_domain.id, url, now
            )
            webhook_id = webhook.id
            saved += [webhook, with_webhook]
        route = InboundRoute(
            id=route_id, account_id=account.id, domain_id=sender_domain.id,
            domain_name=domain_name, kind=kind.value, expression=expression,
            action=action.value, url=url, forward_to=forward_to, priority=priority,
            description=description, webhook_id=webhook_id, created_at=now,
        )  # fmt: skip
        with self._lock:
            receiving = self._list(inbound_domain_id(domain_name), domain_name)
            receiving.add_route(route.id)
            listing = self._listing(account.id)
            listing.add_route(route.id)
            answer = {"RouteID": str(route.id)}
            self._app.save(route, receiving, listing, *saved, *answered(answer))
        return answer

    def get(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        return {"Route": self._own(account, params.get("RouteID")).describe()}

    def get_all(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        routes = [self._get(i, InboundRoute) for i in self._listing(account.id).route_ids]
        listed = [r.describe() for r in routes if r is not None and not r.is_deleted]
        return {"TotalRoutes": len(listed), "Routes": listed}

    def delete(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        route = self._own(account, params.get("RouteID"))
        route.delete(datetime.now(UTC))
        with self._lock:
            receiving = self._get(inbound_domain_id(route.domain_name), RouteList)
            listing = self._listing(account.id)
            listing.remove_route(route.id)
            changed: list[Any] = [route, listing]
            if receiving is not None:
                receiving.remove_route(route.id)
                changed.append(receiving)
            self._app.save(*changed)
        if route.webhook_id is not None:
            self._webhooks.delete(self._app.domain(route.domain_id), str(route.webhook_id))
        return {}

    # -- helpers

    def _sender_domain(self, account: Account, domain_name: str) -> SenderDomain:
        """The account's sender domain the receiving domain is (or is under): mail for a
        domain is routed only for the account that proved it owns it."""
        if not _DOMAIN_NAME.match(domain_name):
            raise RequestRejected(Routes.INVALID_DOMAIN)
        best: SenderDomain | None = None
        for domain_id in account.domain_ids:
            domain = self._get(domain_id, SenderDomain)
            if domain is None or domain.is_deleted:
                continue
            if domain_accepts_sender(domain.name, f"postmaster@{domain_name}") and (
                best is None or len(domain.name) > len(best.name)
            ):
                best = domain
        if best is None:
            raise RequestRejected(Routes.INVALID_DOMAIN)
        return best

    def _own(self, account: Account, value: Any) -> InboundRoute:
        if text_param(value) is None:
            raise RequestRejected(Routes.MISSING_PARAMETER.format(name="RouteID"))
        route_id = uuid_param(value)
        route: InboundRoute | None = self._get(route_id, InboundRoute) if route_id else None
        if route is None or route.is_deleted or route.account_id != account.id:
            raise RequestRejected(Routes.INVALID_ID)
        return route

    def _listing(self, account_id: UUID) -> RouteList:
        return self._list(inbound_routes_id(account_id), str(account_id))

    def _list(self, list_id: UUID, owner: str) -> RouteList:
        found: RouteList | None = self._get(list_id, RouteList)
        return found or RouteList(id=list_id, owner=owner)

    def _get(self, aggregate_id: UUID, kind: type[Any]) -> Any:
        try:
            return self._app._get(aggregate_id, kind)
        except AggregateNotFoundError:
            return None


def _expression(domain_name: str, params: dict[str, Any]) -> tuple[MatchKind, str]:
    recipient = text_param(params.get("Recipient"))
    pattern = params.get("Pattern")
    if pattern not in (None, ""):
        if recipient is not None:
            raise RequestRejected(Routes.INVALID_OPTION.format(name="Recipient or Pattern"))
        if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_LENGTH:
            raise RequestRejected(Routes.INVALID_PATTERN)
        _compiled(pattern)
        return MatchKind.PATTERN, pattern
    if recipient in (None, "*", f"*@{domain_name}"):
        return MatchKind.ANY, "*"
    assert recipient is not None
    address = recipient.lower() if "@" in recipient else f"{recipient.lower()}@{domain_name}"
    if not is_valid_email(address) or address.rpartition("@")[2] != domain_name:
        raise RequestRejected(Routes.INVALID_OPTION.format(name="Recipient"))
    return MatchKind.ADDRESS, address


def _action(params: dict[str, Any]) -> RouteAction:
    given = (text_param(params.get("Action")) or "post").lower()
    try:
        return RouteAction(given)
    except ValueError:
        raise RequestRejected(Routes.INVALID_OPTION.format(name="Action")) from None


def _forward_to(params: dict[str, Any]) -> list[str]:
    given = params.get("ForwardTo")
    values = given.split(",") if isinstance(given, str) else given
    if not isinstance(values, list):
        raise RequestRejected(Routes.MISSING_PARAMETER.format(name="ForwardTo"))
    addresses = [v.strip().lower() for v in values if isinstance(v, str) and v.strip()]
    if not addresses:
        raise RequestRejected(Routes.MISSING_PARAMETER.format(name="ForwardTo"))
    if len(addresses) > MAX_FORWARD_TO or not all(map(is_valid_email, addresses)):
        raise RequestRejected(Routes.INVALID_OPTION.format(name="ForwardTo"))
    return list(dict.fromkeys(addresses))


def _priority(value: Any) -> int:
    if value in (None, ""):
        return 0
    try:
        priority = int(value)
    except (TypeError, ValueError):
        raise RequestRejected(Routes.INVALID_OPTION.format(name="Priority")) from None
    if isinstance(value, bool) or not 0 <= priority <= 1000:
        raise RequestRejected(Routes.INVALID_OPTION.format(name="Priority"))
    return priority


class RouteTable:
    """Which route takes a recipient: the routes of each receiving domain, read from the
    event store and kept ``lifetime`` seconds (a new route works within that)."""

    def __init__(self, app: Sendstream, lifetime: float = 2.0) -> None:
        self._app = app
        self._lifetime = lifetime
        self._domains: dict[str, tuple[float, list[RouteView]]] = {}
        self._lock = threading.Lock()

    def receives_for(self, domain_name: str) -> bool:
        return bool(self._routes(domain_name.lower()))

    def route_for(self, address: str) -> RouteView | None:
        domain_name = address.rpartition("@")[2].lower().rstrip(".")
        for route in self._routes(domain_name):
            if route.matches(address):
                return route
        return None

    def forget(self) -> None:
        with self._lock:
            self._domains.clear()

    def _routes(self, domain_name: str) -> list[RouteView]:
        now = time.monotonic()
        with self._lock:
            known = self._domains.get(domain_name)
            if known is not None and now - known[0] < self._lifetime:
                return known[1]
        routes = self._load(domain_name)
        with self._lock:
            self._domains[domain_name] = (now, routes)
        return routes

    def _load(self, domain_name: str) -> list[RouteView]:
        try:
            receiving = self._app._get(inbound_domain_id(domain_name), RouteList)
        except AggregateNotFoundError:
            return []
        views = []
        for order, route_id in enumerate(receiving.route_ids):
            route = self._app._get(route_id, InboundRoute)
            if route.is_deleted:
                continue
            view = RouteView(
                id=route.id, account_id=route.account_id, domain_id=route.domain_id,
                kind=route.kind, expression=route.expression, action=route.action,
                webhook_id=route.webhook_id, forward_to=tuple(route.forward_to),
                pattern=_compiled(route.expression) if route.kind is MatchKind.PATTERN else None,
            )  # fmt: skip
            views.append((route.priority, order, view))
        return [view for _, _, view in sorted(views, key=lambda v: (v[0], v[1]))]
