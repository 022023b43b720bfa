"""Shared fixtures: where the real drawings are, and how to skip without them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_QUICKDRAW = REPO.parent / "shared" / "quickdraw"

# TensorFlow's C++ logging is noise in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def shared_quickdraw_or_skip() -> Path:
    """../shared/quickdraw, or skip the test with the reason."""
    if not (SHARED_QUICKDRAW / "simplified").is_dir():
        pytest.skip(f"real drawings not found at {SHARED_QUICKDRAW}: real-data test skipped")
    return SHARED_QUICKDRAW


@pytest.fixture
def quickdraw() -> Path:
    """The folder of real Quick, Draw! drawings (skips the test when it is absent)."""
    return shared_quickdraw_or_skip()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny training run on real drawings for the whole session, shared by the tests of
    training and of the report: (config, metrics returned, hypertune file)."""
    from tests.support.trainer_fixtures import train_tiny_run

    return train_tiny_run(tmp_path_factory)


@pytest.fixture(scope="session")
def all_classes_run(tmp_path_factory):
    """`make all` over all 345 categories with a tiny model, once per session (see
    tests/support/all_classes.py): its records, trained model, export and predictions."""
    from tests.support import all_classes

    return all_classes.make_all(tmp_path_factory.mktemp("all_classes"))


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium (`bench.browser`), quit after the test; the test skips, saying why,
    where Chromium or its driver is not installed."""
    from bench.browser import BrowserMissing, start_chromium

    try:
        driver = start_chromium(tmp_path)
    except BrowserMissing as missing:
        pytest.skip(f"{missing}: browser test skipped")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def offline_env(tmp_path) -> dict[str, str]:
    """A subprocess environment that cannot reach any network, with no credentials and no
    project configured (`tests/support/offline.py`)."""
    from tests.support.offline import offline_environment

    return offline_environment(tmp_path)
