"""``GET /metrics`` and what it counts of the API: every request, by route template,
method and status, with its latency (adapters/metrics.py), in front of every other layer
so that the fast paths (sending, tracking, the command endpoint) are counted too; and
each request's id (``X-Request-ID``), for the logs."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterable

from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.event_metadata import REQUEST
from adapters.log_format import REQUEST_ID
from adapters.metrics import CONTENT_TYPE, HTTP_REQUESTS, HTTP_SECONDS, exposition
from api.tracking import client_ip
from engine.accounts.callers import begin_request

_ID = r"[0-9a-fA-F-]{32,36}"
# Paths with an id, as their templates: the label of a route, not of each resource.
_TEMPLATES = (
    (re.compile(rf"^/api/v1/email/{_ID}$"), "/api/v1/email/{MessageID}"),
    (re.compile(rf"^/api/v1/templates/{_ID}$"), "/api/v1/templates/{TemplateID}"),
    (re.compile(rf"^/api/v1/routes/{_ID}$"), "/api/v1/routes/{RouteID}"),
)
_FIXED = frozenset({
    "/api/v1/email", "/api/v1/email/batch", "/api/v1/events", "/api/v1/webhooks",
    "/api/v1/templates", "/api/v1/routes", "/api.php", "/healthz", "/readyz", "/metrics",
    "/docs", "/openapi.json",
})  # fmt: skip
_PREFIXES = (("/t/", "tracking"), ("/console", "console"), ("/docs/", "docs"))


_GIVEN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _request_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when it is a plain token, else a new one: it follows
    the request into the logs (``LOG_FORMAT=json``) and comes back on the answer."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            given: str = value.decode("latin-1")
            if _GIVEN_ID.match(given):
                return given
    return uuid.uuid4().hex


def route_of(path: str) -> str:
    path = path.rstrip("/") or "/"
    if path in _FIXED:
        return path
    for template, name in _TEMPLATES:
        if template.match(path):
            return name
    for prefix, name in _PREFIXES:
        if path.startswith(prefix):
            return name
    return "other"


class MetricsEndpoint:
    """Counts each HTTP request and answers ``GET /metrics`` itself; ``collectors`` add
    what is asked of the installation when it is read (the readers' lag)."""

    def __init__(
        self,
        app: ASGIApp,
        collectors: Callable[[], Iterable[Collector]],
        trust_forwarded: bool = False,
    ) -> None:
        """``trust_forwarded``: the client's address is the first ``X-Forwarded-For`` hop
        (``TRUST_FORWARDED_FOR``), as tracking reads it."""
        self.app = app
        self._collectors = collectors
        self._trust_forwarded = trust_forwarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = route_of(scope["path"])
        status = 500
        request_id = _request_id(scope)
        token = REQUEST_ID.set(request_id)
        forwarded = b""
        if self._trust_forwarded:
            forwarded = next((v for k, v in scope["headers"] if k == b"x-forwarded-for"), b"")
        context_token = begin_request(
            request_id, client_ip(scope, forwarded), f"{scope['method']} {route}"
        )

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()),
                                      (b"x-request-id", request_id.encode())]  # fmt: skip
            await send(message)

        try:
            if route == "/metrics" and scope["method"] == "GET":
                await self._metrics(send)
                status = 200
            else:
                await self.app(scope, receive, counted)
        finally:
            REQUEST_ID.reset(token)
            REQUEST.reset(context_token)
            HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)

    async def _metrics(self, send: Send) -> None:
        body = await asyncio.to_thread(exposition, list(self._collectors()))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE.encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
