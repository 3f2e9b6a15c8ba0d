"""Where mail for a domain goes: the rules of RFC 5321 section 5.1 and RFC 7505, as data.

A DNS answer comes in (the MX records, or the fact that there are none) and an ordered
list of hosts to try goes out, or the verdict that the domain takes no mail. Looking the
records up is the DNS adapter's; trying the hosts is the SMTP adapter's.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import re
from dataclasses import dataclass
from itertools import groupby

# RFC 3463 codes for what routing alone decides, before any server is asked.
NULL_MX_STATUS = "5.1.10"  # RFC 7505 4.2: the domain publishes that it accepts no mail
NO_SUCH_DOMAIN_STATUS = "5.1.2"  # bad destination system address: NXDOMAIN, or no host
ROUTING_FAILURE_STATUS = "4.4.3"  # directory (DNS) server failure: try again later
NO_ROUTE_STATUS = "4.4.4"  # no host could be tried (every address refused here)
_HELO_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")
UNROUTABLE_STATUS = "5.4.4"  # the MX hosts named do not exist


# The seed catalogue's words for a bad sending address (000).
INVALID_IP_ADDRESS = (
    "InvalidIPAddressException: The specified value does not exist or is not a valid IP Address."
)
DUPLICATE_IP_ADDRESS = (
    "DuplicateIPAddressException: The specified IP Address is already registered."
)


@dataclass(frozen=True)
class SourceAddress:
    """One of this machine's sending addresses, the name it greets with, and its share of
    the mail (a weight: 2 sends twice as much as 1)."""

    address: str
    helo_name: str
    weight: int = 1


def parse_sources(text: str) -> tuple[SourceAddress, ...]:
    """``"ADDRESS=EHLO-NAME[*WEIGHT], …"``; ValueError with the seed catalogue's words."""
    sources: list[SourceAddress] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        address, equals, rest = item.partition("=")
        helo_name, star, weight_text = rest.partition("*")
        try:
            canonical = str(ipaddress.ip_address(address.strip()))
        except ValueError:
            raise ValueError(f"{address.strip()!r}: {INVALID_IP_ADDRESS}") from None
        helo_name = helo_name.strip().lower()
        if not equals or not _HELO_NAME.fullmatch(helo_name):
            raise ValueError(f"{item!r}: give each address its EHLO name, as ADDRESS=NAME")
        if star and not weight_text.strip().isdecimal():
            raise ValueError(f"{item!r}: the weight after * is a whole number")
        weight = int(weight_text) if star else 1
        if weight < 1 or weight > 1000:
            raise ValueError(f"{item!r}: the weight is 1 to 1000")
        if any(source.address == canonical for source in sources):
            raise ValueError(f"{canonical}: {DUPLICATE_IP_ADDRESS}")
        sources.append(SourceAddress(canonical, helo_name, weight))
    return tuple(sources)


def pick_source(sources: tuple[SourceAddress, ...], rng: random.Random) -> SourceAddress:
    """One of ``sources``, each as often as its weight says."""
    return rng.choices(sources, weights=[source.weight for source in sources])[0]


@dataclass(frozen=True)
class MxRecord:
    preference: int
    exchange: str  # lowercase, no trailing dot; "" for the root (".")


def is_null_mx(records: list[MxRecord]) -> bool:
    """RFC 7505: a single MX of preference 0 naming the root says "no mail here".

    A null MX published beside other MX records is a misconfiguration; section 3 says
    such a domain MUST NOT have others, and senders then ignore the null one.
    """
    return len(records) == 1 and records[0].exchange == "" and records[0].preference == 0


def hosts_in_order(records: list[MxRecord], rng: random.Random) -> list[str]:
    """The exchanges to try, lowest preference first; equal preferences in random order
    (RFC 5321 5.1, so that load spreads over them), each host once, null targets left out."""
    ordered = sorted(records, key=lambda record: record.preference)
    hosts: list[str] = []
    for _, same in groupby(ordered, key=lambda record: record.preference):
        group = [record.exchange for record in same if record.exchange]
        rng.shuffle(group)
        hosts += [host for host in group if host not in hosts]
    return hosts


@functools.lru_cache(maxsize=4096)  # asked for every message; an MX's address rarely changes
def refused_address(address: str) -> str | None:
    """Why mail must not go to this address, or None when it may.

    A public MX never points at loopback, private, link-local or reserved space; a
    record that does is a mistake or an attempt to make us talk to our own network.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # Most specific first: Python counts link-local, unspecified and reserved as private too.
    for flag, kind in (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
    ):
        if flag:
            return f"{ip} is a {kind} address"
    if not ip.is_global:
        return f"{ip} is not a global address"
    return None
