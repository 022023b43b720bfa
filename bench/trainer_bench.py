"""Training input speed and serving latency, on TFRecords the pipeline writes from real drawings.

For batch 8 and 64, the trainer's training step is fed by (a) a plain `padded_batch` of
shuffled records, as the tutorial's input did, (b) the trainer's bucketed input pipeline,
and (ref) the same bucketed batches already in memory, which isolates the input cost; the
three take turns in each of the `--repeats` rounds, and the ratios are medians of the rounds';
(b)'s own CPU cost per drawing is timed with no training beside it.
Then the exported model's latency for one ~100-point drawing, warm, on this CPU, each in a
fresh process: with the default flags, and with the local preset (eight views, and its
single-view signature).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.pipeline_bench import SHARED

CATEGORIES = "bear,beard,bird,bowtie,circle,cookie,crab,dog,dragon,ear,eye,eyeglasses,face,hat,"
CATEGORIES += "headphones,hot dog,monkey,moustache,mouth,necklace,nose,sandwich,sock,wine bottle,"
CATEGORIES += "wine glass,zigzag"
BATCH_SIZES = (8, 64)
INPUTS = ("plain", "bucketed", "in_memory")  # (a), (b), and (b) already in memory


def _write_records(folder: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "--input",
            str(SHARED / "*.ndjson"),
            "--output_dir",
            str(folder),
            "--categories",
            CATEGORIES,
            "--train_per_class",
            "120",
            "--eval_per_class",
            "30",
        ],
        check=True,
        capture_output=True,
    )


def _measure(folder: Path, repeats: int) -> dict:
    # TensorFlow is imported here, so that `python -m bench --only pipeline` never loads it.
    from bench import training_speed
    from trainer import checks, data, export, model
    from trainer import config as config_lib

    pattern = str(folder / "training.tfrecord-*")
    classes = checks.read_classes(str(folder / "training.tfrecord.classes"))
    results = {}
    for batch_size in BATCH_SIZES:
        config = config_lib.parse_flags(
            [
                "--training_data=x",
                "--eval_data=x",
                "--classes_file=x",
                "--model_dir=x",
                f"--batch_size={batch_size}",
            ]
        )
        # At least 1,280 drawings and 60 steps per case: at batch 64, 20 steps (7 s) gave
        # rates 15% apart from one case to the next on a busy machine.
        steps, warmup = max(60, 1280 // batch_size), 3
        # The three inputs take turns within each round, so that the machine's speed, which
        # drifts over minutes on a shared host, weighs on all of them alike; the ratios are
        # the medians of each round's own ratios.
        rounds = [
            {
                name: training_speed.examples_per_second(
                    config,
                    _input(name, pattern, batch_size, steps + warmup),
                    len(classes),
                    steps=steps,
                    warmup_steps=warmup,
                )
                for name in INPUTS
            }
            for _ in range(repeats)
        ]
        for name in INPUTS:
            results[f"{name}@{batch_size}"] = statistics.median(r[name] for r in rounds)
        for name in ("plain", "in_memory"):
            results[f"bucketed_over_{name}@{batch_size}"] = statistics.median(
                r["bucketed"] / r[name] for r in rounds
            )
        results[f"padding_plain@{batch_size}"] = training_speed.padding_fraction(
            training_speed.plain_dataset(pattern, batch_size), 100
        )
        results[f"padding_bucketed@{batch_size}"] = training_speed.padding_fraction(
            data.dataset(pattern, batch_size, training=True), 100
        )
        results[f"input_cpu_us@{batch_size}"] = statistics.median(
            _input_cpu_per_drawing(pattern, batch_size) for _ in range(repeats)
        )

    # Latency of the exported model (weights do not change the cost) on a real drawing of
    # about 100 points: the default (tutorial) model, and the local preset's, which `make
    # all` exports, through both of its signatures (eight views, and the drawing alone).
    drawing = _drawing_of_about(100)
    required = ["--training_data=x", "--eval_data=x", "--classes_file=x", "--model_dir=x"]
    for name, flags in (("latency", []), ("latency_local", ["--preset=local"])):
        config = config_lib.parse_flags(required + flags)
        weights = model.build_model(config, len(classes)).get_weights()
        export_dir = str(folder / f"export_{name}")
        export.export_model(weights, config, classes, export_dir)
        results[name] = _serving_latency_alone(export_dir, drawing, export.SIGNATURE)
        results[name]["views"] = config.test_time_views
        if config.test_time_views > 1:
            results[f"{name}_single_view"] = _serving_latency_alone(
                export_dir, drawing, export.SINGLE_VIEW_SIGNATURE
            )
    return results


def _serving_latency_alone(export_dir: str, drawing, signature: str) -> dict:
    """`export.serving_latency` in a fresh process, as a server runs it: not beside this
    process's trained models, datasets and thread pools."""
    from trainer import export

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(export.serving_latency, (export_dir, drawing), {"signature": signature})


def _input_cpu_per_drawing(pattern: str, batch_size: int, batches: int = 200) -> float:
    """Microseconds of this process's CPU per drawing that the trainer's input pipeline (b)
    spends alone, with no training step beside it: the input's own cost, steadier than the
    (b)/in-memory ratio on a noisy machine."""
    iterator = iter(_input("bucketed", pattern, batch_size))
    for _ in range(10):  # warm: files opened, shuffle buffer filled
        next(iterator)
    started = time.process_time()
    for _ in range(batches):
        next(iterator)
    return (time.process_time() - started) / (batches * batch_size) * 1e6


def _input(name: str, pattern: str, batch_size: int, in_memory_batches: int = 0):
    from bench import training_speed
    from trainer import data

    if name == "plain":
        return training_speed.plain_dataset(pattern, batch_size)
    if name == "bucketed":
        return data.dataset(pattern, batch_size, training=True)
    if name == "in_memory":
        return training_speed.in_memory(
            data.dataset(pattern, batch_size, training=True), in_memory_batches
        )
    raise ValueError(f"unknown input {name!r}")


def _drawing_of_about(points: int):
    import orjson

    from quickdraw import ink

    best = None
    for path in sorted(SHARED.glob("*.ndjson"))[:50]:
        for line in path.read_bytes().splitlines():
            candidate = ink.points_from_strokes(orjson.loads(line)["drawing"])
            if best is None or abs(len(candidate) - points) < abs(len(best) - points):
                best = candidate
    return best


@contextlib.contextmanager
def real_records(log=print):
    """A temporary folder of TFRecords of the 26 categories x 150 real drawings of
    `../shared`, written by the pipeline."""
    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as temp:
        folder = Path(temp)
        _write_records(folder)
        log(f"records: 26 categories x 150 real drawings written by the pipeline to {folder}")
        yield folder


def run(repeats: int = 3, log=print) -> dict:
    with real_records(log) as folder:
        return _measure(folder, repeats)


def table(results: dict) -> str:
    rows = [
        "| batch | (a) plain padded_batch | (b) trainer input | (b)/(a) | in memory "
        "| (b)/in memory | padded points (a) | padded points (b) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch in BATCH_SIZES:
        plain, bucketed = results[f"plain@{batch}"], results[f"bucketed@{batch}"]
        memory = results[f"in_memory@{batch}"]
        over_plain = results[f"bucketed_over_plain@{batch}"]
        over_memory = results[f"bucketed_over_in_memory@{batch}"]
        rows.append(
            f"| {batch} | {plain:,.0f} ex/s | {bucketed:,.0f} ex/s | {over_plain:.2f}x | "
            f"{memory:,.0f} ex/s | {over_memory:.0%} | "
            f"{results[f'padding_plain@{batch}']:.0%} | "
            f"{results[f'padding_bucketed@{batch}']:.0%} |"
        )
    rows.append("")
    rows.append(
        "Targets at batch 64: (b) >= 1.5x (a); (b) >= 95% of in memory; padded points <= 10%."
    )
    rows.append("Rates: medians over the rounds; ratios: medians of each round's own ratios.")
    for batch in BATCH_SIZES:
        cpu_us, rate = results[f"input_cpu_us@{batch}"], results[f"bucketed@{batch}"]
        rows.append(
            f"Input (b) alone at batch {batch}: {cpu_us:.0f} us of CPU per drawing, "
            f"{cpu_us * rate / 1e6:.1%} of one core at (b)'s rate."
        )
    rows.append("")
    rows.append("| served model, one drawing | points | median | p90 |")
    rows.append("|---|---|---|---|")
    for key, label in (
        ("latency", "default flags (target: median < 10 ms)"),
        ("latency_local", f"--preset local, {results['latency_local']['views']} views"),
        ("latency_local_single_view", "--preset local, its single_view signature"),
    ):
        if key in results:
            latency = results[key]
            rows.append(
                f"| {label} | {latency['points']} | {latency['median_ms']:.2f} ms "
                f"| {latency['p90_ms']:.2f} ms |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    print(json.dumps(run(repeats=1), indent=2))
