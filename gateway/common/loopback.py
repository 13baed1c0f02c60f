"""Which Host names a listener on loopback answers: a guard against DNS rebinding.

A web page whose DNS name its owner points at 127.0.0.1 is, to the visitor's browser,
same-origin with anything listening there; what gives it away is the ``Host`` it sends. A
listener on loopback serves only its own machine, whose clients use loopback names, so it
answers those (and names its operator adds) only. Envoy's listener does it by virtual host
(gateway/edge/_hosts.py); the ops server (gateway/ops) with `answers`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

#: Names of this machine that no DNS answer can take over: `localhost` and its subdomains
#: (RFC 6761), the loopback address clients use and the IPv6 one. Not ``127.*``, which
#: would also match a DNS name such as ``127.evil.example``; a listener bound to another
#: 127.x address adds its own (``domains``), and a client reaches a listener bound to one
#: address only through that address.
LOOPBACK_NAMES = ("localhost", "*.localhost", "127.0.0.1", "[::1]")


def is_loopback(address: str) -> bool:
    """True for an address only this machine can reach (``localhost`` counts)."""
    if address == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    # Python 3.11 says an IPv4-mapped loopback (::ffff:127.0.0.1) is not loopback: the ops
    # port bound there answered every Host name (no guard against DNS rebinding).
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def domains(listen_address: str, allowed: Sequence[str]) -> list[str] | None:
    """The Host names the listener on ``listen_address`` answers; None: any."""
    if not is_loopback(listen_address) or "*" in allowed:
        return None
    own = listen_address
    if ":" in own:
        own = f"[{own}]"
    elif own == "localhost":
        own = "127.0.0.1"
    names = [*LOOPBACK_NAMES, own, *allowed]
    # A DNS name may end with the root's dot (`http://localhost.:8888`, RFC 1034 3.1): the same
    # name, which Envoy (and `answers`) would match as another. Not an address: a browser sends
    # `127.0.0.1.` as 127.0.0.1. Envoy refuses a config that names a domain twice.
    rooted = [f"{name}." for name in names if not _is_address(name)]
    return list(dict.fromkeys([*names, *rooted]))


def _is_address(host: str) -> bool:
    if host.startswith("["):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def answers(host_header: str | None, names: Sequence[str]) -> bool:
    """Whether a ``Host`` header (a port or none) names one of ``names`` (`domains`), as
    Envoy matches a virtual host: exactly, or under a ``*.`` wildcard, case aside."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    # Without the port: "[::1]:8889" -> "[::1]", "localhost:8889" -> "localhost".
    host = host[: host.find("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]
    return any(
        host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in names
    )
