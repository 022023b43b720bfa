"""A real Cloud Storage server on 127.0.0.1 for tests: gcp-storage-emulator in a subprocess.

    with GcsEmulator() as emulator:
        emulator.create_bucket("quickdraw")
        emulator.upload_file("quickdraw", "simplified/cat.ndjson", local_path)
        with emulated_gcs_environment(emulator, tmp_dir):
            ...  # gs:// paths in Beam and google-cloud-storage now reach the emulator

`emulated_gcs_environment` also gives Beam throwaway credentials. Without any, Beam's GCS
client retries `google.auth.default()` for about 30 seconds before it goes on anonymously.
Beam passes the credentials it finds to `storage.Client` explicitly, so the client uses
them even with `STORAGE_EMULATOR_HOST` set (it only falls back to anonymous credentials
when given none), and credentials without a valid token would be refreshed at
oauth2.googleapis.com before the first request. The credentials written here therefore
carry an access token that expires in 2099: google-auth sees a valid token and never
refreshes it, and the emulator ignores the Authorization header.

`network_guard` records (and refuses) every connection to an address other than
loopback, in this process or, through `sitecustomize.py`, in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT = "test-project"
HOST = "127.0.0.1"

# Set on a subprocess to have `sitecustomize.py` (written by `write_network_guard`) append
# each refused address to this file.
GUARD_LOG_VARIABLE = "QUICKDRAW_TEST_NETWORK_LOG"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class GcsEmulator:
    """gcp-storage-emulator serving in memory on 127.0.0.1 at a free port."""

    def __init__(self, log_path: Path | None = None):
        self.port: int | None = None
        self._process: subprocess.Popen | None = None
        self._log_path = log_path
        self._log = None

    @property
    def endpoint(self) -> str:
        """The server's base URL, the value `STORAGE_EMULATOR_HOST` takes."""
        if self.port is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{HOST}:{self.port}"

    def start(self, timeout_s: float = 30.0, attempts: int = 3) -> GcsEmulator:
        """Starts the server and waits until it answers (retries if the port was taken)."""
        for _ in range(attempts):
            self.port = _free_port()
            # The emulator's own log, kept for the reader of a failed test.
            self._log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
            command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--in-memory"]
            command += ["--host", HOST, "--port", str(self.port)]
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
            )
            if self._wait_until_ready(timeout_s):
                return self
            self.stop()
        log = f"; its log: {self._log_path}" if self._log_path else ""
        raise RuntimeError(f"gcp-storage-emulator did not answer on {HOST} in {timeout_s} s{log}")

    def _wait_until_ready(self, timeout_s: float) -> bool:
        # No proxy, whatever the environment says: the server is on loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # it exited: most likely the port was taken meanwhile
            try:
                with opener.open(f"{self.endpoint}/storage/v1/b?project={PROJECT}", timeout=2):
                    return True
            except OSError:  # URLError included: not listening yet
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL after 10 s)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def __enter__(self) -> GcsEmulator:
        return self.start() if self._process is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- Content, through google-cloud-storage ------------------------------------------

    def client(self):
        """An anonymous `storage.Client` of this server (needs no environment)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(name)

    def upload_file(self, bucket: str, name: str, path: Path) -> None:
        self.client().bucket(bucket).blob(name).upload_from_filename(str(path))

    def upload_bytes(self, bucket: str, name: str, data: bytes) -> None:
        self.client().bucket(bucket).blob(name).upload_from_string(data)

    def list_names(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(blob.name for blob in self.client().list_blobs(bucket, prefix=prefix))

    def download(self, bucket: str, name: str) -> bytes:
        return self.client().bucket(bucket).blob(name).download_as_bytes()


# --- Environment ------------------------------------------------------------------------


def write_fake_credentials(path: Path) -> Path:
    """An `authorized_user` credentials file whose token is valid until 2099 (see above)."""
    path.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "fake-client-id.apps.googleusercontent.com",
                "client_secret": "fake-client-secret",
                "refresh_token": "fake-refresh-token",
                "token": "fake-access-token",
                "expiry": "2099-01-01T00:00:00Z",
            }
        )
    )
    return path


def environment(emulator: GcsEmulator, directory: Path) -> dict[str, str]:
    """The variables that point Beam and google-cloud-storage at `emulator`."""
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), HOST, "localhost"]))
    return {
        "STORAGE_EMULATOR_HOST": emulator.endpoint,
        "GOOGLE_APPLICATION_CREDENTIALS": str(
            write_fake_credentials(directory / "fake_credentials.json")
        ),
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        # Never ask a metadata server whether this is a GCE machine.
        "NO_GCE_CHECK": "true",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }


def _forget_beam_credentials() -> None:
    # Beam looks credentials up once per process and keeps them (even "none found"):
    # forget them, so that this environment's are the ones used, and do not outlive it.
    from apache_beam.internal.gcp import auth

    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials_init = False
        auth._Credentials._credentials = None


@contextlib.contextmanager
def emulated_gcs_environment(emulator: GcsEmulator, directory: Path):
    """Sets `environment(...)` in os.environ for the block, and restores it after."""
    variables = environment(emulator, directory)
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    _forget_beam_credentials()
    try:
        yield variables
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_beam_credentials()


# --- No network beyond loopback -----------------------------------------------------------

_LOOPBACK_NAMES = {"", "localhost", "127.0.0.1", "::1", "ip6-localhost"}


def is_loopback(host) -> bool:
    host = str(host).strip("[]").lower()
    return host in _LOOPBACK_NAMES or host.startswith("127.")


class NetworkGuard:
    """Refuses and records every lookup of, or connection to, a non-loopback address."""

    def __init__(self):
        self.attempts: list[str] = []

    def _refuse(self, what: str):
        self.attempts.append(what)
        raise OSError(f"network call outside 127.0.0.1 refused in tests: {what}")

    @contextlib.contextmanager
    def installed(self):
        original_getaddrinfo = socket.getaddrinfo
        original_connect = socket.socket.connect
        original_connect_ex = socket.socket.connect_ex
        guard = self

        def getaddrinfo(host, *args, **kwargs):
            name = host.decode() if isinstance(host, bytes) else host
            if name is not None and not is_loopback(name):
                guard._refuse(f"lookup of {name}")
            return original_getaddrinfo(host, *args, **kwargs)

        def _check(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
                guard._refuse(f"connection to {address[0]}:{address[1]}")

        def connect(sock, address):
            _check(sock, address)
            return original_connect(sock, address)

        def connect_ex(sock, address):
            _check(sock, address)
            return original_connect_ex(sock, address)

        socket.getaddrinfo = getaddrinfo
        socket.socket.connect = connect
        socket.socket.connect_ex = connect_ex
        try:
            yield self
        finally:
            socket.getaddrinfo = original_getaddrinfo
            socket.socket.connect = original_connect
            socket.socket.connect_ex = original_connect_ex


@contextlib.contextmanager
def guarded_emulator(directory: Path, bucket: str):
    """A running emulator holding `bucket`, the environment that points Beam and
    google-cloud-storage at it, and a NetworkGuard installed: yields (emulator, guard)."""
    guard = NetworkGuard()
    with (
        GcsEmulator(log_path=directory / "emulator.log") as emulator,
        emulated_gcs_environment(emulator, directory),
        guard.installed(),
    ):
        emulator.create_bucket(bucket)
        yield emulator, guard


_SITECUSTOMIZE = '''\
"""Test-only: refuses network calls outside loopback and logs them (tests/support)."""
import os

_log = os.environ.get("{variable}")
if _log:
    import sys

    sys.path.insert(0, {tests_dir!r})
    import gcs_emulator

    class _LoggingGuard(gcs_emulator.NetworkGuard):
        def _refuse(self, what):
            with open(_log, "a") as handle:
                handle.write(what + "\\n")
            super()._refuse(what)

    _guard = _LoggingGuard().installed()
    _guard.__enter__()
    sys.path.remove({tests_dir!r})
'''


def write_network_guard(directory: Path) -> Path:
    """Writes `sitecustomize.py` into `directory`: put it on a subprocess's PYTHONPATH and
    set GUARD_LOG_VARIABLE to a file, which then lists every refused network call."""
    directory.mkdir(parents=True, exist_ok=True)
    tests_dir = str(Path(__file__).resolve().parent)
    (directory / "sitecustomize.py").write_text(
        _SITECUSTOMIZE.format(variable=GUARD_LOG_VARIABLE, tests_dir=tests_dir)
    )
    return directory
