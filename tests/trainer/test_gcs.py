"""The trainer and `trainer.predict` on gs:// paths, through TensorFlow's own GCS filesystem,
against the GCS emulator (`tests/support/tensorflow_gcs.py` routes TensorFlow to it): records,
classes and drawings read from the bucket; checkpoints, metrics, logs and the export written to
it, and read back to resume and to classify. Outside Vertex AI's `/gcs` mount, this is how a
laptop or a plain VM trains on the bucket that `make dataflow` filled."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from quickdraw import schema
from tests.support.gcs_emulator import GcsEmulator
from tests.support.tensorflow_gcs import GOOGLE_APIS, GoogleApisRelay
from tests.support.trainer_fixtures import (
    REPO,
    SIMPLIFIED,
    TINY_FLAGS,
    trainer_env,
    write_tfrecords,
)

pytestmark = pytest.mark.slow

BUCKET = "quickdraw"
REPORT_FILES = ("index.html", "curves.png", "per_class.png", "confusion.png", "misclassified.png")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """The emulator holding the records under data/, and the relay to it."""
    records = write_tfrecords(tmp_path_factory.mktemp("records"), train=16, eval_=4)
    directory = tmp_path_factory.mktemp("gcs")
    with GcsEmulator(log_path=directory / "emulator.log") as emulator:
        emulator.create_bucket(BUCKET)
        for path in sorted(records.iterdir()):
            emulator.upload_file(BUCKET, f"data/{path.name}", path)
        with GoogleApisRelay(emulator, directory) as relay:
            yield emulator, relay


def run(module: str, args: list[str], relay: GoogleApisRelay, timeout=400):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=trainer_env(**relay.environment()),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def gs_flags(**paths) -> list[str]:
    """The trainer's data and model flags on the bucket, `paths` replacing any of them."""
    flags = {
        "training_data": f"gs://{BUCKET}/data/training.tfrecord-*",
        "eval_data": f"gs://{BUCKET}/data/eval.tfrecord-*",
        "classes_file": f"gs://{BUCKET}/data/{schema.classes_file_name('train')}",
        "model_dir": f"gs://{BUCKET}/model",
        **paths,
    }
    return [f"--{name}={value}" for name, value in flags.items()]


def test_train_resume_and_predict_on_gs_paths(bucket):
    emulator, relay = bucket
    flags = [*gs_flags(), *TINY_FLAGS, "--checkpoint_every=2", "--eval_every=0", "--log_every=2"]
    first = run("trainer", [*flags, "--steps=4"], relay)
    assert first.returncode == 0, first.stderr[-3000:]
    names = emulator.list_names(BUCKET, "model/")
    for name in (
        "model/config.json",
        "model/metrics.json",
        "model/checkpoints/ckpt-4.index",
        "model/export/saved_model.pb",
        "model/export/classes.txt",
    ):
        assert name in names, names
    assert any(name.startswith("model/logs/") and "tfevents" in name for name in names), names
    metrics = json.loads(emulator.download(BUCKET, "model/metrics.json"))
    assert metrics["step"] == 4 and metrics["examples"] == 6 * 4
    # Its progress lines say how long the rest will take.
    assert re.search(r"step 2/4: loss [\d.]+, .* learning rate [\d.e-]+, \d+s left", first.stderr)

    # Started again with more steps, it reads its checkpoint back from the bucket.
    second = run("trainer", [*flags, "--steps=6"], relay)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from step 4 (gs://{BUCKET}/model/checkpoints/ckpt-4)" in second.stderr
    assert json.loads(emulator.download(BUCKET, "model/metrics.json"))["step"] == 6

    # The report, which the run wrote to the bucket, rebuilt there by trainer.report: its
    # curves and wall time span both starts of the run.
    for name in REPORT_FILES:
        assert f"model/report/{name}" in emulator.list_names(BUCKET, "model/report/"), name
    bucket_client = emulator.client().bucket(BUCKET)
    for name in REPORT_FILES:
        bucket_client.blob(f"model/report/{name}").delete()
    rebuilt = run("trainer.report", ["--model_dir", f"gs://{BUCKET}/model"], relay, timeout=200)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert rebuilt.stdout.strip() == f"gs://{BUCKET}/model/report/index.html"
    page = emulator.download(BUCKET, "model/report/index.html").decode()
    assert "over 2 starts" in page
    for name in REPORT_FILES[1:]:
        assert f'src="{name}"' in page
        assert emulator.download(BUCKET, f"model/report/{name}")[:8] == b"\x89PNG\r\n\x1a\n"

    # trainer.predict: the export and the drawings, both from the bucket.
    with open(SIMPLIFIED / "hat.ndjson", "rb") as file:
        lines = [next(file) for _ in range(3)]
    emulator.upload_bytes(BUCKET, "drawings/hat.ndjson", b"".join(lines))
    predict = ["--model_dir", f"gs://{BUCKET}/model", f"gs://{BUCKET}/drawings/hat.ndjson"]
    predicted = run("trainer.predict", predict, relay, timeout=200)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    outputs = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [output.get("key_id") for output in outputs[:3]] == [
        json.loads(line)["key_id"] for line in lines
    ]
    assert outputs[-1]["summary"]["drawings"] == 3

    # Every byte came through TensorFlow's GCS client: both of its hosts were asked.
    hosts = {request.split(" ", 1)[1].split("/", 1)[0] for request in relay.requests}
    assert hosts == set(GOOGLE_APIS), hosts


@pytest.mark.parametrize(
    "flag, message",
    [
        ("training_data", "bucket gs://no-such-bucket does not exist"),
        ("classes_file", "bucket gs://no-such-bucket does not exist"),
        # TensorFlow's own makedirs loops for ever on a missing bucket: checked first.
        ("model_dir", "cannot create --model_dir gs://no-such-bucket/x: bucket gs://no-such-"),
    ],
)
def test_a_missing_bucket_exits_2_with_one_line(bucket, flag, message):
    _, relay = bucket
    flags = [*gs_flags(**{flag: "gs://no-such-bucket/x"}), *TINY_FLAGS, "--steps=2"]
    result = run("trainer", flags, relay, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("python -m trainer: error: ") and message in error, error
