"""The serving container's command started as Vertex AI starts it: no `--model_dir`, the model
read from AIP_STORAGE_URI (a gs:// folder, here in the GCS emulator, through TensorFlow's own
GCS client and `tests/support/tensorflow_gcs.py`'s relay), the port from AIP_HTTP_PORT, and the
health and predict routes Vertex AI names in AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE, with the
container args `trainer.deploy` gives for `--signature serving_default`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import shared_quickdraw_or_skip
from tests.support.dockerfiles import container_command, parse_dockerfile
from tests.support.gcs_emulator import GcsEmulator
from tests.support.serving_fixtures import (
    CLASSES,
    Server,
    classifier_probabilities,
    export_tiny_model,
    predict,
    real_drawings,
    request,
)
from tests.support.tensorflow_gcs import GoogleApisRelay
from tests.support.trainer_fixtures import REPO, free_ports, trainer_env
from trainer import deploy

pytestmark = pytest.mark.slow

BUCKET = "quickdraw"
ENDPOINT_ROUTE = "/v1/endpoints/123/deployedModels/456"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny export locally, and the same files in the emulator under runs/1/model/export."""
    shared_quickdraw_or_skip()
    root = tmp_path_factory.mktemp("vertex")
    export_dir = export_tiny_model(root / "model" / "export")
    with GcsEmulator(log_path=root / "emulator.log") as emulator:
        emulator.create_bucket(BUCKET)
        for path in sorted(p for p in export_dir.rglob("*") if p.is_file()):
            name = f"runs/1/model/export/{path.relative_to(export_dir).as_posix()}"
            emulator.upload_file(BUCKET, name, path)
        with GoogleApisRelay(emulator, root) as relay:
            yield export_dir, relay, root


def container_argv() -> list[str]:
    """The serving image's ENTRYPOINT, run with this Python, listening on loopback only."""
    command = container_command(parse_dockerfile((REPO / "serve.Dockerfile").read_text()))
    assert command[:3] == ["python", "-m", "trainer.serve"], command
    return [sys.executable, *command[1:], "--host", "127.0.0.1"]


def vertex_env(relay, port: int, storage_uri: str) -> dict:
    return {
        **relay.environment(),
        "AIP_STORAGE_URI": storage_uri,
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": ENDPOINT_ROUTE,
        "AIP_PREDICT_ROUTE": f"{ENDPOINT_ROUTE}:predict",
    }


def test_the_container_serves_the_model_from_aip_storage_uri(model):
    export_dir, relay, root = model
    config = deploy.DeployConfig(
        project="p",
        region="us-central1",
        image="image",
        model_dir=f"gs://{BUCKET}/runs/1/model",
        signature="serving_default",
    )
    container = deploy.build_model(config).container_spec
    (port,) = free_ports(1)
    env = vertex_env(relay, port, config.artifact_uri)
    drawings = [line["drawing"] for line in real_drawings(shared_quickdraw_or_skip(), "raw", 50)]
    drawings = drawings[::7]
    body = {"instances": [{"drawing": drawing} for drawing in drawings]}
    with Server(list(container.args), root / "server.log", env, port, container_argv()) as server:
        status, _, health = request(port, "GET", ENDPOINT_ROUTE)
        assert status == 200 and json.loads(health)["status"] == "ok"
        status, answer = predict(port, body, path=f"{ENDPOINT_ROUTE}:predict")
        assert status == 200, answer
        assert predict(port, body)[1] == answer  # /predict is the same route
        assert f"loaded gs://{BUCKET}/runs/1/model/export (serving_default" in server.log()

    assert any(f"/{BUCKET}/" in line for line in relay.requests), relay.requests[:5]
    expected = classifier_probabilities(export_dir, drawings, "serving_default")
    single = classifier_probabilities(export_dir, drawings, "single_view")
    assert np.abs(expected - single).max() > 1e-4  # the signature flag made a difference
    for prediction, probabilities in zip(answer["predictions"], expected):
        order = np.argsort(-probabilities, kind="stable")[:3]
        assert prediction["labels"] == [CLASSES[index] for index in order]
        np.testing.assert_allclose(prediction["probabilities"], probabilities[order], atol=1e-5)


def test_a_storage_uri_without_a_model_exits_2(model):
    _, relay, _ = model
    for uri in (f"gs://{BUCKET}/runs/2/model", "gs://no-such-bucket/model"):
        result = subprocess.run(
            container_argv(),
            cwd=REPO,
            env=trainer_env(**vertex_env(relay, 1, uri)),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 2, result.stderr[-3000:]
        (line,) = [line for line in result.stderr.splitlines() if "trainer.serve: " in line]
        assert line.startswith("python -m trainer.serve: error: ") and uri in line, line
