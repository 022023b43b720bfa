"""The pipeline's flags: one frozen config, parsed and checked before any work starts."""

from __future__ import annotations

import argparse
import dataclasses

from quickdraw import cli
from quickdraw.cli import UsageError
from quickdraw.drawings import DEFAULT_MAX_POINTS, INK_FORMATS

PUBLIC_INPUT = "gs://quickdraw_dataset/full/simplified/*.ndjson"

SPLIT_MODES = ("first", "hash")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# How a run reports on itself, not what it makes: left out of stats.json's options.
REPORTING_FIELDS = ("progress_every", "log_level")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    input: str = PUBLIC_INPUT
    output_dir: str = ""
    categories: tuple[str, ...] | None = None  # None: every category found
    split: str = "first"
    train_per_class: int = 10_000
    eval_per_class: int = 1_000
    eval_fraction: float = 0.1
    num_shards: int = 10
    seed: int = 0
    recognized_only: bool = False
    max_points: int = DEFAULT_MAX_POINTS
    ink_format: str = "auto"
    overwrite: bool = False
    progress_every: float = 10.0  # seconds between progress lines of a local run; 0: none
    log_level: str = "INFO"

    def __post_init__(self):
        if not self.output_dir:
            raise UsageError("--output_dir is required: a local folder or gs://bucket/path")
        if self.split not in SPLIT_MODES:
            raise UsageError(f"--split must be one of {', '.join(SPLIT_MODES)}, got {self.split!r}")
        if self.train_per_class < 0 or self.eval_per_class < 0:
            raise UsageError("--train_per_class and --eval_per_class must be >= 0")
        if self.split == "first" and self.train_per_class + self.eval_per_class == 0:
            raise UsageError("--train_per_class and --eval_per_class are both 0: nothing to write")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise UsageError(f"--eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.num_shards < 1:
            raise UsageError(f"--num_shards must be >= 1, got {self.num_shards}")
        if self.ink_format not in INK_FORMATS:
            raise UsageError(
                f"--ink_format must be one of {', '.join(INK_FORMATS)}, got {self.ink_format!r}"
            )
        if self.max_points < 2:
            raise UsageError(f"--max_points must be >= 2, got {self.max_points}")
        if self.categories is not None and not self.categories:
            raise UsageError("--categories is empty: name at least one category, or leave it out")
        if not self.progress_every >= 0:
            raise UsageError(
                f"--progress_every must be >= 0 seconds (0 for no progress lines), "
                f"got {self.progress_every}"
            )
        if self.log_level not in LOG_LEVELS:
            raise UsageError(
                f"--log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )

    @property
    def per_class_quota(self) -> int:
        """How many good drawings of a category `--split=first` reads before it stops."""
        return self.train_per_class + self.eval_per_class

    def to_json(self) -> dict:
        """The options that decide the outputs, as stats.json records them."""
        result = dataclasses.asdict(self)
        result["categories"] = list(self.categories) if self.categories else None
        for name in REPORTING_FIELDS:
            del result[name]
        return result


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _category_list(text: str) -> tuple[str, ...]:
    names = tuple(sorted({name.strip() for name in text.split(",") if name.strip()}))
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated category names")
    return names


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m pipeline",
        description="Quick, Draw! ndjson to shuffled, sharded TFRecords (tf.train.Example). "
        "Beam's own options (--runner, --direct_num_workers, --project, ...) go to Beam; any "
        "other flag is an error.",
    )
    parser.add_argument(
        "--input",
        default=PUBLIC_INPUT,
        help="glob of ndjson files, local or gs:// (default: the public bucket, %(default)s)",
    )
    parser.add_argument("--output_dir", required=True, help="local folder or gs://bucket/path")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--categories", type=_category_list, help="comma-separated categories to keep"
    )
    group.add_argument("--categories_file", help="a file with one category per line")
    parser.add_argument(
        "--split",
        default="first",
        choices=SPLIT_MODES,
        help="first: the first --train_per_class good drawings of each category (files "
        "sorted by name, lines in order) train, the next --eval_per_class evaluate, the rest "
        "are not read; hash: every drawing, eval chosen by a stable hash of key_id",
    )
    parser.add_argument(
        "--train_per_class",
        type=_integer,
        default=10_000,
        help="with --split=first: training drawings per category (%(default)s)",
    )
    parser.add_argument(
        "--eval_per_class",
        type=_integer,
        default=1_000,
        help="with --split=first: eval drawings per category (%(default)s)",
    )
    parser.add_argument(
        "--eval_fraction",
        type=_fraction,
        default=0.1,
        help="with --split=hash: the eval share (%(default)s)",
    )
    parser.add_argument(
        "--num_shards", type=_integer, default=10, help="shards per split (%(default)s)"
    )
    parser.add_argument(
        "--seed", type=_integer, default=0, help="seed of the shuffle (%(default)s)"
    )
    parser.add_argument(
        "--recognized_only",
        type=cli.boolean,
        nargs="?",
        const=True,
        default=False,
        help="keep only drawings the game recognized (the tutorial kept all)",
    )
    parser.add_argument(
        "--max_points",
        type=_integer,
        default=DEFAULT_MAX_POINTS,
        help="a drawing with more points is a bad line (default %(default)s keeps every real "
        "drawing)",
    )
    parser.add_argument(
        "--ink_format",
        default="auto",
        choices=INK_FORMATS,
        help="auto: a line whose strokes carry a third (time) list is raw ink, simplified as "
        "Google simplified its files, any other line is already simplified; raw or "
        "simplified: a line of the other kind is a bad line (default %(default)s)",
    )
    parser.add_argument(
        "--overwrite",
        type=cli.boolean,
        nargs="?",
        const=True,
        default=False,
        help="replace the outputs of an earlier run in --output_dir",
    )
    parser.add_argument(
        "--progress_every",
        type=_fraction,
        default=10.0,
        help="seconds between progress lines of a local run, 0 for none (%(default)s)",
    )
    parser.add_argument(
        "--log_level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="WARNING or ERROR for a quiet run (%(default)s)",
    )
    return parser


def _read_categories_file(path: str) -> tuple[str, ...]:
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as handle:
            text = handle.read().decode("utf-8")
    except Exception as error:  # noqa: BLE001 - any failure to read is a usage error here
        raise UsageError(f"cannot read --categories_file {path}: {error}") from None
    names = tuple(sorted({line.strip() for line in text.splitlines() if line.strip()}))
    if not names:
        raise UsageError(f"--categories_file {path} names no category")
    return names


class _BeamOptionsParser:
    """Beam's own pipeline options, to tell a Beam flag from a misspelled one.

    Beam keeps a flag it does not know with a warning (`Unparseable argument`) and runs on
    without it, so `--sed 5` for `--seed 5` would silently change nothing. Beam has no public
    way to list its options; this builds the parser its `PipelineOptions.get_all_options`
    builds, from every options class loaded (each one's `_add_argparse_args`, the hook Beam
    documents for custom options).
    """

    def __init__(self):
        from apache_beam.options import pipeline_options

        class Parser(pipeline_options._BeamArgumentParser):
            def error(self, message):
                raise UsageError(f"Beam option: {message}")

        self._parser = Parser(allow_abbrev=False, add_help=False)
        classes = {}
        for options_class in pipeline_options.PipelineOptions.__subclasses__():
            classes.setdefault(str(options_class), options_class)
        for options_class in classes.values():
            options_class._add_argparse_args(self._parser)

    def unknown(self, beam_args: list[str]) -> list[str]:
        """The arguments that are not Beam options; raises UsageError on a bad Beam value."""
        return self._parser.parse_known_args(beam_args)[1]

    def flags(self) -> list[str]:
        return [
            option
            for action in self._parser._actions
            for option in action.option_strings
            if option.startswith("--")
        ]


def parse_args(argv: list[str] | None) -> tuple[PipelineConfig, list[str]]:
    """Splits the pipeline's flags from Beam's. Exits 2 on a flag that is neither (naming
    the closest ones); raises UsageError on a bad value."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    beam = _BeamOptionsParser()
    try:
        unknown = beam.unknown(beam_args)
    except UsageError as error:
        parser.error(str(error))
    if unknown:
        parser.error(cli.unknown_arguments_message(unknown, parser.flags() + beam.flags()))
    categories = args.categories
    if args.categories_file:
        categories = _read_categories_file(args.categories_file)
    config = PipelineConfig(
        input=args.input,
        output_dir=args.output_dir.rstrip("/"),
        categories=categories,
        split=args.split,
        train_per_class=args.train_per_class,
        eval_per_class=args.eval_per_class,
        eval_fraction=args.eval_fraction,
        num_shards=args.num_shards,
        seed=args.seed,
        recognized_only=args.recognized_only,
        max_points=args.max_points,
        ink_format=args.ink_format,
        overwrite=args.overwrite,
        progress_every=args.progress_every,
        log_level=args.log_level,
    )
    return config, beam_args
