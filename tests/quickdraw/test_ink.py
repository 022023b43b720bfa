"""The ink math on hand-computed drawings, and on real drawings against a plain version."""

import json

import numpy as np
import pytest

from bench import tutorial_baseline
from quickdraw import ink


def test_points_from_strokes_marks_the_last_point_of_each_stroke():
    strokes = [[[0, 10], [0, 20]], [[5], [5]], [[1, 2, 3], [4, 5, 6]]]
    expected = [
        [0, 0, 0],
        [10, 20, 1],
        [5, 5, 1],
        [1, 4, 0],
        [2, 5, 0],
        [3, 6, 1],
    ]
    np.testing.assert_array_equal(ink.points_from_strokes(strokes), expected)


def test_points_from_strokes_ignores_a_raw_time_list():
    strokes = [[[0, 1], [2, 3], [100, 117]]]
    np.testing.assert_array_equal(ink.points_from_strokes(strokes), [[0, 2, 0], [1, 3, 1]])


def test_points_from_strokes_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 x values but 1 y values"):
        ink.points_from_strokes([[[0, 1], [2]]])


def test_normalize_scales_each_axis_by_its_own_range():
    points = np.array([[10, 100, 0], [20, 300, 0], [15, 200, 1]], dtype=np.float32)
    expected = [[0, 0, 0], [1, 1, 0], [0.5, 0.5, 1]]
    np.testing.assert_array_equal(ink.normalize(points), expected)


def test_normalize_scales_a_zero_range_by_one():
    # A vertical line: x never changes, so x - min(x) stays 0 and y alone is scaled.
    points = np.array([[7, 0, 0], [7, 4, 1]], dtype=np.float32)
    np.testing.assert_array_equal(ink.normalize(points), [[0, 0, 0], [0, 1, 1]])


def test_deltas_of_a_hand_computed_drawing():
    # Two strokes: (0,0)-(4,2) and (2,2)-(2,0)-(4,0). x range 4, y range 2.
    strokes = [[[0, 4], [0, 2]], [[2, 2, 4], [2, 0, 0]]]
    # Normalized: (0,0) (1,1) (.5,1) (.5,0) (1,0); deltas from the second point on.
    expected = [
        [1.0, 1.0, 1],
        [-0.5, 0.0, 0],
        [0.0, -1.0, 0],
        [0.5, 0.0, 1],
    ]
    result = ink.ink_from_strokes(strokes)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, expected)


def test_deltas_needs_two_points():
    with pytest.raises(ValueError, match="at least 2 points"):
        ink.deltas(np.zeros((1, 3), dtype=np.float32))


def test_deltas_batch_equals_one_drawing_at_a_time():
    rng = np.random.default_rng(0)
    counts = np.array([2, 5, 3, 9])
    points = rng.integers(0, 256, size=(counts.sum(), 3)).astype(np.float32)
    points[:, 2] = rng.integers(0, 2, size=counts.sum())
    points[2:7, 0] = 42  # a zero x range in the second drawing
    batch = ink.deltas_batch(points, counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    expected = np.concatenate([ink.deltas(points[s : s + c]) for s, c in zip(starts, counts)])
    np.testing.assert_array_equal(batch, expected)


def test_deltas_batch_of_nothing():
    assert ink.deltas_batch(np.zeros((0, 3), np.float32), np.array([], np.int64)).shape == (0, 3)


def test_real_drawings_match_the_tutorial_bit_for_bit(quickdraw):
    lines = []
    for path in sorted((quickdraw / "simplified").glob("*.ndjson"))[::7]:
        lines += path.read_text().splitlines()[:20]
    raw_lines = (quickdraw / "fixtures" / "raw_10cats_x5.ndjson").read_text().splitlines()
    lines += raw_lines  # raw format: float coordinates and a time list per stroke
    assert len(lines) > 1000
    for line in lines:
        strokes = json.loads(line)["drawing"]
        expected, _ = tutorial_baseline.parse_line(line)  # the tutorial's own code
        np.testing.assert_array_equal(ink.ink_from_strokes(strokes), expected)


@pytest.mark.parametrize(
    "strokes, expected",
    [
        ([[[0, 10], [0, 5]]], np.log(2)),  # 10 wide, 5 high
        ([[[0, 0, 5], [0, 10, 10]], [[2], [3]]], np.log(0.5)),  # extents over all strokes
        ([[[3, 3], [0, 255]]], -np.log(255)),  # no width: floored at 255 / 255 = 1
        ([[[0, 255], [7, 7]]], np.log(255)),
        ([[[0, 2550], [7, 7]]], np.log(255)),  # the floor scales with the drawing
        ([[[4, 4, 4], [9, 9, 9]]], 0.0),  # all points coincide
    ],
)
def test_log_aspect_of_hand_computed_drawings(strokes, expected):
    result = ink.log_aspect(ink.points_from_strokes(strokes))
    assert result.dtype == np.float32
    assert result == pytest.approx(expected, abs=1e-6)


def test_log_aspect_batch_equals_one_drawing_at_a_time():
    rng = np.random.default_rng(5)
    counts = np.array([1, 2, 7, 3, 40])
    points = rng.integers(0, 256, size=(counts.sum(), 3)).astype(np.float32)
    points[:2, 0] = 9  # a drawing of one point, then a vertical line
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    expected = [ink.log_aspect(points[s : s + c]) for s, c in zip(starts, counts)]
    np.testing.assert_array_equal(ink.log_aspect_batch(points, counts), expected)
    assert ink.log_aspect_batch(points[:0], []).shape == (0,)
    with pytest.raises(ValueError):
        ink.log_aspect_batch(points, [0, 3])


def test_points_from_deltas_undoes_deltas_up_to_the_first_point():
    # A 4-wide, 2-high drawing: normalized, then deltas, then summed back from (0, 0).
    points = np.array([[1, 1, 0], [5, 1, 1], [5, 3, 0], [3, 2, 1]], dtype=np.float32)
    ink_rows = ink.deltas(points)
    expected = [[0, 0, 0], [1, 0, 1], [1, 1, 0], [0.5, 0.5, 1]]
    np.testing.assert_allclose(ink.points_from_deltas(ink_rows), expected)
    # With the drawing's aspect ratio the height shrinks back to half the width.
    expected_shape = [[0, 0, 0], [1, 0, 1], [1, 0.5, 0], [0.5, 0.25, 1]]
    shaped = ink.points_from_deltas(ink_rows, ink.log_aspect(points))
    np.testing.assert_allclose(shaped, expected_shape, rtol=1e-6)


def test_points_from_deltas_rejects_ink_of_another_shape():
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        ink.points_from_deltas(np.zeros((4, 2), np.float32))
