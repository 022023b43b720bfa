"""The pipeline's Beam transforms: thin adapters over `drawings`, `schema` and `stats`.

Elements are batches of drawings, never single drawings, so Beam's per-element cost is
paid once per ~1,000 drawings. The shuffle is deterministic: each drawing's shard and its
place in the shard come from a seeded hash of its key_id, and each shard is sorted before
it is written, so the same input and seed give byte-identical files on any runner.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import hashlib
import io
import logging
import math
import posixpath

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from pipeline import chunks, progress
from pipeline import stats as stats_lib
from pipeline.config import PipelineConfig
from pipeline.inputs import InputFile
from quickdraw import ink as ink_math
from quickdraw import schema
from quickdraw.drawings import (
    GZIP_DAMAGE,
    REASONS,
    BadLine,
    DrawingBatch,
    convert_lines,
    without_cyclic_gc,
)

BATCH_LINES = 1000
ERROR_TEXT_CHARS = 1000
SPLITS = ("train", "eval")
COUNTERS = "quickdraw"

# Tags of the side outputs.
BAD_LINES = "bad_lines"
STATS = "stats"


def _line_limit(max_points: int) -> int:
    """Bytes a line may take: generous for --max_points points, so only runaways hit it."""
    return 64 * max_points + 65_536


def _error_record(path: str, bad: BadLine) -> str:
    return orjson.dumps(
        {
            "source": path,
            "line_number": bad.line_number,
            "reason": bad.reason,
            "description": REASONS.get(bad.reason, bad.reason),
            "line": bad.text.decode("utf-8", errors="replace")[:ERROR_TEXT_CHARS],
        }
    ).decode()


class ReadFileFn(beam.DoFn):
    """Reads one ndjson file into batches of good, selected drawings.

    Outputs (file index, DrawingBatch) on the main output, each bad line as a JSON error
    record on `bad_lines`, and the file's counts on `stats`. With `--split=first` and a
    file named after its category, reading stops once the category has its quota.
    With a `progress_dir` it also counts its work there (`pipeline.progress`).
    """

    def __init__(self, config: PipelineConfig, progress_dir: str | None = None):
        self._config = config
        self._progress_dir = progress_dir
        self._lines_read = Metrics.counter(COUNTERS, "lines_read")
        self._bad_lines = Metrics.counter(COUNTERS, "bad_lines")

    def process(self, input_file: InputFile):
        config = self._config
        quota = config.per_class_quota if config.split == "first" else None
        wanted = set(config.categories) if config.categories else None
        taken = collections.Counter()  # selected drawings of each word in this file
        counts = {"files_read": 1, "lines_read": 0, "bad_lines": {}, "not_selected": {}}
        line_number = 0
        damage = None  # what stopped the reading of a damaged .gz file
        with open_ndjson(input_file.path) as stream:
            while True:
                # Near the quota, read only about as many lines as still needed.
                wanted_lines = BATCH_LINES
                if quota is not None and input_file.category is not None:
                    wanted_lines = min(BATCH_LINES, quota - taken[input_file.category])
                lines, too_long, damage = read_lines(stream, wanted_lines, config.max_points)
                if not lines and not too_long:
                    break
                numbered = []
                bad = []
                for line, is_too_long in zip(lines, too_long):
                    line_number += 1
                    if is_too_long:
                        bad.append(BadLine(line_number, "line_too_long", line))
                    else:
                        numbered.append((line_number, line))
                batch, converted_bad = convert_lines(numbered, config.max_points, config.ink_format)
                bad.extend(converted_bad)
                counts["lines_read"] += len(lines)
                self._lines_read.inc(len(lines))
                for item in bad:
                    stats_lib.merge(counts, {"bad_lines": {item.reason: 1}})
                    self._bad_lines.inc()
                    Metrics.counter(COUNTERS, f"bad_lines_{item.reason}").inc()
                    yield beam.pvalue.TaggedOutput(BAD_LINES, _error_record(input_file.path, item))
                keep = _select(batch, wanted, config.recognized_only, quota, taken, counts)
                progress.add(
                    self._progress_dir,
                    lines_read=len(lines),
                    bad_lines=len(bad),
                    drawings_selected=int(keep.sum()),
                )
                if keep.any():
                    yield input_file.index, batch.select(keep)
                if damage or (
                    quota is not None
                    and input_file.category is not None
                    and taken[input_file.category] >= quota
                ):
                    break
        if damage:
            # The lines before the damage are kept; the rest of the file cannot be read.
            counts["damaged_files"] = [input_file.path]
            logging.warning("%s is damaged after line %d: %s", input_file.path, line_number, damage)
            description = f"the file cannot be read after line {line_number}: {damage}"
            yield beam.pvalue.TaggedOutput(
                BAD_LINES, _file_error_record(input_file.path, "damaged_file", description)
            )
        elif line_number == 0:
            counts["empty_files"] = [input_file.path]
            logging.warning("%s is empty", input_file.path)
            yield beam.pvalue.TaggedOutput(
                BAD_LINES,
                _file_error_record(input_file.path, "empty_file", "the file holds no line"),
            )
        progress.add(self._progress_dir, files_read=1)
        yield beam.pvalue.TaggedOutput(STATS, counts)

    def finish_bundle(self):
        progress.flush(self._progress_dir)


def _file_error_record(path: str, reason: str, description: str) -> str:
    """The errors/ record of a whole file, which has no line of its own."""
    record = {
        "source": path,
        "line_number": None,
        "reason": reason,
        "description": description,
        "line": "",
    }
    return orjson.dumps(record).decode()


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


def _select(batch: DrawingBatch, wanted, recognized_only, quota, taken, counts) -> np.ndarray:
    """Which drawings of a batch to keep; counts the others in `counts['not_selected']`."""
    keep = np.ones(len(batch), dtype=bool)
    not_selected = collections.Counter()
    for i, word in enumerate(batch.words):
        if wanted is not None and word not in wanted:
            reason = "other_category"
        elif recognized_only and not batch.recognized[i]:
            reason = "unrecognized"
        elif quota is not None and taken[word] >= quota:
            reason = "over_quota"
        else:
            taken[word] += 1
            continue
        keep[i] = False
        not_selected[reason] += 1
    stats_lib.merge(counts, {"not_selected": dict(not_selected)})
    return keep


class ReadDrawings(beam.PTransform):
    """Input files -> (file index, DrawingBatch), plus `bad_lines` and `stats` outputs."""

    def __init__(self, config: PipelineConfig, progress_dir: str | None = None):
        super().__init__()
        self._config = config
        self._progress_dir = progress_dir

    def expand(self, files):
        read = ReadFileFn(self._config, self._progress_dir)
        return files | "ReadFiles" >> beam.ParDo(read).with_outputs(
            BAD_LINES, STATS, main="drawings"
        )


# --- Splits and shards -------------------------------------------------------------------


class FirstPositionsFn(beam.CombineFn):
    """Keeps the `limit` smallest (file index, line number) positions of a category."""

    def __init__(self, limit: int):
        self._limit = limit

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, positions):
        return sorted(accumulator + list(positions))[: self._limit]

    def merge_accumulators(self, accumulators):
        return sorted(p for accumulator in accumulators for p in accumulator)[: self._limit]

    def extract_output(self, accumulator):
        return accumulator


def _positions_by_category(element):
    file_index, batch = element
    by_word = collections.defaultdict(list)
    for word, line_number in zip(batch.words, batch.line_numbers.tolist()):
        by_word[word].append((file_index, line_number))
    return list(by_word.items())


def _cutoffs(positions: list, train_per_class: int) -> tuple:
    """(last train position or None, last selected position) of a category."""
    train_last = positions[min(train_per_class, len(positions)) - 1] if train_per_class else None
    return train_last, positions[-1]


_EVAL_HASH_PERSON = b"quickdraw-eval"
_UINT64 = (1 << 64) - 1


def eval_hashes(key_ids: list[str]) -> np.ndarray:
    """(drawings,) uint64: the seed-independent hash of each key_id that picks its split."""
    digests = b"".join(
        [
            hashlib.blake2b(key_id.encode(), digest_size=8, person=_EVAL_HASH_PERSON).digest()
            for key_id in key_ids
        ]
    )
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def is_eval(hashes: np.ndarray, eval_fraction: float) -> np.ndarray:
    """(drawings,) bool: a hash below `eval_fraction` of the uint64 range goes to eval."""
    threshold = math.ceil(eval_fraction * 2**64)  # hash < fraction * 2**64, exactly
    if threshold > _UINT64:
        return np.ones(len(hashes), dtype=bool)
    return hashes < np.uint64(threshold)


def sort_keys(hashes: np.ndarray, seed: int) -> np.ndarray:
    """(drawings,) uint64: each drawing's seeded place in the shuffle (shard and order).

    SplitMix64's finalizer of the key_id hash mixed with the seed: a bijection of the
    hash for each seed, so different key_ids never collide and every seed shuffles anew.
    """
    seed_mix = np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _UINT64)
    z = hashes ^ seed_mix
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _at_or_before(file_index: int, line_numbers: np.ndarray, position) -> np.ndarray:
    """Which drawings of one file come at or before `position` (file index, line number)."""
    if position is None:
        return np.zeros(len(line_numbers), dtype=bool)
    last_file, last_line = position
    if file_index != last_file:
        return np.full(len(line_numbers), file_index < last_file)
    return line_numbers <= last_line


class ToShardsFn(beam.DoFn):
    """Assigns each drawing a split and a shard, and packs each shard's drawings.

    Outputs ((split, shard), packed chunk) (`pipeline.chunks`), and the counts of what it
    kept on `stats`. Everything after the one hash per drawing is whole-batch numpy.
    Drawings are buffered per shard across the batches of a bundle and packed together
    when the buffer holds `FLUSH_DRAWINGS` or the bundle ends: a few large chunks per
    shard instead of one small chunk per batch and shard (small input files give small
    batches), which is what the shuffle pays for per element.
    """

    FLUSH_DRAWINGS = 50_000

    def __init__(self, config: PipelineConfig):
        self._config = config

    def start_bundle(self):
        self._buffer = collections.defaultdict(list)  # (split, shard) -> [parts]
        self._buffered = 0

    def _flush(self):
        for shard_key, parts in self._buffer.items():
            points = np.concatenate([part[4] for part in parts])
            yield (
                shard_key,
                chunks.pack(
                    np.concatenate([part[0] for part in parts]),
                    [word for part in parts for word in part[1]],
                    [key_id for part in parts for key_id in part[2]],
                    np.concatenate([part[3] for part in parts]),
                    points,
                    chunks.coordinate_dtype(points),
                    raw=np.concatenate([part[5] for part in parts]),
                    times=np.concatenate([part[6] for part in parts]),
                ),
            )
        self._buffer.clear()
        self._buffered = 0

    def finish_bundle(self):
        for shard_chunk in self._flush():
            yield WindowedValue(shard_chunk, MIN_TIMESTAMP, [GlobalWindow()])

    def process(self, element, cutoffs=None):
        file_index, batch = element
        config = self._config
        hashes = eval_hashes(batch.key_ids)
        word_index = {}
        word_ids = np.array([word_index.setdefault(w, len(word_index)) for w in batch.words])
        if cutoffs is None:
            split_ids = is_eval(hashes, config.eval_fraction).astype(int)
        else:
            split_ids = np.full(len(batch), -1)  # -1: beyond the category's quota
            for word, index in word_index.items():
                train_last, last = cutoffs[word]
                of_word = word_ids == index
                in_train = _at_or_before(file_index, batch.line_numbers, train_last)
                in_quota = _at_or_before(file_index, batch.line_numbers, last)
                split_ids[of_word & in_quota] = 1
                split_ids[of_word & in_train] = 0
        kept = split_ids >= 0
        keys = sort_keys(hashes, config.seed)
        # Group by (split, shard); a stable sort keeps each group in batch order.
        groups = split_ids * config.num_shards + (keys % np.uint64(config.num_shards)).astype(int)
        order = np.flatnonzero(kept)
        order = order[np.argsort(groups[order], kind="stable")]
        counts = batch.counts[order]
        # The points of the drawings in `order`, back to back.
        ends = np.cumsum(counts)
        point_rows = np.repeat(batch.offsets[order] - (ends - counts), counts) + np.arange(
            int(ends[-1]) if len(ends) else 0
        )
        points = batch.points[point_rows]
        times = batch.times[point_rows]
        group_starts = np.flatnonzero(np.diff(groups[order], prepend=-1))
        group_ends = [*group_starts[1:].tolist(), len(order)]
        point_ends = np.concatenate([[0], ends])
        for start, end in zip(group_starts.tolist(), group_ends):
            group = int(groups[order[start]])
            members = order[start:end].tolist()
            self._buffer[(SPLITS[group // config.num_shards], group % config.num_shards)].append(
                (
                    keys[order[start:end]],
                    [batch.words[i] for i in members],
                    [batch.key_ids[i] for i in members],
                    counts[start:end],
                    points[point_ends[start] : point_ends[end]],
                    batch.raw[order[start:end]],
                    times[point_ends[start] : point_ends[end]],
                )
            )
        self._buffered += len(order)
        if self._buffered >= self.FLUSH_DRAWINGS:
            yield from self._flush()
        per_word = np.bincount(
            word_ids[kept] * 2 + split_ids[kept], minlength=2 * len(word_index)
        ).reshape(-1, 2)
        written = {
            word: {split: int(n) for split, n in zip(SPLITS, per_word[index]) if n}
            for word, index in word_index.items()
            if per_word[index].any()
        }
        raw_written = int(batch.raw[kept].sum())
        counts = {
            "written": written,
            "lengths": stats_lib.length_histogram(batch.lengths[kept]),
            "written_ink": {"raw": raw_written, "simplified": int(kept.sum()) - raw_written},
        }
        over_quota = int(len(batch) - kept.sum())
        if over_quota:
            counts["not_selected"] = {"over_quota": over_quota}
        yield beam.pvalue.TaggedOutput(STATS, counts)


def encoded_records(packed: list):
    """(sort key, encoded features, word) of each drawing of a shard's packed chunks; a
    drawing read from a raw line gets its points' times (`schema.TIME`) too."""
    parts = [chunks.unpack(chunk) for chunk in packed]
    if not parts:
        return []
    sort_keys_, words, key_ids = [], [], []
    for keys, chunk_words, chunk_key_ids, _, _ in parts:
        sort_keys_ += keys
        words += chunk_words
        key_ids += chunk_key_ids
    counts = np.concatenate([part[3] for part in parts])
    points = np.concatenate([part[4] for part in parts])
    raw_parts = [chunks.unpack_times(chunk, part[3]) for chunk, part in zip(packed, parts)]
    raw = np.concatenate([part[0] for part in raw_parts]).tolist()
    times = np.concatenate([part[1] for part in raw_parts])
    ink = ink_math.deltas_batch(points, counts)  # (sum(counts - 1), 3), once per shard
    aspects = ink_math.log_aspect_batch(points, counts).tolist()  # (drawings,)
    ends = np.cumsum(counts - 1).tolist()
    starts = [0, *ends[:-1]]
    # A drawing's points start `index` rows after its ink: each has one point more.
    point_times = [
        times[start + index : end + index + 1] if is_raw else None
        for index, (start, end, is_raw) in enumerate(zip(starts, ends, raw))
    ]
    encode = schema.encode_drawing_features
    return [
        (sort_key, encode(ink[start:end], key_id.encode(), aspect, time), word)
        for sort_key, word, key_id, start, end, aspect, time in zip(
            sort_keys_, words, key_ids, starts, ends, aspects, point_times
        )
    ]


class AssignShards(beam.PTransform):
    """(file index, DrawingBatch) -> ((split, shard), chunk), plus `stats`."""

    def __init__(self, config: PipelineConfig):
        super().__init__()
        self._config = config

    def expand(self, drawings):
        config = self._config
        to_shards = beam.ParDo(ToShardsFn(config))
        if config.split == "first":
            cutoffs = (
                drawings
                | "PositionsByCategory" >> beam.FlatMap(_positions_by_category)
                | "FirstPositions" >> beam.CombinePerKey(FirstPositionsFn(config.per_class_quota))
                | "Cutoffs" >> beam.MapTuple(lambda w, p: (w, _cutoffs(p, config.train_per_class)))
            )
            to_shards = beam.ParDo(ToShardsFn(config), cutoffs=beam.pvalue.AsDict(cutoffs))
        return drawings | "ToShards" >> to_shards.with_outputs(STATS, main="chunks")


# --- Writing -----------------------------------------------------------------------------


class WriteShardFn(beam.DoFn):
    """Sorts one shard's drawings by their seeded key and writes them as TFRecords."""

    def __init__(self, config: PipelineConfig, progress_dir: str | None = None):
        self._config = config
        self._progress_dir = progress_dir
        self._written = {split: Metrics.counter(COUNTERS, f"written_{split}") for split in SPLITS}

    def process(self, element, classes):
        (split, shard), packed = element
        class_index = {name: index for index, name in enumerate(classes)}
        # Sorted by the seeded key; the encoded bytes break ties of a repeated key_id.
        with without_cyclic_gc():  # half a million small tuples, none in a cycle
            records = sorted(encoded_records(list(packed)))
        path = posixpath.join(
            self._config.output_dir, schema.shard_name(split, shard, self._config.num_shards)
        )
        buffer = bytearray()
        with FileSystems.create(path) as handle:
            for _, payload, word in records:
                buffer += schema.frame_record(schema.with_class_index(payload, class_index[word]))
                if len(buffer) >= 1 << 23:
                    handle.write(bytes(buffer))
                    buffer.clear()
            handle.write(bytes(buffer))
        self._written[split].inc(len(records))
        progress.add(self._progress_dir, drawings_written=len(records))
        logging.info("wrote %s (%d drawings)", path, len(records))
        yield path

    def finish_bundle(self):
        progress.flush(self._progress_dir)


def _every_shard(config: PipelineConfig):
    """An empty chunk for every (split, shard), so that every shard file is written."""
    shards = range(config.num_shards)
    return [((split, shard), chunks.EMPTY) for split in SPLITS for shard in shards]


class WriteShards(beam.PTransform):
    """((split, shard), chunk) -> TFRecord files, one per split and shard."""

    def __init__(self, config: PipelineConfig, classes, progress_dir: str | None = None):
        super().__init__()
        self._config = config
        self._classes = classes
        self._progress_dir = progress_dir

    def expand(self, shard_chunks):
        every_shard = shard_chunks.pipeline | "EveryShard" >> beam.Create(
            _every_shard(self._config)
        )
        return (
            (shard_chunks, every_shard)
            | "AllChunks" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(
                WriteShardFn(self._config, self._progress_dir),
                beam.pvalue.AsSingleton(self._classes),
            )
        )


class MergeCountsFn(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, counts):
        return stats_lib.merge(accumulator, counts)

    def merge_accumulators(self, accumulators):
        total = {}
        for accumulator in accumulators:
            stats_lib.merge(total, accumulator)
        return total

    def extract_output(self, accumulator):
        return accumulator


def class_list(counts: dict, config: PipelineConfig) -> list[str]:
    """The classes, sorted: --categories when given, else every category written."""
    if config.categories:
        return sorted(config.categories)
    return sorted(
        name for name, per_split in counts.get("written", {}).items() if any(per_split.values())
    )


def write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as handle:
        handle.write(text.encode("utf-8"))


def write_outputs_metadata(counts: dict, classes: list[str], config: PipelineConfig):
    """Writes the classes files and stats.json; returns the stats."""
    for split in SPLITS:
        write_text(
            posixpath.join(config.output_dir, schema.classes_file_name(split)),
            "".join(name + "\n" for name in classes),
        )
    report = stats_lib.report(counts, config.to_json(), classes)
    write_text(
        posixpath.join(config.output_dir, "stats.json"),
        orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n",
    )
    yield report


class WriteErrors(beam.PTransform):
    """JSON error records -> errors/bad_lines-SSSSS-of-NNNNN.jsonl."""

    def __init__(self, output_dir: str):
        super().__init__()
        self._output_dir = output_dir

    def expand(self, records):
        return records | "WriteErrorRecords" >> beam.io.WriteToText(
            posixpath.join(self._output_dir, "errors", "bad_lines"),
            file_name_suffix=".jsonl",
        )
