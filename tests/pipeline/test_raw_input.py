"""`python -m pipeline` on raw ink, end to end on real drawings, on Beam's FnApiRunner."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline import config as config_lib
from pipeline.run import run
from quickdraw import ink, schema, simplify
from tests.support.bad_lines import BAD_RAW_LINES

RAW_CATEGORIES = ("bear", "cat", "hot dog")  # 21, 25 and 21 raw drawings


def records_of(output_dir: Path) -> dict[str, dict]:
    """Every record of both splits by key_id, parsed by TensorFlow with its times."""
    records = {}
    for path in sorted(output_dir.glob("*.tfrecord-*")):
        for serialized in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            parsed = schema.parse_examples(tf.constant(serialized), log_aspect=True, time=True)
            records[parsed["key_id"].numpy().decode()] = {
                "ink": parsed["ink"].numpy(),
                "log_aspect": parsed["log_aspect"].numpy(),
                "time": parsed["time"].numpy(),
            }
    return records


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def convert(input_glob: str, out: Path, *flags: str) -> dict:
    run(
        ["--input", input_glob, "--output_dir", str(out), "--split", "hash", "--num_shards", "2"]
        + list(flags)
    )
    return json.loads((out / "stats.json").read_text())


@pytest.fixture
def raw_input(quickdraw, tmp_path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in RAW_CATEGORIES:
        shutil.copy(quickdraw / "raw" / f"{name}.ndjson", folder)
    return folder


def test_raw_files_are_written_simplified_as_google_did_with_their_times(raw_input, quickdraw):
    stats = convert(f"{raw_input}/*.ndjson", raw_input.parent / "out")
    records = records_of(raw_input.parent / "out")
    raw = {
        r["key_id"]: r for name in RAW_CATEGORIES for r in lines_of(raw_input / f"{name}.ndjson")
    }
    googles = {
        r["key_id"]: r["drawing"]
        for name in RAW_CATEGORIES
        for r in lines_of(quickdraw / "simplified" / f"{name}.ndjson")
    }
    assert stats["written_ink"] == {"raw": len(raw), "simplified": 0}
    assert stats["unaccounted_lines"] == 0 and sorted(records) == sorted(raw)
    same_as_google = 0
    for key_id, record in records.items():
        strokes = simplify.simplify_strokes(raw[key_id]["drawing"])
        points = ink.points_from_strokes(strokes)
        np.testing.assert_array_equal(record["ink"], ink.deltas(points))
        same_as_google += key_id in googles and strokes == googles[key_id]
        # One time per point, ms since the first, within the drawing's own span.
        raw_times = [t for stroke in raw[key_id]["drawing"] for t in stroke[2]]
        assert len(record["time"]) == len(points) and record["time"][0] == 0
        assert record["time"][-1] == raw_times[-1] - raw_times[0]
    assert same_as_google >= 0.97 * len(records)


def test_mixed_raw_and_simplified_files_give_the_records_of_each_kind_alone(
    raw_input, quickdraw, tmp_path
):
    simplified = tmp_path / "simplified"
    simplified.mkdir()
    shutil.copy(quickdraw / "simplified" / "zigzag.ndjson", simplified)
    mixed = tmp_path / "mixed"
    shutil.copytree(raw_input, mixed)
    shutil.copy(simplified / "zigzag.ndjson", mixed)
    stats = convert(f"{mixed}/*.ndjson", tmp_path / "out_mixed")
    raw_alone = convert(f"{raw_input}/*.ndjson", tmp_path / "out_raw")
    simplified_alone = convert(f"{simplified}/*.ndjson", tmp_path / "out_simplified")
    assert stats["written_ink"] == {
        "raw": raw_alone["written_ink"]["raw"],
        "simplified": simplified_alone["written_ink"]["simplified"],
    }
    together = records_of(tmp_path / "out_mixed")
    apart = {**records_of(tmp_path / "out_raw"), **records_of(tmp_path / "out_simplified")}
    assert sorted(together) == sorted(apart)
    for key_id, record in together.items():
        for name in ("ink", "log_aspect", "time"):
            np.testing.assert_array_equal(record[name], apart[key_id][name])


def test_a_raw_file_with_garbage_writes_every_good_drawing_and_explains_every_bad_line(
    quickdraw, tmp_path
):
    real = (quickdraw / "raw" / "cat.ndjson").read_bytes().splitlines(keepends=True)
    simplified = (quickdraw / "simplified" / "dog.ndjson").read_bytes().splitlines(True)[0]
    # Every bad raw line of the unit tests but the one that needs --max_points 25.
    bad_raw = {
        reason: line for reason, line in BAD_RAW_LINES.items() if reason != "too_many_points"
    }
    garbage = [*bad_raw.values(), b"\n", b'{"word": "cat", "drawing": [[[1, 2\n', simplified]
    lines = real[:10] + garbage + real[10:]
    folder = tmp_path / "input"
    folder.mkdir()
    (folder / "my raw drawings.ndjson").write_bytes(b"".join(lines))
    out = tmp_path / "out"
    stats = convert(f"{folder}/*.ndjson", out, "--ink_format", "raw")

    expected = Counter(bad_raw.keys())
    expected.update(["blank_line", "invalid_json", "not_raw"])
    assert stats["bad_lines"] == dict(expected)
    assert stats["written_ink"] == {"raw": len(real), "simplified": 0}
    assert sum(stats["written"].values()) == len(real) and len(records_of(out)) == len(real)
    assert stats["lines_read"] == len(lines) and stats["unaccounted_lines"] == 0
    errors = [
        json.loads(line)
        for path in sorted((out / "errors").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert Counter(error["reason"] for error in errors) == expected
    by_line = {error["line_number"]: error for error in errors}
    for offset, (reason, line) in enumerate(bad_raw.items()):
        assert by_line[11 + offset]["reason"] == reason
        assert by_line[11 + offset]["line"] == line.decode()


def test_a_bad_ink_format_fails_fast(capsys):
    with pytest.raises(SystemExit) as caught:
        config_lib.parse_args(["--output_dir", "out", "--ink_format", "vector"])
    assert caught.value.code == 2
    assert "invalid choice: 'vector'" in capsys.readouterr().err
    with pytest.raises(config_lib.UsageError, match="--ink_format must be one of"):
        config_lib.PipelineConfig(output_dir="out", ink_format="vector")
