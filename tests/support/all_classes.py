"""`make all` over every one of the 345 categories, as a newcomer types it, with a model small
enough to train for a few steps: the pipeline, training, evaluation, export and predict at
the dataset's full class count, so that nothing downstream assumes the demo's 26.

    make all CATEGORIES= INPUT='../shared/quickdraw/simplified/*.ndjson' \\
        TRAIN_PER_CLASS=20 EVAL_PER_CLASS=5 TRAIN_ARGS='<tiny model, a few steps>'

`tests/conftest.py` runs it once per session (the `all_classes_run` fixture); any test that
needs a trained 345-class model, its export, its records or its predictions can use it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_quickdraw_or_skip
from tests.support.trainer_fixtures import trainer_env

TRAIN_PER_CLASS, EVAL_PER_CLASS = 20, 5
CLASSES = 345
# The local preset (make train's), its image branch and views included, on a tiny network
# and for a few steps: the point is the class count, not the accuracy.
TRAIN_ARGS = (
    "--num_layers=1",
    "--num_nodes=16",
    "--num_conv=8,8",
    "--conv_len=5,3",
    "--batch_size=32",
    "--steps=6",
    "--warmup_steps=2",
    "--log_every=3",
    "--eval_every=0",
    "--checkpoint_every=6",
    "--test_time_views=2",
)


@dataclasses.dataclass(frozen=True)
class AllClassesRun:
    data_dir: Path  # the pipeline's records, classes file, stats.json, predict_sample.ndjson
    model_dir: Path  # metrics.json, config.json, export/
    predictions: list[dict]  # trainer.predict's lines, the summary last
    log: str  # make's stderr: every program's log lines

    @property
    def export_dir(self) -> Path:
        return self.model_dir / "export"

    @property
    def classes(self) -> list[str]:
        return (self.data_dir / "training.tfrecord.classes").read_text().splitlines()


def make_all(directory: Path) -> AllClassesRun:
    simplified = shared_quickdraw_or_skip() / "simplified"
    venv = Path(sys.prefix)
    if not (venv / ".installed").exists():
        pytest.fail(f"{venv} was not set up by `make install` (no .installed): run it first")
    data_dir, model_dir = directory / "data", directory / "model"
    command = [
        "make", "--no-print-directory", "all", "CATEGORIES=",
        f"INPUT={simplified}/*.ndjson",
        f"TRAIN_PER_CLASS={TRAIN_PER_CLASS}", f"EVAL_PER_CLASS={EVAL_PER_CLASS}",
        f"DATA_DIR={data_dir}", f"MODEL_DIR={model_dir}",
        f"TRAIN_ARGS={' '.join(TRAIN_ARGS)}", f"VENV={venv}",
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, env=trainer_env(), timeout=900
    )
    if completed.returncode != 0:
        pytest.fail(f"make all failed ({completed.returncode}): {completed.stderr[-4000:]}")
    predictions = [
        json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")
    ]
    return AllClassesRun(data_dir, model_dir, predictions, completed.stderr)
