"""The tf.data input on pipeline-format TFRecords of real drawings."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf

from bench import training_speed
from quickdraw import ink as ink_math
from quickdraw import schema
from tests.support.trainer_fixtures import CATEGORIES, read_drawings, write_tfrecords
from trainer import augment, checks, data, raster

TRAIN, EVAL = 24, 8


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_tfrecords(tmp_path_factory.mktemp("records"), train=TRAIN, eval_=EVAL)


def drawings_of(batches):
    """(class_index, length, rounded ink sum) of every drawing, and the batch shapes."""
    seen, shapes = [], []
    for features, labels in batches:
        ink, lengths = features["ink"].numpy(), features["lengths"].numpy()
        shapes.append(ink.shape)
        for row, (length, label) in enumerate(zip(lengths, labels.numpy())):
            assert not ink[row, length:].any(), "ink must be zero past the drawing's length"
            seen.append((int(label), int(length), round(float(ink[row, :length].sum()), 4)))
    return seen, shapes


def test_eval_reads_every_drawing_once(records):
    seen, shapes = drawings_of(data.dataset(f"{records}/eval.tfrecord-*", 5, training=False))
    assert len(seen) == len(set(seen)) == EVAL * len(CATEGORIES)
    assert collections.Counter(label for label, _, _ in seen) == {
        index: EVAL for index in range(len(CATEGORIES))
    }
    assert all(shape[0] <= 5 and shape[2] == 3 for shape in shapes)


def test_shards_split_the_eval_set_between_workers(records):
    pattern = f"{records}/eval.tfrecord-*"
    whole, _ = drawings_of(data.dataset(pattern, 4, training=False))
    parts = [
        drawings_of(data.dataset(pattern, 4, training=False, num_shards=3, shard_index=i))[0]
        for i in range(3)  # more workers than the 2 files: records are split instead
    ]
    assert all(parts)
    assert sorted(sum(parts, [])) == sorted(whole)


def test_training_batches_are_full_bucketed_and_seeded(records):
    pattern = f"{records}/training.tfrecord-*"
    batches = data.dataset(pattern, 8, training=True, seed=3)
    seen, shapes = drawings_of(batches.take(60))
    assert all(shape[0] == 8 for shape in shapes)
    # 480 drawings: 3.3 epochs of 144, shuffled within each epoch. A drawing of a rare length
    # waits in its bucket until the bucket fills, so a few have not come out yet.
    times_seen = collections.Counter(seen)
    assert len(times_seen) >= 0.9 * TRAIN * len(CATEGORIES)
    assert max(times_seen.values()) <= 4
    assert training_speed.padding_fraction(batches, 60) < 0.10
    assert (
        training_speed.padding_fraction(training_speed.plain_dataset(pattern, 8, seed=3), 60) > 0.25
    )
    again, _ = drawings_of(data.dataset(pattern, 8, training=True, seed=3).take(60))
    other, _ = drawings_of(data.dataset(pattern, 8, training=True, seed=4).take(60))
    assert again == seen and other != seen


@pytest.mark.parametrize("pool_records", [16, data.POOL_RECORDS])
def test_batches_are_those_of_tf_data_bucket_by_sequence_length(records, monkeypatch, pool_records):
    """The pooled bucketing hands out the very batches, in the very order, of tf.data's own
    `bucket_by_sequence_length` on the same records; small pools keep drawings waiting in
    their buckets from one pool to the next."""
    monkeypatch.setattr(data, "POOL_RECORDS", pool_records)
    boundaries = data.bucket_boundaries()

    def reference(pattern, batch_size, training):
        return (
            data.read_records(pattern, training=training, seed=5, num_shards=1, shard_index=0)
            .map(data.parser(log_aspect=False))
            .bucket_by_sequence_length(
                element_length_func=lambda features, label: features["lengths"],
                bucket_boundaries=boundaries,
                bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
                drop_remainder=training,
            )
        )

    def as_bytes(batches):
        return [
            (
                features["ink"].numpy().tobytes(),
                features["lengths"].numpy().tobytes(),
                labels.numpy().tobytes(),
            )
            for features, labels in batches
        ]

    pattern = f"{records}/training.tfrecord-*"
    expected = as_bytes(reference(pattern, 4, training=True).take(80))
    assert as_bytes(data.dataset(pattern, 4, training=True, seed=5).take(80)) == expected
    # Every bucket's remainder comes out at the end of the eval set, in some order.
    pattern = f"{records}/eval.tfrecord-*"
    expected = as_bytes(reference(pattern, 3, training=False))
    got = as_bytes(data.dataset(pattern, 3, training=False, seed=5))
    assert sorted(got) == sorted(expected) and len(got) > len(CATEGORIES) * EVAL / 3


def test_reads_the_tutorials_own_records(tmp_path):
    """The tutorial's script wrote only ink, shape and class_index (no key_id)."""
    inks = [np.arange(12, dtype=np.float32).reshape(4, 3), np.ones((2, 3), np.float32)]
    with tf.io.TFRecordWriter(str(tmp_path / "training.tfrecord-00000-of-00001")) as writer:
        for class_index, ink in enumerate(inks):
            features = {
                schema.INK: tf.train.Feature(float_list=tf.train.FloatList(value=ink.ravel())),
                schema.SHAPE: tf.train.Feature(int64_list=tf.train.Int64List(value=ink.shape)),
                schema.CLASS_INDEX: tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[class_index])
                ),
            }
            example = tf.train.Example(features=tf.train.Features(feature=features))
            writer.write(example.SerializeToString())
    read = {}
    for features, labels in data.dataset(f"{tmp_path}/training.tfrecord-*", 2, training=False):
        for row, label in enumerate(labels.numpy()):
            length = int(features["lengths"][row])
            read[int(label)] = features["ink"].numpy()[row, :length]
    assert sorted(read) == [0, 1]
    np.testing.assert_array_equal(read[0], inks[0])
    np.testing.assert_array_equal(read[1], inks[1])
    (tmp_path / "training.tfrecord-00000-of-00000").write_bytes(b"")  # empty shards first
    checks.check_records(f"{tmp_path}/training.tfrecord-*", log_aspect=False)
    with pytest.raises(ValueError, match="have none.*python -m pipeline.*--aspect_ratio=false"):
        checks.check_records(f"{tmp_path}/training.tfrecord-*", log_aspect=True)


def test_log_aspect_rides_with_its_drawing(records):
    checks.check_records(f"{records}/eval.tfrecord-*", log_aspect=True)  # the pipeline's have it
    expected = {}
    for class_index, category in enumerate(sorted(CATEGORIES)):
        batch = read_drawings(category, TRAIN + EVAL)
        for index in range(TRAIN, TRAIN + EVAL):
            ink = batch.ink_of(index)
            key = (class_index, len(ink), round(float(ink.sum()), 4))
            expected[key] = batch.log_aspect_of(index)
    read = {}
    pattern = f"{records}/eval.tfrecord-*"
    for features, labels in data.dataset(pattern, 5, training=False, log_aspect=True):
        ink, lengths = features["ink"].numpy(), features["lengths"].numpy()
        for row, (length, label) in enumerate(zip(lengths, labels.numpy())):
            key = (int(label), int(length), round(float(ink[row, :length].sum()), 4))
            read[key] = features["log_aspect"].numpy()[row]
    assert read == expected
    assert len(set(read.values())) > len(read) / 2  # real drawings: many distinct ratios


def test_augment_hook_gets_a_distinct_seed_per_batch(records):
    def mark_seed(ink, lengths, seed):
        mask = tf.sequence_mask(lengths, tf.shape(ink)[1], tf.float32)[..., None]
        return ink * 0 + tf.cast(seed[1], tf.float32) * mask, lengths

    batches = data.dataset(f"{records}/training.tfrecord-*", 4, training=True, augment_fn=mark_seed)
    marks = [int(features["ink"][0, 0, 0]) for features, _ in batches.take(5)]
    assert marks == [0, 1, 2, 3, 4]


def test_augment_hook_may_shorten_drawings(records):
    def halve(ink, lengths, seed):
        half = (lengths + 1) // 2
        mask = tf.sequence_mask(half, tf.shape(ink)[1], tf.float32)[..., None]
        return ink * mask, half

    pattern = f"{records}/training.tfrecord-*"
    plain = data.dataset(pattern, 4, training=True)
    halved = data.dataset(pattern, 4, training=True, augment_fn=halve)
    for (before, labels), (after, same_labels) in zip(plain.take(5), halved.take(5)):
        np.testing.assert_array_equal(labels, same_labels)
        assert after["lengths"].dtype == before["lengths"].dtype
        np.testing.assert_array_equal(after["lengths"], (before["lengths"] + 1) // 2)
        assert after["ink"].shape == before["ink"].shape


def test_image_hook_gives_a_batch_of_its_own_in_random_order(records):
    def length_and_seed(ink, log_aspect, seed):
        return tf.stack([tf.cast(tf.shape(ink)[0], tf.int64), seed[1], seed[0]])

    pattern = f"{records}/training.tfrecord-*"
    plain = data.dataset(pattern, 8, training=True)
    both = data.dataset(pattern, 8, training=True, image_fn=length_and_seed, log_aspect=True)
    spreads, image_spreads, drawing_seeds, label_counts = [], [], set(), collections.Counter()
    for (before, labels), (after, same_labels) in zip(plain.take(6), both.take(6)):
        np.testing.assert_array_equal(labels, same_labels)  # the recurrent branch's batch
        np.testing.assert_array_equal(after["ink"], before["ink"])
        made = after["image"].numpy()  # (8, 3): what image_fn made of each drawing
        assert after["image_labels"].shape == (8,)
        spreads.append(np.ptp(before["lengths"]) / before["lengths"].numpy().max())
        image_spreads.append(np.ptp(made[:, 0]) / made[:, 0].max())
        drawing_seeds.update(made[:, 1].tolist())
        assert len(set(made[:, 2].tolist())) == 1  # one stream's seed, distinct per drawing
        label_counts.update(after["image_labels"].numpy().tolist())
    assert len(drawing_seeds) == 6 * 8
    # Bucketed by length, the recurrent batches hold drawings of about one length; the
    # images' drawings come in random order, of all lengths, of every category.
    assert max(spreads) < 0.1 < min(image_spreads)
    assert len(label_counts) == len(CATEGORIES)


def test_augment_flag_hooks_in_trainer_augment():
    from trainer import train
    from trainer.config import parse_flags

    flags = ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]
    assert train.load_augment_fn(parse_flags(flags)) is None
    assert train.load_augment_fn(parse_flags(flags + ["--augment"])) is augment.training_batch
    assert train.load_image_fn(parse_flags(flags + ["--augment"])) is None


def test_image_flags_hook_in_the_raster_with_image_batch():
    from trainer import train
    from trainer.config import parse_flags

    flags = ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]
    ink = tf.constant(ink_math.ink_from_strokes([[[0, 40, 80], [0, 60, 10]], [[5, 5], [0, 90]]]))
    seed = tf.constant([3, 4], tf.int64)
    plain = train.load_image_fn(parse_flags(flags + ["--raster"]))(ink, None, seed)
    mask = tf.ones([1, ink.shape[0]], tf.bool)
    np.testing.assert_array_equal(plain, raster.InkRaster()(ink[None], mask)[0])
    augmented = train.load_image_fn(parse_flags(flags + ["--raster", "--augment"]))
    image = augmented(ink, None, seed)
    expected = raster.InkRaster()(augment.image_batch(ink[None], [ink.shape[0]], seed), mask)
    np.testing.assert_array_equal(image, expected[0])
    assert np.abs(np.asarray(image) - np.asarray(plain)).max() > 0  # it did distort


def test_no_files_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no files match"):
        data.dataset(f"{tmp_path}/nothing-*", 8, training=True)
    for shard in range(2):
        (tmp_path / f"eval.tfrecord-0000{shard}-of-00002").write_bytes(b"")
    with pytest.raises(ValueError, match=r"the 2 file\(s\) matching .* hold no records"):
        checks.check_records(f"{tmp_path}/eval.tfrecord-*", log_aspect=False)
    other = tf.train.Example(
        features=tf.train.Features(
            feature={"label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}
        )
    )
    for name, record, reason in [
        ("junk", b"not an example", "Could not parse example input, value: 'not an example'"),
        ("other", other.SerializeToString(), "Feature: class_index (data type: int64) is required"),
    ]:
        with tf.io.TFRecordWriter(str(tmp_path / f"{name}.tfrecord-00000-of-00001")) as writer:
            writer.write(record)
        with pytest.raises(ValueError) as raised:
            checks.check_records(f"{tmp_path}/{name}.tfrecord-*", log_aspect=False)
        assert str(raised.value).startswith(
            f"the first record of '{tmp_path}/{name}.tfrecord-*' is not a drawing as "
            f"`python -m pipeline` writes it ({reason}"
        )
    whole = (tmp_path / "other.tfrecord-00000-of-00001").read_bytes()
    (tmp_path / "cut.tfrecord-00000-of-00001").write_bytes(whole[:-3])
    with pytest.raises(
        ValueError, match=r"'.*/cut.tfrecord-\*' is damaged \(truncated record at 0\)"
    ):
        checks.check_records(f"{tmp_path}/cut.tfrecord-*", log_aspect=False)
    (tmp_path / "classes").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match="lists a class twice"):
        checks.read_classes(str(tmp_path / "classes"))
