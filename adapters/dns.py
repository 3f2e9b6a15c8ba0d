"""DNS lookups for domain verification and DKIM, through dnspython.

A lookup answers "what does DNS hold here": any failure to get an answer
(no such name, no such record, a refusing or silent server, a name that
cannot even be put on the wire) is an empty list, because for the callers a
record that cannot be read is a record that is not published. Only a
misconfigured resolver setting raises, and it does so when the object is made.
"""

from __future__ import annotations

import ipaddress
import socket

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.TXT import TXT

__all__ = ["SUPPORTED_TYPES", "DnsLookup"]

SUPPORTED_TYPES = ("TXT", "CNAME", "MX")
DEFAULT_PORT = 53


class DnsLookup:
    """Queries one resolver (``"host:port"``, ``"host"``, ``"[v6]:port"``) or the system's (``""``).

    A resolver given by name is turned into an address once, here: dnspython
    only talks to addresses, and a name that does not resolve is a
    configuration error worth failing on at startup rather than a record that
    silently never verifies.
    """

    def __init__(self, resolver: str = "", timeout: float = 3.0) -> None:
        self.timeout = timeout
        if resolver.strip():
            host, port = _split_host_port(resolver.strip())
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [_address_of(host)]
            self._resolver.port = port
        else:
            self._resolver = dns.resolver.Resolver(configure=True)
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout

    def values(self, host: str, rtype: str) -> list[str]:
        """TXT: each record's strings joined; CNAME: the target; MX: the exchange.

        Names come back lowercase without the trailing dot. The name is queried
        as absolute, so the system resolver's search domains never apply.
        """
        kind = rtype.upper()
        if kind not in SUPPORTED_TYPES:
            raise ValueError(f"unsupported record type {rtype!r}; one of {SUPPORTED_TYPES}")
        name = _query_name(host)
        if name is None:
            return []
        try:
            answer = self._resolver.resolve(
                name, dns.rdatatype.from_text(kind), search=False, raise_on_no_answer=True
            )
        except dns.exception.DNSException:
            # NXDOMAIN, NoAnswer, NoNameservers (SERVFAIL, REFUSED), timeouts, bad replies.
            return []
        return [text for rdata in answer if (text := _text_of(rdata)) is not None]


def _text_of(rdata: object) -> str | None:
    if isinstance(rdata, TXT):
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    if isinstance(rdata, MX):
        return _name_text(rdata.exchange)
    if isinstance(rdata, CNAME):
        return _name_text(rdata.target)
    return None


def _name_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _query_name(host: str) -> dns.name.Name | None:
    """The absolute name to ask for, or None for a host that cannot be a DNS name.

    Non-ASCII is refused rather than IDNA-encoded: stored domains are A-labels
    already, so a U-label here is input that never went through validation.
    """
    text = host.strip().rstrip(".")
    if not text or not text.isascii() or not text.isprintable():
        return None
    try:
        return dns.name.from_text(text, origin=dns.name.root)
    except (dns.exception.DNSException, ValueError):
        # EmptyLabel ("a..b"), LabelTooLong (> 63), NameTooLong (> 255), bad escapes.
        return None


def _split_host_port(resolver: str) -> tuple[str, int]:
    if resolver.startswith("["):
        host, _, rest = resolver[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif resolver.count(":") == 1:
        host, _, port_text = resolver.partition(":")
    else:  # a bare name or IPv4 address, or a bare IPv6 address
        host, port_text = resolver, ""
    if not port_text:
        return host, DEFAULT_PORT
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(f"DNS resolver {resolver!r}: port must be 1-65535")
    return host, port


def _address_of(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)
    except (OSError, UnicodeError) as error:
        raise ValueError(f"DNS resolver {host!r} does not resolve: {error}") from error
    return str(infos[0][4][0])
