"""Direct delivery end to end: messages to 2,000 recipient domains whose MX records (dnsmasq)
name 20 mail servers (Postfix's smtp-sink on port 25 of 127.0.0.2 … 127.0.0.21), from
accepted to a Delivered row in ClickHouse, as ``sendstream serve`` runs it (API and
projector in this process, delivery in a worker process), with small and 100 KB messages.

The sender domain sends through one pool of three sending addresses (127.0.0.100 …), as
an operator sets it up with ``EmailGateway.AddIPAddress``, ``AddIPPool`` and
``UpdateDomain``. Beside each figure, its ceiling on this machine in the same run: raw
aiosmtplib to the same smtp-sinks, 16 reused connections, the same messages. Needs root (port 25).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from uuid import UUID

from bench.ceiling import plain_text_of_size, smtp_ceiling
from bench.delivery import accept, wait_until_delivered
from engine.runtime.composition import Engine
from engine.runtime.processes import API_PROCESS_ROLES, WorkerProcess
from engine.settings import Settings
from tests.services import DnsEntry, RunningService, start_dnsmasq, start_smtp_sink

SERVERS = 20
DOMAINS = 2000
LARGE = 100 * 1024
POOL = ("127.0.0.100", "127.0.0.101", "127.0.0.102")  # the sending addresses


def _server_address(n: int) -> str:
    return f"127.0.0.{2 + n}"


def _records() -> list[DnsEntry]:
    records: list[DnsEntry] = [
        (f"mx{n}.bench.example", "A", _server_address(n)) for n in range(SERVERS)
    ]
    records += [
        (f"d{n}.bench.example", "MX", f"10 mx{n % SERVERS}.bench.example") for n in range(DOMAINS)
    ]
    return records


def _recipient(n: int) -> str:
    return f"user{n}@d{n % DOMAINS}.bench.example"


def _cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its finished children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _attach_pool(engine: Engine, keys: dict[str, str]) -> None:
    """One pool of three sending addresses, weighted 2:1:1, for the bench's sender domain,
    through the commands an operator would use."""
    account = engine.app.account(UUID(keys["AccountID"]))
    for address in POOL:
        engine.sending_addresses.add_address(
            account, {"IPAddress": address, "HeloName": f"mta{address.rpartition('.')[2]}.bench"}
        )
    members = ", ".join(f"{a}*2" if n == 0 else a for n, a in enumerate(POOL))
    engine.sending_addresses.add_pool(account, {"PoolName": "bench", "IPAddresses": members})
    engine.gateway.update_domain(account, {"DomainID": keys["DomainID"], "IPPool": "bench"})


def _run_engine(
    workdir: Path, resolver: str, messages: int, size: int, label: str
) -> dict[str, float]:
    settings = Settings(
        SENDSTREAM_DATA_DIR=workdir / "var",
        DELIVERY_MODE="direct",
        DNS_RESOLVER=resolver,
        DIRECT_ALLOW_PRIVATE_ADDRESSES=True,
        API_RATE_LIMIT="1000000/second",
        SEND_RATE_LIMIT="1000000/second",
        MAX_REQUEST_BYTES=4 * LARGE,
        SMTP_SUBMISSION_PORTS="",
        BOUNCE_SMTP_PORTS="",
        INBOUND_SMTP_PORTS="",
    )
    engine = Engine(settings, roles=API_PROCESS_ROLES)
    workers = WorkerProcess(settings)
    plain = plain_text_of_size(size)
    try:
        keys = engine.app.bootstrap("example.com")
        sender = engine.app.sender_context(keys["SenderAPIKey"])
        assert sender is not None
        _attach_pool(engine, keys)
        engine.start_workers()
        workers.start()
        assert workers.pid is not None
        api_cpu, worker_cpu = time.process_time(), _cpu_seconds(workers.pid)
        started = time.perf_counter()
        asyncio.run(accept(engine, sender, messages, _recipient, plain))
        accepted = time.perf_counter() - started
        wait_until_delivered(engine, messages, started, f"({label})")
        total = time.perf_counter() - started
        api_cpu = time.process_time() - api_cpu
        worker_cpu = _cpu_seconds(workers.pid) - worker_cpu
    finally:
        workers.stop()
        engine.close()
    return {
        "accepted": accepted,
        "total": total,
        "rate": messages / total,
        "api_cpu": api_cpu / total,
        "worker_cpu": worker_cpu / total,
    }


def run(messages: int = 50_000) -> list[tuple[str, str, str]]:
    if os.geteuid() != 0:
        return [("direct: skipped", "needs root (port 25 on loopback addresses)", "")]
    workdir = Path(tempfile.mkdtemp(prefix="sendstream-bench-direct-"))
    sinks: list[RunningService] = []
    rows: list[tuple[str, str, str]] = []
    # An hour, as mail domains' records commonly have: each domain is looked up once a run.
    dns = start_dnsmasq(_records(), workdir / "dns", zones=["bench.example"], ttl=3600)
    try:
        for n in range(SERVERS):
            sinks.append(
                start_smtp_sink(
                    workdir / f"sink{n}", host=_server_address(n), port=25, keep_messages=False
                )
            )
        for size, label in ((0, "small"), (LARGE, "100 KB")):
            servers = [(_server_address(n), 25) for n in range(SERVERS)]
            ceiling = asyncio.run(smtp_ceiling(servers, min(messages, 20_000), size, _recipient))
            figures = _run_engine(
                workdir / label.replace(" ", ""), dns.resolver, messages, size, label
            )
            rows += [
                (
                    f"direct {label}: messages, domains, MX hosts, pool addresses",
                    f"{messages}, {DOMAINS}, {SERVERS}, {len(POOL)}",
                    "",
                ),
                (
                    f"direct {label}: accepted into the event store (s)",
                    f"{figures['accepted']:.1f}",
                    "",
                ),
                (
                    f"direct {label}: end-to-end messages per s",
                    f"{figures['rate']:.0f}",
                    f">= 1000 (ceiling {ceiling:.0f}: {figures['rate'] / ceiling:.0%})",
                ),
                (
                    f"direct {label}: CPU, API process / worker process",
                    f"{figures['api_cpu']:.0%} / {figures['worker_cpu']:.0%}",
                    "of one core, over the run",
                ),
            ]
    finally:
        for sink in sinks:
            sink.stop()
        dns.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows
