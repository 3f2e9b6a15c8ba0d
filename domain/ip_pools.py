"""An account's sending addresses and the pools it groups them into.

Direct delivery sends each message from one of this machine's addresses. An account
registers the addresses that are its own (a dedicated IP), each with the name it greets
with (which should be its reverse DNS name), groups them into named pools with weights,
and attaches a pool to a sender domain or a campaign. Mail with no pool attached goes
through the account's pool named ``default`` if it has one, else the machine's shared
addresses (``SENDING_ADDRESSES``).

An address belongs to one account at a time: ``AddressClaim`` (one per address, its id
made from the address) makes a second registration conflict on save, as ``UsernameClaim``
does for usernames.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.routing import SourceAddress

_NAMESPACE = UUID("0d7f3c9e-2b8a-4f61-9a57-3c1e5b7d9f20")
DEFAULT_POOL = "default"
MAX_ADDRESSES = 256
MAX_POOLS = 100
MAX_WEIGHT = 1000
_POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_HELO_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")


class PoolError(ValueError):
    """A pool or an address the rules do not allow; ``field`` names the parameter."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def canonical_address(text: str) -> str | None:
    """The address in its one written form ("2001:db8::1", "192.0.2.1"; an IPv4 address
    written as IPv6, ``::ffff:192.0.2.1``, as IPv4), or None."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def unusable_source(address: str, allow_loopback: bool) -> str | None:
    """Why mail cannot leave from ``address`` (canonical), or None: no address at all
    (``0.0.0.0``), a group address, a link-local one (it needs an interface), or loopback
    (no receiver could answer it) unless allowed (tests, labs)."""
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local:
        return f"{address} cannot be a source of mail"
    if ip.is_loopback and not allow_loopback:
        return f"{address} is a loopback address"
    return None


def is_helo_name(text: str) -> bool:
    return len(text) <= 253 and bool(_HELO_NAME.fullmatch(text))


def is_pool_name(text: str) -> bool:
    return bool(_POOL_NAME.fullmatch(text))


def address_claim_id(address: str) -> UUID:
    return uuid5(_NAMESPACE, f"address:{address}")


def sending_addresses_id(account_id: UUID) -> UUID:
    return uuid5(_NAMESPACE, f"account:{account_id}")


def parse_members(text: str) -> list[tuple[str, int]]:
    """``"192.0.2.1*3, 192.0.2.2"`` → ``[("192.0.2.1", 3), ("192.0.2.2", 1)]``."""
    members: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        written, star, weight_text = item.partition("*")
        address = canonical_address(written)
        if address is None:
            raise PoolError("IPAddresses", f"{written.strip()[:60]!r} is not an IP address")
        weight_text = weight_text.strip()
        if star and not (weight_text.isdecimal() and weight_text.isascii()):
            raise PoolError("IPAddresses", f"{item[:60]!r}: the weight after * is a number")
        weight = 1
        if star:
            # Four digits at most: int() of thousands of digits is slow, and refused past 4300.
            weight = int(weight_text) if len(weight_text) <= 4 else 0
        if not 1 <= weight <= MAX_WEIGHT:
            raise PoolError("IPAddresses", f"{item[:60]!r}: the weight is 1 to {MAX_WEIGHT}")
        if any(address == known for known, _ in members):
            raise PoolError("IPAddresses", f"{address} is named twice")
        members.append((address, weight))
    if not members:
        raise PoolError("IPAddresses", "name at least one address")
    return members


class AddressClaim(Aggregate):
    """Which account an address is registered to; a second claim conflicts on save."""

    @event("Claimed")
    def __init__(self, id: UUID, address: str, account_id: UUID) -> None:
        self._id = id
        self.address = address
        self.account_id: UUID | None = account_id

    @property
    def is_free(self) -> bool:
        return self.account_id is None

    @event("Reclaimed")
    def reclaim(self, account_id: UUID) -> None:
        self.account_id = account_id

    @event("Released")
    def release(self) -> None:
        self.account_id = None


@dataclass(frozen=True)
class PoolMember:
    source: SourceAddress
    warmup_from: date | None  # the first day of its warm-up, if it is warming up


class SendingAddresses(Aggregate):
    """One account's registered addresses and its pools (one aggregate, so that a pool
    never names an address the account has released)."""

    @event("Opened")
    def __init__(self, id: UUID, account_id: UUID) -> None:
        self._id = id
        self.account_id = account_id
        # address → {"helo_name", "registered_at", "warmup_from" (ISO date or None)}
        self.addresses: dict[str, dict[str, Any]] = {}
        # pool name (as written) → [[address, weight], …]
        self.pools: dict[str, list[list[Any]]] = {}

    def pool_named(self, name: str) -> str | None:
        """The pool's name as it was written, matched without regard to case."""
        folded = name.lower()
        return next((known for known in self.pools if known.lower() == folded), None)

    def register(
        self, address: str, helo_name: str, at: datetime, warmup_from: date | None
    ) -> None:
        if address in self.addresses:
            raise PoolError("IPAddress", "already registered")
        if len(self.addresses) >= MAX_ADDRESSES:
            raise PoolError("IPAddress", f"an account registers at most {MAX_ADDRESSES} addresses")
        self._registered(
            address=address,
            helo_name=helo_name,
            registered_at=at,
            warmup_from=warmup_from.isoformat() if warmup_from else None,
        )

    @event("AddressRegistered")
    def _registered(
        self, address: str, helo_name: str, registered_at: datetime, warmup_from: str | None
    ) -> None:
        self.addresses[address] = {
            "helo_name": helo_name,
            "registered_at": registered_at.isoformat(),
            "warmup_from": warmup_from,
        }

    def change_address(self, address: str, helo_name: str, warmup_from: date | None) -> None:
        self._require_address(address)
        self._address_changed(
            address=address,
            helo_name=helo_name,
            warmup_from=warmup_from.isoformat() if warmup_from else None,
        )

    @event("AddressChanged")
    def _address_changed(self, address: str, helo_name: str, warmup_from: str | None) -> None:
        self.addresses[address] = {
            **self.addresses[address],
            "helo_name": helo_name,
            "warmup_from": warmup_from,
        }

    def release(self, address: str) -> None:
        """Forget the address, and take it out of every pool that names it."""
        self._require_address(address)
        self._released(address=address)

    @event("AddressReleased")
    def _released(self, address: str) -> None:
        del self.addresses[address]
        for name, members in list(self.pools.items()):
            self.pools[name] = [member for member in members if member[0] != address]

    def save_pool(self, name: str, members: list[tuple[str, int]], *, new: bool) -> str:
        """Create (``new``) or replace the pool; returns its name as stored."""
        if not is_pool_name(name):
            raise PoolError(
                "PoolName", "1 to 63 letters, digits, '.', '_' or '-', starting with one of "
                "the first two",
            )  # fmt: skip
        known = self.pool_named(name)
        if new and known is not None:
            raise PoolError("PoolName", f"a pool named {known!r} exists")
        if not new and known is None:
            raise PoolError("PoolName", f"no pool named {name!r}")
        if new and len(self.pools) >= MAX_POOLS:
            raise PoolError("PoolName", f"an account has at most {MAX_POOLS} pools")
        for address, _ in members:
            if address not in self.addresses:
                raise PoolError("IPAddresses", f"{address} is not registered to this account")
        stored = known or name
        self._pool_saved(name=stored, members=[[a, w] for a, w in members])
        return stored

    @event("PoolSaved")
    def _pool_saved(self, name: str, members: list[list[Any]]) -> None:
        self.pools[name] = [list(member) for member in members]

    def delete_pool(self, name: str) -> None:
        known = self.pool_named(name)
        if known is None:
            raise PoolError("PoolName", f"no pool named {name!r}")
        self._pool_deleted(name=known)

    @event("PoolDeleted")
    def _pool_deleted(self, name: str) -> None:
        del self.pools[name]

    def members(self, pool: str) -> list[PoolMember]:
        """The pool's addresses, ready to send from; none for a pool that does not exist."""
        known = self.pool_named(pool)
        found: list[PoolMember] = []
        for address, weight in self.pools.get(known or "", []):
            details = self.addresses.get(address)
            if details is None:
                continue
            started = details.get("warmup_from")
            found.append(
                PoolMember(
                    SourceAddress(address, details["helo_name"], int(weight)),
                    date.fromisoformat(started) if started else None,
                )
            )
        return found

    def _require_address(self, address: str) -> None:
        if address not in self.addresses:
            raise PoolError("IPAddress", "not registered to this account")
