"""The layer rule of the README's Architecture section, read from the code's own imports.

Every import counts, the ones inside functions too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("domain", "engine", "adapters", "projections", "api", "cli")

# What each top-level package may import of the others (itself always).
ALLOWED = {
    "domain": set(),
    "adapters": {"domain"},
    "projections": {"domain", "adapters"},
    "engine": {"domain", "adapters", "projections"},
    "api": {"domain", "adapters", "engine", "projections"},
    "cli": {"domain", "adapters", "engine", "projections", "api"},
}


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", FIRST_PARTY)
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    broken = [
        f"{name} imports {target}"
        for name, path in modules(package)
        for target in imports(path)
        if target.split(".")[0] in FIRST_PARTY
        and target.split(".")[0] not in ALLOWED[package] | {package}
    ]
    assert broken == []


def test_the_domain_imports_the_standard_library_and_eventsourcing_domain_only() -> None:
    broken = [
        f"{name} imports {target}"
        for name, path in modules("domain")
        for target in imports(path)
        if target.split(".")[0] not in sys.stdlib_module_names | {"domain"}
        and target != "eventsourcing.domain"
    ]
    assert broken == []


def capability(module: str) -> str:
    """``engine.delivery.worker`` → ``engine.delivery``; a shared module is its own unit."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_the_engine_capabilities_depend_on_each_other_without_a_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for name, path in modules("engine"):
        unit = capability(name)
        graph.setdefault(unit, set()).update(
            capability(target)
            for target in imports(path)
            if target.startswith("engine.") and capability(target) != unit
        )
    assert "engine.delivery" in graph and "engine.runtime" in graph  # the walk saw the folders

    visiting: list[str] = []
    done: set[str] = set()

    def visit(unit: str) -> None:
        if unit in done:
            return
        assert unit not in visiting, " -> ".join([*visiting[visiting.index(unit) :], unit])
        visiting.append(unit)
        for dependency in sorted(graph.get(unit, ())):
            visit(dependency)
        visiting.pop()
        done.add(unit)

    for unit in sorted(graph):
        visit(unit)


def test_only_the_runtime_composes_and_nothing_in_the_engine_reaches_the_entry_points() -> None:
    composers = {
        name
        for name, path in modules("engine")
        if any(target.startswith("engine.runtime") for target in imports(path))
        and not name.startswith("engine.runtime")
    }
    assert composers == set()
