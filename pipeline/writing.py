"""Writing: each shard's TFRecord file, the errors/ records, the classes and stats.json.

Each shard is sorted by its drawings' seeded keys before it is written, so the same input
and seed give byte-identical files on any runner. The shuffle carried absolute points
(`pipeline.chunks`); the ink is computed here, once per shard (`quickdraw.ink`), and each
drawing encoded as the tutorial's `tf.train.Example` (`quickdraw.schema`).
"""

from __future__ import annotations

import logging
import posixpath

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline import chunks, progress
from pipeline import stats as stats_lib
from pipeline.config import PipelineConfig
from quickdraw import ink as ink_math
from quickdraw import schema
from quickdraw.drawings import without_cyclic_gc
from quickdraw.splits import SPLITS

WRITE_BYTES = 1 << 23  # what a shard's writer gathers before each write


# --- Shards -------------------------------------------------------------------------------


def encoded_records(packed: list) -> list[tuple[int, bytes, str]]:
    """(sort key, encoded features, word) of each drawing of a shard's packed chunks; a
    drawing read from a raw line gets its points' times (`schema.TIME`) too."""
    if not packed:
        return []
    drawings = chunks.concatenate([chunks.unpack(chunk) for chunk in packed])
    counts, points = drawings.counts, drawings.points
    ink = ink_math.deltas_batch(points, counts)  # (sum(counts - 1), 3), once per shard
    aspects = ink_math.log_aspect_batch(points, counts).tolist()  # (drawings,)
    ends = np.cumsum(counts - 1).tolist()
    starts = [0, *ends[:-1]]
    # A drawing's points start `index` rows after its ink: each has one point more.
    point_times = [
        drawings.times[start + index : end + index + 1] if is_raw else None
        for index, (start, end, is_raw) in enumerate(zip(starts, ends, drawings.raw.tolist()))
    ]
    encode = schema.encode_drawing_features
    return [
        (sort_key, encode(ink[start:end], key_id.encode(), aspect, time), word)
        for sort_key, word, key_id, start, end, aspect, time in zip(
            drawings.sort_keys.tolist(),
            drawings.words,
            drawings.key_ids,
            starts,
            ends,
            aspects,
            point_times,
        )
    ]


def write_records(path: str, records: list, class_index: dict[str, int]) -> None:
    """Writes (sort key, encoded features, word) records as one TFRecord file, in order."""
    buffer = bytearray()
    with FileSystems.create(path) as handle:
        for _, payload, word in records:
            buffer += schema.frame_record(schema.with_class_index(payload, class_index[word]))
            if len(buffer) >= WRITE_BYTES:
                handle.write(bytes(buffer))
                buffer.clear()
        handle.write(bytes(buffer))


class WriteShardFn(beam.DoFn):
    """Sorts one shard's drawings by their seeded key and writes them as TFRecords."""

    def __init__(self, config: PipelineConfig, progress_dir: str | None = None):
        self._config = config
        self._progress_dir = progress_dir
        self._written = {
            split: Metrics.counter(stats_lib.COUNTERS, f"written_{split}") for split in SPLITS
        }

    def process(self, element, classes):
        (split, shard), packed = element
        # Sorted by the seeded key; the encoded bytes break ties of a repeated key_id.
        with without_cyclic_gc():  # half a million small tuples, none in a cycle
            records = sorted(encoded_records(list(packed)))
        shard_name = schema.shard_name(split, shard, self._config.num_shards)
        path = posixpath.join(self._config.output_dir, shard_name)
        write_records(path, records, {name: index for index, name in enumerate(classes)})
        self._written[split].inc(len(records))
        progress.add(self._progress_dir, drawings_written=len(records))
        logging.info("wrote %s (%d drawings)", path, len(records))
        yield path

    def finish_bundle(self):
        progress.flush(self._progress_dir)


def _every_shard(config: PipelineConfig) -> list:
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
        empty_shards = _every_shard(self._config)
        return (
            (shard_chunks, shard_chunks.pipeline | "EveryShard" >> beam.Create(empty_shards))
            | "AllChunks" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(
                WriteShardFn(self._config, self._progress_dir),
                beam.pvalue.AsSingleton(self._classes),
            )
        )


# --- Errors -------------------------------------------------------------------------------


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


# --- Metadata: the counts, the classes and stats.json -------------------------------------


class MergeCountsFn(beam.CombineFn):
    """Adds up the partial counts of every stage (`stats.merge`)."""

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
