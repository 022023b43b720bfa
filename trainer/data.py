"""tf.data input: TFRecord shards to padded batches of drawings of similar length.

Records are read from a glob with a parallel interleave over the shards, shuffled, and parsed
with the pipeline's schema (`quickdraw.schema.parse_examples`, the one definition of the
features), a pool of `POOL_RECORDS` records at a time. Batches are bucketed by length
(buckets growing geometrically by `BUCKET_RATIO`), so padding stays a few percent of the
points fed, where a plain `padded_batch` of shuffled drawings pads half to two thirds of
them (`make bench` measures both, `bench/training_speed.py`): the recurrent layers step
through every padded step, so padding is time wasted. The bucketing gives the very batches
of tf.data's `bucket_by_sequence_length`, but works on whole pools (`_Buckets`), at about
eight times its speed.

Every element is `({"ink": (batch, time, 3) float32, "lengths": (batch,) int32},
class_index (batch,) int64)`, the ink right-padded with zeros; with `log_aspect=True` the
features also hold `"log_aspect": (batch,) float32`, and with an `image_fn` (`--raster`, in
training) `"image": (batch, 32, 32, 2)` and `"image_labels": (batch,) int64`, the image
branch's own batch.
"""

from __future__ import annotations

import tensorflow as tf

from quickdraw import schema
from trainer import checks

BUCKET_RATIO = 1.1  # each length bucket spans lengths [n, 1.1 n)
SHUFFLE_RECORDS = 10000  # records in the shuffle buffer, ~10 MB
MAX_PARALLEL_SHARDS = 16  # shards read at once
POOL_RECORDS = 2048  # records parsed and bucketed at a time (or 4 batches, if more)
# Keys of the pools and batches between the parser and the padding (see `_Buckets`).
POINTS, LABELS, FLUSH, INK_BATCHES = "points", "labels", "flush", "ink_batches"


def read_records(pattern, *, training, seed, num_shards, shard_index) -> tf.data.Dataset:
    """Serialized records; for training shuffled and repeated forever."""
    files = checks.list_files(pattern)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    # Each input pipeline (one per worker) reads its own files when there are enough of
    # them, else every pipeline reads all files and keeps its own share of the records.
    shard_files = num_shards > 1 and len(files) >= num_shards
    if shard_files:
        dataset = dataset.shard(num_shards, shard_index)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), MAX_PARALLEL_SHARDS),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if num_shards > 1 and not shard_files:
        dataset = dataset.shard(num_shards, shard_index)
    if training:
        # Shuffle, then repeat: every epoch passes every record once.
        dataset = dataset.shuffle(SHUFFLE_RECORDS, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.repeat()
    return dataset


def parser(log_aspect: bool):
    """serialized record -> ({"ink": (n, 3), "lengths": n[, "log_aspect"]}, class_index)."""

    def parse_one(serialized):
        parsed = schema.parse_examples(serialized, log_aspect=log_aspect)
        features = {schema.INK: parsed[schema.INK], schema.LENGTHS: parsed[schema.LENGTHS]}
        if log_aspect:
            features[schema.LOG_ASPECT] = parsed[schema.LOG_ASPECT]
        return features, parsed[schema.CLASS_INDEX]

    return parse_one


def bucket_boundaries(ratio: float = BUCKET_RATIO, longest: int = 4096) -> list[int]:
    """Lengths where a new bucket starts: every length up to 10, then growing by `ratio`.

    A drawing of length n shares its batch only with drawings shorter than about
    `ratio * n`, so at most about 1 - 1 / ratio of any batch is padding.
    """
    boundaries = list(range(2, 11))
    while boundaries[-1] < longest:
        boundaries.append(max(boundaries[-1] + 1, round(boundaries[-1] * ratio)))
    return boundaries


def dataset(
    pattern: str,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
    augment_fn=None,
    image_fn=None,
    log_aspect: bool = False,
) -> tf.data.Dataset:
    """The trainer's input: batches bucketed by length.

    Args:
      pattern: glob of TFRecord shards.
      batch_size: drawings per batch (per replica under a distribution strategy).
      training: shuffle, repeat forever and keep only full batches; else read every
        record once (the last batch of each bucket may be smaller).
      seed: seeds every shuffle.
      num_shards, shard_index: this input pipeline's share of the data (one per worker).
      augment_fn: `augment_fn(ink, lengths, seed) -> (ink, lengths)` on each padded batch
        (training only), e.g. `trainer.augment.training_batch`; it may shorten drawings
        but keeps the batch's shape. `seed` is a (2,) int64 tensor, distinct for every
        batch, for stateless random ops.
      image_fn: `image_fn(ink, log_aspect, seed) -> image` for one drawing (training only;
        `trainer.raster.training_image_fn`, for `--raster`): each batch's features then also
        hold `IMAGE`, a batch of images of other drawings, in random order rather than
        bucketed by length, with their class indices as `IMAGE_LABELS`. Batches of one
        length bucket are far from a random sample of the categories; the image branch,
        whose images all have one size, has no need of them, and its batch norm learned
        statistics from them that evaluation's drawings do not share (docs/accuracy.md).
      log_aspect: also read each drawing's `log_aspect` (`--aspect_ratio`).
    """
    pools = read_records(
        pattern, training=training, seed=seed, num_shards=num_shards, shard_index=shard_index
    ).batch(max(POOL_RECORDS, 4 * batch_size))
    pools = pools.map(_pool_parser(log_aspect), num_parallel_calls=tf.data.AUTOTUNE)
    if not training:  # one last, empty pool: its step hands out every bucket's remainder
        pools = pools.concatenate(tf.data.Dataset.from_tensors(_empty_pool(log_aspect, True)))
    buckets = _Buckets(batch_size)
    batches = pools.scan(buckets.initial_state(log_aspect), buckets.step).unbatch()
    batches = batches.map(_padded(batch_size if training else None), tf.data.AUTOTUNE)
    if training and augment_fn is not None:
        batches = _augmented(batches, augment_fn, seed, shard_index)
    if training and image_fn is not None:
        images = _images(pattern, batch_size, image_fn, seed, num_shards, shard_index, log_aspect)
        batches = tf.data.Dataset.zip(batches, images).map(_with_images)
    return without_autotune_thread(batches.prefetch(tf.data.AUTOTUNE))


def _seed_stream(seed: int, shard_index: int):
    """The first half of every stateless seed one input pipeline draws: distinct per
    `--seed` and per shard, so workers never draw alike. `_augmented` numbers its batches
    0, 1, ... in the second half, `_images` its drawings -1, -2, ...."""
    return tf.cast(seed * 1000003 + shard_index, tf.int64)


def _images(pattern, batch_size, image_fn, seed, num_shards, shard_index, log_aspect):
    """Batches of (images, class indices) from `image_fn` on drawings in random order."""
    records = read_records(
        pattern, training=True, seed=seed + 1, num_shards=num_shards, shard_index=shard_index
    )
    parse = parser(log_aspect)
    stream = _seed_stream(seed, shard_index)

    def image(index, serialized):
        features, label = parse(serialized)
        drawing_seed = tf.stack([stream, -1 - index])  # apart from _augmented's batch seeds
        ink, log_aspect = features[schema.INK], features.get(schema.LOG_ASPECT)
        return image_fn(ink, log_aspect, drawing_seed), label

    images = records.enumerate().map(image, num_parallel_calls=tf.data.AUTOTUNE)
    return images.batch(batch_size, drop_remainder=True)


def _with_images(batch, images):
    (features, labels), (image, image_labels) = batch, images
    return {**features, schema.IMAGE: image, schema.IMAGE_LABELS: image_labels}, labels


def _pool_parser(log_aspect: bool):
    """serialized records (n,) -> a pool: the drawings' points end to end, and per drawing
    its length, class_index [and log_aspect]."""

    def parse(serialized):
        parsed = schema.parse_examples(serialized, log_aspect=log_aspect)
        pool = {
            POINTS: parsed[schema.INK].flat_values,  # (points, 3)
            schema.LENGTHS: parsed[schema.LENGTHS],  # (n,)
            LABELS: parsed[schema.CLASS_INDEX],  # (n,)
            FLUSH: tf.constant(False),
        }
        if log_aspect:
            pool[schema.LOG_ASPECT] = parsed[schema.LOG_ASPECT]
        return pool

    return parse


def _empty_pool(log_aspect: bool, flush: bool) -> dict:
    pool = {
        POINTS: tf.zeros([0, schema.INK_COLUMNS], tf.float32),
        schema.LENGTHS: tf.zeros([0], tf.int32),
        LABELS: tf.zeros([0], tf.int64),
        FLUSH: tf.constant(flush),
    }
    if log_aspect:
        pool[schema.LOG_ASPECT] = tf.zeros([0], tf.float32)
    return pool


class _Buckets:
    """`bucket_by_sequence_length` on whole pools of drawings at once, batch for batch.

    The state holds the drawings still waiting in their buckets (fewer than a batch in
    each). Each step adds a pool and hands out every bucket's full batches, each of
    drawings in the order they came, and in the order tf.data's own bucketing would (the
    order their last drawing came); the rest keep waiting. A pool with `flush` set also
    hands out each bucket's remainder as a smaller batch. The step returns its batches
    ragged, (batches, drawings, points, 3); `_padded` pads each.

    The same batches as `tf.data.Dataset.bucket_by_sequence_length`, by tensor ops on
    thousands of drawings at a time: that one groups drawings one by one, in one thread,
    at about 30,000 drawings/s, about what one GPU takes at this model (docs/benchmarks.md,
    "GPU").
    """

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.boundaries = tf.constant(bucket_boundaries(), tf.int32)

    def initial_state(self, log_aspect: bool) -> dict:
        waiting = _empty_pool(log_aspect, False)
        del waiting[FLUSH]
        return waiting

    def step(self, waiting: dict, pool: dict):
        drawings = {key: tf.concat([waiting[key], pool[key]], 0) for key in waiting}
        lengths = drawings[schema.LENGTHS]
        bucket = tf.searchsorted(self.boundaries, lengths, side="right")  # (n,)
        order = tf.argsort(bucket, stable=True)  # by bucket, then in the order they came
        bucket = tf.gather(bucket, order)
        sizes = tf.math.bincount(bucket, minlength=len(self.boundaries) + 1, dtype=tf.int32)
        rank = tf.range(tf.size(order)) - tf.gather(tf.cumsum(sizes, exclusive=True), bucket)
        size = self.batch_size
        batches = tf.where(pool[FLUSH], (sizes + size - 1) // size, sizes // size)  # per bucket
        out = rank // size < tf.gather(batches, bucket)
        leaving, staying = tf.boolean_mask(order, out), tf.boolean_mask(order, ~out)
        rows = tf.boolean_mask(tf.gather(tf.cumsum(batches, exclusive=True), bucket), out)
        rows += tf.boolean_mask(rank, out) // size  # each leaving drawing's batch
        num_batches = tf.reduce_sum(batches)
        # The pool's drawings sit after the waiting ones, in the order they came, and every
        # full batch holds one of them (fewer than a batch wait per bucket): a batch's
        # highest position says when tf.data's bucketing would have handed it out.
        last_came = tf.math.unsorted_segment_max(leaving, rows, num_batches)
        batch_order = tf.argsort(last_came, stable=True)

        ink = tf.RaggedTensor.from_row_lengths(drawings[POINTS], lengths)
        kept = tf.gather(ink, staying)
        still_waiting = {POINTS: kept.flat_values, schema.LENGTHS: kept.row_lengths()}
        for key in drawings:
            if key not in still_waiting:
                still_waiting[key] = tf.gather(drawings[key], staying)

        def batched(values):
            per_batch = tf.RaggedTensor.from_value_rowids(values, rows, nrows=num_batches)
            return tf.gather(per_batch, batch_order)

        out_batches = {INK_BATCHES: batched(tf.gather(ink, leaving))}
        for key in drawings:
            if key != POINTS:
                out_batches[key] = batched(tf.gather(drawings[key], leaving))
        return still_waiting, out_batches


def _padded(batch_size):
    """A batch from `_Buckets` -> ({"ink": (batch, time, 3), "lengths", ...}, class_index),
    the ink right-padded with zeros."""

    def pad(batch):
        features = {schema.INK: batch[INK_BATCHES].to_tensor()}
        for key, value in batch.items():
            if key not in (INK_BATCHES, LABELS):
                features[key] = _dense(value)
        labels = _dense(batch[LABELS])
        if batch_size is not None:  # training: every batch is full
            features = {
                k: tf.ensure_shape(v, [batch_size] + [None] * (v.shape.rank - 1))
                for k, v in features.items()
            }
            labels = tf.ensure_shape(labels, [batch_size])
        return features, labels

    return pad


def _dense(value):
    """`unbatch` hands a batch's per-drawing values out as a RaggedTensor with no ragged
    dimension; the Tensor it holds."""
    return value.flat_values if isinstance(value, tf.RaggedTensor) else value


def without_autotune_thread(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Switches off tf.data's autotuning thread: it sleeps up to a minute between rounds and
    an iterator's destructor waits for it, so a finished training loop stalled for up to
    a minute before its final evaluation. AUTOTUNE then means one call per CPU core."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _augmented(batches, augment_fn, seed, shard_index):
    def augment(index, batch):
        features, labels = batch
        batch_seed = tf.stack([_seed_stream(seed, shard_index), index])
        lengths = features[schema.LENGTHS]
        ink, new_lengths = augment_fn(features[schema.INK], lengths, batch_seed)
        new_lengths = tf.cast(new_lengths, lengths.dtype)
        return {**features, schema.INK: ink, schema.LENGTHS: new_lengths}, labels

    return batches.enumerate().map(augment, num_parallel_calls=tf.data.AUTOTUNE)
