"""The OpenAPI document is the contract: schemathesis (every check) against a running engine.

A real ``sendstream serve`` on a free port, with a bootstrapped account, and the
schemathesis command line reading ``/openapi.json``: each operation's documented
parameters, answers, statuses, headers and links, the keys each takes, and requests the
document calls invalid. Bounded in examples so the suite keeps its time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.api.conftest import Served

CONFIG = Path(__file__).with_name("schemathesis.toml")
REPO = Path(__file__).resolve().parents[2]
HOOKS = "tests.api.schemathesis_hooks"
EXAMPLES = 25


ALL_CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
    "positive_data_acceptance", "missing_required_header", "unsupported_method",
    "allow_header_conformance", "use_after_free", "ensure_resource_availability",
    "ignored_auth",
)  # fmt: skip


def schemathesis(
    url: str, keys: dict[str, str], folder: Path, *options: str, checks: tuple[str, ...]
) -> str:
    """Run schemathesis with ``checks`` on the operations ``options`` select; its report."""
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
            f"{url}/openapi.json", "--checks", ",".join(checks), "--max-examples",
            str(EXAMPLES), "--no-color", "--workers", "1", *options,
        ],
        # Run where its cache of found failures (.schemathesis/) stays out of the checkout.
        env={**os.environ, **keys, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(REPO)},
        cwd=folder, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = run.stdout + run.stderr
    (folder / "schemathesis-report.txt").write_text(report)  # whole, where pytest keeps tmp
    assert run.returncode == 0, report[-8000:]
    for warning in ("unresolv", "Undocumented", "Server error"):
        assert warning not in report, report[-8000:]
    return report


def test_the_engine_answers_exactly_as_its_openapi_document_says(
    served: Served, tmp_path: Path
) -> None:
    report = schemathesis(
        served.url, served.keys, tmp_path, "--exclude-path-regex", "#", checks=("all",)
    )
    paths = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    operations = sum(len(methods) for path, methods in paths.items() if "#" not in path)
    assert f"Tested: {operations}" in report, report[-3000:]


def test_each_command_answers_as_its_operation_says(served: Served, tmp_path: Path) -> None:
    # A command's path is /api.php with a fragment: all are one resource, which answers
    # GET and POST; the test above checks its methods and Allow on /api.php's operations.
    # A command's refusals travel with 200: the hooks' check reads Success instead of the
    # status that negative_data_rejection reads.
    shared = ("allow_header_conformance", "unsupported_method", "negative_data_rejection")
    report = schemathesis(
        served.url, served.keys, tmp_path, "--include-path-regex", "#",
        checks=(
            *(check for check in ALL_CHECKS if check not in shared),
            "command_refuses_missing_required_parameters",
        ),
    )  # fmt: skip
    paths = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    commands = [path for path in paths if "#" in path]
    assert len(commands) > 60
    assert f"Tested: {len(commands)}" in report, report[-3000:]
