"""Checkpoints across restarts: restoring only the model they were written for, and saving
one where the run is when a signal asks it to stop.

* `restore` compares the checkpoint's variables with the model's before it restores them:
  flags that make another model are refused (exit status 2), naming how they differ from
  the run's config.json; flags that leave the model as it was (a larger `--steps`) are
  logged and the run goes on.
* `StopRequest.on_signals` turns SIGTERM (what Compute Engine and Kubernetes send a
  container before they preempt or stop it) and SIGINT (Ctrl-C) into a request that the
  training loop answers by saving a checkpoint and raising `Stopped`; with several
  workers, all of them stop at the same step when any one got a signal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

import numpy as np
import tensorflow as tf

from quickdraw.cli import UsageError
from trainer import config as config_lib
from trainer import export, replicas
from trainer.config import Config


class Stopped(Exception):
    """The run stopped at a signal, with a checkpoint: the same command resumes it."""

    def __init__(self, signal_number: int, step: int, checkpoint: str):
        name = signal.Signals(signal_number).name
        super().__init__(f"stopped by {name} at step {step}, saved in {checkpoint}")
        self.signal_number = signal_number


class StopRequest:
    """The signal that asked this process to stop, if one did (`signal_number`)."""

    signal_number: int | None = None

    def __init__(self, num_workers: int = 1):
        self.num_workers = num_workers

    def agreed(self, strategy: tf.distribute.Strategy) -> int:
        """The signal to stop at, 0 for none, the same on every worker: with several, a
        worker stops when any of them got a signal (SIGTERM when not itself), so that all
        save at the same step. Every worker calls it at the same step (a collective)."""
        got = np.array([1.0 if self.signal_number else 0.0])
        if not replicas.sum_over_workers(strategy, got, self.num_workers)[0]:
            return 0
        return self.signal_number or int(signal.SIGTERM)

    @classmethod
    @contextlib.contextmanager
    def on_signals(cls, num_workers: int = 1):
        """Inside the block SIGTERM (what a platform sends before it preempts a machine) and
        SIGINT (Ctrl-C) only set `signal_number`, so that the loop ends its current steps,
        saves a checkpoint and stops; a second signal acts as it would have."""
        request = cls(num_workers)
        if threading.current_thread() is not threading.main_thread():
            yield request  # signal handlers belong to the main thread
            return
        handled = (signal.SIGTERM, signal.SIGINT)

        def handler(signal_number, frame):
            request.signal_number = signal_number
            for number, previous in zip(handled, previous_handlers):
                signal.signal(number, previous)
            logging.warning(
                "%s: stopping after the current steps, with a checkpoint",
                signal.Signals(signal_number).name,
            )

        previous_handlers = [signal.signal(number, handler) for number in handled]
        try:
            yield request
        finally:
            for number, previous in zip(handled, previous_handlers):
                signal.signal(number, previous)


def restore(checkpoint: tf.train.Checkpoint, path: str, config: Config) -> None:
    """Restores every variable of the checkpoint's model and optimizer from `path`, or raises
    UsageError naming the flags that differ from the run's config.json when `path` holds
    another model. Logs the flags that changed since the run began (a longer --steps, say)."""
    saved = read_saved_config(config.model_dir)
    changed = config_lib.changes(saved, config) if saved else []
    # The shapes first: a restore that fails halfway leaves values behind that TensorFlow
    # lists, a warning each, as the process ends.
    variables = [*checkpoint.model.weights, *checkpoint.optimizer.variables]
    shapes = sorted(tuple(variable.shape) for variable in variables)
    saved_shapes = sorted(
        tuple(shape)
        for name, shape in tf.train.list_variables(path)
        if name.startswith(("model/", "optimizer/"))
    )
    reason = None
    if len(saved_shapes) != len(shapes):
        reason = f"{len(saved_shapes)} variables where these flags make {len(shapes)}"
    elif saved_shapes != shapes:
        reason = "variables of other shapes than these flags make"
    else:
        try:
            # Every value in the checkpoint has its variable here, and every variable its value.
            checkpoint.restore(path).assert_consumed()
        except (AssertionError, ValueError) as error:
            reason = str(error).strip().splitlines()[0]
    if reason and changed:
        raise UsageError(
            f"the checkpoints in {config.checkpoint_dir} are of another model than these flags "
            f"give ({', '.join(changed)}): resume with the flags in "
            f"{config.model_dir}/{export.CONFIG_FILE}, or train into a new --model_dir"
        )
    if reason:
        raise UsageError(
            f"the checkpoints in {config.checkpoint_dir} are of another model ({reason}): "
            "resume with the flags they were trained with, or train into a new --model_dir"
        )
    if changed:
        logging.warning("resuming with flags other than before: %s", "; ".join(changed))


def read_saved_config(model_dir: str) -> Config | None:
    """The flags a run left in `model_dir`, or None if there are none to read."""
    path = os.path.join(model_dir, export.CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as file:
            return Config.from_json(file.read())
    except (ValueError, TypeError) as error:
        logging.warning("cannot read %s: %s", path, error)
        return None
