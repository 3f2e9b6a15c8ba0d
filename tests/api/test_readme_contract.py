"""The README's API tables tell the truth: every command of ``/api.php`` and every REST
operation of the OpenAPI document is named there, and nothing named there as a command
or an endpoint is missing from the engine."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.app import create_api
from api.commands import CommandSpec
from engine.runtime.composition import Engine
from engine.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
# `EmailGateway.AddAPI`, `GetAPIs`, `DeleteAPI`: a run of one noun's commands.
_RUN = re.compile(r"`([A-Z][A-Za-z]*)\.([A-Z][A-Za-z]*)`((?:,?\s+(?:and\s+)?`[A-Z][A-Za-z]*`)*)")
_ENDPOINT = re.compile(r"`(GET|POST|DELETE|PUT|PATCH) (/[^`\s]*)`")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp("readme")
    built = Engine(
        Settings(SENDSTREAM_DATA_DIR=folder, SMTP_SUBMISSION_PORTS="", BOUNCE_SMTP_PORTS=""),
        roles=frozenset(),
    )
    yield built
    built.close()


def commands_named_in_readme() -> set[str]:
    named = set()
    for noun, verb, rest in _RUN.findall(README):
        named.add(f"{noun}.{verb}")
        named.update(f"{noun}.{more}" for more in re.findall(r"`([A-Za-z]+)`", rest))
    return named


def test_every_command_is_in_the_readme_and_every_named_command_exists(
    commands: dict[str, CommandSpec],
) -> None:
    names = {*commands, "User.Login"}
    nouns = {name.split(".")[0] for name in names}
    named = {name for name in commands_named_in_readme() if name.split(".")[0] in nouns}
    assert sorted(names - named) == [], "commands the README does not name"
    assert sorted(named - names) == [], "names in the README that are no command"


def test_every_rest_operation_is_in_the_readme_and_every_named_one_exists(engine: Engine) -> None:
    document = create_api(engine).openapi()

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", path)

    operations = {
        (method.upper(), shape(path))
        for path, methods in document["paths"].items()
        if path.startswith("/api/")
        for method in methods
    }
    named = {(method, shape(path)) for method, path in _ENDPOINT.findall(README)}
    named = {(method, path) for method, path in named if path.startswith("/api/")}
    assert sorted(operations - named) == [], "operations the README does not name"
    assert sorted(named - operations) == [], "endpoints in the README that do not exist"
