"""DNS lookups and record checks against a real DNS server (dnsmasq on loopback)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from adapters.dns import DnsLookup
from domain.dns_records import DKIM, PURPOSES, SPF, DnsRecord, required_records
from engine.accounts.dns_check import check_records
from tests.services import DnsEntry, DnsmasqService, free_port

DnsServer = Callable[..., DnsmasqService]

SPF_INCLUDE = "spf.sendstream.test"
MAIL_HOST = "mail.sendstream.test"
# A real 2048-bit key's p= value is ~390 characters: more than one 255-byte TXT string.
KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "q" * 340 + "IDAQAB"


def required(domain: str, key: str = KEY) -> list[DnsRecord]:
    return required_records(
        domain,
        verification_token=f"token-{domain}",
        dkim_selector="ss1",
        dkim_public_key=key,
        spf_include=SPF_INCLUDE,
        mail_hostname=MAIL_HOST,
    )


def published(records: list[DnsRecord]) -> list[DnsEntry]:
    return [(r.host, r.type, r.value) for r in records]


def status(lookup: DnsLookup, records: list[DnsRecord]) -> dict[str, bool]:
    return {record.purpose: ok for record, ok in check_records(lookup, records)}


def test_right_records_verify_and_wrong_or_missing_ones_do_not(dns_server: DnsServer) -> None:
    right = required("right.test")
    wrong = required("wrong.test")
    wrong_values: list[DnsEntry] = [
        ("_sendstream.wrong.test", "TXT", "sendstream-verification=someone-elses-token"),
        ("wrong.test", "TXT", "v=spf1 include:spf.other.test ~all"),
        ("ss1._domainkey.wrong.test", "TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqOTHERKEY"),
        ("_dmarc.wrong.test", "TXT", "v=spf1 -all"),
        ("track.wrong.test", "CNAME", "track.other.test"),
        ("bounces.wrong.test", "CNAME", "sendstream.test"),
    ]
    # missing.test has only an unrelated record, so its zone exists but the names do not.
    server = dns_server(
        [*published(right), *wrong_values, ("www.missing.test", "CNAME", "host.test")]
    )
    lookup = DnsLookup(server.resolver)

    assert status(lookup, right) == dict.fromkeys(PURPOSES, True)
    assert status(lookup, wrong) == dict.fromkeys(PURPOSES, False)
    assert status(lookup, required("missing.test")) == dict.fromkeys(PURPOSES, False)
    # A zone the server knows nothing about: REFUSED, which is just as unpublished.
    assert status(lookup, required("elsewhere.example")) == dict.fromkeys(PURPOSES, False)


def test_customer_spf_with_other_senders_and_other_txt_at_the_apex(
    dns_server: DnsServer,
) -> None:
    records = required("shop.test")
    server = dns_server(
        [
            ("shop.test", "TXT", "google-site-verification=abc123"),
            ("shop.test", "TXT", f"v=spf1 mx include:_spf.google.com include:{SPF_INCLUDE} -all"),
            ("shop.test", "MX", "aspmx.l.google.test"),
        ]
    )
    results = status(DnsLookup(server.resolver), records)
    assert results[SPF] is True


def test_dkim_key_split_across_txt_strings(dns_server: DnsServer) -> None:
    records = required("split.test")
    dkim = next(r for r in records if r.purpose == DKIM)
    value = dkim.value
    server = dns_server(
        [(dkim.host, "TXT", (value[:17], value[17:200], value[200:201], value[201:]))]
    )
    lookup = DnsLookup(server.resolver)
    assert lookup.values(dkim.host, "TXT") == [value]
    assert status(lookup, [dkim]) == {DKIM: True}


def test_long_txt_cut_at_255_bytes_comes_back_whole(dns_server: DnsServer) -> None:
    """Also past 512 bytes, where a reply no longer fits classic UDP."""
    value = "v=DKIM1; k=rsa; p=" + "A" * 700
    server = dns_server([("ss1._domainkey.long.test", "TXT", value)])
    assert DnsLookup(server.resolver).values("ss1._domainkey.long.test", "TXT") == [value]


def test_values_by_type(dns_server: DnsServer) -> None:
    server = dns_server(
        [
            ("types.test", "TXT", 'quoted "text", back\\slash; #hash ü'),
            ("types.test", "TXT", "second"),
            ("types.test", "MX", "MX1.Types.Test."),
            ("www.types.test", "CNAME", "Edge.CDN.test"),
        ]
    )
    lookup = DnsLookup(server.resolver)
    assert sorted(lookup.values("types.test", "TXT")) == [
        'quoted "text", back\\slash; #hash ü',
        "second",
    ]
    assert lookup.values("TYPES.test.", "mx") == ["mx1.types.test"]
    assert lookup.values("www.types.test", "CNAME") == ["edge.cdn.test"]
    assert lookup.values("types.test", "CNAME") == []  # the name exists, the type does not
    assert lookup.values("nothing.types.test", "TXT") == []  # NXDOMAIN


def test_records_at_one_name_share_one_query(dns_server: DnsServer) -> None:
    server = dns_server([("shared.test", "TXT", f"v=spf1 include:{SPF_INCLUDE} ~all")])
    spf = next(r for r in required("shared.test") if r.purpose == SPF)
    other = DnsRecord("custom", "shared.test", "TXT", "anything")
    results = check_records(DnsLookup(server.resolver), [spf, other, spf])
    assert [ok for _, ok in results] == [True, False, True]
    assert server.log_tail(200).count("query[TXT] shared.test from") == 1


@pytest.mark.parametrize(
    "host",
    [
        "a" * 64 + ".hostile.test",  # label too long
        ".".join(["abcdefghij"] * 30),  # name too long
        "a..hostile.test",  # empty label
        ".hostile.test",
        "",
        " ",
        ".",
        "bücher.hostile.test",  # U-labels are not stored names
        "ab\x00c.hostile.test",
        "line\nbreak.hostile.test",
        "trailing\\",
        "\\999.hostile.test",  # an escape out of range
        "exists.hostile.test; rm -rf /",
    ],
)
def test_hostile_names_are_simply_not_found(dns_server: DnsServer, host: str) -> None:
    server = dns_server([("exists.hostile.test", "TXT", "here")])
    lookup = DnsLookup(server.resolver)
    for rtype in ("TXT", "CNAME", "MX"):
        assert lookup.values(host, rtype) == []
    assert lookup.values("exists.hostile.test", "TXT") == ["here"]


def test_a_server_that_does_not_answer_is_not_found_within_the_timeout() -> None:
    lookup = DnsLookup(f"127.0.0.1:{free_port()}", timeout=0.3)
    assert lookup.values("anything.test", "TXT") == []


def test_resolver_given_by_name(dns_server: DnsServer) -> None:
    if socket.getaddrinfo("localhost", None)[0][4][0] != "127.0.0.1":
        pytest.skip("localhost resolves to ::1 first here; dnsmasq listens on 127.0.0.1")
    server = dns_server([("named.test", "TXT", "found")])
    assert DnsLookup(f"localhost:{server.port}").values("named.test", "TXT") == ["found"]


@pytest.mark.parametrize("resolver", ["127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x", "[::1]:y"])
def test_bad_resolver_port_fails_at_construction(resolver: str) -> None:
    with pytest.raises(ValueError, match="port"):
        DnsLookup(resolver)


def test_unresolvable_resolver_name_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="does not resolve"):
        DnsLookup("no-such-resolver.invalid:53")


def test_unsupported_record_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        DnsLookup("127.0.0.1:53").values("example.test", "SRV")
