"""``POST /api.php``: EmailGateway.GetDomains and GetAPIs per second (wrk, keep-alive), against
the real ``sendstream serve`` on the embedded defaults."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.api_accept import Server

TARGET = ">= 2000"


def _wrk(url: str, body: dict[str, object], seconds: int, connections: int) -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian package 'wrk')")
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{json.dumps(body)}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("NON2XX %d\\n", summary.errors.status))\n'
        '  io.write(string.format("P99 %.3f\\n", latency:percentile(99) / 1000))\n'
        "end\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"{url}/api.php"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    script.unlink()
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": int(re.search(r"NON2XX (\d+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": float(re.search(r"P99 ([\d.]+)", out).group(1)),  # type: ignore[union-attr]
    }


def run(seconds: int = 10) -> list[tuple[str, str, str]]:
    server = Server()
    rows: list[tuple[str, str, str]] = []
    try:
        server.start()
        keys = json.loads(
            subprocess.run(
                [sys.executable, "-m", "cli", "bootstrap", "--domain", "bench.example"],
                env=server.env, check=True, capture_output=True,
            ).stdout
        )  # fmt: skip
        account = {"APIKey": keys["AccountAPIKey"]}
        for command, extra in (
            ("EmailGateway.GetDomains", {}),
            ("EmailGateway.GetAPIs", {"DomainID": keys["DomainID"]}),
        ):
            body = {**account, "Command": command, **extra}
            _wrk(server.url, body, 2, 16)  # warm-up
            result = _wrk(server.url, body, seconds, 32)
            rows += [
                (f"/api.php {command} per s (wrk, 32 conns)", f"{result['rps']:.0f}", TARGET),
                (f"/api.php {command} p99 under that load (ms)", f"{result['p99_ms']:.1f}", ""),
                (f"/api.php {command} non-2xx answers", f"{result['non_2xx']:.0f}", "0"),
            ]
    finally:
        server.stop()
    return rows
