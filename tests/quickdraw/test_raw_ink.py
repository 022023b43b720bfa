"""Raw-format lines: their checks, their simplification in a batch, their times, and one
drawing at a time (`drawing_points`)."""

import json

import numpy as np
import orjson
import pytest

from quickdraw import drawings, ink, raw_lines, simplify
from tests.support.bad_lines import BAD_LINES, BAD_RAW_LINES, CORNER, raw_line_of

CORNER_POINTS = [[0, 0, 0], [191, 0, 0], [191, 255, 1], [0, 255, 0], [64, 255, 1]]
CORNER_TIMES = np.float32([0, 300 * 191 / 191.25, 700, 1000, 1100])
GOOD = raw_line_of(CORNER)

MAX_POINTS = 25
# Faults of a line that a drawing alone cannot have.
LINE_REASONS = {
    "blank_line",
    "invalid_json",
    "truncated_line",
    "not_utf8",
    "not_an_object",
    "missing_word",
    "missing_key_id",
}


def test_a_raw_line_is_simplified_and_keeps_its_times():
    batch, bad = drawings.convert_lines([(1, GOOD)], MAX_POINTS)
    assert bad == []
    assert batch.raw.tolist() == [True]
    np.testing.assert_array_equal(batch.points_of(0), CORNER_POINTS)
    np.testing.assert_allclose(batch.times_of(0), CORNER_TIMES, rtol=1e-6)


@pytest.mark.parametrize("reason", sorted(BAD_RAW_LINES))
def test_each_bad_raw_line_gets_its_reason_and_the_good_ones_survive(reason):
    assert reason in drawings.REASONS
    lines = [(1, GOOD), (2, BAD_RAW_LINES[reason]), (3, raw_line_of(CORNER, key_id="8"))]
    batch, bad = drawings.convert_lines(lines, MAX_POINTS)
    assert [(b.line_number, b.reason) for b in bad] == [(2, reason)]
    assert bad[0].text == BAD_RAW_LINES[reason]
    assert batch.key_ids == ["7", "8"]
    for index in range(2):
        np.testing.assert_array_equal(batch.points_of(index), CORNER_POINTS)
        np.testing.assert_allclose(batch.times_of(index), CORNER_TIMES, rtol=1e-6)


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("column", [0, 2], ids=["coordinate", "time"])
def test_booleans_among_raw_numbers_are_not_numbers(value, column):
    stroke = [[0, 3], [0, 0], [1, 2]]
    stroke[column] = [0, value]
    batch, bad = drawings.convert_lines([(1, GOOD), (2, raw_line_of([stroke]))], MAX_POINTS)
    kind = "coordinate" if column == 0 else "time"
    assert [(b.line_number, b.reason) for b in bad] == [(2, f"non_numeric_{kind}")]
    assert len(batch) == 1


def test_a_forced_format_makes_lines_of_the_other_kind_bad():
    simplified = raw_line_of([[[0, 5], [0, 5]]], key_id="s")
    lines = [(1, GOOD), (2, simplified), (3, b"[1]\n")]
    batch, bad = drawings.convert_lines(lines, MAX_POINTS, "raw")
    assert [(b.line_number, b.reason) for b in bad] == [(2, "not_raw"), (3, "not_an_object")]
    assert batch.key_ids == ["7"]
    batch, bad = drawings.convert_lines(lines, MAX_POINTS, "simplified")
    assert [(b.line_number, b.reason) for b in bad] == [
        (1, "not_simplified"),
        (3, "not_an_object"),
    ]
    assert batch.key_ids == ["s"]
    with pytest.raises(ValueError, match="ink_format"):
        drawings.convert_lines(lines, MAX_POINTS, "vector")


def test_raw_and_simplified_lines_of_one_batch_keep_their_order_and_their_points(quickdraw):
    raw = (quickdraw / "raw" / "cat.ndjson").read_bytes().splitlines(keepends=True)[:6]
    simplified = (quickdraw / "simplified" / "dog.ndjson").read_bytes().splitlines(True)[:6]
    mixed = [line for pair in zip(raw, simplified) for line in pair]
    batch, bad = drawings.convert_lines(list(enumerate(mixed, 1)), 20_000)
    alone_raw, _ = drawings.convert_lines(list(enumerate(raw, 1)), 20_000)
    alone_simplified, _ = drawings.convert_lines(list(enumerate(simplified, 1)), 20_000)
    assert bad == []
    assert batch.line_numbers.tolist() == list(range(1, 13))
    assert batch.raw.tolist() == [True, False] * 6
    for index in range(12):
        alone = (alone_raw, alone_simplified)[index % 2]
        np.testing.assert_array_equal(batch.points_of(index), alone.points_of(index // 2))
        assert batch.key_ids[index] == alone.key_ids[index // 2]
    assert np.isnan(batch.times[~np.repeat(batch.raw, batch.counts)]).all()


def test_the_fast_and_careful_raw_paths_agree_on_real_lines(quickdraw):
    lines = []
    for path in sorted((quickdraw / "raw").glob("*.ndjson"))[:20]:
        lines += [line for line in path.read_bytes().splitlines(True)[:8] if line.endswith(b"\n")]
    parsed = [(number, orjson.loads(line), line) for number, line in enumerate(lines, 1)]
    fast_bad, careful_bad = [], []
    fast = raw_lines.convert(parsed, 20_000, fast_bad)
    careful = raw_lines.convert(parsed, 20_000, careful_bad, careful=True)
    assert fast_bad == careful_bad == []
    assert fast.key_ids == careful.key_ids and len(fast) == len(lines)
    np.testing.assert_array_equal(fast.points, careful.points)
    np.testing.assert_array_equal(fast.times, careful.times)
    for index, line in enumerate(lines):
        strokes = simplify.simplify_strokes(json.loads(line)["drawing"])
        np.testing.assert_array_equal(fast.points_of(index), ink.points_from_strokes(strokes))
        # Times start at 0 and never decrease within a stroke (these strokes' raw times
        # never do).
        times, ends = fast.times_of(index), np.cumsum([len(s[0]) for s in strokes])
        assert times[0] == 0
        for stroke_times in np.split(times, ends[:-1]):
            assert (np.diff(stroke_times) >= 0).all()


def test_drawing_points_simplifies_a_raw_drawing_and_names_a_bad_one():
    np.testing.assert_array_equal(drawings.drawing_points(CORNER, MAX_POINTS), CORNER_POINTS)
    simplified = [[[0, 5, 9], [3, 3, 0]]]
    np.testing.assert_array_equal(
        drawings.drawing_points(simplified, MAX_POINTS), [[0, 3, 0], [5, 3, 0], [9, 0, 1]]
    )
    for reason, line in BAD_RAW_LINES.items():
        with pytest.raises(drawings.BadDrawing) as caught:
            drawings.drawing_points(orjson.loads(line)["drawing"], MAX_POINTS)
        assert caught.value.reason == reason
    # An integer beyond float64, which JSON text cannot bring (orjson refuses it).
    with pytest.raises(drawings.BadDrawing, match="non_finite_time"):
        drawings.drawing_points([[[0, 3], [0, 0], [1, 10**400]]], MAX_POINTS)
    # Parsed values, not JSON text: a Python boolean is caught all the same.
    with pytest.raises(drawings.BadDrawing, match="non_numeric_time"):
        drawings.drawing_points([[[0, 3], [0, 0], [1, True]]], MAX_POINTS)
    with pytest.raises(drawings.BadDrawing, match="not_raw"):
        drawings.drawing_points(simplified, MAX_POINTS, ink_format="raw")
    with pytest.raises(drawings.BadDrawing, match="not_simplified"):
        drawings.drawing_points(CORNER, MAX_POINTS, ink_format="simplified")
    with pytest.raises(drawings.BadDrawing, match="missing_drawing"):
        drawings.drawing_points("not strokes", MAX_POINTS)


def test_drawing_points_names_a_bad_simplified_drawing_as_the_pipeline_does():
    """A simplified drawing takes a shorter way than a batch's: same points, same reasons."""
    for reason, line in BAD_LINES.items():
        if reason in LINE_REASONS:
            continue  # a fault of the line around the drawing
        record = orjson.loads(line)
        _, bad = drawings.convert_lines([(1, line)], MAX_POINTS)
        assert [item.reason for item in bad] == [reason]
        with pytest.raises(drawings.BadDrawing) as caught:
            drawings.drawing_points(record["drawing"], MAX_POINTS)
        assert caught.value.reason == reason
    good = [[[0, 10, 20], [0, 5, 0]], [[3, 4], [7, 8]]]
    batch, _ = drawings.convert_lines(
        [(1, orjson.dumps({"word": "a", "key_id": "1", "drawing": good}))], MAX_POINTS
    )
    np.testing.assert_array_equal(drawings.drawing_points(good, MAX_POINTS), batch.points_of(0))


def test_lines_the_fast_raw_reader_cannot_vouch_for_are_read_as_orjson_reads_them():
    # A repeated key (orjson keeps the last), a list nested among numbers, a word with a
    # bracket: the first and last are good drawings, the nested list is no number.
    repeated = GOOD.replace(b'"word":"cat"', b'"word":"cat","word":"dog"')
    nested = raw_line_of([[[0, [3]], [0, 0], [1, 2]]])
    bracket = raw_line_of(CORNER, word="[cat]")
    lines = [(1, GOOD), (2, repeated), (3, nested), (4, bracket)]
    batch, bad = drawings.convert_lines(lines, MAX_POINTS)
    assert [(b.line_number, b.reason) for b in bad] == [(3, "non_numeric_coordinate")]
    assert batch.words == ["cat", "dog", "[cat]"]
    assert batch.line_numbers.tolist() == [1, 2, 4]
    for index in range(3):
        np.testing.assert_array_equal(batch.points_of(index), CORNER_POINTS)
    # The same lines after a simplified first line take the general way only.
    simplified = (0, raw_line_of([[[0, 5], [0, 5]]], key_id="s"))
    general, general_bad = drawings.convert_lines([simplified, *lines], MAX_POINTS)
    assert general_bad == bad and general.words == ["cat", "cat", "dog", "[cat]"]
    np.testing.assert_array_equal(general.points[2:], batch.points)
    np.testing.assert_array_equal(general.times[2:], batch.times)
