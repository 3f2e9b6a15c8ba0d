"""`sendstream serve` runs the delivery side in a second process, a second share of the
delivery in a third and a webhook caller in a fourth: the worker delivers, each child is
started again when it dies, and they stop when the API process is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import wait_for
from tests.services import bootstrap_account, embedded_environment, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the parent pid is the second field after it.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


class Served:
    def __init__(self, env: dict[str, str], port: int, key: str, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.key = key
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.log = log

    def children(self) -> dict[int, list[str]]:
        """Live children and the roles each was started with."""
        found = {}
        for pid in children_of(self.process.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if is_alive(pid):
                found[pid] = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--role"]
        return found

    def worker_pid(self) -> int | None:
        return next((pid for pid, roles in self.children().items() if "scheduler" in roles), None)

    def delivery_pids(self) -> list[int]:
        """The delivery processes beside the worker process (DELIVERY_PROCESSES - 1)."""
        return [pid for pid, roles in self.children().items() if roles == ["delivery"]]

    def caller_pids(self) -> list[int]:
        return [pid for pid, roles in self.children().items() if roles == ["webhook-calls"]]

    def send(self, recipient: str) -> str:
        response = httpx.post(
            f"{self.url}/api/v1/email",
            headers={"Authorization": f"Bearer {self.key}"},
            json={
                "Subject": "Two processes",
                "ContentType": "plain",
                "PlainContent": "hello",
                "From": {"email": "news@example.com", "name": "News"},
                "To": [{"email": recipient, "name": ""}],
            },
        )
        assert response.status_code == 200, response.text
        return str(response.json()["MessageID"])

    def delivered(self, message_id: str) -> bool:
        response = httpx.get(
            f"{self.url}/api/v1/events",
            headers={"Authorization": f"Bearer {self.key}"},
            params={"MessageID": message_id, "Event": "delivered"},
        )
        return response.status_code == 200 and bool(response.json()["Events"])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = embedded_environment(tmp_path / "var", DELIVERY_PROCESSES="2")
    key = bootstrap_account(env)["SenderAPIKey"]
    server = Served(env, free_port(), key, tmp_path / "serve.log")
    try:
        wait_for(lambda: _healthy(server.url), timeout=60)
        yield server
    finally:
        if server.process.poll() is None:
            server.process.terminate()
            server.process.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_worker_process_delivers_and_is_replaced_when_it_dies(served: Served) -> None:
    wait_for(lambda: served.worker_pid() is not None, timeout=30)
    first_worker = served.worker_pid()
    assert first_worker is not None

    message_id = served.send("first@example.org")
    wait_for(lambda: served.delivered(message_id), timeout=60)

    os.kill(first_worker, signal.SIGKILL)
    wait_for(lambda: served.worker_pid() not in (None, first_worker), timeout=30)

    message_id = served.send("second@example.org")
    wait_for(lambda: served.delivered(message_id), timeout=60)


def test_a_second_delivery_process_delivers_its_share_and_is_replaced_when_it_dies(
    served: Served,
) -> None:
    # DELIVERY_PROCESSES is 2 here: each delivers the messages of its share, so a
    # burst is delivered only if both do (20 ids all in one share: one chance in 2**19).
    wait_for(lambda: len(served.delivery_pids()) == 1, timeout=30)
    [second] = served.delivery_pids()
    sent = [served.send(f"r{n}@example.org") for n in range(20)]
    wait_for(lambda: all(served.delivered(m) for m in sent), timeout=60)

    os.kill(second, signal.SIGKILL)
    wait_for(lambda: served.delivery_pids() not in ([], [second]), timeout=30)
    sent = [served.send(f"s{n}@example.org") for n in range(20)]
    wait_for(lambda: all(served.delivered(m) for m in sent), timeout=60)


def test_a_webhook_caller_runs_beside_the_worker_and_is_replaced_when_it_dies(
    served: Served,
) -> None:
    # WEBHOOK_PROCESSES is 2 by default: the worker process and one caller.
    wait_for(lambda: served.worker_pid() is not None and len(served.caller_pids()) == 1, 30)
    worker = served.worker_pid()
    assert worker is not None
    # the intake runs with the API (it reads what the API wrote); calls are made here
    assert "webhooks" not in served.children()[worker]
    assert "webhook-calls" in served.children()[worker]
    [caller] = served.caller_pids()
    os.kill(caller, signal.SIGKILL)
    wait_for(lambda: len(served.caller_pids()) == 1 and served.caller_pids() != [caller], 30)
    assert served.worker_pid() == worker


def test_the_child_processes_stop_when_the_api_process_is_killed(served: Served) -> None:
    wait_for(lambda: served.worker_pid() is not None and served.caller_pids() != [], 30)
    wait_for(lambda: served.delivery_pids() != [], 30)
    children = list(served.children())
    assert len(children) == 3
    served.process.kill()
    served.process.wait()
    deadline = time.monotonic() + 30
    while any(is_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(is_alive(pid) for pid in children), served.log.read_text()[-2000:]


def test_metrics_count_every_process_and_readiness_names_its_checks(served: Served) -> None:
    """``/metrics`` adds up the API process's counts and the worker's (prometheus-client's
    multiprocess mode): a delivery counted in the worker is read from the API."""
    message_id = served.send("counted@example.org")
    wait_for(lambda: served.delivered(message_id), timeout=60)

    def metric(text: str, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                return float(line.rpartition(" ")[2])
        raise AssertionError(f"no {name}{{{wanted}}} in /metrics")

    def exposed() -> str:
        answer = httpx.get(f"{served.url}/metrics", timeout=30)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        return answer.text

    def with_delivery() -> str | None:
        text = exposed()
        return text if 'outcome="delivered"' in text else None

    text = wait_for(with_delivery)
    assert metric(text, "sendstream_delivery_outcomes_total", outcome="delivered") >= 1
    assert metric(text, "sendstream_messages_accepted_total", source="api") >= 1
    assert metric(text, "sendstream_http_requests_total",
                  route="/api/v1/email", method="POST", status="200") >= 1  # fmt: skip
    assert metric(text, "sendstream_http_request_seconds_count", route="/api/v1/email") >= 1
    assert "sendstream_reader_lag{" in text

    ready = httpx.get(f"{served.url}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    checks = {check["Check"]: check["Ok"] for check in ready.json()["Checks"]}
    assert checks == {"event store": True, "reporting": True, "loops": True}
