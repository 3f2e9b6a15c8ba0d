"""Threads that carry their name down to the operating system.

Python names its threads for itself only; Linux knows each by the process's name. Given to
the kernel too (``prctl(PR_SET_NAME)``, 15 bytes), a thread's CPU time can be read per
name from ``/proc/<pid>/task/*/stat``, and ``top -H`` and ``py-spy`` show which part of
the engine is busy: the bench reports CPU per message for each stage from it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_PR_SET_NAME = 15
_libc: Any = None
if sys.platform == "linux":
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        _libc = None


def name_os_thread(name: str) -> None:
    """Give the calling thread's name to the kernel (where it has such names)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode("ascii", "replace")[:15]), 0, 0, 0)


class NamedThread(threading.Thread):
    """A thread the kernel knows by its Python name."""

    def run(self) -> None:
        name_os_thread(self.name)
        super().run()


def named_executor(name: str, max_workers: int | None = None) -> ThreadPoolExecutor:
    """A thread pool whose threads the kernel knows as ``name``."""
    return ThreadPoolExecutor(
        max_workers=max_workers,
        thread_name_prefix=name,
        initializer=name_os_thread,
        initargs=(name,),
    )
