"""HTTP/1.1 messages framed by Content-Length, read from a plain socket: all the serving bench's
clients and its floor server need, without an HTTP library's cost on every message."""

from __future__ import annotations


def read_message(connection, buffer: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, body, the bytes read past the body) of the next message on `connection`, which
    starts with `buffer`, read before; ConnectionError where the other end closes first."""
    while b"\r\n\r\n" not in buffer:
        buffer += _received(connection)
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += _received(connection)
    return head, rest[:length], rest[length:]


def _received(connection) -> bytes:
    chunk = connection.recv(65536)
    if not chunk:
        raise ConnectionError("the other end closed the connection")
    return chunk
