"""`python -m trainer.submit`: the Vertex AI jobs it builds, checked offline.

The command runs as a subprocess with networking made impossible twice over: in a network
namespace with no interface up (`unshare -n`) where the system allows one, and inside Python,
where a `sitecustomize` on PYTHONPATH replaces socket connections, name resolution and gRPC
channels with an exit of status 99. A dry run's JSON is parsed back into the aiplatform_v1
types and checked field by field; every bad flag must stop with status 2 and one line before
any call. One test submits for real to show that the guard catches the attempt.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from google.cloud import aiplatform_v1

from tests.support.offline import BLOCKED, run_offline
from trainer import submit

REPO = Path(__file__).resolve().parents[2]

IMAGE = "europe-west4-docker.pkg.dev/my-project/quickdraw/trainer:v3"
OUTPUT_DIR = "gs://my-bucket/runs/20250101-120000"
# What `make submit` passes, plus a flag in `--name=value` form: all must arrive unchanged.
TRAINER_ARGS = [
    "--training_data",
    "/gcs/my-bucket/data/training.tfrecord-?????-of-?????",
    "--eval_data",
    "/gcs/my-bucket/data/eval.tfrecord-?????-of-?????",
    "--classes_file",
    "/gcs/my-bucket/data/training.tfrecord.classes",
    "--steps=200000",
    "--batch_size",
    "64",
]
REQUIRED = ["--project", "my-project", "--region", "europe-west4", "--image", IMAGE]
REQUIRED += ["--output_dir", OUTPUT_DIR]


def run_submit(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = run_offline([sys.executable, "-m", "trainer.submit", *args], env)
    assert "NETWORK CALL BLOCKED" not in result.stderr, result.stderr
    return result


# --- Dry runs -------------------------------------------------------------------------------


def test_dry_run_prints_a_multi_worker_gpu_job(offline_env):
    options = ["--machine_type", "n1-standard-16", "--accelerator_type", "NVIDIA_TESLA_V100"]
    options += ["--accelerator_count", "2", "--workers", "3"]
    options += ["--service_account", "trainer@my-project.iam.gserviceaccount.com"]
    options += ["--tensorboard", "projects/my-project/locations/europe-west4/tensorboards/42"]
    result = run_submit([*REQUIRED, *options, "--dry_run", "--", *TRAINER_ARGS], offline_env)
    assert result.returncode == 0, result.stderr

    job = aiplatform_v1.CustomJob.from_json(result.stdout)
    assert job.display_name == "quickdraw-trainer-20250101-120000"
    spec = job.job_spec
    chief, workers = spec.worker_pool_specs  # exactly two pools
    assert chief.replica_count == 1
    assert workers.replica_count == 3
    for pool in (chief, workers):
        assert pool.container_spec.image_uri == IMAGE
        assert list(pool.container_spec.args) == TRAINER_ARGS
        assert not pool.container_spec.command  # the image's ENTRYPOINT runs
        assert pool.machine_spec.machine_type == "n1-standard-16"
        assert pool.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_TESLA_V100
        assert pool.machine_spec.accelerator_count == 2
    assert spec.base_output_directory.output_uri_prefix == OUTPUT_DIR
    assert spec.service_account == "trainer@my-project.iam.gserviceaccount.com"
    assert spec.tensorboard == "projects/my-project/locations/europe-west4/tensorboards/42"
    # A worker restarted alone could not rejoin the others' collectives.
    assert spec.scheduling.restart_job_on_worker_restart is True
    # Enums by name, as the REST API takes them.
    raw = json.loads(result.stdout)
    assert raw["jobSpec"]["workerPoolSpecs"][1]["machineSpec"]["acceleratorType"] == (
        "NVIDIA_TESLA_V100"
    )


def test_dry_run_prints_a_hyperparameter_tuning_job(offline_env):
    options = ["--hyperparameter_tuning", "--max_trials", "20", "--parallel_trials", "4"]
    options += ["--workers", "1", "--display_name", "quickdraw-study"]
    result = run_submit([*REQUIRED, *options, "--dry_run", "--", *TRAINER_ARGS], offline_env)
    assert result.returncode == 0, result.stderr

    job = aiplatform_v1.HyperparameterTuningJob.from_json(result.stdout)
    assert job.display_name == "quickdraw-study"
    assert (job.max_trial_count, job.parallel_trial_count) == (20, 4)
    (metric,) = job.study_spec.metrics
    assert metric.metric_id == "top1_accuracy"
    assert metric.goal == aiplatform_v1.StudySpec.MetricSpec.GoalType.MAXIMIZE
    parameters = {parameter.parameter_id: parameter for parameter in job.study_spec.parameters}
    assert sorted(parameters) == ["dropout", "learning_rate", "num_nodes"]
    scale = aiplatform_v1.StudySpec.ParameterSpec.ScaleType
    learning_rate = parameters["learning_rate"]
    assert learning_rate.scale_type == scale.UNIT_LOG_SCALE
    assert (
        learning_rate.double_value_spec.min_value,
        learning_rate.double_value_spec.max_value,
    ) == (
        1e-4,
        1e-2,
    )
    assert list(parameters["num_nodes"].discrete_value_spec.values) == [64, 128, 256]
    dropout = parameters["dropout"]
    assert dropout.scale_type == scale.UNIT_LINEAR_SCALE
    assert (dropout.double_value_spec.min_value, dropout.double_value_spec.max_value) == (0, 0.5)
    trial = job.trial_job_spec
    assert [pool.replica_count for pool in trial.worker_pool_specs] == [1, 1]
    assert all(list(pool.container_spec.args) == TRAINER_ARGS for pool in trial.worker_pool_specs)
    assert trial.base_output_directory.output_uri_prefix == OUTPUT_DIR
    raw = json.loads(result.stdout)
    assert raw["studySpec"]["metrics"][0]["goal"] == "MAXIMIZE"
    assert raw["studySpec"]["parameters"][0]["scaleType"] == "UNIT_LOG_SCALE"


def test_make_submit_passes_the_data_and_trainer_flags(offline_env):
    """`make submit` with SUBMIT_ARGS=--dry_run: the Makefile's command line, end to end."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    result = run_offline(
        [
            "make",
            "--silent",
            "--no-print-directory",
            "submit",
            f"PY={sys.executable}",
            "PROJECT=my-project",
        ]
        + ["BUCKET=my-bucket", "REGION=europe-west4", "SUBMIT_ARGS=--dry_run"]
        + ["ARGS=--steps 5000 --preset local"],
        offline_env,
    )
    assert "NETWORK CALL BLOCKED" not in result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    job = aiplatform_v1.CustomJob.from_json(result.stdout)
    (chief,) = job.job_spec.worker_pool_specs
    assert chief.container_spec.image_uri == (
        "europe-west4-docker.pkg.dev/my-project/quickdraw/trainer:latest"
    )
    assert list(chief.container_spec.args) == [
        "--training_data",
        "/gcs/my-bucket/data/training.tfrecord-?????-of-?????",
        "--eval_data",
        "/gcs/my-bucket/data/eval.tfrecord-?????-of-?????",
        "--classes_file",
        "/gcs/my-bucket/data/training.tfrecord.classes",
        "--steps",
        "5000",
        "--preset",
        "local",
    ]
    assert job.job_spec.base_output_directory.output_uri_prefix.startswith("gs://my-bucket/runs/")


def test_the_guard_stops_a_real_submission(offline_env):
    """Without --dry_run the command reaches for the network, and the guard ends it: so a dry
    run that exits 0 under the same guard made no call."""
    result = run_offline([sys.executable, "-m", "trainer.submit", *REQUIRED], offline_env)
    assert result.returncode == BLOCKED, result.stderr
    assert "NETWORK CALL BLOCKED" in result.stderr


def vertex_trial_values(parameter) -> list[str]:
    """The values of a study parameter as Vertex AI writes them into a trial's `--name=value`:
    doubles for both kinds, so a discrete 64 arrives as "64.0"."""
    kind = type(parameter).pb(parameter).WhichOneof("parameter_value_spec")
    if kind == "double_value_spec":
        spec = parameter.double_value_spec
        return [repr(float(spec.min_value)), repr(float(spec.max_value))]
    if kind == "discrete_value_spec":
        return [repr(float(value)) for value in parameter.discrete_value_spec.values]
    raise ValueError(f"no trial values for a {kind} parameter")


def test_the_trainer_takes_every_tuned_value_as_vertex_passes_it():
    """Each tuned flag names a trainer flag, and the trainer parses every value of the search
    space in the form a trial gets it; a flag it rejected would fail every trial at once."""
    from trainer import config as trainer_config

    required = ["--training_data", "t", "--eval_data", "e", "--classes_file", "c"]
    required += ["--model_dir", "m"]
    for parameter in submit.build_study_spec().parameters:
        for value in vertex_trial_values(parameter):
            flag = f"--{parameter.parameter_id}={value}"
            try:
                parsed = trainer_config.parse_flags([*required, flag])
            except SystemExit:
                pytest.fail(f"python -m trainer rejects {flag}, as a tuning trial passes it")
            assert getattr(parsed, parameter.parameter_id) == float(value), flag


# --- Bad flags: one line, status 2, no call --------------------------------------------------


@pytest.fixture
def network_calls(monkeypatch) -> list:
    """Blocks the network inside this process and records every attempt."""
    attempts = []

    class NetworkCallAttempted(BaseException):
        """Not an Exception, so that no `except Exception` in a library can swallow it."""

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise NetworkCallAttempted(args)

    import grpc

    for owner, name in (
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
        (grpc, "secure_channel"),
        (grpc, "insecure_channel"),
    ):
        monkeypatch.setattr(owner, name, refuse)
    return attempts


def _without(args: list[str], flag: str) -> list[str]:
    index = args.index(flag)
    return args[:index] + args[index + 2 :]


def _with(args: list[str], flag: str, value: str) -> list[str]:
    index = args.index(flag)
    return args[: index + 1] + [value] + args[index + 2 :]


BAD_FLAGS = {
    "no project": (_without(REQUIRED, "--project"), "--project"),
    "empty project": (_with(REQUIRED, "--project", ""), "--project"),
    "no region": (_without(REQUIRED, "--region"), "--region"),
    "empty region": (_with(REQUIRED, "--region", " "), "--region"),
    "not a region": (_with(REQUIRED, "--region", "Europe West"), "--region"),
    "local output dir": (_with(REQUIRED, "--output_dir", "/tmp/runs/1"), "gs://"),
    "output dir without bucket": (_with(REQUIRED, "--output_dir", "gs://"), "gs://"),
    "unknown accelerator": (
        REQUIRED + ["--accelerator_type", "NVIDIA_TESLA_T5"],
        "NVIDIA_TESLA_T4",
    ),
    "TPU accelerator": (REQUIRED + ["--accelerator_type", "TPU_V3"], "--accelerator_type"),
    "negative GPU count": (REQUIRED + ["--accelerator_count", "-1"], "--accelerator_count"),
    "GPU count not a number": (REQUIRED + ["--accelerator_count", "two"], "--accelerator_count"),
    "negative workers": (REQUIRED + ["--workers", "-2"], "--workers"),
    "no trials": (REQUIRED + ["--hyperparameter_tuning", "--max_trials", "0"], "--max_trials"),
    "more parallel than trials": (
        REQUIRED + ["--hyperparameter_tuning", "--max_trials", "4", "--parallel_trials", "5"],
        "--parallel_trials",
    ),
    "tensorboard without service account": (
        REQUIRED + ["--tensorboard", "projects/p/locations/europe-west4/tensorboards/1"],
        "--service_account",
    ),
    "malformed tensorboard": (
        REQUIRED + ["--service_account", "sa@p.iam.gserviceaccount.com", "--tensorboard", "tb1"],
        "--tensorboard",
    ),
    "tuned flag among trainer flags": (
        REQUIRED + ["--hyperparameter_tuning", "--", "--learning_rate", "0.1"],
        "--learning_rate",
    ),
    "one model dir for every trial": (
        REQUIRED + ["--hyperparameter_tuning", "--", "--model_dir=gs://my-bucket/model"],
        "--model_dir",
    ),
}


@pytest.mark.parametrize("args, mentions", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flags_stop_with_one_line_before_any_call(args, mentions, network_calls, capsys):
    # No --dry_run: a flag that slipped through validation would go on to submit.
    with pytest.raises(SystemExit) as exit_info:
        submit.main(args)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m trainer.submit: error: "), lines
    assert mentions in lines[0]
    assert captured.out == ""
    assert network_calls == []


def test_a_bad_flag_exits_2_from_the_command_line(offline_env):
    args = [*REQUIRED, "--accelerator_type", "A100"]
    result = run_submit(args, offline_env)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "unknown --accelerator_type 'A100'" in line


# --- The job builders, directly ---------------------------------------------------------------


def test_a_cpu_job_on_one_machine_has_one_pool_and_no_accelerator():
    config = submit.SubmitConfig(
        project="p",
        region="us-central1",
        image="img",
        output_dir="gs://bucket/run",
        accelerator_count=0,
        machine_type="e2-standard-4",
    )
    (chief,) = submit.build_custom_job(config).job_spec.worker_pool_specs
    assert chief.replica_count == 1
    assert chief.machine_spec == aiplatform_v1.MachineSpec(machine_type="e2-standard-4")
    assert "scheduling" not in submit.build_custom_job(config).job_spec  # one worker: no need
    assert submit.build_job(config) == submit.build_custom_job(config)


def test_every_nvidia_accelerator_and_only_those_are_accepted():
    names = [accelerator.name for accelerator in aiplatform_v1.AcceleratorType]
    assert set(submit.ACCELERATOR_TYPES) == {name for name in names if name.startswith("NVIDIA_")}
    assert "NVIDIA_TESLA_T4" in submit.ACCELERATOR_TYPES


def test_console_url_names_the_region_project_and_job():
    url = submit.console_url("projects/123/locations/us-central1/customJobs/456")
    assert url == (
        "https://console.cloud.google.com/agent-platform/locations/us-central1/training/456"
        "?project=123"
    )


def test_follow_polls_until_the_job_ends(monkeypatch, caplog):
    monkeypatch.setattr(submit, "POLL_SECONDS", 0)
    state = aiplatform_v1.JobState
    name = "projects/1/locations/us-central1/customJobs/2"
    states = [state.JOB_STATE_PENDING, state.JOB_STATE_RUNNING, state.JOB_STATE_RUNNING]
    states += [state.JOB_STATE_FAILED, state.JOB_STATE_SUCCEEDED]
    polled = []

    def get_job(name):
        polled.append(name)
        return aiplatform_v1.CustomJob(name=name, state=states[len(polled)])

    caplog.set_level("INFO")
    start = aiplatform_v1.CustomJob(name=name, state=states[0])
    final = submit.follow(get_job, start)
    assert final.state == state.JOB_STATE_FAILED
    assert polled == [name] * 3  # stops at the first final state
    logged = [record.getMessage().split(": ")[1] for record in caplog.records]
    assert logged == ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_FAILED"]
