"""The folder of serve's metrics: a serve starting clears the counts of processes no
longer running and leaves those of running ones (another serve of the installation)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.metrics_folder import MULTIPROCESS_VARIABLE, prepare_multiprocess_folder

pytestmark = pytest.mark.unit


def test_counts_of_ended_processes_go_and_of_running_ones_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "metrics"
    # Set through monkeypatch, which takes it away again: the function sets it for the
    # process, and a later test in this worker must not count in this folder.
    monkeypatch.setenv(MULTIPROCESS_VARIABLE, str(folder))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    folder.mkdir()
    (folder / f"counter_{ended.stdout.strip()}.db").write_bytes(b"old")
    (folder / f"counter_{os.getpid()}.db").write_bytes(b"mine")
    (folder / "notes.txt").write_text("not a count")
    assert prepare_multiprocess_folder(folder) == folder
    assert sorted(p.name for p in folder.iterdir()) == [f"counter_{os.getpid()}.db", "notes.txt"]
    assert os.environ[MULTIPROCESS_VARIABLE] == str(folder)
