"""`python -m trainer.deploy`: the Vertex AI model and deployment it builds, checked offline.

As for `trainer.submit` (tests/trainer/test_submit.py, whose network guard this reuses), the command
runs as a subprocess that cannot reach any network; a dry run's JSON is parsed back into the
aiplatform_v1 types and checked field by field, and a bad flag stops with one line and status
2 before any call. One real deployment attempt shows that the guard catches it.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from google.cloud import aiplatform_v1

from tests.support.offline import BLOCKED, run_offline
from trainer import deploy

IMAGE = "europe-west4-docker.pkg.dev/my-project/quickdraw/server:v3"
MODEL_DIR = "gs://my-bucket/runs/20250101-120000/model"
REQUIRED = ["--project", "my-project", "--region", "europe-west4", "--image", IMAGE]
REQUIRED += ["--model_dir", MODEL_DIR]


def run_deploy(args: list[str], env: dict[str, str]):
    result = run_offline([sys.executable, "-m", "trainer.deploy", *args], env)
    assert "NETWORK CALL BLOCKED" not in result.stderr, result.stderr
    return result


def test_dry_run_prints_the_model_the_endpoint_and_the_deployment(offline_env):
    options = ["--endpoint", "sketches", "--machine_type", "n1-standard-4"]
    options += ["--min_replicas", "2", "--max_replicas", "5", "--signature", "serving_default"]
    result = run_deploy([*REQUIRED, *options, "--dry_run"], offline_env)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert sorted(printed) == ["deployedModel", "endpoint", "model"]

    model = aiplatform_v1.Model.from_json(json.dumps(printed["model"]))
    assert model.display_name == "quickdraw-classifier"
    assert model.artifact_uri == MODEL_DIR + "/export"  # the SavedModel's own folder
    container = model.container_spec
    assert container.image_uri == IMAGE
    assert not container.command  # the image's ENTRYPOINT, python -m trainer.serve, runs
    assert list(container.args) == ["--signature", "serving_default"]
    assert [port.container_port for port in container.ports] == [8080]
    assert (container.predict_route, container.health_route) == ("/predict", "/health")

    endpoint = aiplatform_v1.Endpoint.from_json(json.dumps(printed["endpoint"]))
    assert endpoint.display_name == "sketches"

    deployed = aiplatform_v1.DeployedModel.from_json(json.dumps(printed["deployedModel"]))
    resources = deployed.dedicated_resources
    assert resources.machine_spec.machine_type == "n1-standard-4"
    assert (resources.min_replica_count, resources.max_replica_count) == (2, 5)
    # The REST API's own spelling, as `gcloud ai` and curl take it.
    assert printed["model"]["containerSpec"]["predictRoute"] == "/predict"


def test_dry_run_defaults_and_an_export_folder_given_directly(offline_env):
    args = [*REQUIRED[:-1], MODEL_DIR + "/export/", "--dry_run"]
    result = run_deploy(args, offline_env)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    model = aiplatform_v1.Model.from_json(json.dumps(printed["model"]))
    assert model.artifact_uri == MODEL_DIR + "/export"
    assert list(model.container_spec.args) == []  # single_view: the server's default
    deployed = aiplatform_v1.DeployedModel.from_json(json.dumps(printed["deployedModel"]))
    assert deployed.dedicated_resources.machine_spec.machine_type == "n1-standard-2"
    assert deployed.dedicated_resources.min_replica_count == 1
    assert deployed.dedicated_resources.max_replica_count == 2
    assert printed["endpoint"] == {"displayName": "quickdraw"}


def test_the_guard_stops_a_real_deployment(offline_env):
    """Without --dry_run the command reaches for the network, and the guard ends it: so a dry
    run that exits 0 under the same guard made no call."""
    result = run_offline([sys.executable, "-m", "trainer.deploy", *REQUIRED], offline_env)
    assert result.returncode == BLOCKED, result.stderr
    assert "NETWORK CALL BLOCKED" in result.stderr


def _with(flag: str, value: str) -> list[str]:
    index = REQUIRED.index(flag)
    return REQUIRED[: index + 1] + [value] + REQUIRED[index + 2 :]


BAD_FLAGS = {
    "no project": (REQUIRED[2:], "--project"),
    "not a region": (_with("--region", "Europe West"), "--region"),
    "local model dir": (_with("--model_dir", "model"), "gs://"),
    "no replicas": (REQUIRED + ["--min_replicas", "0"], "--min_replicas"),
    "fewer max than min": (
        REQUIRED + ["--min_replicas", "3", "--max_replicas", "2"],
        "--max_replicas (2)",
    ),
    "replicas not a number": (REQUIRED + ["--max_replicas", "two"], "--max_replicas"),
    "unknown signature": (REQUIRED + ["--signature", "eight_views"], "--signature"),
    "empty endpoint": (REQUIRED + ["--endpoint", " "], "--endpoint"),
    "misspelled flag": (REQUIRED + ["--machine-type", "n1-standard-2"], "--machine-type"),
}


@pytest.mark.parametrize("args, mentions", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flags_stop_with_one_line_before_any_call(args, mentions, capsys):
    with pytest.raises(SystemExit) as exit_info:
        deploy.main(args)  # no --dry_run: a flag that slipped through would go on to deploy
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m trainer.deploy: error: "), lines
    assert mentions in lines[0]
    assert captured.out == ""


def test_make_deploy_passes_the_model_and_image(offline_env):
    """`make deploy MODEL_DIR=gs://... DEPLOY_ARGS=--dry_run`: the Makefile's command line."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    result = run_offline(
        ["make", "--silent", "--no-print-directory", "deploy", f"PY={sys.executable}"]
        + ["PROJECT=my-project", "REGION=europe-west4"]
        + ["MODEL_DIR=gs://my-bucket/runs/1/model", "DEPLOY_ARGS=--dry_run"],
        offline_env,
    )
    assert "NETWORK CALL BLOCKED" not in result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    model = aiplatform_v1.Model.from_json(json.dumps(json.loads(result.stdout)["model"]))
    assert model.container_spec.image_uri == (
        "europe-west4-docker.pkg.dev/my-project/quickdraw/server:latest"
    )
    assert model.artifact_uri == "gs://my-bucket/runs/1/model/export"
