"""Running a command and measuring it: wall time, CPU time and the peak memory of its
process tree."""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import subprocess
import time
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_bytes: int
    cpu_seconds: float  # user + system time of the process and the descendants it waited for


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            resident_pages = int(Path(f"/proc/{current}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident_pages * PAGE_SIZE
        pending.extend(_children(current))
    return total


def run(command: list[str], env: dict | None = None, poll_seconds: float = 0.05) -> Measurement:
    """Runs `command` to completion; raises if it fails. Polls the tree's memory meanwhile."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_rss(process.pid))
        time.sleep(poll_seconds)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stderr = process.stderr.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-3000:]}")
    return Measurement(seconds, peak, cpu_seconds)


def marginal_rate(
    small: int, large: int, small_seconds: list[float], large_seconds: list[float]
) -> float:
    """Items per second between two input sizes, from the medians: start-up cancels out."""
    extra = statistics.median(large_seconds) - statistics.median(small_seconds)
    return (large - small) / extra if extra > 0 else float("nan")
