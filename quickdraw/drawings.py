"""Lines of ndjson to validated drawings, many at a time.

`convert_lines` is the pipeline's hot path: it parses each line with orjson, checks its
structure in plain Python, then validates the coordinates of the whole batch with a few
numpy calls. A line that fails any check comes back as a `BadLine` with one of `REASONS`
(`quickdraw.bad_lines`); it never raises. The drawings keep their absolute float32 points,
the very numbers the tutorial's arithmetic starts from, so that the ink (`quickdraw.ink`)
can be computed wherever it is cheapest.

A line is in the raw format when a stroke carries a third list, its times (`--ink_format
auto`, line by line); `quickdraw.raw_lines` checks such lines and simplifies them as Google
made the simplified files (`quickdraw.simplify`), so every drawing here is in the simplified
format. Raw drawings keep their times too.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import itertools
import zlib
from collections.abc import Sequence

import numpy as np
import orjson

from quickdraw.bad_lines import REASONS, BadLine, Reject, header
from quickdraw.batch import DrawingBatch, in_line_order, points_from_coordinates

# What reading a damaged .gz file of lines raises (cut short, a bad checksum, bad data):
# readers keep the lines before the damage and report the file.
GZIP_DAMAGE = (gzip.BadGzipFile, EOFError, zlib.error)

# The game stops a drawing after 20 seconds. The densest raw drawings in ../shared record
# about 330 points a second (~6,600 in 20 s, ~14,000 in the 42 s the longest timestamps
# span), and simplification only removes points: the 9,570 raw drawings there have at most
# 1,174 points and the 22,638 simplified ones at most 503. 20,000 keeps every real drawing
# with room to spare, and still turns away runaway lines before they cost memory.
DEFAULT_MAX_POINTS = 20_000

INK_FORMATS = ("auto", "raw", "simplified")


def has_times(record) -> bool:
    """Whether a parsed line is in the raw format: a stroke of its drawing has a third list."""
    strokes = record.get("drawing") if isinstance(record, dict) else None
    return isinstance(strokes, list) and is_raw(strokes)


def _structure(record, max_points: int):
    """Checks one parsed line, stroke by stroke, naming its first fault (the careful path).

    Returns (word, key_id, recognized, xs, ys, stroke_lengths).
    """
    word, key_id, recognized, strokes = header(record)
    xs: list = []
    ys: list = []
    stroke_lengths = []
    for stroke in strokes:
        if not isinstance(stroke, list) or len(stroke) < 2:
            raise Reject("bad_stroke")
        x, y = stroke[0], stroke[1]
        if not isinstance(x, list) or not isinstance(y, list):
            raise Reject("bad_stroke")
        if len(x) != len(y):
            raise Reject("xy_length_mismatch")
        if not x:
            raise Reject("empty_stroke")
        xs += x
        ys += y
        stroke_lengths.append(len(x))
    if len(xs) < 2:
        raise Reject("too_few_points")
    if len(xs) > max_points:
        raise Reject("too_many_points")
    return word, key_id, recognized, xs, ys, stroke_lengths


_NUMBER_TYPES = frozenset((int, float))


def _coordinates(values: list) -> np.ndarray:
    """float32 coordinates, or Reject. Slow path: one drawing at a time. The set of the
    values' types is taken in one C loop; only where it holds another type (bool is a type of
    its own) is each value looked at, so that subclasses of int and float still count."""
    if not _NUMBER_TYPES.issuperset(map(type, values)) and any(
        isinstance(v, bool) or not isinstance(v, (int, float)) for v in values
    ):
        raise Reject("non_numeric_coordinate")
    with np.errstate(over="ignore"):
        array = np.array(values, dtype=np.float64).astype(np.float32)
    if not np.isfinite(array).all():
        raise Reject("non_finite_coordinate")
    return array


def _fast_coordinates(values: list) -> np.ndarray | None:
    """float32 coordinates of a whole batch, or None if any value needs a closer look.

    The caller has ruled out booleans (`_may_hold_booleans`); a string, a null, a nested
    list or an integer beyond int64 gives an array of strings or objects, or an error.
    """
    try:
        array = np.array(values)
    except (ValueError, TypeError):
        return None
    if array.dtype.kind not in "iuf":
        return None
    with np.errstate(over="ignore"):
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        return None
    return array


def _reject_reason_of_line(line: bytes) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    # Only a file's last line can lack its newline: invalid JSON there is a cut-off write.
    return "invalid_json" if line.endswith(b"\n") else "truncated_line"


def convert_lines(
    lines: Sequence[tuple[int, bytes]], max_points: int, ink_format: str = "auto"
) -> tuple[DrawingBatch, list[BadLine]]:
    """Parses, validates and converts a batch of lines.

    Args:
      lines: (1-based line number, raw line bytes) pairs, in file order.
      max_points: drawings with more points (raw or simplified) are bad lines.
      ink_format: "auto" reads each line as raw when a stroke has a time list and as
        simplified otherwise; "raw" or "simplified" makes a line of the other kind bad.

    Returns:
      The good drawings, in order, raw ones simplified, and the bad lines with their
      reasons, in order.
    """
    if ink_format not in INK_FORMATS:
        raise ValueError(f"ink_format must be one of {INK_FORMATS}, got {ink_format!r}")
    with without_cyclic_gc():
        return _convert_lines(lines, max_points, ink_format)


@contextlib.contextmanager
def without_cyclic_gc():
    """Pauses Python's cyclic garbage collector (for code that makes no reference cycles).

    Parsing a batch allocates tens of thousands of lists and dicts, each of which counts
    towards the collector's next run, and a full run walks every live object of the
    worker (Beam's buffers included): measured on 520k drawings, the collections took a
    third of the pipeline's time. Parsed JSON holds no reference cycles, so reference
    counting frees all of it; nothing is left for the collector to find.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _convert_lines(lines, max_points, ink_format):
    bad: list[BadLine] = []
    raw_batch = None
    if ink_format != "simplified" and lines and _looks_raw(lines[0][1]):
        from quickdraw import raw_lines  # numba's compiler loads only where raw lines are read

        checked, lines = raw_lines.read(lines, max_points)
        raw_batch = raw_lines.simplified(*checked, max_points=max_points, bad=bad)
    parsed = []  # (line_number, record, line)
    for line_number, line in lines:
        if not line.strip():
            bad.append(BadLine(line_number, "blank_line", line))
            continue
        try:
            parsed.append((line_number, orjson.loads(line), line))
        except orjson.JSONDecodeError:
            bad.append(BadLine(line_number, _reject_reason_of_line(line), line))
    batch = _whole_batch(parsed, max_points) if ink_format != "raw" else None
    if batch is None:
        batch = _by_format(parsed, max_points, ink_format, bad)
        bad.sort(key=lambda item: item.line_number)
    if raw_batch is None or not len(raw_batch):
        return batch, bad
    bad.sort(key=lambda item: item.line_number)
    return in_line_order([raw_batch, batch]), bad


def _looks_raw(line: bytes) -> bool:
    """Whether a line's text looks like compact raw ink, where each stroke `[[x..],[y..],
    [t..]]` has two `],[` inside and one more between strokes (`]],[[`), and simplified ink
    one inside. A guess that only picks the faster way in for a batch of lines: the raw
    reader checks every line, and leaves those it cannot vouch for to orjson."""
    return line.count(b"],[") == 3 * line.count(b"]],[[") + 2


def _by_format(parsed: list, max_points: int, ink_format: str, bad: list, careful=False):
    """Converts raw and simplified lines apart, and merges their drawings in line order.
    `careful` checks line by line only (parsed values, not lines of JSON, may hold booleans
    that the fast paths would find only in a line's text)."""
    from quickdraw import raw_lines  # numba's compiler loads only where raw lines are read

    simplified, raw = [], []
    for item in parsed:
        timed = has_times(item[1])
        if timed and ink_format == "simplified":
            bad.append(BadLine(item[0], "not_simplified", item[2]))
        elif not timed and ink_format == "raw":
            try:  # a line that is no drawing at all gets that reason first
                _structure(item[1], max_points)
                reason = "not_raw"
            except Reject as reject:
                reason = reject.reason
            bad.append(BadLine(item[0], reason, item[2]))
        else:
            (raw if timed else simplified).append(item)
    batches = []
    if simplified:
        batch = None if careful else _whole_batch(simplified, max_points)
        batches.append(batch if batch is not None else _line_by_line(simplified, max_points, bad))
    if raw:
        batches.append(raw_lines.convert(raw, max_points, bad, careful))
    if not batches:
        return _line_by_line([], max_points, bad)  # empty: no line is good
    return in_line_order(batches) if len(batches) > 1 else batches[0]


_DICT_TYPE = frozenset((dict,))
_LIST_TYPE = frozenset((list,))
_STR_TYPE = frozenset((str,))
_KEY_ID_TYPES = frozenset((str, int))


def _whole_batch(parsed: list, max_points: int) -> DrawingBatch | None:
    """The fast path: every check over the whole batch at once, in C loops (map, set, min,
    comprehensions). Returns None when any record fails any check; `_line_by_line` then
    finds which records and why."""
    if not parsed:
        return None
    records = [item[1] for item in parsed]
    if not _DICT_TYPE.issuperset(map(type, records)):
        return None
    words = [record.get("word") for record in records]
    key_ids = [record.get("key_id") for record in records]
    drawings = [record.get("drawing") for record in records]
    if not (_STR_TYPE.issuperset(map(type, words)) and all(words)):
        return None
    key_id_types = set(map(type, key_ids))  # bool is a type of its own: rejected here
    if not _KEY_ID_TYPES.issuperset(key_id_types) or "" in key_ids:
        return None
    if int in key_id_types:
        key_ids = [str(key_id) for key_id in key_ids]
    if not (_LIST_TYPE.issuperset(map(type, drawings)) and all(drawings)):
        return None
    strokes = list(itertools.chain.from_iterable(drawings))
    # Every stroke [xs, ys]: a third list (times) makes a raw line, read elsewhere.
    if not _LIST_TYPE.issuperset(map(type, strokes)) or set(map(len, strokes)) != {2}:
        return None
    xs = [stroke[0] for stroke in strokes]
    ys = [stroke[1] for stroke in strokes]
    if not (_LIST_TYPE.issuperset(map(type, xs)) and _LIST_TYPE.issuperset(map(type, ys))):
        return None
    stroke_lengths = list(map(len, xs))
    if stroke_lengths != list(map(len, ys)) or min(stroke_lengths) == 0:
        return None
    strokes_per_drawing = np.fromiter(map(len, drawings), dtype=np.int64, count=len(drawings))
    first_strokes = np.cumsum(strokes_per_drawing) - strokes_per_drawing
    counts = np.add.reduceat(np.array(stroke_lengths, dtype=np.int64), first_strokes)
    if counts.min() < 2 or counts.max() > max_points:
        return None
    if _may_hold_booleans(b"".join([item[2] for item in parsed])):
        return None
    x_array = _fast_coordinates(list(itertools.chain.from_iterable(xs)))
    y_array = _fast_coordinates(list(itertools.chain.from_iterable(ys)))
    if x_array is None or y_array is None:
        return None
    return DrawingBatch(
        line_numbers=np.array([item[0] for item in parsed], dtype=np.int64),
        words=words,
        key_ids=key_ids,
        recognized=np.array([record.get("recognized") is not False for record in records]),
        counts=counts,
        points=points_from_coordinates(x_array, y_array, stroke_lengths),
    )


def _may_hold_booleans(text: bytes) -> bool:
    """Whether a JSON true or false may sit among the coordinates of these lines.

    numpy would quietly read true as 1 among numbers, so each coordinate's type would
    need checking; instead, every "true" and "false" in the lines' text must belong to
    a `"recognized":true` or `"recognized":false` pair (that text, quotes unescaped,
    cannot occur inside a JSON string). Any other occurrence sends the batch down the
    careful path. Lines end with a newline, so no literal spans two lines.
    """
    literals = text.count(b"true") + text.count(b"false")
    return bool(literals) and literals != (
        text.count(b'"recognized":true') + text.count(b'"recognized":false')
    )


def _checked(record, max_points: int):
    """One parsed simplified line, checked: (word, key_id, recognized, x_array, y_array,
    stroke_lengths), or Reject with its first fault."""
    word, key_id, recognized, xs, ys, stroke_lengths = _structure(record, max_points)
    return word, key_id, recognized, _coordinates(xs), _coordinates(ys), stroke_lengths


def _line_by_line(parsed: list, max_points: int, bad: list[BadLine]) -> DrawingBatch:
    """The careful path: each record on its own; bad records are added to `bad`."""
    kept = []  # (line_number, word, key_id, recognized, xs, ys, stroke_lengths)
    for line_number, record, line in parsed:
        try:
            word, key_id, recognized, x_array, y_array, stroke_lengths = _checked(
                record, max_points
            )
        except Reject as reject:
            bad.append(BadLine(line_number, reject.reason, line))
            continue
        kept.append((line_number, word, key_id, recognized, x_array, y_array, stroke_lengths))
    x_array = np.concatenate([item[4] for item in kept] or [np.zeros(0, np.float32)])
    y_array = np.concatenate([item[5] for item in kept] or [np.zeros(0, np.float32)])
    stroke_lengths = list(itertools.chain.from_iterable(item[6] for item in kept))
    return DrawingBatch(
        line_numbers=np.array([item[0] for item in kept], dtype=np.int64),
        words=[item[1] for item in kept],
        key_ids=[item[2] for item in kept],
        recognized=np.array([item[3] for item in kept], dtype=bool),
        counts=np.array([len(item[4]) for item in kept], dtype=np.int64),
        points=points_from_coordinates(x_array, y_array, stroke_lengths),
    )


# --- One drawing at a time (the server, a user's app) --------------------------------


class BadDrawing(ValueError):
    """A drawing that fails a check; `reason` is a key of REASONS."""

    def __init__(self, reason: str):
        super().__init__(f"{reason}: {REASONS[reason]}")
        self.reason = reason


def is_raw(strokes) -> bool:
    """Whether a drawing is in the raw format: a stroke carries a third (time) list."""
    return any(isinstance(stroke, list) and len(stroke) >= 3 for stroke in strokes)


def drawing_points(strokes, max_points: int, ink_format: str = "auto") -> np.ndarray:
    """One drawing, an ndjson line's `drawing` value, raw or simplified -> its absolute
    (n, 3) float32 points in the simplified format, as the model reads them: a raw drawing
    is simplified as the pipeline simplifies it. Raises BadDrawing with the reason of the
    pipeline's checks (`ink_format` as `convert_lines` reads it)."""
    if ink_format not in INK_FORMATS:
        raise ValueError(f"ink_format must be one of {INK_FORMATS}, got {ink_format!r}")
    record = {"word": "-", "key_id": "-", "drawing": strokes}
    if ink_format != "raw" and isinstance(strokes, list) and not is_raw(strokes):
        # A simplified drawing (the server's usual one): the careful path's own checks,
        # without a batch around one drawing.
        try:
            *_, x_array, y_array, stroke_lengths = _checked(record, max_points)
        except Reject as reject:
            raise BadDrawing(reject.reason) from None
        return points_from_coordinates(x_array, y_array, stroke_lengths)
    bad: list[BadLine] = []
    batch = _by_format([(1, record, b"")], max_points, ink_format, bad, careful=True)
    if bad:
        raise BadDrawing(bad[0].reason)
    return batch.points_of(0)
