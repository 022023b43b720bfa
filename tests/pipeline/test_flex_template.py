"""The pipeline's Dataflow Flex template, checked offline: the launcher's Dockerfile (hadolint,
and what it installs and runs), the spec with one parameter per pipeline flag, and the
launcher's command, run here the way Dataflow's launcher runs it, on real drawings."""

from __future__ import annotations

import json
import posixpath
import subprocess
import sys

import pytest
from dockerfile_parse import DockerfileParser
from google.cloud import dataflow_v1beta3

from pipeline import flex_template, run
from pipeline.config import build_parser
from tests.conftest import REPO, shared_quickdraw_or_skip
from tests.support.dockerfiles import hadolint, parse_dockerfile

DOCKERFILE = REPO / "Dockerfile.flex"
LAUNCHER_BASE = "gcr.io/dataflow-templates-base/python311-template-launcher-base"
IMAGE = "us-central1-docker.pkg.dev/my-project/quickdraw/pipeline-launcher:v1"
# The pipeline's flags as docs/pipeline.md documents them: a parameter lost on the way fails here.
FLAGS = [
    "input", "output_dir", "categories", "categories_file", "split", "train_per_class",
    "eval_per_class", "eval_fraction", "num_shards", "seed", "recognized_only", "max_points",
    "ink_format", "overwrite", "progress_every", "log_level",
]  # fmt: skip


def test_hadolint_finds_nothing_in_the_launcher():
    findings = hadolint(DOCKERFILE)
    assert findings == [], [f"{f['line']} {f['code']} {f['message']}" for f in findings]


def _container_path_to_repo(dockerfile: DockerfileParser, path: str):
    """The file of this repository that a path in the image comes from (via WORKDIR and
    COPY), or None."""
    workdir = "/"
    for item in dockerfile.structure:
        if item["instruction"] == "WORKDIR":
            workdir = posixpath.join(workdir, item["value"])
        if item["instruction"] == "COPY":
            *sources, destination = item["value"].split()
            destination = posixpath.normpath(posixpath.join(workdir, destination))
            for source in sources:
                if source.endswith("/"):  # a folder copied into `destination`
                    prefix = destination + "/"
                    if path.startswith(prefix):
                        return REPO / source / path[len(prefix) :]
                elif path == posixpath.join(destination, posixpath.basename(source)):
                    return REPO / source
    return None


def test_the_launcher_runs_this_package_from_googles_base_image():
    dockerfile = parse_dockerfile(DOCKERFILE.read_text())
    image, _, tag = dockerfile.baseimage.partition(":")
    assert image == LAUNCHER_BASE
    assert tag and tag != "latest"
    # The files the launcher runs and installs come from this repository.
    # The variable the pipeline reads to return once the job is submitted, not wait for it.
    assert run.FLEX_LAUNCHER_VARIABLE == "FLEX_TEMPLATE_PYTHON_PY_FILE"
    py_file = _container_path_to_repo(dockerfile, dockerfile.envs["FLEX_TEMPLATE_PYTHON_PY_FILE"])
    assert py_file == REPO / "pipeline" / "__main__.py" and py_file.exists()
    setup_file = dockerfile.envs["FLEX_TEMPLATE_PYTHON_SETUP_FILE"]
    assert _container_path_to_repo(dockerfile, setup_file) == REPO / "setup.py"
    runs = [item["value"] for item in dockerfile.structure if item["instruction"] == "RUN"]
    assert any("pip install" in run and "[pipeline]" in run for run in runs), runs


def test_the_spec_has_one_parameter_per_pipeline_flag(tmp_path):
    spec_path = tmp_path / "quickdraw-tfrecords.json"
    assert flex_template.main(["--image", IMAGE, "--template_file", str(spec_path)]) == 0
    text = spec_path.read_text()
    # Dataflow's own message type reads it, refusing any field it does not know.
    spec = dataflow_v1beta3.ContainerSpec.from_json(text)
    assert spec.image == IMAGE
    assert spec.sdk_info.language == dataflow_v1beta3.SDKInfo.Language.PYTHON
    parameters = {parameter.name: parameter for parameter in spec.metadata.parameters}
    actions = [a for a in build_parser()._actions if a.option_strings and a.dest != "help"]
    assert [parameter.name for parameter in spec.metadata.parameters] == FLAGS
    assert [action.option_strings for action in actions] == [[f"--{name}"] for name in FLAGS]
    for action in actions:
        parameter = parameters[action.dest]
        assert parameter.is_optional == (not action.required), action.dest
        assert parameter.help_text, action.dest
    assert not parameters["output_dir"].is_optional
    assert "gs://quickdraw_dataset/full/simplified/*.ndjson" in parameters["input"].help_text
    assert list(parameters["split"].regexes) == ["^(first|hash)$"]
    assert list(parameters["overwrite"].regexes) == ["^(true|false)$"]
    assert json.loads(text)["metadata"]["name"] == flex_template.NAME


def test_a_bad_image_name_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        flex_template.main(["--image", "my image", "--template_file", str(tmp_path / "t.json")])
    assert exit_info.value.code == 2
    assert "--image 'my image' is not an image name" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_the_launchers_command_converts_drawings(tmp_path):
    """What Dataflow's launcher runs, `python FLEX_TEMPLATE_PYTHON_PY_FILE --name=value ...`
    with every parameter in that form (booleans too), here on the local runner."""
    simplified = shared_quickdraw_or_skip() / "simplified"
    parameters = {
        "input": f"{simplified}/*.ndjson",
        "output_dir": str(tmp_path / "out"),
        "categories": "cat,hot dog",
        "split": "first",
        "train_per_class": "12",
        "eval_per_class": "4",
        "num_shards": "2",
        "seed": "3",
        "recognized_only": "false",
        "overwrite": "true",
    }
    command = [sys.executable, str(REPO / "pipeline" / "__main__.py")]
    command += [f"--{name}={value}" for name, value in parameters.items()]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["written"] == {"train": 24, "eval": 8}
    assert stats["options"]["seed"] == 3 and stats["options"]["overwrite"] is True
    assert sorted(path.name for path in (tmp_path / "out").glob("*.tfrecord-*")) == [
        "eval.tfrecord-00000-of-00002",
        "eval.tfrecord-00001-of-00002",
        "training.tfrecord-00000-of-00002",
        "training.tfrecord-00001-of-00002",
    ]
