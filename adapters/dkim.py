"""DKIM keys, signing and verification (dkimpy), with the key looked up through ``DnsLookup``.

Keys are made with ``cryptography`` because dkimpy's own key tool shells out
to openssl. The private key is PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"), the
format dkimpy's parser reads first; the public key is what the ``p=`` tag
holds: base64 of the DER SubjectPublicKeyInfo, with no line breaks.
"""

from __future__ import annotations

import base64
import re

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.dns import DnsLookup

__all__ = ["KEY_BITS", "SIGNED_HEADERS", "generate_key_pair", "sign", "verify"]

KEY_BITS = 2048
# Signed whether present or not: signing an absent field stops a later hop from adding it.
SIGNED_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type")
# Signed only when present, so a message without them can still gain them (a list's Reply-To).
SIGNED_IF_PRESENT = ("Reply-To", "Cc")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def generate_key_pair() -> tuple[str, str]:
    """(private key PEM, public key for the DNS ``p=`` tag)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.TraditionalOpenSSL,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")
    public_der = key.public_key().public_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return private_pem, base64.b64encode(public_der).decode("ascii")


def sign(message: bytes, *, domain: str, selector: str, private_key_pem: str) -> bytes:
    """The message with a DKIM-Signature field in front (relaxed/relaxed, rsa-sha256).

    The signature is folded with CRLF, the line ending our MIME builder and SMTP
    use; a message with bare LF endings still signs, but should be sent as CRLF.
    Raises ``dkim.DKIMException`` for a key or message dkimpy cannot use.
    """
    present = {name.lower() for name in _header_names(message)}
    headers = [*SIGNED_HEADERS, *(h for h in SIGNED_IF_PRESENT if h.lower() in present)]
    # dkimpy's PEM reader looks for "--\n…\n--": a key stored with CRLF would not be found.
    key = private_key_pem.replace("\r\n", "\n").strip().encode("ascii") + b"\n"
    signature: bytes = dkim.sign(
        message,
        selector.encode("ascii"),
        domain.encode("ascii"),
        key,
        canonicalize=(b"relaxed", b"relaxed"),
        signature_algorithm=b"rsa-sha256",
        include_headers=[name.encode("ascii") for name in headers],
        linesep=b"\r\n",
    )
    return signature + message


def verify(message: bytes, lookup: DnsLookup) -> bool:
    """Whether the topmost DKIM signature verifies against the key DNS publishes now."""

    def txt_for(name: bytes, timeout: float = 5.0) -> bytes | None:
        # dkimpy asks for "<selector>._domainkey.<domain>." and reads one TXT record;
        # of several at that name, the first that carries a key is the one to try.
        host = name.decode("ascii", errors="replace")
        values = lookup.values(host, "TXT")
        keys = [value for value in values if "p=" in value] or values
        return keys[0].encode("utf-8") if keys else None

    result: bool = dkim.verify(message, dnsfunc=txt_for, timeout=lookup.timeout)
    return result


def _header_names(message: bytes) -> list[str]:
    """Field names of the header block, unfolded; stops at the first empty line."""
    names: list[str] = []
    header_block = _HEADER_END.split(message, maxsplit=1)[0]
    for line in header_block.splitlines():
        if line[:1] in (b" ", b"\t"):
            continue
        name, colon, _ = line.partition(b":")
        if colon:
            names.append(name.strip().decode("ascii", errors="replace"))
    return names
