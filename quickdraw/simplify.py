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
   infinite line through the span's ends as |cross product| / chord length, divided point by
   point (comparing the cross products and dividing once matches 4 drawings fewer), or to the
   ends' point when they coincide, and splitting at the first point of greatest distance
   when that distance exceeds 2.0;
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

from quickdraw.batch import starts_of

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


def _compiled(function):
    """`numba.njit`, the machine code cached on disk beside this file (or in
    NUMBA_CACHE_DIR): compiling these loops takes about 6 CPU-seconds, paid once per
    process that meets raw ink without a cache. Where no cache folder is writable, numba
    refuses to cache, and each process compiles."""
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:
        return numba.njit(nogil=True)(function)


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


@_compiled
def _resampled_size(xy, start, end):
    """How many points `_resample_stroke` gives the stroke xy[start..end]."""
    along = 0.0
    for i in range(start, end):
        dx = xy[i + 1, 0] - xy[i, 0]
        dy = xy[i + 1, 1] - xy[i, 1]
        along += math.sqrt(dx * dx + dy * dy)
    return math.ceil(along) + 1 + (1 if along == 0.0 else 0)


@_compiled
def _resample_stroke(xy, times, start, end, out_xy, out_times):
    """Resamples the stroke xy[start..end] into the first rows of out_xy and out_times."""
    row = 0
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


@_compiled
def _rdp_stroke(xy, first, last, epsilon, keep, stack):
    """Marks in `keep` the points of xy[first..last] that RDP keeps; `stack` (n, 2) int64 is
    scratch space for the spans still to split (it holds at most last - first of them)."""
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
            stack[depth, 0], stack[depth, 1] = split, last
            stack[depth + 1, 0], stack[depth + 1, 1] = first, split
            depth += 2


def resample(strokes: Strokes) -> Strokes:
    """Step 2: a point at every whole unit of length along each stroke, then its last point.

    A stroke of length L gets ceil(L) + 1 points; one of zero length gets its first and
    last point. Times are interpolated like the coordinates.
    """
    xy = np.ascontiguousarray(strokes.xy, dtype=np.float64)
    times = np.ascontiguousarray(strokes.times, dtype=np.float64)
    ends = (strokes.starts + strokes.sizes - 1).tolist()
    sizes = np.array(
        [_resampled_size(xy, start, end) for start, end in zip(strokes.starts.tolist(), ends)],
        dtype=np.int64,
    )
    out_xy, out_times = np.empty((int(sizes.sum()), 2)), np.empty(int(sizes.sum()))
    for start, end, out in zip(strokes.starts.tolist(), ends, starts_of(sizes).tolist()):
        _resample_stroke(xy, times, start, end, out_xy[out:], out_times[out:])
    return Strokes(out_xy, out_times, sizes)


def rdp_keep(xy: np.ndarray, sizes: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """Step 3: which points Ramer-Douglas-Peucker keeps in each stroke, (points,) bool."""
    xy = np.ascontiguousarray(xy, dtype=np.float64)
    keep = np.zeros(len(xy), dtype=np.bool_)
    stack = np.empty((max(len(xy), 1), 2), dtype=np.int64)
    for start, size in zip(starts_of(sizes).tolist(), np.asarray(sizes).tolist()):
        _rdp_stroke(xy, start, start + size - 1, epsilon, keep, stack)
    return keep


@_compiled
def _simplify_strokes(xy, times, starts, sizes, epsilon):
    """Steps 2 and 3 for every stroke, one at a time in scratch space that fits the longest
    stroke's resampled points: memory stays small even for a long scribble, which resamples
    to up to 255 * sqrt(2) points per raw segment. Returns the kept points, their times and
    each stroke's count."""
    scratch_xy = np.empty((1024, 2))
    scratch_times = np.empty(1024)
    keep = np.zeros(1024, dtype=np.bool_)
    stack = np.empty((1024, 2), dtype=np.int64)
    out_xy = np.empty((max(2 * len(sizes), 64), 2))
    out_times = np.empty(len(out_xy))
    out_sizes = np.empty(len(sizes), dtype=np.int64)
    written = 0
    for s in range(len(sizes)):
        start, end = starts[s], starts[s] + sizes[s] - 1
        dense = _resampled_size(xy, start, end)
        if dense > len(scratch_xy):
            capacity = max(dense, 2 * len(scratch_xy))
            scratch_xy = np.empty((capacity, 2))
            scratch_times = np.empty(capacity)
            keep = np.zeros(capacity, dtype=np.bool_)
            stack = np.empty((capacity, 2), dtype=np.int64)
        _resample_stroke(xy, times, start, end, scratch_xy, scratch_times)
        keep[:dense] = False
        _rdp_stroke(scratch_xy, 0, dense - 1, epsilon, keep, stack)
        kept = 0
        for k in range(dense):
            kept += keep[k]
        if written + kept > len(out_xy):
            capacity = max(written + kept, 2 * len(out_xy))
            grown_xy = np.empty((capacity, 2))
            grown_times = np.empty(capacity)
            grown_xy[:written] = out_xy[:written]
            grown_times[:written] = out_times[:written]
            out_xy, out_times = grown_xy, grown_times
        for k in range(dense):
            if keep[k]:
                out_xy[written] = scratch_xy[k]
                out_times[written] = scratch_times[k]
                written += 1
        out_sizes[s] = kept
    return out_xy[:written], out_times[:written], out_sizes


def simplify(strokes: Strokes, drawing_strokes: np.ndarray) -> Strokes:
    """Raw strokes -> the simplified format's strokes: integer coordinates in 0..255 (as
    float64), each kept point's interpolated time, and the same strokes, each of >= 2 points.

    Args:
      strokes: the raw strokes of many drawings, back to back.
      drawing_strokes: (drawings,) how many strokes each drawing has, >= 1.
    """
    sizes = np.asarray(strokes.sizes, dtype=np.int64)
    drawing_points = np.add.reduceat(sizes, starts_of(drawing_strokes))
    scaled = align_and_scale(np.asarray(strokes.xy, dtype=np.float64), drawing_points)
    times = np.ascontiguousarray(strokes.times, dtype=np.float64)
    xy, kept_times, kept_sizes = _simplify_strokes(
        np.ascontiguousarray(scaled), times, starts_of(sizes), sizes, EPSILON
    )
    return Strokes(np.rint(xy), kept_times, kept_sizes)


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
