"""Ink math: from strokes to the tutorial's normalized point deltas.

A drawing is a list of strokes; a stroke holds its x and y coordinates. The model reads
each drawing as the tutorial's `parse_line` made it:

1. all points of all strokes concatenated as rows (x, y, end_of_stroke), with
   end_of_stroke = 1 on the last point of each stroke;
2. x and y each scaled to [0, 1] by the drawing's own min and max (a zero range scales
   by 1);
3. x and y replaced by their differences to the previous point, and the first row dropped.

Every step runs in float32, in the same order as the tutorial, so the results match its
arrays bit for bit. `deltas_batch` does the same for many drawings at once with a handful
of numpy calls: the pipeline's hot path.

Step 2 scales x and y apart, so the ink alone cannot tell a wide drawing from a tall one;
`log_aspect` keeps that one number (the pipeline writes it beside the ink, and the model
reads it with `--aspect_ratio`). This module depends on numpy only.
"""

from __future__ import annotations

import numpy as np

# Columns of an ink array.
X, Y, END_OF_STROKE = 0, 1, 2


def points_from_strokes(strokes) -> np.ndarray:
    """Concatenates strokes into absolute points.

    Args:
      strokes: a sequence of strokes, each `[xs, ys]` (a third list, such as the raw
        format's timestamps, is ignored).

    Returns:
      A float32 array of shape (n, 3): x, y and end_of_stroke.
    """
    lengths = [len(stroke[0]) for stroke in strokes]
    points = np.zeros((sum(lengths), 3), dtype=np.float32)
    start = 0
    for stroke, length in zip(strokes, lengths):
        if len(stroke[1]) != length:
            raise ValueError(f"stroke has {length} x values but {len(stroke[1])} y values")
        points[start : start + length, X] = stroke[0]
        points[start : start + length, Y] = stroke[1]
        start += length
        if length:
            points[start - 1, END_OF_STROKE] = 1
    return points


def normalize(points: np.ndarray) -> np.ndarray:
    """Scales x and y of one drawing's points to [0, 1] by their own min and max."""
    if len(points) == 0:
        raise ValueError("cannot normalize a drawing with no points")
    result = points.astype(np.float32, copy=True)
    lower = np.min(result[:, :2], axis=0)
    scale = np.max(result[:, :2], axis=0) - lower
    scale[scale == 0] = 1
    result[:, :2] = (result[:, :2] - lower) / scale
    return result


def deltas(points: np.ndarray) -> np.ndarray:
    """Normalizes one drawing and turns its points into deltas.

    Args:
      points: (n, 3) absolute points, n >= 2.

    Returns:
      (n - 1, 3) float32: the change of x and y from the previous point, and
      end_of_stroke of the point itself.
    """
    if len(points) < 2:
        raise ValueError(f"a drawing needs at least 2 points, got {len(points)}")
    ink = normalize(points)
    ink[1:, :2] -= ink[:-1, :2]
    return ink[1:]


def ink_from_strokes(strokes) -> np.ndarray:
    """The tutorial's ink for one drawing: (n - 1, 3) float32."""
    return deltas(points_from_strokes(strokes))


# Each extent is floored at this fraction of the larger one: a stroke drawn straight along
# one axis has no extent on the other. The simplified format scales the larger extent to
# 255 on an integer grid, so there the floor is its one-unit step; as a fraction it does not
# depend on the drawing's units (raw screen pixels give the same figure), and it bounds the
# result to +-log(255) ~ +-5.54.
ASPECT_FLOOR = np.float32(1 / 255)


def log_aspect(points: np.ndarray) -> np.float32:
    """log(width / height) of one drawing's absolute points, in float32.

    Width and height are the ranges of x and y; each is floored at `ASPECT_FLOOR` times the
    larger, and a drawing whose points all coincide gets 0.
    """
    if len(points) == 0:
        raise ValueError("cannot measure a drawing with no points")
    coordinates = points[:, :2].astype(np.float32, copy=False)
    extents = np.max(coordinates, axis=0) - np.min(coordinates, axis=0)  # (2,)
    return _log_aspects(extents[np.newaxis])[0]


def _log_aspects(extents: np.ndarray) -> np.ndarray:
    """(drawings, 2) float32 widths and heights -> (drawings,) float32 log(width / height)."""
    larger = np.max(extents, axis=1, keepdims=True)  # (drawings, 1)
    floored = np.maximum(extents, larger * ASPECT_FLOOR)
    floored[larger[:, 0] == 0] = 1  # all points coincide: no shape, ratio 1
    return np.log(floored[:, X] / floored[:, Y]).astype(np.float32)


def log_aspect_batch(points: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`log_aspect` of many drawings whose points are stored back to back.

    Args:
      points: (total_points, 3) float32, the absolute points of all drawings in order.
      counts: (drawings,) int, the number of points of each drawing, every one >= 1.

    Returns:
      (drawings,) float32.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size == 0:
        return np.zeros(0, dtype=np.float32)
    _, lower, upper = _bounds_batch(points, counts, fewest_points=1)
    return _log_aspects(upper - lower)


def _bounds_batch(points: np.ndarray, counts: np.ndarray, fewest_points: int):
    """Where each drawing starts, and the min and max of its x and y.

    Args:
      points: (total_points, 3), the drawings back to back.
      counts: (drawings,) int64, not empty; ValueError if any is below `fewest_points`.

    Returns:
      starts (drawings,) int64, lower and upper (drawings, 2).
    """
    if counts.min() < fewest_points:
        noun = "point" if fewest_points == 1 else "points"
        raise ValueError(f"every drawing needs at least {fewest_points} {noun}")
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    coordinates = points[:, :2]  # (total_points, 2)
    lower = np.minimum.reduceat(coordinates, starts, axis=0)  # (drawings, 2)
    upper = np.maximum.reduceat(coordinates, starts, axis=0)
    return starts, lower, upper


def deltas_batch(points: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`deltas` for many drawings whose points are stored back to back.

    Args:
      points: (total_points, 3) float32, the absolute points of all drawings in order.
      counts: (drawings,) int, the number of points of each drawing, every one >= 2.

    Returns:
      (total_points - drawings, 3) float32: each drawing's ink, back to back, in order;
      drawing i owns `counts[i] - 1` rows.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size == 0:
        return np.zeros((0, 3), dtype=np.float32)
    starts, lower, upper = _bounds_batch(points, counts, fewest_points=2)  # lower: (drawings, 2)
    scale = upper - lower
    scale[scale == 0] = 1
    owner = np.repeat(np.arange(len(counts)), counts)  # (total_points,)
    normalized = (points[:, :2] - lower[owner]) / scale[owner]
    # Row i of `steps` is point i + 1 minus point i; the rows that would cross from one
    # drawing into the next are exactly those that end at a drawing's first point.
    steps = normalized[1:] - normalized[:-1]
    keep = np.ones(len(steps), dtype=bool)
    keep[starts[1:] - 1] = False
    ink = np.empty((len(points) - len(counts), 3), dtype=np.float32)
    ink[:, :2] = steps[keep]
    ink[:, 2] = points[1:, END_OF_STROKE][keep]
    return ink


def points_from_deltas(ink: np.ndarray, log_aspect=None) -> np.ndarray:
    """A drawable shape from a record's ink: the inverse of `deltas`, up to a shift.

    The ink has lost the drawing's first point, so the shape starts at (0, 0) and its first
    point closes no stroke. Each axis spans [0, 1] as `normalize` left it; with the record's
    `log_aspect` the shorter axis is shrunk back to the drawing's proportions.

    Args:
      ink: (n, 3) float32 deltas, from `deltas`.
      log_aspect: the drawing's `log_aspect`, or None to keep both axes at [0, 1].

    Returns:
      (n + 1, 3) float32 absolute points: x, y and end_of_stroke.
    """
    ink = np.asarray(ink, dtype=np.float32)
    if ink.ndim != 2 or ink.shape[1] != 3:
        raise ValueError(f"ink must have shape (n, 3), got {ink.shape}")
    points = np.zeros((len(ink) + 1, 3), dtype=np.float32)
    points[1:, :2] = np.cumsum(ink[:, :2], axis=0)
    points[1:, END_OF_STROKE] = ink[:, END_OF_STROKE]
    if log_aspect is not None:
        ratio = float(np.exp(log_aspect))  # width / height
        points[:, X] *= min(1.0, ratio)
        points[:, Y] *= min(1.0, 1.0 / ratio)
    return points
