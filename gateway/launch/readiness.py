"""What `saxgw up` checks before it starts (what it tells once it is up:
gateway/cli/_restored.py).

busy = busy_ports([("127.0.0.1", 8888, "Envoy's public port")])  # [] when all are free
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable


def busy_ports(wanted: Iterable[tuple[str, int, str]]) -> list[tuple[int, str]]:
    """The (port, role) pairs of ``wanted`` (host, port, role) that another process holds."""
    busy = []
    for host, port, role in wanted:
        if port == 0:
            continue
        with socket.socket() as probe:
            # As servers bind: a port in TIME_WAIT is free, one with a listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                busy.append((port, role))
    return busy
