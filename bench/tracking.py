"""Tracking hits: open-pixel and click-redirect answers per second and p99 latency (wrk).

The server is uvicorn, as ``sendstream serve`` runs it (one process, uvloop and
httptools when installed), serving ``TrackingEndpoint`` in its own process with an
in-memory recorder that does what a recorder handing events to a writer does per hit:
build the event and append it to a list under a lock. Each figure is measured twice: with
the recorder called on the event loop (the default) and through a worker thread
(``offload=True``). To measure the engine's own recorder, point ``create_app`` at it.

``python -m bench.tracking [--seconds S]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from uuid import UUID

import httpx
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from api.tracking import TrackingEndpoint
from bench.api_accept import free_port
from bench.machine import describe, print_table
from domain.tracking import click_url, open_url, rewrite_html

KEY = b"bench tracking key, not a secret"
BASE = "http://bench.invalid"
MESSAGE = UUID("0b6f4a52-9a51-4c1e-9d1e-1c2d3e4f5a6b")
HTML = (
    '<p><a href="https://shop.example.com/spring?utm_source=mail&amp;utm_campaign=42">Shop</a>'
    '<a href="https://blog.example.com/news">Read</a></p>'
)
OFFLOAD_ENV = "BENCH_TRACKING_OFFLOAD"


class MemoryRecorder:
    """Appends each event to a list under a lock; a writer thread takes the list away every
    50 ms, as the engine's writer drains its queue (a list kept for the whole run would
    grow to millions of objects and the garbage collector's pauses would be the tail)."""

    def __init__(self, links: dict[UUID, list[str]]) -> None:
        self.links = links
        self.events: list[tuple[str, float, UUID, int, str, str]] = []
        self.lock = threading.Lock()
        self.written: dict[str, int] = {"open": 0, "click": 0, "unsubscribe": 0}
        threading.Thread(target=self._writer, daemon=True).start()

    def record_open(self, message_id: UUID, ip: str, user_agent: str) -> None:
        with self.lock:
            self.events.append(("open", time.time(), message_id, 0, ip, user_agent))

    def record_click(
        self, message_id: UUID, link_index: int, ip: str, user_agent: str
    ) -> str | None:
        urls = self.links.get(message_id)
        if urls is None or not 0 <= link_index < len(urls):
            return None
        with self.lock:
            self.events.append(("click", time.time(), message_id, link_index, ip, user_agent))
        return urls[link_index]

    def record_unsubscribe(
        self, message_id: UUID, ip: str, user_agent: str, one_click: bool
    ) -> bool:
        with self.lock:
            self.events.append(("unsubscribe", time.time(), message_id, int(one_click), ip, ""))
        return message_id in self.links

    def _writer(self) -> None:
        while True:
            time.sleep(0.05)
            self._drain()

    def _drain(self) -> None:
        with self.lock:
            batch, self.events = self.events, []
        for event in batch:
            self.written[event[0]] += 1

    def counts(self) -> dict[str, int]:
        self._drain()
        return dict(self.written)


def create_app() -> ASGIApp:
    """The uvicorn factory: ``TrackingEndpoint`` in front of an app answering ``/stats``."""
    _, urls = rewrite_html(HTML, BASE, MESSAGE, KEY)
    recorder = MemoryRecorder({MESSAGE: urls})

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        status, body = (200, orjson.dumps(recorder.counts())) if scope["path"] == "/stats" else (
            404, b"")  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    offload = os.environ.get(OFFLOAD_ENV, "") == "1"
    return TrackingEndpoint(inner, recorder, KEY, offload=offload)


class Server:
    def __init__(self, offload: bool) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="sendstream-bench-tracking-", suffix=".log")[1])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "bench.tracking:create_app",
             "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning", "--no-access-log"],
            env={**os.environ, OFFLOAD_ENV: "1" if offload else "0"},
            cwd=Path(__file__).resolve().parent.parent,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/stats", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the tracking server did not start; see {self.log}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/stats", timeout=5).json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(
    url: str, seconds: int, connections: int = 32, paths: list[str] | None = None
) -> dict[str, float]:
    """wrk's rate, p99 latency (ms) and answers of status 400 or more; with ``paths``, the
    requests go round them."""
    if shutil.which("wrk") is None:
        raise RuntimeError(
            "wrk is not installed (Debian package 'wrk'; scripts/install-test-deps.sh)"
        )
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    rotation = ""
    if paths:
        rotation = (
            "paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n"
            "i = 0\n"
            "request = function()\n"
            "  i = i % #paths + 1\n"
            '  return wrk.format("GET", paths[i])\n'
            "end\n"
        )
    script.write_text(
        'wrk.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) bench"\n'
        + rotation
        + "done = function(summary, latency, requests)\n"
        '  io.write(string.format("ERRORS %d %d\\n", summary.errors.status,\n'
        "    summary.errors.connect + summary.errors.read + summary.errors.write\n"
        "    + summary.errors.timeout))\n"
        '  io.write(string.format("REQUESTS %d\\n", summary.requests))\n'
        "end\n"
    )
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
             url],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    finally:
        script.unlink()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    errors = re.search(r"ERRORS (\d+) (\d+)", out)
    requests = re.search(r"REQUESTS (\d+)", out)
    if not (rps and p99 and errors and requests):
        raise RuntimeError("unexpected wrk output:\n" + out)
    return {
        "rps": float(rps.group(1)),
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)],
        "status_errors": int(errors.group(1)),
        "socket_errors": int(errors.group(2)),
        "requests": int(requests.group(1)),
    }


def measure(offload: bool, seconds: int) -> dict[str, dict[str, float]]:
    server = Server(offload)
    try:
        pixel = server.url + open_url("", MESSAGE, KEY)
        click = server.url + click_url("", MESSAGE, 0, KEY)
        assert httpx.get(click, timeout=5).status_code == 302
        run_wrk(pixel, 2)  # warm-up
        before = server.counts()
        results = {"pixel": run_wrk(pixel, seconds), "click": run_wrk(click, seconds)}
        after = server.counts()
        results["pixel"]["recorded"] = after["open"] - before["open"]
        results["click"]["recorded"] = after["click"] - before["click"]
        return results
    finally:
        server.stop()


TARGET_RATE = 3000
MESSAGES = 500


async def open_loop(base: str, paths: list[str], rate: int, seconds: int) -> dict[str, float]:
    """Request n (to paths[n % len]) is due at start + n/rate; its latency counts from then
    (no coordinated omission). A raw HTTP/1.1 keep-alive client: cheap enough to leave the
    CPU to the server."""
    host, _, port = base.removeprefix("http://").partition(":")
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (X11) bench\r\n\r\n"
        .encode()
        for path in paths
    ]  # fmt: skip
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(64):
        idle.put_nowait(await asyncio.open_connection(host, int(port)))
    latencies: list[float] = []
    failures = 0

    async def one(due: float, request: bytes) -> None:
        nonlocal failures
        reader, writer = await idle.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            await reader.readexactly(int(match.group(1)) if match else 0)
        except (OSError, asyncio.IncompleteReadError):
            failures += 1
            return
        latencies.append(time.perf_counter() - due)
        if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 302")):
            failures += 1
        idle.put_nowait((reader, writer))

    tasks = []
    start = time.perf_counter()
    for n in range(rate * seconds):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, requests[n % len(requests)])))
    await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait()[1].close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "failures": failures,
    }


def measure_engine(seconds: int) -> list[tuple[str, str, str]]:
    """The real ``sendstream serve``: hits on delivered messages, recorded as Opened and
    Clicked events on them, counted afterwards through the events API."""
    from bench.api_accept import Server as EngineServer
    from engine.keys import tracking_key
    from engine.settings import Settings

    server = EngineServer()
    rows: list[tuple[str, str, str]] = []
    try:
        sender_key = server.start()
        headers = {"Authorization": f"Bearer {sender_key}"}
        # Hits spread over many delivered messages, as a newsletter's readers make them.
        submissions = []
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            for n in range(MESSAGES):
                sent = client.post(
                    "/api/v1/email",
                    json={
                        "Subject": "Tracked", "ContentType": "html",
                        "HtmlContent": '<p><a href="https://example.com/offer">Offer</a></p>',
                        "From": {"email": "bench@example.com", "name": "Bench"},
                        "To": [{"email": f"reader{n}@example.org", "name": ""}],
                    },
                )  # fmt: skip
                submissions.append(sent.json()["MessageID"])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                view = client.get(f"/api/v1/email/{submissions[-1]}").json()
                if view["Recipients"][0]["Status"] == "delivered":
                    break
                time.sleep(0.2)
        from domain.message import message_id_for

        key = tracking_key(Settings(SENDSTREAM_DATA_DIR=server.workdir / "var"))
        message_ids = [message_id_for(UUID(s), 0) for s in submissions]
        pixels = [open_url("", m, key) for m in message_ids]
        clicks = [click_url("", m, 0, key) for m in message_ids]
        assert httpx.get(server.url + clicks[0], timeout=5).status_code == 302
        # Latency where it matters: at the target rate, first, with nothing queued from an
        # earlier run; then the most it answers (wrk, closed loop, at saturation).
        asyncio.run(open_loop(server.url, pixels, 500, 2))  # warm-up
        steady = {
            "pixel": asyncio.run(open_loop(server.url, pixels, TARGET_RATE, seconds)),
            "click": asyncio.run(open_loop(server.url, clicks, TARGET_RATE, seconds)),
        }
        results = {
            "pixel": run_wrk(server.url + pixels[0], seconds, paths=pixels),
            "click": run_wrk(server.url + clicks[0], seconds, paths=clicks),
        }

        def recorded(event: str) -> int:
            answer = httpx.get(
                f"{server.url}/api/v1/events",
                headers=headers,
                params={"Event": event, "RetrieveCount": 1},
                timeout=30,
            ).json()
            return int(answer["TotalRecords"])

        # Hits are recorded in batches behind the answers: wait until the counts settle.
        counts = {"pixel": -1, "click": -1}
        settled = 0
        deadline = time.monotonic() + 120
        while settled < 3 and time.monotonic() < deadline:
            time.sleep(1.0)
            now = {"pixel": recorded("open"), "click": recorded("click")}
            settled = settled + 1 if now == counts else 0
            counts = now
        answered = {name: results[name]["requests"] + steady[name]["requests"] for name in results}
        errors = {
            name: results[name]["status_errors"] + results[name]["socket_errors"]
            + steady[name]["failures"]
            for name in results
        }  # fmt: skip
        for name, label in (("pixel", "pixel GET /t/o/….gif"), ("click", "click GET /t/c/… (302)")):
            figures = results[name]
            rows += [
                (f"{label} per s (engine, wrk, 32 conns)", f"{figures['rps']:.0f}", ">= 3000"),
                (f"{label} p99 at saturation (engine, wrk) (ms)", f"{figures['p99_ms']:.1f}",
                 ""),
                (f"{label} p50 / p99 at {TARGET_RATE}/s (engine, open loop) (ms)",
                 f"{steady[name]['p50_ms']:.1f} / {steady[name]['p99_ms']:.1f}", "p99 <= 20"),
                (f"{label} errors (engine)", f"{errors[name]:.0f}", "0"),
                (f"{label} events recorded / answered (engine)",
                 f"{counts[name]:.0f} / {answered[name]:.0f}", ""),
            ]  # fmt: skip
    finally:
        server.stop()
    return rows


def run(seconds: int = 10) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = measure_engine(seconds)
    for offload in (False, True):
        results = measure(offload, seconds)
        how = "recorder in a worker thread" if offload else "recorder on the event loop"
        for name, label in (("pixel", "pixel GET /t/o/….gif"), ("click", "click GET /t/c/… (302)")):
            figures = results[name]
            rows += [
                (f"{label} per s ({how}, wrk, 32 conns)", f"{figures['rps']:.0f}",
                 "" if offload else ">= 3000"),
                (f"{label} p99 latency ({how}) (ms)", f"{figures['p99_ms']:.1f}",
                 "" if offload else "<= 20"),
                (f"{label} errors ({how})",
                 f"{figures['status_errors'] + figures['socket_errors']:.0f}", "0"),
                # wrk does not count the (at most 32) requests still in flight when it stops.
                (f"{label} recorded / answered ({how})",
                 f"{figures['recorded']:.0f} / {figures['requests']:.0f}", ""),
            ]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking", description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    print_table("Machine", [(k, v, "") for k, v in describe().items()])
    print_table("Tracking", run(seconds=args.seconds))


if __name__ == "__main__":
    main()
