"""Evaluation on the whole eval set: loss, top-1, top-3, per-class accuracy, confusion matrix.

Each worker evaluates its own share of the eval files with its own copy of the weights and
counts; one sum across the workers then gives every worker the totals. Counting (not
averaging per batch) keeps the figures exact whatever the batch sizes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf

from quickdraw import ink as ink_math
from quickdraw import schema
from trainer import checks, data, replicas
from trainer import views as views_lib

# The figures of an evaluation that the logs, TensorBoard and the single-view summary carry.
HEADLINE = ("loss", "top1_accuracy", "top3_accuracy")
# metrics.json key, with --test_time_views > 1: the HEADLINE figures of each drawing alone.
SINGLE_VIEW = "single_view"
EVAL_BATCH_SIZE = 128  # predictions do not depend on the batch (see tests), only speed does
HYPERTUNE_TAG = "top1_accuracy"
# The final evaluation keeps this many misclassified drawings of each true class (the first
# met), with the model's top guesses, for the report's picture of them (misclassified.json).
MISTAKES_PER_CLASS = 3
GUESSES = 3


@dataclasses.dataclass
class Counts:
    """Sums over evaluated drawings; they add up across workers."""

    loss_sum: float
    top3_hits: int
    confusion: np.ndarray  # (classes, classes) int64: rows are true classes, columns predicted

    @property
    def examples(self) -> int:
        return int(self.confusion.sum())


class Mistakes:
    """Misclassified drawings met during an evaluation: the first `per_class` of each true
    class, each with its shape (summed back from the ink) and the model's top guesses."""

    def __init__(self, classes: list[str], per_class: int = MISTAKES_PER_CLASS):
        self.classes = classes
        self.per_class = per_class
        self.kept: list[dict] = []
        self._counts = np.zeros(len(classes), np.int64)

    def add(self, features: dict, labels, top_indices, top_probabilities) -> None:
        """Keeps what it still wants of one evaluated batch (numpy or eager tensors)."""
        if self._counts.min() >= self.per_class:
            return  # every class has its share: nothing more to copy out of the batches
        labels = np.asarray(labels)
        top_indices = np.asarray(top_indices)
        wrong = np.flatnonzero(top_indices[:, 0] != labels)
        if not len(wrong):
            return
        ink = np.asarray(features[schema.INK])  # (batch, time, 3)
        lengths = np.asarray(features[schema.LENGTHS])
        log_aspect = features.get(schema.LOG_ASPECT)
        for row in wrong:
            true = int(labels[row])
            if self._counts[true] >= self.per_class:
                continue
            self._counts[true] += 1
            aspect = None if log_aspect is None else float(np.asarray(log_aspect)[row])
            points = ink_math.points_from_deltas(ink[row, : lengths[row]], aspect)
            self.kept.append(
                {
                    "true": self.classes[true],
                    "guesses": [
                        [self.classes[int(index)], round(float(probability), 4)]
                        for index, probability in zip(top_indices[row], top_probabilities[row])
                    ],
                    "points": np.round(points, 3).tolist(),
                }
            )

    def as_dict(self, step: int) -> dict:
        return {"step": int(step), "per_class": self.per_class, "drawings": self.kept}


def make_eval_step(model, num_classes: int, views: int = 1):
    """The step that scores one batch; with `views` > 1 it scores the probabilities averaged
    over that many views of each drawing (`--test_time_views`), as the export serves them.

    Returns the batch's loss sum, top-3 hits and confusion counts, and each drawing's top
    `GUESSES` classes with their probabilities."""
    top_k = min(3, num_classes)

    @tf.function(reduce_retracing=True, autograph=False)
    def eval_step(features, labels):
        labels = checks.checked_labels(labels, num_classes)
        logits = views_lib.averaged_logits(
            lambda inputs: model(inputs, training=False), features, views
        )  # (batch, classes)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        top3 = tf.math.in_top_k(tf.cast(labels, tf.int32), logits, top_k)
        confusion = tf.math.confusion_matrix(
            labels, tf.argmax(logits, axis=-1), num_classes=num_classes, dtype=tf.int64
        )
        guesses = tf.math.top_k(tf.nn.softmax(logits), k=min(GUESSES, num_classes))
        return (
            tf.reduce_sum(losses),
            tf.reduce_sum(tf.cast(top3, tf.int64)),
            confusion,
            guesses.indices,
            guesses.values,
        )

    return eval_step


def count(
    eval_step,
    pattern: str,
    num_classes: int,
    *,
    num_shards=1,
    shard_index=0,
    log_aspect=False,
    mistakes: Mistakes | None = None,
) -> Counts:
    """Runs `eval_step` over this worker's share of the eval files, once each; `mistakes`,
    when given, keeps misclassified drawings."""
    counts = Counts(0.0, 0, np.zeros((num_classes, num_classes), np.int64))
    batches = data.dataset(
        pattern,
        EVAL_BATCH_SIZE,
        training=False,
        num_shards=num_shards,
        shard_index=shard_index,
        log_aspect=log_aspect,
    )
    for features, labels in batches:
        loss_sum, top3_hits, confusion, top_indices, top_probabilities = eval_step(features, labels)
        if mistakes is not None:
            mistakes.add(features, labels, top_indices, top_probabilities)
        counts.loss_sum += float(loss_sum)
        counts.top3_hits += int(top3_hits)
        counts.confusion += confusion.numpy()
    return counts


def sum_across_workers(strategy, counts: Counts, num_workers: int) -> Counts:
    """The counts of all workers added up, on every worker (one collective sum)."""
    if num_workers == 1:
        return counts
    flat = np.concatenate([[counts.loss_sum, counts.top3_hits], counts.confusion.ravel()])
    total = replicas.sum_over_workers(strategy, flat, num_workers)
    size = counts.confusion.shape[0]
    return Counts(
        loss_sum=float(total[0]),
        top3_hits=int(round(total[1])),
        confusion=np.rint(total[2:]).astype(np.int64).reshape(size, size),
    )


def metrics(counts: Counts, classes: list[str], step: int) -> dict:
    """The figures of one evaluation, as written to metrics.json."""
    examples = counts.examples
    if not examples:
        raise ValueError("the eval set holds no drawings")
    per_class_total = counts.confusion.sum(axis=1)
    diagonal = np.diag(counts.confusion)
    return {
        "step": int(step),
        "examples": examples,
        "loss": counts.loss_sum / examples,
        "top1_accuracy": float(diagonal.sum()) / examples,
        "top3_accuracy": counts.top3_hits / examples,
        # None for a class with no eval drawings.
        "per_class_accuracy": {
            name: (float(diagonal[i]) / per_class_total[i] if per_class_total[i] else None)
            for i, name in enumerate(classes)
        },
        "confusion_matrix": {
            "labels": classes,
            "rows": "true class",
            "columns": "predicted class",
            "counts": counts.confusion.tolist(),
        },
    }


def summary_line(result: dict) -> str:
    return (
        f"eval at step {result['step']}: {result['examples']} drawings, "
        f"loss {result['loss']:.4f}, top-1 {result['top1_accuracy']:.4f}, "
        f"top-3 {result['top3_accuracy']:.4f}"
    )


def write_json(path: str, value: dict, indent: int | None = 1) -> None:
    """Writes JSON whole or not at all (write aside, then rename); `indent=None` writes it
    compactly, for files that people do not read."""
    partial = path + ".partial"
    with tf.io.gfile.GFile(partial, "w") as file:
        file.write(json.dumps(value, indent=indent) + "\n")
    tf.io.gfile.rename(partial, path, overwrite=True)


def report_hypertune(value: float, step: int) -> None:
    """Reports the metric to Vertex AI hyperparameter tuning when it asks for one.

    Writes the JSON line that `cloudml-hypertune` writes, to the file Vertex names in
    `CLOUD_ML_HP_METRIC_FILE`; the tag is `CLOUD_ML_HP_METRIC_TAG` or `top1_accuracy`.
    """
    path = os.environ.get("CLOUD_ML_HP_METRIC_FILE")
    if not path:
        return
    tag = os.environ.get("CLOUD_ML_HP_METRIC_TAG") or HYPERTUNE_TAG
    line = {
        "timestamp": time.time(),
        "trial": str(os.environ.get("CLOUD_ML_TRIAL_ID", 0)),
        tag: str(float(value)),
        "global_step": str(int(step)),
    }
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "a") as file:
        file.write(json.dumps(line, sort_keys=True) + "\n")
    logging.info("reported %s=%.4f at step %d to %s", tag, value, step, path)
