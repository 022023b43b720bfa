"""Line validation: every kind of bad line gets its reason; good lines keep their ink."""

import json

import numpy as np
import orjson
import pytest

from quickdraw import drawings, ink
from tests.support.bad_lines import BAD_LINES, line_of

GOOD = line_of()

MAX_POINTS = 25


@pytest.mark.parametrize("reason", sorted(BAD_LINES))
def test_each_bad_line_gets_its_reason_and_the_good_ones_survive(reason):
    lines = [(1, GOOD), (2, BAD_LINES[reason]), (3, line_of(key_id="456"))]
    batch, bad = drawings.convert_lines(lines, MAX_POINTS)
    assert [(b.line_number, b.reason) for b in bad] == [(2, reason)]
    assert bad[0].text == BAD_LINES[reason]
    assert reason in drawings.REASONS
    assert batch.key_ids == ["123", "456"]
    assert batch.line_numbers.tolist() == [1, 3]
    expected = ink.ink_from_strokes([[[0, 10, 20], [0, 5, 0]]])
    np.testing.assert_array_equal(batch.ink_of(0), expected)
    np.testing.assert_array_equal(batch.ink_of(1), expected)


@pytest.mark.parametrize(
    "coordinate",
    [None, True, [1], {"x": 1}, "12"],
    ids=["null", "bool", "list", "object", "numeric-string"],
)
def test_other_non_numeric_coordinates(coordinate):
    line = line_of(drawing=[[[0, 1, 2], [0, coordinate, 1]]])
    batch, bad = drawings.convert_lines([(1, line), (2, GOOD)], MAX_POINTS)
    assert [b.reason for b in bad] == ["non_numeric_coordinate"]
    assert len(batch) == 1


# Real files are compact JSON (`"recognized":true`, no spaces): whole batches of such lines
# take the fast path, which must reject exactly what the careful path rejects.
RECORDS = [
    {"word": "cat", "key_id": "1", "recognized": True, "drawing": [[[0, 10, 20], [0, 5, 0]]]},
    {"word": "dog", "key_id": 2, "recognized": False, "drawing": [[[1.5, 3], [2, 4]], [[7], [8]]]},
    {"key_id": "3", "word": "cat", "drawing": [[[0, 255], [255, 0], [0, 9]]]},
]


def _compact(record) -> bytes:
    return orjson.dumps(record) + b"\n"


def test_fast_and_careful_paths_agree():
    compact = [(i + 1, _compact(record)) for i, record in enumerate(RECORDS)]
    spaced = [(i + 1, (json.dumps(record) + "\n").encode()) for i, record in enumerate(RECORDS)]
    assert not any(drawings._may_hold_booleans(line) for _, line in compact)
    assert any(drawings._may_hold_booleans(line) for _, line in spaced)  # careful path
    fast, fast_bad = drawings.convert_lines(compact, MAX_POINTS)
    careful, careful_bad = drawings.convert_lines(spaced, MAX_POINTS)
    assert fast_bad == careful_bad == []
    assert fast.key_ids == careful.key_ids == ["1", "2", "3"]
    assert fast.words == careful.words
    assert fast.recognized.tolist() == careful.recognized.tolist() == [True, False, True]
    assert fast.counts.tolist() == careful.counts.tolist() == [3, 3, 2]
    np.testing.assert_array_equal(fast.points, careful.points)


@pytest.mark.parametrize(
    "coordinate", [True, False, None, "12", [1]], ids=["true", "false", "null", "string", "list"]
)
@pytest.mark.parametrize("recognized", [True, False])
def test_the_fast_path_rejects_non_numbers(coordinate, recognized):
    bad_record = {**RECORDS[0], "recognized": recognized, "drawing": [[[0, coordinate], [0, 1]]]}
    lines = [(1, _compact(RECORDS[0])), (2, _compact(bad_record)), (3, _compact(RECORDS[2]))]
    batch, bad = drawings.convert_lines(lines, MAX_POINTS)
    assert [(b.line_number, b.reason) for b in bad] == [(2, "non_numeric_coordinate")]
    assert batch.key_ids == ["1", "3"]


def test_integers_beyond_int64_are_numbers_when_float32_holds_them():
    big = line_of(drawing=[[[0, 2**80], [0, 1]]])
    huge = line_of(drawing=[[[0, 10**40], [0, 1]]])  # beyond float32
    batch, bad = drawings.convert_lines([(1, big), (2, huge), (3, GOOD)], MAX_POINTS)
    assert [(b.line_number, b.reason) for b in bad] == [(2, "non_finite_coordinate")]
    assert batch.line_numbers.tolist() == [1, 3]
    np.testing.assert_array_equal(batch.ink_of(0), [[1, 1, 1]])


@pytest.mark.parametrize("literal", [b"1e999", b"NaN", b"Infinity"])
def test_non_finite_literals_are_not_json(literal):
    # JSON has no infinity or NaN; a literal that overflows a double is refused the same way.
    line = b'{"word": "cat", "key_id": "1", "drawing": [[[0, ' + literal + b"], [0, 1]]]}\n"
    _, bad = drawings.convert_lines([(1, line)], MAX_POINTS)
    assert [b.reason for b in bad] == ["invalid_json"]


def test_a_whole_batch_of_bad_lines_gives_an_empty_batch():
    lines = [(i + 1, line) for i, line in enumerate(BAD_LINES.values())]
    batch, bad = drawings.convert_lines(lines, MAX_POINTS)
    assert len(batch) == 0 and batch.points.shape == (0, 3)
    assert [b.line_number for b in bad] == list(range(1, len(BAD_LINES) + 1))


def test_fields_are_read_and_the_raw_format_is_accepted():
    raw = line_of(drawing=[[[0.5, 10.25], [3.0, 4.0], [0, 16]]], recognized=False, key_id=77)
    batch, bad = drawings.convert_lines([(4, raw)], MAX_POINTS)
    assert bad == []
    assert batch.words == ["cat"] and batch.key_ids == ["77"]
    assert batch.recognized.tolist() == [False]
    assert batch.lengths.tolist() == [1]
    np.testing.assert_array_equal(batch.ink_of(0), [[1.0, 1.0, 1.0]])


def test_select_keeps_ink_rows_with_their_drawings():
    lines = [
        (i, line_of(key_id=str(i), drawing=[[list(range(i + 2)), list(range(i + 2))]]))
        for i in range(1, 5)
    ]
    batch, _ = drawings.convert_lines(lines, MAX_POINTS)
    picked = batch.select(np.array([False, True, False, True]))
    assert picked.key_ids == ["2", "4"]
    assert picked.lengths.tolist() == [3, 5]
    np.testing.assert_array_equal(picked.ink_of(1), batch.ink_of(3))


def test_real_lines_convert_like_the_single_drawing_path(quickdraw):
    lines = []
    for path in sorted((quickdraw / "simplified").glob("*.ndjson"))[:40]:
        lines += path.read_bytes().splitlines(keepends=True)[:25]
    numbered = list(enumerate(lines, 1))
    batch, bad = drawings.convert_lines(numbered, 20_000)
    assert bad == []
    assert len(batch) == len(lines)
    for index, line in enumerate(lines):
        expected = ink.ink_from_strokes(json.loads(line)["drawing"])
        np.testing.assert_array_equal(batch.ink_of(index), expected)
