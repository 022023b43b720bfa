"""The trainer's one configuration: flat command-line flags, validated, into a frozen dataclass.

The flag names and defaults are the tutorial's (`train_model.py`), so its documented command
keeps working. `--preset local` swaps in the recipe sized for a laptop; any flag given
explicitly still wins over the preset. Flags accept both `--name value` and `--name=value`
(Vertex AI hyperparameter tuning passes the latter).

Output locations follow Vertex AI custom training: `--model_dir` defaults to
`AIP_MODEL_DIR`, checkpoints go to `AIP_CHECKPOINT_DIR` and TensorBoard logs to
`AIP_TENSORBOARD_LOG_DIR` when those are set. On Vertex, `gs://bucket/x` is read and written
through the Cloud Storage FUSE mount `/gcs/bucket/x` when it exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from quickdraw import cli

CELL_TYPES = ("lstm", "gru")
LR_SCHEDULES = ("constant", "cosine")

# The tutorial's defaults, for every hyperparameter flag. Flags that the tutorial did not
# have get the value that leaves its behaviour unchanged (no schedule, no smoothing...).
TUTORIAL = {
    "num_layers": 3,
    "num_nodes": 128,
    "num_conv": (48, 64, 96),
    "conv_len": (5, 5, 3),
    "cell_type": "lstm",
    "batch_norm": False,
    "dropout": 0.3,
    "learning_rate": 0.0001,
    "gradient_clipping_norm": 9.0,
    "batch_size": 8,
    "steps": 100000,
    "eval_every": 10000,
    "checkpoint_every": 1000,
    "log_every": 100,
    "seed": 0,
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "label_smoothing": 0.0,
    "weight_decay": 0.0,
    "ema_decay": 0.0,
    "augment": False,
    "positions": False,
    "aspect_ratio": False,
    "directions": False,
    "raster": False,
    "test_time_views": 1,
}

# A laptop recipe, sized so that `make all` on 26 categories x 120 drawings fits in about ten
# minutes of two CPU cores. Each value was chosen on cross-validation folds, never the eval
# split; docs/accuracy.md ("Why each part of the recipe is there") holds the measurements.
LOCAL = {
    **TUTORIAL,
    "num_layers": 2,  # faster per step than three, and generalizes as well
    "batch_size": 64,  # with the 3e-3 peak, the warmup and the cosine decay below
    "learning_rate": 0.003,
    "lr_schedule": "cosine",
    "warmup_steps": 50,
    "augment": True,  # distortions, strokes reversed, reordered, split and joined, cuts
    "positions": True,  # each point's position on the drawing beside its step
    "aspect_ratio": True,  # the drawing's width : height, which the normalization drops
    "directions": True,  # each step's direction and length
    "raster": True,  # a second branch that reads the drawing as an image
    "ema_decay": 0.998,  # a moving average of the weights, a horizon of ~500 steps
    "test_time_views": 8,  # probabilities averaged over eight views of each drawing
    "steps": 2200,  # ~8 minutes at ~4.5 steps/s; more steps did not help
    "eval_every": 550,
    "checkpoint_every": 550,
    "log_every": 50,
}

PRESETS = {"tutorial": TUTORIAL, "local": LOCAL}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one training run reads. Paths are already resolved (see `resolve_path`)."""

    training_data: str
    eval_data: str
    classes_file: str
    model_dir: str
    checkpoint_dir: str
    log_dir: str
    preset: str
    num_layers: int
    num_nodes: int
    num_conv: tuple[int, ...]
    conv_len: tuple[int, ...]
    cell_type: str
    batch_norm: bool
    dropout: float
    learning_rate: float
    gradient_clipping_norm: float
    batch_size: int
    steps: int
    eval_every: int
    checkpoint_every: int
    log_every: int
    seed: int
    lr_schedule: str
    warmup_steps: int
    label_smoothing: float
    weight_decay: float
    ema_decay: float
    augment: bool
    positions: bool
    aspect_ratio: bool
    directions: bool
    raster: bool
    test_time_views: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Config:
        values = json.loads(text)
        values["num_conv"] = tuple(values["num_conv"])
        values["conv_len"] = tuple(values["conv_len"])
        # config.json of models from before these flags
        values.setdefault("positions", False)
        values.setdefault("ema_decay", 0.0)
        values.setdefault("aspect_ratio", False)
        values.setdefault("directions", False)
        values.setdefault("raster", False)
        values.setdefault("test_time_views", 1)
        return cls(**values)


def changes(before: Config, after: Config) -> list[str]:
    """`name before -> after` for each setting that differs, in field order."""
    lines = []
    for field in dataclasses.fields(Config):
        old, new = getattr(before, field.name), getattr(after, field.name)
        if old != new:
            lines.append(f"{field.name} {_flag_value(old)} -> {_flag_value(new)}")
    return lines


def _flag_value(value) -> str:
    """A setting as one writes it on the command line."""
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def resolve_path(path: str, mount: str = "/gcs") -> str:
    """`gs://bucket/x` as `/gcs/bucket/x` when Vertex's Cloud Storage mount holds the bucket."""
    if path.startswith("gs://"):
        bucket_and_path = path[len("gs://") :]
        bucket = bucket_and_path.split("/", 1)[0]
        if bucket and os.path.isdir(os.path.join(mount, bucket)):
            return os.path.join(mount, bucket_and_path)
    return path


def make_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m trainer",
        description="Train, evaluate and export the Quick, Draw! conv + BiLSTM classifier.",
    )
    paths = parser.add_argument_group("data and outputs")
    paths.add_argument("--training_data", required=True, help="glob of training TFRecords")
    paths.add_argument("--eval_data", required=True, help="glob of eval TFRecords")
    paths.add_argument("--classes_file", required=True, help="one category per line")
    paths.add_argument(
        "--model_dir",
        default=os.environ.get("AIP_MODEL_DIR"),
        help="outputs: export/, metrics.json, config.json (default: $AIP_MODEL_DIR)",
    )
    paths.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="tutorial",
        help="defaults for the flags below: the tutorial's, or the laptop recipe",
    )

    # Every hyperparameter defaults to None here: `from_args` fills it from the preset,
    # so an explicit flag always wins over the preset.
    model = parser.add_argument_group("model")
    model.add_argument("--num_layers", type=cli.positive_int, help="recurrent layers (3)")
    model.add_argument("--num_nodes", type=cli.positive_int, help="units per direction (128)")
    model.add_argument("--num_conv", type=cli.int_list, help="filters per conv (48,64,96)")
    model.add_argument("--conv_len", type=cli.int_list, help="kernel width per conv (5,5,3)")
    model.add_argument("--cell_type", choices=CELL_TYPES, help="recurrent cell (lstm)")
    model.add_argument(
        "--batch_norm", type=cli.boolean, nargs="?", const=True, help="batch norm (false)"
    )
    model.add_argument("--dropout", type=cli.fraction, help="dropout rate (0.3)")
    model.add_argument(
        "--positions",
        type=cli.boolean,
        nargs="?",
        const=True,
        help="also feed each point's position, recovered from the ink, to the convolutions (false)",
    )
    model.add_argument(
        "--aspect_ratio",
        type=cli.boolean,
        nargs="?",
        const=True,
        help="also feed the drawing's log(width / height) to the convolutions; needs the "
        "pipeline's log_aspect feature, which the tutorial's files lack (false)",
    )
    model.add_argument(
        "--directions",
        type=cli.boolean,
        nargs="?",
        const=True,
        help="also feed each step's direction (a unit vector) and length to the convolutions "
        "(false)",
    )
    model.add_argument(
        "--raster",
        type=cli.boolean,
        nargs="?",
        const=True,
        help="add a 2-D convolutional branch that reads the drawing rendered as a 32 x 32 image; "
        "the prediction is the geometric mean of its class probabilities and the recurrent "
        "branch's; in training it reads drawings of its own, in random order (false)",
    )

    training = parser.add_argument_group("training")
    training.add_argument("--learning_rate", type=cli.positive_number, help="peak rate (0.0001)")
    training.add_argument(
        "--gradient_clipping_norm",
        type=cli.non_negative_number,
        help="clip gradients to this global norm, 0 for none (9.0)",
    )
    training.add_argument("--batch_size", type=cli.positive_int, help="global batch (8)")
    training.add_argument("--steps", type=cli.positive_int, help="training steps (100000)")
    training.add_argument(
        "--eval_every",
        type=cli.non_negative_int,
        help="steps between evals, 0: at the end only (10000)",
    )
    training.add_argument("--checkpoint_every", type=cli.positive_int, help="steps (1000)")
    training.add_argument(
        "--log_every", type=cli.positive_int, help="steps between progress lines (100)"
    )
    training.add_argument("--seed", type=cli.non_negative_int, help="seeds weights and data (0)")
    training.add_argument(
        "--lr_schedule",
        choices=LR_SCHEDULES,
        help="after warmup: constant or cosine decay (constant)",
    )
    training.add_argument(
        "--warmup_steps", type=cli.non_negative_int, help="linear warmup to --learning_rate (0)"
    )
    training.add_argument("--label_smoothing", type=cli.fraction, help="(0.0)")
    training.add_argument(
        "--weight_decay", type=cli.non_negative_number, help="decoupled weight decay (0.0)"
    )
    training.add_argument(
        "--ema_decay",
        type=cli.fraction,
        help="keep an exponential moving average of the weights with this decay per step; "
        "evaluate and export it instead of the last weights, 0 for none (0.0)",
    )
    training.add_argument(
        "--augment",
        type=cli.boolean,
        nargs="?",
        const=True,
        help="augment training ink with trainer.augment.training_batch, and with --raster the "
        "image branch's drawings with trainer.augment.image_batch (false)",
    )
    evaluation = parser.add_argument_group("evaluation and serving")
    evaluation.add_argument(
        "--test_time_views",
        type=cli.positive_int,
        help="average the class probabilities over N views of each drawing, in evaluation "
        "and in the exported model: the drawing and N - 1 copies under half the --augment "
        "strengths of its linear map and jitter, strokes as drawn, with a fixed seed; 1: "
        "the drawing alone (1)",
    )
    return parser


def from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Config:
    """Fills unset flags from the preset, checks the flags together, resolves the paths."""
    values = dict(PRESETS[args.preset])
    given = set()
    for name in values:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
            given.add(name)

    def described(name: str) -> str:
        """`--steps (40)`, or `--warmup_steps (50, from --preset local)` for a value the user
        did not give: a message must say where a number they never typed came from."""
        value = _flag_value(values[name])
        origin = "" if name in given else f", from --preset {args.preset}"
        return f"--{name} ({value}{origin})"

    if len(values["num_conv"]) != len(values["conv_len"]):
        parser.error(
            f"{described('num_conv')} has {len(values['num_conv'])} items but "
            f"{described('conv_len')} has {len(values['conv_len'])}: give one kernel width per "
            "convolution (pass both flags)"
        )
    if values["warmup_steps"] >= values["steps"]:
        parser.error(
            f"{described('warmup_steps')} must be less than {described('steps')}: pass "
            f"--warmup_steps below {values['steps']} (0 for none), or a larger --steps"
        )
    if not args.model_dir:
        parser.error("--model_dir is required (or set AIP_MODEL_DIR)")
    model_dir = resolve_path(args.model_dir)
    checkpoint_dir = os.environ.get("AIP_CHECKPOINT_DIR") or os.path.join(model_dir, "checkpoints")
    log_dir = os.environ.get("AIP_TENSORBOARD_LOG_DIR") or os.path.join(model_dir, "logs")
    return Config(
        training_data=resolve_path(args.training_data),
        eval_data=resolve_path(args.eval_data),
        classes_file=resolve_path(args.classes_file),
        model_dir=model_dir,
        checkpoint_dir=resolve_path(checkpoint_dir),
        log_dir=resolve_path(log_dir),
        preset=args.preset,
        **values,
    )


def parse_flags(argv=None) -> Config:
    """The command line (without the program name) as a Config; exits 2 on a bad flag."""
    parser = make_parser()
    return from_args(parser.parse_args(argv), parser)
