"""The training and serving containers, checked without a Docker engine.

hadolint lints the Dockerfile. dockerfile-parse reads it, so that these tests can check what
the image holds (a non-root user, no credentials, the package with its trainer extra, nothing
outside the build context that .dockerignore leaves) and run its exact ENTRYPOINT in this
environment the way Vertex AI runs a hyperparameter tuning trial: the trainer's flags as
args, the AIP_* directories and CLOUD_ML_HP_METRIC_FILE in the environment, on TFRecords of
real drawings.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

from tests.support.dockerfiles import container_command, hadolint, parse_dockerfile

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
SERVE_DOCKERFILE = REPO / "serve.Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
QUICKDRAW = REPO.parent / "shared" / "quickdraw"

# All the image is built from. A COPY of anything else would bake data or secrets in.
PACKAGE_SOURCES = ("setup.py", "pyproject.toml", "quickdraw", "pipeline", "trainer")
ENTRYPOINT = ["python", "-m", "trainer"]
# The server listens on every interface in a container: Vertex AI calls it from outside.
SERVE_ENTRYPOINT = ["python", "-m", "trainer.serve", "--host", "0.0.0.0"]

_SECRET_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY", re.IGNORECASE
)
_SECRET_VALUE = re.compile(r"-----BEGIN|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|\"private_key\"")


def installs_extra(run: str, extra: str) -> bool:
    """Whether a RUN installs the package with `extra`: `pip install ... .[trainer]` (or
    ./[trainer], /app[trainer], [dev,trainer] ...)."""
    pattern = rf"\bpip\b.*\binstall\b.*?[\"']?(?:\.|\./|/[\w./-]*)\[[^\]]*\b{extra}\b[^\]]*\]"
    return re.search(pattern, run) is not None


def copy_sources(value: str) -> list[str]:
    """The sources of a COPY or ADD (shell or exec form), without the destination."""
    if value.lstrip().startswith("["):
        words = json.loads(value)
    else:
        words = [word for word in value.split() if not word.startswith("--")]
    return words[:-1]


def dockerfile_problems(
    text: str, extra: str = "trainer", entrypoint: list[str] = ENTRYPOINT
) -> list[str]:
    parser = parse_dockerfile(text)
    problems = []
    users = [item["value"] for item in parser.structure if item["instruction"] == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image runs as root: end with USER <non-root uid>")
    for name, value in {**parser.args, **parser.envs}.items():
        if _SECRET_NAME.search(name) or _SECRET_VALUE.search(value or ""):
            problems.append(f"ENV/ARG {name} looks like a credential")
    if _SECRET_VALUE.search(text):
        problems.append("the Dockerfile contains what looks like a key")
    for item in parser.structure:
        if item["instruction"] in ("COPY", "ADD") and "--from" not in item["value"]:
            for source in copy_sources(item["value"]):
                if posixpath.normpath(source).split("/")[0] not in PACKAGE_SOURCES:
                    problems.append(f"{item['instruction']} {source}: only the package goes in")
    runs = [item["value"] for item in parser.structure if item["instruction"] == "RUN"]
    if not any(installs_extra(run, extra) for run in runs):
        problems.append(f"no RUN installs the package with its {extra} extra")
    try:
        command = container_command(parser)
    except ValueError as error:
        problems.append(str(error))
    else:
        if command != entrypoint:
            problems.append(f"the container runs {command}, not {entrypoint}")
    return problems


# --- hadolint ----------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, SERVE_DOCKERFILE], ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile):
    findings = hadolint(dockerfile)
    assert findings == [], "\n".join(
        f"{dockerfile.name}:{finding['line']} {finding['code']} {finding['message']}"
        for finding in findings
    )


def test_hadolint_reports_a_careless_dockerfile(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install tensorflow\nCMD python -m trainer\n")
    codes = {finding["code"] for finding in hadolint(careless)}
    assert {"DL3007", "DL3013", "DL3042", "DL3025"} <= codes


# --- What the image holds -----------------------------------------------------------------


def test_dockerfile_is_non_root_credential_free_and_runs_the_trainer():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_serving_image_is_non_root_credential_free_and_runs_the_server():
    text = SERVE_DOCKERFILE.read_text()
    assert dockerfile_problems(text, extra="serve", entrypoint=SERVE_ENTRYPOINT) == []
    parser = parse_dockerfile(text)
    runs = " ".join(item["value"] for item in parser.structure if item["instruction"] == "RUN")
    # CPU TensorFlow of the trainer's version loads the SavedModel; no CUDA wheels.
    assert re.search(r'"tensorflow-cpu==2\.21\.\*"', runs), runs
    assert "and-cuda" not in runs
    assert re.search(r"useradd .*--uid 1000 server", runs)
    exposed = [item["value"] for item in parser.structure if item["instruction"] == "EXPOSE"]
    assert exposed == ["8080"]  # the port trainer.deploy gives Vertex AI


def test_dockerfile_checks_catch_each_problem():
    careless = (
        "FROM python:3.11-slim\n"
        "ENV GOOGLE_APPLICATION_CREDENTIALS=/app/key.json\n"
        "ARG GITHUB_TOKEN\n"
        "COPY key.json /app/key.json\n"
        "COPY data/ /app/data/\n"
        "RUN pip install --no-cache-dir tensorflow==2.21.0\n"
        "ENTRYPOINT python -m trainer\n"
    )
    problems = "\n".join(dockerfile_problems(careless))
    for expected in (
        "runs as root",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GITHUB_TOKEN",
        "COPY key.json",
        "COPY data/",
        "trainer extra",
        "shell form",
    ):
        assert expected in problems


def test_the_image_runs_as_a_user_that_can_report_tuning_metrics():
    """Trials write CLOUD_ML_HP_METRIC_FILE under /var/hypertune, which only root could create."""
    runs = " ".join(
        item["value"]
        for item in parse_dockerfile(DOCKERFILE.read_text()).structure
        if item["instruction"] == "RUN"
    )
    assert re.search(r"install -d -o trainer\b.* /var/hypertune", runs)
    assert re.search(r"useradd .*--uid 1000 trainer", runs)


# --- Build context (.dockerignore) ----------------------------------------------------------


def dockerignore_rules(text: str) -> list[tuple[bool, str, re.Pattern]]:
    """(is an exception, pattern, regex) for each line, with Docker's glob syntax."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
        regex = ""
        for token in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token)
            )
        rules.append((exception, pattern, re.compile(regex)))
    return rules


def is_ignored(path: str, rules) -> bool:
    """Docker's rule: the last pattern matching the path, or one of its parents, decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:count]) for count in range(1, len(parts) + 1)]
    ignored = False
    for exception, _, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not exception
    return ignored


def build_context(root: Path, rules) -> set[str]:
    """The files `docker build` would send from `root`."""
    files = set()
    for directory, subdirectories, names in os.walk(root):
        relative = Path(directory).relative_to(root).as_posix()
        relative = "" if relative == "." else relative + "/"
        # Skip an ignored directory unless an exception could bring something inside it back.
        subdirectories[:] = [
            name
            for name in subdirectories
            if not is_ignored(relative + name, rules)
            or any(
                exception and pattern.startswith(relative + name + "/")
                for exception, pattern, _ in rules
            )
        ]
        files.update(relative + name for name in names if not is_ignored(relative + name, rules))
    return files


def test_build_context_leaves_data_outputs_and_secrets_out():
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    for path in (
        "data/training.tfrecord-00000-of-00010",
        "model/export/saved_model.pb",
        "bench_output/report.json",
        ".venv/bin/python",
        ".git/HEAD",
        ".pytest_cache/v/cache/lastfailed",
        "tests/quickdraw/test_schema.py",
        "key.json",
        ".config/gcloud/application_default_credentials.json",
        "pipeline/__pycache__/schema.cpython-311.pyc",
        "trainer/model.pyc",
    ):
        assert is_ignored(path, rules), path
    for path in ("setup.py", "pyproject.toml", "quickdraw/schema.py", "trainer/submit.py"):
        assert not is_ignored(path, rules), path


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, SERVE_DOCKERFILE], ids=lambda p: p.name)
def test_build_context_holds_the_package_and_every_copy_source(dockerfile):
    context = build_context(REPO, dockerignore_rules(DOCKERIGNORE.read_text()))
    outside = sorted(path for path in context if path.split("/")[0] not in PACKAGE_SOURCES)
    assert outside == []
    assert {"setup.py", "pyproject.toml", "quickdraw/schema.py", "trainer/__main__.py"} <= context
    assert {"trainer/serve.py", "trainer/serving/static/page.js"} <= context
    parser = parse_dockerfile(dockerfile.read_text())
    for item in parser.structure:
        if item["instruction"] in ("COPY", "ADD"):
            for source in copy_sources(item["value"]):
                source = posixpath.normpath(source)
                assert any(path == source or path.startswith(source + "/") for path in context), (
                    f"{item['instruction']} {source} is not in the build context"
                )


def test_package_builds_from_the_build_context_alone(tmp_path):
    """What the image's `pip install ./[trainer]` gets: every module of pipeline/ and trainer/."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed here, and an isolated build needs the network")
    context = build_context(REPO, dockerignore_rules(DOCKERIGNORE.read_text()))
    source = tmp_path / "context"
    for path in context:
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / path, source / path)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--quiet", "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    package_files = {path for path in context if path.split("/")[0] in ("pipeline", "trainer")}
    assert sorted(package_files - packaged) == []
    # The page's files are package data: the serving image's pip install must carry them.
    static = {path for path in package_files if path.startswith("trainer/serving/static/")}
    assert {"trainer/serving/static/index.html", "trainer/serving/static/page.js"} <= static
    (metadata,) = [name for name in packaged if name.endswith(".dist-info/METADATA")]
    metadata = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Provides-Extra: trainer" in metadata and "Provides-Extra: serve" in metadata


# --- The container's command, run here as Vertex AI runs a tuning trial ----------------------

CATEGORIES = ("circle", "hat", "zigzag")
TRAIN_PER_CLASS = 8
EVAL_PER_CLASS = 4
TINY_FLAGS = ["--steps", "3", "--batch_size", "4", "--num_layers", "1"]
TINY_FLAGS += ["--num_conv", "4", "--conv_len", "3", "--seed", "1"]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """Shards and classes files as the pipeline names them, of real drawings, classes mixed."""
    if not (QUICKDRAW / "simplified").is_dir():
        pytest.skip(f"no real drawings at {QUICKDRAW / 'simplified'} (the shared data folder)")
    from quickdraw import schema
    from quickdraw.drawings import convert_lines

    splits = {"train": [], "eval": []}
    for class_index, category in enumerate(sorted(CATEGORIES)):
        with open(QUICKDRAW / "simplified" / f"{category}.ndjson", "rb") as file:
            lines = list(enumerate(itertools.islice(file, TRAIN_PER_CLASS + EVAL_PER_CLASS), 1))
        batch, bad = convert_lines(lines, max_points=10_000)
        assert bad == [] and len(batch) == TRAIN_PER_CLASS + EVAL_PER_CLASS
        examples = [
            schema.encode_example(
                batch.ink_of(index),
                class_index,
                batch.key_ids[index].encode(),
                batch.log_aspect_of(index),
            )
            for index in range(len(batch))
        ]
        splits["train"].append(examples[:TRAIN_PER_CLASS])
        splits["eval"].append(examples[TRAIN_PER_CLASS:])
    directory = tmp_path_factory.mktemp("records")
    for split, per_class in splits.items():
        mixed = [example for group in zip(*per_class) for example in group]
        with open(directory / schema.shard_name(split, 0, 1), "wb") as shard:
            shard.writelines(schema.frame_record(example) for example in mixed)
        (directory / schema.classes_file_name(split)).write_text(
            "".join(name + "\n" for name in sorted(CATEGORIES))
        )
    return directory


def trial_flags() -> list[str]:
    """One trial's values of the tuned flags, appended as Vertex AI appends them (`--name=value`),
    the smallest of each to keep the run tiny. Vertex AI writes a discrete value as a float
    ("64.0"); tests/trainer/test_submit.py checks that the trainer takes that form, so this run,
    which proves the rest of the container's command, writes it as an integer."""
    from trainer import submit

    flags = []
    for parameter in submit.build_study_spec().parameters:
        kind = type(parameter).pb(parameter).WhichOneof("parameter_value_spec")
        if kind == "double_value_spec":
            value = repr(parameter.double_value_spec.min_value)
        elif kind == "discrete_value_spec":
            value = str(int(min(parameter.discrete_value_spec.values)))
        else:
            raise ValueError(f"no trial value for a {kind} parameter")
        flags.append(f"--{parameter.parameter_id}={value}")
    return flags


@pytest.fixture(scope="module")
def trial(records, tmp_path_factory) -> types.SimpleNamespace:
    """Runs the Dockerfile's ENTRYPOINT (+ CMD) with the venv's Python, as one tuning trial."""
    parser = parse_dockerfile(DOCKERFILE.read_text())
    command = container_command(parser)
    assert command[0] == "python", command
    root = tmp_path_factory.mktemp("trial")
    run = types.SimpleNamespace(
        model_dir=root / "gcs" / "model",
        checkpoint_dir=root / "gcs" / "checkpoints",
        log_dir=root / "gcs" / "logs",
        metric_file=root / "hypertune" / "output.metrics",
        workdir=root / "app",
    )
    run.metric_file.parent.mkdir()  # the image creates /var/hypertune
    run.workdir.mkdir()
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIP_", "CLOUD_ML_", "TF_CONFIG"))
    }
    environment.update(parser.envs)
    environment.update(
        {
            # The image installs the package; here the checkout stands in for it.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            # What Vertex AI derives from the job's base_output_directory (with trailing slash).
            "AIP_MODEL_DIR": f"{run.model_dir}/",
            "AIP_CHECKPOINT_DIR": f"{run.checkpoint_dir}/",
            "AIP_TENSORBOARD_LOG_DIR": f"{run.log_dir}/",
            "CLOUD_ML_HP_METRIC_FILE": str(run.metric_file),
            "CLOUD_ML_TRIAL_ID": "1",
        }
    )
    trainer_flags = [
        "--training_data",
        str(records / "training.tfrecord-?????-of-?????"),
        "--eval_data",
        str(records / "eval.tfrecord-?????-of-?????"),
        "--classes_file",
        str(records / "training.tfrecord.classes"),
        *TINY_FLAGS,
    ]
    run.argv = [sys.executable, *command[1:], *trainer_flags, *trial_flags()]
    run.result = subprocess.run(
        run.argv,
        cwd=run.workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return run


def _check_succeeded(run):
    if run.result.returncode != 0:
        pytest.fail(
            f"{' '.join(run.argv)}\nexited {run.result.returncode}:\n{run.result.stderr[-4000:]}",
            pytrace=False,
        )


@pytest.mark.slow
def test_entrypoint_trains_and_exports_to_aip_model_dir(trial):
    _check_succeeded(trial)
    assert (trial.model_dir / "export" / "saved_model.pb").is_file()
    metrics = json.loads((trial.model_dir / "metrics.json").read_text())
    assert metrics["step"] == 3


@pytest.mark.slow
def test_entrypoint_reports_the_metric_the_tuning_job_maximizes(trial):
    from trainer.submit import HP_METRIC

    _check_succeeded(trial)
    assert trial.metric_file.is_file(), "nothing written to CLOUD_ML_HP_METRIC_FILE"
    reports = [json.loads(line) for line in trial.metric_file.read_text().splitlines() if line]
    values = [report[HP_METRIC] for report in reports if HP_METRIC in report]
    assert values, f"no {HP_METRIC!r} in {reports}"
    assert 0.0 <= float(values[-1]) <= 1.0


@pytest.mark.slow
def test_entrypoint_checkpoints_and_logs_where_vertex_says(trial):
    _check_succeeded(trial)
    assert any(path.is_file() for path in trial.checkpoint_dir.rglob("*")), "no checkpoint"
    assert list(trial.log_dir.rglob("events.out.tfevents*")), "no TensorBoard events"


@pytest.mark.slow
def test_entrypoint_writes_nothing_to_its_working_directory(trial):
    """The image's /app belongs to root; the trainer runs as an unprivileged user."""
    _check_succeeded(trial)
    assert sorted(path.name for path in trial.workdir.iterdir()) == []
