"""The prediction server under loopback load, beside the SavedModel called in-process, and the
page's guess latency through a real Chromium.

The model is the local preset's (what `make all` exports; untrained weights, as weights do
not change the cost) or `--model_dir`'s, served by `python -m trainer.serve` (its default
signature, `single_view`) on 127.0.0.1. In each of `--repeats` rounds, on real simplified
drawings of the 26 default categories, one drawing per request:

  direct, 1:  the SavedModel called in a fresh process, one drawing per call, back to back,
              with the server's --model_threads (the limit for one client); and again with
              each call after a 0.5 ms sleep, the model's own cost of a pause;
  server, 1:  one client process, requests back to back on one kept-alive connection;
  direct, 8:  the SavedModel on 8 drawings per call (the limit for 8 clients, batched);
  server, 8:  8 client processes at once, each on its own connection.

Within a round the direct calls and the server's requests take turns in CHUNKS chunks, each
bounded in count and in time (CHUNK_SECONDS), so that both meet the same machine: a chunk runs
the four paths in the order above. The server's requests/s count only the span in which all
its clients were sending. The overhead at 1 client and the gain of 8 clients over 1 are
medians over every chunk of every round, each chunk's own ratio. Then Chromium
draws real drawings stroke by stroke on the page and reads, after each stroke, how long the
page took from the stroke's end to showing the new guess.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import multiprocessing
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from bench import wire
from bench.pipeline_bench import SHARED
from bench.trainer_bench import CATEGORIES

REPO = Path(__file__).resolve().parents[1]
DRAWINGS_PER_CATEGORY = 8
# Each round alternates the direct calls and the server's requests in CHUNKS chunks, so that
# both meet the same machine: on a shared host its speed drifts within seconds.
CHUNKS = 8
REQUESTS_PER_CHUNK = {1: 50, 8: 200}  # one-drawing requests: 400 and 1,600 per round
CHUNK_SECONDS = 15
# A server's model call follows the request's trip, never the last call at once: the direct
# calls are also timed each after this long asleep, which shows what a pause alone costs them.
PAUSE_S = 0.0005
PAGE_DRAWINGS = 8
# The table's rows, in order.
FIGURES = ("direct_1", "paused_1", "server_1", "floor_1", "direct_8", "server_8", "instant_1")
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
    from trainer import quiet_start, serve

    quiet_start.import_tensorflow()
    # The server's own setting: on this model and machine one drawing's call is no faster on
    # every core than on the cores less one (see docs/serving.md).
    serve.set_model_threads(serve.default_model_threads())
    _DIRECT["classifier"] = serve.load_classifier(model_dir, "single_view")
    _DIRECT["points"] = [drawing_points(drawing, 20_000) for drawing in drawings]
    for points in _DIRECT["points"]:  # every drawing once, as the server's warm-up sends them
        _DIRECT["classifier"].probabilities([points], 1)


def _direct_chunk(per_call: int, calls: int, first: int, pause_s: float = 0.0) -> list[float]:
    """Milliseconds of each of `calls` calls of the SavedModel on `per_call` drawings, the real
    drawings in turn from the `first`, in the worker process; each after `pause_s` asleep."""
    classifier, points = _DIRECT["classifier"], _DIRECT["points"]
    times = []
    for call in range(calls):
        if pause_s:
            time.sleep(pause_s)
        start = first + call * per_call
        batch = [points[index % len(points)] for index in range(start, start + per_call)]
        started = time.perf_counter()
        classifier.probabilities(batch, per_call)
        times.append((time.perf_counter() - started) * 1000)
    return times


def _direct(pool, per_call: int, calls: int, first: int, pause_s: float = 0.0):
    """`_direct_chunk` in the worker process: (milliseconds of each call, their seconds)."""
    times = pool.apply(_direct_chunk, (per_call, calls, first, pause_s))
    return times, sum(times) / 1000


def _summary(times_ms: list[float], rate: float) -> dict:
    return {
        "rate": rate,
        "p50_ms": statistics.median(times_ms),
        "p99_ms": float(np.percentile(times_ms, 99)),
        "count": len(times_ms),
    }


def load(pool, port: int, bodies: list[bytes], clients: int, requests: int, first: int = 0):
    """`clients` client processes (from `pool`) sending one-drawing requests back to back, each
    on one kept-alive connection, `requests` in all or until CHUNK_SECONDS have passed: between
    them the bodies in turn from the `first`, as the direct calls take the drawings. Returns
    the milliseconds of the requests answered while all the clients were sending, and the
    seconds of that span: from the last client's first request to the first client's last
    answer. Requests/s are then the server's under `clients` clients, not under fewer while
    the pool starts the clients one by one and they finish one by one, when fewer clients
    share the model's calls.

    Each client writes the request's bytes and reads the answer on a plain socket: a client
    that parsed HTTP with `http.client` would spend about as much CPU per request as the
    server does, on the same two cores, and the figures would be the client's."""
    deadline = time.monotonic() + CHUNK_SECONDS
    requests_bytes = [_request_bytes(port, body) for body in bodies]
    work = [
        (port, requests_bytes, first + index, clients, requests // clients, deadline)
        for index in range(clients)
    ]
    results = pool.map(_client, work)
    failures = [status for _, statuses in results for status in statuses if status != 200]
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed: statuses {sorted(set(failures))}")
    # perf_counter is the system's monotonic clock: one timeline across the client processes.
    span_start = max(spans[0][0] for spans, _ in results)
    span_end = min(spans[-1][1] for spans, _ in results)
    if span_end <= span_start:
        raise RuntimeError("the clients never all sent at once: raise REQUESTS_PER_CHUNK")
    times = [
        (end - start) * 1000
        for spans, _ in results
        for start, end in spans
        if span_start < end <= span_end
    ]
    return times, span_end - span_start


def _request_bytes(port: int, body: bytes) -> bytes:
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _client(work) -> tuple[list[tuple[float, float]], list[int]]:
    """One client process: (each request's start and end, their statuses)."""
    port, requests_bytes, first, step, count, deadline = work
    spans, statuses, buffer = [], [], b""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(count):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            connection.sendall(requests_bytes[(first + step * index) % len(requests_bytes)])
            status, buffer = _read_answer(connection, buffer)
            spans.append((started, time.perf_counter()))
            statuses.append(status)
    return spans, statuses


def _read_answer(connection, buffer: bytes) -> tuple[int, bytes]:
    """The status of the next answer on `connection`, and the bytes read past its body."""
    head, _, rest = wire.read_message(connection, buffer)
    return int(head[9:12]), rest


@contextlib.contextmanager
def server(command: list[str], log_path: Path):
    """`command` (a server taking `--port`) on a free port of 127.0.0.1, until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [*command, "--port", str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {log_path.read_text()}")
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


def _round(ports: dict, bodies: list[bytes], pool, clients_pool) -> dict:
    """One round of CHUNKS chunks, each: the direct calls and the server's requests in turn,
    for 1 client and then for 8; then one client of the server around an instant model.
    `ports`: the server's, bench.floor_server's and bench.instant_server's."""
    # Each path's chunks: (milliseconds of each call or request, seconds they took together).
    chunks = {name: [] for name in FIGURES if name != "instant_1"}
    for chunk in range(CHUNKS):
        # Every path takes the same drawings: a chunk's, in turn through all of them.
        requests, first = REQUESTS_PER_CHUNK[1], chunk * REQUESTS_PER_CHUNK[1]
        chunks["direct_1"].append(_direct(pool, 1, requests, first))
        chunks["paused_1"].append(_direct(pool, 1, requests, first, PAUSE_S))
        # The server and the floor take turns at going first: whichever goes second meets
        # caches the other's requests have just warmed.
        order = ("server", "floor") if chunk % 2 == 0 else ("floor", "server")
        for name in order:
            chunks[f"{name}_1"].append(load(clients_pool, ports[name], bodies, 1, requests, first))
        requests, first = REQUESTS_PER_CHUNK[8], chunk * REQUESTS_PER_CHUNK[8]
        chunks["direct_8"].append(_direct(pool, 8, requests // 8, first))
        chunks["server_8"].append(load(clients_pool, ports["server"], bodies, 8, requests, first))
    chunks["instant_1"] = [load(clients_pool, ports["instant"], bodies, 1, REQUESTS_PER_CHUNK[1])]
    figures = {}
    for name, samples in chunks.items():
        times = [elapsed for chunk_times, _ in samples for elapsed in chunk_times]
        drawings = len(times) * (8 if name == "direct_8" else 1)  # its calls take 8 each
        figures[name] = _summary(times, drawings / sum(seconds for _, seconds in samples))
    figures["overhead"] = figures["server_1"]["p50_ms"] / figures["direct_1"]["p50_ms"] - 1
    figures["pause_cost"] = figures["paused_1"]["p50_ms"] / figures["direct_1"]["p50_ms"] - 1
    figures["scaling"] = figures["server_8"]["rate"] / figures["server_1"]["rate"]

    # Chunk by chunk, each side beside the other in time: the machine's drift over a round
    # moves both sides of each ratio alike.
    def over_direct(name: str) -> list[float]:
        pairs = zip(chunks[name], chunks["direct_1"])
        return [
            statistics.median(mine) / statistics.median(direct) - 1
            for (mine, _), (direct, _) in pairs
        ]

    figures["chunk_overheads"] = over_direct("server_1")
    figures["chunk_floors"] = over_direct("floor_1")
    figures["chunk_scalings"] = [
        (len(eight) / eight_s) / (len(one) / one_s)
        for (one, one_s), (eight, eight_s) in zip(chunks["server_1"], chunks["server_8"])
    ]
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
        serve = [sys.executable, "-m", "trainer.serve", "--model_dir", model_dir]
        floor = [sys.executable, "-m", "bench.floor_server", "--model_dir", model_dir]
        instant = [sys.executable, "-m", "bench.instant_server"]
        with (
            server(serve, directory / "server.log") as port,
            server(floor, directory / "floor_server.log") as floor_port,
            server(instant, directory / "instant_server.log") as instant_port,
            context.Pool(1, initializer=_load_direct, initargs=(model_dir, drawings)) as pool,
            context.Pool(8) as clients_pool,
        ):
            load(clients_pool, port, bodies, 1, len(bodies))  # warm: every drawing once
            load(clients_pool, floor_port, bodies, 1, len(bodies))
            load(clients_pool, instant_port, bodies, 1, len(bodies))
            ports = {"server": port, "floor": floor_port, "instant": instant_port}
            for round_number in range(1, repeats + 1):
                rounds.append(_round(ports, bodies, pool, clients_pool))
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
        for name in FIGURES
    }
    results["pause_cost"] = statistics.median(r["pause_cost"] for r in rounds)
    # The two targets' figures, and the floor's overhead: medians over every chunk of every
    # round, with the middle half of the chunks' figures to show how far one chunk alone can
    # stray on this machine.
    for name, chunks in (
        ("overhead", "chunk_overheads"),
        ("floor_overhead", "chunk_floors"),
        ("scaling", "chunk_scalings"),
    ):
        values = [value for r in rounds for value in r[chunks]]
        results[name] = statistics.median(values)
        results[f"{name}_middle"] = tuple(float(q) for q in np.percentile(values, [25, 75]))
    results["page"] = page
    return results


def table(results: dict) -> str:
    low, high = results["overhead_middle"]
    floor_low, floor_high = results["floor_overhead_middle"]
    rows = [
        "| path | clients | requests/s | p50 | p99 |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "direct_1": ("SavedModel in-process, 1 drawing per call (the limit)", "1"),
        "paused_1": ("the same, each call after a 0.5 ms sleep (model time only)", "1"),
        "server_1": ("trainer.serve over loopback, 1 drawing per request", "1"),
        "floor_1": ("the floor: the model behind one blocking socket (bench.floor_server)", "1"),
        "direct_8": ("SavedModel in-process, 8 drawings per call (drawings/s)", "8 batched"),
        "server_8": ("trainer.serve over loopback, 1 drawing per request", "8"),
        "instant_1": ("its app around an instant model (bench.instant_server)", "1"),
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
        f"(target: at most +20%; the middle half of the chunks: {low:+.0%} to {high:+.0%}); "
        "the server's own handling of a request, measured around an "
        f"instant model: {results['instant_1']['p50_ms']:.2f} ms; the model's own call after "
        f"a pause, as a server's always is: {results['pause_cost']:+.0%}; the floor's overhead, "
        f"no server framework at all: {results['floor_overhead']:+.0%} (the middle half: "
        f"{floor_low:+.0%} to {floor_high:+.0%}).",
        f"8 clients over 1: {results['scaling']:.2f}x the requests/s (target: at least 2x; "
        f"the middle half of the chunks: {results['scaling_middle'][0]:.2f}x to "
        f"{results['scaling_middle'][1]:.2f}x); "
        f"p99 at 8 clients {results['server_8']['p99_ms']:.1f} ms (target: under 100 ms).",
        "The table: medians over the rounds. Within a round the direct calls and the server's",
        "requests take turns in chunks; the two ratios are medians over all the chunks, each",
        "chunk's server figure over its neighbour's.",
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
