"""What `make bench` measures the trainer's input and step with: a plain padded batch of
shuffled drawings (the tutorial's input, the baseline), batches served from memory (the
limit), the share of padding, and examples per second through the trainer's own step."""

from __future__ import annotations

import logging
import time

import tensorflow as tf

from quickdraw import schema
from trainer import data, train_step
from trainer import model as model_lib
from trainer import optimizer as optimizer_lib
from trainer.config import Config


def plain_dataset(pattern: str, batch_size: int, *, seed: int = 0) -> tf.data.Dataset:
    """The baseline for `make bench`: the same records, shuffled, in a plain `padded_batch`
    (no bucketing), as the tutorial's input function batched them."""

    return (
        data.read_records(pattern, training=True, seed=seed, num_shards=1, shard_index=0)
        .map(data.parser(log_aspect=False), num_parallel_calls=tf.data.AUTOTUNE)
        .padded_batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
        .apply(data.without_autotune_thread)
    )


def in_memory(batches: tf.data.Dataset, num_batches: int) -> tf.data.Dataset:
    """The first `num_batches` batches, read once, then served from memory forever: the
    reference `make bench` holds the input pipeline's training speed against."""
    cached = batches.take(num_batches).cache()
    for _ in cached:  # fills the cache
        pass
    return cached.repeat()


def padding_fraction(batches: tf.data.Dataset, num_batches: int) -> float:
    """The share of padded steps among all steps fed in the first `num_batches` batches."""
    real = padded = 0
    for features, _ in batches.take(num_batches):
        real += int(tf.reduce_sum(features[schema.LENGTHS]))
        padded += int(tf.size(features[schema.LENGTHS])) * int(tf.shape(features[schema.INK])[1])
    if not padded:
        logging.warning("padding_fraction: the dataset gave no batches")
        return 0.0
    return 1.0 - real / padded


def fresh_train_steps(config: Config, num_classes: int):
    """`make_train_steps` for a new model and optimizer under the current strategy, as
    `make bench` times and inspects it."""
    strategy = tf.distribute.get_strategy()
    model = model_lib.build_model(config, num_classes)
    optimizer = optimizer_lib.make_optimizer(config)
    optimizer.build(model.trainable_variables)
    return train_step.make_train_steps(strategy, model, optimizer, config, num_classes)


def examples_per_second(
    config: Config, batches: tf.data.Dataset, num_classes: int, steps=50, warmup_steps=5
) -> float:
    """Training speed of the trainer's step on `batches`, after `warmup_steps` untimed steps.

    `make bench` compares `data.dataset` with `plain_dataset` and with
    `in_memory(data.dataset(...), steps + warmup_steps)` through this function.
    """
    train_steps = fresh_train_steps(config, num_classes)
    iterator = iter(batches)
    # Reading the loss back waits for the step's last kernels, which a GPU runs after the
    # call has returned.
    float(train_steps(iterator, tf.constant(warmup_steps)))
    started = time.monotonic()
    float(train_steps(iterator, tf.constant(steps)))
    return steps * config.batch_size / (time.monotonic() - started)
