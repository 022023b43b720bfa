"""The test-time views the served model averages: the drawing first, then copies under half
the training strengths that keep the strokes as drawn."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.ink_batches import PLUS, affine_residual, padded, points_of
from tests.support.trainer_fixtures import read_drawings, require_shared_quickdraw
from trainer.augment import AugmentConfig
from trainer.views import TEST_TIME, prediction_views


def test_prediction_views_start_with_the_drawing_and_do_not_depend_on_the_batch():
    require_shared_quickdraw()
    drawings = read_drawings("bowtie", 6)
    inks = [drawings.ink_of(index) for index in range(len(drawings))]
    ink, lengths = padded(inks, time=max(len(i) for i in inks) + 9)
    views = prediction_views(ink, lengths, 5).numpy()
    assert views.shape == (5,) + ink.shape
    np.testing.assert_array_equal(views[0], ink)
    padding = np.arange(ink.shape[1])[None, :] >= lengths[:, None]
    assert np.all(views[:, padding] == 0)
    for row, length in enumerate(lengths):
        distinct = {views[v, row, :length].tobytes() for v in range(5)}
        assert len(distinct) == 5  # four distorted copies, each its own
        # A drawing alone, unpadded, gets the very views it got in the padded batch.
        alone = prediction_views(ink[row : row + 1, :length], lengths[row : row + 1], 5)
        np.testing.assert_array_equal(alone.numpy()[:, 0], views[:, row, :length])
    # Half the training strengths: the copies stay close to the drawing.
    shift = [
        np.abs(points_of(views[v, row], n) - points_of(ink[row], n)).mean()
        for v in range(1, 5)
        for row, n in enumerate(lengths)
    ]
    assert 0.005 < np.median(shift) < 0.1
    assert TEST_TIME.rotation_degrees == AugmentConfig().rotation_degrees / 2
    # The whole drawing, its strokes and pen lifts as drawn, under a linear map and jitter
    # (as image_batch, whose test shows how far strokes in another order would be).
    np.testing.assert_array_equal(views[..., 2], np.broadcast_to(ink[..., 2], views.shape[:-1]))
    residuals = [
        affine_residual(points_of(ink[row], n), points_of(views[v, row], n))
        for v in range(1, 5)
        for row, n in enumerate(lengths)
    ]
    assert max(residuals) < 0.15


def test_one_prediction_view_is_the_ink_and_zero_is_an_error():
    ink, lengths = padded([PLUS])
    np.testing.assert_array_equal(prediction_views(ink, lengths, 1).numpy(), ink[None])
    with pytest.raises(ValueError, match="views must be at least 1"):
        prediction_views(ink, lengths, 0)
