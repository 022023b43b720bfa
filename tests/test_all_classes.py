"""The whole local flow at the dataset's 345 classes (`make all CATEGORIES=`): pipeline,
training, evaluation, export and predict, as a newcomer runs it (tests/all_classes.py)."""

from __future__ import annotations

import json

import numpy as np

from tests.all_classes import CLASSES, EVAL_PER_CLASS, TRAIN_PER_CLASS


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
    assert 0 <= metrics["top1_accuracy"] <= metrics["top3_accuracy"] <= 1


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
    assert 0 <= summary["top1"] <= summary["top3"] <= 1
    assert "a word the model does not know" not in all_classes_run.log


def test_tensorflow_starts_quietly_on_a_machine_without_a_gpu(all_classes_run):
    log = all_classes_run.log
    assert "training from step 0 to 6" in log  # the trainer's own lines are there
    for noise in (
        "failed call to cuInit",
        "absl::InitializeLog",
        "Could not find cuda drivers",
        "Sharding callback duration",
        "oneDNN custom operations are on",
    ):
        assert noise not in log, noise
