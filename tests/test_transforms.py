"""Each composite transform on its own, with TestPipeline on Beam's FnApiRunner."""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import chunks, transforms
from pipeline.config import PipelineConfig
from pipeline.inputs import InputFile
from quickdraw import drawings, schema
from tests.test_drawings import BAD_LINES, _line


def _pipeline() -> test_pipeline.TestPipeline:
    return test_pipeline.TestPipeline(runner=FnApiRunner())


def _batch(key_ids: list[str], word: str = "cat") -> drawings.DrawingBatch:
    lines = [(i + 1, _line(key_id=key, word=word)) for i, key in enumerate(key_ids)]
    batch, bad = drawings.convert_lines(lines, 100)
    assert not bad
    return batch


def test_read_drawings_splits_good_bad_and_counts(tmp_path):
    path = tmp_path / "cat.ndjson"
    path.write_bytes(
        _line(key_id="1")
        + BAD_LINES["xy_length_mismatch"]
        + _line(key_id="2", word="dog")
        + _line(key_id="3")
    )
    config = PipelineConfig(output_dir=str(tmp_path), categories=("cat",), split="hash")
    with _pipeline() as pipeline:
        read = (
            pipeline
            | beam.Create([InputFile(0, str(path), "cat")])
            | transforms.ReadDrawings(config)
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
        shard_chunks = (
            pipeline | beam.Create([(0, batch)]) | transforms.AssignShards(config)
        ).chunks
        flat = shard_chunks | beam.FlatMap(
            lambda kv: [(kv[0], key) for key in chunks.unpack(kv[1])[0]]
        )
        assert_that(flat, equal_to(expected))


def _run_to_shards(config, batch, cutoffs=None, batches=1, flush_drawings=None):
    """ToShardsFn's main outputs for `batches` copies of `batch` in one bundle."""
    fn = transforms.ToShardsFn(config)
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
            | beam.CombinePerKey(transforms.FirstPositionsFn(3))
        )
        assert_that(result, equal_to([("cat", [(0, 2), (0, 9), (1, 5)]), ("dog", [(3, 3)])]))


def test_first_split_assigns_by_position(tmp_path):
    config = PipelineConfig(
        output_dir=str(tmp_path), split="first", train_per_class=2, eval_per_class=1
    )
    cats = _batch(["a", "b", "c", "d"])  # line numbers 1..4 in file 0
    with _pipeline() as pipeline:
        shard_chunks = (
            pipeline | beam.Create([(0, cats)]) | transforms.AssignShards(config)
        ).chunks
        splits = shard_chunks | beam.FlatMap(lambda kv: [kv[0][0] for _ in chunks.unpack(kv[1])[0]])
        assert_that(splits, equal_to(["train", "train", "eval"]))


def test_write_shards_sorts_by_key_and_writes_every_shard(tmp_path):
    config = PipelineConfig(output_dir=str(tmp_path), split="hash", num_shards=2)
    points = np.array([[0, 0, 0], [3, 4, 1]] * 3, dtype=np.float32)

    def chunk(keys, words):
        counts = np.full(len(keys), 2)
        return chunks.pack(
            keys, words, [f"id{k}" for k in keys], counts, points[: 2 * len(keys)], chunks.COMPACT
        )

    with _pipeline() as pipeline:
        classes = pipeline | "Classes" >> beam.Create([["cat", "dog"]])
        shard_chunks = pipeline | "Chunks" >> beam.Create(
            [(("train", 0), chunk([4, 2], ["dog", "cat"])), (("train", 0), chunk([3], ["dog"]))]
        )
        paths = shard_chunks | transforms.WriteShards(config, classes)
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
