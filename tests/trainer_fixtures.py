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

REPO = Path(__file__).resolve().parents[1]
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
