"""`--raster`'s image branch: the ink drawn as an image in the graph (`InkRaster`), and the
2-D convolutions that read it (`raster_network`).

The image is made from the ink inside the model, so the serving signature draws it too, and
training draws the image branch's own batches with `training_image_fn`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from trainer.config import Config
from trainer.layers import real_steps, step_bounds

RASTER_SIZE = 32  # --raster: the image's side in pixels
RASTER_FILTERS = (24, 48, 96)  # --raster: filters of the three stages of two 3 x 3 convolutions
RASTER_SAMPLES = 40  # --raster: points drawn along each step of the ink, about a pixel apart


@keras.saving.register_keras_serializable(package="trainer")
class InkRaster(keras.layers.Layer):
    """(batch, time, 3) ink -> (batch, size, size, 2): the drawing rendered as an image.

    The ink's steps are summed back into points, the points put back in the drawing's own
    proportions (`log_aspect`, when given; the pipeline scaled x and y apart), and the
    drawing is centred on the image and scaled to 90% of it. Each pen-down step is drawn
    as `samples` points along it. Channel 0 is 1 on every pixel the pen crossed; channel 1
    holds when it crossed it first, 1 at the drawing's start falling to 0 at its end, so
    the image keeps the order in which the drawing was made. Padded steps draw nothing,
    so the image does not depend on the padding. No weights: it runs in the model's
    graph, on the augmented training ink and in the serving signature alike.
    """

    def __init__(self, size=RASTER_SIZE, samples=RASTER_SAMPLES, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.samples = samples

    def call(self, ink, mask, log_aspect=None):
        size, dtype = self.size, ink.dtype
        batch, time = ops.shape(ink)[0], ops.shape(ink)[1]
        real = ops.expand_dims(mask, -1)  # (batch, time, 1)
        steps = real_steps(ink, real)  # (batch, time, 2)
        ends = ops.cumsum(steps, axis=1)  # each step's end, from the first point at 0
        starts = ends - steps
        lowest, highest = step_bounds(ends, real)  # (batch, 2) each
        if log_aspect is None:
            stretch = ops.ones_like(lowest)  # (batch, 2)
        else:
            half = ops.reshape(ops.cast(log_aspect, dtype), (-1, 1)) / 2
            stretch = ops.exp(ops.concatenate([half, -half], axis=-1))  # width : height
        longer_side = ops.max((highest - lowest) * stretch, axis=-1, keepdims=True)
        scale = stretch * (0.9 * (size - 1)) / ops.maximum(longer_side, 1e-6)  # (batch, 2)
        centre = (lowest + highest) / 2

        # `samples` points along each step: (batch, time, samples, 2) pixel columns and rows.
        fractions = ops.linspace(0.0, 1.0, self.samples, dtype=dtype)  # (samples,)
        points = ops.expand_dims(starts, 2) + fractions[:, None] * ops.expand_dims(steps, 2)
        pixels = (points - centre[:, None, None]) * scale[:, None, None] + (size - 1) / 2
        pixels = ops.cast(ops.clip(ops.round(pixels), 0, size - 1), "int32")
        drawing = ops.arange(batch, dtype="int32")[:, None, None]
        cell = ops.reshape((drawing * size + pixels[..., 1]) * size + pixels[..., 0], (-1,))

        # A step is drawn unless the point it starts from ended a stroke (the first point's
        # end of stroke is not in the ink: its step is drawn).
        ended = ops.concatenate([ops.zeros_like(ink[:, :1, 2]), ink[:, :-1, 2]], axis=1)
        drawn = ops.cast(ops.logical_and(mask, ended < 0.5), dtype)  # (batch, time)
        on = ops.broadcast_to(ops.expand_dims(drawn, -1), ops.shape(points)[:3])
        # When each point was drawn: 1 at the first, falling to 0 at the last.
        length = ops.maximum(ops.sum(ops.cast(mask, dtype), axis=1), 1.0)  # (batch,)
        done = ops.cast(ops.arange(time), dtype)[None, :, None] + fractions
        when = 1.0 - done / length[:, None, None]  # (batch, time, samples)

        cells = batch * size * size
        on = ops.reshape(on, (-1,))
        crossed = tf.math.unsorted_segment_max(on, cell, cells)  # lowest float where unset
        first = tf.math.unsorted_segment_max(on * ops.reshape(when, (-1,)), cell, cells)
        image = ops.stack([ops.maximum(crossed, 0.0), ops.maximum(first, 0.0)], axis=-1)
        return ops.reshape(image, (batch, size, size, 2))

    def compute_output_spec(self, ink, mask, log_aspect=None):
        return keras.KerasTensor((ink.shape[0], self.size, self.size, 2), dtype=ink.dtype)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "samples": self.samples}


def raster_network(config: Config, num_classes: int) -> keras.Sequential:
    """`--raster`'s branch: (batch, size, size, 2) image -> (batch, classes) logits. Three
    stages of two 3 x 3 convolutions (batch norm, ReLU) and a 2 x 2 max pool, the mean over
    the image, dropout and a dense layer."""
    layers = [keras.Input((RASTER_SIZE, RASTER_SIZE, 2))]
    for stage, filters in enumerate(RASTER_FILTERS):
        for index in range(2):
            name = f"raster_{stage}_{index}"
            layers += [
                keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name),
                keras.layers.BatchNormalization(synchronized=True, name=f"{name}_batch_norm"),
                keras.layers.ReLU(name=f"{name}_relu"),
            ]
        layers.append(keras.layers.MaxPool2D(name=f"raster_{stage}_pool"))
    layers.append(keras.layers.GlobalAveragePooling2D(name="raster_mean"))
    if config.dropout:
        layers.append(keras.layers.Dropout(config.dropout, name="raster_dropout"))
    layers.append(keras.layers.Dense(num_classes, name="raster_logits"))
    return keras.Sequential(layers, name="raster_network")


def training_image_fn(config: Config, augment_fn=None):
    """With `--raster`, the function that makes the image branch's training input from one
    drawing: `image_fn(ink (time, 3), log_aspect or None, seed (2,)) -> (size, size, 2)`,
    `augment_fn(ink, lengths, seed) -> ink` applied to the ink first when given
    (`trainer.augment.image_batch`); None without `--raster`. For `trainer.data.dataset`."""
    if not config.raster:
        return None
    raster = InkRaster(name="training_raster")

    def image_fn(ink, log_aspect, seed):
        ink = ink[None]  # (1, time, 3)
        lengths = tf.shape(ink)[1:2]
        if augment_fn is not None:
            ink = augment_fn(ink, lengths, seed)
        mask = tf.sequence_mask(lengths, tf.shape(ink)[1])
        log_aspect = None if log_aspect is None or not config.aspect_ratio else log_aspect[None]
        return raster(ink, mask, log_aspect)[0]

    return image_fn
