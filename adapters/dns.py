"""DNS through dnspython: lookups for domain verification and DKIM (``DnsLookup``), and the
mail routes of direct delivery (``MailRoutes``).

A lookup answers "what does DNS hold here": any failure to get an answer
(no such name, no such record, a refusing or silent server, a name that
cannot even be put on the wire) is an empty list, because for the callers a
record that cannot be read is a record that is not published. Only a
misconfigured resolver setting raises, and it does so when the object is made.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from domain.routing import (
    NO_SUCH_DOMAIN_STATUS,
    NULL_MX_STATUS,
    ROUTING_FAILURE_STATUS,
    UNROUTABLE_STATUS,
    MxRecord,
    hosts_in_order,
    is_null_mx,
)

__all__ = ["SUPPORTED_TYPES", "DnsLookup", "MailHost", "MailRoute", "MailRoutes"]

SUPPORTED_TYPES = ("TXT", "CNAME", "MX", "PTR", "A", "AAAA")
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
        """TXT: each record's strings joined; CNAME, PTR: the target; MX: the exchange;
        A, AAAA: the address.

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
    if isinstance(rdata, (CNAME, PTR)):
        return _name_text(rdata.target)
    if isinstance(rdata, (A, AAAA)):
        return str(rdata.address)
    return None


def reverse_name(address: str) -> str:
    """Where an address's PTR record lives (``1.2.0.192.in-addr.arpa``)."""
    return dns.reversename.from_address(address).to_text(omit_final_dot=True)


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


# --- Mail routes: where a domain's mail goes (RFC 5321 5.1, RFC 7505) --------------------


@dataclass(frozen=True)
class MailHost:
    name: str  # the MX host, or the domain itself when it has no MX (an implicit MX)
    addresses: tuple[str, ...]  # IPv4 first, then IPv6


@dataclass(frozen=True)
class MailRoute:
    """A domain's mail servers, or why there are none to try.

    ``status`` is empty when there are hosts; otherwise an RFC 3463 code: ``5.x.x`` when
    the domain takes no mail (null MX, no such domain, no such host), ``4.x.x`` when DNS
    did not answer and the question stands.
    """

    records: tuple[MxRecord, ...] = ()
    addresses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    status: str = ""
    reason: str = ""

    def hosts(self, rng: random.Random) -> list[MailHost]:
        """The hosts in the order to try them: equal preferences shuffled on every call."""
        return [
            MailHost(name, self.addresses.get(name, ()))
            for name in hosts_in_order(list(self.records), rng)
        ]


class MailRoutes:
    """Looks up mail routes through one resolver (as ``DnsLookup`` takes it), asynchronously,
    and keeps each answer for its time to live (at least ``min_ttl``, at most ``max_ttl``).

    Answers that say "no mail here" are kept too (for ``negative_ttl``); failures to get an
    answer are not, so the next message asks again. Concurrent lookups of one domain share
    one query.
    """

    def __init__(
        self,
        resolver: str = "",
        timeout: float = 5.0,
        *,
        min_ttl: float = 5.0,
        max_ttl: float = 3600.0,
        negative_ttl: float = 60.0,
        max_entries: int = 100_000,
    ) -> None:
        if resolver.strip():
            host, port = _split_host_port(resolver.strip())
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [_address_of(host)]
            self._resolver.port = port
        else:
            self._resolver = dns.asyncresolver.Resolver(configure=True)
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._min_ttl, self._max_ttl, self._negative_ttl = min_ttl, max_ttl, negative_ttl
        self._max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, MailRoute]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[MailRoute]] = {}

    async def route(self, domain: str) -> MailRoute:
        """The route for ``domain`` (A-labels), from the cache while it is fresh."""
        key = domain.lower().rstrip(".")
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[MailRoute] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            route, ttl = await self._look_up(key)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: a lookup nobody shared must not warn
            raise
        else:
            future.set_result(route)
            if ttl > 0:
                self._cache[key] = (time.monotonic() + ttl, route)
                self._cache.move_to_end(key)
                while len(self._cache) > self._max_entries:
                    self._cache.popitem(last=False)
            return route
        finally:
            del self._pending[key]

    def forget(self) -> None:
        self._cache.clear()

    async def addresses(self, host: str) -> list[str]:
        """A host's addresses, IPv4 first (for the MTA-STS policy host); [] if none."""
        values, _, _ = await self._addresses(host)
        return list(values)

    async def texts(self, name: str) -> tuple[list[str], float] | None:
        """The TXT records at ``name`` (strings joined) and their TTL; ([], negative TTL)
        when there are none; None when DNS did not answer."""
        query = _query_name(name)
        if query is None:
            return [], self._negative_ttl
        try:
            answer = await self._resolver.resolve(query, "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return [], self._negative_ttl
        except dns.exception.DNSException:
            return None
        texts = [text for rdata in answer if (text := _text_of(rdata)) is not None]
        ttl = float(answer.rrset.ttl) if answer.rrset is not None else self._min_ttl
        return texts, self._clamp(ttl)

    async def _look_up(self, domain: str) -> tuple[MailRoute, float]:
        name = _query_name(domain)
        if name is None:
            return MailRoute(
                status=NO_SUCH_DOMAIN_STATUS, reason=f"{domain!r} is not a domain name"
            ), 0
        try:
            answer = await self._resolver.resolve(name, "MX", search=False)
        except dns.resolver.NXDOMAIN:
            reason = f"the domain {domain} does not exist (NXDOMAIN)"
            return MailRoute(status=NO_SUCH_DOMAIN_STATUS, reason=reason), self._negative_ttl
        except dns.resolver.NoAnswer:
            # RFC 5321 5.1: no MX, so the domain itself is the host, at preference 0.
            records: tuple[MxRecord, ...] = (MxRecord(0, domain),)
            ttl = self._max_ttl
        except dns.exception.DNSException as error:
            return self._temporary(domain, "MX", error), 0
        else:
            records = tuple(
                MxRecord(int(rdata.preference), _name_text(rdata.exchange).rstrip("."))
                for rdata in answer
                if isinstance(rdata, MX)
            )
            ttl = float(answer.rrset.ttl) if answer.rrset is not None else self._min_ttl
            if is_null_mx(list(records)):
                reason = f"the domain {domain} accepts no mail (null MX, RFC 7505)"
                return MailRoute(status=NULL_MX_STATUS, reason=reason), self._clamp(ttl)
            records = tuple(record for record in records if record.exchange)
            if not records:
                reason = f"the domain {domain} publishes no usable MX host"
                return MailRoute(status=NO_SUCH_DOMAIN_STATUS, reason=reason), self._clamp(ttl)
        hosts = list(dict.fromkeys(record.exchange for record in records))
        found = await asyncio.gather(*(self._addresses(host) for host in hosts))
        addresses: dict[str, tuple[str, ...]] = {}
        temporary: list[str] = []
        for host, (values, host_ttl, failure) in zip(hosts, found, strict=True):
            if failure:
                temporary.append(failure)
            if values:
                addresses[host] = values
                ttl = min(ttl, host_ttl)
        if not addresses:
            if temporary:
                return MailRoute(status=ROUTING_FAILURE_STATUS, reason="; ".join(temporary)), 0
            implicit = records == (MxRecord(0, domain),)
            reason = (
                f"the domain {domain} has no MX and no address"
                if implicit
                else f"no MX host of {domain} has an address ({', '.join(hosts)})"
            )
            status = NO_SUCH_DOMAIN_STATUS if implicit else UNROUTABLE_STATUS
            return MailRoute(status=status, reason=reason), self._negative_ttl
        if temporary:
            ttl = min(ttl, self._min_ttl)  # ask again soon for the hosts that did not answer
        return MailRoute(records=records, addresses=addresses), self._clamp(ttl)

    async def _addresses(self, host: str) -> tuple[tuple[str, ...], float, str]:
        """A host's IPv4 then IPv6 addresses, their shortest TTL, and a failure to report."""
        name = _query_name(host)
        if name is None:
            return (), 0.0, ""
        answers = await asyncio.gather(
            *(self._resolver.resolve(name, kind, search=False) for kind in ("A", "AAAA")),
            return_exceptions=True,
        )
        values: list[str] = []
        ttl = self._max_ttl
        failure = ""
        for kind, answer in zip(("A", "AAAA"), answers, strict=True):
            if isinstance(answer, dns.resolver.NXDOMAIN | dns.resolver.NoAnswer):
                continue
            if isinstance(answer, BaseException):
                if not isinstance(answer, dns.exception.DNSException):
                    raise answer
                failure = self._temporary(host, kind, answer).reason
                continue
            values += [rdata.to_text() for rdata in answer]
            if answer.rrset is not None:
                ttl = min(ttl, float(answer.rrset.ttl))
        return tuple(values), ttl, failure

    def _temporary(self, name: str, kind: str, error: BaseException) -> MailRoute:
        detail = type(error).__name__ if isinstance(error, dns.exception.Timeout) else str(error)
        return MailRoute(status=ROUTING_FAILURE_STATUS, reason=f"{kind} lookup of {name}: {detail}")

    def _clamp(self, ttl: float) -> float:
        return max(self._min_ttl, min(self._max_ttl, ttl))
