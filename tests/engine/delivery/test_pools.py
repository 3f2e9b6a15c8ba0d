"""Each message's sending address: its pool, the fallbacks, and the warm-up caps."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from domain.ip_pools import SendingAddresses, sending_addresses_id
from domain.routing import SourceAddress
from domain.warmup import WarmUpSchedule, WarmUpStep
from engine.application import Sendstream
from engine.delivery.pools import Postpone, SourceChooser
from engine.settings import Settings

SHARED = (SourceAddress("192.0.2.100", "shared.example"),)
NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
# day 1: 3 an hour and 5 a day; day 2: no cap
SCHEDULE = WarmUpSchedule((WarmUpStep(1, 3, 5), WarmUpStep(2, 0, 0)))


@pytest.fixture
def app(tmp_path: Path) -> Sendstream:
    return Sendstream(Settings(SENDSTREAM_DATA_DIR=tmp_path))


def setup(app: Sendstream, *, warm: bool = False) -> SendingAddresses:
    account = uuid4()
    found = SendingAddresses(id=sending_addresses_id(account), account_id=account)
    found.register("192.0.2.1", "one.example", NOW, NOW.date() if warm else None)
    found.register("192.0.2.2", "two.example", NOW, NOW.date() if warm else None)
    found.save_pool("default", [("192.0.2.1", 1)], new=True)
    found.save_pool("both", [("192.0.2.1", 3), ("192.0.2.2", 1)], new=True)
    app.save(found)
    return found


def test_the_pool_named_else_the_accounts_default_else_the_machines(app: Sendstream) -> None:
    found = setup(app)
    chooser = SourceChooser(app, SHARED, SCHEDULE, random.Random(1))
    assert chooser.choose(found.account_id, (), NOW) == (SourceAddress("192.0.2.1", "one.example"),)
    picks = Counter(chooser.choose(found.account_id, ("Both",), NOW)[0] for _ in range(400))  # type: ignore[index]
    assert {source.address for source in picks} == {"192.0.2.1", "192.0.2.2"}
    assert 250 < sum(n for s, n in picks.items() if s.address == "192.0.2.1") < 350  # 3 to 1
    # a campaign's pool gone: the domain's; both gone: the account's default
    assert chooser.choose(found.account_id, ("gone", "both"), NOW)[0].address in (  # type: ignore[index]
        "192.0.2.1", "192.0.2.2",
    )  # fmt: skip
    assert chooser.choose(found.account_id, ("gone",), NOW)[0].address == "192.0.2.1"  # type: ignore[index]
    # an account with no addresses of its own: the machine's
    assert chooser.choose(uuid4(), (), NOW) == SHARED
    assert chooser.choose(uuid4(), ("anything",), NOW) == SHARED


def test_a_change_of_pools_is_seen_after_a_prefetch(app: Sendstream) -> None:
    found = setup(app)
    chooser = SourceChooser(app, SHARED, SCHEDULE)
    assert chooser.choose(found.account_id, (), NOW)[0].address == "192.0.2.1"  # type: ignore[index]
    found.delete_pool("default")
    app.save(found)
    chooser.prefetch({found.account_id})  # within the recheck time: still the cached view
    assert chooser.choose(found.account_id, (), NOW)[0].address == "192.0.2.1"  # type: ignore[index]
    chooser._accounts.clear()
    chooser.prefetch({found.account_id})
    assert chooser.choose(found.account_id, (), NOW) == SHARED


def test_warming_addresses_wait_at_their_caps_and_never_fail(app: Sendstream) -> None:
    found = setup(app, warm=True)
    chooser = SourceChooser(app, SHARED, SCHEDULE)
    sent = [chooser.choose(found.account_id, ("both",), NOW) for _ in range(6)]
    assert all(isinstance(choice, tuple) for choice in sent)  # 3 an hour from each
    assert Counter(choice[0].address for choice in sent) == {"192.0.2.1": 3, "192.0.2.2": 3}  # type: ignore[index]
    full = chooser.choose(found.account_id, ("both",), NOW)
    assert isinstance(full, Postpone)
    assert full.until == datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert "192.0.2.1, 192.0.2.2" in full.reason and "2026-12-03 10:00 UTC" in full.reason
    # the next hour: two more from each reach the daily cap of 5
    later = NOW + timedelta(hours=1)
    assert sum(isinstance(chooser.choose(found.account_id, ("both",), later), tuple)
               for _ in range(6)) == 4  # fmt: skip
    tomorrow = chooser.choose(found.account_id, ("both",), later)
    assert isinstance(tomorrow, Postpone)
    assert tomorrow.until == datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
    # day 2 of warm-up has no cap
    next_day = datetime(2026, 12, 4, 0, 5, tzinfo=UTC)
    assert all(
        isinstance(chooser.choose(found.account_id, ("both",), next_day), tuple) for _ in range(50)
    )


def test_an_address_not_warming_up_is_never_capped(app: Sendstream) -> None:
    found = setup(app)
    found.change_address("192.0.2.2", "two.example", date(2026, 12, 3))
    app.save(found)
    chooser = SourceChooser(app, SHARED, SCHEDULE)
    picks = [chooser.choose(found.account_id, ("both",), NOW) for _ in range(100)]
    assert all(isinstance(choice, tuple) for choice in picks)
    assert Counter(c[0].address for c in picks)["192.0.2.2"] <= 3  # type: ignore[index]


def test_a_backlog_is_put_off_once_spread_over_the_hours_with_room(app: Sendstream) -> None:
    account = uuid4()
    found = SendingAddresses(id=sending_addresses_id(account), account_id=account)
    for address in ("192.0.2.1", "192.0.2.2"):
        found.register(address, "warm.example", NOW, NOW.date())
    found.save_pool("default", [("192.0.2.1", 1), ("192.0.2.2", 1)], new=True)
    app.save(found)
    # 2 an hour from each, 7 a day from each
    chooser = SourceChooser(app, SHARED, WarmUpSchedule((WarmUpStep(1, 2, 7),)))
    assert all(isinstance(chooser.choose(account, (), NOW), tuple) for _ in range(4))
    untils = [chooser.choose(account, (), NOW) for _ in range(12)]
    assert all(isinstance(u, Postpone) for u in untils)
    at = [u.until.strftime("%d %H:%M") for u in untils]  # type: ignore[union-attr]
    assert at == [
        # 10 more today (14 a day less the 4 sent): 4 at 10:00, 4 at 11:00, 2 at 12:00
        "03 10:00", "03 10:15", "03 10:30", "03 10:45",
        "03 11:00", "03 11:15", "03 11:30", "03 11:45",
        "03 12:00", "03 12:15",
        # then tomorrow from midnight
        "04 00:00", "04 00:15",
    ]  # fmt: skip
