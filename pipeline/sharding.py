"""Splits and shards: each batch of drawings cut into the drawings bound for each shard.

`AssignShards` gives each drawing its split and its seeded sort key (`quickdraw.splits`),
whose remainder picks its shard, and packs each shard's drawings for the shuffle
(`pipeline.chunks`). Everything after the one hash per drawing is whole-batch numpy.
With `--split first` it first finds each category's cut-offs: the positions of its first
`--train_per_class` + `--eval_per_class` drawings, combined over all files.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from pipeline import chunks
from pipeline import stats as stats_lib
from pipeline.chunks import ShardDrawings
from pipeline.config import PipelineConfig
from quickdraw import splits
from quickdraw.batch import DrawingBatch

ShardKey = tuple[str, int]  # (split, shard)


def assign_splits(
    file_index: int,
    batch: DrawingBatch,
    hashes: np.ndarray,
    config: PipelineConfig,
    cutoffs: Mapping[str, splits.Cutoffs] | None,
) -> np.ndarray:
    """(drawings,) int64: each drawing's split id (`quickdraw.splits`). `cutoffs` holds
    each word's cut-offs with `--split first`, and is None with `--split hash`."""
    if cutoffs is None:
        return splits.split_by_hash(hashes, config.eval_fraction)
    return splits.split_by_position(file_index, batch.words, batch.line_numbers, cutoffs)


def by_shard(
    batch: DrawingBatch, split_ids: np.ndarray, keys: np.ndarray, num_shards: int
) -> list[tuple[ShardKey, ShardDrawings]]:
    """The drawings of a batch bound for each (split, shard), in batch order in each; a
    drawing beyond its category's quota goes nowhere."""
    groups = split_ids * num_shards + splits.shards_of(keys, num_shards)
    order = np.flatnonzero(split_ids != splits.BEYOND_QUOTA)
    # A stable sort keeps each group in batch order.
    order = order[np.argsort(groups[order], kind="stable")]
    ordered = batch.take(order)
    keys = keys[order]
    point_ends = np.concatenate([[0], np.cumsum(ordered.counts)])
    starts = np.flatnonzero(np.diff(groups[order], prepend=-1)).tolist()
    result = []
    for start, end in zip(starts, [*starts[1:], len(order)]):
        group = int(groups[order[start]])
        rows = slice(point_ends[start], point_ends[end])
        drawings = ShardDrawings(
            sort_keys=keys[start:end],
            words=ordered.words[start:end],
            key_ids=ordered.key_ids[start:end],
            counts=ordered.counts[start:end],
            points=ordered.points[rows],
            raw=ordered.raw[start:end],
            times=ordered.times[rows],
        )
        result.append(((splits.SPLITS[group // num_shards], group % num_shards), drawings))
    return result


def written_counts(batch: DrawingBatch, split_ids: np.ndarray) -> dict:
    """This batch's part of stats.json: what it writes to each split, and what it leaves."""
    word_index = {}
    word_ids = np.array([word_index.setdefault(word, len(word_index)) for word in batch.words])
    kept = split_ids != splits.BEYOND_QUOTA
    per_word = np.bincount(
        word_ids[kept] * len(splits.SPLITS) + split_ids[kept],
        minlength=len(splits.SPLITS) * len(word_index),
    ).reshape(-1, len(splits.SPLITS))
    written = {
        word: {split: int(n) for split, n in zip(splits.SPLITS, per_word[index]) if n}
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
    return counts


# --- Beam ---------------------------------------------------------------------------------


class ToShardsFn(beam.DoFn):
    """Assigns each drawing a split and a shard, and packs each shard's drawings.

    Outputs ((split, shard), packed chunk) (`pipeline.chunks`), and the counts of what it
    kept on `stats`. Drawings are buffered per shard across the batches of a bundle and
    packed together when the buffer holds `FLUSH_DRAWINGS` or the bundle ends: a few large
    chunks per shard instead of one small chunk per batch and shard (small input files give
    small batches), which is what the shuffle pays for per element.
    """

    FLUSH_DRAWINGS = 50_000

    def __init__(self, config: PipelineConfig):
        self._config = config

    def start_bundle(self):
        self._buffer: dict[ShardKey, list[ShardDrawings]] = collections.defaultdict(list)
        self._buffered = 0

    def process(self, element, cutoffs=None):
        file_index, batch = element
        hashes = splits.eval_hashes(batch.key_ids)
        ids = assign_splits(file_index, batch, hashes, self._config, cutoffs)
        keys = splits.sort_keys(hashes, self._config.seed)
        for shard_key, drawings in by_shard(batch, ids, keys, self._config.num_shards):
            self._buffer[shard_key].append(drawings)
            self._buffered += len(drawings.words)
        if self._buffered >= self.FLUSH_DRAWINGS:
            yield from self._flush()
        yield beam.pvalue.TaggedOutput(stats_lib.STATS, written_counts(batch, ids))

    def finish_bundle(self):
        for shard_chunk in self._flush():
            yield WindowedValue(shard_chunk, MIN_TIMESTAMP, [GlobalWindow()])

    def _flush(self):
        for shard_key, parts in self._buffer.items():
            yield shard_key, chunks.pack(chunks.concatenate(parts))
        self._buffer.clear()
        self._buffered = 0


class FirstPositionsFn(beam.CombineFn):
    """Keeps the `limit` first (file index, line number) positions of a category."""

    def __init__(self, limit: int):
        self._limit = limit

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, positions):
        return splits.earliest(accumulator + list(positions), self._limit)

    def merge_accumulators(self, accumulators):
        return splits.earliest((p for each in accumulators for p in each), self._limit)

    def extract_output(self, accumulator):
        return accumulator


def _positions_by_word(element) -> list:
    file_index, batch = element
    return list(splits.positions_by_word(file_index, batch.words, batch.line_numbers).items())


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
                | "PositionsByCategory" >> beam.FlatMap(_positions_by_word)
                | "FirstPositions" >> beam.CombinePerKey(FirstPositionsFn(config.per_class_quota))
                | "Cutoffs"
                >> beam.MapTuple(lambda w, p: (w, splits.cutoffs(p, config.train_per_class)))
            )
            to_shards = beam.ParDo(ToShardsFn(config), cutoffs=beam.pvalue.AsDict(cutoffs))
        return drawings | "ToShards" >> to_shards.with_outputs(stats_lib.STATS, main="chunks")
