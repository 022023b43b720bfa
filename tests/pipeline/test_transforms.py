"""Each composite transform on its own, with TestPipeline on Beam's FnApiRunner, and the
plain functions their DoFns adapt, on hand-made lines and batches."""

from __future__ import annotations

import collections
import io
import json
import zlib

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import chunks, reading, sharding, writing
from pipeline.config import PipelineConfig
from pipeline.inputs import InputFile
from quickdraw import drawings, schema, splits
from tests.support.bad_lines import BAD_LINES, line_of


def _pipeline() -> test_pipeline.TestPipeline:
    return test_pipeline.TestPipeline(runner=FnApiRunner())


def _batch(key_ids: list[str], word: str = "cat") -> drawings.DrawingBatch:
    lines = [(i + 1, line_of(key_id=key, word=word)) for i, key in enumerate(key_ids)]
    batch, bad = drawings.convert_lines(lines, 100)
    assert not bad
    return batch


def test_read_drawings_splits_good_bad_and_counts(tmp_path):
    path = tmp_path / "cat.ndjson"
    path.write_bytes(
        line_of(key_id="1")
        + BAD_LINES["xy_length_mismatch"]
        + line_of(key_id="2", word="dog")
        + line_of(key_id="3")
    )
    config = PipelineConfig(output_dir=str(tmp_path), categories=("cat",), split="hash")
    with _pipeline() as pipeline:
        read = (
            pipeline | beam.Create([InputFile(0, str(path), "cat")]) | reading.ReadDrawings(config)
        )
        key_ids = read.drawings | beam.FlatMap(lambda element: element[1].key_ids)
        assert_that(key_ids, equal_to(["1", "3"]), label="GoodDrawings")
        reasons = read.bad_lines | beam.Map(lambda record: json.loads(record)["reason"])
        assert_that(reasons, equal_to(["xy_length_mismatch"]), label="BadLines")
        counts = read.stats | beam.Map(
            lambda c: (c["lines_read"], c["bad_lines"], c["not_selected"])
        )
        assert_that(
            counts,
            equal_to([(4, {"xy_length_mismatch": 1}, {"other_category": 1})]),
            label="Counts",
        )


def test_reading_stops_at_the_quota_of_a_files_category(tmp_path):
    config = PipelineConfig(
        output_dir=str(tmp_path), split="first", train_per_class=2, eval_per_class=1
    )
    lines = [
        line_of(key_id="1"),
        BAD_LINES["not_an_object"],
        line_of(key_id="2", recognized=False),
        line_of(key_id="3"),
        line_of(key_id="4"),
    ]
    stream = io.BytesIO(b"".join(lines))
    batches = list(reading.read_batches(stream, config, "cat"))
    # Three lines hold two good drawings, so the next read asks for one line only.
    assert [batch.lines_read for batch in batches] == [3, 1]
    assert [bad.line_number for bad in batches[0].bad] == [2]
    assert [batch.drawings.key_ids for batch in batches] == [["1", "2"], ["3"]]
    assert batches[1].counts() == {"lines_read": 1, "bad_lines": {}, "not_selected": {}}
    assert batches[0].counts()["bad_lines"] == {"not_an_object": 1}
    assert stream.read() == lines[4]  # never read


def test_select_names_why_each_drawing_is_left_out():
    words = ["cat", "dog", "cat", "cat", "cat"]
    lines = [(i + 1, line_of(key_id=str(i), word=word)) for i, word in enumerate(words)]
    lines[2] = (3, line_of(key_id="2", recognized=False))
    batch, _ = drawings.convert_lines(lines, 100)
    taken = collections.Counter({"cat": 1})
    keep, not_selected = reading.select(batch, {"cat"}, True, 3, taken)
    assert keep.tolist() == [True, False, False, True, False]
    assert not_selected == {"other_category": 1, "unrecognized": 1, "over_quota": 1}
    assert taken == {"cat": 3}
    keep, not_selected = reading.select(batch, None, False, None, collections.Counter())
    assert keep.all() and not_selected == {}


def test_an_empty_or_damaged_file_gets_a_record_of_its_own():
    assert reading.file_errors("a.ndjson", 3, None) == ({}, [])
    counts, [record] = reading.file_errors("a.ndjson", 0, None)
    assert counts == {"empty_files": ["a.ndjson"]}
    assert json.loads(record)["reason"] == "empty_file"
    counts, [record] = reading.file_errors("b.ndjson.gz", 7, zlib.error("bad data"))
    assert counts == {"damaged_files": ["b.ndjson.gz"]}
    assert json.loads(record) == {
        "source": "b.ndjson.gz",
        "line_number": None,
        "reason": "damaged_file",
        "description": "the file cannot be read after line 7: bad data",
        "line": "",
    }


def test_by_shard_groups_a_batch_by_split_and_shard_in_batch_order():
    batch = _batch(["a", "b", "c", "d"])
    batch.points[:, :2] += np.arange(len(batch.points))[:, None]  # tell the drawings apart
    split_ids = np.array([splits.TRAIN, splits.EVAL, splits.BEYOND_QUOTA, splits.TRAIN])
    keys = np.array([4, 3, 8, 2], dtype=np.uint64)
    grouped = sharding.by_shard(batch, split_ids, keys, 2)
    assert [shard_key for shard_key, _ in grouped] == [("train", 0), ("eval", 1)]
    train, evaluate = grouped[0][1], grouped[1][1]
    assert train.key_ids == ["a", "d"] and train.sort_keys.tolist() == [4, 2]
    assert evaluate.key_ids == ["b"] and evaluate.sort_keys.tolist() == [3]
    np.testing.assert_array_equal(
        train.points, np.concatenate([batch.points_of(0), batch.points_of(3)])
    )
    np.testing.assert_array_equal(evaluate.points, batch.points_of(1))
    assert train.counts.tolist() == [3, 3] and len(train.times) == 6


def test_written_counts_count_each_word_and_split():
    batch = _batch(["a", "b", "c", "d"])
    batch.words[1] = "dog"
    split_ids = np.array([splits.TRAIN, splits.EVAL, splits.BEYOND_QUOTA, splits.TRAIN])
    assert sharding.written_counts(batch, split_ids) == {
        "written": {"cat": {"train": 2}, "dog": {"eval": 1}},
        "lengths": {"2": 3},  # three points, two rows of ink each
        "written_ink": {"raw": 0, "simplified": 3},
        "not_selected": {"over_quota": 1},
    }


def test_assign_shards_by_hash_is_deterministic_and_complete(tmp_path):
    config = PipelineConfig(output_dir=str(tmp_path), split="hash", num_shards=3, eval_fraction=0.5)
    key_ids = [str(1000 + i) for i in range(200)]
    batch = _batch(key_ids)
    expected = []
    for chunk_key, chunk in _run_to_shards(config, batch):
        expected.extend((chunk_key, key) for key in chunks.unpack(chunk)[0])
    assert len(expected) == 200
    splits = {split for (split, _), _ in expected}
    assert splits == {"train", "eval"}
    assert all(key % 3 == shard for (_, shard), key in expected)

    with _pipeline() as pipeline:
        shard_chunks = (pipeline | beam.Create([(0, batch)]) | sharding.AssignShards(config)).chunks
        flat = shard_chunks | beam.FlatMap(
            lambda kv: [(kv[0], key) for key in chunks.unpack(kv[1])[0]]
        )
        assert_that(flat, equal_to(expected))


def _run_to_shards(config, batch, cutoffs=None, batches=1, flush_drawings=None):
    """ToShardsFn's main outputs for `batches` copies of `batch` in one bundle."""
    fn = sharding.ToShardsFn(config)
    if flush_drawings:
        fn.FLUSH_DRAWINGS = flush_drawings
    fn.start_bundle()
    outputs = [output for _ in range(batches) for output in fn.process((0, batch), cutoffs)]
    outputs += [windowed.value for windowed in fn.finish_bundle()]
    return [output for output in outputs if not isinstance(output, beam.pvalue.TaggedOutput)]


def test_to_shards_packs_a_bundle_into_one_chunk_per_shard(tmp_path):
    config = PipelineConfig(output_dir=str(tmp_path), split="hash", num_shards=3, eval_fraction=0.5)
    batch = _batch([str(1000 + i) for i in range(200)])
    bundled = _run_to_shards(config, batch, batches=4)
    assert len(bundled) == 6  # 2 splits x 3 shards
    assert sum(len(chunks.unpack(chunk)[0]) for _, chunk in bundled) == 800
    # A full buffer is packed before the bundle ends.
    flushed = _run_to_shards(config, batch, batches=4, flush_drawings=200)
    assert len(flushed) == 4 * 6
    assert sorted(
        (shard_key, key) for shard_key, chunk in flushed for key in chunks.unpack(chunk)[0]
    ) == sorted((shard_key, key) for shard_key, chunk in bundled for key in chunks.unpack(chunk)[0])


def test_first_positions_keeps_the_earliest_per_category():
    with _pipeline() as pipeline:
        result = (
            pipeline
            | beam.Create([("cat", [(1, 5), (0, 9)]), ("cat", [(0, 2), (2, 1)]), ("dog", [(3, 3)])])
            | beam.CombinePerKey(sharding.FirstPositionsFn(3))
        )
        assert_that(result, equal_to([("cat", [(0, 2), (0, 9), (1, 5)]), ("dog", [(3, 3)])]))


def test_first_split_assigns_by_position(tmp_path):
    config = PipelineConfig(
        output_dir=str(tmp_path), split="first", train_per_class=2, eval_per_class=1
    )
    cats = _batch(["a", "b", "c", "d"])  # line numbers 1..4 in file 0
    with _pipeline() as pipeline:
        shard_chunks = (pipeline | beam.Create([(0, cats)]) | sharding.AssignShards(config)).chunks
        names = shard_chunks | beam.FlatMap(lambda kv: [kv[0][0] for _ in chunks.unpack(kv[1])[0]])
        assert_that(names, equal_to(["train", "train", "eval"]))


def test_write_shards_sorts_by_key_and_writes_every_shard(tmp_path):
    config = PipelineConfig(output_dir=str(tmp_path), split="hash", num_shards=2)
    points = np.array([[0, 0, 0], [3, 4, 1]] * 3, dtype=np.float32)

    def chunk(keys, words):
        counts = np.full(len(keys), 2)
        return chunks.pack(
            chunks.ShardDrawings(
                np.array(keys, np.uint64),
                words,
                [f"id{k}" for k in keys],
                counts,
                points[: 2 * len(keys)],
            )
        )

    with _pipeline() as pipeline:
        classes = pipeline | "Classes" >> beam.Create([["cat", "dog"]])
        shard_chunks = pipeline | "Chunks" >> beam.Create(
            [(("train", 0), chunk([4, 2], ["dog", "cat"])), (("train", 0), chunk([3], ["dog"]))]
        )
        paths = shard_chunks | writing.WriteShards(config, classes)
        assert_that(
            paths | beam.Map(lambda p: p.rsplit("/", 1)[1]),
            equal_to(
                [
                    "training.tfrecord-00000-of-00002",
                    "training.tfrecord-00001-of-00002",
                    "eval.tfrecord-00000-of-00002",
                    "eval.tfrecord-00001-of-00002",
                ]
            ),
        )
    records = list(
        tf.data.TFRecordDataset(
            str(tmp_path / "training.tfrecord-00000-of-00002")
        ).as_numpy_iterator()
    )
    parsed = [schema.parse_examples(tf.constant(r)) for r in records]
    # Sort keys 2 (cat), 3 (dog), 4 (dog).
    assert [int(p["class_index"]) for p in parsed] == [0, 1, 1]
    assert [p["key_id"].numpy() for p in parsed] == [b"id2", b"id3", b"id4"]
    np.testing.assert_array_equal(parsed[0]["ink"].numpy(), [[1, 1, 1]])
    aspects = [
        schema.parse_examples(tf.constant(r), log_aspect=True)["log_aspect"] for r in records
    ]
    np.testing.assert_allclose(aspects, [np.log(3 / 4)] * 3, rtol=1e-6)  # 3 wide, 4 high
    assert (tmp_path / "eval.tfrecord-00001-of-00002").read_bytes() == b""
