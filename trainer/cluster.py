"""Where this process stands in a training cluster, and what follows from it.

* `read_cluster`: this process's place in the `TF_CONFIG` cluster (Vertex AI names the
  first worker pool `chief`); one worker when `TF_CONFIG` is unset.
* `make_strategy`: `MultiWorkerMirroredStrategy` when `TF_CONFIG` names several workers,
  `MirroredStrategy` on several local GPUs, else the default strategy.
* `worker_scratch_dir`: `tf.distribute` has every worker save the checkpoints; only the
  chief's count, so the other workers save theirs to a temporary directory, deleted however
  the run ends.
* `lost_workers_reported`: a worker that stops (it failed, or its machine went away) stops
  the others within seconds (their collectives are aborted); each then raises `WorkerLost`,
  whose one line says how to resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from quickdraw.cli import UsageError


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

    @property
    def name(self) -> str:
        """`chief`, or `worker N`, for the logs."""
        return "chief" if self.is_chief else f"worker {self.task_index}"


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
    """The strategy for this cluster and machine; made before any other TensorFlow op, as a
    multi-worker strategy requires."""
    if cluster.num_workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@contextlib.contextmanager
def worker_scratch_dir(cluster: Cluster):
    """None on the chief; on another worker a temporary directory for the checkpoints that
    `tf.distribute` has it save, deleted when the block ends, however it ends."""
    if cluster.is_chief:
        yield None
        return
    scratch_dir = tempfile.mkdtemp(prefix=f"trainer-worker-{cluster.task_index}-")
    try:
        yield scratch_dir
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)


class WorkerLost(RuntimeError):
    """Another worker of a multi-worker run stopped (it failed, or its machine went away), so
    the collectives this one waits in were aborted: the run cannot go on without it."""


@contextlib.contextmanager
def lost_workers_reported(cluster: Cluster, checkpoint_dir: str):
    """Turns the error TensorFlow raises on every worker when one goes away into `WorkerLost`,
    which says from which checkpoint the same command resumes."""
    try:
        yield
    except tf.errors.UnavailableError as error:
        # TensorFlow aborts the collectives of every worker when one goes away; any other
        # unavailable service (a storage outage, say) keeps its own error.
        aborted = re.search(r"Collective ops is aborted by: (.+)", error.message)
        if cluster.num_workers == 1 or not aborted:
            raise
        raise WorkerLost(_worker_lost_message(aborted[1], checkpoint_dir)) from None


def _worker_lost_message(reason: str, checkpoint_dir: str) -> str:
    try:
        latest = tf.train.latest_checkpoint(checkpoint_dir)
    except tf.errors.OpError:
        latest = None
    resume = (
        f"from its last checkpoint ({latest})" if latest else "from the start (no checkpoint yet)"
    )
    return (
        f"lost another worker ({reason}); its log says why it stopped. Start every worker "
        f"again with the same command: the run resumes {resume}"
    )


def weights_checksum(model) -> str:
    """A short digest of all weights: equal on every worker of a synchronous run, so their
    logs show that they trained in lockstep."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:16]
