"""The Starlette app: Vertex AI's routes over a loaded classifier, and the page to draw on.

    app = build_app(classifier, Settings(...))

`classifier` is anything with `classes` (the class names, in the model's order) and
`probabilities(points, batch_size)` ((drawings, classes) from each drawing's absolute (n, 3)
points), such as `trainer.predict.Classifier`; a test builds the app on a tiny model.

Routes:
  POST /predict (and AIP_PREDICT_ROUTE)  Vertex AI's prediction request -> predictions
  GET  /health  (and AIP_HEALTH_ROUTE)   200 once the model is loaded (it is, once the app
                                         exists), with the model calls and drawings so far
  GET  /classes                          the class names, in the model's order
  GET  /                                 the page; its script and style under /static/

Every fault of a request is a 4xx whose JSON body is {"error": "..."}, as TF Serving answers.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from trainer.serving import protocol
from trainer.serving.batching import Batcher

STATIC = Path(__file__).resolve().parent / "static"
# The page loads its own script and style and nothing else: no other origin, no inline code.
PAGE_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


@dataclasses.dataclass(frozen=True)
class Settings:
    limits: protocol.Limits
    max_batch_size: int = 64
    batch_wait_ms: float = 5.0
    predict_routes: tuple[str, ...] = ("/predict",)
    health_routes: tuple[str, ...] = ("/health",)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content)


def error_response(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Predict:
    """`POST /predict` as a bare ASGI app: the server's hot path, which a person drawing on the
    page calls after every stroke. It reads the body and writes the answer itself, without
    the Request object and exception wrappers a Starlette endpoint function gets."""

    def __init__(self, classes: list[str], batcher: Batcher, limits: protocol.Limits):
        self.classes = classes
        self.batcher = batcher
        self.limits = limits

    async def __call__(self, scope, receive, send) -> None:
        try:
            body = await read_body(scope, receive, self.limits)
            request = protocol.json_object(body, self.limits)
            if protocol.holds_raw_ink(request):
                # Simplifying raw ink takes milliseconds: off the event loop, as the model is.
                # Simplified drawings are read in place: a tenth of a millisecond, less than
                # the trip to a thread and back.
                drawings, top_k = await run_in_threadpool(
                    protocol.read_request, request, self.limits, len(self.classes)
                )
            else:
                drawings, top_k = protocol.read_request(request, self.limits, len(self.classes))
        except protocol.BadRequest as error:
            logging.info("bad request (%d): %s", error.status, error)
            await send_json(send, {"error": str(error)}, error.status)
            return
        except ClientDisconnect:
            return  # nobody to answer
        probabilities = await self.batcher.classify(drawings)
        predictions = protocol.predictions(probabilities, self.classes, top_k)
        await send_json(send, {"predictions": predictions}, 200)


async def read_body(scope, receive, limits: protocol.Limits) -> bytes:
    """The request's body, refused with 413 as soon as it passes the limit: a client that
    declares a large body is turned away before it is read."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limits.max_body_bytes:
            raise protocol.BadRequest(protocol.too_large_message(limits), status=413)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise protocol.BadRequest(protocol.too_large_message(limits), status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send, content, status: int) -> None:
    body = orjson.dumps(content)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_app(classifier, settings: Settings) -> Starlette:
    classes = list(classifier.classes)
    batcher = Batcher(
        lambda points: classifier.probabilities(points, settings.max_batch_size),
        settings.max_batch_size,
        settings.batch_wait_ms,
    )

    async def health(request: Request) -> Response:
        calls = batcher.calls_by_size
        drawings = sum(size * count for size, count in calls.items())
        return JSONResponse(
            {"status": "ok", "model_calls": sum(calls.values()), "drawings": drawings}
        )

    async def class_names(request: Request) -> Response:
        return JSONResponse({"classes": classes})

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    async def http_error(request: Request, error: HTTPException) -> Response:
        return error_response(
            f"{error.detail}: {request.method} {request.url.path}", error.status_code
        )

    async def server_error(request: Request, error: Exception) -> Response:
        logging.exception("%s %s failed", request.method, request.url.path)
        return error_response("the server failed on this request; its log says why", 500)

    predict = Predict(classes, batcher, settings.limits)
    routes = [Route(path, predict, methods=["POST"]) for path in settings.predict_routes]
    routes += [Route(path, health, methods=["GET"]) for path in settings.health_routes]
    routes += [
        Route("/classes", class_names, methods=["GET"]),
        Route("/", page, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.batcher = batcher
    return app
