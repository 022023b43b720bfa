"""The manual documents every command-line flag, every `make` target and every `make` variable.

Each entry point's flags belong on its page of `docs/`; every target in the README's table of
targets; every variable in the README's table of variables. Something new added without its line
fails here, naming what is missing and where it belongs.
"""

from __future__ import annotations

import ast
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
MAKEFILE = (ROOT / "Makefile").read_text()
# The README is the manual a newcomer reads in a few minutes; depth goes to docs/.
README_MAX_LINES = 250


def _parser_options(parser) -> list[str]:
    # argparse lists its options only in `_actions`; `--help` is argparse's own.
    return sorted(
        {
            option
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and option != "--help"
        }
    )


def _source_options(module_path: str) -> list[str]:
    """The long options a module adds with `add_argument`, read from its source: for an entry
    point that builds its parser inside `main` (importing it would load TensorFlow)."""
    tree = ast.parse((ROOT / module_path).read_text())
    return sorted(
        {
            argument.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
            for argument in node.args
            if isinstance(argument, ast.Constant)
            and isinstance(argument.value, str)
            and argument.value.startswith("--")
        }
    )


# Each entry point: the module that holds its `main`, its long options, and its docs page.
ENTRY_POINTS = {
    "python -m pipeline": (
        "pipeline/run.py",
        lambda: _parser_options(pipeline_config.build_parser()),
        "docs/pipeline.md",
    ),
    "python -m pipeline.sample": (
        "pipeline/sample.py",
        lambda: _parser_options(sample.make_parser()),
        "docs/pipeline.md",
    ),
    "python -m pipeline.flex_template": (
        "pipeline/flex_template.py",
        lambda: _parser_options(flex_template.make_parser()),
        "docs/pipeline.md",
    ),
    "python -m trainer": (
        "trainer/__main__.py",
        lambda: _parser_options(trainer_config.make_parser()),
        "docs/training.md",
    ),
    "python -m trainer.predict": (
        "trainer/predict.py",
        lambda: _parser_options(predict.make_parser()),
        "docs/training.md",
    ),
    "python -m trainer.report": (
        "trainer/report.py",
        lambda: _parser_options(report.make_parser()),
        "docs/training.md",
    ),
    "python -m trainer.serve": (
        "trainer/serve.py",
        lambda: _parser_options(serve.make_parser()),
        "docs/serving.md",
    ),
    "python -m trainer.submit": (
        "trainer/submit.py",
        lambda: _parser_options(submit.build_parser()),
        "docs/cloud.md",
    ),
    "python -m trainer.deploy": (
        "trainer/deploy.py",
        lambda: _parser_options(deploy.build_parser()),
        "docs/cloud.md",
    ),
    "python -m bench": (
        "bench/__main__.py",
        lambda: _parser_options(bench_main.make_parser()),
        "docs/benchmarks.md",
    ),
    "python -m bench.floor_server": (
        "bench/floor_server.py",
        lambda: _source_options("bench/floor_server.py"),
        "docs/benchmarks.md",
    ),
    "python -m bench.instant_server": (
        "bench/instant_server.py",
        lambda: _source_options("bench/instant_server.py"),
        "docs/benchmarks.md",
    ),
    "python -m bench.tutorial_baseline": (
        "bench/tutorial_baseline.py",
        lambda: _source_options("bench/tutorial_baseline.py"),
        "docs/benchmarks.md",
    ),
}


def _missing(names: list[str], pattern: str, text: str) -> list[str]:
    return [name for name in names if not re.search(pattern.format(re.escape(name)), text)]


def test_every_entry_point_is_checked():
    modules = sorted(
        str(path.relative_to(ROOT))
        for package in ("pipeline", "trainer", "bench", "quickdraw")
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"^def main\(", path.read_text(), flags=re.MULTILINE)
    )
    checked = sorted(module for module, _, _ in ENTRY_POINTS.values())
    assert modules == checked, (
        "entry points (modules with a main) and those whose flags this test checks differ: "
        "add the new one to ENTRY_POINTS with its docs page"
    )


@pytest.mark.parametrize("command", sorted(ENTRY_POINTS))
def test_every_flag_is_on_its_docs_page(command):
    _, options, page = ENTRY_POINTS[command]
    flags = options()
    assert flags, f"{command} has no flags to check"
    # A flag counts as documented where it appears whole: `--steps` is not `--steps_per_x`.
    missing = _missing(flags, r"{}(?![\w-])", (ROOT / page).read_text())
    assert not missing, f"{command}: flags that {page} does not mention: {missing}"


def test_every_make_target_is_in_the_readme_table():
    targets = re.findall(r"^([a-z][a-z-]*):.*## ", MAKEFILE, flags=re.MULTILINE)
    assert "all" in targets and "deploy" in targets
    table = "\n".join(line for line in README.splitlines() if line.startswith("|"))
    missing = _missing(targets, r"`make {}`", table)
    assert not missing, f"make targets missing from the README's table of targets: {missing}"


def test_every_make_variable_is_in_the_readme_table():
    variables = re.findall(r"^([A-Z][A-Z_]*) \?=", MAKEFILE, flags=re.MULTILINE)
    assert "MODEL_DIR" in variables and "TRAIN_ARGS" in variables
    rows = "\n".join(line for line in README.splitlines() if line.startswith("| `"))
    missing = _missing(variables, r"`{}`", rows)
    assert not missing, f"Makefile variables missing from the README's variables table: {missing}"


def test_the_readme_stays_a_manual():
    lines = len(README.splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, over {README_MAX_LINES}: move the depth to its page in docs/"
    )
