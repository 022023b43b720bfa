"""The prediction server under loopback load, beside the SavedModel called in-process, and the
page's guess latency through a real Chromium.

The model is the local preset's (what `make all` exports; untrained weights, as weights do
not change the cost) or `--model_dir`'s, served by `python -m trainer.serve` (its default
signature, `single_view`) on 127.0.0.1. In each of `--repeats` rounds, on real simplified
drawings of the 26 default categories, one drawing per request:

  direct, 1:  the SavedModel called in a fresh process, one drawing per call, back to back
              (the limit for one client);
  server, 1:  one client, requests back to back on one kept-alive connection;
  direct, 8:  the SavedModel on 8 drawings per call (the limit for 8 clients, batched);
  server, 8:  8 clients at once, each on its own connection.

Within a round the direct calls and the server's requests take turns in CHUNKS chunks, each
bounded in count and in time (CHUNK_SECONDS), so that both meet the same machine. Then Chromium
draws real drawings stroke by stroke on the page and reads, after each stroke, how long the
page took from the stroke's end to showing the new guess.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

from bench.pipeline_bench import SHARED
from bench.trainer_bench import CATEGORIES

REPO = Path(__file__).resolve().parents[1]
DRAWINGS_PER_CATEGORY = 8
# Each round alternates the direct calls and the server's requests in CHUNKS chunks, so that
# both meet the same machine: on a shared host its speed drifts within seconds.
CHUNKS = 8
REQUESTS_PER_CHUNK = {1: 50, 8: 200}  # one-drawing requests: 400 and 1,600 per round
CHUNK_SECONDS = 15
WARMUP_REQUESTS = 30
PAGE_DRAWINGS = 8
SCALE, MARGIN = 1.4, 20  # simplified drawings (0..255) onto the page's 400-pixel canvas


def real_drawings() -> list:
    """The first DRAWINGS_PER_CATEGORY simplified drawings of each default category."""
    drawings = []
    for category in CATEGORIES.split(","):
        with open(SHARED / f"{category}.ndjson", "rb") as file:
            for line in itertools.islice(file, DRAWINGS_PER_CATEGORY):
                drawings.append(orjson.loads(line)["drawing"])
    return drawings


def _export_local_preset(directory: Path) -> Path:
    from trainer import config as config_lib
    from trainer import export, model

    required = ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]
    config = config_lib.parse_flags([*required, "--preset=local"])
    classes = sorted(CATEGORIES.split(","))
    weights = model.build_model(config, len(classes)).get_weights()
    export.export_model(weights, config, classes, str(directory / "export"))
    return directory


# The SavedModel of the direct path, loaded once in the worker process that calls it.
_DIRECT: dict = {}


def _load_direct(model_dir: str, drawings: list) -> None:
    from quickdraw.drawings import drawing_points
    from trainer import serve

    _DIRECT["classifier"] = serve.load_classifier(model_dir, "single_view")
    _DIRECT["points"] = [drawing_points(drawing, 20_000) for drawing in drawings]
    _DIRECT["next"] = 0
    for points in _DIRECT["points"][:10]:  # warm
        _DIRECT["classifier"].probabilities([points], 1)


def _direct_chunk(per_call: int, calls: int) -> list[float]:
    """Milliseconds of each of `calls` calls of the SavedModel on `per_call` drawings, taken in
    turn from the real drawings, in the worker process."""
    classifier, points = _DIRECT["classifier"], _DIRECT["points"]
    times = []
    for _ in range(calls):
        start = _DIRECT["next"] % (len(points) - per_call)
        _DIRECT["next"] += per_call
        batch = points[start : start + per_call]
        started = time.perf_counter()
        classifier.probabilities(batch, per_call)
        times.append((time.perf_counter() - started) * 1000)
    return times


def _summary(times_ms: list[float], rate: float) -> dict:
    return {
        "rate": rate,
        "p50_ms": statistics.median(times_ms),
        "p99_ms": float(np.percentile(times_ms, 99)),
        "count": len(times_ms),
    }


def load(port: int, bodies: list[bytes], clients: int, requests: int) -> tuple[list[float], float]:
    """`clients` threads sending one-drawing requests back to back, each on one kept-alive
    connection, until `requests` answers or CHUNK_SECONDS have passed. Returns each request's
    milliseconds and the wall-clock seconds of the whole."""
    times: list[float] = []
    lock, failures = threading.Lock(), []
    deadline = time.perf_counter() + CHUNK_SECONDS

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        for body in itertools.islice(itertools.cycle(bodies), offset, None):
            with lock:
                if len(times) >= requests or time.perf_counter() > deadline:
                    break
            started = time.perf_counter()
            connection.request("POST", "/predict", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                times.append(elapsed)
                if response.status != 200:
                    failures.append(response.status)
        connection.close()

    threads = [
        threading.Thread(target=client, args=(index * 7,), daemon=True) for index in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed: statuses {sorted(set(failures))}")
    return times, wall


@contextlib.contextmanager
def server(model_dir: str, directory: Path):
    """`python -m trainer.serve` on a free port of 127.0.0.1, until the block ends."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(directory / "server.log", "wb")
    command = [sys.executable, "-m", "trainer.serve", "--model_dir", model_dir]
    process = subprocess.Popen(
        [*command, "--port", str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {(directory / 'server.log').read_text()}")
            with contextlib.suppress(OSError):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /health in 180 s")
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def page_latencies(port: int, drawings: list, directory: Path) -> list[float] | str:
    """Milliseconds from each stroke's end to its guess on the page, through Chromium; or why
    none were measured."""
    from bench.browser import BrowserMissing, draw_stroke, start_chromium, wait_for_guess

    try:
        driver = start_chromium(directory)
    except BrowserMissing as missing:
        return f"skipped: {missing}"
    latencies = []
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        rect = driver.execute_script(
            "return document.querySelector('[data-testid=\"canvas\"]').getBoundingClientRect();"
        )
        clear = driver.find_element("css selector", '[data-testid="clear"]')
        left, top = rect["left"] + MARGIN, rect["top"] + MARGIN
        for drawing in drawings:
            drawn = 0
            for count, (xs, ys) in enumerate((stroke[:2] for stroke in drawing), 1):
                points = []
                for x, y in zip(xs, ys):
                    point = (round(left + SCALE * x), round(top + SCALE * y))
                    if not points or points[-1] != point:  # the page skips a pointer at rest
                        points.append(point)
                draw_stroke(driver, points)
                drawn += len(points)
                if drawn < 2:
                    continue  # a lone dot: no drawing to guess yet
                latencies.append(float(wait_for_guess(driver, count)["latencyMs"]))
            clear.click()
    finally:
        driver.quit()
    return latencies


def _round(port: int, bodies: list[bytes], pool) -> dict:
    """One round: for 1 and for 8 clients, direct chunks and server chunks in turn."""
    figures = {}
    for clients in (1, 8):
        direct_times, served_times, served_wall = [], [], 0.0
        requests = REQUESTS_PER_CHUNK[clients]
        for _ in range(CHUNKS):
            direct_times += pool.apply(_direct_chunk, (clients, requests // clients))
            times, wall = load(port, bodies, clients, requests)
            served_times += times
            served_wall += wall
        drawings_per_s = clients * len(direct_times) / (sum(direct_times) / 1000)
        figures[f"direct_{clients}"] = _summary(direct_times, drawings_per_s)
        figures[f"server_{clients}"] = _summary(served_times, len(served_times) / served_wall)
    figures["overhead"] = figures["server_1"]["p50_ms"] / figures["direct_1"]["p50_ms"] - 1
    figures["scaling"] = figures["server_8"]["rate"] / figures["server_1"]["rate"]
    return figures


def run(model_dir: str | None = None, repeats: int = 3, log=print) -> dict:
    drawings = real_drawings()
    bodies = [orjson.dumps({"instances": [{"drawing": drawing}]}) for drawing in drawings]
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as temp:
        directory = Path(temp)
        if model_dir is None:
            model_dir = str(_export_local_preset(directory / "model"))
            log(f"model: the local preset's architecture, exported to {model_dir}")
        context = multiprocessing.get_context("spawn")
        with (
            server(model_dir, directory) as port,
            context.Pool(1, initializer=_load_direct, initargs=(model_dir, drawings)) as pool,
        ):
            load(port, bodies[:WARMUP_REQUESTS], 1, WARMUP_REQUESTS)
            for round_number in range(1, repeats + 1):
                rounds.append(_round(port, bodies, pool))
                figures = ", ".join(
                    f"{name} {rounds[-1][name]['rate']:.0f}/s p50 {rounds[-1][name]['p50_ms']:.1f} "
                    f"p99 {rounds[-1][name]['p99_ms']:.0f} ms"
                    for name in ("direct_1", "server_1", "direct_8", "server_8")
                )
                log(f"round {round_number}: {figures}; overhead {rounds[-1]['overhead']:+.0%}")
            page = page_latencies(
                port, drawings[::DRAWINGS_PER_CATEGORY][:PAGE_DRAWINGS], directory
            )
    results = {
        name: {key: statistics.median(r[name][key] for r in rounds) for key in rounds[0][name]}
        for name in ("direct_1", "server_1", "direct_8", "server_8")
    }
    for name in ("overhead", "scaling"):
        results[name] = statistics.median(r[name] for r in rounds)
    results["page"] = page
    return results


def table(results: dict) -> str:
    rows = [
        "| path | clients | requests/s | p50 | p99 |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "direct_1": ("SavedModel in-process, 1 drawing per call (the limit)", "1"),
        "server_1": ("trainer.serve over loopback, 1 drawing per request", "1"),
        "direct_8": ("SavedModel in-process, 8 drawings per call (drawings/s)", "8 batched"),
        "server_8": ("trainer.serve over loopback, 1 drawing per request", "8"),
    }
    for name, (label, clients) in labels.items():
        figures = results[name]
        rows.append(
            f"| {label} | {clients} | {figures['rate']:,.0f} | {figures['p50_ms']:.1f} ms "
            f"| {figures['p99_ms']:.1f} ms |"
        )
    rows += [
        "",
        f"Server overhead at 1 client (p50 over the direct call's): {results['overhead']:+.0%} "
        "(target: at most +20%).",
        f"8 clients over 1: {results['scaling']:.2f}x the requests/s (target: at least 2x); "
        f"p99 at 8 clients {results['server_8']['p99_ms']:.1f} ms (target: under 100 ms).",
        "Medians over the rounds of each figure, and of each round's own ratios; within a round",
        "the direct calls and the server's requests take turns in chunks.",
    ]
    page = results["page"]
    if isinstance(page, str):
        rows.append(f"Page: {page}")
    else:
        rows.append(
            f"Page, stroke end to guess shown, {len(page)} strokes: p50 "
            f"{statistics.median(page):.0f} ms, p90 {np.percentile(page, 90):.0f} ms "
            "(target: p90 under 150 ms)."
        )
    return "\n".join(rows)
