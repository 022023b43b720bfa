"""Training: distribution strategy, custom training loop, checkpoints, evaluation, export.

A custom loop rather than `model.fit`: Keras 3's `fit` breaks under
`MultiWorkerMirroredStrategy` (keras-team/keras#20585, #20329), and the loop is short.

* Strategy: `MultiWorkerMirroredStrategy` when `TF_CONFIG` names several workers (Vertex AI
  names the first pool `chief`), `MirroredStrategy` on several local GPUs, else the default.
* Preemption: a checkpoint every `--checkpoint_every` steps; the same command started again
  restores the last one, logs `resuming from step N` and stops at `--steps`. Flags that make
  another model are refused, naming how they differ from the run's config.json.
  SIGTERM or Ctrl-C saves a checkpoint where the run is, then stops it; with several workers
  all stop at the same step when one of them got the signal (`trainer.checkpoints`).
* Bad input fails with one line and exit status 2 (`UsageError`): checked before the model
  is built where it can be (files, classes, the first record), else when a step meets it
  (`bad_records_reported`).
* Only the chief writes outputs (export, metrics.json, TensorBoard logs); the other workers
  write their checkpoints to a temporary directory, as `tf.distribute` requires every
  worker to save, and delete it at the end.
* A worker that stops (it failed, or its machine went away) stops the others within seconds
  (their collectives are aborted): each says so on one line (`WorkerLost`, exit status 1),
  and the same command on every worker resumes from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from quickdraw import schema
from quickdraw.cli import UsageError
from trainer import augment, checkpoints, checks, data, evaluate, export, raster, report, summaries
from trainer import model as model_lib
from trainer import optimizer as optimizer_lib
from trainer.config import Config

CHECKPOINTS_TO_KEEP = 3


def time_left(step, steps, steps_per_second, eval_every, eval_seconds) -> float:
    """Seconds until `steps`: the steps left at `steps_per_second`, and the evaluations left
    (those every `eval_every` steps before the end, and the final one) at `eval_seconds`."""
    evaluations = 1
    if eval_every:
        evaluations += max(0, (steps - 1) // eval_every - step // eval_every)
    return (steps - step) / steps_per_second + evaluations * eval_seconds


@dataclasses.dataclass(frozen=True)
class Cluster:
    num_workers: int
    task_type: str
    task_index: int

    @property
    def is_chief(self) -> bool:
        # Vertex AI (and tf.distribute) call the first worker `chief`; a cluster with no
        # chief task makes worker 0 the chief.
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0)


def read_cluster() -> Cluster:
    """This process's place in the `TF_CONFIG` cluster (one worker when unset)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = tf_config.get("cluster", {})
    chiefs, workers = cluster.get("chief", []), cluster.get("worker", [])
    task = tf_config.get("task", {})
    task_type, task_index = task.get("type", "chief"), int(task.get("index", 0))
    if len(chiefs) + len(workers) <= 1:
        return Cluster(1, "chief", 0)
    if task_type not in ("chief", "worker"):
        raise UsageError(f"TF_CONFIG task type {task_type!r} is not supported (chief, worker)")
    if task_type == "worker" and chiefs:
        task_index += 1  # the chief is worker 0 when there is one
    return Cluster(len(chiefs) + len(workers), task_type, task_index)


def make_strategy(cluster: Cluster) -> tf.distribute.Strategy:
    if cluster.num_workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def load_augment_fn(config: Config):
    """`trainer.augment.training_batch` when `--augment` is on, else None."""
    return augment.training_batch if config.augment else None


def load_image_fn(config: Config):
    """With `--raster`, what makes the image branch's training images from a drawing
    (`trainer.raster.training_image_fn`), through `trainer.augment.image_batch` when
    `--augment` is on; else None."""
    return raster.training_image_fn(config, augment.image_batch if config.augment else None)


def make_train_steps(strategy, model, optimizer, config: Config, num_classes: int):
    """A tf.function that runs `num_steps` training steps from a (distributed) iterator and
    returns their mean loss."""
    replicas = strategy.num_replicas_in_sync
    branches = model_lib.branch_logits(model)  # the same weights, each branch's logits

    def smoothed(labels):
        targets = tf.one_hot(labels, num_classes)
        if config.label_smoothing:
            targets = targets * (1 - config.label_smoothing) + config.label_smoothing / num_classes
        return targets

    def replica_step(features, labels):
        features = dict(features)
        # Each branch's labels: with --raster the image branch has a batch of its own.
        branch_labels = [labels]
        if config.raster:
            branch_labels.append(features.pop(schema.IMAGE_LABELS))
        branch_labels = [checks.checked_labels(each, num_classes) for each in branch_labels]
        with tf.GradientTape() as tape:
            # Each branch learns on its own loss; their sum is the step's loss.
            logits = tf.nest.flatten(branches(features, training=True))
            losses = tf.add_n(
                [
                    tf.nn.softmax_cross_entropy_with_logits(smoothed(each), each_logits)
                    for each, each_logits in zip(branch_labels, logits)
                ]
            )  # (batch,)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=config.batch_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        # Clip by the norm of the whole batch's gradient, summed over all replicas (Keras's
        # own clipping would clip each replica's share separately).
        if replicas > 1:
            context = tf.distribute.get_replica_context()
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        if config.gradient_clipping_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, config.gradient_clipping_norm)
        if replicas > 1:
            # The optimizer sums the replicas' gradients once more: hand it equal shares.
            gradients = [gradient / replicas for gradient in gradients]
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    # Only the loop needs AutoGraph; converting Keras's own code would just slow tracing.
    replica_step = tf.autograph.experimental.do_not_convert(replica_step)

    @tf.function
    def train_steps(iterator, num_steps):
        total = tf.constant(0.0)
        for _ in tf.range(num_steps):
            features, labels = next(iterator)
            losses = strategy.run(replica_step, args=(features, labels))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
            total += tf.cast(loss, tf.float32)
        return total / tf.cast(num_steps, tf.float32)

    return train_steps


@contextlib.contextmanager
def averaged_weights(model, optimizer):
    """Inside the block the model holds the optimizer's moving average of its weights (when
    `--ema_decay` keeps one); after it, its own weights again."""
    if not optimizer.use_ema:
        yield
        return
    saved = [variable.numpy() for variable in model.trainable_variables]
    optimizer.finalize_variable_values(model.trainable_variables)
    try:
        yield
    finally:
        for variable, value in zip(model.trainable_variables, saved):
            variable.assign(value)


def weights_checksum(model) -> str:
    """A short digest of all weights: equal on every worker of a synchronous run."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:16]


class WorkerLost(RuntimeError):
    """Another worker of a multi-worker run stopped (it failed, or its machine went away), so
    the collectives this one waits in were aborted: the run cannot go on without it."""


def train_and_evaluate(config: Config) -> dict:
    """Trains (or resumes) to `config.steps`, evaluates, exports. Returns the final metrics.

    Raises `UsageError` for bad input, `checkpoints.Stopped` after a stop signal, and with
    several workers `WorkerLost` when another worker stopped."""
    cluster = read_cluster()
    strategy = make_strategy(cluster)  # first: a multi-worker strategy must precede other ops
    # tf.distribute has every worker save the checkpoints; the others save theirs here, and
    # it goes however the run ends.
    scratch_dir = (
        None
        if cluster.is_chief
        else tempfile.mkdtemp(prefix=f"trainer-worker-{cluster.task_index}-")
    )
    try:
        return _train_and_evaluate(config, cluster, strategy, scratch_dir)
    except tf.errors.UnavailableError as error:
        # TensorFlow aborts the collectives of every worker when one goes away; any other
        # unavailable service (a storage outage, say) keeps its own error.
        aborted = re.search(r"Collective ops is aborted by: (.+)", error.message)
        if cluster.num_workers == 1 or not aborted:
            raise
        raise WorkerLost(_worker_lost_message(aborted[1], config)) from None
    finally:
        if scratch_dir:
            shutil.rmtree(scratch_dir, ignore_errors=True)


def _worker_lost_message(reason: str, config: Config) -> str:
    try:
        latest = tf.train.latest_checkpoint(config.checkpoint_dir)
    except tf.errors.OpError:
        latest = None
    resume = (
        f"from its last checkpoint ({latest})" if latest else "from the start (no checkpoint yet)"
    )
    return (
        f"lost another worker ({reason}); its log says why it stopped. Start every worker "
        f"again with the same command: the run resumes {resume}"
    )


def _train_and_evaluate(config: Config, cluster, strategy, scratch_dir: str | None) -> dict:
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UsageError(f"--batch_size {config.batch_size} must divide among {replicas} replicas")
    classes = checks.read_inputs(config)
    if cluster.is_chief:
        checks.make_output_dirs(config)
    augment_fn = load_augment_fn(config)
    logging.info(
        "%d classes; %d worker(s), %d replica(s); %s",
        len(classes),
        cluster.num_workers,
        replicas,
        "chief" if cluster.is_chief else f"worker {cluster.task_index}",
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

    eval_seconds = []  # how long each evaluation took, for the time left

    def evaluate_with(step_fn, at_step, mistakes=None):
        started = time.monotonic()
        with (
            averaged_weights(model, optimizer),
            checks.bad_records_reported(config, config.eval_data, len(classes)),
        ):
            counts = evaluate.count(
                step_fn,
                config.eval_data,
                len(classes),
                num_shards=cluster.num_workers,
                shard_index=cluster.task_index,
                log_aspect=config.aspect_ratio,
                mistakes=mistakes,
            )
        counts = evaluate.sum_across_workers(strategy, counts, cluster.num_workers)
        result = evaluate.metrics(counts, classes, at_step)
        eval_seconds.append(time.monotonic() - started)
        logging.info("%s (%.1f s)", evaluate.summary_line(result), eval_seconds[-1])
        return result

    def run_eval(at_step, mistakes=None):
        result = evaluate_with(eval_step, at_step, mistakes)
        summaries.write_scalars(
            writer, at_step, {f"eval/{name}": result[name] for name in evaluate.HEADLINE}
        )
        if cluster.is_chief:
            try:
                summaries.write_confusion_image(writer, result)
            except Exception:  # noqa: BLE001 - a picture must never stop a training run
                logging.exception("could not draw the confusion matrix for TensorBoard")
        return result

    if step < config.steps:
        train_steps = make_train_steps(strategy, model, optimizer, config, len(classes))
        with (
            checks.bad_records_reported(config, config.training_data, len(classes)),
            checkpoints.StopRequest.on_signals(cluster.num_workers) as stop_request,
        ):
            _train_loop(
                config,
                strategy,
                train_steps,
                optimizer,
                manager,
                writer,
                run_eval,
                augment_fn,
                stop_request,
                eval_seconds,
            )
    step = int(optimizer.iterations.numpy())
    if optimizer.use_ema:
        # From here on the model holds the moving average (on every worker): the final
        # evaluation, the checksum and the export all see it. The checkpoints keep the
        # last weights and the average apart, so a restart at the end does this again.
        optimizer.finalize_variable_values(model.trainable_variables)
        logging.info("the model now holds the moving average of its weights")

    # The chief keeps some of the drawings the final evaluation gets wrong, for the report.
    mistakes = evaluate.Mistakes(classes) if cluster.is_chief else None
    result = run_eval(step, mistakes)
    if config.test_time_views > 1:
        # What the export's single_view signature scores, for the choice between the two.
        logging.info("the same eval with each drawing alone (the single_view signature):")
        alone = evaluate_with(evaluate.make_eval_step(model, len(classes)), step)
        result[evaluate.SINGLE_VIEW] = {name: alone[name] for name in evaluate.HEADLINE}
    logging.info("weights checksum %s", weights_checksum(model))
    if cluster.is_chief:
        evaluate.write_json(os.path.join(config.model_dir, "metrics.json"), result)
        evaluate.write_json(
            os.path.join(config.model_dir, report.MISTAKES_FILE),
            mistakes.as_dict(step),
            indent=None,
        )
        evaluate.report_hypertune(result["top1_accuracy"], step)
        export_dir = os.path.join(config.model_dir, "export")
        export.export_model(model.get_weights(), config, classes, export_dir)
        logging.info("exported the serving model to %s", export_dir)
    writer.close()
    if cluster.is_chief:
        write_report(config)
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


def _train_loop(
    config,
    strategy,
    train_steps,
    optimizer,
    manager,
    writer,
    run_eval,
    augment_fn,
    stop_request,
    eval_seconds,
):
    """Steps from the optimizer's step count to `config.steps`, with the periodic events.
    Raises `checkpoints.Stopped`, once a checkpoint is saved, after `stop_request` got a signal.
    `eval_seconds` lists how long each evaluation took so far (for the time left)."""
    step = int(optimizer.iterations.numpy())
    # The speed for the time left: steps and seconds since the first call, whose tracing
    # would make the estimate far too long.
    timed_steps, timed_seconds, first_call = 0, 0.0, True
    per_replica_batch = config.batch_size // strategy.num_replicas_in_sync

    def dataset_fn(context):
        # A restarted run draws other batches than the first time it passed this step.
        return data.dataset(
            config.training_data,
            per_replica_batch,
            training=True,
            seed=config.seed + step,
            num_shards=context.num_input_pipelines,
            shard_index=context.input_pipeline_id,
            augment_fn=augment_fn,
            image_fn=load_image_fn(config),
            log_aspect=config.aspect_ratio,
        )

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    events = [config.log_every, config.checkpoint_every] + (
        [config.eval_every] if config.eval_every else []
    )
    logging.info("training from step %d to %d", step, config.steps)
    while step < config.steps:
        stop = min([config.steps] + [(step // every + 1) * every for every in events])
        started = time.monotonic()
        loss = float(train_steps(iterator, tf.constant(stop - step)))
        seconds = time.monotonic() - started
        steps_per_second = (stop - step) / seconds
        if not first_call:
            timed_steps, timed_seconds = timed_steps + stop - step, timed_seconds + seconds
        first_call = False
        step = stop
        if not np.isfinite(loss):
            raise FloatingPointError(f"the training loss is {loss} at step {step}")
        learning_rate = float(optimizer.learning_rate)
        if step % config.log_every == 0 or step == config.steps:
            left = time_left(
                step,
                config.steps,
                timed_steps / timed_seconds if timed_seconds else steps_per_second,
                config.eval_every,
                eval_seconds[-1] if eval_seconds else 0.0,
            )
            logging.info(
                "step %d/%d: loss %.4f, %.2f steps/s, %.0f drawings/s, learning rate %.3g, %s left",
                step,
                config.steps,
                loss,
                steps_per_second,
                steps_per_second * config.batch_size,
                learning_rate,
                report.format_duration(left),
            )
        summaries.write_scalars(
            writer,
            step,
            {
                "train/loss": loss,
                "train/learning_rate": learning_rate,
                "train/steps_per_second": steps_per_second,
            },
        )
        saved = step % config.checkpoint_every == 0 or step == config.steps
        if saved:
            logging.info("saved checkpoint %s", manager.save(checkpoint_number=step))
        signal_number = stop_request.agreed(strategy) if step < config.steps else 0
        if signal_number:
            path = manager.latest_checkpoint if saved else manager.save(checkpoint_number=step)
            writer.flush()
            raise checkpoints.Stopped(signal_number, step, path)
        if config.eval_every and step % config.eval_every == 0 and step < config.steps:
            run_eval(step)
