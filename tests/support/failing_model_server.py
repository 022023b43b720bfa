"""`python -m tests.support.failing_model_server --port PORT`: the server's app around a
classifier that fails on a drawing whose first x is 13 and answers every other, on uvicorn
as `trainer.serve` runs it; for the test of a model that fails mid-request."""

from __future__ import annotations

import argparse

import numpy as np

from trainer.serving import protocol
from trainer.serving.app import Settings, build_app


class FailingClassifier:
    classes = ["circle", "hat"]

    def probabilities(self, points: list, batch_size: int) -> np.ndarray:
        if any(drawing[0, 0] == 13 for drawing in points):
            raise RuntimeError("the model failed on purpose")
        return np.full((len(points), 2), 0.5, np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    limits = protocol.Limits(max_instances=64, max_points=1000, max_body_bytes=100_000)
    app = build_app(FailingClassifier(), Settings(limits=limits))
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="info")


if __name__ == "__main__":
    main()
