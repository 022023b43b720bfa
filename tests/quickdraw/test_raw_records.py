"""A raw drawing's times: written as the `time` feature beside the ink, parsed back by
TensorFlow when asked for, and carried through the shuffle's packed chunks."""

import numpy as np
import pytest
import tensorflow as tf

from pipeline import chunks, writing
from quickdraw import schema

INK = np.arange(12, dtype=np.float32).reshape(4, 3) / 8
TIME = np.float32([0, 12.5, 40, 41.25, 90])  # one per point: the ink's rows + 1


def test_the_time_feature_equals_tensorflows_own_encoding():
    mine = schema.encode_example(INK, 3, b"42", np.float32(0.5), TIME)
    theirs = tf.train.Example()
    features = theirs.features.feature
    features["ink"].float_list.value.extend(INK.flatten())
    features["shape"].int64_list.value.extend(INK.shape)
    features["class_index"].int64_list.value.append(3)
    features["key_id"].bytes_list.value.append(b"42")
    features["log_aspect"].float_list.value.append(0.5)
    features["time"].float_list.value.extend(TIME)
    assert mine == theirs.SerializeToString(deterministic=True)


def test_time_round_trips_when_asked_for_and_is_empty_without_it():
    with_time = schema.encode_example(INK, 3, b"raw", None, TIME)
    without = schema.encode_example(INK[:2], 1, b"simplified")
    parsed = schema.parse_examples(tf.constant([with_time, without]), time=True)
    np.testing.assert_array_equal(parsed["time"][0].numpy(), TIME)
    assert parsed["time"][1].numpy().tolist() == []
    np.testing.assert_array_equal(parsed["ink"][0].numpy(), INK)
    assert "time" not in schema.parse_examples(tf.constant([with_time]))  # not unless asked
    single = schema.parse_examples(tf.constant(with_time), time=True)
    np.testing.assert_array_equal(single["time"].numpy(), TIME)


def test_time_needs_one_value_per_point():
    with pytest.raises(ValueError, match="one value per point"):
        schema.encode_example(INK, 3, b"raw", None, TIME[:-1])


def _points(counts):
    points = np.zeros((sum(counts), 3), np.float32)
    points[:, :2] = np.arange(2 * sum(counts)).reshape(-1, 2) % 256
    points[np.cumsum(counts) - 1, 2] = 1
    return points


def test_chunks_carry_the_times_of_raw_drawings_only():
    counts = np.array([2, 3, 2])
    points = _points(counts)
    raw = np.array([True, False, True])
    times = np.float32([0, 5, np.nan, np.nan, np.nan, 0, 7.5])
    keys = np.array([1, 2, 3], np.uint64)
    packed = chunks.pack(
        chunks.ShardDrawings(keys, ["a", "b", "c"], ["1", "2", "3"], counts, points, raw, times)
    )
    unpacked = chunks.unpack(packed)
    np.testing.assert_array_equal(unpacked.points, points)
    assert unpacked.raw.tolist() == raw.tolist()
    np.testing.assert_array_equal(unpacked.times, times)  # NaN where a drawing has no times
    assert len(packed[10]) == 4 * 4  # the 4 points of the raw drawings, float32
    plain = chunks.pack(chunks.ShardDrawings(keys[:1], ["a"], ["1"], counts[:1], points[:2]))
    assert plain[9:] == (b"", b"")
    assert chunks.unpack(plain).raw.tolist() == [False]


def test_written_records_hold_time_for_raw_drawings_only():
    counts = np.array([3, 2])
    points = _points(counts)
    times = np.float32([0, 10, 30, np.nan, np.nan])
    drawings = chunks.ShardDrawings(
        np.array([5, 6], np.uint64), ["a", "b"], ["r", "s"], counts, points, [True, False], times
    )
    records = writing.encoded_records([chunks.pack(drawings)])
    serialized = [schema.with_class_index(payload, 0) for _, payload, _ in records]
    parsed = schema.parse_examples(tf.constant(serialized), time=True)
    assert parsed["key_id"].numpy().tolist() == [b"r", b"s"]
    assert parsed["time"][0].numpy().tolist() == [0, 10, 30]
    assert parsed["time"][1].numpy().tolist() == []
