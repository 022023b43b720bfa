"""`python -m trainer.predict` on raw ink: each drawing classified as its simplified self."""

from __future__ import annotations

import json

import orjson

from quickdraw import simplify
from tests.support.predict_fixtures import CLASSES, export_tiny, predict, same_predictions
from tests.support.trainer_fixtures import SHARED_QUICKDRAW, require_shared_quickdraw


def test_raw_lines_are_classified_like_their_simplified_drawings(tmp_path):
    require_shared_quickdraw()
    raw_lines, simplified_lines = [], []
    for category in CLASSES:
        path = SHARED_QUICKDRAW / "raw" / f"{category}.ndjson"
        for line in path.read_bytes().splitlines(keepends=True)[:4]:
            record = orjson.loads(line)
            raw_lines.append(line)
            record["drawing"] = simplify.simplify_strokes(record["drawing"])
            simplified_lines.append(orjson.dumps(record) + b"\n")
    backwards = json.loads(raw_lines[0])
    backwards["drawing"][0][2][1] = backwards["drawing"][0][2][0] - 1  # a time going back
    raw_file, simplified_file = tmp_path / "raw.ndjson", tmp_path / "simplified.ndjson"
    raw_file.write_bytes(b"".join(raw_lines) + json.dumps(backwards).encode() + b"\n")
    simplified_file.write_bytes(b"".join(simplified_lines))
    model_dir = export_tiny(tmp_path / "model")

    result = predict("--model_dir", model_dir, raw_file, simplified_file)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout.splitlines()
    drawings = len(raw_lines)
    assert len(output) == 2 * drawings + 1  # and the summary
    same_predictions(output[:drawings], output[drawings : 2 * drawings])
    for raw, simplified in zip(output[:drawings], output[drawings : 2 * drawings]):
        assert json.loads(raw)["top_k"] == json.loads(simplified)["top_k"]
    assert f"{raw_file}:{drawings + 1}: time_backwards" in result.stderr
