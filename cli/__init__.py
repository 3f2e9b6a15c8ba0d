"""``sendstream``, the command line: the entry point above the engine and the API it serves."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from adapters.metrics_folder import MULTIPROCESS_VARIABLE, prepare_multiprocess_folder


def _metrics_folder() -> None:
    """``sendstream serve`` counts metrics in every process it starts (adapters/metrics.py):
    the folder is chosen here, before anything imports prometheus-client. A ``serve``
    clears the counts of processes no longer running; the processes it starts
    (``--parent-pid``) inherit the folder."""
    arguments = sys.argv[1:]
    if "serve" not in arguments or "--parent-pid" in arguments:
        return
    if os.environ.get(MULTIPROCESS_VARIABLE) == "":
        return  # turned off: each process counts for itself
    data = Path(os.environ.get("SENDSTREAM_DATA_DIR") or "var")
    prepare_multiprocess_folder(data / "metrics")


_metrics_folder()
