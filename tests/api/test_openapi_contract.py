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

from tests.api.conftest import Served

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = 25


def test_the_engine_answers_exactly_as_its_openapi_document_says(
    served: Served, tmp_path: Path
) -> None:
    url, keys = served.url, served.keys
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
            f"{url}/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
            "--no-color", "--workers", "1",
        ],
        # Run where its cache of found failures (.schemathesis/) stays out of the checkout.
        env={**os.environ, **keys}, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-8000:]
    for warning in ("unresolv", "Undocumented", "Server error"):
        assert warning not in report, report[-8000:]
