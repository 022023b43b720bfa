"""Conversion throughput: the tutorial's loop (a) against this pipeline (b, c); raw ink
against the same drawings simplified (`run_raw`).

The input repeats every file of ../shared/quickdraw/simplified (22,638 real drawings) a
number of times, each category into one file as in the public bucket. Each case runs on
a small and a large input; the rate between the two (medians of a few runs) excludes
process start-up. All cases read every drawing (`--split=hash`).

Each repeat runs every case once, one after the other, so that a slow spell of a shared
machine slows all cases alike instead of one case's runs. The CPU time of each run (its
whole process tree) gives a second rate, drawings per CPU-second, which another job on
the machine disturbs much less than the wall-clock rate.

`run_raw` converts the raw drawings of ../shared/quickdraw/raw that simplified/ also holds,
repeated past 100,000, and Google's simplified versions of the very same drawings, with
case (b)'s command: raw lines are about 7 times the bytes, floats rather than small
integers, and are simplified on the way.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import orjson

from bench import measure

SHARED = Path(__file__).resolve().parents[2] / "shared" / "quickdraw" / "simplified"
RAW = SHARED.parent / "raw"
MEMORY_TARGET_BYTES = 2 * 1024**3
RAW_TARGET = 0.3  # raw ink's rate per core, as a share of the same drawings' simplified rate


@dataclasses.dataclass
class CaseResult:
    name: str
    rate: float  # drawings per second, marginal
    cores: int
    peak_rss_bytes: int  # at the large input
    cpu_rate: float  # drawings per CPU-second of the whole process tree, marginal

    @property
    def per_core(self) -> float:
        return self.rate / self.cores


def make_input(folder: Path, copies: int) -> int:
    """Writes each category's file `copies` times over into one file; returns drawings."""
    folder.mkdir(parents=True, exist_ok=True)
    drawings = 0
    for source in sorted(SHARED.glob("*.ndjson")):
        text = source.read_bytes()
        if not text.endswith(b"\n"):
            text += b"\n"
        (folder / source.name).write_bytes(text * copies)
        drawings += text.count(b"\n") * copies
    return drawings


CASES = {
    "a": ("(a) tutorial loop, 1 process", 1, [sys.executable, "-m", "bench.tutorial_baseline"]),
    "b": (
        "(b) pipeline, FnApiRunner, 1 worker",
        1,
        [sys.executable, "-m", "pipeline", "--split", "hash", "--overwrite"],
    ),
    "c": (
        "(c) pipeline, 2 worker processes",
        2,
        [
            sys.executable,
            "-m",
            "pipeline",
            "--split",
            "hash",
            "--overwrite",
            "--direct_num_workers",
            "2",
            "--direct_running_mode",
            "multi_processing",
        ],
    ),
}


def run(
    small_copies: int = 1, large_copies: int = 23, repeats: int = 3, log=print
) -> list[CaseResult]:
    if not SHARED.is_dir():
        raise SystemExit(f"benchmark input needs real drawings at {SHARED}")
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as temp:
        temp = Path(temp)
        sizes = {
            "small": make_input(temp / "small", small_copies),
            "large": make_input(temp / "large", large_copies),
        }
        log(
            f"input: {sizes['small']:,} and {sizes['large']:,} real drawings "
            f"({small_copies} and {large_copies} copies of {SHARED})"
        )
        commands = {name: command for name, _, command in CASES.values()}
        inputs = {
            name: {size: str(temp / size / "*.ndjson") for size in sizes} for name in commands
        }
        runs = _timed_runs(commands, inputs, temp, repeats, log)
    results = [_result(name, cores, sizes, runs[name], log) for name, cores, _ in CASES.values()]
    return results


def _timed_runs(commands: dict, inputs: dict, temp: Path, repeats: int, log) -> dict:
    """Each command on its small and its large input (`inputs[name][size]`), in turn, `repeats`
    times over: {name: {"small": [Measurement], "large": [...]}}."""
    runs = {name: {"small": [], "large": []} for name in commands}
    for repeat in range(repeats):
        for index, (name, command) in enumerate(commands.items()):
            for size in ("small", "large"):
                output = str(temp / f"out_{index}_{size}")
                flags = ["--input", inputs[name][size], "--output_dir", output]
                runs[name][size].append(measure.run(command + flags))
            small, large = runs[name]["small"][-1], runs[name]["large"][-1]
            log(
                f"  run {repeat + 1}/{repeats} {name}: small {small.seconds:.1f} s "
                f"({small.cpu_seconds:.1f} s CPU), large {large.seconds:.1f} s "
                f"({large.cpu_seconds:.1f} s CPU)"
            )
    return runs


def _result(name: str, cores: int, sizes: dict, runs: dict, log) -> CaseResult:
    """The marginal rates between the small and the large input, in wall and CPU seconds."""
    small, large = runs["small"], runs["large"]
    rate = measure.marginal_rate(
        sizes["small"], sizes["large"], [m.seconds for m in small], [m.seconds for m in large]
    )
    cpu_rate = measure.marginal_rate(
        sizes["small"],
        sizes["large"],
        [m.cpu_seconds for m in small],
        [m.cpu_seconds for m in large],
    )
    peak = max(m.peak_rss_bytes for m in large)
    log(
        f"  {name}: {rate:,.0f} drawings/s, {cpu_rate:,.0f} per CPU-second; large-run "
        f"median {statistics.median(m.seconds for m in large):.1f} s, peak "
        f"{peak / 2**20:,.0f} MiB"
    )
    return CaseResult(name, rate, cores, peak, cpu_rate)


def table(results: list[CaseResult]) -> str:
    a, b, c = results
    rows = [
        "| case | drawings/s | per core | per CPU-second | peak memory (large input) "
        "| ratio | target |",
        "|---|---|---|---|---|---|---|",
        f"| {a.name} | {a.rate:,.0f} | {a.per_core:,.0f} | {a.cpu_rate:,.0f} "
        f"| {a.peak_rss_bytes / 2**20:,.0f} MiB | 1.00x | baseline |",
        f"| {b.name} | {b.rate:,.0f} | {b.per_core:,.0f} | {b.cpu_rate:,.0f} "
        f"| {b.peak_rss_bytes / 2**20:,.0f} MiB "
        f"| {b.rate / a.rate:.2f}x (a); per CPU-second {b.cpu_rate / a.cpu_rate:.2f}x "
        f"| >= 3x (a), < 2 GiB: "
        f"{_verdict(b.rate >= 3 * a.rate and b.peak_rss_bytes < MEMORY_TARGET_BYTES)} |",
        f"| {c.name} | {c.rate:,.0f} | {c.per_core:,.0f} | {c.cpu_rate:,.0f} "
        f"| {c.peak_rss_bytes / 2**20:,.0f} MiB "
        f"| {c.rate / b.rate:.2f}x (b) | >= 1.6x (b): {_verdict(c.rate >= 1.6 * b.rate)} |",
    ]
    return "\n".join(rows)


def projection(per_core: float, drawings: int = 50_000_000) -> str:
    """Hours of Dataflow compute for the whole dataset at the measured per-core rate."""
    lines = [
        f"Projection for {drawings / 1e6:.0f}M drawings at {per_core:,.0f} drawings/s per "
        "vCPU (conversion only; add ~4 min of worker start-up and the shuffle):"
    ]
    for vcpus in (32, 128):
        minutes = drawings / (per_core * vcpus) / 60
        lines.append(f"  {vcpus} vCPUs: {minutes:,.1f} min of conversion")
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


# --- Raw ink against the same drawings simplified ---------------------------------------


def make_pair_inputs(folder: Path, copies: int) -> int:
    """Writes, `copies` times over, every raw drawing of ../shared/quickdraw/raw that
    simplified/ also holds (same key_id) into raw/, and Google's simplified version of each
    into simplified/, one file per category in each. Returns the drawings of each."""
    drawings = 0
    for kind in ("raw", "simplified"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for raw_path in sorted(RAW.glob("*.ndjson")):
        simplified = {}
        for line in (SHARED / raw_path.name).read_bytes().splitlines(keepends=True):
            simplified[orjson.loads(line)["key_id"]] = line
        raw_lines, simplified_lines = [], []
        for line in raw_path.read_bytes().splitlines(keepends=True):
            if not line.endswith(b"\n"):
                continue  # the excerpt's last line is cut short
            key_id = orjson.loads(line)["key_id"]
            if key_id in simplified:
                raw_lines.append(line)
                simplified_lines.append(simplified[key_id])
        (folder / "raw" / raw_path.name).write_bytes(b"".join(raw_lines) * copies)
        (folder / "simplified" / raw_path.name).write_bytes(b"".join(simplified_lines) * copies)
        drawings += len(raw_lines) * copies
    return drawings


def run_raw(
    small_copies: int = 1, large_copies: int = 13, repeats: int = 3, log=print
) -> list[CaseResult]:
    """(raw, simplified): the pipeline's rate on raw ink and on the same drawings simplified,
    1 worker each, the two runs of each repeat one after the other."""
    if not RAW.is_dir():
        raise SystemExit(f"benchmark input needs real raw drawings at {RAW}")
    command = CASES["b"][2]
    with tempfile.TemporaryDirectory(prefix="bench_raw_") as temp:
        temp = Path(temp)
        sizes = {
            "small": make_pair_inputs(temp / "small", small_copies),
            "large": make_pair_inputs(temp / "large", large_copies),
        }
        log(
            f"input: {sizes['small']:,} and {sizes['large']:,} drawings ({small_copies} and "
            f"{large_copies} copies of the raw drawings of {RAW} that simplified/ also "
            "holds), raw and simplified"
        )
        names = {kind: f"{kind} lines, 1 worker" for kind in ("raw", "simplified")}
        commands = {names[kind]: command for kind in names}
        inputs = {
            names[kind]: {size: str(temp / size / kind / "*.ndjson") for size in sizes}
            for kind in names
        }
        runs = _timed_runs(commands, inputs, temp, repeats, log)
    return [_result(name, 1, sizes, runs[name], log) for name in commands]


def raw_table(results: list[CaseResult]) -> str:
    raw, simplified = results
    ratio, cpu_ratio = raw.per_core / simplified.per_core, raw.cpu_rate / simplified.cpu_rate
    return "\n".join(
        [
            "| input | drawings/s per core | per CPU-second | peak memory (large input) "
            "| ratio | target |",
            "|---|---|---|---|---|---|",
            f"| {simplified.name} | {simplified.per_core:,.0f} | {simplified.cpu_rate:,.0f} "
            f"| {simplified.peak_rss_bytes / 2**20:,.0f} MiB | 1.00x | baseline |",
            f"| {raw.name} | {raw.per_core:,.0f} | {raw.cpu_rate:,.0f} "
            f"| {raw.peak_rss_bytes / 2**20:,.0f} MiB | {ratio:.2f}x; per CPU-second "
            f"{cpu_ratio:.2f}x | >= {RAW_TARGET}x: {_verdict(ratio >= RAW_TARGET)} |",
        ]
    )
