"""Subprocesses that cannot reach any network: a `sitecustomize` guard that stops any
connection (and `unshare -n` where the system allows it), no credentials, no project."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from functools import cache

from tests.conftest import REPO

BLOCKED = 99


GUARD = textwrap.dedent(
    """
    # Loaded at start-up by every Python of the tests' subprocesses: no network call survives.
    import os
    import socket
    import sys


    def _no_network(*args, **kwargs):
        sys.stderr.write(f"NETWORK CALL BLOCKED: {args[1:] or args}\\n")
        sys.stderr.flush()
        os._exit(99)


    socket.socket.connect = socket.socket.connect_ex = _no_network
    socket.create_connection = socket.getaddrinfo = _no_network
    try:
        import grpc  # its C core opens its own sockets
    except ImportError:
        pass
    else:
        grpc.secure_channel = grpc.insecure_channel = _no_network
    """
)


@cache
def no_network_prefix() -> tuple[str, ...]:
    """`unshare -n` (or, unprivileged, `unshare -rn`) when this system allows it."""
    if shutil.which("unshare"):
        for prefix in (("unshare", "-n"), ("unshare", "-rn")):
            if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
                return prefix
    return ()


def offline_environment(tmp_path) -> dict[str, str]:
    """An environment with the guard loaded, no credentials and no project configured."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_", "CLOUD_ML_", "AIP_"))
        and name not in ("NO_GCE_CHECK", "PYTHONPATH")
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(guard), str(REPO)]),
        HOME=str(tmp_path / "home"),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
    )
    return env


def run_offline(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*no_network_prefix(), *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
