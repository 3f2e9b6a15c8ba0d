"""Which records a domain needs, and which published values count as the record."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.dns_records import (
    DKIM,
    DMARC,
    PURPOSES,
    RETURN_PATH,
    SPF,
    TRACKING,
    VERIFICATION,
    DnsRecord,
    record_is_published,
    required_records,
)

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx1Yz+abc/def=="


def records(**overrides: str) -> dict[str, DnsRecord]:
    arguments = {
        "verification_token": "tok-123",
        "dkim_selector": "ss1",
        "dkim_public_key": KEY,
        "spf_include": "spf.sendstream.example",
        "mail_hostname": "mail.sendstream.example",
        "tracking_subdomain": "",
        **overrides,
    }
    domain = arguments.pop("domain_name", "Example.COM.")
    return {r.purpose: r for r in required_records(domain, **arguments)}


def test_required_records_are_the_documented_six() -> None:
    by_purpose = records()
    assert list(by_purpose) == list(PURPOSES)
    assert by_purpose[VERIFICATION] == DnsRecord(
        VERIFICATION, "_sendstream.example.com", "TXT", "sendstream-verification=tok-123"
    )
    assert by_purpose[SPF] == DnsRecord(
        SPF, "example.com", "TXT", "v=spf1 include:spf.sendstream.example ~all"
    )
    assert by_purpose[DKIM] == DnsRecord(
        DKIM, "ss1._domainkey.example.com", "TXT", f"v=DKIM1; k=rsa; p={KEY}"
    )
    assert by_purpose[DMARC] == DnsRecord(DMARC, "_dmarc.example.com", "TXT", "v=DMARC1; p=none;")
    assert by_purpose[TRACKING] == DnsRecord(
        TRACKING, "track.example.com", "CNAME", "mail.sendstream.example"
    )
    assert by_purpose[RETURN_PATH] == DnsRecord(
        RETURN_PATH, "bounces.example.com", "CNAME", "mail.sendstream.example"
    )


@pytest.mark.parametrize("subdomain", ["click", "Click.", "click.example.com"])
def test_tracking_subdomain_is_one_label_under_the_domain(subdomain: str) -> None:
    assert records(tracking_subdomain=subdomain)[TRACKING].host == "click.example.com"


def test_a_wrapped_public_key_is_published_unwrapped() -> None:
    wrapped = KEY[:20] + "\n  " + KEY[20:]
    assert records(dkim_public_key=wrapped)[DKIM].value.endswith(f"p={KEY}")


# --- verification ----------------------------------------------------------------------


def test_verification_needs_the_exact_token() -> None:
    record = records()[VERIFICATION]
    assert record_is_published(record, ["other=1", " sendstream-verification=tok-123 "])
    assert not record_is_published(record, ["sendstream-verification=tok-1234"])
    assert not record_is_published(record, ["sendstream-verification=TOK-123"])
    assert not record_is_published(record, [])


# --- SPF -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "published",
    [
        "v=spf1 include:spf.sendstream.example ~all",
        "v=spf1 include:_spf.google.com include:spf.sendstream.example -all",
        "V=SPF1 ip4:192.0.2.0/24 +include:SPF.Sendstream.Example. mx ?all",
        "v=spf1   include:spf.sendstream.example",
    ],
)
def test_spf_that_includes_ours_verifies(published: str) -> None:
    assert record_is_published(records()[SPF], ["google-site-verification=xyz", published])


@pytest.mark.parametrize(
    "published",
    [
        "v=spf1 include:spf.other.example ~all",
        "v=spf1 include:spf.sendstream.example.evil.test ~all",
        "v=spf1 -include:spf.sendstream.example ~all",  # a failing qualifier authorises nothing
        "v=spf1 ~include:spf.sendstream.example ~all",
        "v=spf10 include:spf.sendstream.example ~all",
        "spf1 include:spf.sendstream.example ~all",
        "include:spf.sendstream.example",
    ],
)
def test_spf_without_our_include_fails(published: str) -> None:
    assert not record_is_published(records()[SPF], [published])


def test_two_spf_records_fail_even_if_one_includes_ours() -> None:
    """Receivers treat two SPF records as a permanent error (RFC 7208 4.5)."""
    ours = "v=spf1 include:spf.sendstream.example ~all"
    assert not record_is_published(records()[SPF], [ours, "v=spf1 mx -all"])


@given(
    before=st.lists(st.sampled_from(["mx", "a", "ip4:192.0.2.1", "include:_spf.mail.test"])),
    after=st.lists(st.sampled_from(["ip6:2001:db8::1", "exists:%{i}.x.test", "include:a.test"])),
    ending=st.sampled_from(["~all", "-all", "?all", ""]),
)
def test_spf_verifies_wherever_our_include_sits(
    before: list[str], after: list[str], ending: str
) -> None:
    terms = ["v=spf1", *before, "include:spf.sendstream.example", *after, ending]
    assert record_is_published(records()[SPF], [" ".join(terms)])


# --- DKIM ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "published",
    [
        f"v=DKIM1; k=rsa; p={KEY}",
        f"p={KEY}",
        f"v=DKIM1;k=rsa;t=s;p={KEY};",
        f"v=DKIM1; k=rsa; p={KEY[:30]} {KEY[30:]}",
        f"v=DKIM1; h=sha256; k=RSA; p = {KEY}",
    ],
)
def test_dkim_with_our_key_verifies(published: str) -> None:
    assert record_is_published(records()[DKIM], ["unrelated", published])


@pytest.mark.parametrize(
    "published",
    [
        f"v=DKIM1; k=rsa; p={KEY[:-3]}",
        f"v=DKIM1; k=rsa; p={KEY.lower()}",  # base64 is case-sensitive
        "v=DKIM1; k=rsa; p=",  # a revoked key
        f"v=DKIM2; k=rsa; p={KEY}",
        f"v=DKIM1; k=ed25519; p={KEY}",
        f"v=DKIM1; k=rsa; s={KEY}",
    ],
)
def test_dkim_with_another_key_fails(published: str) -> None:
    assert not record_is_published(records()[DKIM], [published])


@given(
    cuts=st.lists(st.integers(0, len(KEY)), max_size=6), blank=st.sampled_from([" ", "\t", "  "])
)
def test_dkim_key_wrapped_anywhere_verifies(cuts: list[int], blank: str) -> None:
    """Providers wrap long keys at arbitrary points; whitespace in p= is folding."""
    pieces, start = [], 0
    for cut in sorted(cuts):
        pieces.append(KEY[start:cut])
        start = cut
    pieces.append(KEY[start:])
    assert record_is_published(records()[DKIM], [f"v=DKIM1; k=rsa; p={blank.join(pieces)}"])


# --- DMARC -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "published", ["v=DMARC1; p=none;", "v=dmarc1; p=reject; rua=mailto:d@example.com", "v=DMARC1"]
)
def test_any_dmarc_policy_verifies(published: str) -> None:
    assert record_is_published(records()[DMARC], [published])


@pytest.mark.parametrize(
    "found", [[], ["v=spf1 -all"], ["v=DMARC10; p=none"], ["p=none; v=DMARC1"]]
)
def test_missing_dmarc_fails(found: list[str]) -> None:
    assert not record_is_published(records()[DMARC], found)


def test_two_dmarc_records_fail() -> None:
    """Receivers apply no policy when there are two (RFC 7489 6.6.3)."""
    assert not record_is_published(records()[DMARC], ["v=DMARC1; p=none", "v=DMARC1; p=reject"])


# --- CNAME and MX ----------------------------------------------------------------------


@pytest.mark.parametrize("target", ["mail.sendstream.example", "MAIL.Sendstream.example."])
def test_cname_matches_ignoring_case_and_final_dot(target: str) -> None:
    assert record_is_published(records()[TRACKING], [target])
    assert record_is_published(records()[RETURN_PATH], [target])


@pytest.mark.parametrize(
    "found", [[], ["sendstream.example"], ["mail.sendstream.example.evil.test"]]
)
def test_cname_elsewhere_fails(found: list[str]) -> None:
    assert not record_is_published(records()[TRACKING], found)


def test_mx_matches_any_exchange() -> None:
    record = DnsRecord("inbound", "example.com", "MX", "mx.sendstream.example")
    assert record_is_published(record, ["mx1.other.test", "MX.sendstream.example."])
    assert not record_is_published(record, ["mx1.other.test"])


@given(
    domain=st.from_regex(
        r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?(\.[A-Za-z]{2,6}){1,2}\.?", fullmatch=True
    ),
    selector=st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
)
def test_required_records_publish_themselves(domain: str, selector: str) -> None:
    """What we tell the customer to publish is, verbatim, what we accept."""
    for record in required_records(
        domain,
        verification_token="t",
        dkim_selector=selector,
        dkim_public_key=KEY,
        spf_include="spf.sendstream.example",
        mail_hostname="mail.sendstream.example",
    ):
        assert record.host == record.host.lower()
        assert not record.host.endswith(".")
        assert record.host.endswith(domain.lower().rstrip("."))
        assert record_is_published(record, [record.value])
        assert not record_is_published(record, [])
