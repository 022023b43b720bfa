"""Hand-written lines of every bad kind, simplified and raw, each under the reason the
pipeline gives it; and the good lines they are made from."""

import json

import orjson


def line_of(**fields) -> bytes:
    record = {
        "word": "cat",
        "key_id": "123",
        "recognized": True,
        "drawing": [[[0, 10, 20], [0, 5, 0]]],
    }
    record.update(fields)
    return (json.dumps(record) + "\n").encode()


BAD_LINES = {
    "blank_line": b"\n",
    "invalid_json": b'{"word": "cat", "drawing": [[[1,2],[3,4]]\n',
    "truncated_line": b'{"word": "cat", "key_id": "1", "drawing": [[[1,2],[3',  # no newline
    "not_utf8": b'{"word": "caf\xe9", "key_id": "1", "drawing": [[[1,2],[3,4]]]}\n',
    "not_an_object": b"[1, 2, 3]\n",
    "missing_word": line_of(word=None),
    "missing_key_id": line_of(key_id=None),
    "missing_drawing": line_of(drawing=[]),
    "bad_stroke": line_of(drawing=[[[0, 1]]]),
    "xy_length_mismatch": line_of(drawing=[[[0, 1, 2], [0, 1]]]),
    "empty_stroke": line_of(drawing=[[[0, 1], [0, 1]], [[], []]]),
    "non_numeric_coordinate": line_of(drawing=[[[0, "1"], [0, 1]]]),
    "non_finite_coordinate": line_of(drawing=[[[0, 1e39], [0, 1]]]),  # overflows float32
    "too_few_points": line_of(drawing=[[[5], [5]]]),
    "too_many_points": line_of(drawing=[[list(range(30)), list(range(30))]]),
}


def raw_line_of(drawing, **fields) -> bytes:
    record = {"word": "cat", "key_id": "7", "recognized": True, "drawing": drawing, **fields}
    return orjson.dumps(record) + b"\n"


# Two strokes, extent 4 (scale 63.75): the corner (3, 0) lands on (191.25, 0), between two
# resampled points; the one at length 191, (191, 0), is kept, at 300 * 191 / 191.25 ms.
CORNER = [[[0, 3, 3], [0, 0, 4], [1000, 1300, 1700]], [[0, 1], [4, 4], [2000, 2100]]]


BAD_RAW_LINES = {
    "missing_time": raw_line_of([CORNER[0], CORNER[1][:2]]),
    "time_length_mismatch": raw_line_of([[[0, 3], [0, 0], [1, 2, 3]]]),
    "non_numeric_time": raw_line_of([[[0, 3], [0, 0], [1, "2"]]]),
    "non_finite_time": raw_line_of([[[0, 3], [0, 0], [1, 1e39]]]),  # beyond float32
    "time_backwards": raw_line_of([[[0, 3, 5], [0, 0, 1], [10, 20, 15]]]),
    "too_few_points_simplified": raw_line_of([[[2, 2], [5, 5], [0, 10]], [[2], [5], [20]]]),
    "bad_stroke": raw_line_of([[[0, 3], [0, 0], 12]]),
    "xy_length_mismatch": raw_line_of([[[0, 3], [0], [1, 2]]]),
    "empty_stroke": raw_line_of([[[], [], []], CORNER[1]]),
    "non_numeric_coordinate": raw_line_of([[[0, None], [0, 0], [1, 2]]]),
    "non_finite_coordinate": raw_line_of([[[0, 1e39], [0, 0], [1, 2]]]),  # beyond float32
    "too_few_points": raw_line_of([[[3], [4], [5]]]),
    # 13 raw points, but a one-point stroke simplifies to two: 26 points, more than 25.
    "too_many_points": raw_line_of([[[i], [i], [i]] for i in range(13)]),
}
