"""How the stack uses one host: grpc's I/O engine, Envoy's worker threads, gateway processes,
and the open-file limit that 10,000 streams need (BENCHMARKS.md has the measurements).

    plan = plan_cores(workers="auto", cores=usable_cores())   # CorePlan(envoy=1, workers=1)
    env = grpc_env()    # for every gateway process, before it imports grpc
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")

#: grpcio experiments the gateway turns off. grpcio 1.85's EventEngine client and listener
#: wake grpc's own threads through an eventfd on every call (`write` was ~40% of the
#: gateway's samples under load); without them grpc.aio polls on the asyncio thread's side
#: as before. They are experiment names: grpc reads them when it is imported (so they go in
#: the environment of a new process) and logs "Unknown experiment" for a name it no longer
#: has; tests/unit/test_tuning.py checks the installed grpcio still knows both. Re-measure
#: (`make bench`, rows gateway-grpc vs gateway-grpc-ee) on every grpcio upgrade.
GRPC_EXPERIMENTS_OFF = ("event_engine_client", "event_engine_listener")

#: Open files the stack asks for: one per client connection in Envoy (HTTP/1.1 SSE is one
#: connection per stream), with room for 10,000 streams, the gateways' and the cell's sockets.
OPEN_FILES_WANTED = 65_536
#: Descriptors Envoy keeps beside its client connections (its listeners, admin, logs, the
#: connections to the gateways and their health checks: 32 with one gateway and one worker),
#: or a quarter of its limit when that is lower, but never fewer than `ENVOY_LEAST_SPARE`.
ENVOY_SPARE_FILES = 1024
#: What Envoy holds with no client at all (26 measured, with one gateway and one worker), and
#: a little room: with `ulimit -n 64` a quarter (16) left it 48 connections to run out of
#: descriptors with, and the watchdog killed it with the calls in flight.
ENVOY_LEAST_SPARE = 48
#: The least open-file limit a stack starts under: Envoy's `ENVOY_LEAST_SPARE` and 16 client
#: connections. Below 32 a gateway did not start at all (at 16 grpc crashed, SIGSEGV; at 24
#: it spun on "File descriptor limit reached"), and below 64 Envoy could take a handful of
#: clients at most.
LEAST_OPEN_FILES = ENVOY_LEAST_SPARE + 16


def grpc_experiments() -> str:
    """The value of ``GRPC_EXPERIMENTS`` for a gateway process."""
    return ",".join(f"-{name}" for name in GRPC_EXPERIMENTS_OFF)


def grpc_env() -> dict[str, str]:
    """Environment a gateway process is started with (on top of the parent's)."""
    return {"GRPC_EXPERIMENTS": grpc_experiments()}


#: What ``saxgw gateway --event-loop`` accepts; `loop_factory` says what each means.
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def loop_factory(loop: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a gateway process runs on (None: asyncio's). ``auto`` is uvloop's where
    it is installed (a dependency on Linux and macOS): grpc.aio runs on any asyncio loop, and
    on uvloop the gateway spent 2-10% less CPU per call, the loop's own work (callbacks,
    selector, tasks); BENCHMARKS.md has the A/Bs (`make bench` row gateway-grpc-asyncio)."""
    if loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # Windows, or an install without it
        if loop == "uvloop":
            raise
        return None
    new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_loop


def run(main: Coroutine[Any, Any, _T], loop: str = "auto") -> _T:
    """``asyncio.run(main)`` on the event loop `loop_factory` picks."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)


@dataclass(frozen=True)
class CorePlan:
    """Envoy's worker threads and the number of gateway processes for a number of cores."""

    envoy: int
    workers: int


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container's cpuset limits)."""
    return max(1, len(os.sched_getaffinity(0)))


def envoy_threads(cores: int) -> int:
    """Envoy workers for ``cores``: a third of them, at least one. Envoy spends about half of
    what a gateway process spends per HTTP/JSON request (BENCHMARKS.md), so one Envoy thread
    keeps about two gateway processes busy. Envoy's own default, one worker per core of the
    machine, puts more busy-polling threads than cores on a shared host."""
    return max(1, round(cores / 3))


def plan_cores(workers: str | int, cores: int) -> CorePlan:
    """``workers`` is a count or "auto": one gateway process per core Envoy does not need."""
    envoy = envoy_threads(cores)
    if workers == "auto":
        return CorePlan(envoy=envoy, workers=max(1, cores - envoy))
    count = int(workers)
    if count < 1:
        raise ValueError(f"--workers must be at least 1 or auto, not {workers}")
    return CorePlan(envoy=envoy, workers=count)


def parse_workers(text: str) -> str | int:
    """``--workers``: a positive count or "auto"."""
    if text == "auto":
        return text
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"expected a number or auto, not {text!r}") from None
    if count < 1:
        raise ValueError(f"expected at least 1, not {count}")
    return count


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raises this process's RLIMIT_NOFILE soft limit towards ``wanted`` (children inherit
    it): to the hard limit when that is lower, and the hard limit itself when allowed (root).
    Returns the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # only a privileged process may
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def envoy_open_files() -> int | None:
    """The descriptors an Envoy started now may open (None: no limit): Envoy raises its own
    soft RLIMIT_NOFILE to the hard one as it starts."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else hard


def connections_within(max_connections: int, open_files: int) -> int:
    """The client connections Envoy may accept (``limits.max_connections``) when it may open
    ``open_files`` descriptors (its RLIMIT_NOFILE): no more than leave it ``ENVOY_SPARE_FILES``.
    Out of descriptors (EMFILE), Envoy 1.40's accept loop spins at 100% CPU, a new client waits
    unanswered with no error, and its admin port stops answering too, so the supervisor's
    watchdog took it for hung and killed it, and every call in flight with it. Within its
    connection limit, Envoy closes the connections beyond it at once, and the rest go on."""
    spare = min(ENVOY_SPARE_FILES, max(open_files // 4, ENVOY_LEAST_SPARE))
    return max(1, min(max_connections, open_files - spare))
