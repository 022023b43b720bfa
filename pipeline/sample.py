"""`python -m pipeline.sample`: a few drawings of each class that training never saw.

    python -m pipeline.sample --input PATTERN --classes_file DIR/training.tfrecord.classes \\
        --train_per_class 120 --eval_per_class 30 --per_class 2 --output sample.ndjson

`make predict` classifies this sample. With `--split=first` (make data's) the pipeline trains
on the first `--train_per_class` good drawings of each category, evaluates on the next
`--eval_per_class`, and never reads the rest. This takes, for each class of the classes
file, the `--per_class` good drawings right after those, reading each category's file only
that far: from the public bucket, about 1 MiB of a ~60 MB file for make all's quotas, in
ranged reads sized to them (`inputs.read_buffer_for`). A file that ends sooner gives its
last eval drawings instead, which training never saw either; a class without a file named
after it is skipped with a warning. Lines are copied as they are, `word` included, so that
`trainer.predict` can score them; good means what the pipeline means (`quickdraw.drawings`).
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import inputs
from pipeline.config import PUBLIC_INPUT
from pipeline.reading import open_ndjson, read_lines
from quickdraw import cli
from quickdraw.drawings import DEFAULT_MAX_POINTS, convert_lines

LINES_PER_READ = 256


def make_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m pipeline.sample",
        description="Write a few drawings of each class that make data's --split=first "
        "never used: the ones right after its quotas.",
    )
    parser.add_argument("--input", default=PUBLIC_INPUT, help="the pipeline's --input")
    parser.add_argument(
        "--classes_file", required=True, help="one class per line (the pipeline's classes file)"
    )
    parser.add_argument("--train_per_class", type=_non_negative_int, required=True)
    parser.add_argument("--eval_per_class", type=_non_negative_int, required=True)
    parser.add_argument(
        "--per_class", type=cli.positive_int, default=2, help="drawings per class (%(default)s)"
    )
    parser.add_argument("--output", required=True, help="the ndjson file to write")
    return parser


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def pick(good: list[bytes], train: int, eval_: int, per_class: int) -> tuple[list[bytes], int]:
    """The sample among a category's good drawings in order (those read, at most train +
    eval + per_class): those right after the quotas, else the last eval ones. Returns the
    lines and how many of them are eval drawings."""
    after = good[train + eval_ : train + eval_ + per_class]
    if len(after) == per_class:
        return after, 0
    # The file ends before the quotas are through: training took the first `train`, so the
    # drawings past it (eval ones) are the only others it never saw.
    unseen = good[train:]
    chosen = unseen[-per_class:] if unseen else []
    return chosen, len(chosen) - len(after)


def good_lines(paths: list[str], word: str, wanted: int) -> list[bytes]:
    """The first `wanted` good drawings of `word` in these files, read in order and no
    further, each line as it is in the file."""
    found: list[bytes] = []
    for path in paths:
        number = 0
        with open_ndjson(path) as stream:
            while len(found) < wanted:
                lines, too_long, damage = read_lines(stream, LINES_PER_READ, DEFAULT_MAX_POINTS)
                numbered = [
                    (number + offset, line)
                    for offset, (line, cut) in enumerate(zip(lines, too_long), 1)
                    if not cut
                ]
                number += len(lines)
                batch, _ = convert_lines(numbered, DEFAULT_MAX_POINTS)
                text = dict(numbered)
                for line_number, line_word in zip(batch.line_numbers, batch.words):
                    if line_word == word and len(found) < wanted:
                        found.append(text[int(line_number)])
                if damage:
                    logging.warning("%s cannot be read past line %d: %s", path, number, damage)
                if damage or not lines:
                    break
        if len(found) >= wanted:
            break
    return found


def _read_classes(path: str) -> list[str]:
    try:
        with FileSystems.open(path) as handle:
            text = handle.read().decode("utf-8")
    except Exception as error:  # noqa: BLE001 - any failure to read is a usage error here
        raise cli.UsageError(f"cannot read --classes_file {path}: {error}") from None
    classes = [line.strip() for line in text.splitlines() if line.strip()]
    if not classes:
        raise cli.UsageError(f"--classes_file {path} names no class")
    return classes


def write_sample(args) -> dict:
    """Writes the sample; returns its counts."""
    classes = _read_classes(args.classes_file)
    try:
        matches = FileSystems.match([args.input])[0].metadata_list
    except Exception as error:  # noqa: BLE001 - Beam raises many kinds for a bad location
        raise cli.UsageError(f"cannot list --input {args.input}: {error}") from None
    files = collections.defaultdict(list)
    for path in sorted(metadata.path for metadata in matches):
        files[inputs.file_stem(path)].append(path)
    quota = args.train_per_class + args.eval_per_class
    counts = {"drawings": 0, "classes": 0, "eval_drawings": 0, "classes_without_file": []}
    lines = []
    for name in classes:
        if name not in files:
            counts["classes_without_file"].append(name)
            continue
        good = good_lines(files[name], name, quota + args.per_class)
        chosen, from_eval = pick(good, args.train_per_class, args.eval_per_class, args.per_class)
        lines += [line if line.endswith(b"\n") else line + b"\n" for line in chosen]
        counts["drawings"] += len(chosen)
        counts["classes"] += bool(chosen)
        counts["eval_drawings"] += from_eval
    with FileSystems.create(args.output) as handle:
        handle.write(b"".join(lines))
    return counts


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = make_parser()
    args = parser.parse_args(argv)
    inputs.read_gcs_anonymously_without_credentials(args.input, args.output)
    # Ranged reads of about what the quotas need, not Beam's 16 MiB (see inputs).
    wanted = args.train_per_class + args.eval_per_class + args.per_class
    buffer = inputs.read_buffer_for(wanted)
    FileSystems.set_options(PipelineOptions([f"--gcs_read_buffer_size_bytes={buffer}"]))
    try:
        counts = write_sample(args)
    except cli.UsageError as error:
        parser.error(str(error))
    if counts["classes_without_file"]:
        logging.warning(
            "%d class(es) have no file named after them in --input, so no sample: %s",
            len(counts["classes_without_file"]),
            ", ".join(counts["classes_without_file"]),
        )
    logging.info(
        "%s: %d drawings of %d classes that training never saw (%d of them eval drawings, "
        "where a file ends before its quotas)",
        args.output,
        counts["drawings"],
        counts["classes"],
        counts["eval_drawings"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
