"""The OpenAPI document is the contract: schemathesis (every check) against a running engine.

A real ``sendstream serve`` on a free port, with a bootstrapped account, and the
schemathesis command line reading ``/openapi.json``: each operation's documented
parameters, answers, statuses, headers and links, the keys each takes, and requests the
document calls invalid. Bounded in examples so the suite keeps its time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services import free_port

REPO = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = 25


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = {
        **os.environ,
        "SENDSTREAM_DATA_DIR": str(tmp_path / "var"),
        "SMTP_SUBMISSION_PORTS": "",
        "BOUNCE_SMTP_PORTS": "",
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOW_LOOPBACK": "true",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("EVENTSTORE_URL", None)
    made = subprocess.run(
        [sys.executable, "-m", "cli", "bootstrap", "--domain", "example.com"],
        env=env, cwd=REPO, capture_output=True, check=True,
    )  # fmt: skip
    keys = json.loads(made.stdout)
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--single-process", "--port", str(port)],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the engine did not start"
            time.sleep(0.2)
        yield url, {"SENDER_KEY": keys["SenderAPIKey"], "ACCOUNT_KEY": keys["AccountAPIKey"]}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    served_log = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in served_log, served_log[-4000:]


def test_the_engine_answers_exactly_as_its_openapi_document_says(
    served: tuple[str, dict[str, str]],
) -> None:
    url, keys = served
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
            f"{url}/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
            "--no-color", "--workers", "1",
        ],
        env={**os.environ, **keys}, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-8000:]
    for warning in ("unresolv", "Undocumented", "Server error"):
        assert warning not in report, report[-8000:]
