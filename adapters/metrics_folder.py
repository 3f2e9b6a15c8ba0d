"""Where the processes of one installation count their metrics (see adapters/metrics.py).

A module of its own, without prometheus-client: the folder must be chosen before that
library is first imported in a process, which reads it once.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_PROCESS_FILE = re.compile(r"_(\d+)\.db$")  # prometheus-client's "<kind>_<pid>.db"


def prepare_multiprocess_folder(default: Path) -> Path:
    """The folder this installation's processes count in, set for this process and the
    children it starts. Files of processes no longer running are removed (counts start
    with the run); those of running ones are left: several ``serve`` processes of one
    installation may share the data folder, and each must not take the others' counts."""
    folder = Path(os.environ.get(MULTIPROCESS_VARIABLE) or default)
    folder.mkdir(parents=True, exist_ok=True)
    for file in folder.iterdir():
        found = _PROCESS_FILE.search(file.name)
        if found and not _running(int(found.group(1))):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
    os.environ[MULTIPROCESS_VARIABLE] = str(folder)
    return folder


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
