"""A server that cannot listen on its address: the gateway's gRPC server and the ops HTTP
server raise `ListenError`, and their commands print it as one line (gateway/cli/_listen.py)
instead of the traceback of grpc's RuntimeError or of an OSError.

    check_bind("127.0.0.1", 50051)     # ListenError("... Address already in use", in_use=True)
"""

from __future__ import annotations

import errno
import socket


class ListenError(Exception):
    """``host:port`` cannot be listened on; ``reason`` is the system's, when known, and
    ``in_use`` whether another socket holds the port."""

    def __init__(
        self, host: str, port: int, reason: str | None = None, *, in_use: bool = False
    ) -> None:
        super().__init__(f"cannot listen on {bracketed(host)}:{port}: {reason or 'failed'}")
        self.host = host
        self.port = port
        self.reason = reason
        self.in_use = in_use

    @classmethod
    def from_os_error(cls, host: str, port: int, exc: OSError) -> ListenError:
        in_use = exc.errno == errno.EADDRINUSE
        return cls(host, port, exc.strerror or str(exc), in_use=in_use)

    @property
    def address(self) -> str:
        return f"{bracketed(self.host)}:{self.port}"


def bracketed(host: str) -> str:
    """``host`` as it goes before ``:PORT``: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def host_and_port(address: str) -> tuple[str, int]:
    """``host:port`` split for a socket: ``[::1]:8889`` is ("::1", 8889)."""
    host, _, port = address.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def family(host: str) -> socket.AddressFamily:
    """The address family a server on ``host`` binds (AF_INET6 for ``::1``, ``::``);
    `socket.gaierror` for a host name that does not resolve."""
    found = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return found[0][0]


def check_bind(host: str, port: int) -> None:
    """Binds ``host:port`` and lets it go, as a server binds it (a port in TIME_WAIT is free);
    `ListenError` saying why if it cannot. grpc's own failure says neither why nor which
    process holds the port, and logs a line of its own; so the gateway checks first."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror too: a host name that does not resolve
        raise ListenError.from_os_error(host, port, exc) from None
