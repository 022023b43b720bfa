"""`python -m bench`: every benchmark, printed side by side with its baseline.

python -m bench [--only simplify|pipeline|raw|trainer|serve|gpu] [--repeats 3] [--records DIR]
    [--model_dir DIR]
"""

from __future__ import annotations

import logging
from pathlib import Path

from bench import gpu_bench, pipeline_bench, serve_bench, simplify_match, trainer_bench
from quickdraw import cli


def make_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=("simplify", "pipeline", "raw", "trainer", "serve", "gpu")
    )
    parser.add_argument(
        "--repeats", type=cli.positive_int, default=3, help="runs per case; medians reported"
    )
    parser.add_argument(
        "--records",
        type=Path,
        help="GPU bench only: a folder of the pipeline's TFRecords to train on, for a GPU "
        "machine without ../shared (default: convert ../shared's drawings first)",
    )
    parser.add_argument(
        "--model_dir",
        help="serving bench only: an exported model to serve (default: the local preset's "
        "architecture, exported untrained: weights do not change the cost)",
    )
    return parser


def main(argv=None) -> None:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.only in (None, "simplify"):
        print("== Raw ink simplified, against Google's simplified drawings ==", flush=True)
        print(simplify_match.table(simplify_match.run(log=lambda m: print(m, flush=True))))
    if args.only in (None, "pipeline"):
        print("== Pipeline: conversion of real drawings to TFRecords ==", flush=True)
        results = pipeline_bench.run(repeats=args.repeats, log=lambda m: print(m, flush=True))
        print(pipeline_bench.table(results))
        print(pipeline_bench.projection(results[1].per_core))
    if args.only in (None, "raw"):
        print("\n== Pipeline: raw ink against the same drawings simplified ==", flush=True)
        results = pipeline_bench.run_raw(repeats=args.repeats, log=lambda m: print(m, flush=True))
        print(pipeline_bench.raw_table(results))
    if args.only in (None, "trainer", "serve", "gpu"):
        from trainer import quiet_start

        quiet_start.import_tensorflow()  # without its start-up lines on a machine without a GPU
    if args.only in (None, "trainer"):
        print("\n== Trainer: input pipeline and serving, on this CPU ==", flush=True)
        results = trainer_bench.run(repeats=args.repeats, log=lambda m: print(m, flush=True))
        print(trainer_bench.table(results))
    if args.only in (None, "serve"):
        print("\n== Serving: trainer.serve over loopback, and the page in Chromium ==", flush=True)
        results = serve_bench.run(
            args.model_dir, repeats=args.repeats, log=lambda m: print(m, flush=True)
        )
        print(serve_bench.table(results))
    if args.only in (None, "gpu"):
        print(f"\n== Trainer on a GPU: batch {gpu_bench.BATCH_SIZE}, cuDNN ==", flush=True)
        results = gpu_bench.run(
            args.records, repeats=args.repeats, log=lambda m: print(m, flush=True)
        )
        if results is None:
            print("skipped: TensorFlow sees no GPU on this machine.")
        else:
            print(gpu_bench.table(results))


if __name__ == "__main__":
    main()
