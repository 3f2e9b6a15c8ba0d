"""Sending addresses, pools and warm-up: the rules, without I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import uuid4

import pytest

from domain.ip_pools import (
    AddressClaim,
    PoolError,
    SendingAddresses,
    address_claim_id,
    canonical_address,
    parse_members,
    sending_addresses_id,
    unusable_source,
)
from domain.routing import SourceAddress
from domain.shaping import ShapingFileError, parse_shaping
from domain.warmup import DEFAULT_WARMUP, WarmUpSchedule, WarmUpStep

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


def addresses(*registered: str) -> SendingAddresses:
    account = uuid4()
    found = SendingAddresses(id=sending_addresses_id(account), account_id=account)
    for address in registered:
        found.register(address, f"mta-{address.replace('.', '-')}.example", NOW, None)
    return found


def test_addresses_are_written_one_way() -> None:
    assert canonical_address(" 2001:DB8:0::1 ") == "2001:db8::1"
    assert canonical_address("192.0.2.1") == "192.0.2.1"
    assert canonical_address("::ffff:192.0.2.1") == "192.0.2.1"  # IPv4 written as IPv6
    for bad in ("", "192.0.2", "192.0.2.256", "mx.example.com", "192.0.2.1\x00", "::g"):
        assert canonical_address(bad) is None


def test_some_addresses_can_never_be_a_source_of_mail() -> None:
    for address in ("0.0.0.0", "::", "224.0.0.1", "ff02::1", "169.254.1.1", "fe80::1"):  # noqa: S104
        assert unusable_source(address, allow_loopback=True) is not None
    assert unusable_source("127.0.0.2", allow_loopback=False) == "127.0.0.2 is a loopback address"
    assert unusable_source("127.0.0.2", allow_loopback=True) is None
    assert unusable_source("203.0.113.5", allow_loopback=False) is None


def test_pool_members_carry_weights() -> None:
    assert parse_members("192.0.2.1*3, 192.0.2.2 ,") == [("192.0.2.1", 3), ("192.0.2.2", 1)]
    assert parse_members("2001:db8::1*1000") == [("2001:db8::1", 1000)]


@pytest.mark.parametrize(
    "text",
    ["", " , ", "192.0.2.1*0", "192.0.2.1*1001", "192.0.2.1*x", "192.0.2.1*\u0661", "host*2",
     "192.0.2.1, 192.0.2.1", "192.0.2.1*-1", "192.0.2.1*" + "9" * 5000, "192.0.2.1*01000"],
)  # fmt: skip
def test_bad_pool_members_are_refused(text: str) -> None:
    with pytest.raises(PoolError) as refused:
        parse_members(text)
    assert refused.value.field == "IPAddresses"


def test_a_pool_names_only_registered_addresses_and_is_named_once() -> None:
    found = addresses("192.0.2.1", "192.0.2.2")
    assert found.save_pool("Dedicated", [("192.0.2.1", 2), ("192.0.2.2", 1)], new=True) == (
        "Dedicated"
    )
    with pytest.raises(PoolError, match="exists"):
        found.save_pool("dedicated", [("192.0.2.1", 1)], new=True)
    with pytest.raises(PoolError, match="not registered"):
        found.save_pool("other", [("192.0.2.9", 1)], new=True)
    with pytest.raises(PoolError, match="no pool"):
        found.save_pool("missing", [("192.0.2.1", 1)], new=False)
    for bad in ("", "-x", "a b", "x" * 64, "ünïcode"):
        with pytest.raises(PoolError):
            found.save_pool(bad, [("192.0.2.1", 1)], new=True)
    # replaced under the name it was first given, whatever the case of the update
    assert found.save_pool("DEDICATED", [("192.0.2.2", 5)], new=False) == "Dedicated"
    assert found.pools == {"Dedicated": [["192.0.2.2", 5]]}


def test_members_are_ready_to_send_from_and_a_released_address_leaves_its_pools() -> None:
    found = addresses("192.0.2.1", "192.0.2.2")
    found.change_address("192.0.2.2", "warm.example", date(2026, 12, 1))
    found.save_pool("p", [("192.0.2.1", 2), ("192.0.2.2", 1)], new=True)
    members = found.members("P")
    assert [m.source for m in members] == [
        SourceAddress("192.0.2.1", "mta-192-0-2-1.example", 2),
        SourceAddress("192.0.2.2", "warm.example", 1),
    ]
    assert [m.warmup_from for m in members] == [None, date(2026, 12, 1)]
    found.release("192.0.2.1")
    assert [m.source.address for m in found.members("p")] == ["192.0.2.2"]
    assert found.members("nothing") == []
    with pytest.raises(PoolError):
        found.release("192.0.2.1")
    with pytest.raises(PoolError):
        found.register("192.0.2.2", "x.example", NOW, None)


def test_the_history_rebuilds_the_same_addresses_and_pools() -> None:
    found = addresses("192.0.2.1")
    found.save_pool("p", [("192.0.2.1", 1)], new=True)
    found.delete_pool("p")
    found.save_pool("q", [("192.0.2.1", 4)], new=True)
    events = found.collect_events()
    rebuilt = None
    for event in events:
        rebuilt = event.mutate(rebuilt)
    assert isinstance(rebuilt, SendingAddresses)
    assert (rebuilt.addresses, rebuilt.pools) == (found.addresses, found.pools)


def test_an_address_claim_is_released_and_taken_again() -> None:
    first, second = uuid4(), uuid4()
    claim = AddressClaim(id=address_claim_id("192.0.2.1"), address="192.0.2.1", account_id=first)
    assert not claim.is_free
    claim.release()
    assert claim.is_free
    claim.reclaim(second)
    assert claim.account_id == second
    assert address_claim_id("192.0.2.1") != address_claim_id("192.0.2.2")


def test_warm_up_caps_rise_by_day_until_there_is_none() -> None:
    schedule = DEFAULT_WARMUP
    assert schedule.caps(1) == (50, 500)
    assert schedule.caps(4) == (200, 2_000)  # day 3's step holds until day 5
    assert schedule.caps(29) == (25_000, 250_000)
    assert schedule.caps(30) == (0, 0) and schedule.finished(30)
    assert not schedule.finished(29)
    assert schedule.day_of(date(2026, 12, 1), date(2026, 12, 1)) == 1
    assert schedule.day_of(date(2026, 12, 1), date(2026, 12, 3)) == 3
    assert schedule.day_of(date(2026, 12, 5), date(2026, 12, 3)) == 1  # a clock behind


def test_the_shipped_shaping_file_carries_the_default_warm_up() -> None:
    from importlib import resources

    text = resources.files("engine.delivery").joinpath("shaping.toml").read_text()
    assert parse_shaping(text).warmup == DEFAULT_WARMUP


def test_a_warm_up_schedule_is_read_from_the_shaping_file() -> None:
    rules = parse_shaping(
        "[[warmup]]\nfrom_day = 1\nper_hour = 2\nper_day = 3\n"
        "[[warmup]]\nfrom_day = 4\nper_hour = 0\nper_day = 0\n"
    )
    assert rules.warmup == WarmUpSchedule((WarmUpStep(1, 2, 3), WarmUpStep(4, 0, 0)))
    assert parse_shaping("[default]\n").warmup == DEFAULT_WARMUP


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[warmup]\nfrom_day = 1\n", "line 1: warm-up steps are [[warmup]] tables"),
        ("[[warmup]]\nfrom_day = 2\nper_hour = 1\nper_day = 1\n", "the first [[warmup]] is"),
        ("[[warmup]]\nfrom_day = 1\nper_hour = -1\nper_day = 1\n", "per_hour must be"),
        ("[[warmup]]\nfrom_day = 1\nper_hour = 1.5\nper_day = 1\n", "per_hour must be"),
        ("[[warmup]]\nfrom_day = 1\nper_hour = 1\n", "per_day must be"),
        ("[[warmup]]\nfrom_day = 1\nper_hour = 1\nper_day = 1\nper_week = 1\n",
         "unknown setting 'per_week'"),
        ("[[warmup]]\nfrom_day = 1\nper_hour = 1\nper_day = 1\n"
         "[[warmup]]\nfrom_day = 1\nper_hour = 1\nper_day = 1\n", "days rise"),
    ],
)  # fmt: skip
def test_a_bad_warm_up_schedule_stops_start_up_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ShapingFileError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_shaping(text)
