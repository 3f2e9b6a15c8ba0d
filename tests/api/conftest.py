"""A real ``sendstream serve`` for the tests of what its HTTP clients see."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.app import create_api
from api.commands import CommandSpec, engine_commands
from engine.runtime.composition import Engine
from engine.settings import Settings
from tests.services import (
    bootstrap_account,
    embedded_environment,
    free_port,
    wait_until_healthy,
)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Served:
    url: str
    keys: dict[str, str]  # SENDER_KEY and ACCOUNT_KEY of a bootstrapped account
    other_keys: dict[str, str]  # the same of a second account, on example.org
    login: tuple[str, str]  # the first account's username and password
    other_login: tuple[str, str]


@pytest.fixture(scope="module")
def idle_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine that runs no role: its services answer, nothing is sent."""
    engine = Engine(
        Settings(SENDSTREAM_DATA_DIR=tmp_path_factory.mktemp("commands"),
                 SMTP_SUBMISSION_PORTS="", BOUNCE_SMTP_PORTS="", INBOUND_SMTP_PORTS=""),
        roles=frozenset(),
    )  # fmt: skip
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def commands(idle_engine: Engine) -> dict[str, CommandSpec]:
    """The /api.php command table of the engine, by command name."""
    return {spec.name: spec for spec in engine_commands(idle_engine).values()}


@pytest.fixture(scope="module")
def api_document(idle_engine: Engine) -> dict[str, Any]:
    """The OpenAPI document the engine serves at /openapi.json."""
    document: dict[str, Any] = create_api(idle_engine).openapi()
    return document


@contextmanager
def serving(tmp_path: Path, data_dir: Path | None = None, **settings: str) -> Iterator[Served]:
    """``sendstream serve --single-process`` on a new embedded installation (in
    ``data_dir``, else in ``tmp_path``) with two bootstrapped accounts; its log is
    ``tmp_path``'s serve.log; ``settings``: more of its environment."""
    env = embedded_environment(
        data_dir or tmp_path / "var", WEBHOOK_ALLOW_HTTP="true", WEBHOOK_ALLOW_LOOPBACK="true",
        **settings,
    )  # fmt: skip
    keys = bootstrap_account(env)
    other = bootstrap_account(env, domain="example.org")
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--single-process", "--port", str(port)],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, tmp_path / "serve.log", seconds=60)
        yield Served(
            url,
            {"SENDER_KEY": keys["SenderAPIKey"], "ACCOUNT_KEY": keys["AccountAPIKey"]},
            {"SENDER_KEY": other["SenderAPIKey"], "ACCOUNT_KEY": other["AccountAPIKey"]},
            (keys["Username"], keys["Password"]),
            (other["Username"], other["Password"]),
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    served_log = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in served_log, served_log[-4000:]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serving(tmp_path) as engine:
        yield engine
