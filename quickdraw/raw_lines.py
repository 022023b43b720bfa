"""Raw-format lines to validated, simplified drawings, many at a time.

A raw line's strokes are [xs, ys, times]: float screen coordinates and milliseconds, as
Google's `full/raw` files and any drawing app record them, about four times the points of
the same drawing simplified. `convert` checks them (the simplified format's checks plus the
times' own), simplifies every good drawing with `quickdraw.simplify`, and keeps each kept
point's time, in ms since the drawing's first point. Like `quickdraw.drawings`, it checks a
whole batch at once in C loops and numpy, and goes line by line, naming each bad line's
reason, only for a batch that fails a check.

`read` is the fast way in for a file of raw lines: simdjson parses each line and hands over
its number lists as buffers of doubles, where orjson would build ~600 Python floats a line
that numpy then converts one by one (about 40 us a line, a third of a raw drawing's whole
cost in the pipeline). Lines it cannot vouch for go the general way, through orjson.
"""

from __future__ import annotations

import array as std_array
import itertools

import numpy as np
import simdjson

from quickdraw import simplify
from quickdraw.bad_lines import BadLine, Reject, header
from quickdraw.batch import DrawingBatch, points_from_coordinates, starts_of

# Raw coordinates and times are held to float32's range, as the simplified format's
# coordinates are: an extent then stays finite in float64, where the simplification runs,
# and every time fits the float32 `time` feature.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_DICT, _LIST, _STR = frozenset((dict,)), frozenset((list,)), frozenset((str,))
_KEY_ID_TYPES = frozenset((str, int))
_NUMBERS = frozenset((int, float))


def read(lines: list, max_points: int) -> tuple[tuple, list]:
    """Raw lines straight to checked strokes, through simdjson: (the checked fields of the
    lines that pass every check of `_whole_batch`, in the form `_simplified` takes, and the
    other lines, for the general way in, which names each one's fault)."""
    parser = simdjson.Parser()
    taken, rest = [], []
    for number, line in lines:
        one = _read_line(parser, line, max_points)
        if one is None:
            rest.append((number, line))
        else:
            taken.append(((number, None, line), *one))
    checked = _read_fields(taken)
    strokes, drawing_strokes = checked[4], checked[5]
    if not len(drawing_strokes):
        return checked, rest
    stroke_starts = starts_of(drawing_strokes)
    drawing_points = np.add.reduceat(strokes.sizes, stroke_starts)
    out_of_range = np.abs(strokes.xy).max(axis=1) > _FLOAT32_MAX
    out_of_range |= np.abs(strokes.times) > _FLOAT32_MAX
    failed = np.logical_or.reduceat(out_of_range, starts_of(drawing_points))
    failed |= np.logical_or.reduceat(_decreasing(strokes.times, strokes.sizes), stroke_starts)
    if failed.any():  # rare: read the others again, and leave these to the general way
        rest = sorted(rest + [item[0][0::2] for item, f in zip(taken, failed) if f])
        checked = _read_fields([item for item, f in zip(taken, failed) if not f])
    return checked, rest


def _read_line(parser, line: bytes, max_points: int):
    """(word, key_id, recognized, number buffers, stroke sizes) of one line that parses as a
    raw drawing of the right types and sizes, or None. A line that simdjson reads otherwise
    than orjson would (a repeated key: orjson keeps the last) gives None too."""
    try:
        record = parser.parse(line)
        if not isinstance(record, simdjson.Object) or len(set(record.keys())) != len(record):
            return None
        word, key_id, strokes = record.get("word"), record.get("key_id"), record.get("drawing")
        if type(word) is not str or not word or type(key_id) not in _KEY_ID_TYPES:
            return None
        if key_id == "" or not isinstance(strokes, simdjson.Array) or not len(strokes):
            return None
        # as_buffer flattens nested lists: a line with more "[" than its strokes' own holds
        # one, or a string with a "[", and goes the general way.
        if line.count(b"[") != 1 + 4 * len(strokes):
            return None
        buffers, sizes = [], []
        for stroke in strokes:
            if not isinstance(stroke, simdjson.Array) or len(stroke) != 3:
                return None
            xs, ys, times = stroke
            size = len(xs)
            if not size or len(ys) != size or len(times) != size:
                return None
            sizes.append(size)
            for values in (xs, ys, times):
                buffers.append(values.as_buffer(of_type="d"))  # TypeError unless numbers
        if not 2 <= sum(sizes) <= max_points:
            return None
        return word, str(key_id), record.get("recognized") is not False, buffers, sizes
    except (ValueError, TypeError, RuntimeError, AttributeError):  # UnicodeDecodeError too
        return None


def _read_fields(taken: list) -> tuple:
    """`_simplified`'s arguments from `read`'s lines."""
    values = np.frombuffer(b"".join([b for item in taken for b in item[4]]), dtype=np.float64)
    stroke_sizes = np.array([size for item in taken for size in item[5]], dtype=np.int64)
    return (
        [item[0] for item in taken],
        [item[1] for item in taken],
        [item[2] for item in taken],
        [item[3] for item in taken],
        _strokes(values, stroke_sizes),
        np.array([len(item[5]) for item in taken], dtype=np.int64),
    )


def convert(parsed: list, max_points: int, bad: list[BadLine], careful=False) -> DrawingBatch:
    """Raw lines -> their drawings, simplified, in order; bad lines are added to `bad`.

    Args:
      parsed: (line number, parsed JSON, line bytes) of lines whose strokes have times.
      max_points: a drawing with more points, raw or simplified, is a bad line.
      careful: check line by line only (for parsed values that hold Python booleans, which
        the whole-batch check finds in the line's text).
    """
    parts = (
        [_line_by_line(parsed, max_points, bad)] if careful else _checked(parsed, max_points, bad)
    )
    merged = [
        [value for part in parts for value in part[field]] for field in range(4)
    ]  # parsed, words, key_ids, recognized
    strokes = simplify.Strokes(
        np.concatenate([part[4].xy for part in parts]),
        np.concatenate([part[4].times for part in parts]),
        np.concatenate([part[4].sizes for part in parts]),
    )
    drawing_strokes = np.concatenate([part[5] for part in parts])
    return simplified(*merged, strokes, drawing_strokes, max_points=max_points, bad=bad)


def _checked(parsed: list, max_points: int, bad: list[BadLine]) -> list:
    """The lines' checked fields, in parts: a batch that fails the whole-batch check is
    halved until its parts pass or hold a few lines, which are checked one by one. A rare
    bad line then costs a few more whole-batch checks, not the slow path for its batch."""
    checked = _whole_batch(parsed, max_points)
    if checked is not None:
        return [checked]
    if len(parsed) <= 8:
        return [_line_by_line(parsed, max_points, bad)]
    half = len(parsed) // 2
    return _checked(parsed[:half], max_points, bad) + _checked(parsed[half:], max_points, bad)


def _whole_batch(parsed: list, max_points: int):
    """The fast path: every check over the whole batch at once. None if any line fails."""
    records = [item[1] for item in parsed]
    if not _DICT.issuperset(map(type, records)):
        return None
    words = [record.get("word") for record in records]
    key_ids = [record.get("key_id") for record in records]
    drawings = [record.get("drawing") for record in records]
    if not (_STR.issuperset(map(type, words)) and all(words)):
        return None
    if not _KEY_ID_TYPES.issuperset(map(type, key_ids)) or "" in key_ids:
        return None
    if not (_LIST.issuperset(map(type, drawings)) and all(drawings)):
        return None
    strokes = list(itertools.chain.from_iterable(drawings))
    if not _LIST.issuperset(map(type, strokes)) or set(map(len, strokes)) != {3}:
        return None
    lists = list(itertools.chain.from_iterable(strokes))  # each stroke's xs, ys and times
    if not _LIST.issuperset(map(type, lists)):
        return None
    list_sizes = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists)).reshape(-1, 3)
    stroke_sizes = list_sizes[:, 0]
    drawing_strokes = np.fromiter(map(len, drawings), dtype=np.int64, count=len(drawings))
    counts = np.add.reduceat(stroke_sizes, starts_of(drawing_strokes))
    if (list_sizes != stroke_sizes[:, np.newaxis]).any() or stroke_sizes.min() == 0:
        return None
    if counts.min() < 2 or counts.max() > max_points or _other_booleans(parsed, records):
        return None
    values = _fast_values(list(itertools.chain.from_iterable(lists)))  # (3 * points,)
    if values is None:
        return None
    strokes = _strokes(values, stroke_sizes)
    if np.abs(values).max() > _FLOAT32_MAX or _decreasing(strokes.times, stroke_sizes).any():
        return None
    return (
        parsed,
        words,
        [str(key_id) for key_id in key_ids],
        [record.get("recognized") is not False for record in records],
        strokes,
        drawing_strokes,
    )


def _strokes(values: np.ndarray, stroke_sizes: np.ndarray) -> simplify.Strokes:
    """Strokes from their values as a line lists them: a stroke of n points that starts at
    point p holds its xs at values[3p:3p + n], then its ys and its times, n each."""
    stroke_of_point = np.repeat(np.arange(len(stroke_sizes)), stroke_sizes)
    x_rows = 2 * starts_of(stroke_sizes)[stroke_of_point] + np.arange(len(stroke_of_point))
    sizes = stroke_sizes[stroke_of_point]
    xy = np.stack([values[x_rows], values[x_rows + sizes]], axis=1)
    return simplify.Strokes(xy, values[x_rows + 2 * sizes], stroke_sizes)


def _other_booleans(parsed: list, records: list) -> bool:
    """Whether a JSON true or false may sit anywhere in these lines but in `recognized`.

    numpy reads true as 1 among numbers. Every true or false literal in a line's text is a
    "true" or "false" there, so when the text holds no more of these than the lines have
    boolean `recognized` fields, there is no other boolean (a string that holds "true"
    only sends the batch down the careful path).
    """
    text = b"".join([item[2] for item in parsed])
    known = sum(isinstance(record.get("recognized"), bool) for record in records)
    return text.count(b"true") + text.count(b"false") != known


def _fast_values(values: list) -> np.ndarray | None:
    """float64 values of a whole batch, or None if any needs a closer look.

    `array.array` converts Python numbers in C about twice as fast as `np.array`, which
    first works out a dtype; it refuses a string, a null, a list or an integer beyond
    float64. The caller has ruled out booleans, which it would read as 0 and 1.
    """
    try:
        array = np.frombuffer(std_array.array("d", values), dtype=np.float64)
    except (TypeError, OverflowError):
        return None
    return array if np.isfinite(array).all() else None


def _decreasing(times: np.ndarray, stroke_sizes: np.ndarray) -> np.ndarray:
    """(strokes,) bool: whether each stroke's times go backwards anywhere."""
    steps = np.diff(times) < 0  # (points - 1,)
    ends = np.cumsum(stroke_sizes) - 1
    steps[ends[:-1]] = False  # from one stroke's last point to the next one's first
    return np.logical_or.reduceat(np.append(steps, False), starts_of(stroke_sizes))


def _structure(record, max_points: int):
    """One raw line's fields and strokes, or Reject naming its first fault."""
    word, key_id, recognized, strokes = header(record)
    columns = ([], [], [])  # xs, ys, times
    stroke_sizes = []
    for stroke in strokes:
        if not isinstance(stroke, list) or len(stroke) < 2:
            raise Reject("bad_stroke")
        if not all(isinstance(values, list) for values in stroke[:3]):
            raise Reject("bad_stroke")
        if len(stroke) < 3:
            raise Reject("missing_time")
        if len(stroke[0]) != len(stroke[1]):
            raise Reject("xy_length_mismatch")
        if len(stroke[2]) != len(stroke[0]):
            raise Reject("time_length_mismatch")
        if not stroke[0]:
            raise Reject("empty_stroke")
        for column, values in zip(columns, stroke):
            column += values
        stroke_sizes.append(len(stroke[0]))
    if len(columns[0]) < 2:
        raise Reject("too_few_points")
    if len(columns[0]) > max_points:
        raise Reject("too_many_points")
    return word, key_id, recognized, columns, np.array(stroke_sizes, dtype=np.int64)


def _values(values: list, kind: str) -> np.ndarray:
    """float64 coordinates (kind "coordinate") or times (kind "time"), or Reject."""
    if not _NUMBERS.issuperset(map(type, values)):  # bool is a type of its own: not a number
        raise Reject(f"non_numeric_{kind}")
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        raise Reject(f"non_finite_{kind}") from None
    if not (np.abs(array) <= _FLOAT32_MAX).all():  # NaN fails this too
        raise Reject(f"non_finite_{kind}")
    return array


def _line_by_line(parsed: list, max_points: int, bad: list[BadLine]):
    """The careful path: each line on its own; bad lines are added to `bad`."""
    kept, words, key_ids, recognized, xy, times, sizes, drawing_strokes = ([] for _ in range(8))
    for item in parsed:
        try:
            word, key_id, is_recognized, columns, stroke_sizes = _structure(item[1], max_points)
            x, y = _values(columns[0], "coordinate"), _values(columns[1], "coordinate")
            t = _values(columns[2], "time")
            if _decreasing(t, stroke_sizes).any():
                raise Reject("time_backwards")
        except Reject as reject:
            bad.append(BadLine(item[0], reject.reason, item[2]))
            continue
        kept.append(item)
        words.append(word)
        key_ids.append(key_id)
        recognized.append(is_recognized)
        xy.append(np.stack([x, y], axis=1))
        times.append(t)
        sizes.append(stroke_sizes)
        drawing_strokes.append(len(stroke_sizes))
    strokes = simplify.Strokes(
        np.concatenate(xy) if xy else np.zeros((0, 2)),
        np.concatenate(times) if times else np.zeros(0),
        np.concatenate(sizes) if sizes else np.zeros(0, np.int64),
    )
    return kept, words, key_ids, recognized, strokes, np.array(drawing_strokes, dtype=np.int64)


def simplified(parsed, words, key_ids, recognized, strokes, drawing_strokes, *, max_points, bad):
    """Simplifies checked drawings; those with no extent or, simplified, more than
    `max_points` points become bad lines. Times become ms since each drawing's first point."""
    kept = np.arange(len(drawing_strokes))
    if len(kept):
        drawing_points = np.add.reduceat(strokes.sizes, starts_of(drawing_strokes))
        first_times = strokes.times[starts_of(drawing_points)]
        flat = simplify.extents(strokes.xy, drawing_points)[1] == 0
        if flat.any():
            for index in np.flatnonzero(flat):
                bad.append(BadLine(parsed[index][0], "too_few_points_simplified", parsed[index][2]))
            points, rows = np.repeat(~flat, drawing_points), np.repeat(~flat, drawing_strokes)
            strokes = simplify.Strokes(
                strokes.xy[points], strokes.times[points], strokes.sizes[rows]
            )
            kept, drawing_strokes, first_times = (
                kept[~flat],
                drawing_strokes[~flat],
                first_times[~flat],
            )
    if not len(kept):
        return DrawingBatch(
            np.zeros(0, np.int64),
            [],
            [],
            np.zeros(0, bool),
            np.zeros(0, np.int64),
            points_from_coordinates(np.zeros(0, np.float32), np.zeros(0, np.float32), []),
        )
    result = simplify.simplify(strokes, drawing_strokes)
    counts = np.add.reduceat(result.sizes, starts_of(drawing_strokes))
    fits = counts <= max_points
    for index in kept[~fits]:
        bad.append(BadLine(parsed[index][0], "too_many_points", parsed[index][2]))
    batch = DrawingBatch(
        line_numbers=np.array([parsed[i][0] for i in kept], dtype=np.int64),
        words=[words[i] for i in kept],
        key_ids=[key_ids[i] for i in kept],
        recognized=np.array([recognized[i] for i in kept], dtype=bool),
        counts=counts,
        points=points_from_coordinates(
            result.xy[:, 0].astype(np.float32),
            result.xy[:, 1].astype(np.float32),
            result.sizes.tolist(),
        ),
        raw=np.ones(len(kept), dtype=bool),
        times=(result.times - np.repeat(first_times, counts)).astype(np.float32),
    )
    return batch if fits.all() else batch.select(fits)
