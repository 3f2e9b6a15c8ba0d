"""Sender domain names: validated with the IDNA 2008 rules (``idna``) and stored as A-labels."""

from __future__ import annotations

import idna


class DomainNameInvalid(ValueError):
    pass


def normalise_domain_name(name: str) -> str:
    text = name.strip().rstrip(".").lower()
    if not text or len(text) > 253 or "." not in text:
        raise DomainNameInvalid(f"not a domain name: {name!r}")
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise DomainNameInvalid(f"not a domain name: {name!r} ({error})") from None
    labels = ascii_name.split(".")
    if not labels[-1].isalpha() and not labels[-1].startswith("xn--"):
        raise DomainNameInvalid(f"not a domain name: {name!r} (no top-level domain)")
    return ascii_name
