"""The pipeline's Beam transforms: thin adapters over `drawings`, `schema` and `stats`.

Elements are batches of drawings, never single drawings, so Beam's per-element cost is
paid once per ~1,000 drawings. The shuffle is deterministic: each drawing's shard and its
place in the shard come from a seeded hash of its key_id, and each shard is sorted before
it is written, so the same input and seed give byte-identical files on any runner.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import posixpath

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline import chunks, schema
from pipeline import ink as ink_math
from pipeline import stats as stats_lib
from pipeline.config import PipelineConfig
from pipeline.drawings import REASONS, BadLine, DrawingBatch, convert_lines
from pipeline.inputs import InputFile

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
    """

    def __init__(self, config: PipelineConfig):
        self._config = config
        self._lines_read = Metrics.counter(COUNTERS, "lines_read")
        self._bad_lines = Metrics.counter(COUNTERS, "bad_lines")

    def process(self, input_file: InputFile):
        config = self._config
        quota = config.per_class_quota if config.split == "first" else None
        wanted = set(config.categories) if config.categories else None
        taken = collections.Counter()  # selected drawings of each word in this file
        counts = {"files_read": 1, "lines_read": 0, "bad_lines": {}, "not_selected": {}}
        line_number = 0
        with FileSystems.open(input_file.path) as raw:
            stream = io.BufferedReader(raw, buffer_size=1 << 20) if not _buffered(raw) else raw
            while True:
                # Near the quota, read only about as many lines as still needed.
                wanted_lines = BATCH_LINES
                if quota is not None and input_file.category is not None:
                    wanted_lines = min(BATCH_LINES, quota - taken[input_file.category])
                lines, too_long = _read_lines(stream, wanted_lines, config.max_points)
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
                batch, converted_bad = convert_lines(numbered, config.max_points)
                bad.extend(converted_bad)
                counts["lines_read"] += len(lines)
                self._lines_read.inc(len(lines))
                for item in bad:
                    stats_lib.merge(counts, {"bad_lines": {item.reason: 1}})
                    self._bad_lines.inc()
                    Metrics.counter(COUNTERS, f"bad_lines_{item.reason}").inc()
                    yield beam.pvalue.TaggedOutput(BAD_LINES, _error_record(input_file.path, item))
                keep = _select(batch, wanted, config.recognized_only, quota, taken, counts)
                if keep.any():
                    yield input_file.index, batch.select(keep)
                if (
                    quota is not None
                    and input_file.category is not None
                    and taken[input_file.category] >= quota
                ):
                    break
        if line_number == 0:
            counts["empty_files"] = [input_file.path]
            logging.warning("%s is empty", input_file.path)
            yield beam.pvalue.TaggedOutput(
                BAD_LINES,
                orjson.dumps(
                    {
                        "source": input_file.path,
                        "line_number": None,
                        "reason": "empty_file",
                        "description": "the file holds no line",
                        "line": "",
                    }
                ).decode(),
            )
        yield beam.pvalue.TaggedOutput(STATS, counts)


def _buffered(stream) -> bool:
    return isinstance(stream, io.BufferedIOBase) and hasattr(stream, "peek")


def _read_lines(stream, count: int, max_points: int) -> tuple[list[bytes], list[bool]]:
    """Up to `count` lines; a line over the size limit is cut to its start and flagged."""
    limit = _line_limit(max_points)
    lines, too_long = [], []
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
    return lines, too_long


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

    def __init__(self, config: PipelineConfig):
        super().__init__()
        self._config = config

    def expand(self, files):
        return files | "ReadFiles" >> beam.ParDo(ReadFileFn(self._config)).with_outputs(
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


class ToShardsFn(beam.DoFn):
    """Assigns each drawing a split and a shard, and packs each shard's drawings.

    Outputs ((split, shard), packed chunk) per batch and shard (`pipeline.chunks`), and
    the counts of what it kept on `stats`.
    """

    def __init__(self, config: PipelineConfig):
        self._config = config
        self._seed_key = config.seed.to_bytes(8, "little", signed=False)

    def _is_eval_by_hash(self, key_id: bytes) -> bool:
        # Independent of --seed, so that every run and every seed splits alike.
        digest = hashlib.blake2b(key_id, digest_size=8, person=b"quickdraw-eval").digest()
        return int.from_bytes(digest, "little") < self._config.eval_fraction * 2**64

    def process(self, element, cutoffs=None):
        file_index, batch = element
        config = self._config
        members = collections.defaultdict(list)  # (split, shard) -> [(drawing, sort key)]
        written = collections.defaultdict(collections.Counter)
        over_quota = 0
        for i, (word, key_id) in enumerate(zip(batch.words, batch.key_ids)):
            key_bytes = key_id.encode()
            if cutoffs is None:
                split = "eval" if self._is_eval_by_hash(key_bytes) else "train"
            else:
                train_last, last = cutoffs[word]
                position = (file_index, int(batch.line_numbers[i]))
                if train_last is not None and position <= train_last:
                    split = "train"
                elif position <= last:
                    split = "eval"
                else:
                    over_quota += 1
                    continue
            sort_key = int.from_bytes(
                hashlib.blake2b(key_bytes, digest_size=8, key=self._seed_key).digest(), "little"
            )
            members[(split, sort_key % config.num_shards)].append((i, sort_key))
            written[word][split] += 1

        dtype = chunks.coordinate_dtype(batch.points)
        owner = np.repeat(np.arange(len(batch)), batch.counts)  # (points,) drawing of each
        kept = np.zeros(len(batch), dtype=bool)
        for shard_key, pairs in members.items():
            drawings = [i for i, _ in pairs]
            kept[drawings] = True
            in_chunk = np.zeros(len(batch), dtype=bool)
            in_chunk[drawings] = True
            yield (
                shard_key,
                chunks.pack(
                    [key for _, key in pairs],
                    [batch.words[i] for i in drawings],
                    [batch.key_ids[i] for i in drawings],
                    batch.counts[drawings],
                    # Drawings keep their order in the batch, and `drawings` is ascending.
                    batch.points[in_chunk[owner]],
                    dtype,
                ),
            )
        counts = {"written": {word: dict(c) for word, c in written.items()}}
        counts["lengths"] = stats_lib.length_histogram(batch.lengths[kept])
        if over_quota:
            counts["not_selected"] = {"over_quota": over_quota}
        yield beam.pvalue.TaggedOutput(STATS, counts)


def encoded_records(chunk: tuple):
    """(sort key, encoded features, word) of each drawing of a packed chunk."""
    sort_keys, words, key_ids, counts, points = chunks.unpack(chunk)
    ink = ink_math.deltas_batch(points, counts)  # (sum(counts - 1), 3)
    start = 0
    for sort_key, word, key_id, rows in zip(sort_keys, words, key_ids, (counts - 1).tolist()):
        features = schema.encode_drawing_features(ink[start : start + rows], key_id.encode())
        start += rows
        yield sort_key, features, word


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

    def __init__(self, config: PipelineConfig):
        self._config = config
        self._written = {split: Metrics.counter(COUNTERS, f"written_{split}") for split in SPLITS}

    def process(self, element, classes):
        (split, shard), packed = element
        class_index = {name: index for index, name in enumerate(classes)}
        # Sorted by the seeded key; the encoded bytes break ties of a repeated key_id.
        records = sorted(record for chunk in packed for record in encoded_records(chunk))
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
        logging.info("wrote %s (%d drawings)", path, len(records))
        yield path


def _every_shard(config: PipelineConfig):
    """An empty chunk for every (split, shard), so that every shard file is written."""
    shards = range(config.num_shards)
    return [((split, shard), chunks.EMPTY) for split in SPLITS for shard in shards]


class WriteShards(beam.PTransform):
    """((split, shard), chunk) -> TFRecord files, one per split and shard."""

    def __init__(self, config: PipelineConfig, classes):
        super().__init__()
        self._config = config
        self._classes = classes

    def expand(self, shard_chunks):
        every_shard = shard_chunks.pipeline | "EveryShard" >> beam.Create(
            _every_shard(self._config)
        )
        return (
            (shard_chunks, every_shard)
            | "AllChunks" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(WriteShardFn(self._config), beam.pvalue.AsSingleton(self._classes))
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
