"""``Agency.AddClient``, ``Agency.GetClients`` and ``Agency.Stats``: agency accounts and
the client accounts they own.

An agency acts on a client by naming it (``ClientAccountID``) beside its own credentials
(``Gateway.identify``); a client is one level down, never an agency itself, and no client
sees another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from adapters.ports import ReportingStore
from domain.account import Account
from domain.errors import Agencies, RequestRejected
from engine.accounts.domain_names import DomainNameInvalid, normalise_domain_name
from engine.accounts.gateway import Gateway
from engine.application import Sendstream
from engine.conflicts import retried
from engine.params import text_param, uuid_param

Handler = Callable[[Account, dict[str, Any]], dict[str, Any]]


class AgencyCommands:
    def __init__(
        self, app: Sendstream, gateway: Gateway, reporting: Callable[[], ReportingStore]
    ) -> None:
        self._app = app
        self._gateway = gateway
        self._reporting = reporting

    def commands(self) -> dict[str, Handler]:
        return {
            "Agency.AddClient": self.add_client,
            "Agency.GetClients": self.get_clients,
            "Agency.Stats": self.stats,
        }

    def add_client(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """A new account owned by this one, with its first sender domain and keys (shown
        once, as ``sendstream bootstrap`` shows them)."""
        name = text_param(params.get("DomainName"))
        if not name:
            raise RequestRejected(Agencies.MISSING_PARAMETER.format(name="DomainName"))
        try:
            domain_name = normalise_domain_name(name)
        except DomainNameInvalid:
            raise RequestRejected(Agencies.INVALID_DOMAIN_NAME) from None
        if self._app.account(account.id).agency_id is not None:
            raise RequestRejected(Agencies.NOT_AN_AGENCY)
        return {"Client": self.open_client(account.id, domain_name)}

    def agency(self, agency_id: Any) -> Account:
        """The agency ``agency_id`` names: an account that is unknown or itself a client is
        none (InvalidAgencyAccountException)."""
        found = agency_id if isinstance(agency_id, UUID) else uuid_param(agency_id)
        try:
            agency = self._app.account(found) if found else None
        except AggregateNotFoundError:
            agency = None
        if agency is None or agency.agency_id is not None:
            raise RequestRejected(Agencies.INVALID_AGENCY)
        return agency

    def open_client(self, agency_id: Any, domain_name: str) -> dict[str, Any]:
        """A new account, a client of ``agency_id`` and listed among its clients in the same
        save (``sendstream bootstrap --agency`` too)."""

        def attempt() -> dict[str, Any]:
            return self._app.bootstrap(domain_name, agency=self.agency(agency_id))

        return retried(attempt)

    def get_clients(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        agency = self._app.account(account.id)
        clients = [self._shown(self._app.account(client_id)) for client_id in agency.client_ids]
        return {"Clients": clients, "TotalCount": len(clients)}

    def stats(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """Each client's figures over its sender domains, and all of them together."""
        from projections.stats import account_overview

        start, end = self._gateway.date_range(account, params)
        agency = self._app.account(account.id)
        store = self._reporting()
        clients = []
        every_domain = []
        for client_id in agency.client_ids:
            client = self._app.account(client_id)
            every_domain += client.domain_ids
            figures = account_overview(store, client.domain_ids, start, end, by_day=True)
            clients.append({**self._shown(client), "Stats": figures["Stats"]})
        combined = account_overview(store, every_domain, start, end, by_day=True)
        return {
            "StartDate": start.date().isoformat(),
            "EndDate": end.date().isoformat(),
            "Stats": combined["Stats"],
            "Clients": clients,
        }

    def _shown(self, client: Account) -> dict[str, Any]:
        return {
            "AccountID": str(client.id),
            "Name": client.name,
            "Domains": len(client.domain_ids),
            "IsActive": client.is_active,
        }
