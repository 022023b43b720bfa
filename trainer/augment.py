"""Random distortions of the ink, applied to whole padded batches while training.

The model reads each drawing as deltas of its points after the pipeline scaled x and y to
[0, 1] (`quickdraw.ink`). Distorting those deltas directly would drift: a small error in
every step adds up along the drawing. So `augment_batch` works on the points themselves:

1. it recovers each drawing's normalized points by a cumulative sum of the deltas (the
   first point, which the ink drops, is the origin);
2. it reverses the direction of some strokes (stroke reversal: players draw a circle
   either way round), puts the strokes of some drawings in another order (stroke order),
   splits a few strokes in two and joins a few to the next (stroke split and join: one
   player lifts the pen where another does not), then moves every point a little (point
   jitter) and every stroke a little (stroke jitter);
3. it applies a random linear map: scaling of each axis, shear, then rotation;
4. it scales x and y back to [0, 1] by the drawing's own min and max, as the pipeline and
   the serving signature do, so the model never sees a drawing out of that range;
5. it takes the deltas again and drops the first point.

Step 4 undoes any translation and any scaling along the axes that comes last, so scaling
only matters because the rotation and the shear follow it. A drawing whose x or y range is
zero (a straight horizontal or vertical line) comes back unchanged: any rotation or jitter
would be stretched to the full [0, 1] range by step 4 and turn the line into a diagonal or
a scribble. end_of_stroke stays on the last point of each stroke, and padded steps stay
zero.

`truncate_batch` cuts some drawings short, as the pipeline would have written them had the
player stopped early (the game stops a drawing once it recognizes it, so players' drawings
end at many points). `training_batch`, what `--augment` applies to each training batch,
cuts first and distorts the rest.

Everything is TensorFlow ops on tensors of any batch size and length, so the functions run
inside `tf.data.Dataset.map` or a `tf.function`.

`prediction_views` uses `image_batch`'s distortions (the linear map and jitter of
`augment_batch`) at half strength, with a fixed seed, to give evaluation and the serving
model several views of each drawing (`--test_time_views`); every view holds the whole
drawing (no cuts), its strokes in the order and direction they were drawn.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from trainer import tf_ink

# A drawing whose recovered x or y range is below this is a straight line; its normalized
# range is otherwise 1 up to rounding.
_DEGENERATE_RANGE = 0.5


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """How strong each distortion is. All zero leaves the ink unchanged; the defaults are
    the strengths that `--augment` trains with.

    Attributes:
      scale: each axis is scaled by a factor drawn uniformly from [1 - scale, 1 + scale]
        before the shear and the rotation.
      shear: the shear factor (x += shear * y) is drawn uniformly from [-shear, shear].
      rotation_degrees: the rotation is drawn uniformly from [-rotation_degrees,
        rotation_degrees].
      point_jitter: standard deviation of the Gaussian noise added to every point, in
        units of the drawing's normalized size.
      stroke_jitter: standard deviation of the Gaussian offset added to every stroke as a
        whole, in the same units.
      stroke_reversal: the probability that a stroke is drawn backwards (its points in
        reverse order; the stroke keeps its place among the others). Of all the
        distortions this one helped most on held-out drawings (docs/accuracy.md).
      stroke_order: the probability that a drawing's strokes are drawn in a random order
        (each stroke keeps its own points and direction; the pen then jumps between them
        in the new order). With stroke reversal, it keeps the model from memorizing the
        order in which 120 players per category happened to draw (docs/accuracy.md).
      stroke_split: the probability that the pen lifts after a point inside a stroke,
        splitting the stroke there in two (the pen jump is the same step as before).
      stroke_join: the probability that a stroke's end, other than the drawing's last,
        is not a pen lift: the stroke runs on into the next. With `stroke_split` and
        the cuts of `truncate_batch`, it raised accuracy on held-out drawings whose players
        drew in more strokes than most (docs/accuracy.md).
    """

    scale: float = 0.1
    shear: float = 0.2
    rotation_degrees: float = 15.0
    point_jitter: float = 0.01
    stroke_jitter: float = 0.02
    stroke_reversal: float = 0.3
    stroke_order: float = 0.8
    stroke_split: float = 0.02
    stroke_join: float = 0.1

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"augmentation {field.name} must be a number >= 0, got {value!r}")
        if self.scale >= 1:
            raise ValueError(f"augmentation scale must be below 1, got {self.scale}")
        for name in ("stroke_reversal", "stroke_order", "stroke_split", "stroke_join"):
            if getattr(self, name) > 1:
                raise ValueError(
                    f"augmentation {name} must be at most 1, got {getattr(self, name)}"
                )
        if self.rotation_degrees > 180:
            raise ValueError(
                f"augmentation rotation_degrees must be at most 180, got {self.rotation_degrees}"
            )

    def scaled(self, factor: float) -> AugmentConfig:
        """Every strength times `factor`."""
        return AugmentConfig(
            **{field.name: getattr(self, field.name) * factor for field in dataclasses.fields(self)}
        )


def _int64_seed(seed, requirement: str):
    """A stateless seed as int64 (int32 and int64 seeds of equal values draw alike), or a
    ValueError that starts with `requirement`."""
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64) or seed.shape != (2,):
        raise ValueError(f"{requirement}, got dtype {seed.dtype.name} and shape {seed.shape}")
    return tf.cast(seed, tf.int64)


class _Randomness:
    """Draws from a `tf.random.Generator`, or statelessly from a seed of shape (2,)."""

    def __init__(self, seed_or_generator):
        if isinstance(seed_or_generator, tf.random.Generator):
            self._generator = seed_or_generator
            self._seeds = None
        else:
            seed = _int64_seed(
                seed_or_generator,
                "seed_or_generator must be a tf.random.Generator or an integer seed of shape (2,)",
            )
            self._generator = None
            # One independent seed for each of the draws below.
            self._seeds = iter(tf.unstack(tf.random.experimental.stateless_split(seed, num=9)))

    def uniform(self, shape, bound):
        if self._generator is not None:
            return self._generator.uniform(shape, -bound, bound)
        return tf.random.stateless_uniform(shape, next(self._seeds), -bound, bound)

    def probability(self, shape):
        """Uniform in [0, 1)."""
        if self._generator is not None:
            return self._generator.uniform(shape)
        return tf.random.stateless_uniform(shape, next(self._seeds))

    def normal(self, shape, stddev):
        if self._generator is not None:
            return self._generator.normal(shape, stddev=stddev)
        return tf.random.stateless_normal(shape, next(self._seeds), stddev=stddev)


def augment_batch(ink, lengths, seed_or_generator, config: AugmentConfig = AugmentConfig()):
    """Distorts a padded batch of ink.

    Args:
      ink: (batch, time, 3) float32 deltas and end_of_stroke, zero past each length.
      lengths: (batch,) integer, the rows of ink of each drawing.
      seed_or_generator: a `tf.random.Generator`, or an integer tensor of shape (2,) for
        stateless randomness (equal seeds give equal results).
      config: the strengths of the distortions.

    Returns:
      (batch, time, 3) float32: the distorted ink, zero past each length. end_of_stroke
      changes only where strokes moved, split or joined; the last row of each drawing
      keeps it.
    """
    ink, lengths, randomness = _checked(ink, lengths, seed_or_generator)
    batch_size, time = tf.shape(ink)[0], tf.shape(ink)[1]

    end_of_stroke = ink[..., 2:]  # (batch, time, 1)
    points, row_mask, point_mask = tf_ink.points_from_deltas(ink, lengths)
    original_lower, original_upper = tf_ink.bounds(points, point_mask)  # (batch, 2) each
    is_line = tf.reduce_any(original_upper - original_lower < _DEGENERATE_RANGE, axis=1)

    stroke_of_point = tf_ink.stroke_of_point(end_of_stroke)
    if config.stroke_reversal:
        # A drawing has at most time + 1 strokes: one draw per point slot is enough.
        reversed_strokes = randomness.probability([batch_size, time + 1]) < config.stroke_reversal
        points = _reverse_strokes(points, stroke_of_point, lengths, reversed_strokes)
    if config.stroke_order:
        # A straight line keeps its ink (see above), so its strokes keep their order too.
        shuffled = (randomness.probability([batch_size]) < config.stroke_order) & ~is_line
        stroke_keys = randomness.probability([batch_size, time + 1])
        points, new_stroke_of_point = _shuffle_strokes(
            points, stroke_of_point, lengths, shuffled, stroke_keys
        )
        # The last point of each stroke ends it; the ink's first row is point 1.
        next_stroke = tf.concat([new_stroke_of_point[:, 1:], -tf.ones_like(lengths)[:, None]], 1)
        ends = tf.cast(new_stroke_of_point != next_stroke, tf.float32) * point_mask[..., 0]
        end_of_stroke = tf.where(shuffled[:, None, None], ends[:, 1:, None], end_of_stroke)
        stroke_of_point = new_stroke_of_point
    if config.stroke_split or config.stroke_join:
        # Any row but a drawing's last; a straight line keeps its ink, and its strokes.
        row = tf.range(time)[None]  # (1, time)
        inner = (row < (lengths - 1)[:, None]) & ~is_line[:, None]
        ends = end_of_stroke[..., 0] > 0.5  # (batch, time)
        draws = randomness.probability([batch_size, time])
        split = inner & ~ends & (draws < config.stroke_split)
        join = inner & ends & (draws < config.stroke_join)
        end_of_stroke = tf.cast((ends | split) & ~join, tf.float32)[..., None] * row_mask
        stroke_of_point = tf_ink.stroke_of_point(end_of_stroke)
    stroke_offsets = randomness.normal([batch_size, time + 1, 2], config.stroke_jitter)
    points += tf.gather(stroke_offsets, stroke_of_point, batch_dims=1)
    points += randomness.normal([batch_size, time + 1, 2], config.point_jitter)

    scales = 1.0 + randomness.uniform([batch_size, 2], config.scale)  # (batch, 2)
    shears = randomness.uniform([batch_size], config.shear)
    angles = randomness.uniform([batch_size], config.rotation_degrees * math.pi / 180.0)
    x = points[..., 0] * scales[:, None, 0]  # (batch, time + 1)
    y = points[..., 1] * scales[:, None, 1]
    x += shears[:, None] * y
    cosines, sines = tf.cos(angles)[:, None], tf.sin(angles)[:, None]
    points = tf.stack([cosines * x - sines * y, sines * x + cosines * y], axis=-1)

    distorted = tf_ink.normalized_deltas(points, row_mask, point_mask)
    deltas = tf.where(is_line[:, None, None], ink[..., :2] * row_mask, distorted)
    return tf.concat([deltas, end_of_stroke], axis=-1)


def truncate_batch(
    ink, lengths, seed_or_generator, *, probability=0.3, shortest=0.6, fewest_rows=8
):
    """Cuts some drawings of a padded batch short, as if their players had stopped early.

    A drawing picked with `probability` keeps its first ceil(length * f) rows, f drawn
    uniformly from [shortest, 1], and never fewer than min(length, fewest_rows). Its new
    last row ends a stroke, and its points are scaled back to [0, 1] by their own min and
    max, as `quickdraw.ink.normalize` scales a whole drawing: the result is the ink the
    pipeline writes for the shorter drawing. Other drawings come back as they were. A
    drawing's `log_aspect` is not recomputed (the scaling of `augment_batch` leaves it too).

    Args:
      ink: (batch, time, 3) float32 deltas and end_of_stroke, zero past each length.
      lengths: (batch,) integer, the rows of ink of each drawing.
      seed_or_generator: as for `augment_batch`.
      probability: the share of drawings cut, in [0, 1].
      shortest: the least share of its rows a cut drawing keeps, in (0, 1].
      fewest_rows: a cut drawing keeps at least this many rows (or all it has), >= 1.

    Returns:
      (ink, lengths): (batch, time, 3) float32, zero past each new length, and (batch,)
      int32 new lengths.
    """
    if not 0 <= probability <= 1:
        raise ValueError(f"truncation probability must be in [0, 1], got {probability}")
    if not 0 < shortest <= 1:
        raise ValueError(f"truncation shortest must be in (0, 1], got {shortest}")
    if fewest_rows < 1:
        raise ValueError(f"truncation fewest_rows must be at least 1, got {fewest_rows}")
    ink, lengths, randomness = _checked(ink, lengths, seed_or_generator)
    batch_size, time = tf.shape(ink)[0], tf.shape(ink)[1]

    picked = randomness.probability([batch_size]) < probability
    share = shortest + (1 - shortest) * randomness.probability([batch_size])
    kept = tf.cast(tf.math.ceil(tf.cast(lengths, tf.float32) * share), tf.int32)
    kept = tf.clip_by_value(kept, tf.minimum(lengths, fewest_rows), lengths)
    new_lengths = tf.where(picked, kept, lengths)

    points, row_mask, point_mask = tf_ink.points_from_deltas(ink, new_lengths)
    deltas = tf_ink.normalized_deltas(points, row_mask, point_mask)
    last_row = tf.one_hot(new_lengths - 1, time)[..., None]
    end_of_stroke = tf.maximum(ink[..., 2:] * row_mask, last_row)
    cut = tf.concat([deltas, end_of_stroke], axis=-1)
    return tf.where((new_lengths < lengths)[:, None, None], cut, ink), new_lengths


def training_batch(ink, lengths, seed, config: AugmentConfig = AugmentConfig()):
    """What `--augment` does to each training batch: `truncate_batch`, then `augment_batch`
    on what is left.

    Args:
      ink, lengths: as for `augment_batch`.
      seed: an integer tensor of shape (2,); equal seeds give equal results.
      config: the strengths of `augment_batch`'s distortions.

    Returns:
      (ink, lengths): the distorted ink and the (batch,) int32 lengths after the cuts.
    """
    seed = _int64_seed(seed, "seed must be an integer tensor of shape (2,)")
    cut_seed, distort_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    ink, lengths = truncate_batch(ink, lengths, cut_seed)
    return augment_batch(ink, lengths, distort_seed, config), lengths


# What `image_batch` keeps of `augment_batch`: the linear map and the jitter, not the
# changes to the strokes' order, direction or number.
IMAGE = AugmentConfig(stroke_reversal=0.0, stroke_order=0.0, stroke_split=0.0, stroke_join=0.0)


def image_batch(ink, lengths, seed):
    """What `--augment` gives `--raster`'s image branch (`trainer.raster.training_image_fn`),
    apart from `training_batch`: the whole drawing (no cuts), its strokes in the order and
    direction they were drawn, under `augment_batch`'s linear map and jitter. The image's
    second channel holds when each pixel was drawn, so strokes put in another order would
    be noise there, and a drawing cut short is another picture, where the recurrent branch
    reads it as a drawing stopped early.

    Args:
      ink, lengths: as for `augment_batch`.
      seed: an integer tensor of shape (2,); equal seeds give equal results.

    Returns:
      (batch, time, 3) float32: the distorted ink; the lengths stay as they were.
    """
    seed = _int64_seed(seed, "seed must be an integer tensor of shape (2,)")
    return augment_batch(ink, lengths, seed, IMAGE)


def _checked(ink, lengths, seed_or_generator):
    """The ink as float32 (a clear error unless it is (batch, time, 3)), the lengths as int32,
    and the source of the random draws."""
    ink = tf.convert_to_tensor(ink, tf.float32)
    if ink.shape.rank != 3 or ink.shape[-1] != 3:
        raise ValueError(f"ink must have shape (batch, time, 3), got {ink.shape}")
    return ink, tf.cast(lengths, tf.int32), _Randomness(seed_or_generator)


def _reverse_strokes(points, stroke_of_point, lengths, reversed_strokes):
    """Reverses the order of the points within the strokes picked by `reversed_strokes`.

    Args:
      points: (batch, time + 1, 2) points; point k of a drawing is real for k <= length.
      stroke_of_point: (batch, time + 1) int32, the stroke of each point.
      lengths: (batch,) int32 rows of ink.
      reversed_strokes: (batch, time + 1) bool, indexed by stroke number.
    """
    batch_size, slots = tf.shape(points)[0], tf.shape(points)[1]
    index = tf.broadcast_to(tf.range(slots)[None], [batch_size, slots])  # (batch, slots)
    is_real = index <= lengths[:, None]
    # One segment per (drawing, stroke); padded points go to a last, unused segment.
    segments = batch_size * slots
    segment = tf.where(is_real, stroke_of_point + tf.range(batch_size)[:, None] * slots, segments)
    first = tf.gather(tf.math.unsorted_segment_min(index, segment, segments + 1), segment)
    last = tf.gather(tf.math.unsorted_segment_max(index, segment, segments + 1), segment)
    flip = tf.gather(reversed_strokes, stroke_of_point, batch_dims=1) & is_real
    source = tf.where(flip, first + last - index, index)  # (batch, slots)
    return tf.gather(points, source, batch_dims=1)


def _shuffle_strokes(points, stroke_of_point, lengths, shuffled, stroke_keys):
    """Puts the strokes of the drawings picked by `shuffled` in the order of `stroke_keys`.

    Args:
      points: (batch, time + 1, 2) points; point k of a drawing is real for k <= length.
      stroke_of_point: (batch, time + 1) int32, the stroke of each point.
      lengths: (batch,) int32 rows of ink.
      shuffled: (batch,) bool, the drawings whose strokes move.
      stroke_keys: (batch, time + 1) float in [0, 1), indexed by stroke number: strokes are
        drawn in increasing key order.

    Returns:
      The points in their new order and the new stroke number of each point (its stroke's
      rank in the new order), both with padded points still last. (The ink has no
      end_of_stroke for a drawing's first point, so a one-point stroke moved to the front
      joins the stroke after it.)
    """
    slots = tf.shape(points)[1]
    index = tf.range(slots)[None]  # (1, slots)
    is_real = index <= lengths[:, None]
    # Strokes past the drawing's last get keys above every real stroke's, so the new ranks
    # of the real strokes are 0..strokes - 1.
    strokes = tf.reduce_max(tf.where(is_real, stroke_of_point, 0), axis=1) + 1  # (batch,)
    keys = tf.where(index < strokes[:, None], stroke_keys, 2.0)
    keys = tf.where(shuffled[:, None], keys, tf.cast(index, tf.float32))
    rank = tf.argsort(tf.argsort(keys, axis=1, stable=True), axis=1, stable=True)
    new_stroke = tf.gather(rank, stroke_of_point, batch_dims=1)  # (batch, slots)
    # Sort the points by (new stroke, position): padded points after every real one.
    order_key = tf.cast(tf.where(is_real, new_stroke, slots), tf.int64) * tf.cast(
        slots, tf.int64
    ) + tf.cast(index, tf.int64)
    source = tf.argsort(order_key, axis=1, stable=True)
    return tf.gather(points, source, batch_dims=1), tf.gather(new_stroke, source, batch_dims=1)
