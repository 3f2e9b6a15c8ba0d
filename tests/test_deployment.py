"""The docker-compose file against the code it deploys (no Docker engine runs here, and
``docker compose config`` needs its plugin): every service of ours runs a real command
and roles, every variable it sets is a setting, the API's health check asks ``/readyz``,
and what the services depend on has a health check of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.runtime.composition import ALL_ROLES, Role
from engine.settings import Settings

pytestmark = pytest.mark.unit

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"
# Variables read by the images of others (PostgreSQL, Kafka, ClickHouse).
THEIRS = ("POSTGRES_", "KAFKA_NODE_ID", "KAFKA_PROCESS_ROLES", "KAFKA_LISTENER",
          "KAFKA_ADVERTISED", "KAFKA_CONTROLLER", "KAFKA_OFFSETS", "KAFKA_TRANSACTION",
          "CLICKHOUSE_PASSWORD")  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def _ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("command", [""])[0] == "sendstream"
    }


def test_every_service_of_ours_runs_serve_with_real_roles(compose: dict[str, Any]) -> None:
    ours = _ours(compose)
    assert ours, "no sendstream service"
    roles_run: set[str] = set()
    for name, service in ours.items():
        command = service["command"]
        assert command[1] == "serve", name
        roles = [command[i + 1] for i, arg in enumerate(command) if arg == "--role"]
        assert roles, f"{name} runs every role: at scale each role is a service"
        assert set(roles) <= {role.value for role in Role}, (name, roles)
        roles_run |= set(roles)
    assert roles_run == {role.value for role in ALL_ROLES}  # every role has a service


def test_every_variable_set_for_our_services_is_a_setting(compose: dict[str, Any]) -> None:
    aliases = {str(field.alias) for field in Settings.model_fields.values() if field.alias}
    aliases.add("SESSION_SECRET")  # read from the environment by engine/keys.py
    for name, service in _ours(compose).items():
        unknown = set(service.get("environment", {})) - aliases
        assert not unknown, f"{name} sets what no setting reads: {sorted(unknown)}"
    for name, service in compose["services"].items():
        if name in _ours(compose):
            continue
        for variable in service.get("environment", {}):
            assert variable.startswith(THEIRS), (name, variable)


def test_health_checks_and_dependencies(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    for name, service in _ours(compose).items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in compose["services"][dependency], dependency


def test_the_settings_the_services_set_are_valid(compose: dict[str, Any]) -> None:
    for name, service in _ours(compose).items():
        values = {
            key: str(value) for key, value in service.get("environment", {}).items()
            if "${" not in str(value)  # given by the operator when the stack starts
        }  # fmt: skip
        Settings(**values)  # raises for a value no setting takes
        assert name
