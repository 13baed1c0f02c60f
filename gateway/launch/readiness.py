"""What `saxgw up` checks before it starts (what it tells once it is up:
gateway/cli/_restored.py).

busy = busy_ports([("127.0.0.1", 8888, "Envoy's public port")])  # [] when all are free
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.common.listen import ListenError, check_bind


def busy_ports(wanted: Iterable[tuple[str, int, str]]) -> list[tuple[int, str]]:
    """The (port, role) pairs of ``wanted`` (host, port, role) that another process holds;
    `ListenError` for an address that cannot be bound at all (not this machine's)."""
    busy = []
    for host, port, role in wanted:
        if port == 0:
            continue
        try:
            # As servers bind (IPv6 too): a port in TIME_WAIT is free, one with a listener
            # is not.
            check_bind(host, port)
        except ListenError as exc:
            if not exc.in_use:
                raise
            busy.append((port, role))
    return busy
