"""One tiny training run on real drawings: metrics, checkpoints, Vertex outputs, and an
export that works alone."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from quickdraw import ink as ink_math
from quickdraw import schema
from tests.support.trainer_fixtures import (
    CATEGORIES,
    SIMPLIFIED,
    TINY_FLAGS,
    TINY_RUN_EVAL,
    TINY_RUN_STEPS,
)
from trainer import config as config_lib
from trainer import export, train, train_step
from trainer import model as model_lib
from trainer import optimizer as optimizer_lib

EVAL = TINY_RUN_EVAL
STEPS = TINY_RUN_STEPS


@pytest.fixture(scope="module")
def run(tiny_run):
    """The session's one tiny training run (`trainer_fixtures.train_tiny_run`): (config,
    metrics returned, hypertune file)."""
    return tiny_run


def test_metrics_cover_the_whole_eval_set(run):
    config, result, _ = run
    metrics = json.loads((Path(config.model_dir) / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    assert metrics["step"] == STEPS
    assert metrics["examples"] == EVAL * len(CATEGORIES)
    confusion = np.array(metrics["confusion_matrix"]["counts"])
    assert confusion.shape == (len(CATEGORIES), len(CATEGORIES))
    assert confusion.sum(axis=1).tolist() == [EVAL] * len(CATEGORIES)
    assert metrics["confusion_matrix"]["labels"] == sorted(CATEGORIES)
    assert metrics["top1_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert metrics["top1_accuracy"] <= metrics["top3_accuracy"] <= 1
    per_class = metrics["per_class_accuracy"]
    assert list(per_class) == sorted(CATEGORIES)
    assert [per_class[name] for name in sorted(CATEGORIES)] == pytest.approx(
        (np.diag(confusion) / EVAL).tolist()
    )
    # 60 steps of 8 drawings: well short of learning the task, but past guessing (top-3 by
    # chance: 3 of 6). Not the loss: the branches' geometric mean is sharp, and this early
    # its cross-entropy ran from 1.45 to 2.06 over runs, about the 1.79 of a uniform guess.
    assert metrics["top3_accuracy"] > 3 / len(CATEGORIES)
    assert np.isfinite(metrics["loss"])
    # With --test_time_views, the figures of each drawing alone (the single_view signature)
    # beside those of the averaged views, from a second pass over the same eval set.
    alone = metrics["single_view"]
    assert set(alone) == {"loss", "top1_accuracy", "top3_accuracy"}
    assert 0 <= alone["top1_accuracy"] <= alone["top3_accuracy"] <= 1
    # Sixty steps in, the model is close to a uniform guess, so the two losses can differ
    # by as little as 1e-5 (seen); the same pass twice would agree to float rounding.
    assert alone["loss"] != pytest.approx(metrics["loss"], abs=1e-6)


def test_outputs_follow_the_vertex_layout(run):
    config, _, _ = run
    model_dir = Path(config.model_dir)
    checkpoints = sorted(path.name for path in (model_dir / "checkpoints").glob("*.index"))
    assert checkpoints == ["ckpt-30.index", "ckpt-60.index"]
    assert list((model_dir / "logs").glob("events.out.tfevents.*"))
    assert config_lib.Config.from_json((model_dir / "config.json").read_text()) == config


def test_reports_top1_for_hyperparameter_tuning(run):
    _, result, hypertune = run
    (line,) = hypertune.read_text().splitlines()
    report = json.loads(line)
    assert set(report) == {"timestamp", "trial", "top1_accuracy", "global_step"}
    assert report["trial"] == "7" and report["global_step"] == str(STEPS)
    assert float(report["top1_accuracy"]) == pytest.approx(result["top1_accuracy"])


def digests(arrays):
    return {hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() for array in arrays}


def test_the_moving_average_is_what_is_exported(run):
    # The last checkpoint holds both the last weights and their moving average; the export
    # holds the average.
    config, _, _ = run
    model = model_lib.build_model(config, len(CATEGORIES))
    optimizer = optimizer_lib.make_optimizer(config)
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    checkpoint.restore(str(Path(config.checkpoint_dir) / f"ckpt-{STEPS}")).assert_consumed()
    last = digests(variable.numpy() for variable in model.trainable_variables)
    optimizer.finalize_variable_values(model.trainable_variables)
    average = digests(variable.numpy() for variable in model.trainable_variables)
    reader = tf.train.load_checkpoint(str(Path(config.model_dir) / "export/variables/variables"))
    exported = digests(reader.get_tensor(name) for name in reader.get_variable_to_shape_map())
    assert len(average) == len(model.trainable_variables)
    assert average <= exported
    assert not last & exported


def test_averaged_weights_holds_the_moving_average_inside_the_block():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.Adam(0.1, use_ema=True, ema_momentum=0.5)
    optimizer.build(model.trainable_variables)
    seen = []
    for gradient in (1.0, -2.0):
        optimizer.apply([tf.fill(v.shape, gradient) for v in model.trainable_variables])
        seen.append([variable.numpy() for variable in model.trainable_variables])
    # Keras starts the average at the first step's weights.
    expected = [0.5 * first + 0.5 * second for first, second in zip(*seen)]
    with optimizer_lib.averaged_weights(model, optimizer):
        for variable, value in zip(model.trainable_variables, expected):
            np.testing.assert_allclose(variable.numpy(), value, rtol=1e-6)
    for variable, value in zip(model.trainable_variables, seen[-1]):
        np.testing.assert_array_equal(variable.numpy(), value)

    plain = keras.optimizers.Adam(0.1)
    plain.build(model.trainable_variables)
    with optimizer_lib.averaged_weights(model, plain):
        for variable, value in zip(model.trainable_variables, seen[-1]):
            np.testing.assert_array_equal(variable.numpy(), value)


def test_the_loop_comes_back_at_each_event_and_at_the_end():
    flags = ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]
    flags += ["--steps=95", "--log_every=10", "--checkpoint_every=25"]

    def stops(eval_every):
        config = config_lib.parse_flags(flags + [f"--eval_every={eval_every}"])
        step, seen = 0, []
        while step < config.steps:
            step = train.next_stop(step, config)
            seen.append(step)
        return seen

    assert stops(0) == [10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95]
    assert stops(35) == [10, 20, 25, 30, 35, 40, 50, 60, 70, 75, 80, 90, 95]


def test_the_speed_for_the_time_left_leaves_out_the_first_call():
    speed = train.Speed()
    speed.add(10, 20.0)  # the first call traces the steps: slow
    assert speed.last == speed.steady == 0.5
    speed.add(10, 2.0)
    speed.add(30, 3.0)
    assert speed.last == 10.0
    assert speed.steady == 40 / 5.0


HERMETIC_CLIENT = """
import json, sys
import numpy as np
import tensorflow as tf
drawings = json.loads(sys.stdin.read())
loaded = tf.saved_model.load(sys.argv[1])
lengths = np.array([len(points) for points in drawings], np.int32)
batch = np.zeros((len(drawings), lengths.max(), 3), np.float32)
for row, points in enumerate(drawings):
    batch[row, : len(points)] = points
out = loaded.signatures["serving_default"](points=tf.constant(batch), lengths=tf.constant(lengths))
print(json.dumps({
    "classes": [[c.decode() for c in row] for row in out["top_k_classes"].numpy()],
    "probabilities": out["probabilities"].numpy().tolist(),
    "project_modules": sorted(m for m in sys.modules if m.split(".")[0] in ("trainer", "pipeline")),
}))
"""


def test_export_alone_classifies_in_a_process_without_the_project(run, tmp_path):
    config, _, _ = run
    copy = tmp_path / "model"
    shutil.copytree(config.model_dir, copy)
    for path in copy.iterdir():
        if path.name != "export":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert [path.name for path in copy.iterdir()] == ["export"]

    points = []  # absolute points of 5 eval drawings per category, as a user draws them
    for category in sorted(CATEGORIES):
        with open(SIMPLIFIED / f"{category}.ndjson") as file:
            lines = file.readlines()[25:30]
        points += [
            ink_math.points_from_strokes(json.loads(line)["drawing"]).tolist() for line in lines
        ]
    result = subprocess.run(
        [sys.executable, "-I", "-c", HERMETIC_CLIENT, str(copy / "export")],
        input=json.dumps(points),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.splitlines()[-1])
    assert served["project_modules"] == []
    probabilities = np.array(served["probabilities"])
    assert probabilities.shape == (len(points), len(CATEGORIES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert [row[0] for row in served["classes"]] == [
        sorted(CATEGORIES)[i] for i in probabilities.argmax(axis=1)
    ]


def test_each_branch_learns_on_its_own_loss():
    """With --raster a step minimizes the sum of the two branches' cross-entropies, not the
    cross-entropy of their combined prediction, so that each branch learns to classify alone."""
    flags = ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]
    flags += [*TINY_FLAGS, "--raster", "--dropout=0", "--batch_size=4"]
    config = config_lib.parse_flags(flags)
    model = model_lib.build_model(config, len(CATEGORIES))
    optimizer = optimizer_lib.make_optimizer(config)
    optimizer.build(model.trainable_variables)
    strokes = [[[0, 40, 80], [0, 60, 10]], [[5, 5], [0, 90]], [[0, 50, 90, 0], [0, 80, 20, 0]]]
    inks = [ink_math.ink_from_strokes([stroke]) for stroke in strokes + strokes[:1]]
    batch, lengths = export.pad_points(inks)
    features = {"ink": batch, "lengths": lengths}
    labels = np.int64([0, 1, 2, 3])
    # The image branch's own batch: the same drawings in another order.
    order = [2, 0, 3, 1]
    mask = np.arange(batch.shape[1]) < lengths[:, None]
    images = {schema.IMAGE: np.asarray(model.get_layer("raster")(batch[order], mask[order]))}

    def cross_entropy(logits, labels=labels):
        losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return float(np.mean(losses))

    recurrent, image_logits = model_lib.branch_logits(model)({**features, **images}, training=True)
    # Each branch against its own batch's labels.
    both = cross_entropy(recurrent) + cross_entropy(image_logits, labels[order])
    combined = cross_entropy(model(features, training=True))
    train_steps = train_step.make_train_steps(
        tf.distribute.get_strategy(), model, optimizer, config, len(CATEGORIES)
    )
    step_features = {**features, **images, schema.IMAGE_LABELS: labels[order]}
    batches = iter(tf.data.Dataset.from_tensors((step_features, labels)).repeat())
    loss = float(train_steps(batches, tf.constant(1)))
    assert loss == pytest.approx(both, rel=1e-5)
    assert abs(loss - combined) > 0.5
