"""Sockets inside a pod's network namespace, from this process (as root).

A pod of tests/container/_pod.py has a network namespace of its own (loopback only), which the
host cannot route to. setns(2) moves only the calling thread into a network namespace, and a
socket stays in the namespace it was made in: so one worker thread enters the pod's namespace
and makes the sockets (kubelet's probes dial the pod from outside it, just so), and
``forward`` relays a loopback port of the host to a port of the pod, as `kubectl port-forward`
does, for clients (httpx, grpc) that make their own sockets.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

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
        return self._inside.submit(socket.create_connection, (host, port), timeout).result()

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
