"""The commands for an account's sending addresses and pools (``domain.ip_pools``).

``EmailGateway.AddIPAddress``, ``UpdateIPAddress``, ``DeleteIPAddress`` and
``GetIPAddresses``; ``EmailGateway.AddIPPool``, ``UpdateIPPool``, ``DeleteIPPool`` and
``GetIPPools``. A pool is attached to a sender domain by ``EmailGateway.UpdateDomain``'s
``IPPool`` and to a campaign by ``Campaign.Update``'s ``IPPool``. The errors are 000's
``InvalidIPAddressException`` and ``DuplicateIPAddressException``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from adapters.local_addresses import is_local_address
from domain import errors as E
from domain.account import Account
from domain.errors import RequestRejected
from domain.ip_pools import (
    AddressClaim,
    PoolError,
    SendingAddresses,
    address_claim_id,
    canonical_address,
    is_helo_name,
    parse_members,
    sending_addresses_id,
    unusable_source,
)
from domain.warmup import WarmUpSchedule
from engine.application import Sendstream
from engine.params import flag_param, text_param

Handler = Callable[[Account, dict[str, Any]], dict[str, Any]]
_BUSY = E.Command.TOO_MANY_REQUESTS.format(seconds=1, attempts=1)


class SendingAddressCommands:
    def __init__(
        self,
        app: Sendstream,
        warmup: WarmUpSchedule,
        default_helo_name: str,
        shared: frozenset[str] = frozenset(),
        allow_loopback: bool = False,
        is_ours: Callable[[str], bool] = is_local_address,
    ) -> None:
        self._app = app
        self._warmup = warmup
        self._default_helo_name = default_helo_name
        # SENDING_ADDRESSES: every account's mail may leave from them, so none may own one.
        self._shared = shared
        self._allow_loopback = allow_loopback
        self._is_ours = is_ours
        self._lock = threading.Lock()  # one change to an account's addresses at a time here

    def commands(self) -> dict[str, Handler]:
        return {
            "EmailGateway.AddIPAddress": self.add_address,
            "EmailGateway.UpdateIPAddress": self.update_address,
            "EmailGateway.DeleteIPAddress": self.delete_address,
            "EmailGateway.GetIPAddresses": self.get_addresses,
            "EmailGateway.AddIPPool": self.add_pool,
            "EmailGateway.UpdateIPPool": self.update_pool,
            "EmailGateway.DeleteIPPool": self.delete_pool,
            "EmailGateway.GetIPPools": self.get_pools,
        }

    def addresses_of(self, account_id: UUID) -> SendingAddresses | None:
        try:
            return self._app._get(sending_addresses_id(account_id), SendingAddresses)
        except AggregateNotFoundError:
            return None

    def check_pool(self, account: Account, value: Any) -> str:
        """``IPPool`` of UpdateDomain and Campaign.Update: a pool of the account, as its
        name is stored, or "" (no pool: the default)."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return ""  # no pool: the account's default
        name = text_param(value)
        if name is None or len(name) > 63:
            raise RequestRejected(E.IpAddresses.INVALID_OPTION.format(name="IPPool"))
        addresses = self.addresses_of(account.id)
        known = addresses.pool_named(name) if addresses is not None else None
        if known is None:
            raise RequestRejected(
                E.IpAddresses.INVALID_OPTION.format(name=f"IPPool (no pool named {name!r})")
            )
        return known

    # Addresses.

    def add_address(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        address = self._address_param(params)
        helo_name = self._helo_param(params, self._default_helo_name)
        warm_up = flag_param(params, "WarmUp", False)
        if unusable_source(address, self._allow_loopback) or not self._is_ours(address):
            raise RequestRejected(E.IpAddresses.INVALID_IP_ADDRESS)
        if address in self._shared:
            raise RequestRejected(E.IpAddresses.DUPLICATE_IP_ADDRESS)
        with self._lock:
            addresses = self._own(account.id)
            claim = self._claim(address)
            if claim is not None and not claim.is_free:
                raise RequestRejected(E.IpAddresses.DUPLICATE_IP_ADDRESS)
            if claim is None:
                claim = AddressClaim(
                    id=address_claim_id(address), address=address, account_id=account.id
                )
            else:
                claim.reclaim(account.id)
            today = datetime.now(UTC).date()
            try:
                addresses.register(
                    address, helo_name, datetime.now(UTC), today if warm_up else None
                )
            except PoolError as error:
                raise _rejected(error) from None
            try:
                self._app.save(addresses, claim)
            except IntegrityError:
                # Claimed meanwhile by another API process, or this account's addresses
                # changed there: nothing was recorded either way.
                taken = self._claim(address)
                if taken is not None and not taken.is_free:
                    raise RequestRejected(E.IpAddresses.DUPLICATE_IP_ADDRESS) from None
                raise RequestRejected(_BUSY) from None
        return {"IPAddress": self._address_view(addresses, address)}

    def update_address(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        address = self._address_param(params)
        with self._lock:
            addresses = self._registered(account.id, address)
            details = addresses.addresses[address]
            helo_name = self._helo_param(params, details["helo_name"])
            started: str | None = details.get("warmup_from")
            warmup_from: date | None = None
            if flag_param(params, "WarmUp", started is not None):
                # Kept from its first day while it goes on; begun today when asked anew.
                warmup_from = date.fromisoformat(started) if started else datetime.now(UTC).date()
            addresses.change_address(address, helo_name, warmup_from)
            self._save(addresses)
        return {"IPAddress": self._address_view(addresses, address)}

    def delete_address(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        address = self._address_param(params)
        with self._lock:
            addresses = self._registered(account.id, address)
            claim = self._claim(address)
            addresses.release(address)
            changed: list[Aggregate] = [addresses]
            if claim is not None and claim.account_id == account.id:
                claim.release()
                changed.append(claim)
            self._save(*changed)
        return {}

    def get_addresses(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        addresses = self.addresses_of(account.id)
        if addresses is None:
            return {"IPAddresses": []}
        return {
            "IPAddresses": [self._address_view(addresses, a) for a in sorted(addresses.addresses)]
        }

    # Pools.

    def add_pool(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        return self._save_pool(account, params, new=True)

    def update_pool(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        return self._save_pool(account, params, new=False)

    def delete_pool(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        name = self._pool_param(params)
        with self._lock:
            addresses = self.addresses_of(account.id)
            if addresses is None:
                raise RequestRejected(E.IpAddresses.INVALID_OPTION.format(name="PoolName"))
            try:
                addresses.delete_pool(name)
            except PoolError as error:
                raise _rejected(error) from None
            self._save(addresses)
        return {}

    def get_pools(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        addresses = self.addresses_of(account.id)
        if addresses is None:
            return {"IPPools": []}
        return {
            "IPPools": [
                _pool_view(name, members)
                for name, members in sorted(addresses.pools.items(), key=lambda p: p[0].lower())
            ]
        }

    def _save_pool(self, account: Account, params: dict[str, Any], *, new: bool) -> dict[str, Any]:
        name = self._pool_param(params)
        members_text = params.get("IPAddresses")
        if members_text in (None, ""):
            raise RequestRejected(E.IpAddresses.MISSING_PARAMETER.format(name="IPAddresses"))
        if not isinstance(members_text, str) or len(members_text) > 20_000:
            raise RequestRejected(E.IpAddresses.INVALID_OPTION.format(name="IPAddresses"))
        try:
            members = parse_members(members_text)
        except PoolError as error:
            raise _rejected(error) from None
        with self._lock:
            addresses = self._own(account.id)
            try:
                stored = addresses.save_pool(name, members, new=new)
            except PoolError as error:
                if error.field == "IPAddresses" and "not registered" in error.reason:
                    raise RequestRejected(E.IpAddresses.INVALID_IP_ADDRESS) from None
                raise _rejected(error) from None
            self._save(addresses)
        return {"IPPool": _pool_view(stored, addresses.pools[stored])}

    # Parameters and views.

    def _address_param(self, params: dict[str, Any]) -> str:
        value = params.get("IPAddress")
        if value in (None, ""):
            raise RequestRejected(E.IpAddresses.MISSING_PARAMETER.format(name="IPAddress"))
        address = canonical_address(value) if isinstance(value, str) and len(value) < 64 else None
        if address is None:
            raise RequestRejected(E.IpAddresses.INVALID_IP_ADDRESS)
        return address

    def _helo_param(self, params: dict[str, Any], current: str) -> str:
        value = params.get("HeloName")
        if value in (None, ""):
            return current
        name = value.strip().lower().rstrip(".") if isinstance(value, str) else ""
        if not is_helo_name(name):
            raise RequestRejected(E.IpAddresses.INVALID_OPTION.format(name="HeloName"))
        return name

    def _pool_param(self, params: dict[str, Any]) -> str:
        name = text_param(params.get("PoolName"))
        if name is None:
            raise RequestRejected(E.IpAddresses.MISSING_PARAMETER.format(name="PoolName"))
        if len(name) > 63:
            raise RequestRejected(E.IpAddresses.INVALID_OPTION.format(name="PoolName"))
        return name

    def _address_view(self, addresses: SendingAddresses, address: str) -> dict[str, Any]:
        details = addresses.addresses[address]
        view: dict[str, Any] = {
            "IPAddress": address,
            "HeloName": details["helo_name"],
            "Pools": sorted(
                (
                    name
                    for name, members in addresses.pools.items()
                    if any(member[0] == address for member in members)
                ),
                key=str.lower,
            ),
            "WarmUp": None,
        }
        started = details.get("warmup_from")
        if started:
            day = self._warmup.day_of(date.fromisoformat(started), datetime.now(UTC).date())
            per_hour, per_day = self._warmup.caps(day)
            view["WarmUp"] = {
                "StartedOn": started,
                "Day": day,
                "HourlyCap": per_hour,
                "DailyCap": per_day,
                "Finished": self._warmup.finished(day),
            }
        return view

    def _own(self, account_id: UUID) -> SendingAddresses:
        return self.addresses_of(account_id) or SendingAddresses(
            id=sending_addresses_id(account_id), account_id=account_id
        )

    def _registered(self, account_id: UUID, address: str) -> SendingAddresses:
        addresses = self.addresses_of(account_id)
        if addresses is None or address not in addresses.addresses:
            raise RequestRejected(E.IpAddresses.INVALID_IP_ADDRESS)
        return addresses

    def _claim(self, address: str) -> AddressClaim | None:
        try:
            return self._app._get(address_claim_id(address), AddressClaim)
        except AggregateNotFoundError:
            return None

    def _save(self, *aggregates: Aggregate) -> None:
        try:
            self._app.save(*aggregates)
        except IntegrityError:
            # Another process changed the same addresses meanwhile: nothing was recorded.
            raise RequestRejected(_BUSY) from None


def _pool_view(name: str, members: list[list[Any]]) -> dict[str, Any]:
    return {
        "PoolName": name,
        "IPAddresses": [
            {"IPAddress": address, "Weight": int(weight)} for address, weight in members
        ],
    }


def _rejected(error: PoolError) -> RequestRejected:
    named = f"{error.field} ({error.reason})"
    return RequestRejected(E.IpAddresses.INVALID_OPTION.format(name=named))
