"""Helpers for the server's tests: a tiny exported model, `python -m trainer.serve` run as a
real process on 127.0.0.1, and plain HTTP calls to it (http.client sends paths and bodies
exactly as given, so a test can send what a careless or hostile client would)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.support.trainer_fixtures import REPO, free_ports, trainer_env

CLASSES = ["circle", "hat", "sock", "zigzag"]


def export_tiny_model(directory: Path, *flags: str) -> Path:
    """A tiny model's SavedModel in `directory` (random weights, seeded: every drawing gets
    its own probabilities), with both signatures unless `flags` say `--test_time_views=1`."""
    import keras

    from trainer import config as config_lib
    from trainer import export
    from trainer import model as model_lib

    keras.utils.set_random_seed(7)
    config = config_lib.parse_flags(
        ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]
        + ["--num_conv=6,6", "--conv_len=5,3", "--num_layers=1", "--num_nodes=8"]
        + ["--test_time_views=2", *flags]
    )
    model = model_lib.build_model(config, len(CLASSES))
    # Larger weights than the initializers give: probabilities far from uniform, so that a
    # drawing's top classes differ from another's by more than float rounding.
    model.set_weights([weight * 3 for weight in model.get_weights()])
    export.export_model(model.get_weights(), config, CLASSES, str(directory))
    return directory


class Server:
    """`python -m trainer.serve FLAGS` on a free port of 127.0.0.1, its output in `log`."""

    def __init__(
        self,
        flags: list[str],
        log_path: Path,
        env: dict | None = None,
        port: int | None = None,
        command: list[str] | None = None,
    ):
        """`port`: where the server listens without a `--port` flag (from AIP_HTTP_PORT in
        `env`); `command`: what runs instead of `python -m trainer.serve` (a container's)."""
        self.flags = flags
        self.log_path = log_path
        self.env = env or {}
        self.port = port
        self.command = command or [sys.executable, "-m", "trainer.serve"]
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        flags = self.flags
        if self.port is None:
            (self.port,) = free_ports(1)
            flags = [*flags, "--port", str(self.port)]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [*self.command, *flags],
            cwd=REPO,
            env=trainer_env(**self.env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited {self.process.returncode}:\n{self.log()}")
            try:
                if request(self.port, "GET", "/health")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"the server did not answer /health in 180 s:\n{self.log()}")

    def __exit__(self, *exc_info) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def request(port: int, method: str, path: str, body: bytes | None = None, headers=None):
    """(status, headers, body bytes) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def predict(port: int, body, path: str = "/predict"):
    """(status, parsed JSON answer) of a POST of `body` (bytes as they are; else as JSON)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, answer = request(port, "POST", path, data, {"Content-Type": "application/json"})
    return status, json.loads(answer)


def real_drawings(quickdraw: Path, kind: str, count: int) -> list[dict]:
    """The first `count` lines of the 10-category fixture file, raw or simplified."""
    path = quickdraw / "fixtures" / f"{kind}_10cats_x5.ndjson"
    with open(path) as file:
        return [json.loads(line) for line, _ in zip(file, range(count))]


def classifier_probabilities(export_dir: Path, drawings: list, signature: str) -> np.ndarray:
    """The SavedModel called in this process on `drawings` (ndjson `drawing` values)."""
    from quickdraw.drawings import drawing_points
    from trainer.predict import Classifier

    classifier = Classifier(str(export_dir), signature)
    points = [drawing_points(drawing, 20_000) for drawing in drawings]
    return classifier.probabilities(points, batch_size=len(points))
