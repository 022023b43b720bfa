"""A tiny exported model of three classes, and `python -m trainer.predict` run on it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.trainer_fixtures import REPO, trainer_env
from trainer import config as config_lib
from trainer import export
from trainer import model as model_lib

CLASSES = ["circle", "hat", "zigzag"]


def export_tiny(directory, *flags):
    """Exports an untrained tiny model to directory/export; returns directory."""
    config = config_lib.parse_flags(
        ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]
        + ["--num_conv=6", "--conv_len=3", "--num_layers=1", "--num_nodes=8", *flags]
    )
    model = model_lib.build_model(config, len(CLASSES))
    export.export_model(model.get_weights(), config, CLASSES, str(directory / "export"))
    return directory


def predict(*args):
    return subprocess.run(
        [sys.executable, "-m", "trainer.predict", *map(str, args)],
        cwd=REPO,
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def same_predictions(lines, expected):
    """JSON output lines that name the same drawings and labels, probabilities within 1e-5
    (batches of other sizes round the last digit apart)."""
    assert len(lines) == len(expected)
    for line, want in zip(map(json.loads, lines), map(json.loads, expected)):
        assert (line["key_id"], line.get("word")) == (want["key_id"], want.get("word"))
        assert [e["label"] for e in line["top_k"]] == [e["label"] for e in want["top_k"]]
        got = [e["probability"] for e in line["top_k"]]
        assert got == pytest.approx([e["probability"] for e in want["top_k"]], abs=1e-5)
    return True
