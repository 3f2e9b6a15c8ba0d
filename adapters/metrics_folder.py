"""Where the processes of one installation count their metrics (see adapters/metrics.py).

A module of its own, without prometheus-client: the folder must be chosen before that
library is first imported in a process, which reads it once.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_folder(default: Path) -> Path:
    """The folder this installation's processes count in, emptied (counts start with the
    run), and set for this process and the children it starts."""
    folder = Path(os.environ.get(MULTIPROCESS_VARIABLE) or default)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    os.environ[MULTIPROCESS_VARIABLE] = str(folder)
    return folder
