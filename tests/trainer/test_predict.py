"""`python -m trainer.predict` as a real process, on real drawings and bad lines."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import tensorflow as tf

from quickdraw import ink as ink_math
from tests.support.predict_fixtures import CLASSES, export_tiny, predict, same_predictions
from tests.support.trainer_fixtures import SIMPLIFIED, require_shared_quickdraw
from trainer import export


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An export of an untrained tiny model: predict reads nothing but export/."""
    return export_tiny(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def drawings_file(tmp_path_factory):
    """An ndjson file of real drawings and bad lines; returns it and its good lines."""
    require_shared_quickdraw()
    good = []
    for category in CLASSES:
        good += (SIMPLIFIED / f"{category}.ndjson").read_bytes().splitlines(keepends=True)[:3]
    unlabelled = json.loads(good[0])
    del unlabelled["word"]
    unlabelled["key_id"] = "no-word"
    good.insert(4, json.dumps(unlabelled).encode() + b"\n")
    unknown = json.loads(good[1])
    unknown["word"] = "unicorn"  # a word the model has no class for
    unknown["recognized"] = False
    unmarked = json.loads(good[2])
    del unmarked["recognized"]  # counted in the whole, in neither group
    good[2] = json.dumps(unmarked).encode() + b"\n"
    good.append(json.dumps(unknown).encode() + b"\n")
    lines = (
        good[:4]
        + [
            b"\n",  # line 5: blank
            b'{"word": "hat", "key_id": "1", "drawing": [[[0, 1], [0]]]}\n',  # line 6
            good[4],  # line 7: no word, still classified
            b"{not json\n",  # line 8
            *good[5:],
        ]
    )
    path = tmp_path_factory.mktemp("drawings") / "drawings.ndjson"
    path.write_bytes(b"".join(lines))
    return path, good


def expected_probabilities(model_dir, lines):
    serve = tf.saved_model.load(str(model_dir / "export")).signatures[export.SIGNATURE]
    points = [ink_math.points_from_strokes(json.loads(line)["drawing"]) for line in lines]
    batch, lengths = export.pad_points(points)
    return serve(points=batch, lengths=lengths)["probabilities"].numpy()


def summary_figures(labelled):
    """The summary's figures for (record, probabilities) pairs of labelled drawings."""
    top1 = np.mean([CLASSES[int(np.argmax(row))] == r["word"] for r, row in labelled])
    top3 = np.mean([r["word"] in CLASSES for r, _ in labelled])  # 3 classes: all but unicorn
    return {"drawings": len(labelled), "top1": pytest.approx(top1), "top3": pytest.approx(top3)}


def test_classifies_each_drawing_in_order_and_sums_up(model_dir, drawings_file):
    path, good = drawings_file
    result = predict("--model_dir", model_dir, "--top_k", 2, path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(output) == len(good) + 1

    records = [json.loads(line) for line in good]
    probabilities = expected_probabilities(model_dir, good)
    for record, line, row in zip(records, output, probabilities):
        assert line["key_id"] == record["key_id"]
        assert line.get("word") == record.get("word")
        labels = [entry["label"] for entry in line["top_k"]]
        assert labels == [CLASSES[i] for i in np.argsort(-row, kind="stable")[:2]]
        assert [entry["probability"] for entry in line["top_k"]] == pytest.approx(
            sorted(row, reverse=True)[:2], abs=1e-5
        )
    labelled = [(r, row) for r, row in zip(records, probabilities) if "word" in r]
    summary = summary_figures(labelled)
    for flag, name in ((True, "recognized"), (False, "unrecognized")):
        group = [(r, row) for r, row in labelled if r.get("recognized") is flag]
        assert group  # the real drawings here were recognized; the unicorn is marked not
        summary[name] = summary_figures(group)
    assert summary["drawings"] == 10 and summary["top3"] == pytest.approx(0.9)
    assert summary["recognized"]["drawings"] + summary["unrecognized"]["drawings"] == 9
    assert output[-1] == {"summary": summary}
    assert "1 drawing(s) have a word the model does not know, counted as misses: unicorn" in (
        result.stderr
    )

    assert f"{path}:5: blank_line" in result.stderr
    assert f"{path}:6: xy_length_mismatch" in result.stderr
    assert f"{path}:8: invalid_json" in result.stderr
    assert "3 bad line(s) skipped" in result.stderr


def test_reads_gzipped_files_and_a_damaged_one_up_to_the_damage(model_dir, drawings_file, tmp_path):
    path, _ = drawings_file
    plain = predict("--model_dir", model_dir, path)
    assert plain.returncode == 0, plain.stderr[-3000:]
    drawings = plain.stdout.splitlines()[:-1] * 200  # without the summary
    zipped = tmp_path / "drawings.ndjson.gz"
    compressed = gzip.compress(path.read_bytes() * 200)  # 2,600 lines: more than one chunk
    zipped.write_bytes(compressed)
    result = predict("--model_dir", model_dir, zipped)
    assert result.returncode == 0, result.stderr[-3000:]
    assert same_predictions(result.stdout.splitlines()[:-1], drawings)

    zipped.write_bytes(compressed[: len(compressed) // 2])
    result = predict("--model_dir", model_dir, zipped)
    assert result.returncode == 0, result.stderr[-3000:]
    classified = result.stdout.splitlines()[:-1]
    assert 0 < len(classified) < len(drawings)
    assert same_predictions(classified, drawings[: len(classified)])
    assert f"{zipped}: the file cannot be read after line " in result.stderr


def test_reads_the_export_directory_itself_and_rejects_a_too_large_top_k(model_dir, drawings_file):
    path, _ = drawings_file
    result = predict("--model_dir", model_dir / "export", "--top_k", 4, path)
    assert result.returncode == 2
    assert "--top_k 4 exceeds the model's 3 classes" in result.stderr
    result = predict("--model_dir", model_dir, "--single_view", path)
    assert result.returncode == 2
    assert "has no 'single_view' signature" in result.stderr
    result = predict("--model_dir", model_dir, path.parent / "missing.ndjson")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_single_view_classifies_each_drawing_alone(tmp_path, drawings_file):
    export_tiny(tmp_path, "--test_time_views=4")
    path, good = drawings_file
    result = predict("--model_dir", tmp_path, "--single_view", path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    printed = [line["top_k"][0]["probability"] for line in lines if "top_k" in line]

    loaded = tf.saved_model.load(str(tmp_path / "export"))
    points = [ink_math.points_from_strokes(json.loads(line)["drawing"]) for line in good]
    batch, lengths = export.pad_points(points)
    for name, close in ((export.SINGLE_VIEW_SIGNATURE, True), (export.SIGNATURE, False)):
        served = loaded.signatures[name](points=batch, lengths=lengths)["probabilities"]
        best = served.numpy().max(axis=1)
        assert np.allclose(printed, best, atol=1e-5) == close, name
