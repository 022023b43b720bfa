"""The classifier's own Keras layers: masks, extra input channels, masked sums and batch norm.

Every layer takes the (batch, time) mask of the drawing's real steps (`StepMask`) and keeps
padded steps out of what it computes, so a drawing's prediction never depends on how long the
other drawings of its batch are. `trainer.model` wires them; `trainer.raster` holds the image
branch's.
"""

from __future__ import annotations

import keras
from keras import ops

from trainer import replicas, tf_ink


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


def real_steps(inputs, real):
    """The ink's two step channels (dx, dy) of (batch, time, channels), zero where `real`,
    (batch, time, 1) bool, is false."""
    return ops.where(real, inputs[..., :2], ops.zeros_like(inputs[..., :2]))


def step_bounds(ends, real):
    """(batch, 2) smallest and (batch, 2) largest x and y of each drawing's points: the ends
    of its real steps, (batch, time, 2) where `real`, and the first point, which the ink
    drops, at 0."""
    lowest, highest = tf_ink.bounds(ends, real)
    return ops.minimum(lowest, 0.0), ops.maximum(highest, 0.0)


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
        steps = real_steps(inputs, real)
        relative = ops.cumsum(steps, axis=1)  # (batch, time, 2)
        lowest, _ = step_bounds(relative, real)  # (batch, 2): the first point counts too
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
        steps = real_steps(inputs, ops.expand_dims(mask, -1))
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
            count, total = replicas.sum_over_replicas(
                [ops.sum(weights), ops.sum(inputs * weights, (0, 1))]
            )
            mean = total / ops.maximum(count, 1.0)  # (channels,)
            (squares,) = replicas.sum_over_replicas(
                [ops.sum(ops.square(inputs - mean) * weights, (0, 1))]
            )
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
