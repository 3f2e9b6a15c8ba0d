"""The DNS records a sender domain's owner must publish, and whether what DNS holds counts.

Pure: the caller looks the values up (``adapters.dns``) and hands them in. The
matching is deliberately tolerant where customers legitimately differ from the
value we suggest (an SPF record that also authorises other senders, a DKIM key
split or wrapped across TXT strings) and strict where a receiver would be: two
SPF or two DMARC records at one name make receivers ignore both (RFC 7208 4.5,
RFC 7489 6.6.3), so such a name does not count as published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

VERIFICATION: Final = "verification"
SPF: Final = "spf"
DKIM: Final = "dkim"
DMARC: Final = "dmarc"
TRACKING: Final = "tracking"
RETURN_PATH: Final = "return_path"

PURPOSES: Final = (VERIFICATION, SPF, DKIM, DMARC, TRACKING, RETURN_PATH)

VERIFICATION_PREFIX: Final = "sendstream-verification="
DEFAULT_TRACKING_SUBDOMAIN: Final = "track"
RETURN_PATH_SUBDOMAIN: Final = "bounces"
DMARC_VALUE: Final = "v=DMARC1; p=none;"

# SPF qualifiers that authorise the included hosts; "-", "~" and "?" would not.
_PASSING_QUALIFIERS: Final = ("", "+")


@dataclass(frozen=True)
class DnsRecord:
    purpose: str  # one of PURPOSES
    host: str  # fully qualified, no trailing dot, lowercase
    type: str  # "TXT" | "CNAME" | "MX"
    value: str  # what the customer must publish


def required_records(
    domain_name: str,
    *,
    verification_token: str,
    dkim_selector: str,
    dkim_public_key: str,
    spf_include: str,
    mail_hostname: str,
    tracking_subdomain: str = "",
) -> list[DnsRecord]:
    """Every record, in the order a setup page shows them (ownership first).

    ``domain_name`` is expected as stored (A-labels); it is only lowercased and
    stripped of a trailing dot here. A ``tracking_subdomain`` given as a full
    host under the domain is accepted too, so it never ends up doubled.
    """
    domain = _host(domain_name)
    tracking = _host(tracking_subdomain) or DEFAULT_TRACKING_SUBDOMAIN
    tracking = tracking.removesuffix("." + domain)
    target = _host(mail_hostname)
    return [
        DnsRecord(
            VERIFICATION,
            f"_sendstream.{domain}",
            "TXT",
            f"{VERIFICATION_PREFIX}{verification_token.strip()}",
        ),
        DnsRecord(SPF, domain, "TXT", f"v=spf1 include:{_host(spf_include)} ~all"),
        DnsRecord(
            DKIM,
            f"{_host(dkim_selector)}._domainkey.{domain}",
            "TXT",
            f"v=DKIM1; k=rsa; p={_without_whitespace(dkim_public_key)}",
        ),
        DnsRecord(DMARC, f"_dmarc.{domain}", "TXT", DMARC_VALUE),
        DnsRecord(TRACKING, f"{tracking}.{domain}", "CNAME", target),
        DnsRecord(RETURN_PATH, f"{RETURN_PATH_SUBDOMAIN}.{domain}", "CNAME", target),
    ]


def record_is_published(record: DnsRecord, found: list[str]) -> bool:
    """Whether ``found`` (the values DNS returned for the record's host and type) satisfies it."""
    if record.type in ("CNAME", "MX"):
        expected = _host(record.value)
        return any(_host(value) == expected for value in found)
    if record.purpose == SPF:
        return _spf_published(record.value, found)
    if record.purpose == DKIM:
        return _dkim_published(record.value, found)
    if record.purpose == DMARC:
        return _single([value for value in found if _is_dmarc(value)]) is not None
    return any(value.strip() == record.value.strip() for value in found)


def _spf_published(expected: str, found: list[str]) -> bool:
    wanted = _spf_include_target(expected)
    spf = _single([value for value in found if _is_spf(value)])
    if spf is None or wanted is None:
        return False
    for term in spf.split()[1:]:
        qualifier, mechanism, target = term.lower().partition("include:")
        if mechanism and qualifier in _PASSING_QUALIFIERS and _host(target) == wanted:
            return True
    return False


def _spf_include_target(spf_value: str) -> str | None:
    for term in spf_value.split():
        if term.lower().startswith("include:"):
            return _host(term[len("include:") :])
    return None


def _is_spf(value: str) -> bool:
    """A TXT is an SPF record when its first term is exactly ``v=spf1`` (not ``v=spf10``)."""
    terms = value.split(maxsplit=1)
    return bool(terms) and terms[0].lower() == "v=spf1"


def _is_dmarc(value: str) -> bool:
    first_tag = value.split(";", 1)[0]
    return _without_whitespace(first_tag).lower() == "v=dmarc1"


def _dkim_published(expected: str, found: list[str]) -> bool:
    wanted = _dkim_tags(expected).get("p", "")
    if not wanted:
        return False
    for value in found:
        tags = _dkim_tags(value)
        if tags.get("v", "DKIM1") != "DKIM1" or tags.get("k", "rsa").lower() != "rsa":
            continue
        if tags.get("p") == wanted:
            return True
    return False


def _dkim_tags(value: str) -> dict[str, str]:
    """RFC 6376 3.2 tag list; whitespace inside a value is folding, so it is dropped."""
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, equals, tag_value = part.partition("=")
        if equals:
            tags.setdefault(name.strip().lower(), _without_whitespace(tag_value))
    return tags


def _single(matches: list[str]) -> str | None:
    """The one matching value, or None when there is none or more than one."""
    return matches[0] if len(matches) == 1 else None


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _without_whitespace(text: str) -> str:
    return "".join(text.split())
