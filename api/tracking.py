"""``/t/…``: the open pixel, click redirects and unsubscribe links, as raw ASGI.

In front of the application like ``SendEmailFastPath``: these are the most numerous
requests a sender gets (every open and click of every message), they carry no JSON and
no API key, and FastAPI's routing would be most of their cost.

============================  ==========================================================
``GET  /t/o/{token}.gif``     a 1x1 transparent GIF, always, uncacheable; records an open
                              when the token is a valid open token (HEAD: no record)
``GET  /t/c/{token}``         302 to the link's original URL, as the recorder knows it
                              from the message (never a URL from the request); a bad
                              token or an unknown link: 404, nothing recorded
``GET  /t/u/{token}``         a confirmation page with a POST form; records nothing,
                              since link scanners fetch every GET in a message
``POST /t/u/{token}``         records the unsubscribe: ``List-Unsubscribe=One-Click``
                              (RFC 8058) is a one-click one, the page's form is not
============================  ==========================================================

Any other path under ``/t/`` is 404; a known path with another method is 405.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Protocol, TypeVar
from urllib.parse import parse_qsl, quote
from uuid import UUID

from starlette.types import ASGIApp, Receive, Scope, Send

from domain.tracking import CLICK, OPEN, UNSUBSCRIBE, verify_token

log = logging.getLogger(__name__)

T = TypeVar("T")

# The 43-byte GIF89a: 1x1, two-colour table, colour 0 transparent. Some clients refuse a
# zero-length or non-image answer and then show a broken-image icon.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00"
    b"!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00"
    b"\x02\x02D\x01\x00;"
)

MAX_BODY_BYTES = 16 * 1024  # a one-click POST or the page's form: a few bytes
MAX_USER_AGENT = 512  # what is kept of a User-Agent; the rest is noise or abuse

_NO_CACHE = [
    (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]
_PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL_GIF)).encode()),
    *_NO_CACHE,
]
# The pages hold no script and no outside resource; the form posts to this same URL.
_PAGE_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    *_NO_CACHE,
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-robots-tag", b"noindex, nofollow"),
]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
    "color:#222}button{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}"
)


def _page(title: str, body: str) -> bytes:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    ).encode()


NOT_FOUND_PAGE = _page(
    "Link not found",
    "<h1>Link not found</h1><p>This link is not valid. It may have been copied incompletely.</p>",
)
UNSUBSCRIBE_PAGE = _page(
    "Unsubscribe",
    "<h1>Unsubscribe</h1><p>Stop receiving these emails at this address?</p>"
    '<form method="post"><input type="hidden" name="confirm" value="1">'
    '<button type="submit">Unsubscribe</button></form>',
)
UNSUBSCRIBED_PAGE = _page(
    "Unsubscribed", "<h1>You are unsubscribed</h1><p>You will not get these emails again.</p>"
)
ERROR_PAGE = _page(
    "Please try again", "<h1>Something went wrong</h1><p>Please try again in a moment.</p>"
)
TOO_LARGE_PAGE = _page("Request too large", "<h1>Request too large</h1>")

# Characters a Location value may carry as they are; anything else (non-ASCII of an IRI,
# spaces) is percent-encoded. Existing escapes ("%") are kept.
_LOCATION_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The List-Unsubscribe part of a multipart/form-data body: its headers, a blank line, the value.
_MULTIPART_ONE_CLICK = re.compile(
    rb'name="List-Unsubscribe"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\nOne-Click\r\n'
)


class TrackingRecorder(Protocol):
    """Where tracking hits go; the engine's implementation hands events to its writer."""

    def record_open(self, message_id: UUID, ip: str, user_agent: str) -> None: ...

    def record_click(
        self, message_id: UUID, link_index: int, ip: str, user_agent: str
    ) -> str | None:
        """The link's original URL (to redirect to), or None for an unknown message or
        link index, in which case nothing is recorded."""
        ...

    def record_unsubscribe(
        self, message_id: UUID, ip: str, user_agent: str, one_click: bool
    ) -> bool:
        """True if recorded (or already unsubscribed); False for an unknown message."""
        ...


class TrackingEndpoint:
    """ASGI: ``/t/…`` answered here; everything else passes through to ``app``.

    ``trust_forwarded``: take the client IP from the first ``X-Forwarded-For`` hop. Only
    behind a proxy that sets that header itself (replacing what the client sent): the
    first hop is otherwise whatever the client wrote.

    ``offload``: call the recorder in a worker thread. Off by default: a recorder that
    only queues an event costs less than the hop (``bench/tracking.py`` measures both).
    """

    PREFIX = "/t/"

    def __init__(
        self,
        app: ASGIApp,
        recorder: TrackingRecorder,
        key: bytes,
        *,
        trust_forwarded: bool = False,
        offload: bool = False,
    ) -> None:
        self.app = app
        self.recorder = recorder
        self.key = key
        self.trust_forwarded = trust_forwarded
        self.offload = offload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.PREFIX):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        route, token = path[3:5], path[5:]
        if route == "o/" and token.endswith(".gif"):
            await self._open(scope, send, method, token[:-4])
        elif route == "c/" and token:
            await self._click(scope, send, method, token.rstrip("/"))
        elif route == "u/" and token:
            await self._unsubscribe(scope, receive, send, method, token.rstrip("/"))
        else:
            await _answer(send, 404, _PAGE_HEADERS, NOT_FOUND_PAGE, method)

    async def _open(self, scope: Scope, send: Send, method: str, token: str) -> None:
        if method not in ("GET", "HEAD"):
            await _not_allowed(send, method, b"GET, HEAD")
            return
        data = verify_token(token, self.key)
        # The image is answered whatever the token: a broken image in the reader's mail
        # would tell nobody anything useful.
        if method == "GET" and data is not None and data.kind == OPEN:
            ip, agent = self._client(scope)
            try:
                await self._call(self.recorder.record_open, data.message_id, ip, agent)
            except Exception:
                log.exception("recording an open failed")
        await _answer(send, 200, _PIXEL_HEADERS, PIXEL_GIF, method)

    async def _click(self, scope: Scope, send: Send, method: str, token: str) -> None:
        if method != "GET":
            # A HEAD would have to record the click to learn where it goes.
            await _not_allowed(send, method, b"GET")
            return
        data = verify_token(token, self.key)
        if data is None or data.kind != CLICK:
            await _answer(send, 404, _PAGE_HEADERS, NOT_FOUND_PAGE, method)
            return
        ip, agent = self._client(scope)
        try:
            url = await self._call(
                self.recorder.record_click, data.message_id, data.position, ip, agent
            )
        except Exception:
            log.exception("recording a click failed")
            await _answer(send, 500, _PAGE_HEADERS, ERROR_PAGE, method)
            return
        location = _location(url) if url is not None else None
        if location is None:
            await _answer(send, 404, _PAGE_HEADERS, NOT_FOUND_PAGE, method)
            return
        headers = [
            (b"location", location),
            (b"content-length", b"0"),
            *_NO_CACHE,
            (b"referrer-policy", b"no-referrer"),
        ]
        await _answer(send, 302, headers, b"", method)

    async def _unsubscribe(
        self, scope: Scope, receive: Receive, send: Send, method: str, token: str
    ) -> None:
        if method not in ("GET", "HEAD", "POST"):
            await _not_allowed(send, method, b"GET, HEAD, POST")
            return
        data = verify_token(token, self.key)
        if data is None or data.kind != UNSUBSCRIBE:
            await _answer(send, 404, _PAGE_HEADERS, NOT_FOUND_PAGE, method)
            return
        if method != "POST":
            await _answer(send, 200, _PAGE_HEADERS, UNSUBSCRIBE_PAGE, method)
            return
        body = await _read_body(receive, MAX_BODY_BYTES)
        if body is None:
            await _answer(send, 413, _PAGE_HEADERS, TOO_LARGE_PAGE, method)
            return
        one_click = _is_one_click(_header(scope, b"content-type"), body)
        ip, agent = self._client(scope)
        try:
            known = await self._call(
                self.recorder.record_unsubscribe, data.message_id, ip, agent, one_click
            )
        except Exception:
            log.exception("recording an unsubscribe failed")
            await _answer(send, 500, _PAGE_HEADERS, ERROR_PAGE, method)
            return
        if not known:
            await _answer(send, 404, _PAGE_HEADERS, NOT_FOUND_PAGE, method)
            return
        await _answer(send, 200, _PAGE_HEADERS, UNSUBSCRIBED_PAGE, method)

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        if self.offload:
            return await asyncio.to_thread(function, *args)
        return function(*args)

    def _client(self, scope: Scope) -> tuple[str, str]:
        """(IP, User-Agent) of the request, in one pass over the headers."""
        agent = b""
        forwarded = b""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                agent = value
            elif name == b"x-forwarded-for" and not forwarded:
                forwarded = value
        ip = client_ip(scope, forwarded if self.trust_forwarded else b"")
        return ip, agent[:MAX_USER_AGENT].decode("latin-1")


def client_ip(scope: Scope, forwarded: bytes) -> str:
    """The first hop of ``X-Forwarded-For`` (``forwarded``, when it is trusted), else the
    address the request came from."""
    ip = forwarded.split(b",", 1)[0].strip().decode("latin-1") if forwarded else ""
    if not ip:
        client = scope.get("client")
        ip = str(client[0]) if client else ""
    return ip


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value).decode("latin-1")
    return ""


def _location(url: str) -> bytes | None:
    """The Location value for a stored URL; None for one that must not be redirected to."""
    if _CONTROL.search(url) or not url.lower().startswith(("http://", "https://")):
        return None
    return quote(url, safe=_LOCATION_SAFE).encode("ascii")


def _is_one_click(content_type: str, body: bytes) -> bool:
    """RFC 8058: the POST body is ``List-Unsubscribe=One-Click``, form-encoded or as a
    multipart/form-data field."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return _MULTIPART_ONE_CLICK.search(body) is not None
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return False
    return ("List-Unsubscribe", "One-Click") in fields


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit``."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


async def _not_allowed(send: Send, method: str, allow: bytes) -> None:
    headers = [(b"allow", allow), (b"content-type", b"text/plain; charset=utf-8")]
    await _answer(send, 405, headers, b"Method not allowed", method)


async def _answer(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, method: str
) -> None:
    if not any(name == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
