"""`quickdraw.ink`'s math in TensorFlow, on padded batches: the one place the graph scales
points to [0, 1], takes their deltas, and recovers points from deltas.

The exported model takes drawings as users produce them, absolute points, and must feed the
classifier exactly what the pipeline wrote into the TFRecords: `ink_from_points` and
`log_aspect_from_points` repeat `quickdraw.ink.normalize`, `quickdraw.ink.deltas` and
`quickdraw.ink.log_aspect` step by step, in float32 and in the same order, so the two agree to
the last bit (the logarithm to within a rounding step); `tests/trainer/test_export.py` holds
them equal on real drawings. Training's distortions (`trainer.augment`) and the model's
layers (`trainer.layers`, `trainer.raster`) scale and bound points with the same `bounds` and
`normalize`; the distortions work on the points of `points_from_deltas`, numbered by stroke
with `stroke_of_point`, and take their ink back with `normalized_deltas`.
"""

from __future__ import annotations

import tensorflow as tf

from quickdraw import ink as ink_math


def ink_from_points(points, lengths):
    """Normalizes each drawing and turns its points into deltas.

    Args:
      points: (batch, time, 3) float32 absolute points (x, y, end_of_stroke), each drawing
        right-padded to the longest; the padding may hold anything.
      lengths: (batch,) int, the number of points of each drawing.

    Returns:
      ink: (batch, time - 1, 3) float32, the pipeline's ink of each drawing, zeros past its
        length.
      ink_lengths: (batch,) int32, `lengths - 1` (0 for a drawing of fewer than 2 points).
    """
    points = tf.convert_to_tensor(points, tf.float32)
    lengths = tf.cast(lengths, tf.int32)
    time = tf.shape(points)[1]
    valid = tf.sequence_mask(lengths, time)[:, :, tf.newaxis]  # (batch, time, 1)
    coordinates = points[:, :, ink_math.X : ink_math.Y + 1]  # (batch, time, 2)

    normalized = normalize(coordinates, valid)  # (batch, time, 2)
    # deltas(): each point minus the previous one, the first row dropped.
    steps = normalized[:, 1:] - normalized[:, :-1]  # (batch, time - 1, 2)
    end_of_stroke = points[:, 1:, ink_math.END_OF_STROKE :]  # (batch, time - 1, 1)
    ink = tf.concat([steps, end_of_stroke], axis=-1)  # (batch, time - 1, 3)

    ink_lengths = tf.maximum(lengths - 1, 0)
    keep = tf.sequence_mask(ink_lengths, tf.maximum(time - 1, 0))[:, :, tf.newaxis]
    # tf.where, not a multiplication: a drawing with no points has inf - inf = nan here.
    return tf.where(keep, ink, tf.zeros_like(ink)), ink_lengths


def log_aspect_from_points(points, lengths):
    """`quickdraw.ink.log_aspect` of each drawing: log(width / height), each extent floored
    at `ASPECT_FLOOR` times the larger; 0 when the points coincide (or there are none).

    Args:
      points, lengths: as for `ink_from_points`.

    Returns:
      (batch,) float32.
    """
    points = tf.convert_to_tensor(points, tf.float32)
    lengths = tf.cast(lengths, tf.int32)
    valid = tf.sequence_mask(lengths, tf.shape(points)[1])[:, :, tf.newaxis]  # (batch, time, 1)
    lower, upper = bounds(points[:, :, ink_math.X : ink_math.Y + 1], valid)
    extents = upper - lower  # (batch, 2): width, height
    larger = tf.reduce_max(extents, axis=1, keepdims=True)  # (batch, 1)
    floored = tf.maximum(extents, larger * ink_math.ASPECT_FLOOR)
    # The branch not taken may be nan (no points: -inf extents); tf.where drops it.
    floored = tf.where(larger > 0, floored, tf.ones_like(floored))
    return tf.math.log(floored[:, 0] / floored[:, 1])


def bounds(points, real):
    """The min and max of x and y over each drawing's real points: (batch, 2) each.

    Args:
      points: (batch, time, 2) float32.
      real: (batch, time, 1), true (or non-zero) on the real points; a drawing with none
        gets +inf and -inf.
    """
    real = tf.broadcast_to(tf.cast(real, tf.bool), tf.shape(points))
    lower = tf.reduce_min(tf.where(real, points, float("inf")), axis=1)
    upper = tf.reduce_max(tf.where(real, points, float("-inf")), axis=1)
    return lower, upper


def normalize(points, real):
    """`quickdraw.ink.normalize`: (batch, time, 2) points scaled to [0, 1] by each drawing's
    own min and max over its `real` points (see `bounds`); a zero range scales by 1."""
    lower, upper = bounds(points, real)  # (batch, 2) each
    extent = upper - lower
    extent = tf.where(extent > 0, extent, tf.ones_like(extent))
    return (points - lower[:, None]) / extent[:, None]


def points_from_deltas(ink, lengths):
    """Each drawing's points, recovered from its first `lengths` rows of ink: the inverse of
    the deltas up to a shift, as `quickdraw.ink.points_from_deltas` recovers one drawing's.

    Args:
      ink: (batch, time, 3) float32 deltas and end_of_stroke.
      lengths: (batch,) int32, the rows of ink of each drawing.

    Returns:
      points: (batch, time + 1, 2), points 1..n relative to point 0, which is the origin;
        padded points repeat the last real one.
      row_mask: (batch, time, 1) float32, 1 on the real rows of ink.
      point_mask: (batch, time + 1, 1) float32, 1 on the real points.
    """
    time = tf.shape(ink)[1]
    row_mask = tf.sequence_mask(lengths, time, dtype=tf.float32)[..., None]
    points = tf.cumsum(ink[..., :2] * row_mask, axis=1)
    points = tf.concat([tf.zeros_like(points[:, :1]), points], axis=1)
    point_mask = tf.sequence_mask(lengths + 1, time + 1, dtype=tf.float32)[..., None]
    return points, row_mask, point_mask


def normalized_deltas(points, row_mask, point_mask):
    """(batch, time, 2): the steps between the points of `points_from_deltas`, after scaling
    x and y to [0, 1] by the real points' own min and max (`normalize`), zero past each
    length: the ink's first two columns, as the pipeline would write them for these points."""
    points = normalize(points, point_mask)
    return (points[:, 1:] - points[:, :-1]) * row_mask


def stroke_of_point(end_of_stroke):
    """(batch, time + 1) int32, the stroke of each point of `points_from_deltas`, from
    (batch, time, 1) end_of_stroke. Point k > 0 belongs to the stroke numbered by the
    strokes ended before row k - 1; point 0 starts stroke 0, like point 1 (its own
    end_of_stroke is not in the ink)."""
    stroke_of_row = tf.cast(tf.cumsum(end_of_stroke[..., 0], axis=1, exclusive=True), tf.int32)
    return tf.concat([tf.zeros_like(stroke_of_row[:, :1]), stroke_of_row], axis=1)
