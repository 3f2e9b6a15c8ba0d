"""Recipient domains' MTA-STS policies (RFC 8461): the ``_mta-sts`` TXT record through our
resolver (``adapters.dns.MailRoutes``), the policy file over HTTPS with httpcore, each kept
for the ``max_age`` the domain gives it.

The policy host ``mta-sts.<domain>`` is resolved by the same resolver as the MX hosts
(``DNS_RESOLVER``), and connected to with the asyncio streams of ``adapters.http_stream``;
its certificate must be valid for that name (``TLS_CA_FILE``, or the system's CAs), no
redirect is followed, and a reply that is not ``200 text/plain`` within 64 KiB is no policy.

What is cached, and when it is asked again (RFC 8461 5.1): the TXT record is kept for its
TTL; the policy until its ``max_age`` or until the record's ``id`` changes. A policy whose
renewal fails is kept while it is fresh, so a policy host that goes down, or an attacker
who blocks it, does not turn enforcement off.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpcore

from adapters.dns import MailRoutes
from adapters.http_stream import AddressListBackend
from domain.mta_sts import MAX_POLICY_BYTES, MtaStsPolicy, parse_policy, record_id
from domain.routing import refused_address

_FAILED_FETCH_SECONDS = 300.0  # a policy host that failed is not asked again before this
_MAX_DOMAINS = 100_000


@dataclass(frozen=True)
class _Known:
    expires: float  # time.monotonic() until which the policy may be used
    record_id: str
    policy: MtaStsPolicy
    refresh_after: float  # from then on it is fetched again while still in force


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _MAX_DOMAINS:
        cache.popitem(last=False)


class _ResolvingBackend(AddressListBackend):
    """Connects to the addresses our resolver gives for the host (not the system's)."""

    unix_socket_refusal = "policy hosts are never Unix sockets"

    def __init__(self, routes: MailRoutes, allow_private_addresses: bool) -> None:
        self._routes = routes
        self._allow_private = allow_private_addresses

    async def addresses(self, host: str, port: int) -> list[str]:
        found = await self._routes.addresses(host)
        usable = [a for a in found if self._allow_private or refused_address(a) is None]
        if not usable:
            raise httpcore.ConnectError(f"{host} has no address to connect to")
        return usable


class MtaStsPolicies:
    """The policy of each recipient domain, or None where it has none (see the module)."""

    def __init__(
        self,
        routes: MailRoutes,
        tls_context: ssl.SSLContext,
        *,
        timeout: float = 10.0,
        allow_private_addresses: bool = False,
    ) -> None:
        self._routes = routes
        self._timeout = timeout
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls_context,
            max_connections=16,
            max_keepalive_connections=0,  # one fetch a domain now and then: nothing to keep
            network_backend=_ResolvingBackend(routes, allow_private_addresses),
        )
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._records: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._failed: OrderedDict[tuple[str, str], float] = OrderedDict()  # → retry after
        self._pending: dict[str, asyncio.Task[MtaStsPolicy | None]] = {}

    async def policy(self, domain: str) -> MtaStsPolicy | None:
        key = domain.lower().rstrip(".")
        now = time.monotonic()
        known = self._known.get(key)
        record = self._records.get(key)
        if (
            known is not None
            and record is not None
            and record[0] > now
            and record[1] == known.record_id
            and known.refresh_after > now
        ):
            return known.policy  # the common case: nothing to ask anyone
        lookup = self._pending.get(key)
        if lookup is None:
            # A task of its own, so that a sender cancelled while waiting cancels no other.
            lookup = asyncio.get_running_loop().create_task(self._look_up(key))
            self._pending[key] = lookup
            lookup.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(lookup)

    async def close(self) -> None:
        await self._pool.aclose()

    async def _look_up(self, domain: str) -> MtaStsPolicy | None:
        now = time.monotonic()
        known = self._known.get(domain)
        if known is not None and known.expires <= now:
            del self._known[domain]
            known = None
        current = await self._record_id(domain, now)
        unchanged = known is not None and current == known.record_id
        if current is None or (unchanged and known is not None and known.refresh_after > now):
            # No record (or none readable): a fresh policy still stands, as RFC 8461 5.1 says.
            return known.policy if known is not None else None
        # A new id, no policy yet, or half the policy's life gone (RFC 8461 10.2: renew it
        # before it expires, so that a policy host blocked at that moment changes nothing).
        if self._failed.get((domain, current), 0.0) > now:
            return known.policy if known is not None else None
        fetched = await self._fetch(domain)
        if fetched is None:
            _remember(self._failed, (domain, current), now + _FAILED_FETCH_SECONDS)
            return known.policy if known is not None else None
        self._failed.pop((domain, current), None)
        # max_age 0 would mean a fetch per message: keep it a few seconds at least.
        life = max(float(fetched.max_age), 5.0)
        _remember(self._known, domain, _Known(now + life, current, fetched, now + life / 2))
        return fetched

    async def _record_id(self, domain: str, now: float) -> str | None:
        cached = self._records.get(domain)
        if cached is not None and cached[0] > now:
            return cached[1]
        answer = await self._routes.texts(f"_mta-sts.{domain}")
        if answer is None:
            return cached[1] if cached is not None else None  # DNS silent: as last known
        texts, ttl = answer
        found = record_id(texts)
        _remember(self._records, domain, (now + ttl, found))
        return found

    async def _fetch(self, domain: str) -> MtaStsPolicy | None:
        url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
        timeouts = dict.fromkeys(("connect", "read", "write", "pool"), self._timeout)
        try:
            async with (
                asyncio.timeout(self._timeout * 2),
                self._pool.stream("GET", url, extensions={"timeout": timeouts}) as response,
            ):
                if response.status != 200:
                    return None
                content_type = dict((name.lower(), value) for name, value in response.headers).get(
                    b"content-type", b""
                )
                if content_type.split(b";")[0].strip().lower() != b"text/plain":
                    return None
                body = bytearray()
                async for chunk in response.aiter_stream():
                    body += chunk
                    if len(body) > MAX_POLICY_BYTES:
                        return None
            return parse_policy(body.decode("utf-8"))
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError):
            return None
        except (TimeoutError, ValueError, ssl.SSLError, OSError):  # PolicyError is one
            return None
