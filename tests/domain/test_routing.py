"""The mail routing rules: RFC 5321 5.1 (MX order), RFC 7505 (null MX), refused addresses."""

from __future__ import annotations

import random
import re

import pytest

from domain.routing import (
    MxRecord,
    SourceAddress,
    hosts_in_order,
    is_null_mx,
    parse_sources,
    pick_source,
    refused_address,
)


def test_hosts_go_lowest_preference_first() -> None:
    records = [MxRecord(30, "c"), MxRecord(10, "a"), MxRecord(20, "b")]
    assert hosts_in_order(records, random.Random(1)) == ["a", "b", "c"]


def test_equal_preferences_are_shuffled_within_their_rank_only() -> None:
    records = [MxRecord(20, "x"), MxRecord(20, "y"), MxRecord(10, "a"), MxRecord(10, "b")]
    seen = {tuple(hosts_in_order(records, random.Random(seed))) for seed in range(50)}
    assert seen == {("a", "b", "x", "y"), ("b", "a", "x", "y"), ("a", "b", "y", "x"),
                    ("b", "a", "y", "x")}  # fmt: skip


def test_a_host_named_twice_is_tried_once_at_its_best_preference() -> None:
    records = [MxRecord(20, "a"), MxRecord(10, "a"), MxRecord(15, "b")]
    assert hosts_in_order(records, random.Random(0)) == ["a", "b"]


@pytest.mark.parametrize(
    ("records", "null"),
    [
        ([MxRecord(0, "")], True),
        ([MxRecord(10, "")], False),  # not preference 0: not the RFC 7505 record
        ([MxRecord(0, ""), MxRecord(10, "mx.example")], False),  # a mistake: use the others
        ([MxRecord(10, "mx.example")], False),
        ([], False),
    ],
)
def test_null_mx(records: list[MxRecord], null: bool) -> None:
    assert is_null_mx(records) is null


def test_a_null_target_beside_real_hosts_is_never_tried() -> None:
    records = [MxRecord(0, ""), MxRecord(10, "mx.example")]
    assert hosts_in_order(records, random.Random(0)) == ["mx.example"]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.5.4", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address to refuse, not to bind)
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),  # an IPv4-mapped address is its IPv4 address
        ("100.64.0.1", "not a global"),  # shared address space (RFC 6598)
        ("not-an-ip", "not an IP address"),
    ],
)
def test_addresses_no_public_mx_has_are_refused(address: str, kind: str) -> None:
    reason = refused_address(address)
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860::8888"])
def test_public_addresses_are_fine(address: str) -> None:
    assert refused_address(address) is None


def test_sending_addresses_are_read_with_names_and_weights() -> None:
    assert parse_sources(" 192.0.2.1=MTA1.example.com , 2001:db8::1=mta2.example.com*3,") == (
        SourceAddress("192.0.2.1", "mta1.example.com", 1),
        SourceAddress("2001:db8::1", "mta2.example.com", 3),
    )
    assert parse_sources("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.0.2.300=mta.example.com", "InvalidIPAddressException"),
        ("192.0.2.1=mta.example.com,192.0.2.1=other.example.com", "DuplicateIPAddressException"),
        ("192.0.2.1", "give each address its EHLO name"),
        ("192.0.2.1=not a name", "give each address its EHLO name"),
        ("192.0.2.1=mta.example.com*0", "the weight is 1 to 1000"),
        ("192.0.2.1=mta.example.com*x", "the weight after * is a whole number"),
    ],
)
def test_bad_sending_addresses_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_sources(text)


def test_sources_are_picked_by_weight() -> None:
    sources = parse_sources("192.0.2.1=a.example*1,192.0.2.2=b.example*4")
    rng = random.Random(3)
    picked = [pick_source(sources, rng).address for _ in range(5000)]
    assert 0.75 < picked.count("192.0.2.2") / len(picked) < 0.85
