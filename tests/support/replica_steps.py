"""Runs the trainer's training steps on the same batches with one replica and with two, and
saves what each run ends with:

    python tests/support/replica_steps.py OUT.npz [--float64] [trainer flags]

The two replicas are a real `MirroredStrategy` over two logical CPU devices, the strategy the
trainer uses on several GPUs: each replica gets half of every batch. Logical devices must be
set before TensorFlow starts, hence a process of its own (tests/trainer/test_distributed.py).
"""

from __future__ import annotations

import sys

import numpy as np
import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402  (after the device configuration)

from quickdraw import schema  # noqa: E402
from trainer import config as config_lib  # noqa: E402
from trainer import model as model_lib  # noqa: E402
from trainer import optimizer as optimizer_lib  # noqa: E402
from trainer import raster as raster_lib  # noqa: E402
from trainer import train_step  # noqa: E402

NUM_CLASSES = 4
BATCHES = 3
MAX_LENGTH = 30


def make_batches(batch_size: int, raster: bool) -> tf.data.Dataset:
    """`BATCHES` batches of random strokes of 5 to 29 points, right-padded, random labels;
    with `raster`, the image branch's batches too: the same drawings in another order."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, MAX_LENGTH, (BATCHES, batch_size)).astype(np.int32)
    # (batches, batch, time, 3)
    ink = np.zeros((BATCHES, batch_size, MAX_LENGTH, 3), keras.config.floatx())
    for batch, row in np.ndindex(lengths.shape):
        length = lengths[batch, row]
        ink[batch, row, :length, :2] = rng.normal(0.0, 0.1, (length, 2))
        ink[batch, row, length - 1, 2] = 1.0
    labels = rng.integers(0, NUM_CLASSES, (BATCHES, batch_size)).astype(np.int64)
    features = {"ink": ink, "lengths": lengths}
    if raster:
        order = rng.permutation(batch_size)
        mask = np.arange(MAX_LENGTH) < lengths[..., None]  # (batches, batch, time)
        images = [raster_lib.InkRaster()(ink[b][order], mask[b][order]) for b in range(BATCHES)]
        features[schema.IMAGE] = np.stack([np.asarray(image) for image in images])
        features[schema.IMAGE_LABELS] = labels[:, order]
    return tf.data.Dataset.from_tensor_slices((features, labels))


def run(strategy, config, batches) -> dict:
    """Builds the model and optimizer from one seed, takes one step per batch."""
    keras.utils.clear_session()  # the same layer names, and so variable paths, in both runs
    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = model_lib.build_model(config, NUM_CLASSES)
        optimizer = optimizer_lib.make_optimizer(config)
        optimizer.build(model.trainable_variables)
    train_steps = train_step.make_train_steps(strategy, model, optimizer, config, NUM_CLASSES)
    # Each replica steps on its half of every batch.
    iterator = iter(strategy.experimental_distribute_dataset(batches))
    loss = float(train_steps(iterator, tf.constant(BATCHES)))
    # Adam's moments hold the gradients' scale, which its steps alone do not show; the
    # model's weights include batch norm's moving statistics.
    variables = [*model.weights, *optimizer.variables]
    return {"loss": np.float32(loss), **{v.path: v.numpy() for v in variables}}


def main(argv) -> None:
    out, flags = argv[0], argv[1:]
    if flags[:1] == ["--float64"]:  # the model's weights and steps in float64
        keras.config.set_floatx("float64")
        flags = flags[1:]
    config = config_lib.parse_flags(flags)
    batches = make_batches(config.batch_size, config.raster)
    runs = {
        "one": run(tf.distribute.get_strategy(), config, batches),
        "two": run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), config, batches),
    }
    arrays = {
        f"{run}:{name}": value for run, result in runs.items() for name, value in result.items()
    }
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
