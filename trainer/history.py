"""A run's history, read back from the TensorBoard logs the trainer writes.

The logs already hold every figure the report's curves need (`train/loss`,
`train/learning_rate`, `eval/top1_accuracy`, ... by step), are written as the run goes, live
where the run put them (`--model_dir`/logs or `$AIP_TENSORBOARD_LOG_DIR`, local or gs://),
and survive a stop and a restart. Each start of a run writes a file of its own; a restarted
run repeats the steps after its last checkpoint, so where two files hold the same tag and
step, the later file wins.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.util import event_pb2

EVENT_FILES = "events.out.tfevents.*"


@dataclasses.dataclass
class History:
    """Scalars by tag as (step, value) pairs in step order, and the seconds the run's starts
    spent from their first event to their last, added up."""

    scalars: dict[str, list[tuple[int, float]]]
    wall_seconds: float
    starts: int


def event_files(log_dir: str) -> list[str]:
    """The log directory's event files, oldest first (their names begin with a timestamp)."""
    try:
        paths = tf.io.gfile.glob(os.path.join(log_dir, EVENT_FILES))
    except tf.errors.OpError as error:
        logging.warning("cannot list %s: %s", log_dir, error.message)
        return []
    return sorted(paths, key=_started)


def _started(path: str) -> tuple[int, str]:
    """`events.out.tfevents.TIMESTAMP.HOST...`: when the file's writer was made."""
    parts = os.path.basename(path).split(".")
    timestamp = parts[3] if len(parts) > 3 else ""
    return (int(timestamp) if timestamp.isdigit() else 0, path)


def _scalar(value) -> float | None:
    """A summary value's number, whether written as a tensor or as a simple value."""
    if value.HasField("tensor"):
        array = tf.make_ndarray(value.tensor)
        if array.dtype.kind in "fiu" and array.size == 1:
            return float(array.reshape(()))
        return None
    if value.HasField("simple_value"):
        return float(value.simple_value)
    return None


def read(log_dir: str) -> History:
    """Every scalar in the event files of `log_dir`; an unreadable file is skipped with a
    warning (the history shows what the others hold)."""
    by_tag: dict[str, dict[int, float]] = {}
    wall_seconds = 0.0
    paths = event_files(log_dir)
    for path in paths:
        times = []
        try:
            for record in tf.data.TFRecordDataset(path):
                event = event_pb2.Event.FromString(record.numpy())
                times.append(event.wall_time)
                for value in event.summary.value:
                    number = _scalar(value)
                    if number is not None:
                        by_tag.setdefault(value.tag, {})[int(event.step)] = number
        except tf.errors.OpError as error:
            # A file cut short (a run killed mid-write) still gives the events before the cut.
            logging.warning("cannot read all of %s: %s", path, error.message)
        if times:
            wall_seconds += max(times) - min(times)
    scalars = {
        tag: sorted((step, value) for step, value in values.items() if np.isfinite(value))
        for tag, values in by_tag.items()
    }
    return History(scalars, wall_seconds, len(paths))
