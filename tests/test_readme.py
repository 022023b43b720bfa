"""The README documents every command-line flag and every `make` variable a user can set.

A new flag or variable added without a line in the README fails here, naming what is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from pipeline import config as pipeline_config
from pipeline import flex_template, sample
from trainer import config as trainer_config
from trainer import deploy, predict, report, serve, submit

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _long_options(parser) -> list[str]:
    # argparse lists its options only in `_actions`; `--help` is argparse's own.
    return sorted(
        {
            option
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and option != "--help"
        }
    )


def _missing(names: list[str], pattern: str) -> list[str]:
    return [name for name in names if not re.search(pattern.format(re.escape(name)), README)]


@pytest.mark.parametrize(
    "command, parser",
    [
        ("python -m pipeline", pipeline_config.build_parser()),
        ("python -m pipeline.sample", sample.make_parser()),
        ("python -m pipeline.flex_template", flex_template.make_parser()),
        ("python -m trainer", trainer_config.make_parser()),
        ("python -m trainer.predict", predict.make_parser()),
        ("python -m trainer.report", report.make_parser()),
        ("python -m trainer.submit", submit.build_parser()),
        ("python -m trainer.serve", serve.make_parser()),
        ("python -m trainer.deploy", deploy.build_parser()),
        ("python -m bench", bench_main.make_parser()),
    ],
)
def test_every_flag_is_in_the_readme(command, parser):
    options = _long_options(parser)
    assert options, f"{command} has no flags to check"
    # A flag counts as documented where it appears whole: `--steps` is not `--steps_per_x`.
    missing = _missing(options, r"{}(?![\w-])")
    assert not missing, f"{command}: flags the README does not mention: {missing}"


def test_every_make_variable_is_in_the_readme():
    makefile = (ROOT / "Makefile").read_text()
    variables = re.findall(r"^([A-Z][A-Z_]*) \?=", makefile, flags=re.MULTILINE)
    assert "MODEL_DIR" in variables and "TRAIN_ARGS" in variables
    missing = _missing(variables, r"`{}`")
    assert not missing, f"Makefile variables the README does not mention: {missing}"
