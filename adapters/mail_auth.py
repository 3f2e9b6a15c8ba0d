"""Who sent a received message: SPF (pyspf), DKIM (dkimpy) and DMARC, through one resolver.

Inbound mail for customers' domains reaches their apps with these results, so that an
app can tell its customers' replies from forgeries. Every DNS question goes to the
resolver given (``"host:port"``, as ``adapters.dns.DnsLookup`` takes it, or the
system's for ``""``), so tests and deployments with their own DNS see the same answers.

SPF is pyspf's evaluator (RFC 7208: macros, include, redirect, the lookup limits); only
its DNS function is ours. pyspf calls a module-level ``spf.DNSLookup``; this module
replaces it, once, with one that asks the resolver of the ``check_sender`` call in
progress (a context variable, so concurrent calls in threads or tasks do not mix) and
falls back to pyspf's own for any other caller. DKIM is dkimpy's verifier, given a
``dnsfunc`` on the same resolver. DMARC (RFC 7489) is small enough to do here: find the
policy record, check alignment of the SPF and DKIM domains with the From domain.

Results are RFC 8601 words. ``check_sender`` never raises for what the message or DNS
holds: a malformed message, signature or record is a ``permerror`` or a ``fail``, a DNS
server that does not answer a ``temperror``. It raises ``ValueError`` only for a caller's
mistake (a client IP that is not an address, a resolver setting that cannot be used).

The organizational domain (RFC 7489 3.2) should come from the Public Suffix List; no
library carrying it is installed, so a heuristic stands in (see
``organizational_domain``): the last two labels, or three under a two-letter country
code's common second-level labels (``example.co.uk``).
"""

from __future__ import annotations

import email.policy
import ipaddress
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from email.feedparser import BytesFeedParser
from typing import Any

import dkim
import dns.exception
import dns.name
import dns.resolver
import spf
from dns.rdtypes.ANY.TXT import TXT

from adapters.dns import _address_of, _split_host_port

__all__ = [
    "AuthResults",
    "check_sender",
    "header_from_domain",
    "organizational_domain",
    "spf_result",
]

SPF_RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"})
# pyspf's limit on the whole SPF evaluation (RFC 7208 4.6.4 recommends 20 s at least).
SPF_TOTAL_SECONDS = 20.0
# From values longer than this are not parsed (the address parser is quadratic).
MAX_FROM_LENGTH = 4096

# dkimpy logs every signature that does not verify at ERROR: for inbound mail that is
# ordinary traffic, and the result says it.
_DKIM_LOG = logging.getLogger(f"{__name__}.dkimpy")
_DKIM_LOG.addHandler(logging.NullHandler())
_DKIM_LOG.propagate = False

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_DKIM_FIELD = re.compile(rb"^dkim-signature[ \t]*:", re.IGNORECASE | re.MULTILINE)
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]+")
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9-]{1,63}")
_DMARC_RECORD = re.compile(r"v\s*=\s*DMARC1\s*(;|$)")
_POLICIES = ("none", "quarantine", "reject")
# Names that cannot be put in a query: nothing can be published there.
_NOT_A_NAME = (
    dns.exception.SyntaxError,
    dns.name.NameTooLong,
    dns.name.IDNAException,
    UnicodeError,
    ValueError,
)
# Second-level labels under which a two-letter country code registers names.
_COUNTRY_SECOND_LEVELS = frozenset(
    {"ac", "co", "com", "edu", "gob", "go", "gov", "ltd", "me", "mil", "ne", "net", "nic",
     "or", "org", "plc", "sch"}
)  # fmt: skip


@dataclass(frozen=True)
class AuthResults:
    """The sender checks of one received message, as RFC 8601 result words.

    ``spf_domain`` is the domain SPF checked (the MAIL FROM domain, or the HELO name for
    a null sender); ``dkim_domains`` the ``d=`` of each signature that verified;
    ``dmarc_policy`` the policy that applies to the From domain ("" without a record).
    """

    spf: str
    dkim: str
    dmarc: str
    spf_domain: str
    dkim_domains: tuple[str, ...]
    dmarc_policy: str
    header_from_domain: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the field names as keys, ``dkim_domains`` as a list."""
        values = asdict(self)
        values["dkim_domains"] = list(self.dkim_domains)
        return values

    def authentication_results_header(self, authserv_id: str) -> str:
        """The value of an Authentication-Results field (RFC 8601) naming ``authserv_id``,
        e.g. ``mx.example; spf=pass smtp.mailfrom=a.example; dkim=pass header.d=a.example;
        dmarc=pass (p=reject) header.from=a.example``."""
        results = [f"spf={self.spf}" + _property("smtp.mailfrom", self.spf_domain)]
        if self.dkim == "pass" and self.dkim_domains:
            results += [f"dkim=pass header.d={_value(d)}" for d in self.dkim_domains]
        else:
            results.append(f"dkim={self.dkim}")
        policy = f" (p={self.dmarc_policy})" if self.dmarc_policy else ""
        results.append(
            f"dmarc={self.dmarc}{policy}" + _property("header.from", self.header_from_domain)
        )
        return "; ".join([_value(authserv_id.strip()), *results])


def check_sender(
    raw: bytes,
    *,
    client_ip: str,
    mail_from: str,
    helo: str,
    resolver: str = "",
    timeout: float = 3.0,
) -> AuthResults:
    """SPF for the connecting client and envelope sender, DKIM for every signature,
    DMARC for the From domain; ``timeout`` bounds each DNS query.

    Raises ``ValueError`` only when ``client_ip`` is not an IP address or ``resolver``
    cannot be used; whatever the message and DNS hold gives results instead.
    """
    address = str(ipaddress.ip_address(client_ip.strip()))
    lookup = _Resolver(resolver, timeout)
    spf_result, spf_domain = _check_spf(lookup, address, mail_from, helo)
    dkim_result, dkim_domains, dkim_temporary = _check_dkim(raw, lookup)
    from_domain = header_from_domain(raw)
    dmarc, policy = _check_dmarc(
        lookup,
        from_domain,
        spf_aligned_domain=spf_domain if spf_result == "pass" else "",
        dkim_domains=dkim_domains,
        temporary=spf_result == "temperror" or dkim_temporary,
    )
    return AuthResults(
        spf=spf_result,
        dkim=dkim_result,
        dmarc=dmarc,
        spf_domain=spf_domain,
        dkim_domains=dkim_domains,
        dmarc_policy=policy,
        header_from_domain=from_domain or "",
    )


def organizational_domain(domain: str) -> str:
    """A heuristic for the organizational domain, without the Public Suffix List.

    The last two labels (``mail.example.com`` → ``example.com``), or the last three when
    the top-level domain is a two-letter country code and the label before it one of the
    common registration levels (``shop.example.co.uk`` → ``example.co.uk``). It errs on
    other multi-label suffixes (``example.pvt.k12.ma.us``, ``x.github.io``): two such
    domains count as one organization for relaxed alignment.
    """
    labels = domain.lower().strip(".").split(".")
    keep = 2
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _COUNTRY_SECOND_LEVELS:
        keep = 3
    return ".".join(labels[-keep:])


def header_from_domain(raw: bytes) -> str | None:
    """The domain of the one From address, or None when there is not exactly one From
    field with one address (RFC 7489 6.6.1: such a message has no DMARC identity)."""
    parser = BytesFeedParser(policy=email.policy.compat32)
    try:
        parser.feed(raw[: _header_section_end(raw)])
        values = [str(v) for k, v in parser.close().raw_items() if k.strip().lower() == "from"]
        if len(values) != 1 or len(values[0]) > MAX_FROM_LENGTH:
            return None
        text = re.sub(r"\r?\n", "", values[0])
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        addresses = email.policy.default.header_factory("From", text).addresses
    except Exception:
        return None
    if len(addresses) != 1:
        return None
    return _domain_name(addresses[0].domain)


# --- DNS -----------------------------------------------------------------------------


class _Resolver:
    """One dnspython resolver for all three checks, and the TXT lookup they share."""

    def __init__(self, resolver: str, timeout: float) -> None:
        self.timeout = timeout
        if resolver.strip():
            host, port = _split_host_port(resolver.strip())
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [_address_of(host)]
            self.resolver.port = port
        else:
            self.resolver = dns.resolver.Resolver(configure=True)
        self.resolver.timeout = timeout
        self.resolver.lifetime = timeout

    def txt(self, name: str) -> list[str] | None:
        """Each TXT record's strings joined; [] when there is none; None when DNS did not
        answer (a timeout, SERVFAIL, REFUSED): a temporary error, not an absence."""
        try:
            query = dns.name.from_text(name.strip().rstrip(".") or ".", origin=dns.name.root)
            answer = self.resolver.resolve(query, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN):
            return []
        except _NOT_A_NAME:
            return []  # not a name that can be asked for: nothing can be published there
        except dns.exception.DNSException:
            return None
        return [
            b"".join(rdata.strings).decode("utf-8", errors="replace")
            for rdata in answer
            if isinstance(rdata, TXT)
        ]


# --- SPF (pyspf) -----------------------------------------------------------------------

_SPF_RESOLVER: ContextVar[_Resolver | None] = ContextVar("spf_resolver", default=None)
_PYSPF_LOOKUP = spf.DNSLookup


def _spf_lookup(name: str, qtype: str, tcpfallback: bool = True, timeout: float = 30) -> Any:
    """pyspf's ``DNSLookup`` contract: ``[((name, type), value), …]``; [] for no such name
    or record; ``spf.TempError`` when DNS does not answer."""
    current = _SPF_RESOLVER.get()
    if current is None:
        return _PYSPF_LOOKUP(name, qtype, tcpfallback, timeout)
    kind = "TXT" if qtype == "SPF" else qtype
    try:
        answer = current.resolver.resolve(
            name, kind, search=False, lifetime=min(float(timeout), current.timeout)
        )
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN):
        return []
    except _NOT_A_NAME:
        return []
    except dns.exception.DNSException as error:
        raise spf.TempError(f"DNS {error}") from error
    found: list[tuple[tuple[str, str], Any]] = []
    for rdata in answer:
        if kind in ("A", "AAAA"):
            found.append(((name, qtype), rdata.address))
        elif kind == "MX":
            found.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif kind == "PTR":
            found.append(((name, qtype), rdata.target.to_text(True)))
        elif kind == "TXT":
            found.append(((name, qtype), rdata.strings))
    return found


spf.DNSLookup = _spf_lookup


@contextmanager
def _spf_resolver(lookup: _Resolver) -> Iterator[None]:
    token = _SPF_RESOLVER.set(lookup)
    try:
        yield
    finally:
        _SPF_RESOLVER.reset(token)


def _check_spf(lookup: _Resolver, client_ip: str, mail_from: str, helo: str) -> tuple[str, str]:
    """(result, checked domain). A null sender checks the HELO name (RFC 7208 2.4)."""
    sender = mail_from.strip().removeprefix("<").removesuffix(">").strip()
    host = helo.strip().rstrip(".")
    try:
        query = spf.query(
            i=client_ip, s=sender, h=host, timeout=lookup.timeout, querytime=SPF_TOTAL_SECONDS
        )
        domain = _domain_name(str(query.o)) or ""
        with _spf_resolver(lookup):
            result = str(query.check()[0]).lower()
    except Exception:
        return "permerror", _domain_name(sender.rpartition("@")[2] or host) or ""
    return (result if result in SPF_RESULTS else "permerror"), domain


# --- DKIM (dkimpy) ---------------------------------------------------------------------


class _KeyFetch:
    """dkimpy's ``dnsfunc``, remembering whether a usable key was found, and if not why:
    dkimpy answers False for all of these, but RFC 8601 words tell them apart."""

    def __init__(self, lookup: _Resolver) -> None:
        self._lookup = lookup
        self.temporary = False
        self.missing = False  # no key published, or one dkimpy cannot use
        self.found = False

    def __call__(self, name: bytes, timeout: float = 5.0) -> bytes | None:
        # dkimpy asks for "<selector>._domainkey.<domain>." and reads one TXT record; of
        # several at that name, the first that carries a key is the one to try.
        texts = self._lookup.txt(name.decode("ascii", errors="replace"))
        if texts is None:
            self.temporary = True
            raise dkim.DnsTimeoutError(f"no answer for {name!r}")
        keys = [text for text in texts if "p=" in text] or texts
        if not keys:
            self.missing = True
            return None
        record = keys[0].encode("utf-8")
        try:
            dkim.evaluate_pk(name, record)  # what dkimpy does next, to tell why it fails
        except Exception:
            self.missing = True
        else:
            self.found = True
        return record


def _check_dkim(raw: bytes, lookup: _Resolver) -> tuple[str, tuple[str, ...], bool]:
    """(result, domains that verified, whether a key lookup failed temporarily).

    The result is ``pass`` when any signature verifies; otherwise the most hopeful of
    the others: ``temperror`` (it may verify later), ``fail`` (a usable key was found and
    the signature or body hash does not match), ``permerror`` (a malformed signature, no
    key or an unusable one). A message
    without a DKIM-Signature field is ``none``.
    """
    try:
        verifier = dkim.DKIM(raw, logger=_DKIM_LOG, timeout=lookup.timeout)
        count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    except Exception:
        # dkimpy refuses header sections it cannot split (8-bit or colonless lines).
        signed = _DKIM_FIELD.search(raw[: _header_section_end(raw)]) is not None
        return ("permerror" if signed else "none"), (), False
    if count == 0:
        return "none", (), False
    outcomes: list[str] = []
    domains: list[str] = []
    for index in range(count):
        fetch = _KeyFetch(lookup)
        try:
            verified = bool(verifier.verify(idx=index, dnsfunc=fetch))
        except Exception:
            # dkimpy raises for a malformed signature (before it asks for the key) and
            # for a body hash mismatch (after): the second is a plain failure.
            verified = False
            fetch.missing = fetch.missing or not fetch.found
        if verified:
            outcomes.append("pass")
            domain = _domain_name(bytes(verifier.domain or b"").decode("ascii", "replace"))
            if domain and domain not in domains:
                domains.append(domain)
        elif fetch.temporary:
            outcomes.append("temperror")
        elif fetch.missing:
            outcomes.append("permerror")
        else:
            outcomes.append("fail")
    result = next(r for r in ("pass", "temperror", "fail", "permerror") if r in outcomes)
    return result, tuple(domains), "temperror" in outcomes


# --- DMARC -----------------------------------------------------------------------------


def _check_dmarc(
    lookup: _Resolver,
    from_domain: str | None,
    *,
    spf_aligned_domain: str,
    dkim_domains: tuple[str, ...],
    temporary: bool,
) -> tuple[str, str]:
    """(result, policy). ``spf_aligned_domain`` is the SPF domain when SPF passed."""
    if from_domain is None:
        return "permerror", ""  # no single From domain to evaluate
    found = _dmarc_record(lookup, from_domain)
    if found is None:
        return "temperror", ""
    tags, at_organization = found
    if not tags:
        return "none", ""
    policy = tags.get("p", "").lower()
    if policy not in _POLICIES:
        if "rua" not in tags:
            return "none", ""  # RFC 7489 6.6.3: an invalid record is no record...
        policy = "none"  # ...unless it asks for reports: then it is p=none
    if at_organization and tags.get("sp", "").lower() in _POLICIES:
        policy = tags["sp"].lower()
    strict_spf = tags.get("aspf", "r").lower() == "s"
    strict_dkim = tags.get("adkim", "r").lower() == "s"
    if spf_aligned_domain and _aligned(spf_aligned_domain, from_domain, strict=strict_spf):
        return "pass", policy
    if any(_aligned(domain, from_domain, strict=strict_dkim) for domain in dkim_domains):
        return "pass", policy
    return ("temperror" if temporary else "fail"), policy


def _dmarc_record(lookup: _Resolver, domain: str) -> tuple[dict[str, str], bool] | None:
    """The tags of the policy record for ``domain`` (its own, else its organizational
    domain's) and whether it was the organizational one; ({}, False) when there is none;
    None when DNS did not answer."""
    organization = organizational_domain(domain)
    for name, at_organization in ((domain, False), (organization, True)):
        if at_organization and organization == domain:
            break
        texts = lookup.txt(f"_dmarc.{name}")
        if texts is None:
            return None
        records = [text for text in texts if _DMARC_RECORD.match(text.strip())]
        if len(records) == 1:
            return _tags(records[0]), at_organization
        if records:
            return {}, False  # several records: RFC 7489 6.6.3 applies no policy
    return {}, False


def _tags(record: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in record.split(";"):
        name, equals, value = item.partition("=")
        if equals:
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def _aligned(domain: str, from_domain: str, *, strict: bool) -> bool:
    if strict:
        return domain == from_domain
    return organizational_domain(domain) == organizational_domain(from_domain)


# --- Helpers ---------------------------------------------------------------------------


def _domain_name(text: str) -> str | None:
    """A domain as A-labels, lowercase, without a trailing dot; None if it is not one."""
    name = text.strip().strip("[]").rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return name if _DOMAIN.fullmatch(name) else None


def _header_section_end(raw: bytes) -> int:
    match = _HEADER_END.search(raw)
    return match.end() if match else len(raw)


def _value(text: str) -> str:
    """An RFC 8601 value: the text as a token when it is one, else a quoted-string."""
    if _TOKEN.fullmatch(text):
        return text
    cleaned = re.sub(r"[\x00-\x1f\x7f]", "", text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{cleaned}"'


def _property(name: str, value: str) -> str:
    return f" {name}={_value(value)}" if value else ""


def spf_result(client_ip: str, domain: str, *, resolver: str = "", timeout: float = 3.0) -> str:
    """What the SPF record of ``domain`` says of mail from ``client_ip`` (RFC 8601 word):
    whether a sending address is one its sender domains permit."""
    ipaddress.ip_address(client_ip)
    result, _ = _check_spf(_Resolver(resolver, timeout), client_ip, f"postmaster@{domain}", domain)
    return result
