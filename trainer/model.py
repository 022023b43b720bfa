"""The tutorial's classifier in Keras 3: conv1d stack, stacked bidirectional RNN, sum, dense.

Three things differ from the tutorial's graph, each on purpose:

* The padded steps are set back to zero before every convolution. A `same` convolution's
  bias (and batch norm's shift) makes padded steps non-zero, and the next convolution
  would carry them into the drawing's last real steps: the tutorial's prediction of a
  drawing depended on how long the other drawings of its batch were.
* Batch norm, when on, computes its statistics over the real steps only (masked), summed
  over all replicas.
* Dropout between the recurrent layers is a layer of its own that really drops; the
  tutorial's cuDNN layers were one layer each, so their inter-layer dropout did nothing.

The recurrent layers read a right-padded mask, so on a GPU Keras runs the cuDNN kernel.
`--raster` adds a second branch, beyond the tutorial: the ink drawn as an image in the graph
(`InkRaster`) and read by 2-D convolutions (`raster_network`); the model then returns the logits
of the geometric mean of the two branches' class probabilities, and training gives each branch its
own loss (`branch_logits`).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from quickdraw import schema
from trainer import augment
from trainer.config import Config

INK = schema.INK  # model input: (batch, time, 3) ink, right-padded with zeros
LENGTHS = "lengths"  # model input: (batch,) int32 rows of ink per drawing
LOG_ASPECT = schema.LOG_ASPECT  # model input with --aspect_ratio: (batch,) float32
# Training inputs with --raster: the image branch's own batch of images (`branch_logits`)
# and their class indices (`trainer.data.dataset`'s `image_fn`).
IMAGE = "image"
IMAGE_LABELS = "image_labels"


@keras.saving.register_keras_serializable(package="trainer")
class StepMask(keras.layers.Layer):
    """(batch,) lengths -> (batch, time) bool: true on each drawing's real steps."""

    def call(self, lengths, steps):
        time = ops.shape(steps)[1]
        return ops.expand_dims(ops.arange(time, dtype="int32"), 0) < ops.expand_dims(lengths, 1)

    def compute_output_spec(self, lengths, steps):
        return keras.KerasTensor((steps.shape[0], steps.shape[1]), dtype="bool")


@keras.saving.register_keras_serializable(package="trainer")
class ZeroPadding(keras.layers.Layer):
    """Sets the padded steps of (batch, time, channels) to zero."""

    # The mask is an explicit input here; the one Keras attaches to tensors stops here.
    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs, mask):
        return ops.where(ops.expand_dims(mask, -1), inputs, ops.zeros_like(inputs))


def _real_steps(inputs, real):
    """The ink's two step channels (dx, dy) of (batch, time, channels), zero where `real`,
    (batch, time, 1) bool, is false."""
    return ops.where(real, inputs[..., :2], ops.zeros_like(inputs[..., :2]))


def _bounds(ends, real):
    """(batch, 2) smallest and (batch, 2) largest x and y of each drawing's points: the ends
    of its real steps, (batch, time, 2) where `real`, and the first point, which the ink
    drops, at 0."""
    far = ops.full_like(ends, 1e9)
    lowest = ops.minimum(ops.min(ops.where(real, ends, far), axis=1), 0.0)
    highest = ops.maximum(ops.max(ops.where(real, ends, -far), axis=1), 0.0)
    return lowest, highest


def _log_of_mean(probabilities, axis=0):
    """The logits of class probabilities averaged over `axis`; a class that none of them gives
    any probability keeps a finite logit."""
    mean = ops.mean(probabilities, axis=axis)
    return ops.log(ops.maximum(mean, np.finfo(np.float32).tiny))


@keras.saving.register_keras_serializable(package="trainer")
class InkPositions(keras.layers.Layer):
    """(batch, time, 3) ink -> (batch, time, 5): the ink and each point's position.

    The ink holds steps between points; a convolution over a few steps sees the shape of
    the stroke there but not where on the drawing it is. The positions come back from
    the steps: their running sum is each point relative to the dropped first point, and
    since the pipeline scaled x and y to [0, 1], subtracting the smallest value (or 0,
    the first point) gives the point's scaled position. Centred on 0 (minus 0.5), zero
    on padded steps.
    """

    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs, mask):
        real = ops.expand_dims(mask, -1)  # (batch, time, 1)
        steps = _real_steps(inputs, real)
        relative = ops.cumsum(steps, axis=1)  # (batch, time, 2)
        lowest, _ = _bounds(relative, real)  # (batch, 2): the first point counts too
        positions = relative - ops.expand_dims(lowest, 1) - 0.5
        positions = ops.where(real, positions, ops.zeros_like(positions))
        return ops.concatenate([inputs, positions], axis=-1)

    def compute_output_spec(self, inputs, mask):
        return keras.KerasTensor((inputs.shape[0], inputs.shape[1], 5), dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package="trainer")
class InkDirections(keras.layers.Layer):
    """(batch, time, channels) -> (batch, time, channels + 3): each step's direction as a
    unit vector (x, y) and its length, from the ink's first two channels (the steps).

    The convolutions have no activation, so the stack is one linear map of a few
    neighbouring steps and the recurrent layers are the first nonlinearity. A step's
    direction and length are nonlinear in the step and cheap to compute once, here. A
    step of length zero has no direction: (0, 0, 0). Zero on padded steps.
    """

    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs, mask):
        steps = _real_steps(inputs, ops.expand_dims(mask, -1))
        length = ops.sqrt(ops.sum(ops.square(steps), axis=-1, keepdims=True))  # (batch, time, 1)
        direction = ops.divide_no_nan(steps, length)  # (batch, time, 2)
        return ops.concatenate([inputs, direction, length], axis=-1)

    def compute_output_spec(self, inputs, mask):
        shape = (inputs.shape[0], inputs.shape[1], inputs.shape[2] + 3)
        return keras.KerasTensor(shape, dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package="trainer")
class PerDrawingChannel(keras.layers.Layer):
    """(batch, time, channels) and (batch,) values -> (batch, time, channels + 1): each
    drawing's value as one more channel, on its real steps; zero on padded steps.

    It carries the drawing's aspect ratio (`--aspect_ratio`), which the ink lost when the
    pipeline scaled x and y apart, to every step the convolutions see.
    """

    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs, values, mask):
        real = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)  # (batch, time, 1)
        column = real * ops.reshape(ops.cast(values, inputs.dtype), (-1, 1, 1))
        return ops.concatenate([inputs, column], axis=-1)

    def compute_output_spec(self, inputs, values, mask):
        shape = (inputs.shape[0], inputs.shape[1], inputs.shape[2] + 1)
        return keras.KerasTensor(shape, dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package="trainer")
class MaskedSum(keras.layers.Layer):
    """(batch, time, channels) -> (batch, channels): the sum over each drawing's real steps."""

    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs, mask):
        kept = ops.where(ops.expand_dims(mask, -1), inputs, ops.zeros_like(inputs))
        return ops.sum(kept, axis=1)

    def compute_output_spec(self, inputs, mask):
        return keras.KerasTensor((inputs.shape[0], inputs.shape[2]), dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package="trainer")
class MaskedBatchNormalization(keras.layers.Layer):
    """Batch norm of (batch, time, channels) with statistics over the real steps only, of
    the whole global batch.

    Keras's own layer takes a mask, but then computes its statistics per replica (its
    `synchronized` option does not apply with a mask): under several replicas each would
    normalize differently and keep moving statistics of its own. Here the sums are added
    across replicas first, so all replicas compute and keep the same statistics.
    Momentum and epsilon are `tf.layers.batch_normalization`'s, as in the tutorial.
    """

    def __init__(self, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon
        self.supports_masking = True

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.gamma = self.add_weight(shape=channels, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=channels, initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(
            shape=channels, initializer="zeros", trainable=False, name="moving_mean"
        )
        self.moving_variance = self.add_weight(
            shape=channels, initializer="ones", trainable=False, name="moving_variance"
        )

    def call(self, inputs, mask, training=False):
        if training:
            weights = ops.cast(ops.expand_dims(mask, -1), inputs.dtype)  # (batch, time, 1)
            count, total = _sum_over_replicas([ops.sum(weights), ops.sum(inputs * weights, (0, 1))])
            mean = total / ops.maximum(count, 1.0)  # (channels,)
            (squares,) = _sum_over_replicas([ops.sum(ops.square(inputs - mean) * weights, (0, 1))])
            variance = squares / ops.maximum(count, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1 - self.momentum)
            )
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return (inputs - mean) * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


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
        steps = _real_steps(ink, real)  # (batch, time, 2)
        ends = ops.cumsum(steps, axis=1)  # each step's end, from the first point at 0
        starts = ends - steps
        lowest, highest = _bounds(ends, real)  # (batch, 2) each
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


@keras.saving.register_keras_serializable(package="trainer")
class GeometricMeanProbabilities(keras.layers.Layer):
    """Several (batch, classes) logits -> the log of the geometric mean of their class
    probabilities, normalized: the mean of their log-probabilities, less its log-sum-exp. A
    class keeps a high probability only where every branch gives it one; on folds 0 and 1
    it scored higher than the plain mean of the probabilities (docs/accuracy.md, "Combining
    the two branches")."""

    def call(self, logits):
        mean = ops.mean(ops.stack([ops.log_softmax(each) for each in logits]), axis=0)
        return ops.log_softmax(mean)

    def compute_output_spec(self, logits):
        return keras.KerasTensor(logits[0].shape, dtype=logits[0].dtype)


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


def _sum_over_replicas(tensors):
    """The tensors summed over all replicas in a replica context, else as they are."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tensors)


def build_model(config: Config, num_classes: int) -> keras.Model:
    """The classifier: {"ink": (batch, time, 3), "lengths": (batch,)} -> (batch, classes)
    logits; with `--aspect_ratio` the inputs also hold "log_aspect": (batch,)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    ink = keras.Input(shape=(None, schema.INK_COLUMNS), name=INK)  # (batch, time, 3)
    lengths = keras.Input(shape=(), dtype="int32", name=LENGTHS)  # (batch,)
    inputs = {INK: ink, LENGTHS: lengths}
    mask = StepMask(name="step_mask")(lengths, ink)  # (batch, time)

    steps = ink
    if config.positions:
        steps = InkPositions(name="positions")(ink, mask)  # (batch, time, 5)
    if config.aspect_ratio:
        inputs[LOG_ASPECT] = keras.Input(shape=(), dtype="float32", name=LOG_ASPECT)  # (batch,)
        steps = PerDrawingChannel(name="aspect_ratio")(steps, inputs[LOG_ASPECT], mask)
    if config.directions:
        steps = InkDirections(name="directions")(steps, mask)  # 3 more channels
    for index, (filters, width) in enumerate(zip(config.num_conv, config.conv_len)):
        if config.batch_norm:
            steps = MaskedBatchNormalization(name=f"conv_batch_norm_{index}")(steps, mask)
        if index > 0 and config.dropout:
            steps = keras.layers.Dropout(config.dropout, name=f"conv_dropout_{index}")(steps)
        steps = ZeroPadding(name=f"conv_zero_padding_{index}")(steps, mask)
        steps = keras.layers.Conv1D(
            filters, width, padding="same", activation=None, name=f"conv_{index}"
        )(steps)  # (batch, time, filters)

    cell = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[config.cell_type]
    for index in range(config.num_layers):
        if index > 0 and config.dropout:
            steps = keras.layers.Dropout(config.dropout, name=f"rnn_dropout_{index}")(steps)
        steps = keras.layers.Bidirectional(
            cell(config.num_nodes, return_sequences=True), name=f"rnn_{index}"
        )(steps, mask=mask)  # (batch, time, 2 * num_nodes)

    summed = MaskedSum(name="sum_over_time")(steps, mask)  # (batch, 2 * num_nodes)
    logits = keras.layers.Dense(num_classes, name="logits")(summed)  # (batch, classes)
    if config.raster:
        image = InkRaster(name="raster")(ink, mask, inputs.get(LOG_ASPECT))
        raster_logits = raster_network(config, num_classes)(image)  # (batch, classes)
        logits = GeometricMeanProbabilities(name="branch_mean")([logits, raster_logits])
    return keras.Model(inputs, logits, name="sketch_classifier")


def branch_logits(model: keras.Model) -> keras.Model:
    """The model that training steps: the same layers and weights as `model`, returning each
    branch's logits as a list, so that each branch learns from a loss of its own (the
    recurrent branch and, with `--raster`, the image branch); `model` returns the logits
    of their geometric mean probabilities.

    With `--raster` its inputs also hold `IMAGE`, the image branch's own batch of images
    (`InkRaster`'s), which need not show the drawings of the recurrent branch's batch:
    training gives it drawings in random order, not bucketed by length (`trainer.data`).
    """
    names = [layer.name for layer in model.layers]
    if "branch_mean" not in names:
        return keras.Model(model.inputs, [model.output], name="branches")
    image = keras.Input(shape=model.get_layer("raster").output.shape[1:], name=IMAGE)
    recurrent_logits = model.get_layer("branch_mean").input[0]
    image_logits = model.get_layer("raster_network")(image)
    return keras.Model(
        {**model.input, IMAGE: image}, [recurrent_logits, image_logits], name="branches"
    )


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


def inference_logits(model: keras.Model, config: Config, ink, lengths, log_aspect=None):
    """`model`'s logits for inference, with each bidirectional LSTM run by TensorFlow's fused
    `BlockLSTMV2` kernel: one op per direction instead of a loop of small ops per step,
    about four times faster on a CPU for a single drawing (the serving case). It takes
    Keras's weights as they are (same gate order, no forget bias); the serving signature
    uses it, and `tests/test_trainer_export.py` holds it equal to `model` itself. GRU
    layers, which have no fused kernel, and `--raster`'s image branch run as in the model.

    Args:
      ink: (batch, time, 3) float32, right-padded.
      lengths: (batch,) int32.
      log_aspect: (batch,) float32, with `--aspect_ratio` only.
    """
    mask = model.get_layer("step_mask")(lengths, ink)  # (batch, time)
    steps = ink
    if config.positions:
        steps = model.get_layer("positions")(ink, mask)  # (batch, time, 5)
    if config.aspect_ratio:
        steps = model.get_layer("aspect_ratio")(steps, log_aspect, mask)
    if config.directions:
        steps = model.get_layer("directions")(steps, mask)
    for index in range(len(config.num_conv)):
        if config.batch_norm:
            steps = model.get_layer(f"conv_batch_norm_{index}")(steps, mask, training=False)
        steps = model.get_layer(f"conv_zero_padding_{index}")(steps, mask)
        steps = model.get_layer(f"conv_{index}")(steps)  # (batch, time, filters)
    for index in range(config.num_layers):
        layer = model.get_layer(f"rnn_{index}")
        if config.cell_type == "lstm":
            forward = _fused_lstm(layer.forward_layer.cell, steps, lengths, reverse=False)
            backward = _fused_lstm(layer.backward_layer.cell, steps, lengths, reverse=True)
            steps = tf.concat([forward, backward], axis=-1) * tf.cast(mask, steps.dtype)[..., None]
        else:
            steps = layer(steps, mask=mask, training=False)  # (batch, time, 2 * num_nodes)
    summed = model.get_layer("sum_over_time")(steps, mask)  # (batch, 2 * num_nodes)
    logits = model.get_layer("logits")(summed)
    if config.raster:
        image = model.get_layer("raster")(ink, mask, log_aspect if config.aspect_ratio else None)
        raster_logits = model.get_layer("raster_network")(image, training=False)
        logits = model.get_layer("branch_mean")([logits, raster_logits])
    return logits


def averaged_logits(logits_fn, features: dict, views: int):
    """The logits of the class probabilities averaged over `views` views of each drawing
    (`--test_time_views`; `trainer.augment.prediction_views`): log of the mean of the
    softmax of `logits_fn` over the views, so that softmax, top-k and cross-entropy read
    the average. With one view, `logits_fn(features)` itself.

    Args:
      logits_fn: features -> (batch, classes) logits (the model, or `inference_logits`).
      features: the model's inputs (`INK`, `LENGTHS`, with `--aspect_ratio` `LOG_ASPECT`).
    """
    if views == 1:
        return logits_fn(features)
    ink = augment.prediction_views(features[INK], features[LENGTHS], views)
    batch, time = tf.shape(ink)[1], tf.shape(ink)[2]
    # All views in one batch: (views * batch, ...), view-major.
    flat = {name: tf.tile(value, [views]) for name, value in features.items() if name != INK}
    flat[INK] = tf.reshape(ink, [views * batch, time, schema.INK_COLUMNS])
    probabilities = tf.nn.softmax(logits_fn(flat))  # (views * batch, classes)
    return _log_of_mean(tf.reshape(probabilities, [views, batch, -1]))


def _fused_lstm(cell, steps, lengths, reverse):
    """One direction of a masked Keras LSTM over right-padded (batch, time, channels).

    Padding follows each drawing's real steps, so it cannot reach them going forward;
    going backward, each drawing is reversed within its own length first.
    """
    if reverse:
        steps = tf.reverse_sequence(steps, lengths, seq_axis=1, batch_axis=0)
    units = cell.units
    zeros = tf.zeros([tf.shape(steps)[0], units], steps.dtype)
    peephole = tf.zeros([units], steps.dtype)
    outputs = tf.raw_ops.BlockLSTMV2(
        seq_len_max=tf.cast(tf.shape(steps)[1], tf.int64),
        x=tf.transpose(steps, [1, 0, 2]),  # (time, batch, channels)
        cs_prev=zeros,
        h_prev=zeros,
        w=tf.concat([cell.kernel, cell.recurrent_kernel], axis=0),
        wci=peephole,
        wcf=peephole,
        wco=peephole,
        b=cell.bias,
        cell_clip=-1.0,  # no clipping
        use_peephole=False,
    ).h
    outputs = tf.transpose(outputs, [1, 0, 2])  # (batch, time, units)
    if reverse:
        outputs = tf.reverse_sequence(outputs, lengths, seq_axis=1, batch_axis=0)
    return outputs


@keras.saving.register_keras_serializable(package="trainer")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak`, then constant or cosine decay to zero at `total_steps`."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, decay: str):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.decay = decay

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rate = ops.convert_to_tensor(self.peak, "float32")
        if self.warmup_steps:
            rate = rate * ops.minimum(1.0, (step + 1.0) / self.warmup_steps)
        if self.decay == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            rate = rate * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return rate

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
        }


def make_optimizer(config: Config) -> keras.optimizers.Optimizer:
    """Adam on the configured schedule, keeping a moving average of the weights when
    `--ema_decay` is set (`finalize_variable_values` copies it into the model). Gradient
    clipping is done by the training step, on the gradient summed over all replicas (see
    `trainer.train`)."""
    schedule = WarmupSchedule(
        config.learning_rate, config.warmup_steps, config.steps, config.lr_schedule
    )
    return keras.optimizers.Adam(
        learning_rate=schedule,
        weight_decay=config.weight_decay or None,
        use_ema=config.ema_decay > 0,
        ema_momentum=config.ema_decay,  # read only when use_ema
    )
