"""Which of this machine's addresses a message leaves from (direct delivery).

The pool is the message's campaign's (``Campaign.Update`` ``IPPool``), else its sender
domain's (``EmailGateway.UpdateDomain`` ``IPPool``), else the account's pool named
``default``; a pool that is gone, or has no address left, is passed over for the next,
and after the last come the machine's shared addresses (``SENDING_ADDRESSES``), so that
no accepted message is stranded by a change of pools. Within a pool each message takes
one address, as often as its weight says, among those under their warm-up caps
(``domain.warmup``). When every address of the pool is at its cap, the message waits:
``Message.Postponed`` to the first hour with room not yet promised to the messages
postponed before it, spread over that hour; never a failure.

The warm-up counts are this process's: with several delivery processes sharing a pool,
each keeps the caps on its own (the README says so).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.ip_pools import DEFAULT_POOL, PoolMember, SendingAddresses, sending_addresses_id
from domain.routing import SourceAddress
from domain.warmup import WarmUpSchedule
from engine.application import Sendstream

_RECHECK_SECONDS = 2.0  # a change of pools reaches delivery within this


@dataclass(frozen=True)
class Postpone:
    """No address of the pool has room: wait until ``until``."""

    until: datetime
    reason: str


@dataclass
class _Counts:
    hour: datetime
    in_hour: int = 0
    day: datetime | None = None
    in_day: int = 0


class WarmUpLedger:
    """Messages sent from each warming-up address this hour and this day (UTC)."""

    def __init__(self, schedule: WarmUpSchedule) -> None:
        self._schedule = schedule
        self._counts: dict[str, _Counts] = {}
        # pool (its addresses) → hour → messages postponed to it
        self._bookings: dict[tuple[str, ...], dict[datetime, int]] = {}

    def has_room(self, member: PoolMember, now: datetime) -> bool:
        """True when ``member`` is under its caps of this hour and this day."""
        if member.warmup_from is None:
            return True
        per_hour, per_day = self._caps(member, now)
        counts = self._current(member.source.address, now)
        return not (per_day and counts.in_day >= per_day) and not (
            per_hour and counts.in_hour >= per_hour
        )

    def book(self, members: list[PoolMember], now: datetime) -> datetime:
        """When a message that finds every member at its cap should come back: the first
        hour with room not yet promised to the messages postponed before it, spread over
        that hour, so that a backlog is put off once, not re-queued every hour."""
        pool = tuple(sorted(member.source.address for member in members))
        bookings = self._bookings.setdefault(pool, {})
        this_hour = now.replace(minute=0, second=0, microsecond=0)
        for slot in [slot for slot in bookings if slot < this_hour]:
            del bookings[slot]
        slot = this_hour + timedelta(hours=1)
        for _ in range(24 * 60):  # a pool with no room for 60 days is put off that long
            hourly, daily = self._room(members, slot, now)
            day = slot.replace(hour=0)
            booked_today = sum(n for s, n in bookings.items() if s.replace(hour=0) == day)
            booked = bookings.get(slot, 0)
            if booked < hourly and booked_today < daily:
                bookings[slot] = booked + 1
                return slot + timedelta(seconds=3600 * booked // max(1, hourly))
            slot += timedelta(hours=1)
        return slot

    def _room(self, members: list[PoolMember], slot: datetime, now: datetime) -> tuple[int, int]:
        """How many messages the members may send in the hour ``slot`` and on its day,
        after what they have sent today (a large number stands for no cap)."""
        unlimited = 1 << 30
        hourly = daily = 0
        for member in members:
            per_hour, per_day = self._caps(member, slot)
            per_hour, per_day = per_hour or unlimited, per_day or unlimited
            if slot.date() == now.date():
                per_day = max(0, per_day - self._current(member.source.address, now).in_day)
            hourly += min(per_hour, per_day)
            daily += per_day
        return hourly, daily

    def count(self, member: PoolMember, now: datetime) -> None:
        if member.warmup_from is None:
            return
        counts = self._current(member.source.address, now)
        counts.in_hour += 1
        counts.in_day += 1

    def _caps(self, member: PoolMember, at: datetime) -> tuple[int, int]:
        if member.warmup_from is None:
            return 0, 0
        return self._schedule.caps(self._schedule.day_of(member.warmup_from, at.date()))

    def _current(self, address: str, now: datetime) -> _Counts:
        hour = now.replace(minute=0, second=0, microsecond=0)
        day = hour.replace(hour=0)
        counts = self._counts.get(address)
        if counts is None:
            counts = self._counts[address] = _Counts(hour=hour, day=day)
        if counts.day != day:
            counts.day, counts.in_day = day, 0
        if counts.hour != hour:
            counts.hour, counts.in_hour = hour, 0
        return counts


class SourceChooser:
    def __init__(
        self,
        app: Sendstream,
        shared: tuple[SourceAddress, ...],
        schedule: WarmUpSchedule,
        rng: random.Random | None = None,
    ) -> None:
        self._app = app
        self._shared = shared
        self._ledger = WarmUpLedger(schedule)
        self._rng = rng or random.Random()
        self._accounts: dict[UUID, tuple[float, SendingAddresses | None]] = {}

    def choose(
        self, account_id: UUID, pools: Sequence[str], now: datetime | None = None
    ) -> tuple[SourceAddress, ...] | Postpone:
        """The addresses the message may leave from (one, or the shared ones), or when to
        try again. ``pools``: the campaign's and the domain's pool names ("" for none), in
        that order; the first that has addresses is used, else the account's default."""
        members: list[PoolMember] = []
        for name in (*(name for name in pools if name), DEFAULT_POOL):
            members = self._members(account_id, name)
            if members:
                break
        if not members:
            return self._shared
        now = now or datetime.now(UTC)
        ready = [member for member in members if self._ledger.has_room(member, now)]
        if not ready:
            until = self._ledger.book(members, now)
            addresses = ", ".join(member.source.address for member in members)
            reason = (
                f"warm-up: every address of the pool ({addresses}) has sent its cap; "
                f"waiting until {until:%Y-%m-%d %H:%M} UTC"
            )
            return Postpone(until, reason)
        chosen = self._rng.choices(ready, weights=[m.source.weight for m in ready])[0]
        self._ledger.count(chosen, now)
        return (chosen.source,)

    def prefetch(self, account_ids: set[UUID]) -> None:
        """Read the accounts' addresses afresh where they are older than a moment; called
        off the event loop, so that ``choose`` need not read the store."""
        now = time.monotonic()
        for account_id in account_ids:
            cached = self._accounts.get(account_id)
            if cached is None or now - cached[0] >= _RECHECK_SECONDS:
                self._load(account_id)

    def _members(self, account_id: UUID, pool: str) -> list[PoolMember]:
        cached = self._accounts.get(account_id)
        addresses = cached[1] if cached is not None else self._load(account_id)
        return addresses.members(pool) if addresses is not None else []

    def _load(self, account_id: UUID) -> SendingAddresses | None:
        now = time.monotonic()
        try:
            found: SendingAddresses | None = self._app._get(
                sending_addresses_id(account_id), SendingAddresses
            )
        except AggregateNotFoundError:
            found = None
        if len(self._accounts) > 10_000:
            self._accounts.clear()
        self._accounts[account_id] = (now, found)
        return found
