"""The one definition of the TFRecord features, with their writer and their parser.

Each record is a `tf.train.Example` with the tutorial's features plus `key_id`,
`log_aspect` and `time` (all absent in the tutorial's files):

| feature       | type        | shape    | meaning                                          |
|---------------|-------------|----------|--------------------------------------------------|
| `ink`         | float list  | (n * 3)  | the (n, 3) ink of `quickdraw.ink`, row-major     |
| `shape`       | int64 list  | (2,)     | `[n, 3]`                                         |
| `class_index` | int64 list  | (1,)     | line number of the category in the classes file  |
| `key_id`      | bytes list  | (1,)     | the drawing's key_id                             |
| `log_aspect`  | float list  | (1,)     | log(width / height), `quickdraw.ink.log_aspect`  |
| `time`        | float list  | (n + 1,) | raw drawings only: each point's ms since the first |

`time` has one value per point of the drawing (the ink's n rows are the steps between its
n + 1 points: row i ends at point i + 1). Drawings read from simplified lines have none.

The writer encodes the Example's protobuf wire format directly (a few lines below) rather
than building a `tf.train.Example`: it keeps TensorFlow, a ~600 MB install, off the
pipeline's Dataflow workers, and it is several times faster on the pipeline's hot path
(`make bench` prints both). `tests/quickdraw/test_schema.py` holds it equal to TensorFlow's own
parser. The parser (`parse_examples`) imports TensorFlow only when called.
"""

from __future__ import annotations

import functools
import struct

import google_crc32c
import numpy as np

INK = "ink"
SHAPE = "shape"
CLASS_INDEX = "class_index"
KEY_ID = "key_id"
LOG_ASPECT = "log_aspect"
TIME = "time"

INK_COLUMNS = 3  # x delta, y delta, end_of_stroke

# Batch features: what the parser returns beside the record's own features, and what the
# model takes (`trainer.data` builds the batches, `trainer.model` names its inputs after them).
LENGTHS = "lengths"  # (batch,) int32: rows of ink of each drawing
IMAGE = "image"  # with --raster, in training: the image branch's own (batch, 32, 32, 2) images
IMAGE_LABELS = "image_labels"  # ... and their (batch,) class indices

# File names, exactly as the tutorial's, so its `--training_data` globs keep working.
SPLIT_FILE_PREFIXES = {"train": "training.tfrecord", "eval": "eval.tfrecord"}
CLASSES_SUFFIX = ".classes"


def shard_name(split: str, shard: int, num_shards: int) -> str:
    """`training.tfrecord-00003-of-00010` for split "train", shard 3 of 10."""
    return f"{SPLIT_FILE_PREFIXES[split]}-{shard:05d}-of-{num_shards:05d}"


def classes_file_name(split: str) -> str:
    return SPLIT_FILE_PREFIXES[split] + CLASSES_SUFFIX


# --- Writer: protobuf wire format of tf.train.Example --------------------------------
# Example { Features features = 1; }
# Features { map<string, Feature> feature = 1; }  (map entry: key = 1, value = 2)
# Feature { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; }
# FloatList { repeated float value = 1 [packed]; }, Int64List likewise with varints,
# BytesList { repeated bytes value = 1; }


def _varint(value: int) -> bytes:
    if value < 0x80:  # the common case: one byte
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _entry_with_payload(name: str, feature_field: int, payload: bytes) -> bytes:
    """A map entry `name: Feature{<feature_field>: List{value: payload}}`."""
    values = b"\x0a" + _varint(len(payload)) + payload  # List.value
    feature = _varint(feature_field << 3 | 2) + _varint(len(values)) + values
    entry = _KEYS[name] + b"\x12" + _varint(len(feature)) + feature
    return b"\x0a" + _varint(len(entry)) + entry


_KEYS = {
    name: _field(1, name.encode()) for name in (INK, SHAPE, CLASS_INDEX, KEY_ID, LOG_ASPECT, TIME)
}
_BYTES_LIST, _FLOAT_LIST, _INT64_LIST = 1, 2, 3


@functools.lru_cache(maxsize=65536)
def _class_index_entry(class_index: int) -> bytes:
    return _entry_with_payload(CLASS_INDEX, _INT64_LIST, _varint(class_index))


@functools.lru_cache(maxsize=65536)
def _header_of_entry(name: str, feature_field: int, payload_length: int) -> bytes:
    """The bytes of a map entry that come before a payload of this length."""
    return _entry_with_payload(name, feature_field, bytes(payload_length))[
        : -payload_length or None
    ]


@functools.lru_cache(maxsize=65536)
def _shape_entry(rows: int) -> bytes:
    return _entry_with_payload(SHAPE, _INT64_LIST, _varint(rows) + _varint(INK_COLUMNS))


_LOG_ASPECT_HEADER = _header_of_entry(LOG_ASPECT, _FLOAT_LIST, 4)  # one float32: 4 bytes


def encode_drawing_features(
    ink: np.ndarray, key_id: bytes, log_aspect=None, time: np.ndarray | None = None
) -> bytes:
    """Every feature of a drawing's Example but `class_index`, serialized.

    The pipeline encodes this before it knows the final class list, then completes the
    record with `with_class_index`. Headers depend only on lengths and are cached: this
    runs once per drawing.

    Args:
      ink: (n, 3) float32, from `quickdraw.ink`.
      key_id: the drawing's key_id.
      log_aspect: from `quickdraw.ink.log_aspect`; None leaves the feature out.
      time: (n + 1,) float32, each point's ms since the first; None leaves the feature out.
    """
    if ink.ndim != 2 or ink.shape[1] != INK_COLUMNS:
        raise ValueError(f"ink must have shape (n, {INK_COLUMNS}), got {ink.shape}")
    if time is not None and np.shape(time) != (len(ink) + 1,):
        raise ValueError(f"time needs one value per point ({len(ink) + 1}), got {np.shape(time)}")
    raw = np.ascontiguousarray(ink, dtype="<f4").tobytes()
    aspect = b"" if log_aspect is None else _LOG_ASPECT_HEADER + struct.pack("<f", log_aspect)
    times = b""
    if time is not None:
        payload = np.ascontiguousarray(time, dtype="<f4").tobytes()
        times = _header_of_entry(TIME, _FLOAT_LIST, len(payload)) + payload
    # Map entries in sorted key order (class_index comes first), so equal inputs give
    # equal bytes, the same bytes as TensorFlow's deterministic serialization.
    return b"".join(
        (
            _header_of_entry(INK, _FLOAT_LIST, len(raw)),
            raw,
            _header_of_entry(KEY_ID, _BYTES_LIST, len(key_id)),
            key_id,
            aspect,
            _shape_entry(len(ink)),
            times,
        )
    )


def with_class_index(drawing_features: bytes, class_index: int) -> bytes:
    """Completes `encode_drawing_features` into a serialized `tf.train.Example`."""
    if class_index < 0:
        raise ValueError(f"class_index must be >= 0, got {class_index}")
    features = _class_index_entry(class_index) + drawing_features
    return b"\x0a" + _varint(len(features)) + features


def encode_example(
    ink: np.ndarray, class_index: int, key_id: bytes, log_aspect=None, time=None
) -> bytes:
    """Serializes one drawing as a `tf.train.Example`.

    Args:
      ink: (n, 3) float32, from `quickdraw.ink`.
      class_index: the category's line in the classes file, >= 0.
      key_id: the drawing's key_id.
      log_aspect: from `quickdraw.ink.log_aspect`; None leaves the feature out.
      time: (n + 1,) float32, each point's ms since the first; None leaves the feature out.
    """
    return with_class_index(encode_drawing_features(ink, key_id, log_aspect, time), class_index)


# --- TFRecord framing ------------------------------------------------------------------
# length (uint64 LE), masked crc32c of length (uint32 LE), data, masked crc32c of data.


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def frame_record(data: bytes) -> bytes:
    """One TFRecord: the bytes `tf.io.TFRecordWriter.write(data)` appends to a file."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


# --- Parser (TensorFlow) ---------------------------------------------------------------


def feature_spec(log_aspect: bool = False, time: bool = False):
    """The `tf.io.parse_example` spec. `key_id` defaults to b"" for the tutorial's files;
    `log_aspect`, when asked for, is required (a record without it fails to parse); `time`,
    when asked for, is empty in a record without it (a drawing read from simplified ink)."""
    import tensorflow as tf

    spec = {
        INK: tf.io.VarLenFeature(tf.float32),
        SHAPE: tf.io.FixedLenFeature([2], tf.int64),
        CLASS_INDEX: tf.io.FixedLenFeature([1], tf.int64),
        KEY_ID: tf.io.FixedLenFeature([], tf.string, default_value=b""),
    }
    if log_aspect:
        spec[LOG_ASPECT] = tf.io.FixedLenFeature([], tf.float32)
    if time:
        spec[TIME] = tf.io.VarLenFeature(tf.float32)
    return spec


def parse_examples(serialized, log_aspect: bool = False, time: bool = False):
    """Parses a batch (or a scalar) of serialized Examples.

    Returns:
      A dict of `ink` (a RaggedTensor of shape (batch, None, 3) for a batch, or a
      (n, 3) Tensor for a scalar), `lengths` (int32: n), `class_index` (int64),
      `key_id` (string), when `log_aspect` is true, `log_aspect` (float32), and when
      `time` is true, `time` (float32, (batch, None) ragged or (n + 1,); empty where a
      record has none).
    """
    import tensorflow as tf

    features = tf.io.parse_example(serialized, feature_spec(log_aspect, time))
    lengths = tf.cast(features[SHAPE][..., 0], tf.int32)
    points = tf.reshape(features[INK].values, [-1, INK_COLUMNS])  # (total points, 3)
    if serialized.shape.rank == 0:
        ink = points
    else:
        ink = tf.RaggedTensor.from_row_lengths(points, lengths)  # (batch, None, 3)
    result = {
        INK: ink,
        LENGTHS: lengths,
        CLASS_INDEX: features[CLASS_INDEX][..., 0],
        KEY_ID: features[KEY_ID],
        **({LOG_ASPECT: features[LOG_ASPECT]} if log_aspect else {}),
    }
    if time:
        times = features[TIME]
        if serialized.shape.rank == 0:
            result[TIME] = times.values
        else:
            result[TIME] = tf.RaggedTensor.from_sparse(times)  # (batch, None)
    return result
