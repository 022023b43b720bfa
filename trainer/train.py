"""Training, top to bottom: set up, train, finish (`train_and_evaluate`).

A custom loop rather than `model.fit`: Keras 3's `fit` breaks under
`MultiWorkerMirroredStrategy` (keras-team/keras#20585, #20329), and the loop is short.

1. `set_up` checks the inputs (`trainer.checks`: files, classes, the first record), builds
   the model and optimizer under the cluster's strategy (`trainer.cluster`), and restores
   the last checkpoint: the same command started again resumes where its run stopped, logs
   `resuming from step N` and stops at `--steps`. Flags that make another model are
   refused, naming how they differ from the run's config.json (`trainer.checkpoints`).
   Everything the next steps read is one `Run`.
2. `train` runs the training steps (`trainer.train_step`) to `--steps`, coming back to
   Python only to log progress and the time left, save a checkpoint every
   `--checkpoint_every` steps and evaluate every `--eval_every`. SIGTERM or Ctrl-C saves a
   checkpoint where the run is, then stops it; with several workers all stop at the same
   step when one of them got the signal.
3. `finish` puts the moving average of the weights in the model (`--ema_decay`), evaluates
   it once more (keeping drawings it gets wrong), writes metrics.json, exports the
   SavedModel and builds the report.

* Bad input fails with one line and exit status 2 (`UsageError`): checked before the model
  is built where it can be, else when a step meets it (`checks.bad_records_reported`).
* Only the chief writes outputs (export, metrics.json, TensorBoard logs); the other workers
  write their checkpoints to a temporary directory, as `tf.distribute` requires every
  worker to save, and delete it at the end.
* A worker that stops (it failed, or its machine went away) stops the others within seconds
  (their collectives are aborted): each says so on one line (`cluster.WorkerLost`, exit
  status 1), and the same command on every worker resumes from the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from quickdraw.cli import UsageError
from trainer import (
    augment,
    checkpoints,
    checks,
    data,
    evaluate,
    export,
    raster,
    report,
    summaries,
    train_step,
)
from trainer import cluster as cluster_lib
from trainer import model as model_lib
from trainer import optimizer as optimizer_lib
from trainer.config import Config

CHECKPOINTS_TO_KEEP = 3


@dataclasses.dataclass(frozen=True)
class Run:
    """What every part of one training run reads, made once by `set_up`."""

    config: Config
    cluster: cluster_lib.Cluster
    strategy: tf.distribute.Strategy
    classes: list[str]
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    manager: tf.train.CheckpointManager  # the chief's checkpoints, or a worker's scratch ones
    writer: tf.summary.SummaryWriter  # TensorBoard logs on the chief, a no-op elsewhere
    eval_step: Callable  # `evaluate.make_eval_step`'s tf.function, traced once for the run
    eval_seconds: list[float] = dataclasses.field(default_factory=list)  # each evaluation's

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())


def train_and_evaluate(config: Config) -> dict:
    """Trains (or resumes) to `config.steps`, evaluates, exports. Returns the final metrics.

    Raises `UsageError` for bad input, `checkpoints.Stopped` after a stop signal, and with
    several workers `cluster.WorkerLost` when another worker stopped."""
    cluster = cluster_lib.read_cluster()
    # The strategy first: a multi-worker strategy must precede any other TensorFlow op.
    strategy = cluster_lib.make_strategy(cluster)
    with (
        cluster_lib.lost_workers_reported(cluster, config.checkpoint_dir),
        cluster_lib.worker_scratch_dir(cluster) as scratch_dir,
    ):
        run = set_up(config, cluster, strategy, scratch_dir)
        if run.step < config.steps:
            train(run)
        return finish(run)


def set_up(
    config: Config,
    cluster: cluster_lib.Cluster,
    strategy: tf.distribute.Strategy,
    scratch_dir: str | None,
) -> Run:
    """Checks the inputs, builds the model and optimizer, restores the last checkpoint."""
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UsageError(f"--batch_size {config.batch_size} must divide among {replicas} replicas")
    classes = checks.read_inputs(config)
    if cluster.is_chief:
        checks.make_output_dirs(config)
    logging.info(
        "%d classes; %d worker(s), %d replica(s); %s",
        len(classes),
        cluster.num_workers,
        replicas,
        cluster.name,
    )

    with strategy.scope():
        model = model_lib.build_model(config, len(classes))
        optimizer = optimizer_lib.make_optimizer(config)
        optimizer.build(model.trainable_variables)
    logging.info("model: %d parameters", model.count_params())

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    latest = tf.train.latest_checkpoint(config.checkpoint_dir)  # the chief's, on every worker
    if latest:
        checkpoints.restore(checkpoint, latest, config)

    if cluster.is_chief:
        # Written once the checkpoint is known to fit: a run refused above keeps the record
        # of the flags its checkpoints were trained with.
        with tf.io.gfile.GFile(os.path.join(config.model_dir, export.CONFIG_FILE), "w") as file:
            file.write(config.to_json())
        checkpoint_dir = config.checkpoint_dir
        writer = tf.summary.create_file_writer(config.log_dir)
    else:
        checkpoint_dir = scratch_dir
        writer = tf.summary.create_noop_writer()
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, CHECKPOINTS_TO_KEEP)
    step = int(optimizer.iterations.numpy())
    if step:
        logging.info("resuming from step %d (%s)", step, latest)
    eval_step = evaluate.make_eval_step(model, len(classes), config.test_time_views)
    return Run(config, cluster, strategy, classes, model, optimizer, manager, writer, eval_step)


def train(run: Run) -> None:
    """Steps from the optimizer's step count to `--steps`, with the periodic events: progress,
    checkpoints, evaluations. Raises `checkpoints.Stopped`, once a checkpoint is saved, after
    a stop signal."""
    config, step = run.config, run.step
    train_steps = train_step.make_train_steps(
        run.strategy, run.model, run.optimizer, config, len(run.classes)
    )
    speed = Speed()
    with (
        checks.bad_records_reported(config, config.training_data, len(run.classes)),
        checkpoints.StopRequest.on_signals(run.cluster.num_workers) as stop_request,
    ):
        batches = training_batches(run, step)
        logging.info("training from step %d to %d", step, config.steps)
        while step < config.steps:
            stop = next_stop(step, config)
            started = time.monotonic()
            loss = float(train_steps(batches, tf.constant(stop - step)))
            speed.add(stop - step, time.monotonic() - started)
            step = stop
            if not np.isfinite(loss):
                raise FloatingPointError(f"the training loss is {loss} at step {step}")
            log_progress(run, step, loss, speed)
            saved = step % config.checkpoint_every == 0 or step == config.steps
            if saved:
                logging.info("saved checkpoint %s", run.manager.save(checkpoint_number=step))
            signal_number = stop_request.agreed(run.strategy) if step < config.steps else 0
            if signal_number:
                if not saved:
                    run.manager.save(checkpoint_number=step)
                run.writer.flush()
                raise checkpoints.Stopped(signal_number, step, run.manager.latest_checkpoint)
            if config.eval_every and step % config.eval_every == 0 and step < config.steps:
                evaluate_and_log(run, step)


def finish(run: Run) -> dict:
    """The moving average into the model, the final evaluation, the chief's outputs (metrics,
    the drawings it got wrong, the export, the report). Returns the final metrics."""
    config, cluster, model, optimizer = run.config, run.cluster, run.model, run.optimizer
    step = run.step
    if optimizer.use_ema:
        # From here on the model holds the moving average (on every worker): the final
        # evaluation, the checksum and the export all see it. The checkpoints keep the
        # last weights and the average apart, so a restart at the end does this again.
        optimizer.finalize_variable_values(model.trainable_variables)
        logging.info("the model now holds the moving average of its weights")

    # The chief keeps some of the drawings the final evaluation gets wrong, for the report.
    mistakes = evaluate.Mistakes(run.classes) if cluster.is_chief else None
    result = evaluate_and_log(run, step, mistakes)
    if config.test_time_views > 1:
        # What the export's single_view signature scores, for the choice between the two.
        logging.info("the same eval with each drawing alone (the single_view signature):")
        alone = evaluate_at(run, evaluate.make_eval_step(model, len(run.classes)), step)
        result[evaluate.SINGLE_VIEW] = {name: alone[name] for name in evaluate.HEADLINE}
    logging.info("weights checksum %s", cluster_lib.weights_checksum(model))
    if cluster.is_chief:
        evaluate.write_json(os.path.join(config.model_dir, "metrics.json"), result)
        evaluate.write_json(
            os.path.join(config.model_dir, report.MISTAKES_FILE),
            mistakes.as_dict(step),
            indent=None,
        )
        evaluate.report_hypertune(result["top1_accuracy"], step)
        export_dir = os.path.join(config.model_dir, "export")
        export.export_model(model.get_weights(), config, run.classes, export_dir)
        logging.info("exported the serving model to %s", export_dir)
    run.writer.close()
    if cluster.is_chief:
        write_report(config)
    return result


def load_augment_fn(config: Config):
    """`trainer.augment.training_batch` when `--augment` is on, else None."""
    return augment.training_batch if config.augment else None


def load_image_fn(config: Config):
    """With `--raster`, what makes the image branch's training images from a drawing
    (`trainer.raster.training_image_fn`), through `trainer.augment.image_batch` when
    `--augment` is on; else None."""
    return raster.training_image_fn(config, augment.image_batch if config.augment else None)


def training_batches(run: Run, step: int):
    """An iterator over the training batches from `step` on, each worker reading its share.
    A restarted run draws other batches than the first time it passed this step."""
    config = run.config
    per_replica_batch = config.batch_size // run.strategy.num_replicas_in_sync

    def dataset_fn(context):
        return data.dataset(
            config.training_data,
            per_replica_batch,
            training=True,
            seed=config.seed + step,
            num_shards=context.num_input_pipelines,
            shard_index=context.input_pipeline_id,
            augment_fn=load_augment_fn(config),
            image_fn=load_image_fn(config),
            log_aspect=config.aspect_ratio,
        )

    return iter(run.strategy.distribute_datasets_from_function(dataset_fn))


def next_stop(step: int, config: Config) -> int:
    """The next step after `step` at which the loop has something to do: log progress, save
    a checkpoint, evaluate, or end at `--steps`."""
    events = [config.log_every, config.checkpoint_every]
    if config.eval_every:
        events.append(config.eval_every)
    return min([config.steps] + [(step // every + 1) * every for every in events])


class Speed:
    """Steps per second: of the last call of the training steps (`last`), and of all calls
    but the first, whose tracing would make the time left far too long (`steady`)."""

    def __init__(self):
        self.last = 0.0
        self.steps, self.seconds, self.calls = 0, 0.0, 0

    def add(self, steps: int, seconds: float) -> None:
        self.last = steps / seconds
        if self.calls:
            self.steps, self.seconds = self.steps + steps, self.seconds + seconds
        self.calls += 1

    @property
    def steady(self) -> float:
        return self.steps / self.seconds if self.seconds else self.last


def time_left(step, steps, steps_per_second, eval_every, eval_seconds) -> float:
    """Seconds until `steps`: the steps left at `steps_per_second`, and the evaluations left
    (those every `eval_every` steps before the end, and the final one) at `eval_seconds`."""
    evaluations = 1
    if eval_every:
        evaluations += max(0, (steps - 1) // eval_every - step // eval_every)
    return (steps - step) / steps_per_second + evaluations * eval_seconds


def log_progress(run: Run, step: int, loss: float, speed: Speed) -> None:
    """A progress line every `--log_every` steps and at the end, with the time left; the
    training scalars for TensorBoard at every call."""
    config = run.config
    learning_rate = float(run.optimizer.learning_rate)
    if step % config.log_every == 0 or step == config.steps:
        left = time_left(
            step,
            config.steps,
            speed.steady,
            config.eval_every,
            run.eval_seconds[-1] if run.eval_seconds else 0.0,
        )
        logging.info(
            "step %d/%d: loss %.4f, %.2f steps/s, %.0f drawings/s, learning rate %.3g, %s left",
            step,
            config.steps,
            loss,
            speed.last,
            speed.last * config.batch_size,
            learning_rate,
            report.format_duration(left),
        )
    summaries.write_scalars(
        run.writer,
        step,
        {
            "train/loss": loss,
            "train/learning_rate": learning_rate,
            "train/steps_per_second": speed.last,
        },
    )


def evaluate_at(run: Run, eval_step, step: int, mistakes=None) -> dict:
    """The metrics of `eval_step` over the whole eval set at `step`, each worker counting
    its share, with the moving average of the weights in the model; logged in one line."""
    started = time.monotonic()
    config, cluster = run.config, run.cluster
    with (
        optimizer_lib.averaged_weights(run.model, run.optimizer),
        checks.bad_records_reported(config, config.eval_data, len(run.classes)),
    ):
        counts = evaluate.count(
            eval_step,
            config.eval_data,
            len(run.classes),
            num_shards=cluster.num_workers,
            shard_index=cluster.task_index,
            log_aspect=config.aspect_ratio,
            mistakes=mistakes,
        )
    counts = evaluate.sum_across_workers(run.strategy, counts, cluster.num_workers)
    result = evaluate.metrics(counts, run.classes, step)
    run.eval_seconds.append(time.monotonic() - started)
    logging.info("%s (%.1f s)", evaluate.summary_line(result), run.eval_seconds[-1])
    return result


def evaluate_and_log(run: Run, step: int, mistakes=None) -> dict:
    """`evaluate_at` with the run's own eval step, its headline figures and (on the chief)
    its confusion matrix written for TensorBoard."""
    result = evaluate_at(run, run.eval_step, step, mistakes)
    summaries.write_scalars(
        run.writer, step, {f"eval/{name}": result[name] for name in evaluate.HEADLINE}
    )
    if run.cluster.is_chief:
        try:
            summaries.write_confusion_image(run.writer, result)
        except Exception:  # noqa: BLE001 - a picture must never stop a training run
            logging.exception("could not draw the confusion matrix for TensorBoard")
    return result


def write_report(config: Config) -> None:
    """The run's report (`trainer.report`), last, once every file it reads is written. A
    report that fails costs no result of the run: the error is logged with the command that
    builds the report again."""
    try:
        path = report.build(config.model_dir)
    except Exception:  # noqa: BLE001 - the model and metrics are written; say so, go on
        logging.exception(
            "could not write the report; the run's outputs are complete. Once fixed: "
            "python -m trainer.report --model_dir %s",
            config.model_dir,
        )
        return
    logging.info("report: %s", path)
