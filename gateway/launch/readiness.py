"""What `saxgw up` checks before it starts and tells once it is up.

busy = busy_ports([("127.0.0.1", 8888, "Envoy's public port")])  # [] when all are free
models = restored_models("http://127.0.0.1:8888", "/sax/test")    # [(id, active, wanted)]
"""

from __future__ import annotations

import errno
import json
import socket
import urllib.parse
import urllib.request
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


def restored_models(http_url: str, cell: str) -> list[tuple[str, int, int]]:
    """(model ID, active replicas, requested replicas) of every model published in ``cell``,
    asked through the public HTTP API; [] if it does not answer."""
    query = urllib.parse.urlencode({"sax_cell": cell})
    try:
        with urllib.request.urlopen(f"{http_url}/listall?{query}", timeout=5) as response:
            body = json.load(response)
    except (OSError, ValueError):
        return []
    return [
        (m["model"], int(m.get("active_replicas", 0)), int(m.get("max_replicas", 0)))
        for m in body.get("models", [])
    ]
