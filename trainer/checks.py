"""The trainer's inputs checked, so that bad input fails with one line that says what to do
(a `UsageError`, exit status 2) and loses nothing.

* Before anything is built: the classes file, a first record of each glob that parses as a
  drawing (`check_records`), the buckets of gs:// paths, the output directories
  (`read_inputs`, `make_output_dirs`).
* Inside a step, where only TensorFlow sees the records: a class_index beyond the classes
  file (`checked_labels`) and a damaged file, both turned into a `UsageError` by
  `bad_records_reported`.
"""

from __future__ import annotations

import contextlib
import re

import tensorflow as tf

from quickdraw import schema
from quickdraw.cli import UsageError
from trainer.config import Config


def read_inputs(config: Config) -> list[str]:
    """The classes of `--classes_file`, once it and the records of `--training_data` and
    `--eval_data` are checked (`check_records`); UsageError otherwise."""
    try:
        classes = read_classes(config.classes_file)
        for pattern in (config.training_data, config.eval_data):
            check_records(pattern, log_aspect=config.aspect_ratio)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return classes


def make_output_dirs(config: Config) -> None:
    """Creates `--model_dir`, the checkpoint directory and the log directory, or raises
    UsageError naming the one that cannot be created, and why."""
    for flag, directory in (
        ("--model_dir", config.model_dir),
        ("the checkpoint directory", config.checkpoint_dir),
        ("the log directory", config.log_dir),
    ):
        try:
            check_bucket(directory)
        except ValueError as error:
            raise UsageError(f"cannot create {flag} {directory}: {error}") from None
        try:
            tf.io.gfile.makedirs(directory)
        except tf.errors.OpError as error:
            raise UsageError(f"cannot create {flag} {directory}: {short_message(error)}") from None


def check_bucket(path: str) -> None:
    """For a gs:// path, ValueError unless its bucket exists. TensorFlow's GCS client fails a
    glob in a missing bucket with a bare 404, and loops for ever making a directory in one."""
    if not path.startswith("gs://"):
        return
    bucket = "gs://" + path[len("gs://") :].split("/", 1)[0]
    try:
        found = tf.io.gfile.isdir(bucket)
    except tf.errors.OpError as error:
        raise ValueError(f"cannot read bucket {bucket}: {short_message(error)}") from None
    if not found:
        raise ValueError(f"bucket {bucket} does not exist (or these credentials cannot see it)")


def list_files(pattern: str) -> list[str]:
    """The files matching a glob (local, gs:// or /gcs/), sorted; ValueError if none."""
    check_bucket(pattern)
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no files match {pattern!r}")
    return files


def read_classes(path: str) -> list[str]:
    """The category names, one per line, in class_index order."""
    check_bucket(path)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"classes file {path!r} does not exist")
    with tf.io.gfile.GFile(path, "r") as file:
        names = [line.strip() for line in file if line.strip()]
    if not names:
        raise ValueError(f"classes file {path!r} lists no classes")
    if len(set(names)) != len(names):
        raise ValueError(f"classes file {path!r} lists a class twice")
    return names


def check_records(pattern: str, *, log_aspect: bool) -> None:
    """ValueError unless the files matching `pattern` hold a record, the first one parses as
    a drawing, and with `log_aspect` it holds the `log_aspect` feature that `--aspect_ratio`
    reads (the pipeline writes it; the tutorial's script did not), so that a run fails
    before it builds anything. (Shards may be empty: the first record counts.)"""
    files = list_files(pattern)
    try:
        first = next(iter(tf.data.TFRecordDataset(files).take(1)), None)
    except tf.errors.DataLossError as error:
        raise ValueError(damaged_records(pattern, error)) from None
    if first is None:
        raise ValueError(
            f"the {len(files)} file(s) matching {pattern!r} hold no records: write them with "
            "`python -m pipeline`, or check the glob"
        )
    try:
        schema.parse_examples(first)
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(
            f"the first record of {pattern!r} is not a drawing as `python -m pipeline` writes "
            f"it ({short_message(error)})"
        ) from None
    example = tf.train.Example.FromString(first.numpy())
    if log_aspect and schema.LOG_ASPECT not in example.features.feature:
        raise ValueError(
            f"--aspect_ratio reads the {schema.LOG_ASPECT!r} feature, and the records "
            f"of {pattern!r} have none (from the tutorial's script or an older "
            f"pipeline): write them again with `python -m pipeline`, or pass "
            f"--aspect_ratio=false"
        )


def short_message(error: tf.errors.OpError, limit: int = 160) -> str:
    """An op's error message on one line, without the op's and function's names."""
    lines = [line for line in error.message.splitlines() if line.strip()]
    text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]", "", lines[0] if lines else "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def damaged_records(pattern: str, error: tf.errors.DataLossError) -> str:
    """What to say of a damaged TFRecord file matching `pattern`: where it is damaged, as
    TensorFlow's message says it, and what to do."""
    where = re.search(r"(corrupted|truncated) record at \d+", error.message)
    return (
        f"a file matching {pattern!r} is damaged ({where[0] if where else 'data loss'}): "
        "write the records again with `python -m pipeline`"
    )


# The message of `checked_labels`' assertion, which the trainer turns into a one-line error.
LABELS_BEYOND_CLASSES = "class_index beyond the classes file"


def checked_labels(labels, num_classes: int):
    """Inside a step, `labels` once checked: fails (InvalidArgumentError,
    `LABELS_BEYOND_CLASSES`) when a record's class_index has no line in the classes file,
    which one-hot encoding and the confusion matrix would otherwise drop or misplace without a
    word. The returned labels depend on the check, so no op that reads them (the loss, the
    confusion matrix) can fail first with its own message."""
    check = tf.debugging.assert_less(
        labels, tf.cast(num_classes, labels.dtype), LABELS_BEYOND_CLASSES
    )
    with tf.control_dependencies([check] if check is not None else []):
        return tf.identity(labels)


@contextlib.contextmanager
def bad_records_reported(config: Config, pattern: str, num_classes: int):
    """Turns what bad records raise inside a step into an UsageError that says what to do:
    a damaged file (`DataLossError`), or a class_index with no line in the classes file
    (`checked_labels`)."""
    try:
        yield
    except tf.errors.DataLossError as error:
        raise UsageError(damaged_records(pattern, error)) from None
    except tf.errors.InvalidArgumentError as error:
        if LABELS_BEYOND_CLASSES not in error.message:
            raise
        raise UsageError(
            f"the records hold a class_index of {num_classes} or more, beyond the classes of "
            f"--classes_file {config.classes_file} (indices 0 to {num_classes - 1}): give the "
            "classes file that was written with these records"
        ) from None
