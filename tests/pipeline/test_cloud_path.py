"""The newcomer's path with the public bucket, against a real Cloud Storage server on
127.0.0.1 (gcp-storage-emulator, `tests/support/gcs_emulator.py`): `make predict` with a gs://
INPUT, its sample read in small ranged reads, the pipeline's reads sized to its quotas, and the
Flex template's spec staged to gs://. A guard refuses and records every connection outside
loopback, here and in each subprocess.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline import flex_template, inputs
from pipeline.config import PipelineConfig
from tests.conftest import REPO, shared_quickdraw_or_skip
from tests.support.gcs_emulator import (
    GUARD_LOG_VARIABLE,
    PROJECT,
    guarded_emulator,
    write_network_guard,
)
from tests.support.trainer_fixtures import trainer_env

BUCKET = "quickdraw_dataset"
PREFIX = "full/simplified"
# 25, 25 and 150 drawings, and one file of ~8 MB (eye's 5,026 drawings, three times over),
# larger than a quota-sized read and smaller than Beam's 16 MiB one.
CATEGORIES = ("The Eiffel Tower", "cat", "hot dog")
LARGE = "eye"
MIB = 1 << 20


class CountingRelay:
    """A TCP relay on 127.0.0.1 in front of the emulator that counts the bytes it returns:
    what a client downloaded, headers included."""

    def __init__(self, port: int):
        self._target = ("127.0.0.1", port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._lock = threading.Lock()
        self.bytes_returned = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source, destination, count):
        try:
            while data := source.recv(1 << 16):
                if count:
                    with self._lock:
                        self.bytes_returned += len(data)
                destination.sendall(data)
        except OSError:
            pass  # the other direction ended first and closed both sockets
        finally:
            source.close()
            destination.close()

    def close(self):
        self._server.close()

    def client(self):
        """A `storage.Client` of the emulator through this relay: an object it uploads has
        its download link (`mediaLink`) on the relay, so that reads of it are counted."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The emulator, holding a few of the public bucket's files under their own names."""
    simplified = shared_quickdraw_or_skip() / "simplified"
    with guarded_emulator(tmp_path_factory.mktemp("gcs"), BUCKET) as (emulator, guard):
        for name in CATEGORIES:
            path = simplified / f"{name}.ndjson"
            emulator.upload_file(BUCKET, f"{PREFIX}/{name}.ndjson", path)
        relay = CountingRelay(emulator.port)
        large = (simplified / f"{LARGE}.ndjson").read_bytes() * 3
        relay.client().bucket(BUCKET).blob(f"{PREFIX}/{LARGE}.ndjson").upload_from_string(large)
        yield emulator, guard, relay
        relay.close()


@pytest.fixture(autouse=True)
def _no_network_call_outside_loopback(gcs):
    yield
    assert gcs[1].attempts == [], f"network calls outside 127.0.0.1: {gcs[1].attempts}"


def _guarded(environment: dict, directory: Path) -> Path:
    """Makes a subprocess with `environment` refuse every connection outside loopback;
    returns the file that then lists them."""
    guard = write_network_guard(directory / "guard")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(guard), REPO.as_posix()]))
    environment[GUARD_LOG_VARIABLE] = str(directory / "network_calls.log")
    return directory / "network_calls.log"


def _run(command: list[str], directory: Path, **variables) -> subprocess.CompletedProcess:
    environment = {**trainer_env(), **variables}
    network_log = _guarded(environment, directory)
    completed = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env=environment, timeout=600
    )
    assert not network_log.exists(), f"network calls: {network_log.read_text()}"
    return completed


def _sample(directory: Path, classes: list[str], train: int, eval_: int, **variables):
    (directory / "classes").write_text("\n".join(classes) + "\n")
    output = directory / "sample.ndjson"
    completed = _run(
        [sys.executable, "-m", "pipeline.sample",
         "--input", f"gs://{BUCKET}/{PREFIX}/*.ndjson",
         "--classes_file", str(directory / "classes"),
         "--train_per_class", str(train), "--eval_per_class", str(eval_),
         "--output", str(output)],
        directory, **variables,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return output.read_bytes().splitlines(keepends=True), completed.stderr


def test_the_sample_is_the_drawings_right_after_the_quotas(tmp_path):
    simplified = shared_quickdraw_or_skip() / "simplified"
    lines, log = _sample(tmp_path, ["cat", "hot dog", "The Eiffel Tower", "zigzag"], 20, 10)

    def file_lines(name):
        return (simplified / f"{name}.ndjson").read_bytes().splitlines(keepends=True)

    # hot dog has 150 drawings: the two after the first 30. cat and The Eiffel Tower end at
    # 25, before the quotas: their last two, eval drawings training never saw.
    assert lines == (
        file_lines("cat")[23:25] + file_lines("hot dog")[30:32]
        + file_lines("The Eiffel Tower")[23:25]
    )  # fmt: skip
    assert "no file named after them in --input, so no sample: zigzag" in log
    assert "6 drawings of 3 classes that training never saw (4 of them eval drawings" in log


def test_reads_from_gcs_take_about_what_the_quotas_need(gcs, tmp_path):
    """make all's quotas (120 + 30) from a file of ~8 MB: about 1 MiB downloaded, where Beam's
    own 16 MiB reads would download the whole file."""
    emulator, _, relay = gcs
    size = len(emulator.download(BUCKET, f"{PREFIX}/{LARGE}.ndjson"))
    assert size > 7 * MIB
    config = PipelineConfig(output_dir="out", train_per_class=120, eval_per_class=30)
    assert inputs.gcs_read_buffer_bytes(config) == MIB
    hash_split = PipelineConfig(output_dir="out", split="hash")
    assert inputs.gcs_read_buffer_bytes(hash_split) is None  # every line is read anyway
    assert inputs.read_buffer_for(11_000) == 11_000 * 1024  # the tutorial's quotas
    assert inputs.read_buffer_for(10**6) == 16 * MIB

    downloaded = {}
    cases = {
        "pipeline": [],
        "pipeline, Beam's buffer": [f"--gcs_read_buffer_size_bytes={16 * MIB}"],
    }
    for case, extra in cases.items():
        before = relay.bytes_returned
        completed = _run(
            [sys.executable, "-m", "pipeline", "--input", f"gs://{BUCKET}/{PREFIX}/*.ndjson",
             "--output_dir", str(tmp_path / case), "--categories", LARGE,
             "--train_per_class", "120", "--eval_per_class", "30", *extra],
            tmp_path, STORAGE_EMULATOR_HOST=relay.endpoint,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert "written: 120 training and 30 eval drawings" in completed.stderr
        downloaded[case] = relay.bytes_returned - before
    before = relay.bytes_returned
    lines, _ = _sample(tmp_path, [LARGE], 120, 30, STORAGE_EMULATOR_HOST=relay.endpoint)
    assert len(lines) == 2
    downloaded["sample"] = relay.bytes_returned - before
    assert downloaded["pipeline"] < 1.2 * MIB, downloaded
    assert downloaded["sample"] < 1.2 * MIB, downloaded
    assert downloaded["pipeline, Beam's buffer"] > size, downloaded


def test_make_predict_samples_a_gcs_input(all_classes_run, tmp_path):
    """`make all`'s last step with the default INPUT, the public bucket (here its stand-in):
    the 345-class model classifies the drawings after the quotas of each class that has a
    file; the other classes are named in a warning."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    completed = _run(
        ["make", "--no-print-directory", "predict", f"INPUT=gs://{BUCKET}/{PREFIX}/*.ndjson",
         f"DATA_DIR={data_dir}", f"MODEL_DIR={all_classes_run.model_dir}",
         "TRAIN_PER_CLASS=20", "EVAL_PER_CLASS=5", f"VENV={sys.prefix}"],
        tmp_path, STORAGE_EMULATOR_HOST=os.environ["STORAGE_EMULATOR_HOST"],
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    sample = (data_dir / "predict_sample.ndjson").read_text().splitlines()
    words = [json.loads(line)["word"] for line in sample]
    assert words == ["The Eiffel Tower"] * 2 + ["cat"] * 2 + ["eye"] * 2 + ["hot dog"] * 2
    summary = json.loads(completed.stdout.strip().splitlines()[-1])["summary"]
    assert summary["drawings"] == 8
    assert "341 class(es) have no file named after them" in completed.stderr


def test_the_flex_template_spec_is_staged_to_gcs(gcs):
    emulator, _, _ = gcs
    image = "us-central1-docker.pkg.dev/my-project/quickdraw/pipeline-launcher:v1"
    template = f"gs://{BUCKET}/templates/quickdraw-tfrecords.json"
    assert flex_template.main(["--image", image, "--template_file", template]) == 0
    spec = json.loads(emulator.download(BUCKET, "templates/quickdraw-tfrecords.json"))
    assert spec["image"] == image
    assert spec == json.loads(json.dumps(flex_template.template_spec(image)))
