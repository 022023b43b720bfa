"""Vertex AI's prediction shapes: a request body in, drawings and `top_k` out, each checked;
probabilities in, predictions out. numpy and the core's `quickdraw.drawings` only.

A request is

    {"instances": [{"drawing": DRAWING}, ...], "parameters": {"top_k": 3}}

where DRAWING is an ndjson line's `drawing` value, raw ([x, y, t] per stroke) or simplified
([x, y] per stroke), and `parameters` may be left out. A whole dataset line is an instance too:
keys other than `drawing` are ignored. The answer is

    {"predictions": [{"labels": [...], "probabilities": [...]}, ...]}

one per instance, in order, each best first. Every fault of a request raises BadRequest, whose
message names the instance and what is wrong with it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson

from quickdraw import drawings

DEFAULT_TOP_K = 3
PARAMETERS = ("top_k",)


class BadRequest(ValueError):
    """A request the server turns away: `status` is the HTTP status, the message says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold."""

    max_instances: int
    max_points: int  # per drawing, as the pipeline's --max_points
    max_body_bytes: int

    def __post_init__(self):
        for name in ("max_instances", "max_points", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")


def parse_request(body: bytes, limits: Limits, class_count: int) -> tuple[list[np.ndarray], int]:
    """A request body -> each instance's absolute (n, 3) float32 points, and top_k.

    Raw drawings come back simplified (`quickdraw.drawings.drawing_points`), as the model
    was trained on the simplified format.
    """
    return read_request(json_object(body, limits), limits, class_count)


def read_request(request: dict, limits: Limits, class_count: int) -> tuple[list, int]:
    """`parse_request` on a body already parsed by `json_object`."""
    instances = request.get("instances")
    if instances is None:
        raise BadRequest('the body has no "instances": send {"instances": [{"drawing": ...}]}')
    if not isinstance(instances, list):
        raise BadRequest(f'"instances" must be a list, got {_kind(instances)}')
    if not instances:
        raise BadRequest('"instances" is empty: send at least one {"drawing": ...}')
    if len(instances) > limits.max_instances:
        raise BadRequest(
            f"{len(instances)} instances in one request; at most {limits.max_instances} "
            "(--max_instances): split the request"
        )
    top_k = _top_k(request.get("parameters"), class_count)
    return [_points(index, instance, limits) for index, instance in enumerate(instances)], top_k


def holds_raw_ink(request: dict) -> bool:
    """Whether any instance of a parsed request holds a raw drawing, which takes milliseconds
    to simplify where a simplified one takes a tenth of one."""
    instances = request.get("instances")
    return isinstance(instances, list) and any(
        isinstance(instance, dict)
        and isinstance(instance.get("drawing"), list)
        and drawings.is_raw(instance["drawing"])
        for instance in instances
    )


def json_object(body: bytes, limits: Limits) -> dict:
    """The body parsed as a JSON object, or BadRequest."""
    if len(body) > limits.max_body_bytes:
        raise BadRequest(too_large_message(limits), status=413)
    if not body.strip():
        raise BadRequest('the body is empty: send {"instances": [{"drawing": ...}]}')
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not UTF-8 text (byte {error.start})") from None
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not JSON: {error}") from None
    if not isinstance(request, dict):
        raise BadRequest(
            f'the body must be a JSON object {{"instances": [...]}}, got {_kind(request)}'
        )
    return request


def too_large_message(limits: Limits) -> str:
    return (
        f"the body is larger than {limits.max_body_bytes} bytes (--max_body_bytes): "
        "send fewer instances per request"
    )


def _top_k(parameters, class_count: int) -> int:
    if parameters is None:
        return min(DEFAULT_TOP_K, class_count)
    if not isinstance(parameters, dict):
        raise BadRequest(
            f'"parameters" must be an object like {{"top_k": 3}}, got {_kind(parameters)}'
        )
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}: the only one is top_k")
    top_k = parameters.get("top_k", min(DEFAULT_TOP_K, class_count))
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= class_count:
        raise BadRequest(
            f"top_k must be an integer from 1 to {class_count} (the number of classes), "
            f"got {orjson.dumps(top_k).decode()}"
        )
    return top_k


def _points(index: int, instance, limits: Limits) -> np.ndarray:
    if not isinstance(instance, dict):
        raise BadRequest(
            f'instances[{index}] must be an object {{"drawing": [...]}}, got {_kind(instance)}'
        )
    if "drawing" not in instance:
        raise BadRequest(f'instances[{index}] has no "drawing"')
    try:
        return drawings.drawing_points(instance["drawing"], limits.max_points)
    except drawings.BadDrawing as error:
        reason = drawings.REASONS[error.reason]
        if error.reason == "too_many_points":
            reason = f"the drawing has more than {limits.max_points} points (--max_points)"
        raise BadRequest(f"instances[{index}].drawing: {reason} ({error.reason})") from None


def _kind(value) -> str:
    """How a JSON value reads in an error message: 'a list', 'a string', ..."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names.update({list: "a list", dict: "an object"})
    return names.get(type(value), type(value).__name__)


def predictions(probabilities: np.ndarray, classes: list[str], top_k: int) -> list[dict]:
    """(instances, classes) probabilities -> each instance's top_k labels and probabilities,
    best first; equal probabilities keep the classes' order."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]  # (instances, top_k)
    return [
        {
            "labels": [classes[index] for index in row],
            "probabilities": probabilities[instance, row].tolist(),
        }
        for instance, row in enumerate(order)
    ]
