"""The whole local flow at the dataset's 345 classes (`make all CATEGORIES=`): pipeline,
training, evaluation, export, the training report, predict, and the server with its page, as a
newcomer runs them (tests/support/all_classes.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import image as matplotlib_image

from tests.conftest import shared_quickdraw_or_skip
from tests.support.all_classes import CLASSES, EVAL_PER_CLASS, TRAIN_PER_CLASS
from tests.support.serving_fixtures import Server, predict, real_drawings


def test_the_pipeline_writes_every_class(all_classes_run):
    stats = json.loads((all_classes_run.data_dir / "stats.json").read_text())
    assert stats["classes"] == CLASSES and len(all_classes_run.classes) == CLASSES
    assert stats["written"] == {
        "train": CLASSES * TRAIN_PER_CLASS,
        "eval": CLASSES * EVAL_PER_CLASS,
    }
    assert stats["unaccounted_lines"] == 0


def test_evaluation_covers_every_class(all_classes_run):
    metrics = json.loads((all_classes_run.model_dir / "metrics.json").read_text())
    assert metrics["examples"] == CLASSES * EVAL_PER_CLASS
    assert metrics["confusion_matrix"]["labels"] == all_classes_run.classes
    confusion = np.array(metrics["confusion_matrix"]["counts"])
    assert confusion.shape == (CLASSES, CLASSES)
    # Each class's eval drawings in its row, all of them counted once.
    assert confusion.sum(axis=1).tolist() == [EVAL_PER_CLASS] * CLASSES
    assert sorted(metrics["per_class_accuracy"]) == sorted(all_classes_run.classes)
    assert metrics["top1_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert metrics["top3_accuracy"] >= metrics["top1_accuracy"]


def test_the_export_serves_every_class(all_classes_run):
    classes = (all_classes_run.export_dir / "classes.txt").read_text().splitlines()
    assert classes == all_classes_run.classes


def test_predict_classifies_a_sample_of_every_class(all_classes_run):
    """make predict's sample: per class, 2 drawings training never saw (here each file of
    25 ends at the quotas, so they are the last eval drawings)."""
    *drawings, last = all_classes_run.predictions
    assert len(drawings) == 2 * CLASSES
    assert {drawing["word"] for drawing in drawings} == set(all_classes_run.classes)
    for drawing in drawings:
        labels = [guess["label"] for guess in drawing["top_k"]]
        assert len(labels) == 3 and set(labels) <= set(all_classes_run.classes)
    summary = last["summary"]
    assert summary["drawings"] == 2 * CLASSES
    firsts = [drawing["top_k"][0]["label"] == drawing["word"] for drawing in drawings]
    thirds = [drawing["word"] in [g["label"] for g in drawing["top_k"]] for drawing in drawings]
    assert summary["top1"] == pytest.approx(np.mean(firsts))
    assert summary["top3"] == pytest.approx(np.mean(thirds))
    assert "a word the model does not know" not in all_classes_run.log


# What TensorFlow prints at start on a machine without a GPU, which no entry point shows.
START_NOISE = (
    "failed call to cuInit",
    "absl::InitializeLog",
    "Could not find cuda drivers",
    "Sharding callback duration",
    "oneDNN custom operations are on",
)


def test_tensorflow_starts_quietly_on_a_machine_without_a_gpu(all_classes_run):
    log = all_classes_run.log
    assert "training from step 0 to 6" in log  # the trainer's own lines are there
    for noise in START_NOISE:
        assert noise not in log, noise


def test_the_report_shows_every_class(all_classes_run):
    """The report make train wrote, its confusion matrix drawn at a few pixels a class, so
    that 345 classes stay readable when zoomed in."""
    report_dir = all_classes_run.model_dir / "report"
    page = (report_dir / "index.html").read_text()
    for name in ("curves.png", "per_class.png", "confusion.png", "misclassified.png"):
        assert f'src="{name}"' in page, name
        assert (report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    height, width, _ = matplotlib_image.imread(report_dir / "confusion.png").shape
    assert min(height, width) >= 4 * CLASSES


@pytest.fixture(scope="module")
def server(all_classes_run, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with Server(["--model_dir", str(all_classes_run.model_dir)], log) as running:
        yield running


def test_the_server_ranks_every_class(all_classes_run, server):
    status, answer = predict(server.port, {"instances": []})  # nothing to classify
    assert status == 400, answer
    drawing = real_drawings(shared_quickdraw_or_skip(), "raw", 1)[0]["drawing"]
    body = {"instances": [{"drawing": drawing}], "parameters": {"top_k": CLASSES}}
    status, answer = predict(server.port, body)
    assert status == 200, answer
    (ranked,) = answer["predictions"]
    assert sorted(ranked["labels"]) == sorted(all_classes_run.classes)
    assert ranked["probabilities"] == sorted(ranked["probabilities"], reverse=True)
    assert sum(ranked["probabilities"]) == pytest.approx(1, abs=1e-4)
    body["parameters"]["top_k"] = CLASSES + 1
    status, answer = predict(server.port, body)
    assert status == 400 and str(CLASSES) in answer["error"], answer
    log = server.log_path.read_text(errors="replace")
    assert "serving on http://127.0.0.1" in log  # the server's own lines are there
    for noise in START_NOISE:
        assert noise not in log, noise


def test_the_page_names_all_the_classes(all_classes_run, server, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/")
    line = WebDriverWait(browser, 30).until(
        lambda driver: driver.find_element("css selector", '[data-testid="classes"]').text
    )
    assert line == f"I know {CLASSES} things: {', '.join(all_classes_run.classes)}."
