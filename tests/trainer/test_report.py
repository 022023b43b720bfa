"""The training report: its figures' pure parts on hand-computed inputs, the report the tiny
training run wrote (files, page, misclassified drawings, TensorBoard images), the page in a
real headless Chromium, and `python -m trainer.report`'s errors."""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline import stats as stats_lib
from tests.support.trainer_fixtures import CATEGORIES, TINY_RUN_EVAL, TINY_RUN_STEPS
from trainer import figures, history, render, report, summaries, train

FIGURES = ("curves.png", "per_class.png", "confusion.png", "misclassified.png")


def png_header(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, read without the code under test."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    return struct.unpack(">II", data[16:24])


# --- Pure parts, on hand-computed inputs -------------------------------------------------


def test_strokes_split_after_each_end_of_stroke():
    points = np.array([[0, 0, 0], [1, 1, 1], [5, 5, 1], [2, 2, 0], [3, 3, 0]], np.float32)
    pieces = render.strokes(points)
    assert [piece.tolist() for piece in pieces] == [[[0, 0], [1, 1]], [[5, 5]], [[2, 2], [3, 3]]]
    assert render.strokes(np.zeros((0, 3), np.float32)) == []
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        render.strokes(np.zeros((3, 2)))


def test_draw_ink_draws_y_downwards_as_on_a_screen():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    # One stroke from (0, 0) to (10, 10): on a screen, from the top left to the bottom right.
    figure, axes = pyplot.subplots(figsize=(2, 2), dpi=50)
    render.draw_ink(axes, np.array([[0, 0, 0], [10, 10, 1]], np.float32))
    figure.subplots_adjust(0, 0, 1, 1)
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].min(axis=-1)  # (100, 100)
    pyplot.close(figure)
    inked = np.argwhere(pixels < 128)  # (row, column) of each inked pixel
    top, bottom = inked[inked[:, 0] < 20], inked[inked[:, 0] > 80]
    assert len(top) and len(bottom)
    assert top[:, 1].max() < 25 and bottom[:, 1].min() > 75


def test_top_confusions_lists_mistakes_most_frequent_first():
    confusion = np.array([[5, 3, 0], [1, 8, 1], [0, 4, 2]])
    assert figures.top_confusions(confusion, ["a", "b", "c"], count=3) == [
        {"true": "c", "predicted": "b", "drawings": 4, "share": 4 / 6},
        {"true": "a", "predicted": "b", "drawings": 3, "share": 3 / 8},
        {"true": "b", "predicted": "a", "drawings": 1, "share": 1 / 10},
    ]
    assert figures.top_confusions(np.eye(3, dtype=int), ["a", "b", "c"]) == []


def test_confused_order_puts_classes_confused_with_each_other_side_by_side():
    # a <-> c and b <-> d are confused; nothing else is.
    confusion = np.array([[8, 0, 2, 0], [0, 7, 0, 3], [3, 0, 7, 0], [0, 2, 0, 8]])
    order = list(figures.confused_order(confusion))
    assert sorted(order) == [0, 1, 2, 3]
    assert abs(order.index(0) - order.index(2)) == 1
    assert abs(order.index(1) - order.index(3)) == 1


def test_sorted_accuracy_puts_the_weakest_first_and_skips_classes_without_drawings():
    per_class = {"a": 0.5, "b": None, "c": 0.25, "d": 0.5}
    assert figures.sorted_accuracy(per_class) == [("c", 0.25), ("a", 0.5), ("d", 0.5)]


def test_shown_mistakes_take_one_of_each_confusion_most_frequent_first():
    labels = ["a", "b", "c"]
    confusion = [[0, 1, 5], [2, 0, 0], [0, 0, 0]]

    def drawing(true, guess, tag):
        return {"true": true, "guesses": [[guess, 0.5]], "points": [], "tag": tag}

    drawings = [drawing("b", "a", 1), drawing("a", "c", 2), drawing("a", "c", 3)]
    drawings += [drawing("a", "b", 4)]
    shown = report.shown_mistakes(drawings, confusion, labels, count=4)
    assert [item["tag"] for item in shown] == [2, 1, 4, 3]
    assert len(report.shown_mistakes(drawings, confusion, labels, count=2)) == 2


def test_time_left_counts_the_steps_and_the_evaluations_still_to_come():
    # 400 steps at 4 steps/s, and the evaluations at 800 and at the end (1000), 30 s each.
    assert train.time_left(600, 1000, 4.0, 200, 30.0) == pytest.approx(100 + 2 * 30)
    assert train.time_left(600, 1000, 4.0, 0, 30.0) == pytest.approx(100 + 30)
    assert train.time_left(1000, 1000, 4.0, 200, 30.0) == pytest.approx(30)
    assert [report.format_duration(s) for s in (42, 725, 3725)] == ["42s", "12m05s", "1h02m"]


def test_history_keeps_the_later_start_where_two_cover_the_same_steps(tmp_path):
    # A run that stopped after step 20 and resumed from its checkpoint at step 10.
    for values in ({10: 3.0, 20: 2.5}, {20: 2.0, 30: 1.5}):
        writer = tf.summary.create_file_writer(str(tmp_path))
        for step, loss in values.items():
            summaries.write_scalars(writer, step, {"train/loss": loss})
        writer.close()
        time.sleep(1.1)  # event files are named by the second their writer was made in
    logged = history.read(str(tmp_path))
    assert logged.starts == 2
    assert logged.scalars["train/loss"] == [(10, 3.0), (20, 2.0), (30, 1.5)]
    assert logged.wall_seconds >= 0
    assert history.read(str(tmp_path / "none")).scalars == {}


def test_png_size_reads_the_header():
    figure_png = figures.per_class_accuracy({"a": 0.5, "b": 1.0}, 0.75)
    assert summaries.png_size(figure_png) == png_header(figure_png)
    with pytest.raises(ValueError, match="not a PNG"):
        summaries.png_size(b"GIF89a" + bytes(30))


# --- The report of the tiny training run -------------------------------------------------


def test_the_run_wrote_a_report_with_every_figure(tiny_run):
    config, result, _ = tiny_run
    report_dir = Path(config.model_dir) / "report"
    page = (report_dir / "index.html").read_text()
    for name in FIGURES:
        data = (report_dir / name).read_bytes()
        width, height = png_header(data)
        assert width >= 400 and height >= 250, (name, width, height)
        assert len(data) > 10_000, (name, len(data))
        assert f'src="{name}"' in page, name
    assert f"{result['top1_accuracy']:.1%}" in page and f"{result['top3_accuracy']:.1%}" in page
    for linked in ("metrics.json", "config.json"):
        assert f'href="../{linked}"' in page and (Path(config.model_dir) / linked).exists()
    # The tiny run's records come without the pipeline's stats.json: the page says so.
    assert not (report_dir / "data.png").exists() and "no stats.json" in page


def test_misclassified_drawings_are_the_first_mistakes_of_each_class(tiny_run):
    config, result, _ = tiny_run
    kept = json.loads((Path(config.model_dir) / report.MISTAKES_FILE).read_text())
    assert kept["step"] == TINY_RUN_STEPS
    confusion = np.array(result["confusion_matrix"]["counts"])
    labels = result["confusion_matrix"]["labels"]
    mistakes = confusion.sum(axis=1) - np.diag(confusion)
    per_class = {name: 0 for name in labels}
    for drawing in kept["drawings"]:
        per_class[drawing["true"]] += 1
        guesses = [name for name, _ in drawing["guesses"]]
        assert len(guesses) == 3 and guesses[0] != drawing["true"]
        probabilities = [probability for _, probability in drawing["guesses"]]
        assert probabilities == sorted(probabilities, reverse=True)
        points = np.array(drawing["points"])
        assert points.ndim == 2 and points.shape[1] == 3 and len(points) >= 2
        # The shape as the pipeline scaled it, the shorter side shrunk back by log_aspect.
        spans = points[:, :2].max(axis=0) - points[:, :2].min(axis=0)
        assert spans.max() == pytest.approx(1, abs=2e-3) and spans.min() <= 1 + 2e-3
    assert [per_class[name] for name in labels] == np.minimum(mistakes, 3).tolist()


def test_each_evaluation_left_the_confusion_matrix_as_a_tensorboard_image(tiny_run):
    from tensorboard.backend.event_processing import plugin_event_accumulator

    config, _, _ = tiny_run
    events = plugin_event_accumulator.EventAccumulator(config.log_dir, size_guidance={"tensors": 0})
    events.Reload()
    assert "eval/confusion_matrix" in events.PluginTagToContent("images")
    images = events.Tensors("eval/confusion_matrix")
    assert [image.step for image in images] == [30, TINY_RUN_STEPS]
    for image in images:
        width, height, png = tf.make_ndarray(image.tensor_proto)
        assert (int(width), int(height)) == png_header(png)


def test_report_rebuilt_with_the_pipeline_stats(tiny_run, tmp_path):
    config, _, _ = tiny_run
    model_dir = tmp_path / "model"
    shutil.copytree(config.model_dir, model_dir, ignore=shutil.ignore_patterns("checkpoints"))
    shutil.rmtree(model_dir / "report")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    written = {name: {"train": 24, "eval": TINY_RUN_EVAL} for name in CATEGORIES}
    counts = {"written": written, "lengths": {"20": 30, "41": 100, "60": 62}, "lines_read": 192}
    options = {"split": "hash"}
    stats = stats_lib.report(counts, options, sorted(CATEGORIES))
    (data_dir / "stats.json").write_text(json.dumps(stats))
    assert report.main(["--model_dir", str(model_dir), "--data_dir", str(data_dir)]) == 0
    page = (model_dir / "report" / "index.html").read_text()
    for name in (*FIGURES, "data.png"):
        assert f'src="{name}"' in page and (model_dir / "report" / name).stat().st_size > 10_000
    assert "no stats.json" not in page


def test_report_command_refuses_a_folder_without_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--model_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"no metrics.json in {tmp_path}: train a model there first" in capsys.readouterr().err


def test_report_command_refuses_a_data_dir_without_stats(tiny_run, tmp_path, capsys):
    config, _, _ = tiny_run
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--model_dir", config.model_dir, "--data_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"no stats.json in --data_dir {tmp_path}" in capsys.readouterr().err


# --- The page in a real browser ------------------------------------------------------------


def test_the_page_shows_every_figure_in_chromium(tiny_run, browser, tmp_path):
    config, _, _ = tiny_run
    browser.set_window_size(1280, 2400)
    browser.get((Path(config.model_dir) / "report" / "index.html").as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete,"
        " i.naturalWidth, i.getBoundingClientRect().width]);"
    )
    addresses = browser.execute_script(
        "return Array.from(document.querySelectorAll('[src], [href]'))"
        ".map(element => element.src || element.href);"
    )
    heading = browser.find_element("tag name", "h1").text
    screenshot = tmp_path / "report.png"
    assert browser.save_screenshot(str(screenshot))
    assert heading == "Training report"
    assert [source for source, *_ in images] == list(FIGURES)
    for source, complete, natural_width, shown_width in images:
        assert complete and natural_width >= 400 and shown_width > 300, source
    # Self-contained: every image and link is a file beside the page or in the run's folder.
    report_dir = (Path(config.model_dir) / "report").as_uri()
    model_dir = Path(config.model_dir).as_uri()
    assert len(addresses) == len(FIGURES) * 2 + 2, addresses  # each figure: img and link
    for address in addresses:
        assert address.startswith(report_dir + "/") or address in (
            f"{model_dir}/metrics.json",
            f"{model_dir}/config.json",
        ), address
    width, height = png_header(screenshot.read_bytes())
    assert width >= 1000 and height >= 1000 and screenshot.stat().st_size > 50_000
    print(f"screenshot of the report: {screenshot}")
