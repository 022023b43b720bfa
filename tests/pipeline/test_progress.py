"""Progress where a person waits: the pipeline's lines on a local run (in-process and with
worker processes), their silence under --log_level, and trainer.predict's lines on stderr."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import progress
from pipeline.run import main, run
from tests.support.trainer_fixtures import REPO, SIMPLIFIED, require_shared_quickdraw, trainer_env

CATEGORIES = ("bear", "hot dog", "zigzag", "sock")
PROGRESS = re.compile(
    r"progress: (\d+) of (\d+) files read, ([\d,]+) lines \([\d,]+ lines/s\), ([\d,]+) bad; "
    r"([\d,]+) drawings selected, ([\d,]+) written; \d+ s"
)


def test_total_adds_up_the_files_of_every_process(tmp_path):
    (tmp_path / "101.json").write_text(json.dumps({"files_read": 2, "lines_read": 300}))
    (tmp_path / "102.json").write_text(json.dumps({"lines_read": 50, "drawings_written": 7}))
    (tmp_path / "103.json.partial").write_text("{")  # a write under way is not read
    assert progress.total(str(tmp_path)) == {
        "files_read": 2,
        "lines_read": 350,
        "bad_lines": 0,
        "drawings_selected": 0,
        "drawings_written": 7,
    }
    progress.add(str(tmp_path), lines_read=5, bad_lines=1)
    progress.flush(str(tmp_path))
    assert progress.total(str(tmp_path))["lines_read"] == 355
    assert progress.total(str(tmp_path))["bad_lines"] == 1


def test_line_states_the_counts_and_the_rate():
    counts = dict.fromkeys(progress.FIELDS, 0)
    counts.update(files_read=12, lines_read=31200, bad_lines=2, drawings_selected=3900)
    assert progress.line(counts, 26, 10.4) == (
        "progress: 12 of 26 files read, 31,200 lines (3,000 lines/s), 2 bad; "
        "3,900 drawings selected, 0 written; 10 s"
    )


@pytest.fixture
def input_dir(quickdraw, tmp_path) -> Path:
    """Four real category files and one with two bad lines among good ones."""
    folder = tmp_path / "input"
    folder.mkdir()
    for name in CATEGORIES:
        shutil.copy(quickdraw / "simplified" / f"{name}.ndjson", folder)
    good = (quickdraw / "simplified" / "hat.ndjson").read_bytes().splitlines(keepends=True)
    (folder / "mixed.ndjson").write_bytes(b"".join([*good[:10], b"{not json\n", b"\n"]))
    return folder


def progress_counts(messages: list[str]) -> list[tuple[int, ...]]:
    lines = [PROGRESS.fullmatch(message) for message in messages if message.startswith("progress")]
    assert all(lines), messages
    return [tuple(int(group.replace(",", "")) for group in line.groups()) for line in lines]


def assert_final_line_matches_stats(counts: list[tuple[int, ...]], output: Path) -> None:
    stats = json.loads((output / "stats.json").read_text())
    written = stats["written"]["train"] + stats["written"]["eval"]
    assert counts[-1] == (
        stats["files_read"],
        stats["files_read"],
        stats["lines_read"],
        stats["bad_lines_total"],
        written,
        written,
    )


def logged_run(input_dir: Path, output: Path, caplog, *flags: str) -> list[tuple[int, ...]]:
    """Runs the pipeline in this process on `input_dir`; returns its progress lines' counts."""
    caplog.set_level(logging.INFO)
    run([f"--input={input_dir}/*.ndjson", f"--output_dir={output}", "--split=hash", *flags])
    return progress_counts([record.getMessage() for record in caplog.records])


def test_a_local_run_logs_its_progress_every_interval(input_dir, tmp_path, caplog):
    output = tmp_path / "out"
    counts = logged_run(input_dir, output, caplog, "--progress_every=0.05")
    assert len(counts) >= 3, counts  # lines while it ran, and the final one
    for column in range(6):
        assert [line[column] for line in counts] == sorted(line[column] for line in counts)
    assert counts[-1][2] == 10 + 2 + sum(
        len((input_dir / f"{name}.ndjson").read_bytes().splitlines()) for name in CATEGORIES
    )
    assert_final_line_matches_stats(counts, output)


def test_progress_counts_the_work_of_worker_processes(input_dir, tmp_path, caplog):
    output = tmp_path / "out"
    workers = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    counts = logged_run(input_dir, output, caplog, "--progress_every=0.2", *workers)
    assert_final_line_matches_stats(counts, output)


def test_log_level_warning_silences_a_run(input_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", f"--input={input_dir}/*.ndjson"]
        + [f"--output_dir={tmp_path / 'out'}", "--progress_every=0.05", "--log_level=warning"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "stats.json").exists()
    # The one warning left: the file with bad lines is not named after a category, and so on.
    assert " INFO " not in result.stderr and "progress:" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--progress_every=-1"], "--progress_every must be >= 0 seconds"),
        (["--log_level=LOUD"], "argument --log_level: invalid choice: 'LOUD'"),
    ],
)
def test_bad_reporting_flags_exit_2(tmp_path, capsys, flags, expected):
    argv = ["--input=x.ndjson", f"--output_dir={tmp_path}", *flags]
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    assert expected in capsys.readouterr().err


def test_predict_shows_progress_on_stderr_and_only_json_on_stdout(tmp_path):
    from tests.support.predict_fixtures import export_tiny

    require_shared_quickdraw()
    model_dir = export_tiny(tmp_path)
    files = [SIMPLIFIED / f"{name}.ndjson" for name in ("circle", "hat", "zigzag")]
    result = subprocess.run(
        [sys.executable, "-m", "trainer.predict", "--model_dir", str(model_dir)]
        + ["--progress_every=0.001", *map(str, files)],
        cwd=REPO,
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    drawings = sum(len(path.read_bytes().splitlines()) for path in files)
    assert len(outputs) == drawings + 1 and outputs[-1]["summary"]["drawings"] == drawings
    lines = re.findall(
        r"progress: file (\d) of 3, ([\d,]+) drawings classified \([\d,]+/s\), 0 bad lines",
        result.stderr,
    )
    # A chunk of at most 512 lines at a time, a line after each (every file has 150 lines).
    assert [(int(file), int(count)) for file, count in lines] == [(1, 150), (2, 300), (3, 450)]
