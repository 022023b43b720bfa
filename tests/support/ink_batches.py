"""Batches of ink for the augmentation and view tests: hand-made and random drawings, padded as
the trainer batches them, and the measures the tests take of them."""

from __future__ import annotations

import dataclasses

import numpy as np

from quickdraw import ink as ink_math
from trainer.augment import AugmentConfig

NONE = AugmentConfig(
    scale=0,
    shear=0,
    rotation_degrees=0,
    point_jitter=0,
    stroke_jitter=0,
    stroke_reversal=0,
    stroke_order=0,
    stroke_split=0,
    stroke_join=0,
)


def only(**strengths):
    """A configuration with the given strengths and every other distortion off."""
    return dataclasses.replace(NONE, **strengths)


# Strong distortions that keep every stroke in its place, so end_of_stroke stays as it was
# (stroke order, split and join have their own tests).
STRONG = dataclasses.replace(
    NONE, scale=0.2, shear=0.3, rotation_degrees=20, point_jitter=0.02, stroke_jitter=0.05
)

# A plus sign: a horizontal stroke, then a vertical one, crossing at the centre. Its ink:
# row 0 = (1, 0) along the first stroke, row 1 = (-0.5, -0.5) the jump to the second,
# row 2 = (0, 1) along the second.
PLUS = ink_math.ink_from_strokes([[[0, 255], [128, 128]], [[128, 128], [0, 255]]])


def padded(inks, time=None):
    """Right-pads a list of (n, 3) inks into a (batch, time, 3) array and their lengths."""
    lengths = np.array([len(ink) for ink in inks], np.int32)
    batch = np.zeros((len(inks), time or lengths.max(), 3), np.float32)
    for row, ink in enumerate(inks):
        batch[row, : len(ink)] = ink
    return batch, lengths


def points_of(ink, length):
    """The points that one drawing's ink traces from the origin: (length + 1, 2)."""
    return np.concatenate([np.zeros((1, 2)), np.cumsum(ink[:length, :2], axis=0)])


def random_drawings(count, seed=0, shortest_stroke=1):
    """Drawings of random lengths and strokes, as normalized ink."""
    return [ink_math.deltas(points) for points in random_points(count, seed, shortest_stroke, 12)]


def random_points(count, seed=0, shortest_stroke=1, longest_stroke=16):
    """Drawings of random lengths and strokes (of shortest_stroke to longest_stroke - 1
    points each), as the absolute (n, 3) points the pipeline normalizes."""
    rng = np.random.default_rng(seed)
    drawings = []
    for _ in range(count):
        strokes = [
            [list(rng.integers(0, 256, size)), list(rng.integers(0, 256, size))]
            for size in rng.integers(shortest_stroke, longest_stroke, rng.integers(1, 5))
        ]
        points = ink_math.points_from_strokes(strokes)
        if len(points) >= 2:
            drawings.append(points)
    return drawings


def affine_residual(before, after):
    """How far `after`'s points are from the best affine map of `before`'s, point by point."""
    affine = np.column_stack([before, np.ones(len(before))])
    fit, *_ = np.linalg.lstsq(affine, after, rcond=None)
    return np.abs(affine @ fit - after).max()
