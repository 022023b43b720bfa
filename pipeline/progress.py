"""Progress lines while a local run works: files and lines read, bad lines, drawings
selected and written, and the rate.

Beam's counters reach the caller only once the pipeline has finished (the FnApiRunner hands
out no live metrics), and with `--direct_running_mode=multi_processing` the transforms run in
worker processes that share no memory with the one that logs. So each process that runs the
transforms keeps its own counts and writes them, now and then and at the end of each bundle,
to a small JSON file of its own in a folder the run made (`add`, `flush`); a thread of the
main process (`Reporter`) adds up the files every `--progress_every` seconds and logs one
line. In-process and multi-process runs work the same way; a run on Dataflow passes no
folder, and the transforms count nothing here (Dataflow's own page shows the counters).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

FIELDS = ("files_read", "lines_read", "bad_lines", "drawings_selected", "drawings_written")
WRITE_EVERY_SECONDS = 1.0

_lock = threading.Lock()
_counts: dict[str, dict[str, int]] = {}  # by progress folder: this process's counts
_written_at: dict[str, float] = {}


def add(directory: str | None, **counts: int) -> None:
    """Adds to this process's counts for the run whose folder is `directory` (None: a run
    that reports no progress), and writes them when the last write is a second old."""
    if directory is None:
        return
    with _lock:
        totals = _counts.setdefault(directory, dict.fromkeys(FIELDS, 0))
        for name, value in counts.items():
            totals[name] += int(value)
        due = time.monotonic() - _written_at.get(directory, 0.0) >= WRITE_EVERY_SECONDS
    if due:
        flush(directory)


def flush(directory: str | None) -> None:
    """Writes this process's counts to its file in `directory`, whole (write aside, rename)."""
    if directory is None:
        return
    with _lock:
        totals = dict(_counts.get(directory) or dict.fromkeys(FIELDS, 0))
        _written_at[directory] = time.monotonic()
        path = os.path.join(directory, f"{os.getpid()}.json")
        with open(path + ".partial", "w") as file:
            json.dump(totals, file)
        os.replace(path + ".partial", path)


def total(directory: str) -> dict[str, int]:
    """The counts of every process of the run, added up."""
    result = dict.fromkeys(FIELDS, 0)
    for name in os.listdir(directory):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name)) as file:
                counts = json.load(file)
        except (OSError, ValueError):
            continue  # gone, or not yet written whole: the next line counts it
        for field in FIELDS:
            result[field] += int(counts.get(field, 0))
    return result


def line(counts: dict[str, int], files: int, seconds: float) -> str:
    """One progress line, e.g. `12 of 26 files read, 31,200 lines (2,950 lines/s), 2 bad;
    3,900 drawings selected, 1,200 written; 10 s`."""
    rate = counts["lines_read"] / seconds if seconds > 0 else 0.0
    return (
        f"progress: {counts['files_read']} of {files} files read, "
        f"{counts['lines_read']:,} lines ({rate:,.0f} lines/s), {counts['bad_lines']:,} bad; "
        f"{counts['drawings_selected']:,} drawings selected, "
        f"{counts['drawings_written']:,} written; {seconds:.0f} s"
    )


class Reporter:
    """Logs a progress line every `interval` seconds while the block runs, and one with the
    final counts when it ends.

    with Reporter(directory, files=26, interval=10.0):
        pipeline.run().wait_until_finish()
    """

    def __init__(self, directory: str, files: int, interval: float):
        if interval <= 0:
            raise ValueError(f"the progress interval must be > 0 seconds, got {interval}")
        self.directory = directory
        self.files = files
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline-progress", daemon=True)
        self._started = 0.0

    def __enter__(self) -> Reporter:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._log()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._log()

    def _log(self) -> None:
        seconds = time.monotonic() - self._started
        logging.info(line(total(self.directory), self.files, seconds))
