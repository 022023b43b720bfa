"""`python -m pipeline` end to end on real drawings, on Beam's FnApiRunner."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter

from pipeline.run import main, run
from quickdraw import ink, schema
from tests.conftest import REPO
from tests.support.bad_lines import BAD_LINES


def read_split(output_dir: Path, split: str) -> list[dict]:
    """Every record of a split, in shard order then file order, parsed by TensorFlow."""
    paths = sorted(output_dir.glob(schema.SPLIT_FILE_PREFIXES[split] + "-*"))
    records = []
    for path in paths:
        for serialized in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            parsed = schema.parse_examples(tf.constant(serialized), log_aspect=True)
            records.append(
                {
                    "shard": path.name,
                    "key_id": parsed["key_id"].numpy().decode(),
                    "class_index": int(parsed["class_index"].numpy()),
                    "length": int(parsed[schema.LENGTHS].numpy()),
                    "ink": parsed["ink"].numpy(),
                    "log_aspect": parsed["log_aspect"].numpy(),
                }
            )
    return records


def stats_of(output_dir: Path) -> dict:
    return json.loads((output_dir / "stats.json").read_text())


def key_ids_of(path: Path, limit: int | None = None) -> list[str]:
    lines = path.read_text().splitlines()[:limit]
    return [json.loads(line)["key_id"] for line in lines]


def shard_bytes(output_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(output_dir.glob("*.tfrecord-*"))}


@pytest.fixture
def small_input(quickdraw, tmp_path) -> Path:
    """Five real category files (25 to 150 drawings), names with spaces included."""
    folder = tmp_path / "input"
    folder.mkdir()
    for name in ("bear", "hot dog", "The Eiffel Tower", "zigzag", "sock"):
        shutil.copy(quickdraw / "simplified" / f"{name}.ndjson", folder)
    return folder


def convert(input_glob: str, out, *flags: str):
    """`python -m pipeline` in this process, from `input_glob` into `out`, with `flags`."""
    return run(["--input", input_glob, "--output_dir", str(out), *flags])


def test_first_split_takes_the_first_drawings_in_file_order(small_input, tmp_path):
    out = tmp_path / "out"
    convert(
        f"{small_input}/*.ndjson",
        out,
        "--categories=bear,hot dog,The Eiffel Tower",
        "--train_per_class=20",
        "--eval_per_class=4",
        "--num_shards=3",
    )

    classes = (out / "training.tfrecord.classes").read_text().splitlines()
    assert classes == ["The Eiffel Tower", "bear", "hot dog"]  # sorted by name
    assert (out / "eval.tfrecord.classes").read_text().splitlines() == classes
    assert sorted(p.name for p in out.glob("*.tfrecord-*")) == [
        f"{split}.tfrecord-0000{i}-of-00003" for split in ("eval", "training") for i in range(3)
    ]
    train, evaluation = read_split(out, "train"), read_split(out, "eval")
    for index, name in enumerate(classes):
        ordered = key_ids_of(small_input / f"{name}.ndjson", 24)
        assert sorted(r["key_id"] for r in train if r["class_index"] == index) == sorted(
            ordered[:20]
        )
        assert sorted(r["key_id"] for r in evaluation if r["class_index"] == index) == sorted(
            ordered[20:]
        )
    # Each record holds its source line's ink and aspect, exactly.
    sources = {}
    for name in classes:
        for line in (small_input / f"{name}.ndjson").read_text().splitlines()[:24]:
            drawing = json.loads(line)
            sources[drawing["key_id"]] = ink.points_from_strokes(drawing["drawing"])
    for record in train + evaluation:
        points = sources[record["key_id"]]
        np.testing.assert_array_equal(record["ink"], ink.deltas(points))
        assert record["log_aspect"] == ink.log_aspect(points)
    stats = stats_of(out)
    # Reading stopped at the quota: 24 lines of each of 3 files, and the other 2 files
    # were skipped without being opened.
    assert stats["lines_read"] == 3 * 24 and stats["files_read"] == 3
    assert stats["written"] == {"train": 60, "eval": 12}
    assert stats["unaccounted_lines"] == 0
    assert stats["shortfall"] == {}
    assert stats["per_category"]["hot dog"] == {"train": 20, "eval": 4}
    lengths = stats["sequence_length"]
    assert lengths["min"] <= lengths["p50"] <= lengths["p90"] <= lengths["p99"] <= lengths["max"]
    assert lengths["max"] == max(r["length"] for r in train + evaluation)


def test_a_short_category_gives_what_it_has_and_reports_the_shortfall(small_input, tmp_path):
    out = tmp_path / "out"
    convert(
        f"{small_input}/*.ndjson",
        out,
        "--categories=sock,The Eiffel Tower",
        "--train_per_class=20",
        "--eval_per_class=200",
    )
    stats = stats_of(out)
    # sock has 150 drawings, The Eiffel Tower 25: everything is read and used.
    assert stats["per_category"] == {
        "The Eiffel Tower": {"train": 20, "eval": 5},
        "sock": {"train": 20, "eval": 130},
    }
    assert stats["shortfall"] == {"The Eiffel Tower": {"eval": 195}, "sock": {"eval": 70}}
    assert stats["lines_read"] == 175


def test_every_line_is_accounted_for_and_bad_lines_land_in_errors(small_input, tmp_path):
    user = tmp_path / "user_input"
    shutil.copytree(small_input, user)
    # A file of the user's own, mixing words, with every kind of bad line among real ones.
    real = (small_input / "bear.ndjson").read_bytes().splitlines(keepends=True)
    middle = [line for reason, line in BAD_LINES.items() if reason != "truncated_line"]
    # Only a file's last line can be cut short: anywhere else it would run into the next.
    mixed = real[:3] + middle + real[3:6] + [BAD_LINES["truncated_line"]]
    (user / "my drawings.ndjson").write_bytes(b"".join(mixed))
    (user / "empty.ndjson").write_bytes(b"")
    (user / "latin1.ndjson").write_bytes(BAD_LINES["not_utf8"] * 2)
    out = tmp_path / "out"
    result = run(
        [
            "--input",
            f"{user}/*.ndjson",
            "--output_dir",
            str(out),
            "--split",
            "hash",
            "--max_points",
            "25",
            "--recognized_only",
        ]
    )

    stats = stats_of(out)
    accounted = (
        sum(stats["written"].values()) + stats["bad_lines_total"] + stats["not_selected_total"]
    )
    assert stats["lines_read"] == accounted and stats["unaccounted_lines"] == 0
    expected_reasons = Counter({reason: 1 for reason in BAD_LINES})
    expected_reasons["not_utf8"] += 2
    # Real drawings with more than 25 points are bad lines too with --max_points 25.
    real_too_many = stats["bad_lines"]["too_many_points"] - 1
    assert real_too_many > 0
    expected_reasons["too_many_points"] += real_too_many
    assert stats["bad_lines"] == dict(expected_reasons)
    assert stats["empty_files"] == [str(user / "empty.ndjson")]
    assert stats["not_selected"].get("unrecognized", 0) > 0

    errors = [
        json.loads(line)
        for path in sorted((out / "errors").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    by_reason = Counter(error["reason"] for error in errors if error["line_number"])
    assert by_reason == expected_reasons
    truncated = next(e for e in errors if e["reason"] == "truncated_line")
    assert truncated["source"] == str(user / "my drawings.ndjson")
    assert truncated["line_number"] == len(mixed)
    assert truncated["line"] == BAD_LINES["truncated_line"].decode()
    assert any(e["reason"] == "empty_file" for e in errors)

    counters = {
        m.key.metric.name: m.committed for m in result.metrics().query(MetricsFilter())["counters"]
    }
    assert counters["bad_lines"] == stats["bad_lines_total"]
    assert counters["bad_lines_xy_length_mismatch"] == 1
    assert counters["lines_read"] == stats["lines_read"]
    assert counters["written_train"] + counters["written_eval"] == sum(stats["written"].values())


def test_first_split_over_mixed_files_follows_file_then_line_order(quickdraw, tmp_path):
    bears = (quickdraw / "simplified" / "bear.ndjson").read_bytes().splitlines(keepends=True)
    dogs = (quickdraw / "simplified" / "dog.ndjson").read_bytes().splitlines(keepends=True)
    folder = tmp_path / "mixed"
    folder.mkdir()
    # Interleaved words in two files of the user's own; files are read in name order.
    (folder / "a.ndjson").write_bytes(
        b"".join(x for pair in zip(bears[:6], dogs[:6]) for x in pair)
    )
    (folder / "b.ndjson").write_bytes(b"".join(bears[6:20] + dogs[6:20]))
    out = tmp_path / "out"
    convert(
        f"{folder}/*.ndjson",
        out,
        "--categories=bear",
        "--train_per_class=8",
        "--eval_per_class=2",
        "--num_shards=2",
    )
    train, evaluation = read_split(out, "train"), read_split(out, "eval")
    bear_ids = [json.loads(line)["key_id"] for line in bears]
    assert sorted(r["key_id"] for r in train) == sorted(bear_ids[:8])
    assert sorted(r["key_id"] for r in evaluation) == sorted(bear_ids[8:10])
    stats = stats_of(out)
    assert stats["not_selected"]["other_category"] == 20
    assert stats["lines_read"] == 40  # files of the user's own are read whole


def test_hash_split_does_not_move_a_drawing_when_files_are_added(small_input, tmp_path):
    first = tmp_path / "first"
    convert(f"{small_input}/[bh]*.ndjson", first, "--split=hash", "--eval_fraction=0.2")
    second = tmp_path / "second"
    convert(f"{small_input}/*.ndjson", second, "--split=hash", "--eval_fraction=0.2")
    first_eval = {r["key_id"] for r in read_split(first, "eval")}
    second_eval = {r["key_id"] for r in read_split(second, "eval")}
    first_train = {r["key_id"] for r in read_split(first, "train")}
    assert first_eval and first_eval <= second_eval
    assert not first_train & second_eval
    assert 0.1 < len(second_eval) / stats_of(second)["lines_read"] < 0.3


def test_shards_mix_categories_and_same_seed_gives_the_same_bytes(small_input, tmp_path):
    args = ["--input", f"{small_input}/*.ndjson", "--split", "hash", "--num_shards", "4"]
    run(args + ["--output_dir", str(tmp_path / "a")])
    run(args + ["--output_dir", str(tmp_path / "b")])
    run(args + ["--output_dir", str(tmp_path / "c"), "--seed", "1"])
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    assert shard_bytes(tmp_path / "a") != shard_bytes(tmp_path / "c")
    train = read_split(tmp_path / "a", "train")
    for shard in {r["shard"] for r in train}:
        classes = [r["class_index"] for r in train if r["shard"] == shard]
        assert len(set(classes)) == 5  # every category in every shard
        # Shuffled, not grouped: the class changes often along the shard.
        changes = sum(a != b for a, b in zip(classes, classes[1:]))
        assert changes > len(classes) / 2


def test_gzipped_input_gives_the_same_bytes_and_a_damaged_file_keeps_its_start(
    small_input, tmp_path
):
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    for path in small_input.glob("*.ndjson"):
        (zipped / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    args = ["--split", "hash", "--num_shards", "2"]
    run(args + ["--input", f"{small_input}/*.ndjson", "--output_dir", str(tmp_path / "plain")])
    run(args + ["--input", f"{zipped}/*.ndjson.gz", "--output_dir", str(tmp_path / "gz")])
    assert shard_bytes(tmp_path / "gz") == shard_bytes(tmp_path / "plain")
    plain = stats_of(tmp_path / "plain")
    assert stats_of(tmp_path / "gz")["lines_read"] == plain["lines_read"]

    # A download cut short: the lines before the cut are read, the file is named in errors/.
    bear = zipped / "bear.ndjson.gz"
    bear.write_bytes(bear.read_bytes()[: bear.stat().st_size * 6 // 10])
    run(args + ["--input", f"{zipped}/*.ndjson.gz", "--output_dir", str(tmp_path / "cut")])
    stats = stats_of(tmp_path / "cut")
    assert stats["damaged_files"] == [str(bear)] and stats["empty_files"] == []
    bear_lines = len((small_input / "bear.ndjson").read_bytes().splitlines())
    read_of_bear = stats["lines_read"] - (plain["lines_read"] - bear_lines)
    assert 0 < read_of_bear < bear_lines
    assert stats["unaccounted_lines"] == 0
    errors = [
        json.loads(line)
        for path in sorted((tmp_path / "cut" / "errors").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert [(e["source"], e["reason"]) for e in errors] == [(str(bear), "damaged_file")]
    assert errors[0]["description"].startswith(f"the file cannot be read after line {read_of_bear}")


@pytest.mark.slow
def test_multi_processing_gives_the_same_bytes_as_in_memory(small_input, tmp_path):
    args = ["--input", f"{small_input}/*.ndjson", "--split", "hash", "--num_shards", "3"]
    run(args + ["--output_dir", str(tmp_path / "in_memory")])
    run(
        args
        + [
            "--output_dir",
            str(tmp_path / "processes"),
            "--direct_num_workers",
            "2",
            "--direct_running_mode",
            "multi_processing",
        ]
    )
    assert shard_bytes(tmp_path / "in_memory") == shard_bytes(tmp_path / "processes")
    assert (
        stats_of(tmp_path / "in_memory")["written"] == stats_of(tmp_path / "processes")["written"]
    )


def test_existing_shards_are_refused_without_overwrite(small_input, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--input", f"{small_input}/bear.ndjson", "--output_dir", str(out)]
    run(args + ["--num_shards", "4"])
    assert main(args + ["--num_shards", "2"]) == 2
    message = capsys.readouterr().err.strip()
    assert "--overwrite" in message and "\n" not in message
    assert len(list(out.glob("training.tfrecord-*"))) == 4
    # With --overwrite the stale 4-shard files go, so a training glob sees only the new ones.
    run(args + ["--num_shards", "2", "--overwrite"])
    assert sorted(p.name for p in out.glob("training.tfrecord-*")) == [
        "training.tfrecord-00000-of-00002",
        "training.tfrecord-00001-of-00002",
    ]


def test_categories_file(small_input, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("zigzag\nbear\n\n")
    out = tmp_path / "out"
    run(
        [
            "--input",
            f"{small_input}/*.ndjson",
            "--output_dir",
            str(out),
            "--categories_file",
            str(names),
            "--train_per_class",
            "5",
            "--eval_per_class",
            "1",
        ]
    )
    assert (out / "training.tfrecord.classes").read_text() == "bear\nzigzag\n"


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--input", "{input}/nothing*.ndjson"], "matches no file"),
        (["--categories", "bear,hot dgo"], "did you mean 'hot dog'"),
        (["--num_shards", "0"], "--num_shards must be >= 1"),
        (["--eval_fraction", "1.5"], "--eval_fraction must be in [0, 1)"),
        (["--train_per_class", "-3"], "must be >= 0"),
        (["--output_dir", "{file}/sub"], "cannot write to --output_dir"),
    ],
)
def test_bad_flags_fail_fast_with_one_line(small_input, tmp_path, capsys, flags, expected):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    args = ["--input", f"{small_input}/*.ndjson", "--output_dir", str(tmp_path / "out")]
    args += [f.format(input=small_input, file=a_file) for f in flags]
    assert main(args) == 2
    message = capsys.readouterr().err.strip()
    assert expected in message and "\n" not in message
    assert not (tmp_path / "out" / "stats.json").exists()


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--split", "random"], "invalid choice: 'random'"),
        (["--num_shards", "ten"], "expected an integer, got 'ten'"),
    ],
)
def test_bad_flag_values_exit_2_from_the_command_line(tmp_path, flags, expected):
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "--output_dir", str(tmp_path), *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert completed.returncode == 2
    assert expected in completed.stderr and len(completed.stderr.strip().splitlines()) == 1
