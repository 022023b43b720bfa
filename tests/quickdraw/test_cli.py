"""One command line for every entry point (`quickdraw.cli`): a misspelled flag stops the
program with exit status 2 and the closest known flags, in one line, before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline import config as pipeline_config
from quickdraw import cli
from tests.conftest import REPO

KNOWN = ["--help", "--input", "--num_shards", "--output_dir", "--seed", "--split", "--steps"]


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("--sed", ["--seed"]),
        ("--shards", ["--num_shards"]),
        ("--step", ["--steps"]),  # an abbreviation
        ("--outputdir", ["--output_dir"]),
        ("--s", ["--seed", "--split", "--steps"]),  # abbreviates three, the first three
        ("--color", []),
    ],
)
def test_close_flags(typed, expected):
    assert cli.close_flags(typed, KNOWN) == expected


@pytest.mark.parametrize(
    "unknown, expected",
    [
        (
            ["--shards", "3", "--sed", "5"],
            "unknown flags --shards (did you mean --num_shards?), --sed (did you mean --seed?)",
        ),
        (["--sed=5"], "unknown flag --sed (did you mean --seed?)"),
        (["--color", "red"], "unknown flag --color"),
        (["stray"], "unexpected argument stray"),
        (
            ["--sed", "5", "a", "b"],
            "unknown flag --sed (did you mean --seed?); unexpected arguments a b",
        ),  # fmt: skip
        (["-3"], "unexpected argument -3"),  # a negative number is no flag
    ],
)
def test_unknown_arguments_message(unknown, expected):
    assert cli.unknown_arguments_message(unknown, KNOWN) == expected + " (see --help)"


def _parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog="python -m example")
    parser.add_argument("--num_shards", type=cli.positive_int, default=10)
    parser.add_argument("--overwrite", type=cli.boolean, nargs="?", const=True, default=False)
    return parser


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num=3"], "unknown flag --num (did you mean --num_shards?)"),  # no abbreviations
        (["--num_shards", "0"], "argument --num_shards: must be a positive integer, got '0'"),
        (["--overwrite=maybe"], "argument --overwrite: must be true or false, got 'maybe'"),
    ],
)
def test_parser_exits_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("python -m example: error: ") and message in error
    assert error.count("\n") == 1


def test_boolean_flags_take_the_template_form():
    """Dataflow templates and Vertex AI pass every parameter as `--name=value`."""
    parser = _parser()
    assert parser.parse_args([]).overwrite is False
    assert parser.parse_args(["--overwrite"]).overwrite is True
    assert parser.parse_args(["--overwrite=true"]).overwrite is True
    assert parser.parse_args(["--overwrite=false"]).overwrite is False


def test_pipeline_passes_beams_own_options_on():
    config, beam_args = pipeline_config.parse_args(
        ["--output_dir", "out", "--num_shards", "3", "--runner", "DataflowRunner",
         "--max_num_workers=4", "--experiments", "use_runner_v2", "--overwrite=true"]
    )  # fmt: skip
    assert (config.num_shards, config.overwrite) == (3, True)
    assert beam_args == [
        "--runner", "DataflowRunner", "--max_num_workers=4", "--experiments", "use_runner_v2"
    ]  # fmt: skip


def _run(module: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_a_misspelled_pipeline_flag_stops_the_run(tmp_path):
    """`--shards 3 --sed 5`: Beam alone would log `Unparseable argument` and write 10 shards
    with seed 0."""
    output = tmp_path / "out"
    completed = _run(
        "pipeline", "--input", str(tmp_path / "*.ndjson"), "--output_dir", str(output),
        "--shards", "3", "--sed", "5",
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr == (
        "python -m pipeline: error: unknown flags --shards (did you mean --num_shards?), "
        "--sed (did you mean --seed?) (see --help)\n"
    )
    assert not output.exists()


def test_a_misspelled_beam_flag_names_beams_flag(tmp_path):
    completed = _run("pipeline", "--output_dir", str(tmp_path), "--runer", "DataflowRunner")
    assert completed.returncode == 2
    assert "unknown flag --runer (did you mean --runner?)" in completed.stderr
    completed = _run("pipeline", "--output_dir", str(tmp_path), "--direct_num_workers", "two")
    assert completed.returncode == 2
    assert completed.stderr == (
        "python -m pipeline: error: Beam option: argument --direct_num_workers: invalid int "
        "value: 'two'\n"
    )


@pytest.mark.parametrize(
    "module, flags, expected",
    [
        (
            "trainer.predict",
            ["--model_dir", "model", "--topk", "3", "drawings.ndjson"],
            "python -m trainer.predict: error: unknown flag --topk (did you mean --top_k?)",
        ),
        (
            "trainer.submit",
            ["--project", "p", "--region", "us-central1", "--image", "i", "--output_dir",
             "gs://b/r", "--dry_run", "--worker", "2"],
            "python -m trainer.submit: error: unknown flag --worker (did you mean --workers?)",
        ),
        (
            "trainer",
            ["--training_data", "t", "--eval_data", "e", "--classes_file", "c", "--model_dir",
             "m", "--sed", "1"],
            "python -m trainer: error: unknown flag --sed (did you mean --seed?)",
        ),
    ],
)  # fmt: skip
def test_every_entry_point_refuses_a_misspelled_flag(module, flags, expected):
    completed = _run(module, *flags)
    assert completed.returncode == 2
    assert completed.stderr.startswith(expected) and completed.stderr.count("\n") == 1
    assert completed.stdout == ""
