"""Ink augmentation: shapes, padding, end_of_stroke, identity, the size of each distortion,
determinism, and real drawings."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from quickdraw import ink as ink_math
from tests.support.ink_batches import (
    NONE,
    PLUS,
    STRONG,
    affine_residual,
    only,
    padded,
    points_of,
    random_drawings,
    random_points,
)
from tests.support.trainer_fixtures import read_drawings, require_shared_quickdraw
from trainer.augment import (
    AugmentConfig,
    augment_batch,
    image_batch,
    training_batch,
    truncate_batch,
)


@pytest.fixture(scope="module")
def batch():
    return padded(random_drawings(64), time=80)  # extra padding past the longest drawing


def test_shape_padding_and_end_of_stroke(batch):
    ink, lengths = batch
    out = augment_batch(ink, lengths, tf.constant([1, 2]), STRONG).numpy()
    assert out.shape == ink.shape and out.dtype == np.float32
    padding = np.arange(ink.shape[1])[None, :] >= lengths[:, None]  # (batch, time)
    assert np.all(out[padding] == 0)
    np.testing.assert_array_equal(out[..., 2], ink[..., 2])
    assert np.abs(out[..., :2] - ink[..., :2]).max() > 0.01  # it did distort


def test_points_stay_normalized(batch):
    ink, lengths = batch
    out = augment_batch(ink, lengths, tf.constant([3, 4]), STRONG).numpy()
    for row, length in enumerate(lengths):
        points = points_of(out[row], length)
        np.testing.assert_allclose(points.max(axis=0) - points.min(axis=0), [1, 1], atol=1e-5)


def test_zero_strengths_are_the_identity(batch):
    ink, lengths = batch
    out = augment_batch(ink, lengths, tf.constant([5, 6]), NONE).numpy()
    np.testing.assert_allclose(out, ink, atol=1e-5)


def test_axis_scaling_alone_is_undone_by_the_normalization(batch):
    ink, lengths = batch
    out = augment_batch(ink, lengths, tf.constant([5, 6]), only(scale=0.5)).numpy()
    np.testing.assert_allclose(out, ink, atol=1e-5)


def many_plus_signs(count=2000):
    return padded([PLUS] * count)


def test_rotation_turns_by_at_most_the_bound():
    # Rotating a plus sign keeps its x and y ranges equal, so the normalization keeps its
    # angles: the first stroke's direction is the angle of rotation.
    ink, lengths = many_plus_signs()
    out = augment_batch(ink, lengths, tf.constant([7, 8]), only(rotation_degrees=20))
    out = out.numpy()
    angles = np.degrees(np.arctan2(out[:, 0, 1], out[:, 0, 0]))
    assert np.abs(angles).max() <= 20 + 1e-3
    assert angles.min() < -19 and angles.max() > 19  # uniform over the whole range
    assert abs(angles.mean()) < 1.0
    np.testing.assert_allclose(np.abs(angles).mean(), 10, atol=0.6)  # uniform: mean |angle| = 10


def test_shear_slants_the_vertical_stroke_by_the_factor():
    ink, lengths = many_plus_signs()
    out = augment_batch(ink, lengths, tf.constant([9, 10]), only(shear=0.3)).numpy()
    np.testing.assert_allclose(out[:, 0, :2], np.tile([[1, 0]], (len(out), 1)), atol=1e-6)
    slants = out[:, 2, 0] / out[:, 2, 1]  # dx / dy along the vertical stroke
    assert np.abs(slants).max() <= 0.3 + 1e-5
    assert slants.min() < -0.29 and slants.max() > 0.29


def test_stroke_jitter_moves_whole_strokes():
    ink, lengths = many_plus_signs()
    config = only(stroke_jitter=0.05)
    out = augment_batch(ink, lengths, tf.constant([11, 12]), config).numpy()
    # Within each stroke the points move together: the strokes keep their directions.
    np.testing.assert_allclose(out[:, 0, 1], 0, atol=1e-6)
    np.testing.assert_allclose(out[:, 2, 0], 0, atol=1e-6)
    # The jump between the strokes moves by the difference of two offsets: sqrt(2) sigma,
    # give or take the rescaling by the normalization.
    moved = out[:, 1, :2] - ink[:, 1, :2]
    assert 0.05 < moved.std() < 0.1


def test_stroke_reversal_draws_picked_strokes_backwards():
    # An "L" (right, then down) and a separate tick; reversed, each stroke runs the other
    # way but keeps its place, and end_of_stroke stays on each stroke's last point.
    strokes = [[[0, 10, 10], [0, 0, 5]], [[2, 4], [2, 8]]]
    backwards = [[[10, 10, 0], [5, 0, 0]], [[4, 2], [8, 2]]]
    ink, lengths = padded([ink_math.ink_from_strokes(strokes)], time=7)
    out = augment_batch(ink, lengths, tf.constant([1, 2]), only(stroke_reversal=1.0)).numpy()
    np.testing.assert_allclose(out[0, :4], ink_math.ink_from_strokes(backwards), atol=1e-6)
    np.testing.assert_array_equal(out[0, 4:], 0)


def test_stroke_reversal_picks_strokes_at_its_rate(batch):
    ink, lengths = batch
    out = augment_batch(ink, lengths, tf.constant([5, 6]), only(stroke_reversal=0.5)).numpy()
    np.testing.assert_array_equal(out[..., 2], ink[..., 2])
    flipped = total = 0
    for row, length in enumerate(lengths):
        before, after = points_of(ink[row], length), points_of(out[row], length)
        ends = np.flatnonzero(ink[row, :length, 2]) + 1  # last point of each stroke
        for start, end in zip([0, *(ends[:-1] + 1)], ends):
            stroke, seen = before[start : end + 1], after[start : end + 1]
            if len(stroke) < 2 or np.allclose(stroke, stroke[::-1]):
                continue  # a one-point stroke looks the same both ways
            # Compare steps, not points: the points are measured from the drawing's first
            # point, which moves when its first stroke turns.
            steps = np.diff(seen, axis=0)
            same = np.allclose(steps, np.diff(stroke, axis=0), atol=1e-5)
            turned = np.allclose(steps, np.diff(stroke[::-1], axis=0), atol=1e-5)
            assert same or turned
            flipped += turned and not same
            total += 1
    assert 0.4 < flipped / total < 0.6


def strokes_of(ink, length):
    """One drawing's strokes, each a (points, 2) array, the drawing's lowest x and y at 0."""
    points = points_of(ink, length)
    points -= points.min(axis=0)
    ends = np.flatnonzero(ink[:length, 2]) + 1  # last point of each stroke
    return np.split(points, ends[:-1] + 1)


def same_order(strokes, others):
    return len(strokes) == len(others) and all(
        len(a) == len(b) and np.allclose(a, b, atol=1e-5) for a, b in zip(strokes, others)
    )


def order_of(strokes, original):
    """The order in which `strokes` draws the strokes of `original`, or None if it does not
    draw each of them exactly once."""
    for order in itertools.permutations(range(len(original))):
        if same_order(strokes, [original[i] for i in order]):
            return order
    return None


def test_stroke_order_draws_the_same_strokes_in_another_order():
    # Three strokes: whichever order comes out, each keeps its points and direction, and
    # end_of_stroke closes each one.
    strokes = [[[0, 10, 20], [0, 5, 0]], [[30, 40], [30, 40]], [[50, 60, 70], [10, 20, 0]]]
    ink, lengths = padded([ink_math.ink_from_strokes(strokes)] * 32, time=10)
    out = augment_batch(ink, lengths, tf.constant([3, 4]), only(stroke_order=1.0)).numpy()
    original = strokes_of(ink[0], 7)
    orders = {order_of(strokes_of(row, 7), original) for row in out}
    assert None not in orders
    assert len(orders) == 6
    np.testing.assert_array_equal(out[:, 7:], 0)


def test_stroke_order_shuffles_drawings_at_its_rate():
    # Strokes of two points or more: the ink has no end_of_stroke for a drawing's first
    # point, so a one-point stroke moved to the front joins the next stroke.
    ink, lengths = padded(random_drawings(400, seed=3, shortest_stroke=2))
    out = augment_batch(ink, lengths, tf.constant([7, 8]), only(stroke_order=0.5)).numpy()
    moved, expected = [], []
    for row, length in enumerate(lengths):
        before, after = strokes_of(ink[row], length), strokes_of(out[row], length)
        order = order_of(after, before)
        assert order is not None
        if len(before) > 1:
            moved.append(order != tuple(range(len(before))))
            # A shuffle of n strokes keeps their order with probability 1 / n!.
            expected.append(0.5 * (1 - 1 / math.factorial(len(before))))
    assert len(moved) > 200
    assert abs(np.mean(moved) - np.mean(expected)) < 0.08


def inner_rows(lengths, time):
    """(batch, time) bool: every real row but each drawing's last."""
    return np.arange(time)[None, :] < (lengths - 1)[:, None]


def test_stroke_split_lifts_the_pen_inside_strokes_at_its_rate():
    ink, lengths = padded(random_drawings(400, seed=4))
    out = augment_batch(ink, lengths, tf.constant([9, 8]), only(stroke_split=0.3)).numpy()
    # The points do not move: only end_of_stroke changes, from 0 to 1, never at the end.
    np.testing.assert_allclose(out[..., :2], ink[..., :2], atol=1e-5)
    np.testing.assert_array_equal(out[np.arange(len(lengths)), lengths - 1, 2], 1)
    assert np.all(out[..., 2] >= ink[..., 2])
    candidates = inner_rows(lengths, ink.shape[1]) & (ink[..., 2] == 0)
    split = out[..., 2] > ink[..., 2]
    assert not np.any(split & ~candidates)
    assert abs(split[candidates].mean() - 0.3) < 0.04


def test_stroke_join_keeps_the_pen_down_between_strokes_at_its_rate():
    ink, lengths = padded(random_drawings(400, seed=5))
    out = augment_batch(ink, lengths, tf.constant([7, 6]), only(stroke_join=0.5)).numpy()
    np.testing.assert_allclose(out[..., :2], ink[..., :2], atol=1e-5)
    np.testing.assert_array_equal(out[np.arange(len(lengths)), lengths - 1, 2], 1)
    assert np.all(out[..., 2] <= ink[..., 2])
    candidates = inner_rows(lengths, ink.shape[1]) & (ink[..., 2] == 1)
    joined = out[..., 2] < ink[..., 2]
    assert not np.any(joined & ~candidates)
    assert abs(joined[candidates].mean() - 0.5) < 0.06


def test_split_strokes_jitter_apart():
    # Stroke jitter moves each stroke as a whole, after the splits. An "L" drawn in one
    # stroke moves as a whole, and the rescaling to [0, 1] undoes that; split after its
    # corner, its two pieces move apart.
    ell, lengths = padded([ink_math.ink_from_strokes([[[0, 10, 10], [0, 0, 10]]])] * 64)
    jitter = only(stroke_jitter=0.05)
    kept = augment_batch(ell, lengths, tf.constant([3, 3]), jitter).numpy()
    np.testing.assert_allclose(kept, ell, atol=1e-5)
    split = dataclasses.replace(jitter, stroke_split=1.0)
    out = augment_batch(ell, lengths, tf.constant([3, 3]), split).numpy()
    np.testing.assert_array_equal(out[..., 2], [[1, 1]] * 64)
    assert np.abs(out[..., :2] - ell[..., :2]).max() > 0.05


def test_straight_lines_keep_their_strokes():
    line = ink_math.ink_from_strokes([[[0, 50, 100], [7, 7, 7]], [[150, 200], [7, 7]]])
    ink, lengths = padded([line])
    config = only(stroke_split=1.0, stroke_join=1.0)
    np.testing.assert_array_equal(augment_batch(ink, lengths, tf.constant([1, 1]), config), ink)


def test_point_jitter_moves_every_point_by_about_sigma(batch):
    ink, lengths = batch
    sigma = 0.01
    out = augment_batch(ink, lengths, tf.constant([13, 14]), only(point_jitter=sigma))
    out = out.numpy()
    real = np.arange(ink.shape[1])[None, :] < lengths[:, None]
    # Each delta is the difference of two jittered points: sqrt(2) sigma.
    change = (out - ink)[real][:, :2]
    np.testing.assert_allclose(change.std(), math.sqrt(2) * sigma, rtol=0.25)


def test_straight_lines_come_back_unchanged():
    # Any distortion of a line would be stretched to the whole [0, 1] range of the axis
    # in which it has no extent.
    horizontal = ink_math.ink_from_strokes([[[0, 100, 200], [50, 50, 50]]])
    plus = PLUS
    ink, lengths = padded([horizontal, plus])
    out = augment_batch(ink, lengths, tf.constant([15, 16]), STRONG).numpy()
    np.testing.assert_array_equal(out[0], ink[0])
    assert np.abs(out[1] - ink[1]).max() > 0.01


def test_a_seed_decides_everything(batch):
    ink, lengths = batch
    first = augment_batch(ink, lengths, tf.constant([1, 2]), STRONG).numpy()
    again = augment_batch(ink, lengths, tf.constant([1, 2], tf.int64), STRONG).numpy()
    other = augment_batch(ink, lengths, tf.constant([1, 3]), STRONG).numpy()
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.01


def test_a_generator_draws_new_distortions_each_call(batch):
    ink, lengths = batch
    generator = tf.random.Generator.from_seed(42)
    first = augment_batch(ink, lengths, generator, STRONG).numpy()
    second = augment_batch(ink, lengths, generator, STRONG).numpy()
    assert np.abs(first - second).max() > 0.01
    replay = tf.random.Generator.from_seed(42)
    np.testing.assert_array_equal(augment_batch(ink, lengths, replay, STRONG).numpy(), first)


def test_runs_in_a_dataset_map_with_unknown_shapes(batch):
    ink, lengths = batch

    def augment(index, pair):
        return augment_batch(pair[0], pair[1], tf.stack([tf.constant(0, tf.int64), index]), STRONG)

    dataset = tf.data.Dataset.from_tensor_slices((ink, lengths)).padded_batch(16)
    batches = [batch.numpy() for batch in dataset.enumerate().map(augment)]
    assert [b.shape for b in batches] == [(16, 80, 3)] * 4
    direct = augment_batch(ink[16:32], lengths[16:32], tf.constant([0, 1]), STRONG).numpy()
    np.testing.assert_allclose(batches[1], direct, atol=1e-6)


def test_real_drawings():
    require_shared_quickdraw()
    drawings = read_drawings("hot dog", 40)
    inks = [drawings.ink_of(index) for index in range(len(drawings))]
    ink, lengths = padded(inks)
    out = augment_batch(ink, lengths, tf.constant([17, 18]), STRONG).numpy()
    padding = np.arange(ink.shape[1])[None, :] >= lengths[:, None]
    assert np.all(out[padding] == 0)
    np.testing.assert_array_equal(out[..., 2], ink[..., 2])
    for row, length in enumerate(lengths):
        points = points_of(out[row], length)
        np.testing.assert_allclose(points.max(axis=0) - points.min(axis=0), [1, 1], atol=1e-5)
    # A mild distortion: the points move, on average, by a few hundredths of the drawing.
    moved = [
        np.abs(points_of(out[row], length) - points_of(ink[row], length)).mean()
        for row, length in enumerate(lengths)
    ]
    assert 0.005 < np.mean(moved) < 0.15

    # The defaults (what --augment trains with) also reorder, split and join strokes: each
    # drawing keeps its length, its [0, 1] extent and its last row's end_of_stroke.
    out = augment_batch(ink, lengths, tf.constant([19, 20]), AugmentConfig()).numpy()
    assert np.all(out[padding] == 0)
    assert np.any(out[..., 2] != ink[..., 2])
    np.testing.assert_array_equal(out[np.arange(len(lengths)), lengths - 1, 2], 1)
    for row, length in enumerate(lengths):
        points = points_of(out[row], length)
        np.testing.assert_allclose(points.max(axis=0) - points.min(axis=0), [1, 1], atol=1e-5)


def test_truncation_gives_the_pipelines_ink_of_the_shorter_drawing():
    drawings = random_points(200, seed=6)
    ink, lengths = padded([ink_math.deltas(points) for points in drawings], time=70)
    out, cut = truncate_batch(ink, lengths, tf.constant([1, 2]), probability=1.0, shortest=0.5)
    out, cut = out.numpy(), cut.numpy()
    assert out.shape == ink.shape and cut.dtype == np.int32
    assert np.all(cut <= lengths)
    assert np.all(cut >= np.minimum(lengths, np.maximum(np.ceil(lengths * 0.5), 8)))
    assert np.mean(cut < lengths) > 0.5
    for row, points in enumerate(drawings):
        # The drawing's first cut + 1 points, the last of them ending a stroke.
        shorter = points[: cut[row] + 1].copy()
        shorter[-1, 2] = 1
        np.testing.assert_allclose(out[row, : cut[row]], ink_math.deltas(shorter), atol=1e-6)
        assert np.all(out[row, cut[row] :] == 0)


def test_truncation_cuts_drawings_at_its_rate():
    drawings = [points for points in random_points(1200, seed=7) if len(points) > 4]
    ink, lengths = padded([ink_math.deltas(points) for points in drawings])
    out, cut = truncate_batch(ink, lengths, tf.constant([3, 4]), fewest_rows=1)
    out, cut = out.numpy(), cut.numpy()
    shortened = cut < lengths
    # Cut with probability 0.3, after a share s ~ U[0.6, 1] of its rows, rounded up: a
    # drawing of n rows gets shorter when s <= (n - 1) / n.
    expected = 0.3 * np.clip(((lengths - 1) / lengths - 0.6) / 0.4, 0, 1)
    assert len(drawings) > 500
    assert abs(shortened.mean() - expected.mean()) < 0.04
    assert np.all(cut[shortened] >= np.ceil(lengths[shortened] * 0.6))
    np.testing.assert_array_equal(out[~shortened], ink[~shortened])


def test_truncation_keeps_short_drawings_whole():
    drawings = random_points(200, seed=8)
    ink, lengths = padded([ink_math.deltas(points) for points in drawings])
    out, cut = truncate_batch(ink, lengths, tf.constant([5, 6]), probability=1.0, shortest=0.1)
    out, cut = out.numpy(), cut.numpy()
    short = lengths <= 8
    assert short.sum() > 10 and (~short).sum() > 10
    np.testing.assert_array_equal(cut[short], lengths[short])
    np.testing.assert_array_equal(out[short], ink[short])
    assert np.all(cut[~short] >= 8)


def test_zero_truncation_is_the_identity(batch):
    ink, lengths = batch
    out, cut = truncate_batch(ink, lengths, tf.constant([7, 8]), probability=0)
    np.testing.assert_array_equal(out, ink)
    np.testing.assert_array_equal(cut, lengths)


def test_training_batch_cuts_then_distorts(batch):
    ink, lengths = batch
    out, cut = training_batch(ink, lengths, tf.constant([9, 10]))
    out, cut = out.numpy(), cut.numpy()
    again, _ = training_batch(ink, lengths, tf.constant([9, 10], tf.int64))
    np.testing.assert_array_equal(again, out)
    assert np.all(cut <= lengths) and np.any(cut < lengths)
    assert np.all(out[np.arange(ink.shape[1])[None, :] >= cut[:, None]] == 0)
    np.testing.assert_array_equal(out[np.arange(len(cut)), cut - 1, 2], 1)
    assert np.abs(out[..., :2] - ink[..., :2]).max() > 0.01  # it did distort
    for row, length in enumerate(cut):
        points = points_of(out[row], length)
        extent = points.max(axis=0) - points.min(axis=0)
        # [0, 1] on each axis, or 0 where the drawing that is left has no extent there.
        assert np.all((np.abs(extent - 1) < 1e-5) | (extent < 1e-6)), extent


def test_image_batch_distorts_the_whole_drawing_in_its_own_order(batch):
    ink, lengths = batch
    out = image_batch(ink, lengths, tf.constant([9, 10])).numpy()
    np.testing.assert_array_equal(image_batch(ink, lengths, tf.constant([9, 10])), out)
    # No cuts, no split or joined strokes: every drawing keeps its rows and its pen lifts.
    np.testing.assert_array_equal(out[..., 2], ink[..., 2])
    padding = np.arange(ink.shape[1])[None, :] >= lengths[:, None]
    assert np.all(out[padding] == 0)
    drawings = [(points_of(ink[row], n), points_of(out[row], n)) for row, n in enumerate(lengths)]
    assert np.mean([np.abs(after - before).max() > 1e-3 for before, after in drawings]) > 0.9
    # Every point lies where a linear map (and a little jitter) puts the same point: the
    # strokes kept their order and direction (0.07 here). Strokes in another order, as
    # training_batch draws them, are far off (0.77).
    assert max(affine_residual(before, after) for before, after in drawings) < 0.15
    shuffled = augment_batch(ink, lengths, tf.constant([9, 10]), only(stroke_order=1.0)).numpy()
    far = [
        affine_residual(points_of(ink[r], n), points_of(shuffled[r], n))
        for r, n in enumerate(lengths)
    ]
    assert max(far) > 0.3


def test_training_batch_runs_in_a_dataset_map(batch):
    ink, lengths = batch

    def augment(index, pair):
        return training_batch(pair[0], pair[1], tf.stack([tf.constant(0, tf.int64), index]))

    dataset = tf.data.Dataset.from_tensor_slices((ink, lengths)).padded_batch(16)
    batches = [(i.numpy(), n.numpy()) for i, n in dataset.enumerate().map(augment)]
    assert [(i.shape, n.shape) for i, n in batches] == [((16, 80, 3), (16,))] * 4
    direct, cut = training_batch(ink[16:32], lengths[16:32], tf.constant([0, 1]))
    np.testing.assert_allclose(batches[1][0], direct, atol=1e-6)
    np.testing.assert_array_equal(batches[1][1], cut)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"scale": -0.1}, "scale must be a number >= 0"),
        ({"scale": 1.0}, "scale must be below 1"),
        ({"rotation_degrees": 200}, "rotation_degrees must be at most 180"),
        ({"point_jitter": float("nan")}, "point_jitter must be a number >= 0"),
        ({"stroke_reversal": 1.5}, "stroke_reversal must be at most 1"),
        ({"stroke_order": 2}, "stroke_order must be at most 1"),
        ({"stroke_split": 1.1}, "stroke_split must be at most 1"),
        ({"stroke_join": -0.1}, "stroke_join must be a number >= 0"),
    ],
)
def test_bad_strengths_are_clear_errors(values, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**values)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"probability": 1.5}, r"probability must be in \[0, 1\]"),
        ({"shortest": 0}, r"shortest must be in \(0, 1\]"),
        ({"fewest_rows": 0}, "fewest_rows must be at least 1"),
    ],
)
def test_bad_truncation_is_a_clear_error(batch, values, message):
    ink, lengths = batch
    with pytest.raises(ValueError, match=message):
        truncate_batch(ink, lengths, tf.constant([1, 2]), **values)


def test_bad_inputs_are_clear_errors(batch):
    ink, lengths = batch
    with pytest.raises(ValueError, match="seed must be an integer tensor of shape"):
        training_batch(ink, lengths, tf.constant([1, 2, 3]))
    with pytest.raises(ValueError, match=r"ink must have shape \(batch, time, 3\)"):
        truncate_batch(ink[..., :2], lengths, tf.constant([1, 2]))
    with pytest.raises(ValueError, match="seed_or_generator must be"):
        augment_batch(ink, lengths, tf.constant([1, 2, 3]))
    with pytest.raises(ValueError, match="seed_or_generator must be"):
        augment_batch(ink, lengths, tf.constant([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"ink must have shape \(batch, time, 3\)"):
        augment_batch(ink[..., :2], lengths, tf.constant([1, 2]))


def test_the_default_strengths_distort_mildly(batch):
    # `--augment` (`training_batch`) distorts with the default strengths.
    ink, lengths = batch
    out = augment_batch(ink, lengths, tf.constant([19, 20])).numpy()
    assert 0.005 < np.abs(out - ink).mean() < 0.1
