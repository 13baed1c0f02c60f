"""What the benchmarks ran on: CPU, memory, kernel, and the versions of every moving part."""

from __future__ import annotations

import os
import platform
import subprocess
import timeit
from importlib import metadata
from pathlib import Path
from typing import Any

from gateway.launch.envoy import envoy_binary


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "unavailable"
    return ((out.stdout or out.stderr).strip().splitlines() or ["unavailable"])[0]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1e6, 1)
    return 0.0


def describe() -> dict[str, Any]:
    packages = ("grpcio", "protobuf", "fastapi", "uvicorn", "httptools", "uvloop", "py-spy")
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "envoy": _first_line([str(envoy_binary()), "--version"]).split("version: ")[-1],
        "wrk": _first_line(["wrk", "--version"]),
        "h2load": _first_line(["h2load", "--version"]),
        "packages": versions,
    }


def _cpu_ticks() -> tuple[int, int]:
    """(ticks stolen by the hypervisor, all ticks) since boot, over every core."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def speed() -> dict[str, Any]:
    """How fast this machine runs plain Python right now, and its steal-time counters.

    A VM's speed can change under a run (the host's other tenants) without the load average
    showing it; taken before and after a run, this says whether its µs figures compare with
    another run's. The workload is fixed: ``sum()`` over 1,000 ints, best of 5."""
    numbers = list(range(1000))
    best = min(timeit.repeat(lambda: sum(numbers), number=20_000, repeat=5)) / 20_000
    stolen, total = _cpu_ticks()
    return {"sum_1000_us": best * 1e6, "steal_ticks": stolen, "total_ticks": total}


def speed_over(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """The speed readings at both ends of a run and the share of CPU the host took between."""
    ticks = max(after["total_ticks"] - before["total_ticks"], 1)
    return {
        "sum_1000_us_start": before["sum_1000_us"],
        "sum_1000_us_end": after["sum_1000_us"],
        "steal_percent": 100 * (after["steal_ticks"] - before["steal_ticks"]) / ticks,
    }
