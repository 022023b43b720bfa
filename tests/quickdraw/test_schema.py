"""The record writer and TensorFlow's parser, side by side: a round trip."""

import numpy as np
import pytest
import tensorflow as tf

from quickdraw import schema


def _tensorflow_example(
    ink: np.ndarray, class_index: int, key_id: bytes, log_aspect=None
) -> tf.train.Example:
    feature = {
        "ink": tf.train.Feature(float_list=tf.train.FloatList(value=ink.flatten())),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=ink.shape)),
        "class_index": tf.train.Feature(int64_list=tf.train.Int64List(value=[class_index])),
        "key_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[key_id])),
    }
    if log_aspect is not None:
        feature["log_aspect"] = tf.train.Feature(float_list=tf.train.FloatList(value=[log_aspect]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


@pytest.mark.parametrize("points", [1, 5, 43, 1400])  # 1400 points need 3-byte lengths
@pytest.mark.parametrize("class_index", [0, 7, 344, 70000])
def test_encoding_equals_tensorflows_own(points, class_index):
    ink = np.random.default_rng(points).normal(size=(points, 3)).astype(np.float32)
    mine = schema.encode_example(ink, class_index, b"5201136883597312")
    theirs = _tensorflow_example(ink, class_index, b"5201136883597312")
    assert tf.train.Example.FromString(mine) == theirs
    assert mine == theirs.SerializeToString(deterministic=True)


@pytest.mark.parametrize("log_aspect", [0.0, -5.541263, 0.6931472])
def test_encoding_with_log_aspect_equals_tensorflows_own(log_aspect):
    ink = np.random.default_rng(3).normal(size=(20, 3)).astype(np.float32)
    mine = schema.encode_example(ink, 12, b"5201136883597312", np.float32(log_aspect))
    theirs = _tensorflow_example(ink, 12, b"5201136883597312", log_aspect)
    assert tf.train.Example.FromString(mine) == theirs
    assert mine == theirs.SerializeToString(deterministic=True)


def test_log_aspect_is_parsed_when_asked_for_and_required_then():
    ink = np.ones((3, 3), dtype=np.float32)
    with_aspect = schema.encode_example(ink, 1, b"a", np.float32(-0.25))
    without = schema.encode_example(ink, 1, b"b")
    parsed = schema.parse_examples(tf.constant([with_aspect]), log_aspect=True)
    assert parsed["log_aspect"].numpy().tolist() == [-0.25]
    assert "log_aspect" not in schema.parse_examples(tf.constant([with_aspect]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="log_aspect"):
        schema.parse_examples(tf.constant([with_aspect, without]), log_aspect=True)


def test_round_trip_through_the_parser():
    inks = [np.arange(i * 3, dtype=np.float32).reshape(i, 3) / 7 for i in (1, 4, 2)]
    serialized = [schema.encode_example(ink, i, f"key{i}".encode()) for i, ink in enumerate(inks)]
    parsed = schema.parse_examples(tf.constant(serialized))
    assert parsed[schema.LENGTHS].numpy().tolist() == [1, 4, 2]
    assert parsed["class_index"].numpy().tolist() == [0, 1, 2]
    assert parsed["key_id"].numpy().tolist() == [b"key0", b"key1", b"key2"]
    for ink, parsed_ink in zip(inks, parsed["ink"]):
        np.testing.assert_array_equal(parsed_ink.numpy(), ink)
    single = schema.parse_examples(tf.constant(serialized[1]))
    np.testing.assert_array_equal(single["ink"].numpy(), inks[1])


def test_parser_reads_the_tutorials_records_without_key_id():
    ink = np.ones((3, 3), dtype=np.float32)
    example = _tensorflow_example(ink, 4, b"")
    del example.features.feature["key_id"]
    parsed = schema.parse_examples(tf.constant([example.SerializeToString()]))
    assert parsed["key_id"].numpy().tolist() == [b""]
    assert parsed["class_index"].numpy().tolist() == [4]
    np.testing.assert_array_equal(parsed["ink"][0].numpy(), ink)


def test_framed_records_read_back_with_tfrecorddataset(tmp_path):
    records = [schema.encode_example(np.full((i, 3), i, np.float32), i, b"k") for i in (1, 2, 3)]
    path = tmp_path / "shard.tfrecord"
    path.write_bytes(b"".join(schema.frame_record(record) for record in records))
    assert list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()) == records


def test_framing_equals_tfrecordwriter(tmp_path):
    path = tmp_path / "written_by_tensorflow"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(b"payload")
        writer.write(b"")
    assert path.read_bytes() == schema.frame_record(b"payload") + schema.frame_record(b"")


def test_shard_and_classes_names_are_the_tutorials():
    assert schema.shard_name("train", 3, 10) == "training.tfrecord-00003-of-00010"
    assert schema.shard_name("eval", 0, 1) == "eval.tfrecord-00000-of-00001"
    assert schema.classes_file_name("train") == "training.tfrecord.classes"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="shape"):
        schema.encode_example(np.zeros((3, 2), np.float32), 0, b"k")
    with pytest.raises(ValueError, match="class_index"):
        schema.encode_example(np.zeros((3, 3), np.float32), -1, b"k")
