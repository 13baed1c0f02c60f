"""Ports for tests and benchmarks: outside the ephemeral range, where an outgoing connection
can take a port between the moment it was found free and the moment a server binds it."""

from __future__ import annotations

import socket
from pathlib import Path

from gateway.launch.processes import _port_candidates, free_port


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(300)]

    assert len(set(ports)) == len(ports)
    assert not [p for p in ports if low <= p <= high]
    for port in ports[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_never_handed_out() -> None:
    # Listeners bound by someone else on 800 of the ports free_port picks from: were they not
    # checked, about 20 of 300 picks would land on one.
    listeners = []
    try:
        for port in _port_candidates()[:800]:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sock.listen()
            listeners.append(sock)
        taken = {s.getsockname()[1] for s in listeners}
        handed = {free_port() for _ in range(300)}
        assert len(taken) > 700
        assert not taken & handed
    finally:
        for sock in listeners:
            sock.close()
