"""Real processes: a run killed with SIGKILL resumes from its checkpoint; two workers on
127.0.0.1 train in lockstep under MultiWorkerMirroredStrategy; two replicas in one process
take the very steps one replica takes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.trainer_fixtures import (
    REPO,
    TINY_FLAGS,
    data_flags,
    free_ports,
    start_trainer,
    trainer_env,
    write_tfrecords,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_tfrecords(tmp_path_factory.mktemp("records"), train=16, eval_=4)


def wait(process, log: Path, timeout: float) -> str:
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return log.read_text()


def wait_for_step(step: int, log: Path, processes, timeout: float) -> None:
    """Until `log` shows training step `step`, while every one of `processes` runs."""
    deadline = time.monotonic() + timeout
    while f"step {step}/" not in log.read_text() and time.monotonic() < deadline:
        assert all(p.poll() is None for p in processes), log.read_text()[-3000:]
        time.sleep(0.05)


def start_two_workers(flags, logs: Path, label: str) -> dict:
    """A chief and a worker on 127.0.0.1 with `TF_CONFIG`, logging to logs/{task}{label}.log."""
    chief_port, worker_port = free_ports(2)
    cluster = {"chief": [f"127.0.0.1:{chief_port}"], "worker": [f"127.0.0.1:{worker_port}"]}
    return {
        task_type: start_trainer(
            flags,
            logs / f"{task_type}{label}.log",
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": task_type, "index": 0}}),
        )
        for task_type in ("chief", "worker")
    }


def test_killed_run_resumes_from_its_last_checkpoint(records, tmp_path):
    model_dir = tmp_path / "model"
    steps = 150
    flags = [*data_flags(records, model_dir), *TINY_FLAGS, f"--steps={steps}"]
    flags += ["--checkpoint_every=10", "--eval_every=0", "--log_every=10", "--ema_decay=0.9"]

    first = start_trainer(flags, tmp_path / "first.log")
    state = model_dir / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 240
    while not state.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, (
        "the first run ended before it could be killed:\n"
        + ((tmp_path / "first.log").read_text()[-3000:])
    )
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    assert not (model_dir / "metrics.json").exists()
    last = re.search(r'model_checkpoint_path: "ckpt-(\d+)"', state.read_text())
    killed_at = int(last.group(1))
    assert 0 < killed_at < steps

    second = start_trainer(flags, tmp_path / "second.log")
    log = wait(second, tmp_path / "second.log", timeout=400)
    assert second.returncode == 0, log[-3000:]
    assert f"resuming from step {killed_at} " in log
    assert f"training from step {killed_at} to {steps}" in log
    assert json.loads((model_dir / "metrics.json").read_text())["step"] == steps
    assert (model_dir / "export" / "saved_model.pb").is_file()

    # Once finished, the same command again only evaluates and exports.
    third = start_trainer(flags, tmp_path / "third.log")
    log = wait(third, tmp_path / "third.log", timeout=400)
    assert third.returncode == 0, log[-3000:]
    assert f"resuming from step {steps} " in log and "training from step" not in log


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_a_checkpoint_where_the_run_was(records, tmp_path, stop_signal):
    """SIGTERM (a platform's notice before it preempts the machine) and Ctrl-C: the run ends
    its current steps, saves them in a checkpoint, exits 128 + the signal, and resumes there."""
    model_dir = tmp_path / "model"
    flags = [*data_flags(records, model_dir), *TINY_FLAGS, "--steps=100000"]
    flags += ["--checkpoint_every=100000", "--eval_every=0", "--log_every=10"]
    first = start_trainer(flags, tmp_path / "first.log")
    wait_for_step(20, tmp_path / "first.log", [first], timeout=240)
    first.send_signal(stop_signal)
    log = wait(first, tmp_path / "first.log", timeout=120)
    assert first.returncode == 128 + stop_signal, log[-3000:]
    stopped = re.search(
        rf"stopped by {stop_signal.name} at step (\d+), saved in (\S+): the same command", log
    )
    assert stopped, log[-3000:]
    step = int(stopped.group(1))
    assert step >= 20 and stopped.group(2).endswith(f"ckpt-{step}")
    assert not (model_dir / "metrics.json").exists()

    second = start_trainer([*flags[:-3], f"--steps={step + 10}"], tmp_path / "second.log")
    log = wait(second, tmp_path / "second.log", timeout=400)
    assert second.returncode == 0, log[-3000:]
    assert f"resuming from step {step} " in log
    assert json.loads((model_dir / "metrics.json").read_text())["step"] == step + 10


def test_two_workers_end_with_the_same_weights_and_only_the_chief_exports(records, tmp_path):
    model_dir = tmp_path / "model"
    flags = [*data_flags(records, model_dir), *TINY_FLAGS, "--steps=6"]
    flags += ["--checkpoint_every=3", "--eval_every=0", "--log_every=3", "--batch_norm"]
    flags += ["--ema_decay=0.5"]  # the average is evaluated and exported: same on both
    processes = start_two_workers(flags, tmp_path, "")
    logs = {
        name: wait(process, tmp_path / f"{name}.log", 400) for name, process in processes.items()
    }
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}:\n{logs[name][-3000:]}"

    assert "2 worker(s), 2 replica(s); chief" in logs["chief"]
    assert "2 worker(s), 2 replica(s); worker 1" in logs["worker"]
    checksums = {name: re.findall(r"weights checksum (\w+)", log) for name, log in logs.items()}
    assert len(checksums["chief"]) == 1 and checksums["chief"] == checksums["worker"]
    # Both evaluated half of the eval set each and summed: the same figures.
    evals = {name: re.findall(r"eval at step 6: .*\)", log) for name, log in logs.items()}
    assert evals["chief"] and [e.split(" (")[0] for e in evals["chief"]] == [
        e.split(" (")[0] for e in evals["worker"]
    ]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["step"] == 6 and metrics["examples"] == 4 * 6

    assert "exported the serving model" in logs["chief"]
    assert "exported the serving model" not in logs["worker"]
    assert (model_dir / "export" / "saved_model.pb").is_file()
    # The worker's checkpoints went to a temporary directory, removed at the end.
    worker_saves = re.findall(r"saved checkpoint (\S+)", logs["worker"])
    assert worker_saves and all(str(model_dir) not in path for path in worker_saves)
    assert not any(Path(path).parent.exists() for path in worker_saves)
    assert sorted(p.name for p in (model_dir / "checkpoints").glob("*.index")) == [
        "ckpt-3.index",
        "ckpt-6.index",
    ]


@pytest.mark.parametrize("raster", [False, True])
def test_two_replicas_take_the_steps_of_one(tmp_path, raster):
    """Under MirroredStrategy (several GPUs; here two logical CPUs) each replica computes the
    gradient of its half of the batch; the trainer sums them before clipping by their global
    norm and hands the optimizer equal shares, and batch norm (the masked one of the 1-D
    convolutions, Keras's synchronized one of `--raster`'s branch) takes its statistics over
    the whole batch. Any other order, or statistics per replica, gives other steps.

    The image branch runs in float64: in float32 a ReLU whose input is within rounding of
    zero can be on in one run and off in the other, and its gradient with it (the two runs
    then differ by up to 5% in a few weights after one step; in float64 by 1e-13, and with
    statistics per replica by 100%)."""
    out = tmp_path / "runs.npz"
    flags = ["--float64", "--raster"] if raster else []
    flags += [*data_flags(tmp_path, tmp_path / "model"), *TINY_FLAGS, "--dropout=0"]
    # One convolution: a bias that batch norm follows has no gradient, only float noise.
    flags += ["--num_conv=8", "--conv_len=5", "--batch_norm", "--ema_decay=0.9"]
    # The batches' gradients have norms of 3 to 9 here: every step is clipped.
    flags += ["--gradient_clipping_norm=0.05"]
    process = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "replica_steps.py"), str(out), *flags],
        cwd=REPO,
        env=trainer_env(PYTHONPATH=str(REPO)),  # a script: the repository is not on its path
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    runs = np.load(out)
    names = [name.split(":", 1)[1] for name in runs.files if name.startswith("one:")]
    assert {"loss", "conv_batch_norm_0/moving_mean", "adam/logits_kernel_velocity"} <= set(names)
    if raster:
        raster_names = {"raster_2_1_batch_norm/moving_variance", "raster_logits/kernel"}
        assert {f"raster_network/{name}" for name in raster_names} <= set(names)
    for name in names:
        one, two = runs[f"one:{name}"], runs[f"two:{name}"]
        np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-6 * np.abs(one).max(), err_msg=name)


def test_a_signal_to_one_worker_stops_both_at_the_same_step_and_both_resume(records, tmp_path):
    """A preempted machine's worker gets SIGTERM; its peer learns it at the next agreement
    (every --log_every steps), both save that step and exit 143, and both resume there."""
    model_dir = tmp_path / "model"
    flags = [*data_flags(records, model_dir), *TINY_FLAGS, "--eval_every=0", "--log_every=5"]
    flags += ["--checkpoint_every=100000"]

    processes = start_two_workers([*flags, "--steps=100000"], tmp_path, "-1")
    wait_for_step(10, tmp_path / "worker-1.log", processes.values(), timeout=300)
    processes["worker"].send_signal(signal.SIGTERM)
    logs = {name: wait(p, tmp_path / f"{name}-1.log", 300) for name, p in processes.items()}
    steps = {}
    for name, process in processes.items():
        assert process.returncode == 128 + signal.SIGTERM, f"{name}:\n{logs[name][-3000:]}"
        stopped = re.search(r"stopped by SIGTERM at step (\d+)", logs[name])
        assert stopped, logs[name][-3000:]
        steps[name] = int(stopped.group(1))
    assert steps["chief"] == steps["worker"] >= 10
    step = steps["chief"]
    assert (model_dir / "checkpoints" / f"ckpt-{step}.index").is_file()
    assert "SIGTERM: stopping" in logs["worker"] and "SIGTERM: stopping" not in logs["chief"]

    processes = start_two_workers([*flags, f"--steps={step + 5}"], tmp_path, "-2")
    logs = {name: wait(p, tmp_path / f"{name}-2.log", 300) for name, p in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}:\n{logs[name][-3000:]}"
        assert f"resuming from step {step} " in logs[name]
    assert json.loads((model_dir / "metrics.json").read_text())["step"] == step + 5


def test_a_worker_that_dies_stops_the_other_with_one_line(records, tmp_path):
    """A worker whose process is gone (a crash, a machine lost without warning) aborts the
    other's collectives: it stops within seconds, says so on one line (exit status 1) with
    the checkpoint a restart resumes from, and deletes its scratch checkpoints."""
    model_dir = tmp_path / "model"
    flags = [*data_flags(records, model_dir), *TINY_FLAGS, "--eval_every=0", "--log_every=5"]
    flags += ["--checkpoint_every=10", "--steps=100000"]
    processes = start_two_workers(flags, tmp_path, "")
    chief_log = tmp_path / "chief.log"
    wait_for_step(15, chief_log, processes.values(), timeout=300)
    processes["chief"].kill()
    killed = time.monotonic()
    log = wait(processes["worker"], tmp_path / "worker.log", 120)
    wait(processes["chief"], chief_log, 10)

    assert processes["worker"].returncode == 1, log[-3000:]
    assert time.monotonic() - killed < 60, log[-3000:]
    error = log.strip().splitlines()[-1]
    assert error.startswith("python -m trainer: error: lost another worker ("), log[-3000:]
    # The checkpoint state file names the last complete checkpoint.
    state = (model_dir / "checkpoints" / "checkpoint").read_text()
    latest = re.search(r'model_checkpoint_path: "(ckpt-\d+)"', state)[1]
    assert latest != "ckpt-0"
    path = model_dir / "checkpoints" / latest
    assert f"the run resumes from its last checkpoint ({path})" in error
    assert "Traceback" not in log
    scratch = {Path(path).parent for path in re.findall(r"saved checkpoint (\S+)", log)}
    assert scratch and not any(directory.exists() for directory in scratch)
