"""Sockets inside a pod's network namespace, from this process (as root), and a link between two
such namespaces.

A pod of tests/container/_pod.py has a network namespace of its own (loopback only), which the
host cannot route to. setns(2) moves only the calling thread into a network namespace, and a
socket stays in the namespace it was made in: so one worker thread enters the pod's namespace
and makes the sockets (kubelet's probes dial the pod from outside it, just so), and
``forward`` relays a loopback port of the host to a port of the pod, as `kubectl port-forward`
does, for clients (httpx, grpc) that make their own sockets. ``link`` joins two namespaces
with a veth pair, as a CNI plugin joins a pod to the network beyond it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class Netns:
    """The network namespace of process ``pid`` (kept open until ``close``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        self._inside = ThreadPoolExecutor(1, "netns", initializer=self._enter)

    def _enter(self) -> None:
        if _libc.setns(self._fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into the pod's network namespace: {os.strerror(errno)}")

    def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """A TCP connection to host:port as seen inside the namespace."""
        return self.run(lambda: socket.create_connection((host, port), timeout))

    def run(self, call: Callable[[], T]) -> T:
        """``call()`` on the thread inside the namespace: the sockets it makes are the
        namespace's, and so are those of the threads it starts (they begin where it is)."""
        return self._inside.submit(call).result()

    @contextlib.contextmanager
    def forward(self, host: str, port: int) -> Iterator[int]:
        """A port on the host's 127.0.0.1 whose connections are relayed to host:port inside."""
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.2)
        done = threading.Event()
        relayed: list[socket.socket] = []

        def accept() -> None:
            while not done.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                try:
                    upstream = self.connect(host, port, 10)
                except OSError:
                    client.close()  # refused inside: the client sees the connection close
                    continue
                client.settimeout(None)
                relayed.extend((client, upstream))
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

        acceptor = threading.Thread(target=accept, daemon=True)
        acceptor.start()
        try:
            yield listener.getsockname()[1]
        finally:
            done.set()
            acceptor.join()
            listener.close()
            for sock in relayed:  # shutdown wakes a pump blocked in recv; close alone does not
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._inside.shutdown()
        os.close(self._fd)


def link(one: Netns, one_ip: str, other: Netns, other_ip: str) -> None:
    """A veth pair between two network namespaces, eth0 in each, and a route over it from each
    address (already on that namespace's loopback) to the other, with that address as the
    source: what one namespace sends the other comes from its own address, as a pod's packets
    come from the pod's IP. The pair is made inside the two namespaces (the host's network
    never holds it) and goes when either namespace goes."""
    # Made under names of their own, renamed inside: both ends called eth0 at once is refused
    # (File exists), though neither namespace has one.
    first, second = (f"saxgw{secrets.token_hex(4)}" for _ in range(2))
    ip(None, "link", "add", first, "netns", str(one.pid), "type", "veth",
        "peer", "name", second, "netns", str(other.pid))  # fmt: skip
    ends = ((one, first, one_ip, other_ip), (other, second, other_ip, one_ip))
    for net, name, own_ip, peer_ip in ends:
        ip(net, "link", "set", name, "name", "eth0")
        ip(net, "link", "set", "eth0", "up")
        ip(net, "route", "add", f"{peer_ip}/32", "dev", "eth0", "src", own_ip)


def ip(net: Netns | None, *args: str) -> None:
    """`ip ARGS` (iproute2), in ``net`` (None: here)."""
    enter = [] if net is None else ["nsenter", "--target", str(net.pid), "--net"]
    done = subprocess.run([*enter, "ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)  # pass the half-close on (HTTP/1.0, a client's EOF)
