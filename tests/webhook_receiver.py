"""A real HTTP server (uvicorn) that records the webhook calls it receives.

Paths steer it: ``/fail…`` answers 500, ``/slow…`` waits longer than any client timeout,
``/flaky…`` answers 503 to the first call of each ``webhook-id`` and 200 to the next;
anything else answers 200. Used by the integration tests and by ``python -m bench webhooks``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import uvicorn


@dataclass(frozen=True)
class ReceivedCall:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.time()


@dataclass
class WebhookReceiver:
    host: str = "127.0.0.1"
    slow_seconds: float = 30.0
    calls: list[ReceivedCall] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    port: int = 0
    ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        call = ReceivedCall(
            method=scope["method"],
            path=path,
            query=scope["query_string"].decode("latin-1"),
            headers=headers,
            body=body,
            received_at=time.time(),
        )
        status = 200
        if path.startswith("/slow"):
            await asyncio.sleep(self.slow_seconds)
        elif path.startswith("/fail"):
            status = 500
        elif path.startswith("/flaky"):
            with self._lock:
                first = headers.get("webhook-id", "") not in self._seen
                self._seen.add(headers.get("webhook-id", ""))
            status = 503 if first else 200
        if path == "/__lags":
            await self._send_lags(send)
            return
        with self._lock:
            self.calls.append(call)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"no"})

    async def _send_lags(self, send: Any) -> None:
        """For a receiver in another process: each JSON call's path and its delay from the
        event (``timestamp``) to its arrival, in seconds."""
        with self._lock:
            calls = list(self.calls)
        lags = []
        for call in calls:
            if call.body.startswith(b"{"):
                stamp = json.loads(call.body)["timestamp"]
                moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                lags.append([call.path, call.received_at - moment, call.received_at])
        body = json.dumps(lags).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    def calls_to(self, path_prefix: str) -> list[ReceivedCall]:
        with self._lock:
            return [c for c in self.calls if c.path.startswith(path_prefix)]

    def start(self, extra_ports: int = 0) -> WebhookReceiver:
        """Listen on a free port (``url``), and on ``extra_ports`` more (``ports``): each
        port is an endpoint of its own to a client that pools connections per origin."""
        sockets = []
        for _ in range(1 + extra_ports):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, 0))
            sockets.append(sock)
        self.ports = [sock.getsockname()[1] for sock in sockets]
        self.port = self.ports[0]
        config = uvicorn.Config(
            self, log_level="warning", lifespan="off", backlog=4096, timeout_keep_alive=30,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=sockets), name="webhook-receiver", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def main() -> None:
    """``python -m tests.webhook_receiver PORTS``: serve on PORTS+1 free ports until killed,
    printing the ports as one JSON line."""
    import sys

    receiver = WebhookReceiver().start(extra_ports=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(json.dumps(receiver.ports), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
