"""The floor under any Python prediction server on this machine: the same model, checks and
answer as `trainer.serve`'s, behind one blocking socket, for `make bench`.

    python -m bench.floor_server --model_dir DIR --port PORT [--model_threads N]

No event loop, no ASGI server, no framework, no batching: it reads one request at a time on one
connection, with just enough HTTP/1.1 for the serving bench's client (a kept-alive connection,
a Content-Length body) and for its `/health` check. What it adds to the direct model call is
the loopback trip, the two processes taking turns on the cores, and the request's own checks;
the serving bench times it beside `trainer.serve`, so that the server's overhead can be read
against what no server can avoid here. Not a server to deploy.
"""

from __future__ import annotations

import socket

import orjson

from bench import wire
from quickdraw import cli
from trainer import quiet_start, serve
from trainer.serving import protocol

HEALTHY = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
ANSWER_HEAD = b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"


def main(argv=None) -> None:
    parser = cli.ArgumentParser(prog="python -m bench.floor_server", description=__doc__)
    parser.add_argument("--model_dir", required=True, help="holds export/ (or is it)")
    parser.add_argument("--port", type=cli.positive_int, required=True, help="port on 127.0.0.1")
    parser.add_argument(
        "--model_threads",
        type=cli.positive_int,
        default=serve.default_model_threads(),
        help="as trainer.serve's (default: the cores less one)",
    )
    args = parser.parse_args(argv)
    quiet_start.import_tensorflow()
    serve.set_model_threads(args.model_threads)
    classifier = serve.load_classifier(args.model_dir, "single_view")  # trainer.serve's default
    serve.warm_up(classifier)
    with socket.create_server(("127.0.0.1", args.port)) as listener:
        while True:
            connection, _ = listener.accept()
            with connection:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _answer(connection, classifier, list(classifier.classes), serve.DEFAULT_LIMITS)


def _answer(connection, classifier, classes: list[str], limits: protocol.Limits) -> None:
    """Answers the requests on `connection` until the client closes it, or after a GET."""
    buffer = b""
    while True:
        try:
            head, body, buffer = wire.read_message(connection, buffer)
        except ConnectionError:
            return
        if head.startswith(b"GET"):  # the bench's /health check, on a connection of its own
            connection.sendall(HEALTHY)
            return
        try:
            drawings, top_k = protocol.parse_request(body, limits, len(classes))
            probabilities = classifier.probabilities(drawings, serve.MAX_INSTANCES)
            predictions = protocol.predictions(probabilities, classes, top_k)
            answer, status = {"predictions": predictions}, 200
        except protocol.BadRequest as error:
            answer, status = {"error": str(error)}, error.status
        payload = orjson.dumps(answer)
        connection.sendall(ANSWER_HEAD % (status, len(payload)) + payload)


if __name__ == "__main__":
    main()
