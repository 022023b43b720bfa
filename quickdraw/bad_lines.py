"""Why a line of ndjson is bad: every reason, and the checks all readers of lines share.

Each bad line gets exactly one reason, the first check it fails, and comes back as a
`BadLine` (`quickdraw.drawings` for simplified lines, `quickdraw.raw_lines` for raw ones);
nothing here raises for the caller. `header` checks the fields beside the ink, the same in
both formats.
"""

from __future__ import annotations

import dataclasses

# Why a line was rejected, by reason.
REASONS = {
    "blank_line": "the line is empty",
    "not_utf8": "the line is not valid UTF-8",
    "invalid_json": "the line is not valid JSON",
    "truncated_line": "the file's last line is cut short (no newline, invalid JSON)",
    "line_too_long": "the line is longer than --max_points allows",
    "not_an_object": "the line is JSON but not an object",
    "missing_word": "'word' is missing, empty or not a string",
    "missing_key_id": "'key_id' is missing, empty or not a string or integer",
    "missing_drawing": "'drawing' is missing, empty or not a list",
    "bad_stroke": "a stroke is not a list of an x list and a y list (and a time list)",
    "xy_length_mismatch": "a stroke's x and y lists differ in length",
    "empty_stroke": "a stroke has no points",
    "non_numeric_coordinate": "a coordinate is not a number",
    "non_finite_coordinate": "a coordinate is infinite or too large for float32",
    "too_few_points": "the drawing has fewer than 2 points",
    "too_many_points": "the drawing has more points than --max_points",
    # Raw lines (strokes of [xs, ys, times]) and --ink_format.
    "not_raw": "--ink_format raw, but no stroke has a time list",
    "not_simplified": "--ink_format simplified, but a stroke has a time list (raw format)",
    "missing_time": "a stroke of a raw drawing has no time list",
    "time_length_mismatch": "a stroke's time list differs in length from its x and y lists",
    "non_numeric_time": "a time is not a number",
    "non_finite_time": "a time is infinite or too large for float32",
    "time_backwards": "a stroke's times decrease",
    "too_few_points_simplified": "the raw drawing's points all coincide: simplified, it is "
    "one point, with no extent to scale to 0..255",
}


@dataclasses.dataclass(frozen=True)
class BadLine:
    line_number: int
    reason: str  # a key of REASONS
    text: bytes


class Reject(Exception):
    """Raised by a check that fails; `reason` is a key of REASONS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _key_id(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise Reject("missing_key_id")
    return str(value)


def header(record):
    """(word, key_id, recognized, strokes) of one parsed line, or Reject."""
    if not isinstance(record, dict):
        raise Reject("not_an_object")
    word = record.get("word")
    if not isinstance(word, str) or not word:
        raise Reject("missing_word")
    key_id = _key_id(record.get("key_id"))
    strokes = record.get("drawing")
    if not isinstance(strokes, list) or not strokes:
        raise Reject("missing_drawing")
    return word, key_id, record.get("recognized") is not False, strokes
