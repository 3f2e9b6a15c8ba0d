"""``python -m bench soak --minutes N [--load F]``: ``sendstream serve`` (every process, on
the embedded defaults) offered a steady share of its own delivery capacity for N minutes,
with tracking hits, bounces and webhooks mixed in; what each process holds at the start
and at the end.

1. Capacity: a burst of messages through ``/api/v1/email`` to Postfix's smtp-sink, timed
   until ClickHouse counts every one delivered (``EmailGateway.DomainStats``); beside it
   the ceiling, raw aiosmtplib to the same sink.
2. The steady offer, ``--load`` times the capacity (0.3: a soak; 3: an overload): below
   capacity each accepted message is opened (one in five) and clicked (one in twenty)
   through its real tracking URLs and one in fifty bounces (a Postfix DSN to the bounce
   server, to its real VERP address); every delivery and open is a webhook call to a
   counting receiver.
3. After the offer stops, the backlog drains: its time and rate.

Every 15 s: the RSS, open file descriptors and threads of every process of ``serve``, the size of
the event store and of its write-ahead log, and the number of chdb parts. The figures at
the end are compared with those after the warm-up, the first third of the offer (at least
a minute: the caches of recent messages fill, the projector's batches reach their size),
against the bounds of ``BOUNDS``. Descriptors of chdb's part files are left out (a query
or a merge holds them for a moment, and the parts are counted on their own), and so are
the statistics files in /proc that each ClickHouse thread keeps open (three a thread:
they follow the threads, counted on their own).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import orjson
import uvicorn
from aiosmtplib import SMTP

from bench.bounces import _samples
from bench.ceiling import smtp_ceiling
from bench.machine import describe, percentile, print_table
from domain.message import message_id_for
from domain.tracking import click_url, open_url
from domain.verp import verp_address
from engine.keys import tracking_key, verp_key
from engine.settings import Settings
from tests.services import (
    bootstrap_account,
    embedded_environment,
    free_port,
    start_smtp_sink,
    wait_until_healthy,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SECONDS = 15.0
# The start of the steady state the end is compared with: the caches of recent messages
# fill for minutes at a steady rate (by design), and only then may nothing grow.
WARM_UP_SECONDS = 60.0
WARM_UP_SHARE = 1 / 3
IN_FLIGHT = 64
# Growth from the end of the warm-up to the end of the run that counts as a leak.
BOUNDS = {"rss": 1.25, "fds": 1.10, "threads": 1.10, "wal_bytes": 64 * 1024 * 1024,
          "chdb_parts": 2.0}  # fmt: skip
PARTS_SLACK = 30
_PART = re.compile(r"^(all|\d+)_\d+_\d+_\d+$")


@dataclass
class Sample:
    at: float
    rss: dict[int, int]  # pid → bytes
    fds: dict[int, int]  # without chdb's part files and its threads' statistics files
    threads: dict[int, int]  # the engine's own: Python's and those the engine names
    clickhouse_threads: dict[int, int]  # embedded ClickHouse's pools (chdb)
    roles: dict[int, str]
    store_bytes: int
    wal_bytes: int
    chdb_parts: int


@dataclass
class Counts:
    offered: int = 0
    accepted: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # from when the send was due
    server_latencies: list[float] = field(default_factory=list)  # from when it was written
    hits: int = 0
    bounces: int = 0
    lost: int = 0  # requests whose connection closed without an answer


class CountingHooks:
    """A webhook receiver in a process of its own that answers 200 and only counts (a
    soak's calls would fill the memory of one that keeps them, and in the bench's process
    it would share the client's interpreter); ``GET /count`` answers the count."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> CountingHooks:
        self._process = subprocess.Popen(
            [sys.executable, "-c", f"from bench.soak import serve_hooks; serve_hooks({self.port})"],
            cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.calls  # noqa: B018 (answers once it listens)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the webhook receiver did not start")

    @property
    def calls(self) -> int:
        return int(httpx.get(f"http://127.0.0.1:{self.port}/count", timeout=5).text)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


def serve_hooks(port: int) -> None:
    calls = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal calls
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/count":
            body = str(calls).encode()
        else:
            calls += 1
            body = b""
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")


class RawClient:
    """HTTP/1.1 keep-alive connections of asyncio streams: httpx's own work (about 3 ms
    of CPU a request here) made the bench's client, not the engine, the bottleneck."""

    def __init__(self, port: int, connections: int, authorization: str) -> None:
        self._port = port
        self._free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._connections = connections
        self._authorization = authorization

    async def open(self) -> None:
        for _ in range(self._connections):
            self._free.put_nowait(await asyncio.open_connection("127.0.0.1", self._port))

    async def close(self) -> None:
        while not self._free.empty():
            _, writer = self._free.get_nowait()
            writer.close()

    async def request(
        self, method: str, path: str, body: bytes = b"", timings: list[float] | None = None
    ) -> tuple[int, bytes]:
        """The answer's status and body; with ``timings``, how long the server took (from
        the request written to the answer read, without the wait for a free connection)."""
        reader, writer = await self._free.get()
        sent = time.perf_counter()
        try:
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: {self._authorization}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body)
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError("the server closed the connection without an answer")
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            answer = await reader.readexactly(length) if length else b""
            if timings is not None:
                timings.append(time.perf_counter() - sent)
            return int(status_line.split()[1]), answer
        except BaseException:
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
            raise
        finally:
            self._free.put_nowait((reader, writer))


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            queue += [int(child) for child in task.read_text().split()]
    return found


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def active_parts(folder: Path) -> int:
    """The MergeTree parts ClickHouse would load from ``folder``: merged parts stay on disk
    for minutes after a merge (``old_parts_lifetime``), so a part whose block range another
    part of its table and partition covers is not counted, as the server decides at start."""
    by_table: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    # os.walk, not Path.rglob: merges remove folders while it walks, which rglob raises on.
    for parent, folders, _ in os.walk(folder):
        for name in folders:
            if _PART.match(name):
                partition, *blocks = name.rsplit("_", 3)
                first, last, merges = (int(n) for n in blocks)
                by_table.setdefault((parent, partition), []).append((first, last, merges))
    active = 0
    for parts in by_table.values():
        for low, high, level in parts:
            covered = any(
                (o_low <= low and high <= o_high and (o_low, o_high, o_level) != (low, high, level)
                 and o_level >= level)
                for o_low, o_high, o_level in parts
            )  # fmt: skip
            active += not covered
    return active


def _role(pid: int) -> str:
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    roles = [arguments[n + 1] for n, a in enumerate(arguments[:-1]) if a == "--role"]
    return "+".join(roles) or "api"


def _open_files(pid: int, chdb: str) -> int:
    """Open descriptors, less chdb's part files (a query or merge holds them for a moment)
    and the three /proc files each ClickHouse thread that has run a query keeps open for
    its statistics (as many as its threads, which are counted on their own)."""
    count = 0
    statistics = f"/proc/{pid}/task/"
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        count += not target.startswith((chdb, statistics))
    return count


def _threads(pid: int) -> tuple[int, int]:
    """The process's own threads and embedded ClickHouse's. ClickHouse names its threads in
    CamelCase (``ThreadPool``, ``MergeMutate``, ``QueryPipelineEx``) or ``jemalloc_…``;
    Python's carry the process's name and those the engine names are lower-case
    (adapters/thread_names.py). ClickHouse's pools grow under load up to their own limits
    and shrink slowly: they are reported beside, not bounded here."""
    own = clickhouse = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
        except OSError:  # it ended meanwhile
            continue
        if name[:1].isupper() or name.startswith("jemalloc"):
            clickhouse += 1
        else:
            own += 1
    return own, clickhouse


def sample(pid: int, data: Path) -> Sample:
    rss, fds, threads, clickhouse_threads, roles = {}, {}, {}, {}, {}
    for process in _tree(pid):
        try:
            rss[process], fds[process] = _rss(process), _open_files(process, str(data / "chdb"))
            threads[process], clickhouse_threads[process] = _threads(process)
            roles[process] = _role(process)
        except OSError:  # it ended meanwhile
            continue
    parts = active_parts(data / "chdb")
    store, wal = data / "events.sqlite", data / "events.sqlite-wal"
    return Sample(time.monotonic(), rss, fds, threads, clickhouse_threads, roles,
                  store.stat().st_size if store.exists()
                  else 0, wal.stat().st_size if wal.exists() else 0, parts)  # fmt: skip


def _email(n: int) -> dict[str, object]:
    return {"Subject": f"Soak {n}", "ContentType": "html",
            "HtmlContent": f'<p>Hello {n}</p><a href="https://shop.example.com/{n}">Shop</a>',
            "From": {"email": "news@example.com", "name": "News"},
            "To": [{"email": f"reader{n}@example.org", "name": "Reader"}]}  # fmt: skip


class Soak:
    def __init__(self, workdir: Path, sink_url: str, hooks: CountingHooks) -> None:
        self.data = workdir / "var"
        self.bounce_port = free_port()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = embedded_environment(
            self.data, SMTP_RELAY_URL=sink_url, BOUNCE_SMTP_PORTS=str(self.bounce_port),
            INBOUND_SMTP_PORTS="",
            PUBLIC_URL=self.url, WEBHOOK_ALLOW_HTTP="true", WEBHOOK_ALLOW_LOOPBACK="true",
            API_RATE_LIMIT="1000000/second", SEND_RATE_LIMIT="1000000/second",
        )  # fmt: skip
        self.keys = bootstrap_account(self.env)
        self.settings = Settings(SENDSTREAM_DATA_DIR=self.data)
        self.tracking_key = tracking_key(self.settings)
        self.verp_key = verp_key(self.settings)
        self.hooks = hooks
        self.log = workdir / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.counts = Counts()
        self.offered_for = 0.0
        self._one_dsn_at_a_time = asyncio.Lock()
        self.samples: list[Sample] = []
        self.dsns = _samples()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(self.port)], env=self.env,
            cwd=ROOT, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until_healthy(self.url, self.process, self.log)
        domain_id = self.command("EmailGateway.GetDomains")["Domains"][0]["DomainID"]
        self.domain_id = str(domain_id)
        for event in ("delivered", "open"):
            self.command("EmailGateway.AddWebhook", DomainID=self.domain_id, Event=event,
                         WebhookURL=f"http://127.0.0.1:{self.hooks.port}/{event}")  # fmt: skip

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def command(self, name: str, **params: str) -> dict[str, Any]:
        fields = {"Command": name, "APIKey": self.keys["AccountAPIKey"], **params}
        answer: dict[str, Any] = httpx.post(f"{self.url}/api.php", data=fields, timeout=60).json()
        if not answer.get("Success"):
            raise RuntimeError(f"{name}: {answer}")
        return answer

    def delivered(self) -> int:
        stats = self.command("EmailGateway.DomainStats", DomainID=self.domain_id)["Stats"]
        return int(stats["Delivered"])

    def errors_in_log(self) -> list[str]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if " ERROR " in line or line.startswith("Traceback")]

    async def offer(
        self,
        rate: float,
        seconds: float,
        first: int,
        mixed: bool,
        count: int | None = None,
        retry_busy: bool = False,
    ) -> int:
        """Send ``rate`` messages a second for ``seconds`` (numbered from ``first``; at most
        ``count``); with ``mixed``, their opens, clicks and bounces too; with
        ``retry_busy``, a send refused as busy is sent again a second later, as a client
        that honours Retry-After does. Returns the next number."""
        client = RawClient(self.port, IN_FLIGHT, f"Bearer {self.keys['SenderAPIKey']}")
        await client.open()
        rng = random.Random(first)
        tasks: set[asyncio.Task[None]] = set()
        bounces = SMTP(hostname="127.0.0.1", port=self.bounce_port, start_tls=False)
        if mixed:  # an idle connection would be closed by the server's timeout
            await bounces.connect()

        async def one(n: int) -> None:
            started = time.perf_counter()
            self.counts.offered += 1
            body = orjson.dumps(_email(n))
            try:
                timing: list[float] = []
                status, answer = await client.request("POST", "/api/v1/email", body, timing)
                while status == 503 and retry_busy:
                    await asyncio.sleep(1.0)
                    timing.clear()
                    status, answer = await client.request("POST", "/api/v1/email", body, timing)
            except (OSError, asyncio.IncompleteReadError):
                self.counts.lost += 1
                return
            if status != 200:
                self.counts.refused[status] = self.counts.refused.get(status, 0) + 1
                return
            self.counts.accepted += 1
            self.counts.latencies.append(time.perf_counter() - started)
            self.counts.server_latencies += timing
            if mixed:
                message_id = message_id_for(UUID(orjson.loads(answer)["MessageID"]), 0)
                await self._mix(client, bounces, message_id, rng)

        started = time.monotonic()
        n = first
        last = first + count if count is not None else sys.maxsize
        while (elapsed := time.monotonic() - started) < seconds and n < last:
            due = min(first + int(elapsed * rate), last)
            while n < due:
                task = asyncio.create_task(one(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(0.01)
        self.offered_for = time.monotonic() - started
        await asyncio.gather(*tasks)
        if mixed:
            await bounces.quit()
        await client.close()
        return n

    async def _mix(
        self, client: RawClient, bounces: SMTP, message_id: UUID, rng: random.Random
    ) -> None:
        await asyncio.sleep(2.0)  # after its delivery, as a reader would
        if rng.random() < 0.2:
            await client.request("GET", urlsplit(open_url(self.url, message_id,
                                                          self.tracking_key)).path)  # fmt: skip
            self.counts.hits += 1
        if rng.random() < 0.05:
            await client.request("GET", urlsplit(click_url(self.url, message_id, 0,
                                                           self.tracking_key)).path)  # fmt: skip
            self.counts.hits += 1
        if rng.random() < 0.02:
            address = verp_address(message_id, self.settings.mail_hostname, self.verp_key)
            async with self._one_dsn_at_a_time:  # one SMTP transaction at a time on it
                await bounces.sendmail("", [address], rng.choice(self.dsns))
            self.counts.bounces += 1

    def wait_delivered(self, count: int, limit: float, settled: float = 60.0) -> float:
        """Seconds until ClickHouse counts ``count`` delivered, or until the last delivery
        if the count stops short for ``settled`` seconds. It can, rightly: when the engine
        falls behind, a bounce report the mix sends 2 s after the send can reach a message
        whose delivery is under way, which settles it as bounced."""
        started = last_change = time.monotonic()
        seen = self.delivered()
        while seen < count:
            now = time.monotonic()
            if now - started > limit:
                raise RuntimeError(f"{seen} of {count} delivered after {limit} s")
            if now - last_change > settled:
                return last_change - started
            time.sleep(0.5)
            if (current := self.delivered()) != seen:
                seen, last_change = current, time.monotonic()
        return time.monotonic() - started

    def sampling(self, stop: threading.Event) -> None:
        assert self.process is not None
        started, seen = time.monotonic(), 0
        while not stop.is_set():
            self.samples.append(now := sample(self.process.pid, self.data))
            due, written = (percentile(c[seen:], 0.99) for c in
                            (self.counts.latencies, self.counts.server_latencies))  # fmt: skip
            seen = len(self.counts.latencies)
            print(f"{now.at - started:6.0f} s  accepted {self.counts.accepted:,}  refused "
                  f"{sum(self.counts.refused.values()):,}  p99 {due * 1000:.0f} ms from due, "
                  f"{written * 1000:.0f} ms from written  RSS "
                  + " ".join(f"{now.roles[pid]} {_megabytes(rss)}" for pid, rss in now.rss.items()
                             if pid in now.roles),
                  file=sys.stderr, flush=True)  # fmt: skip
            stop.wait(SAMPLE_SECONDS)


def _megabytes(value: float) -> str:
    return f"{value / 1024 / 1024:.0f} MB"


def _allowed(name: str, before: float, bound: float) -> float:
    if name == "wal_bytes":
        return bound
    if name == "chdb_parts":
        # Each second's insert adds a part to the events table and to each rollup until a
        # merge folds them: a sample may land before or after one. A leak (parts never
        # merged) grows without end, far past this.
        return max(before * bound, before + PARTS_SLACK)
    return max(before, 1) * bound


def _growth(start: Sample, end: Sample) -> dict[str, tuple[float, float]]:
    """Per figure: the value after the warm-up and at the end."""
    return {
        "rss": (max(start.rss.values()), max(end.rss.values())),
        "rss_total": (sum(start.rss.values()), sum(end.rss.values())),
        "fds": (sum(start.fds.values()), sum(end.fds.values())),
        "threads": (sum(start.threads.values()), sum(end.threads.values())),
        "clickhouse_threads": (
            sum(start.clickhouse_threads.values()),
            sum(end.clickhouse_threads.values()),
        ),
        "wal_bytes": (start.wal_bytes, end.wal_bytes),
        "store_bytes": (start.store_bytes, end.store_bytes),
        "chdb_parts": (start.chdb_parts, end.chdb_parts),
    }


@dataclass
class Result:
    rows: list[tuple[str, str, str]]
    leaks: list[str]
    errors: list[str]
    accepted: int
    delivered: int


def run(minutes: float = 60, load: float = 0.3, burst: int = 3000) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="sendstream-soak-"))
    sink = start_smtp_sink(keep_messages=False)
    hooks = CountingHooks().start()
    soak = Soak(workdir, sink.url, hooks)
    stop_sampling = threading.Event()
    sampler = threading.Thread(target=soak.sampling, args=(stop_sampling,), daemon=True)
    try:
        ceiling = asyncio.run(smtp_ceiling([(sink.host, sink.port)], 5000, 0,
                                           lambda n: f"reader{n}@example.org"))  # fmt: skip
        soak.start()
        started = time.monotonic()
        # All at once, more than the API takes in progress: the busy ones are sent again.
        following = asyncio.run(soak.offer(1e9, 600, 0, mixed=False, count=burst,
                                           retry_busy=True))  # fmt: skip
        soak.wait_delivered(burst, 600)
        capacity = burst / (time.monotonic() - started)
        rate = load * capacity
        steady_from = len(soak.counts.latencies)
        sampler.start()
        steady_started = time.monotonic()
        # Overloaded, mail leaves minutes after it is accepted: a reader's open or a bounce
        # 2 s after the send would come before the delivery, which no real one can.
        asyncio.run(soak.offer(rate, minutes * 60, following, mixed=load < 1))
        offered_for = soak.offered_for
        backlog = soak.counts.accepted - soak.delivered()
        drained = soak.wait_delivered(soak.counts.accepted, max(600.0, minutes * 60))
        delivered = soak.delivered()
        time.sleep(SAMPLE_SECONDS)  # what the engine holds once idle again
        stop_sampling.set()
        sampler.join()
        soak.samples.append(sample(soak.process.pid, soak.data))  # type: ignore[union-attr]
        errors = soak.errors_in_log()
        webhook_calls = hooks.calls
    finally:
        stop_sampling.set()
        soak.stop()
        hooks.stop()
        sink.stop()
    warm_up = max(WARM_UP_SECONDS, offered_for * WARM_UP_SHARE)
    warm = next((s for s in soak.samples if s.at - steady_started >= warm_up),
                soak.samples[0])  # fmt: skip
    end = soak.samples[-1]
    growth = _growth(warm, end)
    leaks = [
        f"{name}: {before:.0f} → {after:.0f}"
        for name, bound in BOUNDS.items()
        for before, after in [growth[name]]
        if after > _allowed(name, before, bound)
    ]
    latencies = soak.counts.latencies[steady_from:]
    server_latencies = soak.counts.server_latencies[steady_from:]
    refused = ", ".join(f"{k}: {v}" for k, v in sorted(soak.counts.refused.items())) or "none"
    rows = [
        ("delivery capacity, end to end (messages/s)", f"{capacity:.0f}",
         f"ceiling {ceiling:.0f}: {capacity / ceiling:.0%}"),
        (f"offered: {load:.0%} of capacity (messages/s)", f"{rate:.0f}",
         f"for {offered_for / 60:.1f} min"),
        ("accepted / refused", f"{soak.counts.accepted:,}", refused),
        ("requests left without an answer", f"{soak.counts.lost:,}", "0"),
        ("API latency of accepted sends p50 / p99 (ms), from the request written",
         f"{percentile(server_latencies, 0.5) * 1000:.1f} / "
         f"{percentile(server_latencies, 0.99) * 1000:.1f}", "p99 <= 50"),
        ("the same, from when the send was due (with the wait for one of "
         f"{IN_FLIGHT} connections)", f"{percentile(latencies, 0.5) * 1000:.1f} / "
         f"{percentile(latencies, 0.99) * 1000:.1f}", ""),
        ("tracking hits / bounces sent", f"{soak.counts.hits:,} / {soak.counts.bounces:,}", ""),
        ("webhook calls received", f"{webhook_calls:,}", ""),
        ("backlog when the offer stopped (messages)", f"{backlog:,}", ""),
        ("backlog drained in (s)", f"{drained:.1f}",
         f"{backlog / drained:.0f}/s" if drained > 0.5 else ""),
        ("delivered (ClickHouse) / accepted", f"{delivered:,} / {soak.counts.accepted:,}",
         "equal"),
        *[(f"RSS of {end.roles.get(pid, pid)}, after warm-up → end",
           f"{_megabytes(warm.rss.get(pid, 0))} → {_megabytes(rss)}", "")
          for pid, rss in sorted(end.rss.items())],
        ("largest process RSS, after warm-up → end", f"{_megabytes(growth['rss'][0])} → "
         f"{_megabytes(growth['rss'][1])}", f"<= x{BOUNDS['rss']}"),
        ("all processes' RSS, after warm-up → end", f"{_megabytes(growth['rss_total'][0])} → "
         f"{_megabytes(growth['rss_total'][1])}", f"{len(end.rss)} processes"),
        ("open file descriptors, after warm-up → end",
         f"{growth['fds'][0]:.0f} → {growth['fds'][1]:.0f}", f"<= x{BOUNDS['fds']}"),
        ("the engine's threads, after warm-up → end",
         f"{growth['threads'][0]:.0f} → {growth['threads'][1]:.0f}", f"<= x{BOUNDS['threads']}"),
        ("embedded ClickHouse's threads, after warm-up → end",
         f"{growth['clickhouse_threads'][0]:.0f} → {growth['clickhouse_threads'][1]:.0f}",
         "its pools' own limits"),
        ("event store, after warm-up → end", f"{_megabytes(growth['store_bytes'][0])} → "
         f"{_megabytes(growth['store_bytes'][1])}", "grows with the history"),
        ("SQLite WAL, after warm-up → end", f"{_megabytes(growth['wal_bytes'][0])} → "
         f"{_megabytes(growth['wal_bytes'][1])}", f"<= {_megabytes(BOUNDS['wal_bytes'])}"),
        ("chdb parts, after warm-up → end",
         f"{growth['chdb_parts'][0]:.0f} → {growth['chdb_parts'][1]:.0f}",
         f"<= x{BOUNDS['chdb_parts']} or +{PARTS_SLACK}"),
        ("errors in the log", f"{len(errors)}", "0"),
        ("leaks beyond the bounds", f"{len(leaks)}", "; ".join(leaks) or "none"),
    ]  # fmt: skip
    shutil.rmtree(workdir, ignore_errors=True)
    return Result(rows, leaks, errors, soak.counts.accepted, delivered)


def main(minutes: float, load: float) -> None:
    print_table("Machine", [(k, v, "") for k, v in describe().items()])
    result = run(minutes=minutes, load=load)
    print_table(f"Soak: {minutes:g} min at {load:.0%} of capacity", result.rows)
    for line in result.errors[:20]:
        print(line)
