"""A raw HTTP/2 (h2c) client connection for the tests that need what grpcio and curl do not
do: send headers HTTP/2 forbids, read a reply however its stream ends."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import h2.config
import h2.connection


def request_headers(authority: str, method: str, path: str) -> list[tuple[str, str]]:
    """A request's pseudo-headers, in the order HTTP/2 wants them first."""
    return [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority)]


@contextmanager
def h2_connection(
    url: str, *, timeout: float, normalize: bool = True
) -> Iterator[tuple[socket.socket, h2.connection.H2Connection, str]]:
    """An HTTP/2 connection to ``url``'s host and port, its preface already sent: (the socket,
    the protocol state, the authority). Outgoing headers are never validated, so a test may
    send any; without ``normalize``, not lower-cased either."""
    address = urlsplit(url)
    config = h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=normalize
    )
    conn = h2.connection.H2Connection(config)
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        yield sock, conn, address.netloc
