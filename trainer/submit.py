"""Submits the trainer's container to Vertex AI custom training, or prints the job it would submit.

    python -m trainer.submit --project P --region R --image IMAGE --output_dir gs://BUCKET/run \
        [--machine_type n1-standard-8 --accelerator_type NVIDIA_TESLA_T4 --accelerator_count 1] \
        [--workers 0] [--service_account SA --tensorboard RESOURCE] [--display_name NAME] \
        [--hyperparameter_tuning --max_trials 12 --parallel_trials 3] [--dry_run] [--no_wait] \
        -- [trainer flags]

Everything after `--` reaches the container unchanged: its ENTRYPOINT is `python -m trainer`,
so these are the trainer's own flags. Worker pool 0 is the chief (one replica); pool 1 holds
`--workers` more replicas of the same machine, and Vertex AI describes them all to the
trainer in TF_CONFIG. The job's base output directory makes Vertex AI set AIP_MODEL_DIR,
AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR under `--output_dir`, which the trainer uses
when no `--model_dir` is given.

`--dry_run` prints the job as the JSON of the Vertex AI REST API (the body of its create
request: enum names, camelCase fields) and makes no network call.
Without it the job is created, its console link logged, and its state followed until it ends
(exit 0 only if it succeeded), unless `--no_wait`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import time

from google.cloud import aiplatform_v1

from quickdraw import cli
from trainer import vertex

# The metric the trainer reports through CLOUD_ML_HP_METRIC_FILE: the final top-1 accuracy on
# the whole eval set. Hyperparameter tuning maximizes it. tests/test_dockerfile.py runs the
# container's command as a trial and checks that the trainer reports this very name.
HP_METRIC = "top1_accuracy"

# The search space of --hyperparameter_tuning, around the tutorial's defaults (learning rate
# 1e-4, 128 nodes, dropout 0.3). Vertex AI appends `--name=value` for each to the trainer's
# flags, a discrete parameter's value written as a float ("--num_nodes=128.0").
LEARNING_RATE_RANGE = (1e-4, 1e-2)  # searched on a log scale
NUM_NODES_VALUES = (64, 128, 256)
DROPOUT_RANGE = (0.0, 0.5)
TUNED_FLAGS = ("learning_rate", "num_nodes", "dropout")
# Trainer flags that a tuning job must leave to Vertex AI, and why.
_TRIAL_FLAGS = {
    **{flag: "the study sets it for each trial" for flag in TUNED_FLAGS},
    "model_dir": "each trial writes to its own AIP_MODEL_DIR",
}

# The container is built for NVIDIA GPUs (see the Dockerfile); TPUs would need another image.
ACCELERATOR_TYPES = tuple(
    accelerator.name
    for accelerator in aiplatform_v1.AcceleratorType
    if accelerator.name.startswith("NVIDIA_")
)

POLL_SECONDS = 30
JobState = aiplatform_v1.JobState
FINAL_STATES = frozenset(
    {
        JobState.JOB_STATE_SUCCEEDED,
        JobState.JOB_STATE_FAILED,
        JobState.JOB_STATE_CANCELLED,
        JobState.JOB_STATE_EXPIRED,
        JobState.JOB_STATE_PARTIALLY_SUCCEEDED,
    }
)

_TENSORBOARD = re.compile(r"projects/[^/\s]+/locations/[^/\s]+/tensorboards/[^/\s]+")


@dataclasses.dataclass(frozen=True)
class SubmitConfig:
    """One Vertex AI training job: where it runs, on what, and the trainer's flags."""

    project: str
    region: str
    image: str
    output_dir: str  # gs://BUCKET/path: the job's base output directory
    trainer_args: tuple[str, ...] = ()
    machine_type: str = "n1-standard-8"
    accelerator_type: str = "NVIDIA_TESLA_T4"
    accelerator_count: int = 1  # 0: CPU only
    workers: int = 0  # replicas besides the chief
    service_account: str = ""
    tensorboard: str = ""  # projects/P/locations/L/tensorboards/ID
    display_name: str = ""  # default: quickdraw-trainer-<last part of output_dir>
    hyperparameter_tuning: bool = False
    max_trials: int = 12
    parallel_trials: int = 3

    def __post_init__(self):
        vertex.check_location(self, ("project", "region", "image", "machine_type"), "output_dir")
        if self.accelerator_type not in ACCELERATOR_TYPES:
            raise ValueError(
                f"unknown --accelerator_type {self.accelerator_type!r}; "
                f"one of {', '.join(ACCELERATOR_TYPES)}"
            )
        if self.accelerator_count < 0:
            raise ValueError(f"--accelerator_count must be >= 0, got {self.accelerator_count}")
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")
        if self.tensorboard and not _TENSORBOARD.fullmatch(self.tensorboard):
            raise ValueError(
                "--tensorboard must be projects/PROJECT/locations/REGION/tensorboards/ID, "
                f"got {self.tensorboard!r}"
            )
        if self.tensorboard and not self.service_account:
            raise ValueError("--tensorboard needs --service_account (Vertex AI requires one)")
        vertex.check_display_name("display_name", self.job_display_name)
        if self.hyperparameter_tuning:
            if self.max_trials < 1:
                raise ValueError(f"--max_trials must be >= 1, got {self.max_trials}")
            if not 1 <= self.parallel_trials <= self.max_trials:
                raise ValueError(
                    f"--parallel_trials must be between 1 and --max_trials ({self.max_trials}), "
                    f"got {self.parallel_trials}"
                )
            for flag, reason in _TRIAL_FLAGS.items():
                if any(re.fullmatch(rf"--{flag}(=.*)?", arg) for arg in self.trainer_args):
                    raise ValueError(
                        f"drop trainer flag --{flag} with --hyperparameter_tuning: {reason}"
                    )

    @property
    def job_display_name(self) -> str:
        run = self.output_dir.rstrip("/").rsplit("/", 1)[-1]
        return self.display_name or f"quickdraw-trainer-{run}"


def build_machine_spec(config: SubmitConfig) -> aiplatform_v1.MachineSpec:
    if config.accelerator_count == 0:
        return aiplatform_v1.MachineSpec(machine_type=config.machine_type)
    return aiplatform_v1.MachineSpec(
        machine_type=config.machine_type,
        accelerator_type=aiplatform_v1.AcceleratorType[config.accelerator_type],
        accelerator_count=config.accelerator_count,
    )


def build_job_spec(config: SubmitConfig) -> aiplatform_v1.CustomJobSpec:
    """Pool 0: the chief, one replica. Pool 1 (when --workers > 0): the other workers."""
    container = aiplatform_v1.ContainerSpec(image_uri=config.image, args=config.trainer_args)
    machine = build_machine_spec(config)
    chief = aiplatform_v1.WorkerPoolSpec(
        machine_spec=machine, replica_count=1, container_spec=container
    )
    pools = [chief]
    if config.workers:
        workers = aiplatform_v1.WorkerPoolSpec(
            machine_spec=machine, replica_count=config.workers, container_spec=container
        )
        pools.append(workers)
    spec = aiplatform_v1.CustomJobSpec(
        worker_pool_specs=pools,
        base_output_directory=aiplatform_v1.GcsDestination(output_uri_prefix=config.output_dir),
    )
    if config.workers:
        # MultiWorkerMirroredStrategy's workers cannot rejoin a running cluster: when Vertex AI
        # restarts one (VM maintenance, a non-zero exit), restart them all, and every worker
        # resumes from the last checkpoint.
        spec.scheduling = aiplatform_v1.Scheduling(restart_job_on_worker_restart=True)
    if config.service_account:
        spec.service_account = config.service_account
    if config.tensorboard:
        spec.tensorboard = config.tensorboard
    return spec


def build_custom_job(config: SubmitConfig) -> aiplatform_v1.CustomJob:
    return aiplatform_v1.CustomJob(
        display_name=config.job_display_name, job_spec=build_job_spec(config)
    )


def build_study_spec() -> aiplatform_v1.StudySpec:
    """Maximize HP_METRIC over the learning rate, the recurrent width and the dropout."""
    parameter = aiplatform_v1.StudySpec.ParameterSpec
    return aiplatform_v1.StudySpec(
        metrics=[
            aiplatform_v1.StudySpec.MetricSpec(
                metric_id=HP_METRIC, goal=aiplatform_v1.StudySpec.MetricSpec.GoalType.MAXIMIZE
            )
        ],
        parameters=[
            parameter(
                parameter_id="learning_rate",
                double_value_spec=parameter.DoubleValueSpec(
                    min_value=LEARNING_RATE_RANGE[0], max_value=LEARNING_RATE_RANGE[1]
                ),
                scale_type=parameter.ScaleType.UNIT_LOG_SCALE,
            ),
            parameter(
                parameter_id="num_nodes",
                discrete_value_spec=parameter.DiscreteValueSpec(values=NUM_NODES_VALUES),
            ),
            parameter(
                parameter_id="dropout",
                double_value_spec=parameter.DoubleValueSpec(
                    min_value=DROPOUT_RANGE[0], max_value=DROPOUT_RANGE[1]
                ),
                scale_type=parameter.ScaleType.UNIT_LINEAR_SCALE,
            ),
        ],
    )


def build_hyperparameter_tuning_job(config: SubmitConfig) -> aiplatform_v1.HyperparameterTuningJob:
    return aiplatform_v1.HyperparameterTuningJob(
        display_name=config.job_display_name,
        study_spec=build_study_spec(),
        max_trial_count=config.max_trials,
        parallel_trial_count=config.parallel_trials,
        trial_job_spec=build_job_spec(config),
    )


def build_job(config: SubmitConfig):
    if config.hyperparameter_tuning:
        return build_hyperparameter_tuning_job(config)
    return build_custom_job(config)


def job_to_json(job) -> str:
    """The job as the body of the REST API's create request."""
    return json.dumps(vertex.to_dict(job), indent=2)


def console_url(job_name: str) -> str:
    """The Cloud console page of a job named projects/P/locations/L/<kind>/ID.

    The same address as the Vertex AI SDK's own `_dashboard_uri` for training jobs.
    """
    _, project, _, location, _, job_id = job_name.split("/")
    return (
        f"https://console.cloud.google.com/agent-platform/locations/{location}/training/{job_id}"
        f"?project={project}"
    )


def submit(config: SubmitConfig, wait: bool = True) -> int:
    """Creates the job; with `wait`, follows it until it ends. Returns the exit code."""

    def create_and_follow() -> int:
        client = aiplatform_v1.JobServiceClient(client_options=vertex.client_options(config.region))
        parent = vertex.parent(config.project, config.region)
        if config.hyperparameter_tuning:
            job = client.create_hyperparameter_tuning_job(
                parent=parent, hyperparameter_tuning_job=build_hyperparameter_tuning_job(config)
            )
            get_job = client.get_hyperparameter_tuning_job
        else:
            job = client.create_custom_job(parent=parent, custom_job=build_custom_job(config))
            get_job = client.get_custom_job
        logging.info("Created %s", job.name)
        logging.info("Console: %s", console_url(job.name))
        if not wait:
            return 0
        try:
            job = follow(get_job, job)
        except KeyboardInterrupt:
            logging.info("Stopped following; the job keeps running: %s", console_url(job.name))
            return 130
        if job.state != JobState.JOB_STATE_SUCCEEDED:
            message = job.error.message or "no error message"
            logging.error("%s ended %s: %s", job.name, job.state.name, message)
            return 1
        logging.info("%s succeeded", job.name)
        return 0

    return vertex.reported(create_and_follow)


def follow(get_job, job):
    """Polls the job, logging each change of state, until it reaches a final state."""
    state = job.state
    logging.info("%s: %s", job.name, state.name)
    while job.state not in FINAL_STATES:
        time.sleep(POLL_SECONDS)
        job = get_job(name=job.name)
        if job.state != state:
            state = job.state
            logging.info("%s: %s", job.name, state.name)
    return job


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m trainer.submit",
        description="Submit the trainer to Vertex AI. Flags after `--` go to the trainer.",
    )
    vertex.add_location_flags(parser, "training", "output_dir", "gs://BUCKET/path for outputs")
    parser.add_argument("--machine_type", default=SubmitConfig.machine_type)
    parser.add_argument(
        "--accelerator_type",
        default=SubmitConfig.accelerator_type,
        type=str.upper,
        help=f"one of {', '.join(ACCELERATOR_TYPES)}",
    )
    parser.add_argument(
        "--accelerator_count", type=int, default=SubmitConfig.accelerator_count, help="0: CPU only"
    )
    parser.add_argument(
        "--workers", type=int, default=SubmitConfig.workers, help="replicas besides the chief"
    )
    parser.add_argument("--service_account", default="", help="the job's service account")
    parser.add_argument(
        "--tensorboard", default="", help="projects/P/locations/L/tensorboards/ID to upload logs to"
    )
    parser.add_argument("--display_name", default="")
    parser.add_argument(
        "--hyperparameter_tuning",
        action="store_true",
        help=f"tune {', '.join(TUNED_FLAGS)} to maximize {HP_METRIC}",
    )
    parser.add_argument("--max_trials", type=int, default=SubmitConfig.max_trials)
    parser.add_argument("--parallel_trials", type=int, default=SubmitConfig.parallel_trials)
    parser.add_argument("--dry_run", action="store_true", help="print the job as JSON only")
    parser.add_argument("--no_wait", action="store_true", help="return once the job is created")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own_args, trainer_args = argv[:split], argv[split + 1 :]
    parser = build_parser()
    args = parser.parse_args(own_args)
    config = vertex.config_from_flags(SubmitConfig, args, parser, trainer_args=tuple(trainer_args))
    if args.dry_run:
        sys.stdout.write(job_to_json(build_job(config)) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return submit(config, wait=not args.no_wait)


if __name__ == "__main__":
    sys.exit(main())
