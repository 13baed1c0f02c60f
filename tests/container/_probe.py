"""Probes and lifecycle hooks as kubelet runs them, for the kubelet-lite (tests/container/_pod.py):
exec in the container, httpGet, tcpSocket and grpc to the pod's IP from outside the pod, and a
hook's sleep; each probe on its own timer, with kubelet's defaults and thresholds."""

from __future__ import annotations

import contextlib
import http.client
import subprocess
import threading
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.container._compose import DOCKER
from tests.container._kube import POD_IP, NotEmulated, Spec, container_port, only
from tests.container._netns import Netns

_ACTIONS = {
    "exec": {"command"},
    "httpGet": {"path", "port", "scheme", "httpHeaders"},  # no `host`: that is the node's
    "tcpSocket": {"port"},
    "grpc": {"port", "service"},
    "sleep": {"seconds"},  # hooks only
}
_TIMING = {  # kubelet's defaults
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "successThreshold": 1,
    "failureThreshold": 3,
}


def validate(handler: Spec, container: Spec, what: str, *, hook: bool) -> None:
    """NotEmulated unless check() can run ``handler``, the container's probe or (if ``hook``)
    lifecycle hook ``what``."""
    where = f"container {container['name']} {what}"
    actions = {"exec", "httpGet", "sleep"} if hook else {"exec", "httpGet", "tcpSocket", "grpc"}
    only(handler, actions if hook else actions | set(_TIMING), where)
    if len(found := actions & set(handler)) != 1:
        raise NotEmulated(f"{where}: one action of {sorted(actions)}, not {sorted(found)}")
    [action] = found
    only(handler[action], _ACTIONS[action], f"{where} {action}")
    if handler[action].get("scheme", "HTTP") != "HTTP":
        raise NotEmulated(f"{where}: an HTTPS probe")
    if "port" in handler[action]:
        container_port(container, handler[action]["port"])  # PodFailed for a name it lacks


def check(
    handler: Spec, container: Spec, container_id: str, net: Netns, timeout: float
) -> str | None:
    """Runs a probe's or a hook's action once: None if it passed, else what went wrong."""
    [action] = set(_ACTIONS) & set(handler)
    spec = handler[action]
    try:
        if action == "exec":
            command = [DOCKER, "exec", container_id, *spec["command"]]
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
            return (
                None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()}"
            )
        if action == "sleep":
            time.sleep(min(spec["seconds"], timeout))
            return None
        port = container_port(container, spec["port"])
        if action == "tcpSocket":
            net.connect(POD_IP, port, timeout).close()
            return None
        if action == "grpc":
            return _grpc(net, port, spec.get("service", ""), timeout)
        connection = http.client.HTTPConnection(POD_IP, port, timeout=timeout)
        connection.sock = net.connect(POD_IP, port, timeout)
        # Closed however the probe ends: one that timed out left its socket open, which
        # pytest reported as an unraisable ResourceWarning and failed the test with.
        with contextlib.closing(connection):
            headers = {"User-Agent": "kube-probe/1.33", "Accept": "*/*", "Connection": "close"}
            headers.update({h["name"]: h["value"] for h in spec.get("httpHeaders", [])})
            connection.request("GET", spec.get("path", "/"), headers=headers)
            status = connection.getresponse().status
        return None if 200 <= status < 400 else f"HTTP {status}"
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    except OSError as exc:  # refused, reset, timed out
        return repr(exc)


def _grpc(net: Netns, port: int, service: str, timeout: float) -> str | None:
    with net.forward(POD_IP, port) as local, grpc.insecure_channel(f"127.0.0.1:{local}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return f"gRPC {exc.code()}"
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    return None if serving else f"status {reply.status}"


class Prober(threading.Thread):
    """One probe of one container: first after initialDelaySeconds, then every periodSeconds;
    ``passing`` after successThreshold successes in a row, not after failureThreshold failures
    in a row, which for a liveness probe is a restart kubelet would make (``restarts``; this
    only counts them)."""

    def __init__(
        self, container: str, kind: str, probe: Spec, run: Callable[[float], str | None]
    ) -> None:
        super().__init__(name=f"{container} {kind}", daemon=True)
        self.kind = kind  # livenessProbe or readinessProbe
        self.timing = {key: float(probe.get(key, value)) for key, value in _TIMING.items()}
        self.results: list[tuple[float, str | None]] = []  # (seconds since start, failure)
        self.passing = False
        self.restarts = 0
        self._run = run
        self._stopped = threading.Event()
        self._streak = 0  # successes (> 0) or failures (< 0) in a row

    def run(self) -> None:
        start = time.monotonic()
        tick = start + self.timing["initialDelaySeconds"]
        while not self._stopped.wait(max(0.0, tick - time.monotonic())):
            failure = self._run(self.timing["timeoutSeconds"])
            self.results.append((time.monotonic() - start, failure))
            if failure is None:
                self._streak = max(self._streak, 0) + 1
                self.passing |= self._streak >= self.timing["successThreshold"]
            else:
                self._streak = min(self._streak, 0) - 1
                if -self._streak >= self.timing["failureThreshold"]:
                    self.passing = False
                    if self.kind == "livenessProbe":
                        self.restarts += 1  # kubelet restarts the container, and counts anew
                        self._streak = 0
            tick += self.timing["periodSeconds"]

    def stop(self) -> None:
        self._stopped.set()

    def failures(self) -> list[tuple[float, str]]:
        return [(at, failure) for at, failure in self.results if failure is not None]
