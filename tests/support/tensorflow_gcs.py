"""TensorFlow's own gs:// filesystem (`tf.io.gfile`, `tf.data`) against the GCS emulator.

TensorFlow's GCS client has its endpoints built in (`https://www.googleapis.com/storage/v1/`,
`https://storage.googleapis.com/` for reads), with no emulator setting like the
`STORAGE_EMULATOR_HOST` that Beam and google-cloud-storage read. It does honour three
variables, which together route it to the emulator without touching the network:

* `https_proxy`: libcurl asks this proxy to CONNECT to www.googleapis.com:443. The proxy here,
  `GoogleApisRelay`, accepts only those two host names, answers the TLS handshake with a
  certificate for them, and forwards each HTTP request inside to the emulator on 127.0.0.1;
* `CURL_CA_BUNDLE`: a certificate authority made for the test, which signed that certificate;
* `GOOGLE_AUTH_TOKEN_FOR_TESTING`: the bearer token, so that TensorFlow never asks a metadata
  server or oauth2.googleapis.com for one (the emulator ignores it).

Two things the relay smooths over: the emulator builds a resumable upload's `Location` from
the request's `Host` header with `http://`, which the relay gives back as `https://` so that
the upload's next requests come back through it; and the emulator fails an upload of zero
bytes (`uploadType=media`, TensorFlow's directory markers), which the relay sends as the
equivalent multipart upload.

    with GcsEmulator() as emulator, GoogleApisRelay(emulator, tmp_dir) as relay:
        subprocess.run([...], env={**os.environ, **relay.environment()})
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import json
import socketserver
import ssl
import threading
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.gcs_emulator import HOST, GcsEmulator

# The host names TensorFlow's GCS client connects to.
GOOGLE_APIS = ("www.googleapis.com", "storage.googleapis.com")
_HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "te"}


def write_certificates(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate authority (`ca.pem`) and, signed by it, a certificate and key
    for GOOGLE_APIS (`server.pem`), valid for a day."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = {
        "not_valid_before": now - datetime.timedelta(hours=1),
        "not_valid_after": now + datetime.timedelta(days=1),
    }
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quickdraw test CA")])
    ca = (
        x509.CertificateBuilder(issuer_name=ca_name, subject_name=ca_name, **valid)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder(
            issuer_name=ca_name,
            subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GOOGLE_APIS[0])]),
            **valid,
        )
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in GOOGLE_APIS]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path, server_path = directory / "ca.pem", directory / "server.pem"
    ca_path.write_bytes(ca.public_bytes(pem))
    server_path.write_bytes(
        server.public_bytes(pem)
        + key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, server_path


class _Forward(http.server.BaseHTTPRequestHandler):
    """One TLS connection's requests, each forwarded to the emulator."""

    protocol_version = "HTTP/1.1"  # keep-alive, as libcurl expects

    def __init__(self, connection, address, relay: GoogleApisRelay):
        self.relay = relay
        super().__init__(connection, address, None)

    def _forward(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # `Expect: 100-continue` was answered here (http.server does) before the body came.
        # http.client sets Content-Length for the body it sends.
        dropped = _HOP_BY_HOP | {"expect", "content-length"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        path = self.path
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        if self.command == "POST" and query.get("uploadType") == ["media"] and not body:
            path, body = _as_multipart_upload(path, query["name"][0], headers)
        upstream = http.client.HTTPConnection(HOST, self.relay.emulator.port, timeout=60)
        try:
            upstream.request(self.command, path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                continue
            if name.lower() == "location" and value.startswith("http://"):
                value = "https://" + value[len("http://") :]
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.relay.requests.append(f"{self.command} {self.headers.get('Host')}{self.path}")

    def _read_chunked(self) -> bytes:
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()  # the chunk's CRLF
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return body

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, *args):  # quiet: the relay keeps its own list of requests
        pass


def _as_multipart_upload(path: str, name: str, headers: dict) -> tuple[str, bytes]:
    """An empty object (TensorFlow's directory marker `dir/`) as the equivalent multipart
    upload: the emulator fails a `uploadType=media` upload of zero bytes, which GCS takes."""
    boundary = "relay-boundary"
    headers["Content-Type"] = f"multipart/related; boundary={boundary}"
    body = (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{json.dumps({'name': name})}\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    return path.replace("uploadType=media", "uploadType=multipart"), body


class _Connect(http.server.BaseHTTPRequestHandler):
    """The proxy's side of libcurl's `CONNECT host:443`: only to GOOGLE_APIS."""

    def do_CONNECT(self):
        host = self.path.rsplit(":", 1)[0]
        if host not in GOOGLE_APIS:
            self.send_error(403, f"only {', '.join(GOOGLE_APIS)} in tests")
            return
        self.send_response_only(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        relay = self.server.relay
        try:
            with relay.context.wrap_socket(self.connection, server_side=True) as tls:
                _Forward(tls, self.client_address, relay)
        except (ssl.SSLError, OSError):
            pass  # the client went away; libcurl retries on a new connection
        self.close_connection = True

    def log_message(self, *args):
        pass


class _ProxyServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class GoogleApisRelay:
    """An HTTPS proxy on 127.0.0.1 that serves GOOGLE_APIS from `emulator` (see above).
    `requests` lists each request forwarded, as `METHOD host/path`."""

    def __init__(self, emulator: GcsEmulator, directory: Path):
        self.emulator = emulator
        self.ca_path, server_path = write_certificates(directory)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(server_path)
        self.requests: list[str] = []
        self._server = _ProxyServer((HOST, 0), _Connect)
        self._server.relay = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def environment(self) -> dict[str, str]:
        """The variables that route a process's TensorFlow gs:// calls through this relay."""
        return {
            "https_proxy": f"http://{HOST}:{self.port}",
            "HTTPS_PROXY": f"http://{HOST}:{self.port}",
            "CURL_CA_BUNDLE": str(self.ca_path),
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake-access-token",
            "NO_GCE_CHECK": "true",
        }

    def __enter__(self) -> GoogleApisRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
