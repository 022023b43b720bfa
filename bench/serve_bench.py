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

Each load is bounded: at most LOAD_REQUESTS requests and LOAD_SECONDS seconds. Then Chromium
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
LOAD_REQUESTS = {1: 400, 8: 1600}
LOAD_SECONDS = 30
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


def _direct_ms(model_dir: str, drawings: list, per_call: int, seconds: float) -> list[float]:
    """Milliseconds per call of the SavedModel on `per_call` drawings, in this process."""
    from quickdraw.drawings import drawing_points
    from trainer import serve

    classifier = serve.load_classifier(model_dir, "single_view")
    points = [drawing_points(drawing, 20_000) for drawing in drawings]
    batches = [points[start : start + per_call] for start in range(0, len(points), per_call)]
    batches = [batch for batch in batches if len(batch) == per_call]
    for batch in batches[:10]:
        classifier.probabilities(batch, per_call)
    times, deadline = [], time.perf_counter() + seconds
    for batch in itertools.cycle(batches):
        started = time.perf_counter()
        classifier.probabilities(batch, per_call)
        times.append((time.perf_counter() - started) * 1000)
        if len(times) >= LOAD_REQUESTS[1] or time.perf_counter() > deadline:
            return times
    return times


def direct(model_dir: str, drawings: list, per_call: int) -> dict:
    """`_direct_ms` in a fresh process, as a server runs the model: alone."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        times = pool.apply(_direct_ms, (model_dir, drawings, per_call, LOAD_SECONDS))
    return _summary(times, per_call * len(times) / (sum(times) / 1000))


def _summary(times_ms: list[float], rate: float) -> dict:
    return {
        "rate": rate,
        "p50_ms": statistics.median(times_ms),
        "p99_ms": float(np.percentile(times_ms, 99)),
        "count": len(times_ms),
    }


def load(port: int, bodies: list[bytes], clients: int) -> dict:
    """`clients` threads sending one-drawing requests back to back, each on one kept-alive
    connection, until LOAD_REQUESTS[clients] answers or LOAD_SECONDS have passed."""
    times: list[float] = []
    lock, failures = threading.Lock(), []
    deadline = time.perf_counter() + LOAD_SECONDS

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        for body in itertools.islice(itertools.cycle(bodies), offset, None):
            with lock:
                if len(times) >= LOAD_REQUESTS[clients] or time.perf_counter() > deadline:
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
    return _summary(times, len(times) / wall)


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


def run(model_dir: str | None = None, repeats: int = 3, log=print) -> dict:
    drawings = real_drawings()
    bodies = [orjson.dumps({"instances": [{"drawing": drawing}]}) for drawing in drawings]
    rounds = {"direct_1": [], "server_1": [], "direct_8": [], "server_8": []}
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as temp:
        directory = Path(temp)
        if model_dir is None:
            model_dir = str(_export_local_preset(directory / "model"))
            log(f"model: the local preset's architecture, exported to {model_dir}")
        with server(model_dir, directory) as port:
            load(port, bodies[:WARMUP_REQUESTS], 1)
            for round_number in range(1, repeats + 1):
                rounds["direct_1"].append(direct(model_dir, drawings, 1))
                rounds["server_1"].append(load(port, bodies, 1))
                rounds["direct_8"].append(direct(model_dir, drawings, 8))
                rounds["server_8"].append(load(port, bodies, 8))
                figures = ", ".join(
                    f"{name} {results[-1]['rate']:.0f}/s p50 {results[-1]['p50_ms']:.1f} ms"
                    for name, results in rounds.items()
                )
                log(f"round {round_number}: {figures}")
            page = page_latencies(
                port, drawings[::DRAWINGS_PER_CATEGORY][:PAGE_DRAWINGS], directory
            )
    results = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in rounds.items()
    }
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
    overhead = results["server_1"]["p50_ms"] / results["direct_1"]["p50_ms"] - 1
    scaling = results["server_8"]["rate"] / results["server_1"]["rate"]
    rows += [
        "",
        f"Server overhead at 1 client (p50 over the direct call's): {overhead:+.0%} "
        "(target: at most +20%).",
        f"8 clients over 1: {scaling:.2f}x the requests/s (target: at least 2x); p99 at 8 "
        f"clients {results['server_8']['p99_ms']:.1f} ms (target: under 100 ms).",
        "Medians over the rounds.",
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
