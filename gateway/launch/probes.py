"""Whether a process answers: the watchdog's probes (`gateway.launch.watchdog`), and a pod's
liveness probes for the gateway and the embedded cell (deploy/k8s), which run them as a command:

    python -m gateway.launch.probes grpc 127.0.0.1:50051 [ADDRESS ...] [--timeout 2]

It exits 0 if every address answered within the timeout (any gRPC status, UNIMPLEMENTED
included: a cell's admin and model servers serve no health service, and their answer still
shows a running event loop), else 1 with why on stderr (kubelet shows it in the pod's events).
They listen on loopback only, where kubelet's own gRPC probe cannot reach them; and kubelet's
TCP probe passes a stopped process, whose kernel still accepts connections.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.common import flags
from gateway.common.listen import host_and_port
from gateway.launch.stackdir import start_time


class Refused(str):
    """Why a probe failed, when it failed because nothing listens at the child's address: a
    child that runs has closed its port, as a gateway does the moment it is told to stop
    (grpc's graceful stop refuses new calls while those in flight get the grace period).
    That is a stop under way, not silence: a hung child (stopped, its event loop blocked)
    still has the kernel accept its connections, and its probes time out."""


Probe = Callable[[float], "str | None"]
"""Asks a child whether it answers within ``timeout`` seconds: None if it did, else why not
(a `Refused` if nothing listened)."""

# Any answer means the process runs: NOT_SERVING only says its cell is unreachable, and an
# HTTP 503 from Envoy's /ready that it is starting or draining. What counts is silence.
_SILENT = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)


def grpc_health_probe(address: str, *, named_timeout: float | None = None) -> Probe:
    """grpc.health.v1 ``Check`` at ``address`` (a gateway). ``named_timeout``: the timeout a
    silence is reported against, where it is not the Check's own (the command's, of which
    the Check got what its start left)."""

    def probe(timeout: float) -> str | None:
        # No proxy: http_proxy in the environment must not take loopback probes elsewhere.
        with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
            try:
                health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=timeout
                )
            except grpc.RpcError as exc:
                code = exc.code()
                if code not in _SILENT:
                    return None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    named = timeout if named_timeout is None else named_timeout
                    return f"grpc.health.v1 Check at {address}: no answer within {named:g} s"
                why = f"grpc.health.v1 Check at {address}: {exc.details()}"
                # gRPC names a refusal only in its text: a connection of our own tells.
                return Refused(why) if _refused(address, timeout) else why
        return None

    return probe


def heartbeat_probe(path: Path, stale_after: float) -> Probe:
    """A child that touches ``path`` at every turn of its work (direct mode's control plane,
    which serves no port): silent while the file is missing (the start grace covers a child
    starting) and once it has not been touched for ``stale_after`` seconds.

    A touch is seen as a change of the file's mtime, and its age is counted on
    `time.monotonic` from when the probe first saw it: the mtime is on the wall clock, which
    NTP, a VM's resume or a hand may step, and a step of a minute forward would have the
    watchdog kill a plane that is working (gateway/common/metricsfiles.py reads its
    heartbeats the same way)."""
    seen = [math.nan, 0.0]  # the mtime last seen, and when (time.monotonic) it was first seen

    def probe(timeout: float) -> str | None:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return f"{path.name} not written"
        now = time.monotonic()
        if mtime != seen[0]:
            seen[:] = [mtime, now]
        age = now - seen[1]
        if age <= stale_after:
            return None
        return f"{path.name} not touched for {age:.0f} s (more than {stale_after:g} s)"

    return probe


def _refused(address: str, timeout: float) -> bool:
    """Whether a TCP connection to ``address`` is refused (nothing listens there)."""
    try:
        socket.create_connection(host_and_port(address), timeout=timeout).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def http_probe(address: str, path: str) -> Probe:
    """``GET path`` at ``address`` (``host:port``): Envoy's admin, the ops server."""
    host, port = host_and_port(address)

    def probe(timeout: float) -> str | None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request("GET", path)
            connection.getresponse().read()
        except TimeoutError:
            return f"GET http://{address}{path}: no answer within {timeout:g} s"
        except ConnectionRefusedError as exc:
            return Refused(f"GET http://{address}{path}: {exc}")
        except (OSError, http.client.HTTPException) as exc:
            return f"GET http://{address}{path}: {exc}"
        finally:
            connection.close()
        return None

    return probe


#: Seconds a probe's Check gets however long the command took to start.
MIN_CHECK_S = 0.5


def since_exec() -> float:
    """Seconds since this process started (Linux's /proc; 0 where it cannot be read)."""
    started = start_time(os.getpid())  # clock ticks after boot
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    if started is None:
        return 0.0
    return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))


def check_budget(timeout: float, started_ago: float) -> float:
    """The Check's own timeout: what is left of ``timeout`` once the command has started
    (``started_ago`` s ago), at least `MIN_CHECK_S`. A node busy enough to take seconds over
    Python's start and grpc's import had the command run import + ``timeout`` seconds, and
    kubelet (timeoutSeconds: 5) kill a probe of a hung gateway instead of hearing why it
    failed; a live one still gets `MIN_CHECK_S` to answer."""
    return max(MIN_CHECK_S, timeout - started_ago)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.launch.probes",
        description="exit 0 if every address answers grpc.health.v1 Check (any status), else 1",
    )
    kinds = parser.add_subparsers(dest="kind", required=True)
    grpc_kind = kinds.add_parser("grpc", help="grpc.health.v1 Check (a gateway, a cell's servers)")
    grpc_kind.add_argument("addresses", nargs="+", type=flags.host_port, help="HOST:PORT")
    grpc_kind.add_argument(
        "--timeout",
        type=flags.seconds,
        default=2.0,
        help="seconds from the command's start (default: 2)",
    )
    args = parser.parse_args(argv)
    timeout = check_budget(args.timeout, since_exec())
    # At once: the probe's time is one timeout however many servers are hung (kubelet's
    # timeoutSeconds bounds the whole command).
    with ThreadPoolExecutor(len(args.addresses)) as pool:
        probes = [grpc_health_probe(a, named_timeout=args.timeout) for a in args.addresses]
        failures = [f for f in pool.map(lambda probe: probe(timeout), probes) if f]
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
