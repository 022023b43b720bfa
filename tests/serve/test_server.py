"""`python -m trainer.serve` as a real process on 127.0.0.1, on a tiny exported model: Vertex
AI's request and answer, the same probabilities as the SavedModel called in-process, concurrent
requests batched without mixing their answers, every kind of bad request turned away with a 4xx
and a JSON error while the server goes on serving, static files kept inside their folder, and
each bad start (a flag, a model folder) ending with one line and exit code 2."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from quickdraw.drawings import DEFAULT_MAX_POINTS
from tests.conftest import shared_quickdraw_or_skip
from tests.support.serving_fixtures import (
    CLASSES,
    Server,
    classifier_probabilities,
    export_tiny_model,
    predict,
    real_drawings,
    request,
)
from tests.support.trainer_fixtures import REPO, trainer_env
from trainer.serving.batching import Batcher


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    export_tiny_model(directory / "export")
    return directory


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with Server(["--model_dir", str(model_dir)], log) as running:
        yield running


@pytest.fixture(scope="module")
def drawings():
    """Ten real drawings: five raw (x, y, t) and five simplified, of different categories."""
    quickdraw = shared_quickdraw_or_skip()
    raw = real_drawings(quickdraw, "raw", 50)[::10]
    simplified = real_drawings(quickdraw, "simplified", 50)[5::10]
    return [line["drawing"] for line in raw + simplified]


def instances(drawings) -> dict:
    return {"instances": [{"drawing": drawing} for drawing in drawings]}


# --- Answers ------------------------------------------------------------------------------


def test_predictions_are_the_models_one_per_instance_in_order_best_first(
    server, model_dir, drawings
):
    status, answer = predict(server.port, instances(drawings))
    assert status == 200, answer
    predictions = answer["predictions"]
    assert len(predictions) == len(drawings)
    expected = classifier_probabilities(model_dir / "export", drawings, "single_view")
    for prediction, probabilities in zip(predictions, expected):
        order = np.argsort(-probabilities, kind="stable")[:3]  # top_k is 3 by default
        assert prediction["labels"] == [CLASSES[index] for index in order]
        np.testing.assert_allclose(prediction["probabilities"], probabilities[order], atol=1e-6)
    # Real drawings of different categories: the model does not answer them all alike.
    assert len({prediction["labels"][0] for prediction in predictions}) > 1


def test_a_dataset_line_is_an_instance_and_top_k_picks_the_length(server, quickdraw):
    line = real_drawings(quickdraw, "simplified", 1)[0]  # word, key_id, ... and drawing
    status, answer = predict(server.port, {"instances": [line], "parameters": {"top_k": 4}})
    assert status == 200, answer
    (prediction,) = answer["predictions"]
    assert sorted(prediction["labels"]) == sorted(CLASSES)
    probabilities = prediction["probabilities"]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1, abs=1e-5)


def test_concurrent_requests_get_their_own_answers(server, drawings):
    alone = [predict(server.port, instances([drawing]))[1] for drawing in drawings]
    with concurrent.futures.ThreadPoolExecutor(len(drawings)) as pool:
        for _ in range(3):
            together = list(pool.map(lambda d: predict(server.port, instances([d]))[1], drawings))
            # A drawing padded in a batch gets its probabilities to float rounding.
            for mine, own in zip(together, alone):
                (mine,), (own,) = mine["predictions"], own["predictions"]
                assert mine["labels"] == own["labels"]
                np.testing.assert_allclose(mine["probabilities"], own["probabilities"], atol=1e-6)
    status, _, body = request(server.port, "GET", "/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok"
    assert health["drawings"] >= 4 * len(drawings)


def test_the_batcher_gives_one_model_call_to_requests_that_wait_together():
    """The first two requests hold the model until the other 14 have queued: they share the
    next calls, at most `max_batch_size` drawings each, and each gets its own rows back."""
    calls, release = [], threading.Event()

    def classify(points):
        calls.append(len(points))
        if len(calls) == 1:
            release.wait(10)
        return np.stack([np.full(2, drawing[0, 0]) for drawing in points])

    async def run():
        batcher = Batcher(classify, max_batch_size=10)
        first = [
            asyncio.ensure_future(batcher.classify([np.full((2, 3), float(value))]))
            for value in range(2)
        ]
        await asyncio.sleep(0.05)  # the first call is running
        rest = [
            asyncio.ensure_future(batcher.classify([np.full((2, 3), float(value))]))
            for value in range(2, 16)
        ]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(*first, *rest)
        batcher.close()
        return results

    results = asyncio.run(run())
    assert calls == [2, 10, 4]
    assert [float(result[0, 0]) for result in results] == list(range(16))


def test_a_lone_request_runs_on_the_event_loop_and_requests_together_on_the_model_thread():
    threads = []

    def classify(points):
        threads.append((len(points), threading.current_thread().name))
        return np.zeros((len(points), 2))

    async def run():
        batcher = Batcher(classify, max_batch_size=64)
        point = [np.zeros((2, 3))]
        await batcher.classify(point)
        await asyncio.gather(batcher.classify(point), batcher.classify(point))
        batcher.close()

    asyncio.run(run())
    assert threads[0] == (1, threading.main_thread().name)
    assert threads[1][0] == 2 and threads[1][1].startswith("model")


def gathered_calls(
    wait_ms: float, clients_return: bool, queued: int = 2, apart_s: float = 0.0
) -> list[int]:
    """Drawings per model call when clients A and A' share a call while `queued` others (B
    and C) queue, and A and A' send their next requests once they have their answers (if
    `clients_return`), `apart_s` apart, as clients over a network come back."""
    calls, release = [], threading.Event()

    def classify(points):
        calls.append(len(points))
        if len(calls) == 1:
            release.wait(10)
        return np.zeros((len(points), 2))

    async def run():
        batcher = Batcher(classify, max_batch_size=64, wait_ms=wait_ms)
        point = [np.zeros((2, 3))]

        async def client_a(index: int):
            await batcher.classify(point)
            if clients_return:
                await asyncio.sleep(index * apart_s)
                await batcher.classify(point)

        first = [asyncio.ensure_future(client_a(index)) for index in range(2)]
        await asyncio.sleep(0.05)
        others = [asyncio.ensure_future(batcher.classify(point)) for _ in range(queued)]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(*first, *others)
        batcher.close()

    asyncio.run(run())
    return calls


def test_under_load_a_call_waits_for_the_clients_it_just_answered():
    assert gathered_calls(wait_ms=0, clients_return=True) == [2, 2, 2]  # the groups take turns
    assert gathered_calls(wait_ms=2000, clients_return=True) == [2, 4]  # A and A' join B and C
    # Clients that do not come back delay the call by wait_ms at most.
    started = time.perf_counter()
    assert gathered_calls(wait_ms=300, clients_return=False) == [2, 2]
    assert time.perf_counter() - started < 5


def test_the_clients_of_a_call_share_the_next_one_though_none_queued_meanwhile():
    """Clients whose requests all fit in one call leave nobody queued when it ends: their next
    requests, 50 ms apart, still wait for one another rather than go to the model one by one."""
    assert gathered_calls(wait_ms=2000, clients_return=True, queued=0, apart_s=0.05) == [2, 2]


def test_the_page_and_its_files(server):
    status, headers, body = request(server.port, "GET", "/")
    assert status == 200
    assert b'data-testid="canvas"' in body and b'data-testid="guesses"' in body
    assert headers["content-security-policy"].startswith("default-src 'self'")
    status, headers, body = request(server.port, "GET", "/static/page.js")
    assert status == 200 and "javascript" in headers["content-type"]
    assert b"setPointerCapture" in body
    status, _, body = request(server.port, "GET", "/classes")
    assert (status, json.loads(body)) == (200, {"classes": CLASSES})


@pytest.mark.parametrize(
    "path",
    [
        "/static/../serve.py",
        "/static/../../setup.py",
        "/static/%2e%2e/%2e%2e/setup.py",
        "/static/..%2f..%2fsetup.py",
        "/static//etc/passwd",
        "/../../../etc/passwd",
    ],
)
def test_static_files_stay_inside_their_folder(server, path):
    status, _, body = request(server.port, "GET", path)
    assert status in (400, 404), (status, body[:200])
    assert b"setuptools" not in body and b"root:" not in body and b"argparse" not in body


# --- Bad requests: 4xx, {"error": ...}, and the server goes on ------------------------------

STROKE = [[10, 20, 30], [5, 15, 25]]
RAW_STROKE = [[10.5, 20.5, 30.5], [5.25, 15.25, 25.25], [0, 16, 33]]


def drawing_body(drawing) -> dict:
    return {"instances": [{"drawing": drawing}]}


BAD_REQUESTS = {
    "not JSON": (b'{"instances": [', 400, "not JSON"),
    "empty body": (b"", 400, "the body is empty"),
    "only spaces": (b"  \n", 400, "the body is empty"),
    "not an object": (b"[1, 2]", 400, "must be a JSON object"),
    "a string": (b'"cat"', 400, "must be a JSON object"),
    "no instances": ({"drawing": [STROKE]}, 400, 'no "instances"'),
    "instances not a list": ({"instances": {"drawing": [STROKE]}}, 400, "must be a list"),
    "no instance": ({"instances": []}, 400, "is empty"),
    "instance not an object": ({"instances": [[STROKE]]}, 400, "instances[0] must be an object"),
    "instance without drawing": ({"instances": [{"word": "cat"}]}, 400, 'has no "drawing"'),
    "drawing a string": (drawing_body("cat"), 400, "(missing_drawing)"),
    "drawing empty": (drawing_body([]), 400, "(missing_drawing)"),
    "drawing of numbers": (drawing_body([1, 2, 3]), 400, "(bad_stroke)"),
    "stroke of numbers": (drawing_body([[1, 2]]), 400, "(bad_stroke)"),
    "x and y lengths": (drawing_body([[[1, 2, 3], [1, 2]]]), 400, "(xy_length_mismatch)"),
    "raw x and y lengths": (
        drawing_body([[[1.5, 2.5], [1.0, 2.0, 3.0], [0, 1, 2]]]),
        400,
        "instances[0].drawing: ",
    ),
    "a string coordinate": (drawing_body([[[1, "2"], [3, 4]]]), 400, "(non_numeric_coordinate)"),
    "a null coordinate": (drawing_body([[[1, 2], [None, 4]]]), 400, "(non_numeric_coordinate)"),
    "a boolean coordinate": (drawing_body([[[1, True], [3, 4]]]), 400, "(non_numeric_coordinate)"),
    "beyond float32": (drawing_body([[[1, 1e39], [3, 4]]]), 400, "(non_finite_coordinate)"),
    "NaN literal": (b'{"instances": [{"drawing": [[[1, NaN], [3, 4]]]}]}', 400, "not JSON"),
    "one point": (drawing_body([[[1], [1]]]), 400, "(too_few_points)"),
    "empty stroke": (drawing_body([STROKE, [[], []]]), 400, "(empty_stroke)"),
    "over max_points": (
        drawing_body([[list(range(DEFAULT_MAX_POINTS + 1)), [0] * (DEFAULT_MAX_POINTS + 1)]]),
        400,
        f"more than {DEFAULT_MAX_POINTS} points",
    ),
    "second instance bad": (
        {"instances": [{"drawing": [STROKE]}, {"drawing": [[[1, 2], [3]]]}]},
        400,
        "instances[1].drawing",
    ),
    "top_k zero": ({**drawing_body([STROKE]), "parameters": {"top_k": 0}}, 400, "top_k"),
    "top_k negative": ({**drawing_body([STROKE]), "parameters": {"top_k": -1}}, 400, "top_k"),
    "top_k over classes": ({**drawing_body([STROKE]), "parameters": {"top_k": 5}}, 400, "1 to 4"),
    "top_k fraction": ({**drawing_body([STROKE]), "parameters": {"top_k": 2.5}}, 400, "top_k"),
    "top_k string": ({**drawing_body([STROKE]), "parameters": {"top_k": "3"}}, 400, "top_k"),
    "top_k boolean": ({**drawing_body([STROKE]), "parameters": {"top_k": True}}, 400, "top_k"),
    "parameters a list": ({**drawing_body([STROKE]), "parameters": [3]}, 400, '"parameters"'),
    "unknown parameter": ({**drawing_body([STROKE]), "parameters": {"topk": 3}}, 400, "'topk'"),
    "too many instances": (
        {"instances": [{"drawing": [STROKE]}] * 65},
        400,
        "65 instances in one request; at most 64",
    ),
    "body too large": (b'{"instances": [' + b" " * 1_600_000 + b"]}", 413, "--max_body_bytes"),
    "not UTF-8": (b'{"instances": [{"drawing": "\xff\xfe"}]}', 400, "not UTF-8"),
}


@pytest.mark.parametrize("body, status, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_request_is_a_4xx_that_says_what_is_wrong(server, body, status, message):
    got, answer = predict(server.port, body)
    assert (got, sorted(answer)) == (status, ["error"]), answer
    assert message in answer["error"], answer
    # The server goes on serving.
    good, answer = predict(server.port, drawing_body([STROKE]))
    assert good == 200 and len(answer["predictions"]) == 1


def test_raw_times_of_another_length_than_x_and_y_are_a_400(server):
    got, answer = predict(server.port, drawing_body([[[1.5, 2.5], [1.0, 2.0], [0, 1, 2]]]))
    assert got == 400 and "drawing" in answer["error"], answer


def test_a_large_body_without_a_length_is_cut_off_at_the_limit(server):
    """A chunked body declares no length: it is counted as it comes, and refused with 413."""
    import http.client

    chunks = (b"[" if index == 0 else b" " * 65536 for index in range(40))  # 2.5 MB
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("POST", "/predict", body=chunks, encode_chunked=True)
        response = connection.getresponse()
        status, answer = response.status, json.loads(response.read())
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the server closed the connection without an answer")
    finally:
        connection.close()
    assert status == 413 and "--max_body_bytes" in answer["error"]


def test_wrong_method_and_unknown_path_answer_json(server):
    status, _, body = request(server.port, "GET", "/predict")
    assert status == 405 and "GET /predict" in json.loads(body)["error"]
    status, _, body = request(server.port, "POST", "/no-such-route", b"{}")
    assert status == 404 and json.loads(body)["error"].startswith("Not Found")


def test_a_model_that_fails_is_a_500_in_json_and_the_server_goes_on(tmp_path):
    command = [sys.executable, "-m", "tests.support.failing_model_server"]
    with Server([], tmp_path / "server.log", command=command) as failing:
        status, answer = predict(failing.port, drawing_body([[[13, 20], [5, 15]]]))
        assert status == 500
        assert answer == {"error": "the server failed on this request; its log says why"}
        status, answer = predict(failing.port, drawing_body([[[10, 20], [5, 15]]]))
        assert status == 200 and answer["predictions"][0]["probabilities"] == [0.5, 0.5]
        log = failing.log()
    assert "POST /predict failed" in log and "the model failed on purpose" in log


def test_the_serving_benchs_floor_answers_as_the_server_does(server, model_dir, tmp_path):
    """`bench.floor_server`, the floor the serving bench measures the server against, runs the
    same checks and the same model call: the same answers, and the same 400 for a bad one."""
    quickdraw = shared_quickdraw_or_skip()
    bodies = [drawing_body([STROKE[:2]]), drawing_body([RAW_STROKE])]
    bodies += [drawing_body(line["drawing"]) for line in real_drawings(quickdraw, "raw", 3)]
    bodies.append({"instances": [{"drawing": "a cat"}]})
    command = [sys.executable, "-m", "bench.floor_server"]
    with Server(["--model_dir", str(model_dir)], tmp_path / "floor.log", command=command) as floor:
        for body in bodies:
            (status, answer), (floor_status, floor_answer) = (
                predict(server.port, body),
                predict(floor.port, body),
            )
            assert floor_status == status and set(floor_answer) == set(answer), floor_answer
            if status != 200:
                assert status == 400 and floor_answer == answer
                continue
            for mine, its in zip(floor_answer["predictions"], answer["predictions"], strict=True):
                assert mine["labels"] == its["labels"]
                np.testing.assert_allclose(mine["probabilities"], its["probabilities"], atol=1e-6)


# --- Bad starts: one line, exit code 2 ------------------------------------------------------


def start(args: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainer.serve", *args],
        cwd=REPO,
        env=trainer_env(**env),
        capture_output=True,
        text=True,
        timeout=180,
    )


def assert_one_line_exit_2(result, *fragments):
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "python -m trainer.serve" in line]
    assert len(lines) == 1 and lines[0].startswith("python -m trainer.serve: error: "), (
        result.stderr[-3000:]
    )
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""


def test_a_misspelled_flag_exits_2():
    assert_one_line_exit_2(start(["--model-dir", "model"]), "--model-dir")


def test_no_model_dir_and_no_storage_uri_exits_2():
    assert_one_line_exit_2(start([]), "--model_dir is required", "AIP_STORAGE_URI")


def test_a_port_that_is_not_a_number_exits_2(model_dir):
    result = start(["--model_dir", str(model_dir)], AIP_HTTP_PORT="eighty")
    assert_one_line_exit_2(result, "AIP_HTTP_PORT='eighty'")


def test_a_folder_without_a_model_exits_2(tmp_path):
    (tmp_path / "export").mkdir()
    assert_one_line_exit_2(
        start(["--model_dir", str(tmp_path)]), "no exported model", str(tmp_path)
    )
    assert_one_line_exit_2(start(["--model_dir", str(tmp_path / "missing")]), "no exported model")


def test_a_damaged_model_exits_2(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"not a SavedModel")
    assert_one_line_exit_2(start(["--model_dir", str(tmp_path)]), "cannot load the model")
