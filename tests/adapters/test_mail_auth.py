"""SPF, DKIM and DMARC of received mail, against a real DNS server (dnsmasq on loopback)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Iterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.mail_auth import AuthResults, check_sender, header_from_domain, organizational_domain
from tests.services import DnsmasqService

DnsServer = Callable[..., DnsmasqService]

SENDER = "sender.test"  # SPF for 127.0.0.1, a DKIM key, DMARC p=reject
OTHER = "other.test"  # SPF and a DKIM key, no DMARC: a signer unrelated to SENDER
NO_DMARC = "nodmarc.test"  # SPF and a DKIM key, no DMARC record anywhere
SELECTOR = "sel1"
FOREIGN_IP = "192.0.2.1"  # TEST-NET-1: in no SPF record


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    """(PKCS#1 PEM private key, the p= value of its public key): one per module."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(public).decode("ascii")


@pytest.fixture
def resolver(dns_server: DnsServer, key: tuple[bytes, str]) -> str:
    _, public = key
    dkim_key = f"v=DKIM1; k=rsa; p={public}"
    server = dns_server(
        [
            (SENDER, "TXT", "v=spf1 ip4:127.0.0.1 -all"),
            (f"{SELECTOR}._domainkey.{SENDER}", "TXT", dkim_key),
            (f"_dmarc.{SENDER}", "TXT", "v=DMARC1; p=reject; sp=quarantine"),
            (f"bounces.{SENDER}", "TXT", "v=spf1 ip4:127.0.0.1 -all"),
            (OTHER, "TXT", "v=spf1 ip4:127.0.0.1 -all"),
            (f"{SELECTOR}._domainkey.{OTHER}", "TXT", dkim_key),
            (NO_DMARC, "TXT", "v=spf1 ip4:127.0.0.1 -all"),
            (f"{SELECTOR}._domainkey.{NO_DMARC}", "TXT", dkim_key),
            (f"_dmarc.strict.{SENDER}", "TXT", "v=DMARC1; p=quarantine; adkim=s; aspf=s"),
            (f"{SELECTOR}._domainkey.badkey.test", "TXT", "v=DKIM1; k=rsa; p=bm90IGEga2V5"),
        ],
        zones=["test"],  # any other .test name: NXDOMAIN at once
    )
    return server.resolver


def message(from_domain: str = SENDER, body: bytes = b"Thanks for the order.\r\n") -> bytes:
    return (
        f"From: Shop <orders@{from_domain}>\r\n"
        "To: support@customer.example\r\n"
        "Subject: Re: order 42\r\n"
        "Date: Thu, 05 Nov 2026 09:30:00 +0000\r\n"
        f"Message-ID: <42@{from_domain}>\r\n"
        "\r\n"
    ).encode() + body


def signed(raw: bytes, key: tuple[bytes, str], domain: str = SENDER) -> bytes:
    signature: bytes = dkim.sign(
        raw,
        SELECTOR.encode(),
        domain.encode(),
        key[0],
        include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"],
    )
    return signature + raw


def check(raw: bytes, resolver: str, *, ip: str = "127.0.0.1", mail_from: str = "") -> AuthResults:
    return check_sender(
        raw,
        client_ip=ip,
        mail_from=mail_from or f"bounce@{SENDER}",
        helo=f"mx.{SENDER}",
        resolver=resolver,
        timeout=2.0,
    )


def test_all_pass(resolver: str, key: tuple[bytes, str]) -> None:
    results = check(signed(message(), key), resolver)

    assert results == AuthResults(
        spf="pass",
        dkim="pass",
        dmarc="pass",
        spf_domain=SENDER,
        dkim_domains=(SENDER,),
        dmarc_policy="reject",
        header_from_domain=SENDER,
    )
    assert results.authentication_results_header("in.sendstream.test") == (
        "in.sendstream.test; spf=pass smtp.mailfrom=sender.test; "
        "dkim=pass header.d=sender.test; dmarc=pass (p=reject) header.from=sender.test"
    )


def test_spf_fails_from_another_ip_but_dkim_carries_dmarc(
    resolver: str, key: tuple[bytes, str]
) -> None:
    results = check(signed(message(), key), resolver, ip=FOREIGN_IP)
    assert (results.spf, results.dkim, results.dmarc) == ("fail", "pass", "pass")


def test_a_tampered_body_fails_dkim(resolver: str, key: tuple[bytes, str]) -> None:
    raw = signed(message(), key).replace(b"Thanks", b"Please pay")

    results = check(raw, resolver)
    assert (results.spf, results.dkim, results.dkim_domains) == ("pass", "fail", ())
    assert results.dmarc == "pass"  # SPF still passes for an aligned MAIL FROM

    results = check(raw, resolver, ip=FOREIGN_IP)
    assert (results.spf, results.dkim, results.dmarc) == ("fail", "fail", "fail")
    assert results.dmarc_policy == "reject"


def test_no_dmarc_record_is_none(resolver: str, key: tuple[bytes, str]) -> None:
    raw = signed(message(NO_DMARC), key, domain=NO_DMARC)
    results = check(raw, resolver, mail_from=f"bounce@{NO_DMARC}")
    assert (results.spf, results.dkim, results.dmarc) == ("pass", "pass", "none")
    assert results.dmarc_policy == ""
    assert "dmarc=none header.from=nodmarc.test" in results.authentication_results_header("mx")


def test_an_unaligned_signature_and_failing_spf_fail_dmarc(
    resolver: str, key: tuple[bytes, str]
) -> None:
    raw = signed(message(SENDER), key, domain=OTHER)
    results = check(raw, resolver, ip=FOREIGN_IP)
    assert (results.spf, results.dkim, results.dkim_domains) == ("fail", "pass", (OTHER,))
    assert (results.dmarc, results.dmarc_policy) == ("fail", "reject")


def test_spf_for_an_unrelated_envelope_domain_does_not_align(
    resolver: str, key: tuple[bytes, str]
) -> None:
    results = check(message(SENDER), resolver, mail_from=f"bounce@{OTHER}")
    assert (results.spf, results.spf_domain, results.dkim) == ("pass", OTHER, "none")
    assert results.dmarc == "fail"


def test_relaxed_alignment_and_the_subdomain_policy(resolver: str, key: tuple[bytes, str]) -> None:
    # From a subdomain without its own record: the organizational domain's record
    # applies, with its sp=; a parent's signature and SPF of another subdomain align.
    raw = signed(message(f"news.{SENDER}"), key)
    results = check(raw, resolver, ip=FOREIGN_IP)
    assert (results.dkim, results.dmarc, results.dmarc_policy) == ("pass", "pass", "quarantine")
    results = check(message(f"news.{SENDER}"), resolver, mail_from=f"b@bounces.{SENDER}")
    assert (results.spf, results.dkim, results.dmarc) == ("pass", "none", "pass")


def test_strict_alignment_wants_the_exact_domain(resolver: str, key: tuple[bytes, str]) -> None:
    raw = signed(message(f"strict.{SENDER}"), key)
    results = check(raw, resolver)
    assert (results.spf, results.dkim) == ("pass", "pass")
    assert (results.dmarc, results.dmarc_policy) == ("fail", "quarantine")


def test_a_signature_without_a_published_key_is_a_permerror(
    resolver: str, key: tuple[bytes, str]
) -> None:
    raw = signed(message("nokey.test"), key, domain="nokey.test")
    results = check(raw, resolver)
    assert results.dkim == "permerror"
    assert results.dkim_domains == ()


def test_an_unusable_published_key_is_a_permerror(resolver: str, key: tuple[bytes, str]) -> None:
    raw = signed(message("badkey.test"), key, domain="badkey.test")
    assert check(raw, resolver).dkim == "permerror"


def test_a_changed_signed_header_fails_dkim(resolver: str, key: tuple[bytes, str]) -> None:
    raw = signed(message(), key).replace(b"Subject: Re: order 42", b"Subject: Re: order 43")
    assert check(raw, resolver).dkim == "fail"


def test_one_verified_signature_of_two_is_a_pass(resolver: str, key: tuple[bytes, str]) -> None:
    raw = signed(signed(message(), key, domain="nokey.test"), key, domain=OTHER)
    results = check(raw, resolver, ip=FOREIGN_IP)
    assert (results.dkim, results.dkim_domains, results.dmarc) == ("pass", (OTHER,), "fail")


def test_an_unsigned_message_has_no_dkim_result(resolver: str) -> None:
    assert check(message(), resolver).dkim == "none"


def test_a_null_sender_checks_the_helo_name(resolver: str) -> None:
    results = check_sender(
        message(), client_ip="127.0.0.1", mail_from="<>", helo=SENDER, resolver=resolver
    )
    assert (results.spf, results.spf_domain, results.dmarc) == ("pass", SENDER, "pass")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff garbage",
        b"no header section at all",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=sender.test; s=sel1; b=!!; bh=??\r\n"
        b"From: a@sender.test\r\n\r\nbody\r\n",
        b"DKIM-Signature: broken\r\nFrom: a@sender.test\r\nline without colon\r\n\r\nbody\r\n",
        b"From: a@sender.test, b@other.test\r\n\r\nbody\r\n",
        b"From: a@sender.test\r\nFrom: b@sender.test\r\n\r\nbody\r\n",
        b"From: \xff\xfe@\xc3\r\n\r\nbody\r\n",
    ],
)
def test_malformed_messages_give_results_not_exceptions(resolver: str, raw: bytes) -> None:
    results = check(raw, resolver)
    assert results.spf == "pass"
    assert results.dkim in ("none", "permerror", "fail")
    assert results.dmarc in ("permerror", "fail", "pass", "none")
    assert results.authentication_results_header("mx").startswith("mx; spf=pass")


@pytest.fixture
def silent_resolver() -> Iterator[str]:
    """A UDP port that receives queries and never answers them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sink.getsockname()[1]}"


def test_dns_timeouts_are_temperrors(silent_resolver: str, key: tuple[bytes, str]) -> None:
    results = check_sender(
        signed(message(), key),
        client_ip="127.0.0.1",
        mail_from=f"bounce@{SENDER}",
        helo=f"mx.{SENDER}",
        resolver=silent_resolver,
        timeout=0.3,
    )
    assert (results.spf, results.dkim, results.dmarc) == ("temperror", "temperror", "temperror")


def test_caller_mistakes_raise() -> None:
    with pytest.raises(ValueError):
        check_sender(b"", client_ip="not-an-ip", mail_from="", helo="h", resolver="127.0.0.1:1")
    with pytest.raises(ValueError):
        check_sender(b"", client_ip="127.0.0.1", mail_from="", helo="h", resolver="127.0.0.1:x")


# --- Without DNS -----------------------------------------------------------------------


def test_to_dict_is_json_ready() -> None:
    results = AuthResults("pass", "pass", "pass", "a.test", ("a.test", "b.test"), "none", "a.test")
    assert results.to_dict() == {
        "spf": "pass",
        "dkim": "pass",
        "dmarc": "pass",
        "spf_domain": "a.test",
        "dkim_domains": ["a.test", "b.test"],
        "dmarc_policy": "none",
        "header_from_domain": "a.test",
    }


def test_the_header_names_each_verified_signature_and_quotes_odd_values() -> None:
    results = AuthResults("softfail", "pass", "pass", "", ("a.test", "b.test"), "", "a.test")
    assert results.authentication_results_header("mx one") == (
        '"mx one"; spf=softfail; dkim=pass header.d=a.test; dkim=pass header.d=b.test; '
        "dmarc=pass header.from=a.test"
    )
    failed = AuthResults("none", "fail", "permerror", "", (), "", "")
    assert failed.authentication_results_header("mx") == "mx; spf=none; dkim=fail; dmarc=permerror"


@pytest.mark.parametrize(
    ("domain", "organization"),
    [
        ("example.com", "example.com"),
        ("mail.eu.example.com", "example.com"),
        ("shop.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("www.example.de", "example.de"),
        ("Example.COM.", "example.com"),
    ],
)
def test_organizational_domain_heuristic(domain: str, organization: str) -> None:
    assert organizational_domain(domain) == organization


def test_header_from_domain() -> None:
    assert header_from_domain(b"From: =?utf-8?q?Jos=C3=A9?= <J@Mail.Example.COM>\n\nx") == (
        "mail.example.com"
    )
    assert header_from_domain("From: a@bücher.example\n\nx".encode()) == "xn--bcher-kva.example"
    assert header_from_domain(b"To: a@example.com\n\nx") is None
    assert header_from_domain(b"From: a@x.test, b@y.test\n\nx") is None
