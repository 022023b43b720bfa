"""Test-time views: several versions of each drawing whose class probabilities are averaged
(`--test_time_views`), in evaluation and in the serving signature alike.

View 0 is the drawing itself; the others are `trainer.augment.image_batch`'s distortions at
half strength, from a fixed seed and from each drawing alone, so a drawing gets the same
prediction however it is sent.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from quickdraw import schema
from trainer import augment

# The views `--test_time_views` averages over: half the training strengths, so that each
# view is a drawing the model could have been trained on, not one at the edge of it, and
# only the distortions of `image_batch`: strokes in another order or direction change what
# the image branch (`--raster`) reads in its second channel, and made its views worse than
# the drawing alone, where the recurrent branch scored the same either way
# (docs/accuracy.md, "Views that keep the strokes' order").
TEST_TIME = augment.IMAGE.scaled(0.5)
_TEST_TIME_SEED = (20261122, 0)


def prediction_views(ink, lengths, views: int, config: augment.AugmentConfig = TEST_TIME):
    """`views` versions of every drawing: the ink itself, then `views - 1` distorted copies.

    Each drawing's copies are drawn from a fixed seed and from that drawing alone, cut to
    its own length, so they do not depend on the other drawings of the batch, on its place
    in the batch or on the padding: a drawing gets the same prediction however it is sent.

    Args:
      ink: (batch, time, 3) float32 deltas and end_of_stroke, zero past each length.
      lengths: (batch,) integer.
      views: at least 1.

    Returns:
      (views, batch, time, 3) float32; view 0 is `ink`.
    """
    if views < 1:
        raise ValueError(f"views must be at least 1, got {views}")
    ink = tf.convert_to_tensor(ink, tf.float32)
    if views == 1:
        return ink[None]
    lengths = tf.cast(lengths, tf.int32)
    time = tf.shape(ink)[1]
    seed = tf.constant(_TEST_TIME_SEED, tf.int64)

    def copies(drawing_and_length):
        drawing, length = drawing_and_length
        own = tf.tile(drawing[None, :length], [views - 1, 1, 1])  # (views - 1, length, 3)
        distorted = augment.augment_batch(own, tf.fill([views - 1], length), seed, config)
        return tf.pad(distorted, [[0, 0], [0, time - length], [0, 0]])

    distorted = tf.map_fn(
        copies,
        (ink, lengths),
        fn_output_signature=tf.TensorSpec([views - 1, None, 3], tf.float32),
    )  # (batch, views - 1, time, 3)
    return tf.concat([ink[None], tf.transpose(distorted, [1, 0, 2, 3])], axis=0)


def averaged_logits(logits_fn, features: dict, views: int):
    """The logits of the class probabilities averaged over `views` views of each drawing
    (`--test_time_views`; `prediction_views`): log of the mean of the
    softmax of `logits_fn` over the views, so that softmax, top-k and cross-entropy read
    the average. With one view, `logits_fn(features)` itself.

    Args:
      logits_fn: features -> (batch, classes) logits (the model, or `inference_logits`).
      features: the model's inputs (`schema.INK`, `schema.LENGTHS`, with `--aspect_ratio`
        `schema.LOG_ASPECT`).
    """
    if views == 1:
        return logits_fn(features)
    ink = prediction_views(features[schema.INK], features[schema.LENGTHS], views)
    batch, time = tf.shape(ink)[1], tf.shape(ink)[2]
    # All views in one batch: (views * batch, ...), view-major.
    flat = {name: tf.tile(value, [views]) for name, value in features.items() if name != schema.INK}
    flat[schema.INK] = tf.reshape(ink, [views * batch, time, schema.INK_COLUMNS])
    probabilities = tf.nn.softmax(logits_fn(flat))  # (views * batch, classes)
    return _log_of_mean(tf.reshape(probabilities, [views, batch, -1]))


def _log_of_mean(probabilities, axis=0):
    """The logits of class probabilities averaged over `axis`; a class that none of them gives
    any probability keeps a finite logit."""
    mean = tf.reduce_mean(probabilities, axis=axis)
    return tf.math.log(tf.maximum(mean, np.finfo(np.float32).tiny))
