"""Reading: ndjson files into batches of good, selected drawings, and every bad line.

`ReadDrawings` reads each input file, local or gs://, plain or gzipped, in batches of
`BATCH_LINES` lines: elements are batches, never single drawings, so Beam's per-element
cost is paid once per ~1,000 drawings. `read_batches` does the reading, a plain generator
over an open file; the DoFn only counts what it finds and hands it on. A bad line becomes
a JSON record for errors/ (`error_record`), and a file that is empty or damaged one of its
own (`file_errors`): nothing read is lost.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import io
import logging
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline import progress
from pipeline import stats as stats_lib
from pipeline.config import PipelineConfig
from pipeline.inputs import InputFile
from quickdraw.bad_lines import REASONS, BadLine
from quickdraw.batch import DrawingBatch
from quickdraw.drawings import GZIP_DAMAGE, convert_lines

BATCH_LINES = 1000
ERROR_TEXT_CHARS = 1000
BAD_LINES = "bad_lines"  # the tag of the errors/ records


# --- Lines of a file ----------------------------------------------------------------------


@contextlib.contextmanager
def open_ndjson(path: str):
    """A file of lines, local or gs://, read through gzip when its name ends in .gz."""
    # Opened as bytes: Beam's own decompressing reader reads a line without a size limit
    # (and is no file object to buffer), where gzip's keeps `read_lines`' limit.
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        stream = io.BufferedReader(raw, buffer_size=1 << 20) if not _buffered(raw) else raw
        if path.endswith(".gz"):
            stream = gzip.GzipFile(fileobj=stream, mode="rb")
        yield stream


def _buffered(stream) -> bool:
    return isinstance(stream, io.BufferedIOBase) and hasattr(stream, "peek")


def _line_limit(max_points: int) -> int:
    """Bytes a line may take: generous for --max_points points, so only runaways hit it."""
    return 64 * max_points + 65_536


def read_lines(stream, count: int, max_points: int):
    """Up to `count` lines, whether each was over the size limit (and cut to its start), and
    the error that stopped a damaged .gz file, if one did: (lines, too_long, damage)."""
    limit = _line_limit(max_points)
    lines, too_long = [], []
    try:
        for _ in range(count):
            line = stream.readline(limit)
            if not line:
                break
            flagged = len(line) >= limit and not line.endswith(b"\n")
            if flagged:
                # Skip the rest of the runaway line without holding it in memory.
                rest = stream.readline(limit)
                while rest and not rest.endswith(b"\n"):
                    rest = stream.readline(limit)
                line = line[: ERROR_TEXT_CHARS * 4]
            lines.append(line)
            too_long.append(flagged)
    except GZIP_DAMAGE as error:
        return lines, too_long, error
    return lines, too_long, None


# --- Batches of drawings ------------------------------------------------------------------


class ReadBatch(NamedTuple):
    """What one read of up to BATCH_LINES lines of a file found."""

    lines_read: int
    bad: list[BadLine]  # lines over the size limit first, then the others, in line order
    drawings: DrawingBatch  # the good drawings selected, in line order
    not_selected: dict[str, int]  # the other good ones, by reason (stats.NOT_SELECTED_REASONS)
    damage: Exception | None  # what stopped a damaged .gz file: then the file's last batch

    def counts(self) -> dict:
        """This batch's part of stats.json."""
        return {
            "lines_read": self.lines_read,
            "bad_lines": dict(collections.Counter(bad.reason for bad in self.bad)),
            "not_selected": self.not_selected,
        }


def read_batches(stream, config: PipelineConfig, category: str | None) -> Iterator[ReadBatch]:
    """The batches of an open file of lines, in order, until its end or its damage.

    With `--split first` and a file named after its `category` (which holds that category
    only), reading stops once the category has its quota.
    """
    quota = config.per_class_quota if config.split == "first" else None
    stops_at_quota = quota is not None and category is not None
    wanted = set(config.categories) if config.categories else None
    taken = collections.Counter()  # selected drawings of each word in this file
    lines_before = 0  # lines of the file before this batch
    while True:
        # Near the quota, read only about as many lines as still needed.
        count = min(BATCH_LINES, quota - taken[category]) if stops_at_quota else BATCH_LINES
        lines, too_long, damage = read_lines(stream, count, config.max_points)
        if not lines and damage is None:
            return
        numbered = []
        bad = []
        for number, (line, is_too_long) in enumerate(zip(lines, too_long), lines_before + 1):
            if is_too_long:
                bad.append(BadLine(number, "line_too_long", line))
            else:
                numbered.append((number, line))
        lines_before += len(lines)
        drawings, converted_bad = convert_lines(numbered, config.max_points, config.ink_format)
        keep, not_selected = select(drawings, wanted, config.recognized_only, quota, taken)
        yield ReadBatch(
            len(lines), bad + converted_bad, drawings.select(keep), not_selected, damage
        )
        if damage or (stops_at_quota and taken[category] >= quota):
            return


def select(
    drawings: DrawingBatch,
    wanted: set[str] | None,
    recognized_only: bool,
    quota: int | None,
    taken: collections.Counter,
) -> tuple[np.ndarray, dict[str, int]]:
    """Which drawings to keep, and how many of the others were left out for each reason.

    `wanted` is the set of words to keep (None: all), `quota` how many of each word to
    keep (None: all), and `taken` how many of each word were kept before: it is updated.
    """
    keep = np.ones(len(drawings), dtype=bool)
    not_selected = collections.Counter()
    for index, word in enumerate(drawings.words):
        if wanted is not None and word not in wanted:
            reason = "other_category"
        elif recognized_only and not drawings.recognized[index]:
            reason = "unrecognized"
        elif quota is not None and taken[word] >= quota:
            reason = "over_quota"
        else:
            taken[word] += 1
            continue
        keep[index] = False
        not_selected[reason] += 1
    return keep, dict(not_selected)


# --- Records for errors/ ------------------------------------------------------------------


def error_record(path: str, bad: BadLine) -> str:
    """The errors/ record of a bad line: where it is, why it is bad, and its start."""
    line = bad.text.decode("utf-8", errors="replace")[:ERROR_TEXT_CHARS]
    return _record(path, bad.line_number, bad.reason, REASONS.get(bad.reason, bad.reason), line)


def file_errors(path: str, line_count: int, damage: Exception | None) -> tuple[dict, list[str]]:
    """The counts and errors/ records of a file that is damaged or empty (none otherwise).

    A damaged .gz file keeps the lines before the damage; the rest cannot be read.
    """
    if damage:
        logging.warning("%s is damaged after line %d: %s", path, line_count, damage)
        description = f"the file cannot be read after line {line_count}: {damage}"
        return {"damaged_files": [path]}, [_record(path, None, "damaged_file", description, "")]
    if line_count == 0:
        logging.warning("%s is empty", path)
        description = "the file holds no line"
        return {"empty_files": [path]}, [_record(path, None, "empty_file", description, "")]
    return {}, []


def _record(path: str, line_number: int | None, reason: str, description: str, line: str) -> str:
    record = {
        "source": path,
        "line_number": line_number,
        "reason": reason,
        "description": description,
        "line": line,
    }
    return orjson.dumps(record).decode()


# --- Beam ---------------------------------------------------------------------------------


class ReadFileFn(beam.DoFn):
    """Reads one ndjson file (`read_batches`) and counts what it finds.

    Outputs (file index, DrawingBatch) on the main output, each bad line as a JSON error
    record on `bad_lines`, and the file's counts on `stats`. With a `progress_dir` it
    also counts its work there (`pipeline.progress`).
    """

    def __init__(self, config: PipelineConfig, progress_dir: str | None = None):
        self._config = config
        self._progress_dir = progress_dir
        self._lines_read = Metrics.counter(stats_lib.COUNTERS, "lines_read")
        self._bad_lines = Metrics.counter(stats_lib.COUNTERS, "bad_lines")

    def process(self, input_file: InputFile):
        path = input_file.path
        counts = {"files_read": 1, "lines_read": 0, "bad_lines": {}, "not_selected": {}}
        damage = None
        with open_ndjson(path) as stream:
            for batch in read_batches(stream, self._config, input_file.category):
                self._count(batch)
                stats_lib.merge(counts, batch.counts())
                for bad in batch.bad:
                    yield beam.pvalue.TaggedOutput(BAD_LINES, error_record(path, bad))
                if len(batch.drawings):
                    yield input_file.index, batch.drawings
                damage = batch.damage
        file_counts, records = file_errors(path, counts["lines_read"], damage)
        stats_lib.merge(counts, file_counts)
        for record in records:
            yield beam.pvalue.TaggedOutput(BAD_LINES, record)
        progress.add(self._progress_dir, files_read=1)
        yield beam.pvalue.TaggedOutput(stats_lib.STATS, counts)

    def _count(self, batch: ReadBatch) -> None:
        self._lines_read.inc(batch.lines_read)
        for bad in batch.bad:
            self._bad_lines.inc()
            Metrics.counter(stats_lib.COUNTERS, f"bad_lines_{bad.reason}").inc()
        progress.add(
            self._progress_dir,
            lines_read=batch.lines_read,
            bad_lines=len(batch.bad),
            drawings_selected=len(batch.drawings),
        )

    def finish_bundle(self):
        progress.flush(self._progress_dir)


class ReadDrawings(beam.PTransform):
    """Input files -> (file index, DrawingBatch), plus `bad_lines` and `stats` outputs."""

    def __init__(self, config: PipelineConfig, progress_dir: str | None = None):
        super().__init__()
        self._config = config
        self._progress_dir = progress_dir

    def expand(self, files):
        read = ReadFileFn(self._config, self._progress_dir)
        return files | "ReadFiles" >> beam.ParDo(read).with_outputs(
            BAD_LINES, stats_lib.STATS, main="drawings"
        )
