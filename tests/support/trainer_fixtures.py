"""Helpers for the trainer's tests: TFRecords of real drawings, tiny configurations, and
`python -m trainer` run as a real process.

The records are written exactly as the pipeline writes them (`quickdraw.drawings`,
`quickdraw.schema`), from the real drawings in ../shared/quickdraw; a test that needs them
skips, saying why, when that folder is absent.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quickdraw import drawings, schema

REPO = Path(__file__).resolve().parents[2]
SHARED_QUICKDRAW = REPO.parent / "shared" / "quickdraw"
SIMPLIFIED = SHARED_QUICKDRAW / "simplified"

# Categories with 150 drawings each in ../shared/quickdraw, visually distinct.
CATEGORIES = ("circle", "hat", "sock", "wine glass", "zigzag", "bowtie")

# A model small enough to train for a few steps in seconds on two CPU cores.
TINY_FLAGS = (
    "--num_layers=1",
    "--num_nodes=16",
    "--num_conv=8,8",
    "--conv_len=5,3",
    "--batch_size=8",
    "--learning_rate=0.003",
)


def require_shared_quickdraw() -> Path:
    if not SIMPLIFIED.is_dir():
        pytest.skip(f"real drawings not found at {SHARED_QUICKDRAW}: real-data test skipped")
    return SHARED_QUICKDRAW


def read_drawings(category: str, count: int) -> drawings.DrawingBatch:
    """The first `count` valid drawings of a category, through the pipeline's own checks."""
    with open(SIMPLIFIED / f"{category}.ndjson", "rb") as file:
        lines = list(itertools.islice(enumerate(file, 1), count + 10))
    batch, _ = drawings.convert_lines(lines, max_points=100000)
    return batch.select(np.arange(len(batch)) < count)


def write_tfrecords(directory: Path, categories=CATEGORIES, train=24, eval_=8, shards=2) -> Path:
    """Pipeline-format shards of real drawings: `train` and `eval_` per category.

    Returns the directory, holding `training.tfrecord-0000k-of-0000n`,
    `eval.tfrecord-...` and `training.tfrecord.classes`.
    """
    require_shared_quickdraw()
    directory.mkdir(parents=True, exist_ok=True)
    classes = sorted(categories)
    records = {"train": [], "eval": []}
    for class_index, category in enumerate(classes):
        batch = read_drawings(category, train + eval_)
        for index in range(len(batch)):
            split = "train" if index < train else "eval"
            records[split].append(
                schema.encode_example(
                    batch.ink_of(index),
                    class_index,
                    batch.key_ids[index].encode(),
                    batch.log_aspect_of(index),
                )
            )
    for split, serialized in records.items():
        order = np.random.default_rng(0).permutation(len(serialized))
        for shard in range(shards):
            with open(directory / schema.shard_name(split, shard, shards), "wb") as file:
                for index in order[shard::shards]:
                    file.write(schema.frame_record(serialized[index]))
    (directory / schema.classes_file_name("train")).write_text("\n".join(classes) + "\n")
    return directory


def data_flags(data_dir: Path, model_dir: Path) -> list[str]:
    return [
        f"--training_data={data_dir}/training.tfrecord-*",
        f"--eval_data={data_dir}/eval.tfrecord-*",
        f"--classes_file={data_dir}/{schema.classes_file_name('train')}",
        f"--model_dir={model_dir}",
    ]


def trainer_env(**extra) -> dict:
    """The environment for a trainer process: no Vertex variables from the caller's shell."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIP_", "CLOUD_ML_", "TF_CONFIG"))
    }
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra)
    return env


def start_trainer(flags, log_path: Path, **env) -> subprocess.Popen:
    """`python -m trainer FLAGS` in the repository, its output to `log_path`."""
    log = open(log_path, "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", *flags],
        cwd=REPO,
        env=trainer_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


TINY_RUN_EVAL = 8  # eval drawings per category
TINY_RUN_STEPS = 60


def train_tiny_run(tmp_path_factory):
    """Trains the tiny model on real drawings with every input and branch of the local
    preset, in this process: (config, metrics returned, hypertune file). One run serves the
    tests of training, export and the report (the `tiny_run` fixture of conftest.py)."""
    from trainer import config as config_lib
    from trainer import train

    records = write_tfrecords(tmp_path_factory.mktemp("records"), train=24, eval_=TINY_RUN_EVAL)
    model_dir = tmp_path_factory.mktemp("model")
    hypertune = tmp_path_factory.mktemp("hypertune") / "output.metrics"
    flags = [*data_flags(records, model_dir), *TINY_FLAGS, f"--steps={TINY_RUN_STEPS}"]
    flags += ["--eval_every=30", "--checkpoint_every=30", "--log_every=10", "--ema_decay=0.9"]
    # The local preset's inputs, and its image branch.
    flags += ["--positions", "--aspect_ratio", "--directions", "--raster"]
    flags += ["--augment"]  # and its distortions: drawings cut short reach the training step
    flags += ["--test_time_views=3"]  # evaluation and export average over views
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR"):
            patch.delenv(name, raising=False)
        patch.setenv("CLOUD_ML_HP_METRIC_FILE", str(hypertune))
        patch.setenv("CLOUD_ML_TRIAL_ID", "7")
        config = config_lib.parse_flags(flags)
        result = train.train_and_evaluate(config)
    return config, result, hypertune
