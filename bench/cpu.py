"""CPU time per stage: each engine thread carries its name to the kernel
(``adapters.thread_names``), so ``/proc/<pid>/task/*/stat`` tells the CPU each stage spent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_POOL_SUFFIX = re.compile(r"_\d+$")  # ThreadPoolExecutor numbers its threads name_0, name_1


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid`` by name; threads of one pool
    together. Threads that have ended are not counted (the engine's run for its life)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # ended while we looked
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        key = _POOL_SUFFIX.sub("", name)
        found[key] = found.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return found


class StageClock:
    """CPU per thread name of several processes, between ``start`` and ``stop``."""

    def __init__(self, processes: dict[str, int]) -> None:
        self._processes = processes  # label → pid
        self._before: dict[str, dict[str, float]] = {}
        self.spent: dict[str, dict[str, float]] = {}

    def start(self) -> None:
        self._before = {label: thread_cpu(pid) for label, pid in self._processes.items()}

    def stop(self) -> None:
        for label, pid in self._processes.items():
            before = self._before[label]
            spent = {k: v - before.get(k, 0.0) for k, v in thread_cpu(pid).items()}
            self.spent[label] = {k: v for k, v in spent.items() if v > 0}

    def rows(self, prefix: str, messages: int) -> list[tuple[str, str, str]]:
        """One row per stage that spent at least 1 % of the total, busiest first, in CPU
        milliseconds per message; then the total."""
        total = sum(sum(spent.values()) for spent in self.spent.values())
        rows: list[tuple[str, str, str]] = []
        stages = [
            (seconds, label, name)
            for label, spent in self.spent.items()
            for name, seconds in spent.items()
        ]
        for seconds, label, name in sorted(stages, reverse=True):
            if seconds < total / 100:
                continue
            rows.append((
                f"{prefix}: CPU ms/message, {label} process, {name}",
                f"{seconds * 1000 / messages:.3f}",
                f"{seconds / total:.0%} of all",
            ))  # fmt: skip
        rows.append((
            f"{prefix}: CPU ms/message, all processes", f"{total * 1000 / messages:.3f}",
            "target <= 1.3",
        ))  # fmt: skip
        return rows
