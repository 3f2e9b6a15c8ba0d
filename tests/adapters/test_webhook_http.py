"""Webhook HTTP calls against real uvicorn servers on 127.0.0.1.

The receivers run in background threads with their own event loops, so the
sender under test talks to them over real sockets: keep-alive, timeouts,
TLS and refused connections are the kernel's and uvicorn's, not mocks.
Only name resolution is faked (in the tests about DNS), by replacing the
running loop's ``getaddrinfo``, which is what ``resolve_safely`` calls.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from adapters.webhook_http import (
    AddressPolicy,
    SendResult,
    UnsafeWebhookURL,
    WebhookRequest,
    WebhookSender,
    _GuardedBackend,
    _GuardedTransport,
    check_webhook_url,
    new_signing_key,
    resolve_safely,
    sign,
)

LOOPBACK = "127.0.0.1"
TLS_NAME = "hooks.tls.test"
LOCAL = AddressPolicy(allow_loopback=True)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# --- The receiver ----------------------------------------------------------------------------


@dataclass
class Hit:
    """One request as the receiver saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass
class Receiver:
    """An ASGI app that records every request under its ``t`` (token) query parameter.

    Routes: ``/echo`` (200 "ok"), ``/status/<code>``, ``/redirect`` (302 to
    ``/target``), ``/target``, ``/sleep?s=``, ``/drip`` (one byte every 50 ms),
    ``/huge`` (an endless body), ``/body?n=`` (n bytes), ``/cookie`` (sets one).
    """

    hits: dict[str, list[Hit]] = field(default_factory=lambda: defaultdict(list))
    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    most_in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, token: str) -> list[Hit]:
        with self.lock:
            return list(self.hits.get(token, []))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = parse_qs(scope["query_string"].decode(), keep_blank_values=True)
        token = query.get("t", [""])[0]
        hit = Hit(
            method=scope["method"],
            path=scope["path"],
            query=query,
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=body,
            client_port=scope["client"][1],
        )
        with self.lock:
            self.hits[token].append(hit)
            self.in_flight[token] += 1
            self.most_in_flight[token] = max(self.most_in_flight[token], self.in_flight[token])
        try:
            await self._answer(hit, token, send)
        finally:
            with self.lock:
                self.in_flight[token] -= 1

    async def _answer(self, hit: Hit, token: str, send: Send) -> None:
        path = hit.path
        if path.startswith("/status/"):
            await _respond(send, int(path.removeprefix("/status/")), b"status page")
        elif path == "/redirect":
            location = f"/target?{urlencode({'t': token})}".encode()
            await _respond(send, 302, b"", [(b"location", location)])
        elif path == "/sleep":
            await asyncio.sleep(float(hit.query["s"][0]))
            await _respond(send, 200, b"slept")
        elif path == "/drip":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(100):
                await send({"type": "http.response.body", "body": b"x", "more_body": True})
                await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": b""})
        elif path == "/huge":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            chunk = b"h" * 65536
            for _ in range(4096):  # 256 MiB unless the client goes away
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/body":
            await _respond(send, 200, b"b" * int(hit.query["n"][0]))
        elif path == "/cookie":
            await _respond(send, 200, b"", [(b"set-cookie", b"session=secret; Path=/")])
        else:
            await _respond(send, 200, b"ok " + token.encode())


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


@dataclass
class RunningServer:
    receiver: Receiver
    port: int
    scheme: str

    def url(self, path: str, token: str, host: str = LOOPBACK, **params: str) -> str:
        query = urlencode({"t": token, **params})
        return f"{self.scheme}://{host}:{self.port}{path}?{query}"


@dataclass
class TlsFiles:
    ca_path: Path
    cert_path: Path
    key_path: Path


def _serve(receiver: Receiver, tls: TlsFiles | None = None) -> Iterator[RunningServer]:
    """Run uvicorn on a free loopback port in a thread until the generator is closed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        receiver,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        backlog=2048,
        ssl_certfile=str(tls.cert_path) if tls else None,
        ssl_keyfile=str(tls.key_path) if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:  # poll for readiness, bounded
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the uvicorn receiver did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(receiver, port, "https" if tls else "http")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    yield from _serve(Receiver())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return _make_certificates(tmp_path_factory.mktemp("tls"), TLS_NAME)


@pytest.fixture(scope="module")
def tls_server(tls_files: TlsFiles) -> Iterator[RunningServer]:
    yield from _serve(Receiver(), tls_files)


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    sender = WebhookSender(LOCAL, connect_timeout=2.0, total_timeout=5.0)
    yield sender
    await sender.aclose()


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


def _post(
    url: str, body: bytes = b"{}", headers: Mapping[str, str] | None = None
) -> WebhookRequest:
    return WebhookRequest(url, "POST", body, "application/json", headers or {})


def _get(url: str) -> WebhookRequest:
    return WebhookRequest(url, "GET", b"", "", {})


def _fake_dns(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Make the running loop resolve the given names to the given addresses (mutable later).

    Other names go to the real resolver; a name mapped to [] fails like NXDOMAIN.
    """
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in answers:
            return await real(host, port, *args, **kwargs)
        if not answers[name]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        results: list[Any] = []
        for address in answers[name]:
            if ":" in address:
                results.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                results.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return results

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return answers


# --- Delivery --------------------------------------------------------------------------------


async def test_post_json_arrives_with_headers_and_verifies_with_standardwebhooks(
    server: RunningServer, sender: WebhookSender, token: str
) -> None:
    key = new_signing_key()
    body = json.dumps({"event": "delivered", "recipient": "ünïcode@example.org"}).encode()
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_2abc",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, "msg_2abc", timestamp, body),
        "X-Extra": "kept as is",
    }

    result = await sender.send(_post(server.url("/echo", token), body, headers))

    assert result == SendResult(200, result.latency_ms, "", f"ok {token}")
    assert result.succeeded
    [hit] = server.receiver.of(token)
    assert (hit.method, hit.path, hit.body) == ("POST", "/echo", body)
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["user-agent"] == "Sendstream-Webhooks/1"
    assert hit.headers["x-extra"] == "kept as is"
    assert {k: hit.headers[k] for k in ("webhook-id", "webhook-timestamp")} == {
        "webhook-id": "msg_2abc",
        "webhook-timestamp": str(timestamp),
    }
    # An independent implementation accepts the signature as it arrived...
    assert Webhook(key).verify(hit.body, hit.headers) == json.loads(body)
    # ...and is not simply accepting everything.
    with pytest.raises(WebhookVerificationError):
        Webhook(key).verify(hit.body + b" ", hit.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_signing_key()).verify(hit.body, hit.headers)


async def test_post_form_arrives_and_verifies(
    server: RunningServer, sender: WebhookSender, token: str
) -> None:
    key = new_signing_key()
    body = urlencode({"event": "opened", "recipient": "a+b@example.org"}).encode()
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_form",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, "msg_form", timestamp, body),
    }
    request = WebhookRequest(
        server.url("/echo", token), "POST", body, "application/x-www-form-urlencoded", headers
    )

    result = await sender.send(request)

    assert result.succeeded
    [hit] = server.receiver.of(token)
    assert hit.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(hit.body.decode()) == {"event": ["opened"], "recipient": ["a+b@example.org"]}
    Webhook(key).verify(hit.body, hit.headers, json_parse=False)


async def test_get_carries_the_payload_in_the_query_and_an_empty_signed_body(
    server: RunningServer, sender: WebhookSender, token: str
) -> None:
    key = new_signing_key()
    timestamp = int(time.time())
    url = server.url("/echo", token, event="clicked", url="https://example.org/a?b=c")
    headers = {
        "webhook-id": "msg_get",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, "msg_get", timestamp, b""),
    }

    result = await sender.send(WebhookRequest(url, "GET", b"", "", headers))

    assert result.succeeded
    [hit] = server.receiver.of(token)
    assert (hit.method, hit.body) == ("GET", b"")
    assert "content-type" not in hit.headers
    assert hit.query["event"] == ["clicked"]
    assert hit.query["url"] == ["https://example.org/a?b=c"]
    Webhook(key).verify(hit.body, hit.headers, json_parse=False)


async def test_a_server_error_is_an_answer_that_did_not_succeed(
    server: RunningServer, sender: WebhookSender, token: str
) -> None:
    result = await sender.send(_post(server.url("/status/500", token)))

    assert (result.status_code, result.error, result.snippet) == (500, "", "status page")
    assert not result.succeeded


@pytest.mark.parametrize("status", [200, 201, 204, 299])
async def test_every_2xx_succeeds(
    server: RunningServer, sender: WebhookSender, token: str, status: int
) -> None:
    result = await sender.send(_post(server.url(f"/status/{status}", token)))
    assert result.status_code == status
    assert result.succeeded


async def test_a_redirect_is_not_followed(
    server: RunningServer, sender: WebhookSender, token: str
) -> None:
    result = await sender.send(_post(server.url("/redirect", token)))

    assert (result.status_code, result.error) == (302, "")
    assert not result.succeeded
    assert [hit.path for hit in server.receiver.of(token)] == ["/redirect"]  # /target never


async def test_keep_alive_reuses_the_connection_even_after_a_longer_body(
    server: RunningServer, sender: WebhookSender, token: str
) -> None:
    first = await sender.send(_post(server.url("/body", token, n="3000")))
    second = await sender.send(_post(server.url("/echo", token)))

    assert first.snippet == "b" * 1024  # only the first max_response_bytes are kept
    assert second.succeeded
    ports = {hit.client_port for hit in server.receiver.of(token)}
    assert len(ports) == 1, "the second call should have used the pooled connection"


async def test_cookies_set_by_a_receiver_are_not_sent_back(
    server: RunningServer, sender: WebhookSender, token: str
) -> None:
    await sender.send(_post(server.url("/cookie", token)))
    await sender.send(_post(server.url("/echo", token)))

    assert [("cookie" in hit.headers) for hit in server.receiver.of(token)] == [False, False]


# --- Time and size bounds --------------------------------------------------------------------


async def test_a_slow_answer_times_out_after_total_timeout(
    server: RunningServer, token: str
) -> None:
    sender = WebhookSender(LOCAL, connect_timeout=1.0, total_timeout=0.5)
    try:
        result = await sender.send(_post(server.url("/sleep", token, s="3")))
    finally:
        await sender.aclose()

    assert (result.status_code, result.error) == (0, "timeout")
    assert not result.succeeded
    assert 450 <= result.latency_ms < 1500


async def test_a_slow_drip_body_is_bounded_by_total_timeout(
    server: RunningServer, token: str
) -> None:
    # Each byte comes well within any per-read timeout; only the overall bound stops it.
    sender = WebhookSender(LOCAL, connect_timeout=1.0, total_timeout=0.6)
    try:
        result = await sender.send(_post(server.url("/drip", token)))
    finally:
        await sender.aclose()

    assert result.error == "timeout"
    assert result.status_code == 200  # the status line came, the body did not finish
    assert not result.succeeded
    assert 550 <= result.latency_ms < 1600
    assert result.snippet and set(result.snippet) == {"x"}


async def test_a_huge_body_is_read_only_up_to_max_response_bytes(
    server: RunningServer, token: str
) -> None:
    sender = WebhookSender(LOCAL, total_timeout=5.0, max_response_bytes=100)
    try:
        result = await sender.send(_get(server.url("/huge", token)))
    finally:
        await sender.aclose()

    assert (result.status_code, result.error) == (200, "")
    assert result.snippet == "h" * 100
    assert result.latency_ms < 2000  # 256 MiB were on offer


async def test_per_host_concurrency_is_bounded(server: RunningServer, token: str) -> None:
    sender = WebhookSender(LOCAL, total_timeout=5.0, max_per_host=2)
    try:
        results = await asyncio.gather(
            *(sender.send(_post(server.url("/sleep", token, s="0.2"))) for _ in range(6))
        )
    finally:
        await sender.aclose()

    assert all(result.succeeded for result in results)
    assert server.receiver.most_in_flight[token] == 2


async def test_max_connections_bounds_calls_across_hosts(
    server: RunningServer, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"h{i}.local.test" for i in range(3)]
    _fake_dns(monkeypatch, {name: [LOOPBACK] for name in names})
    sender = WebhookSender(LOCAL, total_timeout=5.0, max_connections=2, max_per_host=2)
    try:
        results = await asyncio.gather(
            *(
                sender.send(_post(server.url("/sleep", token, host=names[i % 3], s="0.15")))
                for i in range(6)
            )
        )
    finally:
        await sender.aclose()

    assert all(result.succeeded for result in results)
    assert server.receiver.most_in_flight[token] == 2


async def test_the_pool_of_an_origin_no_longer_called_is_closed(
    server: RunningServer, sender: WebhookSender, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_dns(monkeypatch, {"old.local.test": [LOOPBACK]})
    await sender.send(_post(server.url("/echo", token, host="old.local.test")))
    old = f"http://old.local.test:{server.port}"
    assert old in sender._origins
    # Pretend keepalive_expiry has passed since the last call.
    sender._origins[old].idle_since -= sender.keepalive_expiry + 1
    sender._next_sweep = 0.0

    await sender.send(_post(server.url("/echo", token)))

    assert list(sender._origins) == [f"http://127.0.0.1:{server.port}"]
    await asyncio.gather(*sender._retiring)
    # Calling the old origin again just opens a new pool.
    assert (await sender.send(_post(server.url("/echo", token, host="old.local.test")))).succeeded


async def test_waiting_for_a_busy_host_counts_against_total_timeout(
    server: RunningServer, token: str
) -> None:
    sender = WebhookSender(LOCAL, total_timeout=3.0, max_per_host=1)
    try:
        holder = asyncio.create_task(sender.send(_post(server.url("/sleep", token, s="0.8"))))
        deadline = time.monotonic() + 5
        while not server.receiver.of(token):  # the holder has the host's only slot
            assert time.monotonic() < deadline and not holder.done()
            await asyncio.sleep(0.01)
        # A later call with a shorter budget cannot outlast the holder.
        sender._total_timeout = 0.3
        queued = await sender.send(_post(server.url("/echo", token)))
        held = await holder
    finally:
        await sender.aclose()

    assert queued.status_code == 0
    assert queued.error == "timeout waiting for a free slot to the host"
    assert 250 <= queued.latency_ms < 1000
    assert held.succeeded
    assert [hit.path for hit in server.receiver.of(token)] == ["/sleep"]


async def test_cancellation_is_not_swallowed(
    server: RunningServer, sender: WebhookSender, token: str
) -> None:
    call = asyncio.create_task(sender.send(_post(server.url("/sleep", token, s="3"))))
    deadline = time.monotonic() + 5
    while not server.receiver.of(token):  # the request is at the receiver
        assert time.monotonic() < deadline and not call.done()
        await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The sender is still usable afterwards.
    assert (await sender.send(_post(server.url("/echo", token)))).succeeded


# --- Failures without an answer --------------------------------------------------------------


async def test_a_closed_port_is_connection_refused(sender: WebhookSender, token: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]  # bound, never listening: connecting is refused

        result = await sender.send(_post(f"http://{LOOPBACK}:{port}/echo?t={token}"))

    assert (result.status_code, result.error, result.snippet) == (0, "connection refused", "")
    assert not result.succeeded


async def test_an_unresolvable_host_is_a_dns_error(
    sender: WebhookSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_dns(monkeypatch, {"gone.example.test": []})

    result = await sender.send(_post("http://gone.example.test/hook"))

    assert result.status_code == 0
    assert result.error.startswith("dns: gone.example.test does not resolve")


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (WebhookRequest("ftp://x.example/", "POST", b"", "", {}), "invalid url: "),
        (WebhookRequest("http://x.example/", "PUT", b"", "", {}), "unsupported method 'PUT'"),
        (WebhookRequest("http://u:p@x.example/", "GET", b"", "", {}), "invalid url: "),
    ],
)
async def test_a_request_that_cannot_be_made_is_reported(
    sender: WebhookSender, request_: WebhookRequest, error: str
) -> None:
    result = await sender.send(request_)
    assert result.status_code == 0
    assert result.error.startswith(error)


# --- SSRF and DNS rebinding ------------------------------------------------------------------


async def test_loopback_is_refused_by_the_default_policy(server: RunningServer, token: str) -> None:
    sender = WebhookSender(AddressPolicy())
    try:
        by_ip = await sender.send(_post(server.url("/echo", token)))
        by_name = await sender.send(_post(server.url("/echo", token, host="localhost")))
        by_ipv6 = await sender.send(_post(f"http://[::1]:{server.port}/echo?t={token}"))
    finally:
        await sender.aclose()

    assert (by_ip.status_code, by_ip.error) == (
        0,
        "refused address: loopback address 127.0.0.1",
    )
    assert by_name.status_code == 0
    assert by_name.error.startswith("refused address: loopback address")
    assert "(localhost)" in by_name.error
    assert by_ipv6.error == "refused address: loopback address ::1"
    assert server.receiver.of(token) == []


async def test_resolve_safely_refuses_localhost_by_default() -> None:
    with pytest.raises(UnsafeWebhookURL, match="loopback address"):
        await resolve_safely("localhost", 443, AddressPolicy())
    assert LOOPBACK in await resolve_safely("localhost", 443, LOCAL)


async def test_resolve_safely_refuses_a_name_if_any_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_dns(
        monkeypatch,
        {
            "mixed.example.test": ["93.184.215.14", "10.0.0.7"],
            "public.example.test": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            "metadata.example.test": ["169.254.169.254"],
        },
    )
    private_ok = AddressPolicy(allow_private=True)

    with pytest.raises(UnsafeWebhookURL, match=r"private address 10\.0\.0\.7"):
        await resolve_safely("mixed.example.test", 443, AddressPolicy())
    assert await resolve_safely("mixed.example.test", 443, private_ok) == [
        "93.184.215.14",
        "10.0.0.7",
    ]
    assert len(await resolve_safely("public.example.test", 443, AddressPolicy())) == 2
    with pytest.raises(UnsafeWebhookURL, match="cloud metadata"):
        await resolve_safely("metadata.example.test", 80, AddressPolicy(True, True))
    with pytest.raises(UnsafeWebhookURL, match="cloud metadata"):
        await resolve_safely("[fd00:ec2::254]", 80, AddressPolicy(True, True))


async def test_dns_rebinding_is_refused_at_send_time(
    server: RunningServer, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "hooks.rebind.test"
    dns = _fake_dns(monkeypatch, {name: ["93.184.215.14"]})
    url = check_webhook_url(f"http://{name}:{server.port}/echo?t={token}", allow_http=True)
    # When the webhook is registered the name points somewhere public...
    assert await resolve_safely(name, server.port, AddressPolicy()) == ["93.184.215.14"]
    # ...and by the time it is called it points at us.
    dns[name] = [LOOPBACK]
    sender = WebhookSender(AddressPolicy(), connect_timeout=1.0, total_timeout=2.0)
    try:
        result = await sender.send(_post(url))
    finally:
        await sender.aclose()

    assert result.status_code == 0
    assert result.error == f"refused address: loopback address 127.0.0.1 ({name})"
    assert server.receiver.of(token) == []


async def test_connections_go_to_the_checked_address_with_the_name_in_host(
    server: RunningServer, sender: WebhookSender, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the fake resolver knows this name: a hit proves the checked address was used.
    _fake_dns(monkeypatch, {"hooks.local.test": [LOOPBACK]})

    result = await sender.send(_post(f"http://hooks.local.test:{server.port}/echo?t={token}"))

    assert result.succeeded, result.error
    [hit] = server.receiver.of(token)
    assert hit.headers["host"] == f"hooks.local.test:{server.port}"


async def test_tls_uses_the_host_name_for_sni_and_certificate_checks(
    tls_server: RunningServer,
    tls_files: TlsFiles,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_dns(monkeypatch, {TLS_NAME: [LOOPBACK], "other.tls.test": [LOOPBACK]})
    trust = ssl.create_default_context(cafile=str(tls_files.ca_path))
    transport = _GuardedTransport(_GuardedBackend(LOCAL), httpx.Limits(), trust)
    async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
        answer = await client.get(tls_server.url("/echo", token, host=TLS_NAME))
        assert answer.status_code == 200
        # The certificate names TLS_NAME only: the same server by IP or by another name fails.
        for host in (LOOPBACK, "other.tls.test"):
            with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
                await client.get(tls_server.url("/echo", token, host=host))
    assert len(tls_server.receiver.of(token)) == 1

    # WebhookSender trusts only the public roots, which never signed this test CA.
    sender = WebhookSender(LOCAL, connect_timeout=2.0, total_timeout=5.0)
    try:
        result = await sender.send(_post(tls_server.url("/echo", token, host=TLS_NAME)))
    finally:
        await sender.aclose()
    assert result.status_code == 0
    assert result.error.startswith("tls certificate error")


# --- Address policy --------------------------------------------------------------------------

ALWAYS_REFUSED = [
    ("169.254.169.254", "cloud metadata address"),
    ("fd00:ec2::254", "cloud metadata address"),
    ("100.100.100.200", "cloud metadata address"),
    ("::ffff:169.254.169.254", "cloud metadata address"),
    ("169.254.1.1", "link-local address"),
    ("fe80::1", "link-local address"),
    ("100.64.0.1", "shared address space"),
    ("100.127.255.254", "shared address space"),
    ("0.0.0.0", "unspecified address"),  # noqa: S104
    ("0.1.2.3", "this-network address"),
    ("::", "unspecified address"),
    ("224.0.0.1", "multicast address"),
    ("239.255.255.250", "multicast address"),
    ("ff02::1", "multicast address"),
    ("255.255.255.255", "broadcast address"),
    ("240.0.0.1", "reserved address"),
    ("192.0.2.1", "documentation address"),
    ("2001:db8::1", "documentation address"),
    ("198.18.0.1", "benchmarking address"),
    ("::7f00:1", "IPv4-compatible address"),
    ("4000::1", "reserved address"),
    ("100::1", "discard-only address"),
]
LOOPBACK_ADDRESSES = [
    ("127.0.0.1", "loopback address 127.0.0.1"),
    ("127.255.0.9", "loopback address"),
    ("::1", "loopback address ::1"),
    ("::ffff:127.0.0.1", "IPv4-mapped address"),
    ("::ffff:0:7f00:1", "IPv4-translated address"),
    ("64:ff9b::7f00:1", "NAT64 address"),
    ("2002:7f00:1::1", "6to4 address"),
]
PRIVATE_ADDRESSES = [
    ("10.0.0.1", "private address 10.0.0.1"),
    ("10.255.255.255", "private address"),
    ("172.16.0.1", "private address"),
    ("172.31.255.1", "private address"),
    ("192.168.1.1", "private address"),
    ("fd12:3456::1", "unique-local address"),
    ("fc00::1", "unique-local address"),
    ("::ffff:10.0.0.1", "IPv4-mapped address"),
    ("::ffff:192.168.0.1", "IPv4-mapped address"),
    ("2002:c0a8:101::1", "6to4 address"),
    # Teredo, client 192.168.0.1 (stored inverted), server 8.8.8.8
    ("2001:0:808:808:0:0:3f57:fffe", "Teredo address"),
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "172.32.0.1",  # just past 172.16/12
    "100.128.0.1",  # just past 100.64/10
    "169.255.0.1",
    "2606:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "reason"), ALWAYS_REFUSED)
def test_always_refused_whatever_the_policy(address: str, reason: str) -> None:
    ip = ipaddress.ip_address(address)
    for policy in (AddressPolicy(), AddressPolicy(allow_loopback=True, allow_private=True)):
        refusal = policy.refuses(ip)
        assert refusal is not None
        assert reason in refusal


@pytest.mark.parametrize(("address", "reason"), LOOPBACK_ADDRESSES)
def test_loopback_refused_unless_allowed(address: str, reason: str) -> None:
    ip = ipaddress.ip_address(address)
    assert reason in (AddressPolicy().refuses(ip) or "")
    assert AddressPolicy(allow_private=True).refuses(ip) is not None
    assert AddressPolicy(allow_loopback=True).refuses(ip) is None


@pytest.mark.parametrize(("address", "reason"), PRIVATE_ADDRESSES)
def test_private_refused_unless_allowed(address: str, reason: str) -> None:
    ip = ipaddress.ip_address(address)
    assert reason in (AddressPolicy().refuses(ip) or "")
    assert AddressPolicy(allow_loopback=True).refuses(ip) is not None
    assert AddressPolicy(allow_private=True).refuses(ip) is None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().refuses(ipaddress.ip_address(address)) is None


# --- URL checks ------------------------------------------------------------------------------

ACCEPTED_URLS = [
    ("https://hooks.example.com/sendstream", "https://hooks.example.com/sendstream"),
    ("HTTPS://Hooks.Example.COM", "https://hooks.example.com/"),
    ("  https://example.com/a?b=1&c=%20  ", "https://example.com/a?b=1&c=%20"),
    ("https://example.com:443/x", "https://example.com/x"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("https://example.com:65535/", "https://example.com:65535/"),
    ("https://bücher.example/päth?q=ü", "https://xn--bcher-kva.example/p%C3%A4th?q=%C3%BC"),
    ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/"),
    ("https://93.184.215.14/hook", "https://93.184.215.14/hook"),
    ("https://127.0.0.1/hook", "https://127.0.0.1/hook"),  # addresses are resolve_safely's job
    ("https://[2606:4700:0::1111]:8443/", "https://[2606:4700::1111]:8443/"),
    ("https://my_host.example.com/", "https://my_host.example.com/"),
    ("https://example.com./", "https://example.com./"),
]
REFUSED_URLS = [
    ("http://example.com/", "https://"),
    ("https://user:pw@example.com/", "user name or password"),
    ("https://user@example.com/", "user name or password"),
    ("ftp://example.com/", "not ftp"),
    ("javascript:alert(1)", "not javascript"),
    ("example.com/hook", "no scheme"),
    ("https:///path", "no host"),
    ("https://", "no host"),
    ("https:example.com", "no host"),
    ("https://:443/", "no host"),
    ("https://example.com/#frag", "fragment"),
    ("https://example.com/#", "fragment"),
    ("https://example.com:0/", "port"),
    ("https://example.com:65536/", "port"),
    ("https://example.com:-1/", "port"),
    ("https://example.com:80a/", "port"),
    ("https://[::1/", "cannot be parsed"),
    ("https://[fe80::1%25eth0]/", "zone"),
    ("https://[not-v6]/", "cannot be parsed"),
    ("https://::1/", "brackets"),
    ("https://exa mple.com/", "whitespace"),
    ("https://example.com/a\nb", "control characters"),
    ("https://example.com/\x00", "control characters"),
    ("https://ex!ample.com/", "not a valid host name"),
    ("https://-bad.example.com/", "not a valid host name"),
    ("https://a..b.com/", "not a valid host name"),
    ("https://" + "a" * 64 + ".com/", "not a valid host name"),
    ("https://xn--zz.com/", "not valid"),
    ("https://127.1/", "neither an IP address nor a name"),
    ("https://2130706433/", "neither an IP address nor a name"),
    ("https://0x7f000001/", "neither an IP address nor a name"),
    ("https://example.com/" + "a" * 2030, "longer than 2048"),
    ("https://example.com/" + "ü" * 1000, "longer than 2048 characters once encoded"),
    ("", "empty"),
]


@pytest.mark.parametrize(("url", "normalised"), ACCEPTED_URLS)
def test_check_webhook_url_accepts_and_normalises(url: str, normalised: str) -> None:
    assert check_webhook_url(url, allow_http=False) == normalised
    assert check_webhook_url(normalised, allow_http=False) == normalised  # idempotent


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
def test_check_webhook_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(UnsafeWebhookURL) as refused:
        check_webhook_url(url, allow_http=False)
    assert reason in str(refused.value)


def test_check_webhook_url_allows_http_when_told() -> None:
    assert check_webhook_url("http://Example.com:80/x", allow_http=True) == "http://example.com/x"
    assert check_webhook_url("http://example.com:8080", allow_http=True) == (
        "http://example.com:8080/"
    )
    with pytest.raises(UnsafeWebhookURL, match="https or http, not ftp"):
        check_webhook_url("ftp://example.com/", allow_http=True)


def test_the_length_limit_is_inclusive() -> None:
    base = "https://example.com/"
    assert len(check_webhook_url(base + "a" * (2048 - len(base)), allow_http=False)) == 2048
    with pytest.raises(UnsafeWebhookURL):
        check_webhook_url(base + "a" * (2049 - len(base)), allow_http=False)


# --- Signatures ------------------------------------------------------------------------------


def test_new_signing_keys_are_random_whsec_secrets() -> None:
    keys = {new_signing_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert key.startswith("whsec_")
        assert 24 <= len(base64.b64decode(key.removeprefix("whsec_"), validate=True)) <= 64


def test_sign_matches_the_standard_webhooks_library() -> None:
    key = new_signing_key()
    body = b'{"type":"delivered","data":{"x":"\xc3\xbc"}}'
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    expected = Webhook(key).sign("msg_1", at, body.decode())
    assert sign(key, "msg_1", int(at.timestamp()), body) == expected
    # The specification's own example, from standardwebhooks.com.
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize("key", ["whsec_", "whsec_not base64!", ""])
def test_sign_rejects_unusable_keys(key: str) -> None:
    with pytest.raises(ValueError):
        sign(key, "msg", 1, b"")


# --- Certificates for the TLS receiver -------------------------------------------------------


def _make_certificates(folder: Path, name: str) -> TlsFiles:
    """A throwaway CA and a server certificate for ``name`` only, signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sendstream test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


async def test_an_endpoint_that_refuses_gets_one_call_at_a_time(
    sender: WebhookSender, token: str
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        url = f"http://{LOOPBACK}:{probe.getsockname()[1]}/echo?t={token}"
        for _ in range(3):
            assert (await sender.send(_post(url))).error == "connection refused"
        origin = sender._origins[sender.origin_of(url)]
    assert origin.slots.limit == 1.0  # from 2, halved by the first refusal, never below 1


async def test_an_endpoint_whose_calls_queue_past_a_second_is_backed_up(
    server: RunningServer, token: str
) -> None:
    sender = WebhookSender(LOCAL, total_timeout=5.0)
    url = server.url("/sleep", token, s="1.5")
    try:
        calls = [asyncio.create_task(sender.send(_post(url))) for _ in range(6)]
        await asyncio.sleep(0.2)
        assert sender.backed_up(1.0) == set()  # two held for 0.2 s, four waiting: 0.4 s
        await asyncio.sleep(0.6)
        assert sender.backed_up(1.0) == {sender.origin_of(url)}  # 4 x 0.8 s / 2 slots
        results = await asyncio.gather(*calls)
    finally:
        await sender.aclose()
    assert all(result.succeeded for result in results)
    assert sender.backed_up(1.0) == set()


def test_the_endpoint_of_a_url_is_its_scheme_host_and_port() -> None:
    sender = WebhookSender(LOCAL)
    assert sender.origin_of("https://Hooks.Example.com/a?b=c") == "https://hooks.example.com:443"
    assert sender.origin_of("http://hooks.example.com:8080/") == "http://hooks.example.com:8080"
    assert sender.origin_of("not a url") == ""
