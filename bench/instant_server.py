"""The prediction server's own cost, without a model's: `trainer.serve`'s app (HTTP, parsing,
checks, batching, the answer) around a classifier that answers at once, for `make bench`.

    python -m bench.instant_server --port PORT

The serving bench times it beside the real server, so that what the server adds to a model
call can be told apart from what two cores shared by a client, the event loop and TensorFlow
cost each other.
"""

from __future__ import annotations

import numpy as np

from quickdraw import cli
from trainer import serve
from trainer.serving.app import Settings, build_app

CLASSES = 26


class InstantClassifier:
    """Equal probabilities for every drawing, at once."""

    classes = [f"class {index}" for index in range(CLASSES)]

    def probabilities(self, points: list, batch_size: int) -> np.ndarray:
        return np.full((len(points), CLASSES), 1 / CLASSES, np.float32)


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="python -m bench.instant_server", description=__doc__)
    parser.add_argument("--port", type=cli.positive_int, required=True, help="port on 127.0.0.1")
    args = parser.parse_args(argv)
    import uvicorn

    app = build_app(InstantClassifier(), Settings(limits=serve.DEFAULT_LIMITS))
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
