"""Raw ink to the simplified format: each step on hand-made strokes, and the whole against
Google's own simplified drawings of the same key_ids."""

import numpy as np
import pytest

from bench import simplify_match
from quickdraw import simplify


def _strokes(*strokes, times=None) -> simplify.Strokes:
    """Strokes given as lists of (x, y) points; times 0, 1, 2, ... unless given."""
    xy = np.array([point for stroke in strokes for point in stroke], dtype=np.float64)
    if times is None:
        times = np.arange(len(xy), dtype=np.float64)
    return simplify.Strokes(xy, np.asarray(times, np.float64), np.array([len(s) for s in strokes]))


def test_align_and_scale_moves_to_zero_and_scales_the_larger_extent_to_255():
    # Width 20, height 5: both axes scale by 255 / 20.
    xy = np.array([[10.0, 20.0], [30.0, 25.0], [-4.0, 0.0], [0.0, 8.0]])
    scaled = simplify.align_and_scale(xy, np.array([2, 2]))
    np.testing.assert_array_equal(scaled, [[0, 0], [255, 63.75], [0, 0], [127.5, 255]])


def test_align_and_scale_refuses_a_drawing_without_extent():
    with pytest.raises(ValueError, match="no extent"):
        simplify.align_and_scale(np.array([[3.0, 4.0], [3.0, 4.0]]), np.array([2]))


def test_resample_places_a_point_at_every_whole_length_then_the_last_point():
    dense = simplify.resample(_strokes([(0, 0), (2.5, 0)]))
    np.testing.assert_array_equal(dense.xy, [[0, 0], [1, 0], [2, 0], [2.5, 0]])
    np.testing.assert_array_equal(dense.sizes, [4])


def test_resample_measures_length_along_the_stroke_across_its_corners():
    # The corner (1.5, 0) is 1.5 along: the points at lengths 2 and 3 lie on the second
    # segment, and the corner itself is not kept.
    dense = simplify.resample(_strokes([(0, 0), (1.5, 0), (1.5, 2)]))
    np.testing.assert_array_equal(dense.xy, [[0, 0], [1, 0], [1.5, 0.5], [1.5, 1.5], [1.5, 2]])


def test_resample_of_a_whole_length_ends_once_on_the_last_point():
    dense = simplify.resample(_strokes([(0, 0), (2, 0)]))
    np.testing.assert_array_equal(dense.xy, [[0, 0], [1, 0], [2, 0]])


def test_a_stroke_without_length_becomes_two_points():
    dense = simplify.resample(_strokes([(4, 4)], [(7, 1), (7, 1), (7, 1)], [(0, 0), (0, 3)]))
    np.testing.assert_array_equal(dense.sizes, [2, 2, 4])
    np.testing.assert_array_equal(dense.xy[:4], [[4, 4], [4, 4], [7, 1], [7, 1]])


def test_resample_interpolates_times_like_coordinates():
    dense = simplify.resample(_strokes([(0, 0), (2.5, 0)], times=[100, 110]))
    np.testing.assert_array_equal(dense.times, [100, 104, 108, 110])


def test_rdp_measures_distance_to_the_chords_line_not_its_segment():
    # (15, 0) lies 3 beyond the chord's end but on its line: dropped. (5, 1) is 1 off it.
    xy = np.array([[0, 0], [5, 1], [10, 0], [15, 0], [12, 0]], dtype=np.float64)
    keep = simplify.rdp_keep(xy, np.array([5]))
    np.testing.assert_array_equal(keep, [True, False, False, False, True])


def test_rdp_splits_at_the_first_of_equally_far_points():
    # (1, 3) and (2, 3) are both 3 from the chord; the first is kept, and the second is then
    # 3 / sqrt(13) from the line through (1, 3) and (3, 0).
    xy = np.array([[0, 0], [1, 3], [2, 3], [3, 0]], dtype=np.float64)
    keep = simplify.rdp_keep(xy, np.array([4]))
    np.testing.assert_array_equal(keep, [True, True, False, True])


def test_rdp_keeps_only_points_farther_than_epsilon():
    xy = np.array([[0, 0], [5, 2], [10, 0], [0, 10], [5, 12.5], [10, 10]], dtype=np.float64)
    keep = simplify.rdp_keep(xy, np.array([3, 3]))
    np.testing.assert_array_equal(keep, [True, False, True, True, True, True])


def test_rdp_of_a_closed_span_measures_distance_to_its_end():
    # Both ends at the origin: (5, 0), 5 away, splits; (3, 0) then lies on the line.
    xy = np.array([[0, 0], [3, 0], [5, 0], [0, 0]], dtype=np.float64)
    keep = simplify.rdp_keep(xy, np.array([4]))
    np.testing.assert_array_equal(keep, [True, False, True, True])


def test_simplify_scales_resamples_simplifies_and_rounds_halves_to_even():
    # Extent 255 (scale 1). The one-point strokes become two points and round half to even:
    # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4.
    strokes = _strokes([(0, 0), (100, 1), (255, 0)], [(0.5, 1.5)], [(2.5, 3.5)])
    result = simplify.simplify(strokes, np.array([3]))
    np.testing.assert_array_equal(result.sizes, [2, 2, 2])
    np.testing.assert_array_equal(result.xy, [[0, 0], [255, 0], [0, 2], [0, 2], [2, 4], [2, 4]])
    np.testing.assert_array_equal(result.times, [0, 2, 3, 3, 4, 4])


def test_simplify_keeps_drawings_apart_in_a_batch():
    # The second drawing's extent is 8: (9, 8) lands on 127.5, which rounds to 128.
    one, two = [(0, 0), (10, 0)], [(5, 0), (5, 8), (9, 8)]
    assert simplify.simplify_strokes([list(zip(*one))]) == [[[0, 255], [0, 0]]]
    assert simplify.simplify_strokes([list(zip(*two))]) == [[[0, 0, 128], [0, 255, 255]]]
    together = simplify.simplify(_strokes(one, two), np.array([1, 1]))
    np.testing.assert_array_equal(together.xy, [[0, 0], [255, 0], [0, 0], [0, 255], [128, 255]])
    np.testing.assert_array_equal(together.sizes, [2, 3])


def test_the_simplification_reproduces_googles_simplified_drawings(quickdraw):
    pairs = simplify_match.load_pairs(quickdraw)
    assert len(pairs) > 8000
    result = simplify_match.match(pairs)
    assert result.exact_share >= simplify_match.EXACT_TARGET, result
    assert result.within_one_share >= simplify_match.WITHIN_ONE_TARGET, result


def test_the_match_counts_a_difference():
    want = [[[0, 10], [0, 5]]]
    assert simplify_match.within_one([[[1, 10], [0, 4]]], want)
    assert not simplify_match.within_one([[[2, 10], [0, 5]]], want)
    assert not simplify_match.within_one([[[0, 5, 10], [0, 2, 5]]], want)
    assert not simplify_match.within_one(want + want, want)
