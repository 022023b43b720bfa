"""`make` before `make install`: the targets that run the package's code say what to do,
and those that must work on a fresh clone (help, install itself) do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

NEEDS_INSTALL = (
    "all",
    "data",
    "train",
    "report",
    "predict",
    "serve",
    "test",
    "lint",
    "bench",
    "submit",
    "deploy",
)


def _make(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *arguments],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.parametrize("target", NEEDS_INSTALL)
def test_a_target_run_before_install_says_so(target, tmp_path):
    completed = _make(target, f"VENV={tmp_path / 'venv'}", "PROJECT=p", "BUCKET=b")
    assert completed.returncode == 2
    first = "data" if target == "all" else target  # `all` starts with `data`
    assert completed.stdout.strip() == (
        f"make {first}: {tmp_path / 'venv'} is not set up: run make install first"
    )
    assert "Traceback" not in completed.stderr


def test_a_venv_older_than_setup_py_asks_for_make_install_again(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()
    old = (REPO / "setup.py").stat().st_mtime - 60
    os.utime(venv / ".installed", (old, old))
    completed = _make("data", f"VENV={venv}")
    assert completed.returncode == 2
    assert completed.stdout.strip() == (
        "make data: setup.py changed since the last make install: run make install again"
    )


def test_help_and_install_work_on_a_fresh_clone(tmp_path):
    venv: Path = tmp_path / "venv"
    completed = _make("help", f"VENV={venv}")
    assert completed.returncode == 0 and "make install" in completed.stdout
    # A dry run of install: it would create the venv, install, and only then mark it set up.
    completed = _make("-n", "install", f"VENV={venv}")
    assert completed.returncode == 0
    lines = completed.stdout.splitlines()
    assert lines[0].endswith(f" -m venv {venv}")
    assert lines[-1] == f'touch "{venv}/.installed"'
    assert not venv.exists()
