"""`python -m bench`: every benchmark, printed side by side with its baseline.

python -m bench [--only pipeline|trainer] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging

from bench import pipeline_bench, trainer_bench


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("pipeline", "trainer"))
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; medians reported")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.only in (None, "pipeline"):
        print("== Pipeline: conversion of real drawings to TFRecords ==", flush=True)
        results = pipeline_bench.run(repeats=args.repeats, log=lambda m: print(m, flush=True))
        print(pipeline_bench.table(results))
        print(pipeline_bench.projection(results[1].per_core))
    if args.only in (None, "trainer"):
        print("\n== Trainer: input pipeline and serving, on this CPU ==", flush=True)
        results = trainer_bench.run(repeats=args.repeats, log=lambda m: print(m, flush=True))
        print(trainer_bench.table(results))


if __name__ == "__main__":
    main()
