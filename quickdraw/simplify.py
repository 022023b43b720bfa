"""Raw ink to the simplified format, exactly as Google made Quick, Draw!'s simplified files.

A raw drawing (as `gs://quickdraw_dataset/full/raw/*.ndjson` holds it, and as a canvas
records it) has float screen coordinates and a time per point. Google documents four steps
for the simplified files: align the drawing to 0, scale it uniformly so its maximum is 255,
resample every stroke at 1-pixel spacing, and simplify every stroke with Ramer-Douglas-Peucker
at epsilon 2.0. Read plainly, those steps reproduce 0.45% of Google's drawings exactly. The
details below, each found on pairs of raw and simplified drawings with the same key_id,
reproduce 99.96% of them point for point (`python -m bench.simplify_match`):

1. align and scale in float64 as `(p - min) * 255 / extent`, where the extent is the larger of
   the drawing's width and height (other orders of these operations round differently);
2. resample each stroke along its arc length, not segment by segment: a point at every whole
   unit of length from the stroke's first point, each interpolated on its segment as
   `a * (1 - t) + b * t`, with segment lengths `sqrt(dx * dx + dy * dy)` added up in order
   from the stroke's start; then the stroke's own last point. A stroke of zero length becomes
   its first and last point (Google's files never hold a stroke of one point);
3. Ramer-Douglas-Peucker on those float points, measuring each point's distance to the
   infinite line through the span's ends (to the ends' point when they coincide), and
   splitting at the first point of greatest distance when that distance exceeds 2.0;
4. round to the nearest integer, halves to even.

The pairs left over differ where two points lie at the same distance from a chord up to the
last bits of a double (a stretch parallel to it), and Google's arithmetic broke the tie
otherwise. Each point's time is interpolated like its coordinates.

No kept RDP implementation does step 3: `simplification` (Rust) measures the distance to the
chord's segment, not its line (22% of the drawings exact), and `fastrdp` (C++) compares
squared distances and breaks ties between two interleaved maxima (96.1% exact, 98.2% within
one unit). Steps 2 and 3 are loops over a stroke's ~1,000 resampled points, several times
over for RDP's recursion: a Python loop takes milliseconds a drawing, and numpy, one pass per
level of the recursion over every stroke of a batch, about 1 ms too. So they are compiled
with numba, as the plain loops below, without fast-math, so every operation rounds as written.
"""

from __future__ import annotations

import dataclasses
import math

import numba
import numpy as np

SIZE = 255  # the simplified format's largest coordinate
EPSILON = 2.0  # RDP's tolerance, in the simplified format's units


@dataclasses.dataclass
class Strokes:
    """Strokes stored back to back: stroke i has `sizes[i]` rows of `xy` and `times`."""

    xy: np.ndarray  # (points, 2) float64
    times: np.ndarray  # (points,) float64
    sizes: np.ndarray  # (strokes,) int64, each >= 1

    @property
    def starts(self) -> np.ndarray:
        return starts_of(self.sizes)


def starts_of(sizes: np.ndarray) -> np.ndarray:
    """Where each of back-to-back runs of `sizes` starts."""
    starts = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    return starts


def extents(xy: np.ndarray, drawing_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each drawing's lowest x and y, (drawings, 2), and its extent, (drawings,): the larger
    of its width and height. `drawing_points` (drawings,) counts each one's points, >= 1."""
    starts = starts_of(drawing_points)
    lower = np.minimum.reduceat(xy, starts, axis=0)
    upper = np.maximum.reduceat(xy, starts, axis=0)
    return lower, (upper - lower).max(axis=1)


def align_and_scale(xy: np.ndarray, drawing_points: np.ndarray) -> np.ndarray:
    """Step 1: each drawing moved to 0 and scaled uniformly so that its extent is 255.

    Raises ValueError for a drawing whose points all coincide: it has no extent to scale.
    """
    lower, extent = extents(xy, drawing_points)
    if (extent <= 0).any():
        raise ValueError("a drawing whose points all coincide has no extent to scale")
    owner = np.repeat(np.arange(len(drawing_points)), drawing_points)
    return (xy - lower[owner]) * SIZE / extent[owner, np.newaxis]


@numba.njit(nogil=True)
def _stroke_length(xy, start, end):
    """The length of the polyline xy[start..end], its segments added up in order."""
    along = 0.0
    for i in range(start, end):
        dx = xy[i + 1, 0] - xy[i, 0]
        dy = xy[i + 1, 1] - xy[i, 1]
        along += math.sqrt(dx * dx + dy * dy)
    return along


@numba.njit(nogil=True)
def _resampled_sizes(xy, starts, sizes):
    out = np.empty(len(sizes), dtype=np.int64)
    for s in range(len(sizes)):
        length = _stroke_length(xy, starts[s], starts[s] + sizes[s] - 1)
        out[s] = math.ceil(length) + 1 + (1 if length == 0.0 else 0)
    return out


@numba.njit(nogil=True)
def _resample(xy, times, starts, sizes, out_starts, out_xy, out_times):
    for s in range(len(sizes)):
        start, end, row = starts[s], starts[s] + sizes[s] - 1, out_starts[s]
        along = 0.0  # length from the stroke's first point to point i
        whole = 0.0  # the next whole length that gets a point
        for i in range(start, end):
            dx = xy[i + 1, 0] - xy[i, 0]
            dy = xy[i + 1, 1] - xy[i, 1]
            length = math.sqrt(dx * dx + dy * dy)
            reach = along + length
            while whole < reach:  # whole >= along: every earlier one is placed
                t = (whole - along) / length
                out_xy[row, 0] = xy[i, 0] * (1 - t) + xy[i + 1, 0] * t
                out_xy[row, 1] = xy[i, 1] * (1 - t) + xy[i + 1, 1] * t
                out_times[row] = times[i] * (1 - t) + times[i + 1] * t
                row += 1
                whole += 1.0
            along = reach
        if along == 0.0:
            out_xy[row] = xy[start]
            out_times[row] = times[start]
            row += 1
        out_xy[row] = xy[end]
        out_times[row] = times[end]


def resample(strokes: Strokes) -> Strokes:
    """Step 2: a point at every whole unit of length along each stroke, then its last point.

    A stroke of length L gets ceil(L) + 1 points; one of zero length gets its first and
    last point. Times are interpolated like the coordinates.
    """
    xy = np.ascontiguousarray(strokes.xy, dtype=np.float64)
    times = np.ascontiguousarray(strokes.times, dtype=np.float64)
    sizes = np.asarray(strokes.sizes, dtype=np.int64)
    starts = starts_of(sizes)
    out_sizes = _resampled_sizes(xy, starts, sizes)
    total = int(out_sizes.sum())
    out_xy, out_times = np.empty((total, 2)), np.empty(total)
    _resample(xy, times, starts, sizes, starts_of(out_sizes), out_xy, out_times)
    return Strokes(out_xy, out_times, out_sizes)


@numba.njit(nogil=True)
def _rdp(xy, starts, sizes, epsilon, keep):
    stack = np.empty((64, 2), dtype=np.int64)
    for s in range(len(sizes)):
        first, last = starts[s], starts[s] + sizes[s] - 1
        keep[first] = True
        keep[last] = True
        stack[0, 0], stack[0, 1] = first, last
        depth = 1
        while depth:
            depth -= 1
            first, last = stack[depth, 0], stack[depth, 1]
            if last - first < 2:
                continue
            dx = xy[last, 0] - xy[first, 0]
            dy = xy[last, 1] - xy[first, 1]
            chord = np.hypot(dx, dy)
            farthest, split = -1.0, -1
            for k in range(first + 1, last):
                ox = xy[k, 0] - xy[first, 0]
                oy = xy[k, 1] - xy[first, 1]
                if chord == 0.0:
                    distance = np.hypot(ox, oy)
                else:
                    distance = abs(dx * oy - dy * ox) / chord
                if distance > farthest:
                    farthest, split = distance, k
            if farthest > epsilon:
                keep[split] = True
                if depth + 2 > len(stack):
                    grown = np.empty((2 * len(stack), 2), dtype=np.int64)
                    grown[:depth] = stack[:depth]
                    stack = grown
                stack[depth, 0], stack[depth, 1] = split, last
                stack[depth + 1, 0], stack[depth + 1, 1] = first, split
                depth += 2


def rdp_keep(xy: np.ndarray, sizes: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """Step 3: which points Ramer-Douglas-Peucker keeps in each stroke, (points,) bool."""
    keep = np.zeros(len(xy), dtype=np.bool_)
    sizes = np.asarray(sizes, dtype=np.int64)
    _rdp(np.ascontiguousarray(xy, dtype=np.float64), starts_of(sizes), sizes, epsilon, keep)
    return keep


def simplify(strokes: Strokes, drawing_strokes: np.ndarray) -> Strokes:
    """Raw strokes -> the simplified format's strokes: integer coordinates in 0..255 (as
    float64), each kept point's interpolated time, and the same strokes, each of >= 2 points.

    Args:
      strokes: the raw strokes of many drawings, back to back.
      drawing_strokes: (drawings,) how many strokes each drawing has, >= 1.
    """
    drawing_points = np.add.reduceat(strokes.sizes, starts_of(drawing_strokes))
    scaled = Strokes(align_and_scale(strokes.xy, drawing_points), strokes.times, strokes.sizes)
    dense = resample(scaled)
    keep = rdp_keep(dense.xy, dense.sizes)
    stroke_of_point = np.repeat(np.arange(len(dense.sizes)), dense.sizes)
    return Strokes(
        np.rint(dense.xy[keep]),
        dense.times[keep],
        np.bincount(stroke_of_point[keep], minlength=len(dense.sizes)),
    )


def simplify_strokes(strokes) -> list[list[list[int]]]:
    """One raw drawing's strokes, each [xs, ys, times] (or [xs, ys]: the shape needs no
    times) -> the simplified format's strokes, each [xs, ys] of integers in 0..255."""
    xy = np.concatenate([np.stack([s[0], s[1]], axis=1) for s in strokes]).astype(np.float64)
    sizes = np.array([len(s[0]) for s in strokes], dtype=np.int64)
    result = simplify(Strokes(xy, np.zeros(len(xy)), sizes), np.array([len(strokes)]))
    ends = np.cumsum(result.sizes).tolist()
    coordinates = result.xy.astype(np.int64)
    return [
        [coordinates[end - size : end, 0].tolist(), coordinates[end - size : end, 1].tolist()]
        for end, size in zip(ends, result.sizes.tolist())
    ]
