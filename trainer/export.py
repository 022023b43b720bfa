"""The serving model: a SavedModel that classifies drawings as users draw them.

`model_dir/export/` holds a SavedModel (`tf.saved_model.load` is all a client needs) whose
`serving_default` signature takes

  points:  (batch, time, 3) float32, absolute x, y and end_of_stroke of each drawing's
           points (strokes concatenated), right-padded to the longest drawing;
  lengths: (batch,) int32, the number of points of each drawing;

runs the pipeline's normalization and deltas in the graph (`trainer.tf_ink`; with
`--aspect_ratio`, the drawing's aspect ratio too), then the classifier (with
`--test_time_views`, on each view of each drawing, averaging their probabilities), and
returns

  probabilities:       (batch, classes) float32;
  top_k_classes:       (batch, k) string, the most probable class names, best first;
  top_k_probabilities: (batch, k) float32, their probabilities.

A malformed request (a length below 0 or past `time`, not one length per drawing, a NaN or
infinite coordinate) fails with an InvalidArgumentError that names the problem; a drawing
of no points (a blank canvas) is classified like any other.

With `--test_time_views` above 1 a second signature, `single_view`, takes and returns the
same on the drawing alone: the choice between accuracy and latency stays with the client.

Beside the SavedModel files the directory keeps `classes.txt` and the training
`config.json`, so that `export/` alone is a complete deliverable.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import tensorflow as tf

from quickdraw import schema
from trainer import model as model_lib
from trainer import tf_ink
from trainer import views as views_lib
from trainer.config import Config

TOP_K = 5
SIGNATURE = "serving_default"
# With --test_time_views > 1 the export also has this signature: the same inputs and
# outputs from the drawing alone, several times faster, a little less accurate.
SINGLE_VIEW_SIGNATURE = "single_view"
_INPUTS = [
    tf.TensorSpec([None, None, schema.INK_COLUMNS], tf.float32, name="points"),
    tf.TensorSpec([None], tf.int32, name="lengths"),
]
CLASSES_FILE = "classes.txt"
CONFIG_FILE = "config.json"


class ServingModule(tf.Module):
    def __init__(self, model, config: Config, classes: list[str], top_k: int):
        super().__init__()
        self.model = model
        self._config = config
        self.class_names = tf.Variable(classes, trainable=False, name="class_names")
        self._top_k = min(top_k, len(classes))

    @tf.function(input_signature=_INPUTS, autograph=False)
    def serve(self, points, lengths):
        return self._classify(points, lengths, self._config.test_time_views)

    @tf.function(input_signature=_INPUTS, autograph=False)
    def serve_single_view(self, points, lengths):
        return self._classify(points, lengths, 1)

    def _classify(self, points, lengths, views):
        points, lengths = _checked(points, lengths)
        ink, ink_lengths = tf_ink.ink_from_points(points, lengths)  # (batch, time - 1, 3)
        # A batch of one-point drawings has no ink step at all, which the convolutions
        # cannot take: one padded step, masked like any other, keeps the shapes valid.
        ink = tf.pad(ink, [[0, 0], [0, tf.maximum(1 - tf.shape(ink)[1], 0)], [0, 0]])
        features = {schema.INK: ink, schema.LENGTHS: ink_lengths}
        if self._config.aspect_ratio:
            features[schema.LOG_ASPECT] = tf_ink.log_aspect_from_points(points, lengths)

        def logits_fn(inputs):
            return model_lib.inference_logits(
                self.model,
                self._config,
                inputs[schema.INK],
                inputs[schema.LENGTHS],
                inputs.get(schema.LOG_ASPECT),
            )

        logits = views_lib.averaged_logits(logits_fn, features, views)
        probabilities = tf.nn.softmax(logits)  # (batch, classes)
        top = tf.math.top_k(probabilities, k=self._top_k)
        return {
            "probabilities": probabilities,
            "top_k_classes": tf.gather(self.class_names, top.indices),
            "top_k_probabilities": top.values,
        }


def _checked(points, lengths):
    """`points` and `lengths`, once checked: a client's malformed request fails with an
    InvalidArgumentError naming what is wrong, not deep inside the graph; a NaN would
    otherwise come back as NaN probabilities. (A drawing of no points is allowed: a blank
    canvas.) The returned tensors depend on the checks, so no op that reads them can run,
    and fail first with its own message, before the checks have passed."""
    batch, time = tf.shape(points)[0], tf.shape(points)[1]
    checks = [
        tf.debugging.assert_equal(
            tf.shape(lengths)[0], batch, message="lengths: one per drawing of points"
        ),
        tf.debugging.assert_non_negative(lengths, message="lengths: a negative length"),
        tf.debugging.assert_less_equal(
            lengths, time, message="lengths: a drawing longer than points' time dimension"
        ),
        tf.debugging.assert_all_finite(points, "points: a coordinate is NaN or infinite"),
    ]
    with tf.control_dependencies([check for check in checks if check is not None]):
        return tf.identity(points), tf.identity(lengths)


def export_model(weights, config: Config, classes: list[str], export_dir: str) -> None:
    """Writes the serving model with `weights` (from `model.get_weights()`) to `export_dir`.

    The model is built afresh outside any distribution strategy, so the SavedModel holds
    plain variables whatever strategy trained them.
    """
    model = model_lib.build_model(config, len(classes))
    model.set_weights(weights)
    module = ServingModule(model, config, classes, TOP_K)
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rmtree(export_dir)
    signatures = {SIGNATURE: module.serve}
    if config.test_time_views > 1:
        signatures[SINGLE_VIEW_SIGNATURE] = module.serve_single_view
    tf.saved_model.save(module, export_dir, signatures=signatures)
    with tf.io.gfile.GFile(os.path.join(export_dir, CLASSES_FILE), "w") as file:
        file.write("".join(name + "\n" for name in classes))
    with tf.io.gfile.GFile(os.path.join(export_dir, CONFIG_FILE), "w") as file:
        file.write(config.to_json())


def export_dir_of(model_dir: str) -> str:
    """`model_dir/export`, or `model_dir` itself when it is an export directory."""
    if tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    return os.path.join(model_dir, "export")


def pad_points(drawings: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Absolute (n, 3) points of several drawings -> the signature's padded batch and lengths."""
    lengths = np.array([len(points) for points in drawings], np.int32)
    batch = np.zeros((len(drawings), max(lengths, default=0), schema.INK_COLUMNS), np.float32)
    for row, points in enumerate(drawings):
        batch[row, : len(points)] = points
    return batch, lengths


def serving_latency(
    export_dir: str, points: np.ndarray, calls=200, warmup_calls=10, signature=SIGNATURE
) -> dict:
    """Milliseconds per call of a serving signature on one drawing's absolute points, once
    warm: median and 90th percentile."""
    serve = tf.saved_model.load(export_dir).signatures[signature]
    batch, lengths = pad_points([points])
    batch, lengths = tf.constant(batch), tf.constant(lengths)
    for _ in range(warmup_calls):
        serve(points=batch, lengths=lengths)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        serve(points=batch, lengths=lengths)["probabilities"].numpy()
        times.append((time.perf_counter() - started) * 1000)
    return {
        "median_ms": statistics.median(times),
        "p90_ms": float(np.percentile(times, 90)),
        "points": len(points),
    }
