"""Raw ink to the simplified format: Google's documented simplification of Quick, Draw!.

A raw drawing (as `gs://quickdraw_dataset/full/raw/*.ndjson` holds it, and as a canvas
records it) has float screen coordinates and a time per point. The simplified files, which
the model trains on, were made from it in four steps:

1. align the drawing so that its minimum x and y are 0;
2. scale it uniformly (both axes by one factor) so that its maximum coordinate is 255;
3. resample every stroke at 1-pixel spacing;
4. simplify every stroke with Ramer-Douglas-Peucker at epsilon 2.0, on integer coordinates.

RDP runs in `simplification` (Rust, called through its C interface, one call per stroke): a
kept, compiled implementation, several hundred times faster than a per-point Python loop.
This module depends on numpy and `simplification` only.
"""

from __future__ import annotations

import numpy as np
from simplification.cutil import simplify_coords

SIZE = 255  # the simplified format's largest coordinate
EPSILON = 2.0  # RDP's tolerance, in the simplified format's units


def resample(points: np.ndarray, spacing: float = 1.0) -> np.ndarray:
    """A stroke's (n, 2) points with points added along each segment every `spacing` units."""
    if len(points) < 2:
        return points
    steps = np.diff(points, axis=0)  # (n - 1, 2)
    lengths = np.hypot(steps[:, 0], steps[:, 1])
    pieces = [points[:1]]
    for start, step, length in zip(points[:-1], steps, lengths):
        count = int(np.floor(length / spacing))
        if count:
            fractions = np.arange(1, count + 1) * (spacing / length)
            pieces.append(start + fractions[:, np.newaxis] * step)
        if count * spacing < length:
            pieces.append((start + step)[np.newaxis])
    return np.concatenate(pieces)


def simplify_strokes(strokes) -> list[list[list[int]]]:
    """A raw drawing's strokes, each [xs, ys, ...] (further lists such as times are ignored),
    -> the simplified format's strokes, each [xs, ys] of integers in 0..255."""
    arrays = [
        np.stack([np.asarray(s[0], np.float64), np.asarray(s[1], np.float64)], 1) for s in strokes
    ]
    every = np.concatenate(arrays)
    lower = every.min(axis=0)
    extent = float((every.max(axis=0) - lower).max())
    scale = SIZE / extent if extent > 0 else 1.0
    result = []
    for stroke in arrays:
        points = resample((stroke - lower) * scale)
        kept = np.asarray(simplify_coords(np.ascontiguousarray(points), EPSILON))
        kept = np.round(kept).astype(np.int64)
        result.append([kept[:, 0].tolist(), kept[:, 1].tolist()])
    return result
