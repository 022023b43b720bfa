"""The command line of every entry point: one parser class and one error class.

Every `python -m ...` of this project reports a bad flag the same way: one line on stderr,
`PROG: error: MESSAGE`, and exit status 2, naming the closest known flags when one is
misspelled. Standard library only, so that the core stays free of Beam and Keras.

    parser = cli.ArgumentParser(prog="python -m trainer.predict", description="...")
    parser.add_argument("--top_k", type=cli.positive_int, default=3)
    args = parser.parse_args(argv)  # exits 2 on `--topk 3`: did you mean --top_k?

Checks made after parsing raise `cli.UsageError`; the entry point catches it and calls
`parser.error(str(error))`, so those messages read like argparse's own.
"""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Iterable

USAGE_EXIT_CODE = 2


class UsageError(ValueError):
    """A bad flag, or an input or output that cannot work: one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but one line per error, no abbreviated flags, and no unknown flag let by.

    argparse would take `--num` for `--num_shards` (abbreviations), and a program that uses
    `parse_known_args` would pass a misspelled flag on without a word; here every flag is
    spelled out, and an unknown one stops the program with the closest known ones.
    """

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """One line on stderr and exit status 2, for argparse's own errors and ours alike."""
        self.exit(USAGE_EXIT_CODE, f"{self.prog}: error: {message}\n")

    def parse_args(self, args=None, namespace=None):
        namespace, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(unknown_arguments_message(unknown, self.flags()))
        return namespace

    def flags(self) -> list[str]:
        """Every long flag this parser knows, `--help` included."""
        return sorted(
            option
            for action in self._actions
            for option in action.option_strings
            if option.startswith("--")
        )


def unknown_arguments_message(unknown: list[str], known: Iterable[str]) -> str:
    """`unknown flag --sed (did you mean --seed?)`: each unknown flag with its close matches.

    Values that follow an unknown flag (the `5` of `--sed 5`) are left out: without the flag
    there is no telling whether they were its value. Other stray words are listed as such.
    """
    known = sorted(set(known))
    flags, others = [], []
    previous_was_flag = False
    for argument in unknown:
        if _looks_like_flag(argument):
            flags.append(_with_suggestions(argument.split("=", 1)[0], known))
            previous_was_flag = "=" not in argument
        elif not previous_was_flag:
            others.append(argument)
        else:
            previous_was_flag = False
    parts = []
    if flags:
        parts.append(f"unknown flag{'s' if len(flags) > 1 else ''} {', '.join(flags)}")
    if others:
        parts.append(f"unexpected argument{'s' if len(others) > 1 else ''} {' '.join(others)}")
    return "; ".join(parts) + " (see --help)"


def close_flags(flag: str, known: Iterable[str], count: int = 3) -> list[str]:
    """The known flags closest to `flag`, best first: those it abbreviates, then those that
    differ by a few letters. Names are compared without their leading dashes, which every
    flag shares and which would make any two short flags look alike; the cutoff (0.7 of
    difflib's ratio) keeps `--sed` -> `--seed` and `--shards` -> `--num_shards` but drops
    `--step` -> `--raster`."""
    names = {option.lstrip("-"): option for option in known}
    typed = flag.lstrip("-")
    abbreviated = sorted(name for name in names if typed and name.startswith(typed))
    similar = difflib.get_close_matches(typed, list(names), n=count, cutoff=0.7)
    matches = list(dict.fromkeys(abbreviated + similar))[:count]
    return [names[match] for match in matches]


def _with_suggestions(flag: str, known: list[str]) -> str:
    close = close_flags(flag, known)
    return f"{flag} (did you mean {' or '.join(close)}?)" if close else flag


def _looks_like_flag(argument: str) -> bool:
    """`--x` or `-x`, but not a negative number such as `-3`."""
    if not argument.startswith("-") or argument == "-":
        return False
    try:
        float(argument)
    except ValueError:
        return True
    return False


# --- Typed values: each raises argparse.ArgumentTypeError with a one-line reason. ---------


def boolean(text: str) -> bool:
    """true/false, 1/0, yes/no. A flag declared `type=cli.boolean, nargs="?", const=True`
    takes both `--flag` and `--flag=false`, the form Vertex AI and Dataflow templates pass."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")


def integer(text: str) -> int:
    """An integer; a whole-number float too (`64.0`), as Vertex AI tuning trials pass them."""
    value = _checked(text, float, float.is_integer, "an integer")
    return int(value)


def positive_int(text: str) -> int:
    return _checked(text, integer, lambda value: value >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _checked(text, integer, lambda value: value >= 0, "an integer >= 0")


def number(text: str) -> float:
    """A finite number."""
    value = _checked(text, float, lambda value: True, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_number(text: str) -> float:
    return _checked(text, number, lambda value: value > 0, "a number > 0")


def non_negative_number(text: str) -> float:
    return _checked(text, number, lambda value: value >= 0, "a number >= 0")


def fraction(text: str) -> float:
    """A rate in [0, 1): dropout, label smoothing."""
    return _checked(text, number, lambda value: 0 <= value < 1, "in [0, 1)")


def seconds(text: str) -> float:
    """A duration in seconds, >= 0 (0 turns off what it times)."""
    return _checked(text, number, lambda value: value >= 0, "a number of seconds >= 0")


def int_list(text: str) -> tuple[int, ...]:
    """`48,64,96` -> (48, 64, 96); every item a positive integer."""
    try:
        values = tuple(int(item.strip()) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers such as 48,64,96, got {text!r}"
        ) from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"every item must be >= 1, got {text!r}")
    return values


def _checked(text: str, convert, accept, expected: str):
    """`convert(text)` if it converts and `accept`s it, else the one-line error. A `convert`
    that raises argparse's own error keeps its message: the more basic fault is named."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
    return value
