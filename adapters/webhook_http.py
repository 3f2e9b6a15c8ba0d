"""Outbound HTTP for customer webhooks: URL checks, SSRF protection, signatures, a sender.

A webhook URL is typed in by a customer and then called by us, from inside
our network. Left unchecked that is a server-side request forgery: a URL
naming ``localhost``, a private range or the cloud metadata service would
have us fetch internal resources on the customer's behalf (and show them the
first bytes of the answer in the delivery log). Checking the URL when it is
registered is not enough either: a name that resolved to a public address
then can resolve to ``127.0.0.1`` a second later (DNS rebinding). So the
address check runs again at delivery time, in the network backend that
opens each TCP connection, on the very address the socket connects to.

Signatures follow Standard Webhooks (https://www.standardwebhooks.com):
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64>``
headers, an HMAC-SHA256 over ``"{id}.{timestamp}.{body}"`` keyed with a
``whsec_``-prefixed base64 secret, so receivers can verify with any of the
published libraries.

The sender reports instead of raising: every failure to get an HTTP answer
is a :class:`SendResult` with status 0 and a short reason, because for the
caller it is one more failed attempt to schedule a retry for.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import errno
import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import httpcore
import httpx
import idna

from adapters.endpoint_limit import EndpointLimit
from adapters.http_stream import AddressListBackend

__all__ = [
    "AddressPolicy",
    "SendResult",
    "UnsafeWebhookURL",
    "WebhookRequest",
    "WebhookSender",
    "check_webhook_url",
    "new_signing_key",
    "resolve_safely",
    "sign",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
SIGNING_KEY_PREFIX = "whsec_"
_SIGNING_KEY_BYTES = 32
# A body that ends within this many bytes is read to its end (and only its
# first ``max_response_bytes`` kept) so the connection can go back to the pool;
# a longer one is cut off and its connection closed.
_DRAIN_LIMIT = 64 * 1024
_MAX_ERROR_LENGTH = 200


class UnsafeWebhookURL(ValueError):
    """The URL is malformed, not http(s), or its host resolves to an address we refuse."""


class _Unresolvable(UnsafeWebhookURL):
    """The host has no address (the message names the host)."""


class _RefusedAddress(UnsafeWebhookURL):
    """The host resolves to an address the policy refuses."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host} resolves to a refused {reason}" if host else reason)
        self.host = host
        self.reason = reason


# --- Addresses -----------------------------------------------------------------------------

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Cloud instance metadata and platform endpoints: refused whatever the policy,
# because credentials live there. AWS, GCP, Azure, Oracle and others use
# 169.254.169.254 (and AWS ECS 169.254.170.2); AWS's IPv6 form is fd00:ec2::254;
# Alibaba uses 100.100.100.200; Azure's WireServer is 168.63.129.16, a public
# address that only answers from inside Azure.
_METADATA: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "100.100.100.200",
        "168.63.129.16",
        "fd00:ec2::254",
    )
)

_LOOPBACK = "loopback"
_PRIVATE = "private"
_ALWAYS = "always"

# (network, reason, category) — the first match decides; "always" ignores the policy.
_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str, str], ...] = (
    (_V4("0.0.0.0/32"), "unspecified address", _ALWAYS),
    (_V4("0.0.0.0/8"), "this-network address", _ALWAYS),
    (_V4("127.0.0.0/8"), "loopback address", _LOOPBACK),
    (_V4("10.0.0.0/8"), "private address", _PRIVATE),
    (_V4("172.16.0.0/12"), "private address", _PRIVATE),
    (_V4("192.168.0.0/16"), "private address", _PRIVATE),
    (_V4("100.64.0.0/10"), "shared address space address", _ALWAYS),
    (_V4("169.254.0.0/16"), "link-local address", _ALWAYS),
    (_V4("192.0.0.0/24"), "IETF protocol assignment address", _ALWAYS),
    (_V4("192.0.2.0/24"), "documentation address", _ALWAYS),
    (_V4("198.51.100.0/24"), "documentation address", _ALWAYS),
    (_V4("203.0.113.0/24"), "documentation address", _ALWAYS),
    (_V4("192.88.99.0/24"), "6to4 relay anycast address", _ALWAYS),
    (_V4("198.18.0.0/15"), "benchmarking address", _ALWAYS),
    (_V4("224.0.0.0/4"), "multicast address", _ALWAYS),
    (_V4("255.255.255.255/32"), "broadcast address", _ALWAYS),
    (_V4("240.0.0.0/4"), "reserved address", _ALWAYS),
)

_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str, str], ...] = (
    (_V6("::/128"), "unspecified address", _ALWAYS),
    (_V6("::1/128"), "loopback address", _LOOPBACK),
    (_V6("64:ff9b:1::/48"), "local-use NAT64 address", _PRIVATE),
    (_V6("fc00::/7"), "unique-local address", _PRIVATE),
    (_V6("fec0::/10"), "site-local address", _PRIVATE),
    (_V6("fe80::/10"), "link-local address", _ALWAYS),
    (_V6("ff00::/8"), "multicast address", _ALWAYS),
    (_V6("::/96"), "IPv4-compatible address", _ALWAYS),
    (_V6("100::/64"), "discard-only address", _ALWAYS),
    (_V6("2001:db8::/32"), "documentation address", _ALWAYS),
    (_V6("3fff::/20"), "documentation address", _ALWAYS),
    (_V6("2001:2::/48"), "benchmarking address", _ALWAYS),
    (_V6("2001::/23"), "IETF protocol assignment address", _ALWAYS),
)
_V6_GLOBAL_UNICAST = _V6("2000::/3")
_V6_TRANSLATED = _V6("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
_V6_NAT64 = _V6("64:ff9b::/96")  # RFC 6052 well-known prefix


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses webhook calls may reach; the defaults suit production."""

    allow_loopback: bool = False  # tests and development only
    allow_private: bool = False  # ditto, for private-network receivers

    def refuses(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        """A reason ("loopback address 127.0.0.1", ...) when the address may not be called.

        None when it may.

        Refused: loopback (unless allowed), private / unique-local (unless
        ``allow_private``), link-local, multicast, unspecified, reserved,
        broadcast, documentation and benchmarking ranges, shared address space
        100.64/10, IPv4-mapped / translated / NAT64 IPv6 forms of refused IPv4
        addresses, 6to4 and Teredo addresses embedding them, and cloud metadata
        addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200, ...) even
        when private addresses are allowed.
        """
        if address in _METADATA:
            return f"cloud metadata address {address}"
        if isinstance(address, ipaddress.IPv4Address):
            return self._v4(address)
        return self._refuses_v6(address)

    def _refuses_v6(self, address: ipaddress.IPv6Address) -> str | None:
        embedded: list[tuple[str, ipaddress.IPv4Address]] = []
        if address.ipv4_mapped is not None:
            embedded.append(("IPv4-mapped address", address.ipv4_mapped))
        elif address in _V6_TRANSLATED or address in _V6_NAT64:
            kind = "IPv4-translated address" if address in _V6_TRANSLATED else "NAT64 address"
            embedded.append((kind, ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)))
        elif address.sixtofour is not None:
            embedded.append(("6to4 address", address.sixtofour))
        elif address.teredo is not None:
            server, client = address.teredo
            embedded += [("Teredo address", client), ("Teredo address", server)]
        if embedded:
            for kind, inner in embedded:
                reason = self.refuses(inner)
                if reason is not None:
                    return f"{kind} {address} embedding {reason}"
            return None
        matched, reason = self._judge(address, _V6_RANGES)
        if not matched and address not in _V6_GLOBAL_UNICAST:
            return f"reserved address {address}"
        return reason

    def _v4(self, address: ipaddress.IPv4Address) -> str | None:
        return self._judge(address, _V4_RANGES)[1]

    def _judge(
        self,
        address: IPAddress,
        ranges: Iterable[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str, str]],
    ) -> tuple[bool, str | None]:
        """Whether a listed range holds the address, and the reason if that range is refused."""
        for network, reason, category in ranges:
            if address not in network:
                continue
            if (category == _LOOPBACK and self.allow_loopback) or (
                category == _PRIVATE and self.allow_private
            ):
                return True, None
            return True, f"{reason} {address}"
        return False, None


async def resolve_safely(host: str, port: int, policy: AddressPolicy) -> list[str]:
    """The host's addresses; UnsafeWebhookURL if it does not resolve or ANY address is refused.

    Resolution goes through the event loop's getaddrinfo, so /etc/hosts and
    the system resolver apply. A literal IP address is checked as it is.

    Refusing the whole name when one address is bad (rather than skipping it)
    keeps a name that mixes a public and an internal address from reaching the
    internal one on a retry. Nothing is cached: each call asks again.
    """
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    literal = _parse_address(name)
    if literal is not None:
        reason = policy.refuses(literal)
        if reason is not None:
            raise _RefusedAddress("", reason)
        return [literal.compressed]
    if not name:
        raise _Unresolvable("no host to resolve")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise _Unresolvable(f"{host} is not a valid host name: {exc}") from None
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise _Unresolvable(f"{host} does not resolve ({_os_error_text(exc)})") from None
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = _parse_address(str(sockaddr[0]))
        if address is None:
            raise _RefusedAddress(host, f"unparseable address {sockaddr[0]!r}")
        reason = policy.refuses(address)
        if reason is not None:
            raise _RefusedAddress(host, reason)
        if address.compressed not in addresses:
            addresses.append(address.compressed)
    if not addresses:
        raise _Unresolvable(f"{host} does not resolve (no addresses)")
    return addresses


def _parse_address(text: str) -> IPAddress | None:
    """A strictly written IP address (scope ids dropped), or None for anything else."""
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


# --- URLs ----------------------------------------------------------------------------------

_FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x20\x7f-\x9f\s]")
_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
# A last label like this makes inet_aton-style readers see an IPv4 address
# ("127.1", "2130706433", "0x7f000001"); no top-level domain looks like it.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def check_webhook_url(url: str, allow_http: bool) -> str:
    """Syntax only, no DNS: returns the normalised URL; raises UnsafeWebhookURL.

    https is required unless ``allow_http``; a host is required; no userinfo
    (user:pass@); no fragment; port 1-65535; total length <= 2048; an IDNA
    host is fine. A literal IP host is checked against nothing here (see
    :func:`resolve_safely`).

    Normalised means: scheme and host in lowercase, an internationalised host
    in its ASCII (A-label) form, an IPv6 host in its compressed form, the
    default port dropped, an empty path written ``/`` and non-ASCII characters
    of the path and query percent-encoded. Surrounding whitespace is ignored;
    whitespace or control characters inside the URL are refused.
    """
    return _normalise_url(url, allow_http=allow_http, max_length=MAX_URL_LENGTH)


def _normalise_url(url: str, *, allow_http: bool, max_length: int | None) -> str:
    if not isinstance(url, str):
        raise UnsafeWebhookURL("the URL must be a string")
    text = url.strip()
    if max_length is not None and len(text) > max_length:
        raise UnsafeWebhookURL(f"the URL is longer than {max_length} characters")
    if not text:
        raise UnsafeWebhookURL("the URL is empty")
    if _FORBIDDEN_CHARACTERS.search(text):
        raise UnsafeWebhookURL("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an unclosed or invalid [IPv6] host
        raise UnsafeWebhookURL(f"the URL cannot be parsed: {exc}") from None
    scheme = parts.scheme.lower()
    allowed = "https or http" if allow_http else "https"
    if scheme == "http" and not allow_http:
        raise UnsafeWebhookURL("the URL must use https://")
    if not scheme:
        raise UnsafeWebhookURL(f"the URL has no scheme: write {allowed.split()[0]}://...")
    if scheme not in _DEFAULT_PORTS:
        raise UnsafeWebhookURL(f"the URL must use {allowed}, not {scheme}")
    if not text[len(parts.scheme) :].startswith("://"):
        raise UnsafeWebhookURL("the URL has no host")
    if "#" in text:
        raise UnsafeWebhookURL("the URL may not have a fragment (#...)")
    if "@" in parts.netloc:
        raise UnsafeWebhookURL("the URL may not carry a user name or password (user:pass@)")
    host, port = _host_and_port(parts.netloc)
    authority = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = quote(parts.path, safe=_PATH_SAFE) or "/"
    query = quote(parts.query, safe=_QUERY_SAFE)
    normalised = f"{scheme}://{authority}{path}" + (f"?{query}" if query else "")
    if max_length is not None and len(normalised) > max_length:
        raise UnsafeWebhookURL(f"the URL is longer than {max_length} characters once encoded")
    return normalised


def _host_and_port(netloc: str) -> tuple[str, int | None]:
    """The normalised host (IPv6 in brackets) and the port if one is written."""
    if netloc.startswith("["):
        inside, bracket, rest = netloc[1:].partition("]")
        if not bracket:
            raise UnsafeWebhookURL("the URL's IPv6 host has no closing bracket")
        if "%" in inside:
            raise UnsafeWebhookURL("the URL's IPv6 host may not have a zone (%...)")
        try:
            host = f"[{ipaddress.IPv6Address(inside).compressed}]"
        except ValueError:
            raise UnsafeWebhookURL(f"the URL's host [{inside}] is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise UnsafeWebhookURL("the URL has characters after its IPv6 host")
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text_or_empty = netloc.rpartition(":")
        if not colon:
            name, port_text_or_empty = netloc, ""
        port_text = port_text_or_empty if colon else None
        host = _host_name(name)
    if port_text is None or port_text == "":
        return host, None
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise UnsafeWebhookURL(f"the URL's port must be 1-65535, not {port_text!r}")
    return host, int(port_text)


def _host_name(name: str) -> str:
    if not name:
        raise UnsafeWebhookURL("the URL has no host")
    if ":" in name:
        raise UnsafeWebhookURL("an IPv6 host must be written in brackets: https://[::1]/")
    try:
        return ipaddress.IPv4Address(name).compressed
    except ValueError:
        pass
    if name.isascii():
        ascii_name = name.lower()
        labels = ascii_name.removesuffix(".").split(".")
        if any(label.startswith("xn--") for label in labels):
            try:  # an A-label must decode; idna also checks what it decodes to
                idna.decode(ascii_name)
            except (idna.IDNAError, UnicodeError) as exc:
                raise UnsafeWebhookURL(f"the URL's host {name!r} is not valid: {exc}") from None
    else:
        try:
            ascii_name = idna.encode(name, uts46=True).decode("ascii").lower()
        except (idna.IDNAError, UnicodeError) as exc:
            raise UnsafeWebhookURL(f"the URL's host {name!r} is not valid: {exc}") from None
        labels = ascii_name.removesuffix(".").split(".")
    if len(ascii_name.removesuffix(".")) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
        raise UnsafeWebhookURL(f"the URL's host {name!r} is not a valid host name")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise UnsafeWebhookURL(f"the URL's host {name!r} is neither an IP address nor a name")
    return ascii_name


# --- Signatures ----------------------------------------------------------------------------


def new_signing_key() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SIGNING_KEY_PREFIX + base64.b64encode(secrets.token_bytes(_SIGNING_KEY_BYTES)).decode()


def sign(signing_key: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature header value.

    ``"v1,<base64 HMAC-SHA256 of f'{id}.{ts}.{body}'>"``, keyed with the
    base64-decoded part after ``"whsec_"``.

    A key without the prefix is accepted too, as the verifier libraries do.
    Raises ``ValueError`` for a key that is not base64 or decodes to nothing.
    """
    encoded = signing_key.removeprefix(SIGNING_KEY_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("the signing key is not base64 after 'whsec_'") from None
    if not key:
        raise ValueError("the signing key is empty")
    signed = f"{message_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


# --- Sending -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    """One call, ready to go: the caller has built the body and signed it."""

    url: str
    method: str  # "POST" or "GET"
    body: bytes  # for GET: "" (the query is already in url)
    content_type: str  # "application/json", "application/x-www-form-urlencoded", "" for GET
    headers: Mapping[str, str]  # e.g. webhook-id / -timestamp / -signature, added verbatim


@dataclass(frozen=True)
class SendResult:
    """What came of one call.

    ``status_code`` is 0 when no HTTP answer came. When the status line came
    but the body did not finish within the time allowed, the status is kept
    and ``error`` says "timeout": such a call does not count as succeeded.
    ``latency_ms`` covers the whole ``send``, including any wait for a free
    slot to the host.
    """

    status_code: int  # 0 when there was no HTTP answer
    latency_ms: float
    error: str  # "" when an HTTP answer came; else a short reason
    snippet: str  # the first ``max_response_bytes`` of the body, decoded with errors="replace"

    @property
    def succeeded(self) -> bool:
        """A 2xx answer, read in full time."""
        return 200 <= self.status_code < 300 and not self.error


class _GuardedBackend(AddressListBackend):
    """Every TCP connection goes to an address :func:`resolve_safely` checked, on asyncio's
    transports (see :mod:`adapters.http_stream` for why not httpcore's own)."""

    unix_socket_refusal = "webhook calls never use Unix sockets"

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy

    async def addresses(self, host: str, port: int) -> list[str]:
        call = _CALL.get()
        if call is not None:
            call.connected = True  # a connection is being made, not taken from the pool
        return await resolve_safely(host, port, self._policy)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool whose connections all pass the address policy.

    No proxy: a proxy would connect on our behalf to an address we never see.
    """

    def __init__(
        self, backend: _GuardedBackend, limits: httpx.Limits, ssl_context: ssl.SSLContext
    ) -> None:
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=backend,
        )


@dataclass
class _Origin:
    """Calls to one scheme, host and port: their pool and their share of concurrency."""

    transport: _GuardedTransport
    slots: EndpointLimit
    users: int = 0  # calls in flight or waiting for a slot
    idle_since: float = 0.0


def _origin_key(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}:{url.port or _DEFAULT_PORTS.get(url.scheme, 0)}"


class _Router(httpx.AsyncBaseTransport):
    """Hands each request to its origin's transport; the sender creates and retires those.

    One pool per origin rather than one shared pool: httpcore's pool does
    work in proportion to the square of its connection count on every
    request, which with hundreds of connections costs more than the calls.
    """

    def __init__(self, origins: Mapping[str, _Origin]) -> None:
        self._origins = origins

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._origins[_origin_key(request.url)].transport.handle_async_request(request)

    async def aclose(self) -> None:
        await asyncio.gather(*(origin.transport.aclose() for origin in self._origins.values()))


@dataclass
class _Progress:
    """How far one call got, for the result when it is cut short."""

    status_code: int = 0
    body: bytearray = field(default_factory=bytearray)
    waiting_for: str = "a free slot to the host"  # "" once the request is under way
    connected: bool = False  # a new connection was opened for it


# The call the running task is making: the backend marks it when it opens a connection
# (httpcore connects in the task that asked), so its latency is not held against the endpoint.
_CALL: contextvars.ContextVar[_Progress | None] = contextvars.ContextVar(
    "webhook_call", default=None
)


class WebhookSender:
    """Makes webhook calls over pooled keep-alive connections; ``send`` never raises.

    Every connection is opened to an address :class:`AddressPolicy` accepts,
    checked when the connection is made (see ``_GuardedBackend``). Redirects
    are not followed: a 3xx is an answer like any other non-2xx.

    ``total_timeout`` bounds a whole ``send``: waiting for a free slot,
    connecting and reading the body, however slowly the receiver drips it.
    Each origin (scheme, host, port) gets as many calls at a time as keep its
    answers quick (:class:`EndpointLimit`), never more than ``max_per_host``,
    so one slow receiver cannot hold every connection, and at most
    ``max_connections`` are in flight in all. Each origin has its own pool of up to
    ``max_per_host`` keep-alive connections; a pool unused for
    ``keepalive_expiry`` seconds is closed. Response bodies are read up to
    ``max_response_bytes`` and never decompressed (``accept-encoding:
    identity``), so no body is held whole. Cookies a receiver sets are ignored.
    """

    # Under the 5 s that Node, uvicorn and others keep an idle connection: closing ours
    # first, we never send on one the server is closing.
    keepalive_expiry = 4.0

    def __init__(
        self,
        policy: AddressPolicy,
        connect_timeout: float = 5.0,
        total_timeout: float = 10.0,
        max_connections: int = 512,
        max_per_host: int = 32,
        max_response_bytes: int = 1024,
        user_agent: str = "Sendstream-Webhooks/1",
    ) -> None:
        if connect_timeout <= 0 or total_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if max_connections < 1 or max_per_host < 1:
            raise ValueError("max_connections and max_per_host must be at least 1")
        if max_response_bytes < 0:
            raise ValueError("max_response_bytes may not be negative")
        self.policy = policy
        self._total_timeout = total_timeout
        self._max_per_host = min(max_per_host, max_connections)
        self._max_response_bytes = max_response_bytes
        self._calls = asyncio.Semaphore(max_connections)
        self._backend = _GuardedBackend(policy)
        self._ssl_context = httpx.create_ssl_context(trust_env=False)
        self._origin_limits = httpx.Limits(
            max_connections=self._max_per_host,
            max_keepalive_connections=self._max_per_host,
            keepalive_expiry=self.keepalive_expiry,
        )
        self._origins: dict[str, _Origin] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._next_sweep = 0.0
        # Requests go straight to the transport: httpx's client layers (redirects, auth,
        # cookies, proxies from the environment) have nothing to do for a webhook call,
        # and cost a fifth of the call's time.
        self._router = _Router(self._origins)
        self._timeouts = {
            "connect": connect_timeout, "read": total_timeout,
            "write": total_timeout, "pool": total_timeout,
        }  # fmt: skip
        self._default_headers = {
            "user-agent": user_agent, "accept": "*/*", "accept-encoding": "identity",
        }  # fmt: skip

    def __repr__(self) -> str:
        return f"WebhookSender({self.policy!r}, total_timeout={self._total_timeout})"

    async def send(self, request: WebhookRequest) -> SendResult:
        """Make the call and report how it went; never raises (except ``CancelledError``)."""
        started = time.perf_counter()
        progress = _Progress()
        token = _CALL.set(progress)
        try:
            error = await self._send(request, progress)
        except TimeoutError:
            error = (
                f"timeout waiting for {progress.waiting_for}" if progress.waiting_for else "timeout"
            )
        except Exception as exc:  # reported, never raised
            error = _describe(exc)
        finally:
            _CALL.reset(token)
        return SendResult(
            status_code=progress.status_code,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            error=error[:_MAX_ERROR_LENGTH],
            snippet=bytes(progress.body).decode("utf-8", errors="replace"),
        )

    async def aclose(self) -> None:
        """Close every pooled connection; the sender is not used afterwards."""
        await self._router.aclose()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _send(self, request: WebhookRequest, progress: _Progress) -> str:
        try:
            # No length limit here: a GET carries its payload in the query.
            url = _normalise_url(request.url, allow_http=True, max_length=None)
        except UnsafeWebhookURL as exc:
            return f"invalid url: {exc}"
        method = request.method.upper()
        if method not in ("POST", "GET"):
            return f"unsupported method {request.method!r}"
        headers = httpx.Headers(self._default_headers)
        headers.update(request.headers)
        if request.content_type:
            headers["content-type"] = request.content_type
        target = httpx.URL(url)
        async with (
            asyncio.timeout(self._total_timeout),
            self._origin(_origin_key(target), progress),
        ):
            progress.waiting_for = "a free connection"
            async with self._calls:
                progress.waiting_for = ""
                outgoing = httpx.Request(
                    method,
                    target,
                    content=request.body or None,
                    headers=headers,
                    extensions={"timeout": self._timeouts},
                )
                response = await self._router.handle_async_request(outgoing)
                try:
                    progress.status_code = response.status_code
                    await self._read_body(response, progress.body)
                finally:
                    await response.aclose()
        return ""

    async def _read_body(self, response: httpx.Response, kept: bytearray) -> None:
        limit = self._max_response_bytes
        seen = 0
        async for chunk in response.aiter_raw():
            room = limit - len(kept)
            if room > 0:
                kept += chunk[:room]
            seen += len(chunk)
            if seen > max(limit, _DRAIN_LIMIT):
                break  # closing the unfinished response closes its connection

    def origin_of(self, url: str) -> str:
        """The key of the endpoint (scheme, host, port) a URL is called at ("" for a URL
        that cannot be called)."""
        try:
            return _origin_key(httpx.URL(_normalise_url(url, allow_http=True, max_length=None)))
        except (UnsafeWebhookURL, httpx.InvalidURL):
            return ""

    def backed_up(self, seconds: float) -> set[str]:
        """The endpoints whose waiting calls would wait more than ``seconds`` for a slot."""
        return {
            key for key, origin in self._origins.items()
            if origin.slots.waiting and origin.slots.backlog_seconds() > seconds
        }  # fmt: skip

    @contextlib.asynccontextmanager
    async def _origin(self, key: str, progress: _Progress) -> AsyncIterator[None]:
        """Hold one of the origin's slots (see :class:`EndpointLimit`); its pool exists
        meanwhile. The slot is judged by whether an HTTP answer came, and how fast."""
        self._retire_idle_origins()
        origin = self._origins.get(key)
        if origin is None:
            transport = _GuardedTransport(self._backend, self._origin_limits, self._ssl_context)
            origin = self._origins[key] = _Origin(transport, EndpointLimit(self._max_per_host))
        origin.users += 1
        try:
            taken_at = await origin.slots.acquire()
            try:
                yield
            finally:
                origin.slots.release(
                    taken_at, answered=progress.status_code != 0, judged=not progress.connected
                )
        finally:
            origin.users -= 1
            origin.idle_since = time.monotonic()

    def _retire_idle_origins(self) -> None:
        """Close the pools of origins nobody called for ``keepalive_expiry`` (once a second)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        for key, origin in list(self._origins.items()):
            if origin.users == 0 and now - origin.idle_since > self.keepalive_expiry:
                del self._origins[key]
                task = asyncio.create_task(_close_quietly(origin.transport))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)


async def _close_quietly(transport: httpx.AsyncBaseTransport) -> None:
    with contextlib.suppress(Exception):  # idle connections; nobody to tell
        await transport.aclose()


def _describe(exc: BaseException) -> str:
    """A short reason for a call that got no (complete) HTTP answer."""
    if isinstance(exc, _RefusedAddress):
        where = f" ({exc.host})" if exc.host else ""
        return f"refused address: {exc.reason}{where}"
    if isinstance(exc, _Unresolvable):
        return f"dns: {exc}"
    if isinstance(exc, UnsafeWebhookURL):
        return f"invalid url: {exc}"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.TransportError):
        cause = _find_cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"tls certificate error: {cause.verify_message or cause.reason}"
        if isinstance(cause, ssl.SSLError):
            return f"tls error: {cause.reason or cause}"
        if isinstance(cause, OSError) and cause.errno is not None:
            return _os_error_text(cause)
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"protocol error: {exc}"
        if isinstance(exc, httpx.ConnectError):
            return f"connect error: {exc}"
        if isinstance(exc, httpx.ReadError | httpx.WriteError):
            return "connection closed"
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        return f"invalid request: {exc}"
    return f"unexpected error: {type(exc).__name__}: {exc}"


_ERRNO_TEXT = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connect timeout",
}


def _os_error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        if isinstance(exc, socket.gaierror):
            return str(exc.strerror or exc)
        return _ERRNO_TEXT.get(exc.errno) or str(exc.strerror or exc)
    return str(exc)


def _find_cause(exc: BaseException) -> BaseException | None:
    """The most specific SSL or errno-carrying OSError behind a transport error, if any."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    found: BaseException | None = None
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        if isinstance(current, OSError) and current.errno is not None and found is None:
            found = current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return found
