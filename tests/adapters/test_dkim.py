"""DKIM: keys we generate sign our CRLF MIME messages, verified against a real DNS server."""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters import dkim
from adapters.dns import DnsLookup
from adapters.mime import build_message
from domain.content import Address, EmailContent
from domain.dns_records import DKIM, required_records
from tests.services import DnsmasqService

DnsServer = Callable[..., DnsmasqService]

DOMAIN = "signed.test"
SELECTOR = "ss1"


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    """One 2048-bit key for the module: generating one takes ~50-500 ms."""
    return dkim.generate_key_pair()


CONTENT = EmailContent(
    subject="Your receipt ✓",
    sender=Address(f"billing@{DOMAIN}", "Billing"),
    to=(Address("alice@example.org", "Alice"),),
    cc=(Address("bob@example.net"),),
    reply_to=(Address(f"help@{DOMAIN}"),),
    html="<p>Thanks for your order</p>",
    plain="Thanks for your order\n",
)


def message(content: EmailContent = CONTENT) -> bytes:
    return build_message(
        content,
        recipient=Address("alice@example.org", "Alice"),
        message_id="receipt-1",
        domain=DOMAIN,
        date=datetime(2026, 11, 5, 9, 30, tzinfo=UTC),
    )


def publish_key(dns_server: DnsServer, public_key: str, selector: str = SELECTOR) -> DnsLookup:
    """Publish exactly the record the setup page tells the customer to publish."""
    record = next(
        r
        for r in required_records(
            DOMAIN,
            verification_token="t",
            dkim_selector=selector,
            dkim_public_key=public_key,
            spf_include="spf.sendstream.test",
            mail_hostname="mail.sendstream.test",
        )
        if r.purpose == DKIM
    )
    server = dns_server([(record.host, record.type, record.value)])
    return DnsLookup(server.resolver)


def test_generated_key_pair_matches_and_is_what_dkimpy_and_dns_expect(
    key_pair: tuple[str, str],
) -> None:
    private_pem, public_key = key_pair
    assert private_pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    private = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    public = serialization.load_der_public_key(base64.b64decode(public_key, validate=True))
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()
    assert "\n" not in public_key


def test_signed_message_verifies(dns_server: DnsServer, key_pair: tuple[str, str]) -> None:
    private_pem, public_key = key_pair
    lookup = publish_key(dns_server, public_key)
    original = message()
    assert b"\r\n" in original

    signed = dkim.sign(original, domain=DOMAIN, selector=SELECTOR, private_key_pem=private_pem)

    assert signed.endswith(original)
    header = signed[: len(signed) - len(original)]
    assert header.startswith(b"DKIM-Signature: ")
    assert header.endswith(b"\r\n")
    assert b"\n" not in header.replace(b"\r\n", b"")  # folded with CRLF only
    assert dkim.verify(signed, lookup) is True


def test_signature_covers_the_documented_headers(key_pair: tuple[str, str]) -> None:
    signed = dkim.sign(message(), domain=DOMAIN, selector=SELECTOR, private_key_pem=key_pair[0])
    parsed = email.message_from_bytes(signed, policy=email.policy.default)
    tags = dict(
        part.strip().split("=", 1)
        for part in "".join(str(parsed["DKIM-Signature"]).split()).split(";")
        if part.strip()
    )
    assert tags["a"] == "rsa-sha256"
    assert tags["c"] == "relaxed/relaxed"
    assert tags["d"] == DOMAIN
    assert tags["s"] == SELECTOR
    assert tags["h"].lower().split(":") == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "reply-to",
        "cc",
    ]


def test_reply_to_and_cc_are_signed_only_when_present(key_pair: tuple[str, str]) -> None:
    plain = message(replace(CONTENT, cc=(), reply_to=()))
    signed = dkim.sign(plain, domain=DOMAIN, selector=SELECTOR, private_key_pem=key_pair[0])
    signature = signed[: len(signed) - len(plain)].replace(b"\r\n", b"").lower()
    assert b"reply-to" not in signature
    assert b":cc" not in signature.replace(b" ", b"")


def test_relaxed_canonicalisation_survives_refolding(
    dns_server: DnsServer, key_pair: tuple[str, str]
) -> None:
    """Relays rewrap headers and pad whitespace; relaxed/relaxed is chosen to survive that."""
    lookup = publish_key(dns_server, key_pair[1])
    signed = dkim.sign(message(), domain=DOMAIN, selector=SELECTOR, private_key_pem=key_pair[0])
    refolded = signed.replace(b"\r\nSubject: ", b"\r\nSubject:   \r\n\t", 1)
    assert refolded != signed
    assert dkim.verify(refolded, lookup) is True


def test_tampered_body_fails(dns_server: DnsServer, key_pair: tuple[str, str]) -> None:
    lookup = publish_key(dns_server, key_pair[1])
    signed = dkim.sign(message(), domain=DOMAIN, selector=SELECTOR, private_key_pem=key_pair[0])
    tampered = signed.replace(b"Thanks for your order", b"Thanks for your ORDER", 1)
    assert tampered != signed
    assert dkim.verify(tampered, lookup) is False


def test_tampered_signed_header_fails(dns_server: DnsServer, key_pair: tuple[str, str]) -> None:
    lookup = publish_key(dns_server, key_pair[1])
    signed = dkim.sign(message(), domain=DOMAIN, selector=SELECTOR, private_key_pem=key_pair[0])
    tampered = signed.replace(f"help@{DOMAIN}".encode(), b"help@attacker.test", 1)
    assert tampered != signed
    assert dkim.verify(tampered, lookup) is False


def test_selector_without_a_published_key_fails(
    dns_server: DnsServer, key_pair: tuple[str, str]
) -> None:
    lookup = publish_key(dns_server, key_pair[1], selector="published")
    signed = dkim.sign(message(), domain=DOMAIN, selector="other", private_key_pem=key_pair[0])
    assert dkim.verify(signed, lookup) is False


def test_key_published_under_the_selector_must_be_the_signing_key(
    dns_server: DnsServer, key_pair: tuple[str, str]
) -> None:
    _, other_public_key = dkim.generate_key_pair()
    lookup = publish_key(dns_server, other_public_key)
    signed = dkim.sign(message(), domain=DOMAIN, selector=SELECTOR, private_key_pem=key_pair[0])
    assert dkim.verify(signed, lookup) is False


def test_unsigned_message_does_not_verify(dns_server: DnsServer, key_pair: tuple[str, str]) -> None:
    assert dkim.verify(message(), publish_key(dns_server, key_pair[1])) is False


def test_pkcs8_and_crlf_stored_keys_sign_too(
    dns_server: DnsServer, key_pair: tuple[str, str]
) -> None:
    """Keys imported from elsewhere come as PKCS#8 (OpenSSL 3's default) or with CRLF."""
    private = serialization.load_pem_private_key(key_pair[0].encode(), password=None)
    pkcs8 = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    lookup = publish_key(dns_server, key_pair[1])
    for pem in (pkcs8, key_pair[0].replace("\n", "\r\n")):
        signed = dkim.sign(message(), domain=DOMAIN, selector=SELECTOR, private_key_pem=pem)
        assert dkim.verify(signed, lookup) is True
