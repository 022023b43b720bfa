"""`python -m trainer.serve`: the exported model over HTTP, with a page to draw on.

    python -m trainer.serve --model_dir model [--host 127.0.0.1] [--port 8080]

Serves `POST /predict` (Vertex AI's `{"instances": [{"drawing": ...}]}`), `GET /health`,
`GET /classes` and the page at `GET /` (see `trainer.serving.app`). The same command is the
Vertex AI prediction container's: there `AIP_HTTP_PORT` gives the port, `AIP_HEALTH_ROUTE` and
`AIP_PREDICT_ROUTE` add their routes, and `AIP_STORAGE_URI` (the model's gs:// folder) stands
in for `--model_dir`; TensorFlow reads the SavedModel from it directly.

The model is loaded and called once before the server listens, so a health check that answers
means a model that answers. A missing or wrong `--model_dir` or a bad flag ends the command
with one line and exit code 2.
"""

from __future__ import annotations

import logging
import os
import sys

# TensorFlow's C++ start-up chatter would bury the server's own lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from quickdraw import cli, drawings  # noqa: E402
from quickdraw.cli import UsageError  # noqa: E402
from quickdraw.drawings import DEFAULT_MAX_POINTS  # noqa: E402
from trainer.serving import protocol  # noqa: E402

SIGNATURES = ("single_view", "serving_default")
DEFAULT_PORT = 8080
MAX_INSTANCES = 64
# Vertex AI's documented limit on an online prediction request; a local server keeps it so
# that what works here works there.
MAX_BODY_BYTES = 1_500_000
# The request limits the flags default to.
DEFAULT_LIMITS = protocol.Limits(MAX_INSTANCES, DEFAULT_MAX_POINTS, MAX_BODY_BYTES)


def default_model_threads() -> int:
    """The cores less one, at least one: a model call that wants every core waits for the one
    the event loop is busy on (parsing the next request, answering the last)."""
    return max(1, (os.cpu_count() or 1) - 1)


def set_model_threads(threads: int) -> None:
    """Caps the threads one TensorFlow op may use; before TensorFlow runs anything."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)


def make_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m trainer.serve",
        description="Serve model_dir/export/ over HTTP: Vertex AI's /predict, and a page.",
    )
    parser.add_argument(
        "--model_dir",
        help="holds export/ (or is it), local or gs://; default: $AIP_STORAGE_URI",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, help=f"default: $AIP_HTTP_PORT, else {DEFAULT_PORT}")
    parser.add_argument(
        "--signature",
        choices=SIGNATURES,
        default="single_view",
        help="single_view: the drawing alone, fast (the default); serving_default: the "
        "average over the model's --test_time_views views, several times slower",
    )
    parser.add_argument(
        "--max_batch_size", type=cli.positive_int, default=64, help="drawings per model call"
    )
    parser.add_argument(
        "--batch_wait_ms",
        type=float,
        default=5.0,
        help="under load, how long a model call may wait for the clients it just answered "
        "(0: never wait)",
    )
    parser.add_argument(
        "--model_threads",
        type=cli.positive_int,
        default=default_model_threads(),
        help="threads one model call may use (default: the cores less one, which are left "
        "to the server's own work and the clients beside it)",
    )
    parser.add_argument(
        "--max_instances", type=cli.positive_int, default=MAX_INSTANCES, help="per request"
    )
    parser.add_argument(
        "--max_body_bytes", type=cli.positive_int, default=MAX_BODY_BYTES, help="per request"
    )
    parser.add_argument(
        "--max_points",
        type=cli.positive_int,
        default=DEFAULT_MAX_POINTS,
        help="per drawing, as the pipeline's --max_points",
    )
    return parser


def _route(variable: str, default: str) -> tuple[str, ...]:
    """The default route, and Vertex AI's from the environment when it differs."""
    route = os.environ.get(variable, "").strip()
    if route and not route.startswith("/"):
        raise UsageError(f"{variable}={route!r} must be a path starting with /")
    return (default,) if route in ("", default) else (default, route)


def _port(flag: int | None) -> int:
    if flag is not None:
        port, source = flag, "--port"
    else:
        text = os.environ.get("AIP_HTTP_PORT", "").strip()
        if not text:
            return DEFAULT_PORT
        if not text.isdigit():
            raise UsageError(f"AIP_HTTP_PORT={text!r} is not a port number")
        port, source = int(text), "AIP_HTTP_PORT"
    if not 0 <= port <= 65535:
        raise UsageError(f"{source} must be a port from 0 to 65535, got {port}")
    return port


def load_classifier(model_dir: str, signature: str):
    """The exported model's classifier, or UsageError naming what is wrong with the folder."""
    import tensorflow as tf

    from trainer import export
    from trainer.predict import Classifier

    try:
        export_dir = export.export_dir_of(model_dir)
        found = tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb"))
    except tf.errors.OpError as error:
        raise UsageError(f"cannot read --model_dir {model_dir}: {error.message}") from None
    if not found:
        raise UsageError(
            f"no exported model in --model_dir {model_dir}: neither it nor its export/ "
            "holds saved_model.pb (`make train` writes one to model/export/)"
        )
    try:
        try:
            classifier = Classifier(export_dir, signature)
        except KeyError:
            # Exported with one view only: its default signature is that one view.
            logging.info("%s has no %s signature: its one view serves", export_dir, signature)
            signature = export.SIGNATURE
            classifier = Classifier(export_dir, signature)
    except (tf.errors.OpError, ValueError, OSError) as error:
        message = (getattr(error, "message", None) or str(error)).strip().splitlines()[0]
        raise UsageError(f"cannot load the model in {export_dir}: {message}") from None
    logging.info("loaded %s (%s, %d classes)", export_dir, signature, len(classifier.classes))
    return classifier


def warm_up(classifier) -> None:
    """The first call builds TensorFlow's kernels, and the first raw drawing compiles the
    simplification's loops (or loads them from numba's cache): before a server answers
    /health, not in the first person's request."""
    classifier.probabilities([np.array([[0, 0, 0], [1, 1, 1]], np.float32)], 1)
    drawings.drawing_points([[[0.0, 3.5, 9.0], [0.0, 2.0, 4.5], [0.0, 16.0, 33.0]]], 100)


def settings_from(args) -> tuple:
    from trainer.serving.app import Settings

    limits = protocol.Limits(
        max_instances=args.max_instances,
        max_points=args.max_points,
        max_body_bytes=args.max_body_bytes,
    )
    return Settings(
        limits=limits,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        predict_routes=_route("AIP_PREDICT_ROUTE", "/predict"),
        health_routes=_route("AIP_HEALTH_ROUTE", "/health"),
    )


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        model_dir = args.model_dir or os.environ.get("AIP_STORAGE_URI", "").strip()
        if not model_dir:
            raise UsageError(
                "--model_dir is required (a folder holding export/, local or gs://), "
                "unless AIP_STORAGE_URI gives one"
            )
        port = _port(args.port)
        settings = settings_from(args)
        from trainer import quiet_start

        quiet_start.import_tensorflow()  # without its start-up lines on a machine without a GPU
        set_model_threads(args.model_threads)
        classifier = load_classifier(model_dir, args.signature)
    except UsageError as error:
        parser.error(str(error))
    import uvicorn

    from trainer.serving.app import build_app

    warm_up(classifier)
    app = build_app(classifier, settings)
    routes = ", ".join(settings.predict_routes + settings.health_routes)
    logging.info("serving on http://%s:%d/ (%s)", args.host, port, routes)
    uvicorn.run(app, host=args.host, port=port, access_log=False, log_level="info")


if __name__ == "__main__":
    sys.exit(main())
